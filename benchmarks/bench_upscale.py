"""Benchmark `upscale_video` on a real clip: frames per second overall and per stage, and memory.

    python benchmarks/bench_upscale.py /work/shared/data/ir/lepton_possum.mkv --weights small-untrained --device cpu

Prints, for one run: output frames per second over the whole call (probe to rename), each stage's
busy time and its rate (decode: input frames per second; model and encode: output frames per
second), the peak resident memory of the process, and the resident memory sampled at each quarter of
the run: with a streaming pipeline it levels off after the first windows instead of growing with the
video's length; and the windows run, with how many of them took their first pair of frames' motion
from the window before (`motion.PairMemo`). The output goes to a temporary folder and is deleted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    """Current resident set size of this process, MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path, help="input video")
    ap.add_argument("--weights", default=None, help="registry name, .safetensors or hf://... (default: the default model)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--temporal-factor", type=int, default=2)
    ap.add_argument("--ext", default=".mkv", help="output container (default .mkv: lossless FFV1)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args(argv)

    from theris_cli.engine.hugepages import prefer_huge_pages

    prefer_huge_pages()  # as `theris upscale` does (before torch is imported)
    import torch

    from theris_cli.engine.pipeline import upscale_video

    if args.threads:
        torch.set_num_threads(args.threads)
    samples: list[tuple[int, float]] = []

    def on_progress(done: int, total: int | None) -> None:
        samples.append((done, rss_mib()))

    rss_before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="theris-bench-") as tmp:
        dst = Path(tmp) / f"out{args.ext}"
        t0 = time.perf_counter()
        res = upscale_video(
            args.clip, dst, weights=args.weights, device=args.device, precision=args.precision,
            window=args.window, tile=args.tile, temporal_factor=args.temporal_factor, on_progress=on_progress,
        )
        wall = time.perf_counter() - t0
        out_bytes = dst.stat().st_size

    st = res.stages
    rate = lambda n, s: f"{n / s:8.2f} fps" if s > 0 else "       -"  # noqa: E731
    print(f"clip      {args.clip.name}: {res.frames_in} frames {res.size_in[0]}x{res.size_in[1]} "
          f"{res.bit_depth}-bit at {res.fps_in} fps")
    print(f"output    {res.frames_out} frames {res.size_out[0]}x{res.size_out[1]} at {res.fps_out} fps, "
          f"{out_bytes / 2**20:.1f} MiB ({args.ext})")
    print(f"settings  weights={res.weights} (trained={res.weights_trained}) device={res.device} "
          f"precision={res.precision} window={args.window} tile={res.tile} torch_threads={torch.get_num_threads()}")
    print(f"overall   {wall:8.2f} s  {rate(res.frames_out, wall)} (output frames)")
    print(f"levels    {st['levels']:8.2f} s  (16-bit min/max pre-pass)")
    print(f"load      {st['load']:8.2f} s")
    print(f"decode    {st['decode']:8.2f} s  {rate(res.frames_in, st['decode'])} (input frames)")
    print(f"model     {st['model']:8.2f} s  {rate(res.frames_out, st['model'])} (output frames)")
    print(f"encode    {st['encode']:8.2f} s  {rate(res.frames_out, st['encode'])} (output frames)")
    print(f"windows   {res.windows} run, {res.motion_pairs_reused} of their first pairs' motion taken from the window before")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu       user {ru.ru_utime:8.2f} s, system {ru.ru_stime:.2f} s ({ru.ru_stime / max(ru.ru_utime, 1e-9):.1%} of user), "
          f"whole process")
    print(f"memory    peak RSS {peak_rss_mib():.0f} MiB (before the run {rss_before:.0f} MiB)")
    if samples:
        n = len(samples)
        quarters = [samples[min(n - 1, max(0, round(q * n) - 1))] for q in (0.25, 0.5, 0.75, 1.0)]
        print("          RSS at " + ", ".join(f"frame {d}: {m:.0f} MiB" for d, m in quarters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
