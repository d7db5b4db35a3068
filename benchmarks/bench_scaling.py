"""Cost of one model window per LR pixel at several frame sizes: is it linear in the pixels?

    python benchmarks/bench_scaling.py                       # 160x128, 324x256, 640x512, 1280x1024; 1 thread
    python benchmarks/bench_scaling.py --size 160x128 --size 1280x1024 --threads 2
    python benchmarks/bench_scaling.py --precision fp32     # default auto: bf16 on CPUs with bf16 instructions

For each size (W x H), in a fresh process: one forward of a window of --frames LR frames (7 output
times for 4) of the given weights on random input, the best of --repeat after one warm-up. Prints
wall seconds, microseconds per LR pixel and input frame, the ratio to the first size, user and
system CPU seconds of the timed runs (system time is page-fault and mapping work: it should stay a
small fraction of user time), the minor page faults of the timed runs per run, and the process's peak
resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(weights: str, width: int, height: int, frames: int, threads: int, repeat: int, tile: int = 0,
            precision: str = "fp32") -> dict:
    import contextlib
    import resource
    import time

    try:
        from theris_cli.engine.hugepages import prefer_huge_pages
    except ImportError:  # a checkout from before it existed (for before/after tables)
        pass
    else:
        prefer_huge_pages()  # as `theris upscale` does
    import torch

    from theris_cli.weights.load import load_model

    torch.set_num_threads(threads)
    net = load_model(weights)
    x = torch.rand(1, frames, net.config.in_channels, height, width, generator=torch.Generator().manual_seed(0))
    if tile:  # the window through infer.Upscaler in tiles of `tile` LR pixels (0: the network alone)
        from theris_cli.engine.infer import Upscaler

        up = Upscaler(net, tile=tile, precision=precision)  # as `theris upscale` sets up the CPU
        run = lambda: up.run_window(x[0])  # noqa: E731
        lowp = contextlib.nullcontext()  # the Upscaler applies its precision itself
    else:
        run = lambda: net(x)  # noqa: E731
        try:
            from theris_cli.engine.hugepages import keep_freed_memory
        except ImportError:  # a checkout from before it existed
            pass
        else:
            try:
                keep_freed_memory(height * width)  # as infer.Upscaler does on the CPU
            except TypeError:  # a checkout from before the threshold followed the frame
                keep_freed_memory()
        from theris_cli.devices import resolve_precision

        dtype = resolve_precision(precision, torch.device("cpu"))
        lowp = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast("cpu", dtype=dtype)
    best = None
    with torch.inference_mode(), lowp:
        run()  # warm-up
        for _ in range(repeat):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            run()
            wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            timing = {"wall": wall, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                      "faults": r1.ru_minflt - r0.ru_minflt}
            if best is None or wall < best["wall"]:
                best = timing
    best["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", action="append", help="WxH LR size (repeatable; default 160x128, 324x256, 640x512, 1280x1024)")
    ap.add_argument("--weights", default="theris-small")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tile", type=int, default=0, help="run through infer.Upscaler in tiles of this many LR pixels")
    ap.add_argument("--precision", default="auto", help="fp32, bf16 or auto (as `theris upscale` chooses; default)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        w, h = (int(v) for v in args.child.split("x"))
        print(json.dumps(measure(args.weights, w, h, args.frames, args.threads, args.repeat, args.tile, args.precision)))
        return 0
    sizes = args.size or ["160x128", "324x256", "640x512", "1280x1024"]
    print(f"# {args.weights}, window of {args.frames} LR frames, {args.threads} thread(s), best of {args.repeat}, "
          f"precision {args.precision}"
          + (f", tiles of {args.tile} px" if args.tile else ""))
    print(f"{'size':>9}  {'wall s':>7}  {'us/px/frame':>11}  {'ratio':>5}  {'user s':>6}  {'sys s':>6}  {'sys/user':>8}  {'faults':>7}  {'peak MiB':>8}")
    first = None
    for size in sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        cmd = [sys.executable, __file__, "--child", size, "--weights", args.weights, "--frames", str(args.frames),
               "--threads", str(args.threads), "--repeat", str(args.repeat), "--tile", str(args.tile),
               "--precision", args.precision]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        per = r["wall"] / (w * h * args.frames) * 1e6
        first = first or per
        print(f"{size:>9}  {r['wall']:7.2f}  {per:11.2f}  {per / first:5.2f}  {r['user']:6.2f}  {r['sys']:6.2f}  "
              f"{r['sys'] / max(r['user'], 1e-9):8.1%}  {r.get('faults', 0):7d}  {r['peak_mib']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
