"""Benchmark clips cut from a real video: the first N frames, area-downscaled to a size.

    python benchmarks/clips.py /work/shared/data/ir/flir_csq_hand16.mkv /tmp/hand_256x192.mkv --frames 15 --size 256x192

Writes grey FFV1 (16-bit where the source is deeper than 8 bits) at the source's frame rate, so the
benchmarks can run on sizes that no shipped clip has without copying data into the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def unit_frames(path: str | Path, limit: int):
    """The first ``limit`` frames of a clip on [0, 1] as theris reads them (its `scan_levels` map):
    a list of (h, w) float32 tensors, and the Levels."""
    import torch

    from theris_cli.video import read_frames, scan_levels

    levels = scan_levels(path)
    frames = []
    for raw in read_frames(path):
        if len(frames) >= limit:
            break
        frames.append(torch.from_numpy(levels.to_unit(raw)))
    return frames, levels


def make_clip(src: str | Path, dst: str | Path, frames: int, size: tuple[int, int] | None = None) -> Path:
    """The first ``frames`` frames of ``src`` as grey, area-resized to ``size`` = (width, height)."""
    import torch
    import torch.nn.functional as F

    from theris_cli.video.decode import decode_av_frames, frame_to_grey, open_container, video_stream
    from theris_cli.video.integrity import stream_rate

    with open_container(src) as c:
        rate = stream_rate(video_stream(c, src))
    grey = []
    for i, f in enumerate(decode_av_frames(src)):
        if i >= frames:
            break
        grey.append(frame_to_grey(f))
    if not grey:
        raise ValueError(f"{src}: no frames")
    deep = grey[0].dtype != np.uint8
    x = torch.from_numpy(np.stack(grey).astype(np.float32))[:, None]  # (T, 1, h, w)
    if size is not None:
        w, h = size
        x = F.interpolate(x, size=(h, w), mode="area" if h <= x.shape[-2] else "bicubic", align_corners=None)
    hi = 65535 if deep else 255
    arr = x[:, 0].round().clamp(0, hi).numpy().astype(np.uint16 if deep else np.uint8)
    dst = Path(dst)
    with av.open(str(dst), "w") as out:
        s = out.add_stream("ffv1", rate=rate or 25)
        s.width, s.height = arr.shape[2], arr.shape[1]
        s.pix_fmt = "gray16le" if deep else "gray"
        for a in arr:
            for p in s.encode(av.VideoFrame.from_ndarray(a, format=s.pix_fmt)):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--size", type=parse_size, default=None, help="WxH (default: the source's)")
    args = ap.parse_args(argv)
    make_clip(args.src, args.dst, args.frames, args.size)
    print(args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
