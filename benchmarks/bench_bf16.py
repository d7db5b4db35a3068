"""fp32 against bf16 on this CPU: the model's own convolution and projection shapes, then a window.

    python benchmarks/bench_bf16.py                    # one thread, a 192x256 window of theris-small
    python benchmarks/bench_bf16.py --size 120x160 --threads 2

Why `--precision auto` picks bf16 on a CPU with bfloat16 dot products (AVX512-BF16 or AMX,
`devices.cpu_has_bf16`) and fp32 elsewhere: on such a CPU the convolutions and matrix products of the
work-unit path run faster in bf16 (this prints by how much), and the whole window follows. Prints the
best of --repeat timings of each operation in both dtypes and their ratio, then one window of the
given weights (4 LR frames in, 7 output times) under CPU autocast to bf16 against fp32, with the
largest and RMS difference of the outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time


def best_of(fn, repeat: int, inner: int = 1) -> float:
    """Seconds per call of fn, the best of ``repeat`` runs of ``inner`` calls, after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="192x256", help="HxW of the LR window (default 192x256)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--weights", default="theris-small")
    args = ap.parse_args(argv)
    from theris_cli.engine.hugepages import prefer_huge_pages

    prefer_huge_pages()  # as `theris upscale` does
    import torch
    import torch.nn.functional as F

    from theris_cli.devices import cpu_has_bf16
    from theris_cli.weights.load import load_model

    torch.set_num_threads(args.threads)
    H, W = (int(v) for v in args.size.lower().split("x"))
    cl = torch.channels_last
    print(f"# {args.threads} thread(s), best of {args.repeat}; bfloat16 dot products on this CPU: "
          f"{'yes' if cpu_has_bf16() else 'no (bf16 is emulated here)'}")
    ops = {  # name -> (make inputs for a dtype, the operation)
        f"decoder x2 conv 12->48 at {2 * H}x{2 * W}": (
            lambda dt: (torch.randn(1, 12, 2 * H, 2 * W).to(dt).contiguous(memory_format=cl),
                        torch.randn(48, 12, 3, 3).to(dt)),
            lambda x, w: F.conv2d(x, w, padding=1)),
        f"decoder output conv 48->4 at {2 * H}x{2 * W}": (
            lambda dt: (torch.randn(1, 48, 2 * H, 2 * W).to(dt).contiguous(memory_format=cl),
                        torch.randn(4, 48, 3, 3).to(dt)),
            lambda x, w: F.conv2d(x, w, padding=1)),
        "TSSM in-projection 4096 x 24 -> 130": (
            lambda dt: (torch.randn(4096, 24).to(dt), torch.randn(24, 130).to(dt)),
            lambda a, b: a @ b),
        "TSSM out-projection 4096 x 48 -> 24": (
            lambda dt: (torch.randn(4096, 48).to(dt), torch.randn(48, 24).to(dt)),
            lambda a, b: a @ b),
    }
    print(f"{'operation':<42} {'fp32 ms':>9} {'bf16 ms':>9} {'ratio':>6}")
    with torch.inference_mode():
        for name, (make, op) in ops.items():
            t = {}
            for dt in (torch.float32, torch.bfloat16):
                a, b = make(dt)
                t[dt] = best_of(lambda: op(a, b), args.repeat, inner=5)
            print(f"{name:<42} {t[torch.float32] * 1e3:9.3f} {t[torch.bfloat16] * 1e3:9.3f} "
                  f"{t[torch.float32] / t[torch.bfloat16]:6.2f}")

        net = load_model(args.weights)
        x = torch.rand(1, 4, net.config.in_channels, H, W, generator=torch.Generator().manual_seed(0))
        outs, secs = {}, {}
        for name, ctx in (("fp32", contextlib.nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
            with ctx():
                outs[name] = net(x)
                secs[name] = best_of(lambda: net(x), args.repeat)
        diff = (outs["bf16"] - outs["fp32"]).abs()
        print(f"{'window of ' + args.weights + f' {H}x{W} (4 in, 7 out)':<42} {secs['fp32'] * 1e3:9.1f} "
              f"{secs['bf16'] * 1e3:9.1f} {secs['fp32'] / secs['bf16']:6.2f}")
        print(f"# window outputs, bf16 against fp32: largest difference {float(diff.max()):.4f}, "
              f"RMS {float(diff.pow(2).mean().sqrt()):.2e} (on [0, 1])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
