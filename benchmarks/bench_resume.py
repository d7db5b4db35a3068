"""Benchmark resume inside one file: a run killed with SIGKILL and rerun, against an uninterrupted run.

    OMP_NUM_THREADS=1 python benchmarks/bench_resume.py /work/shared/data/ir/lepton_hedgehog.mkv --frames 240 --size 80x60

Cuts a clip (the first FRAMES frames of CLIP, area-resized to SIZE: benchmarks/clips.py), then, each
run `upscale_video` in a fresh process with the same arguments as `theris upscale` (default weights,
CPU, resume on):

1. an uninterrupted run: its wall time (process start to exit), and its stages: event detection,
   decode, model, encode (the output) and the segment writes (what being resumable costs);
2. the same command killed with SIGKILL at KILL_AT of that wall time, then rerun: the rerun's wall
   time as a fraction of the uninterrupted run's, and whether the two outputs are equal frame for frame
   (--no-kill: step 1 only, for the stage shares on a long clip).

Prints the load average before and after: on a shared machine the timings move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clips import make_clip, parse_size  # noqa: E402

RUN = """
import json, sys
from theris_cli.engine.pipeline import upscale_video
res = upscale_video(sys.argv[1], sys.argv[2], device="cpu", weights=sys.argv[3] or None)
print(json.dumps({"seconds": res.seconds, "stages": res.stages, "frames_out": res.frames_out,
                  "resumed": res.resumed_frames, "events": res.events.summary() if res.events else None}))
"""


def start(src: Path, dst: Path, weights: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, str(src), str(dst), weights],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish(p: subprocess.Popen, t0: float) -> tuple[float, dict]:
    out, _ = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"a run failed (exit {p.returncode})")
    return wall, json.loads(out.strip().splitlines()[-1])


def frames(path: Path) -> np.ndarray:
    from theris_cli.video import read_frames

    return np.stack(list(read_frames(path)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path, help="source video the benchmark clip is cut from")
    ap.add_argument("--frames", type=int, default=240, help="frames of the clip (default 240)")
    ap.add_argument("--size", type=parse_size, default=None, help="WxH of the clip (default: the source's)")
    ap.add_argument("--kill-at", type=float, default=0.6, help="fraction of the full run's wall time (default 0.6)")
    ap.add_argument("--weights", default="", help="weights (default: the default model)")
    ap.add_argument("--no-kill", action="store_true", help="only the uninterrupted run (its stages: detection, join)")
    args = ap.parse_args(argv)

    from theris_cli.engine.resume import MANIFEST, work_dir

    print(f"conditions: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} (1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(args.clip, tmp / "clip.mkv", args.frames, args.size)
        full, out = tmp / "full.mkv", tmp / "out.mkv"

        t0 = time.perf_counter()
        t_full, r = finish(start(clip, full, args.weights), t0)
        st = r["stages"]
        print(f"clip: {args.frames} frames of {args.clip.name}" + (f" at {args.size[0]}x{args.size[1]}" if args.size else ""))
        print(f"uninterrupted: {t_full:.1f} s wall ({r['seconds']:.1f} s in upscale_video), {r['frames_out']} frames out; "
              f"events found: {r['events'] or 'none'}")
        print(f"  stages: decode {st['decode']:.2f} s, event detection {st['events']:.3f} s "
              f"({st['events'] / r['seconds']:.2%} of the run, {st['events'] / max(st['decode'], 1e-9):.0%} of decode), "
              f"model {st['model']:.1f} s, encode {st['encode']:.2f} s, segment writes {st['segments']:.2f} s "
              f"({st['segments'] / r['seconds']:.2%} of the run, in the encode thread beside the model)")

        if args.no_kill:
            print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
            return 0
        p = start(clip, out, args.weights)
        t0 = time.perf_counter()
        time.sleep(args.kill_at * t_full)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        try:
            kept = json.loads((work_dir(out) / MANIFEST).read_text())["segments"]
        except (OSError, ValueError, KeyError):
            kept = []
        print(f"killed at {args.kill_at:.0%} of the uninterrupted wall time: {len(kept)} complete segments, "
              f"{sum(s['frames'] for s in kept)} of {r['frames_out']} frames; output exists: {out.exists()}")

        t0 = time.perf_counter()
        t_re, r2 = finish(start(clip, out, args.weights), t0)
        same = np.array_equal(frames(out), frames(full))
        print(f"rerun: {t_re:.1f} s wall = {t_re / t_full:.1%} of the uninterrupted run (join of the kept segments "
              f"{r2['stages']['join']:.2f} s, decode again {r2['stages']['decode']:.2f} s); resumed after "
              f"{r2['resumed']} frames; output equal frame for frame: {same}; work folder left: {work_dir(out).exists()}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
