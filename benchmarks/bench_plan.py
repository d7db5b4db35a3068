"""Planning table: seconds per output frame of `theris upscale` by input size, cores and precision.

    python benchmarks/bench_plan.py                                  # 160x120, 320x256, 640x512
    python benchmarks/bench_plan.py --src CLIP --frames 9 --size 640x512 --threads 2

For each input size a clip of --frames frames is cut from --src (area-resized, benchmarks/clips.py)
into a temporary folder; then, each in a fresh process, `upscale_video` (decode, model, encode: what
`theris upscale` runs) with 1 thread and with every core (torch's threads; the CPU path then runs one
window per core), in float32 and, where the CPU has bfloat16 dot products, bf16. Prints wall seconds
per output frame (probe to rename, every window included), output frames per hour, hours for an hour
of 30 fps input, the process's system time as a share of its user time, and its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SRC = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ir" / "vottir_horse.mkv")  # any video will do


def child(clip: str, threads: int, precision: str, weights: str | None) -> dict:
    import resource
    import time

    from theris_cli.engine.hugepages import prefer_huge_pages

    prefer_huge_pages()  # as `theris upscale` does, before torch is imported
    import torch

    torch.set_num_threads(threads)
    from theris_cli.engine.pipeline import upscale_video

    with tempfile.TemporaryDirectory(prefix="theris-plan-") as tmp:
        t0 = time.perf_counter()
        res = upscale_video(clip, Path(tmp) / "out.mkv", weights=weights, device="cpu", precision=precision)
        wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "frames_out": res.frames_out, "user": ru.ru_utime, "sys": ru.ru_stime,
            "peak_mib": ru.ru_maxrss / 1024, "precision": res.precision, "model": res.stages["model"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC, help="video the clips are cut from")
    ap.add_argument("--size", action="append", help="WxH input size (repeatable; default 160x120, 320x256, 640x512)")
    ap.add_argument("--frames", type=int, default=9, help="input frames per clip (9: 4 windows, 18 output frames)")
    ap.add_argument("--threads", type=int, action="append",
                    help="thread counts (repeatable; default 1 and every core this process may use)")
    ap.add_argument("--precision", action="append", help="fp32, bf16 (default fp32, and bf16 where the CPU has it)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--child", nargs=3, metavar=("CLIP", "THREADS", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        clip, threads, precision = args.child
        print(json.dumps(child(clip, int(threads), precision, args.weights)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from clips import make_clip, parse_size

    from theris_cli.devices import cpu_has_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or sorted({1, cores})
    precisions = args.precision or (["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])
    sizes = args.size or ["160x120", "320x256", "640x512"]
    print(f"# theris upscale end to end (decode, model, encode), {args.frames} input frames -> "
          f"{2 * args.frames} output frames per clip, from {Path(args.src).name}; {cores} core(s); "
          f"bfloat16 dot products: {'yes' if cpu_has_bf16() else 'no'}")
    print(f"{'input':>9} {'output':>10} {'threads':>7} {'precision':>9} {'s/frame':>8} {'frames/h':>9} "
          f"{'h per h@30':>10} {'sys/user':>8} {'peak MiB':>8}")
    with tempfile.TemporaryDirectory(prefix="theris-plan-clips-") as tmp:
        for size in sizes:
            w, h = parse_size(size)
            clip = make_clip(args.src, Path(tmp) / f"clip_{size}.mkv", args.frames, (w, h))
            for n in threads:
                for p in precisions:
                    cmd = [sys.executable, __file__, "--child", str(clip), str(n), p]
                    if args.weights:
                        cmd += ["--weights", args.weights]
                    env = dict(os.environ, OMP_NUM_THREADS=str(n))
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                    r = json.loads(out.strip().splitlines()[-1])
                    per = r["wall"] / r["frames_out"]
                    hours = per * 2 * 30 * 3600 / 3600  # an hour at 30 fps in: 216,000 output frames
                    print(f"{size:>9} {4 * w}x{4 * h:<5} {n:>7} {r['precision']:>9} {per:8.3f} {3600 / per:9.0f} "
                          f"{hours:10.1f} {r['sys'] / max(r['user'], 1e-9):8.1%} {r['peak_mib']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
