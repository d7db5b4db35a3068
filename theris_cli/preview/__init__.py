"""`theris preview`: one window of a video upscaled, as one PNG to look at before a long run.

    make_preview("in.mkv", "preview.png", UpscaleOptions(device="cpu"), at=12.5)

The frames come from the same code as `upscale_video`: the video's levels (`scan_levels`), the same
weights, device, precision, window and tiles, and the same checks and warnings (`engine.prepare`), on the
one window of input frames around the chosen time. Beside it the classical baseline that
`theris evaluate` scores (`eval.baselines.bicubic`: bicubic x4, linear blend in time), and the
input itself (nearest neighbour x4, so its pixels stay visible). Rows: the input-aligned frame at
TIME, the interpolated frame after it (time + 1/temporal_factor input frames), and a zoom of the
busiest region of the interpolated frame; the image layout is `preview_image.py`.

Upscale blends neighbouring windows where they overlap, so its frames can differ slightly from
this single window's. For 16-bit video `scan_levels` reads the whole file once, as upscale does;
then the whole file is decoded once more, keeping only the window (no seeking: a damaged or
truncated file fails here as it would in upscale).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from theris_cli.errors import UsageError
from theris_cli.engine.options import UpscaleOptions
from theris_cli.preview.image import Panel, PreviewRow

ZOOM = 2  # screen pixels per HR pixel in the zoom row


@dataclass
class PreviewResult:
    src: str
    dst: str
    at: float  # seconds: the time of the input-aligned frame
    frame: int  # its index in the input
    size: tuple[int, int]  # (width, height) of the PNG
    weights: str
    weights_trained: Optional[bool]
    device: str
    seconds: float
    caption: str
    rows: list[PreviewRow] = field(default_factory=list)  # what the picture shows, top to bottom
    region: tuple[int, int, int, int] = (0, 0, 0, 0)  # (x0, y0, x1, y1) of the input shown, LR pixels


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:02.5`` (m:s) or ``1:00:02`` (h:m:s); UsageError otherwise."""
    s = str(text).strip()
    if not re.fullmatch(r"(\d+:){0,2}\d+(\.\d*)?|\.\d+", s):
        raise UsageError(f"--at {text!r} is not a time; give seconds (12.5) or m:ss (1:02.5)")
    seconds = 0.0
    for part in s.split(":"):
        seconds = 60 * seconds + float(part)
    return seconds


def _fmt_time(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:05.2f}" if m else f"{s:.2f} s"


def _window(src: Path, levels, index: int, length: int) -> tuple[int, list[np.ndarray], bool]:
    """Decode the ``length`` input frames around ``index`` (it sits second of four, so that the
    interval after it is the window's middle one): (first index, frames, whether the video ended before
    the window's end).

    The rest of the video is decoded too (and dropped), as upscale decodes it: a file damaged or
    truncated after the window is refused here as it would be there."""
    from theris_cli.video import read_frames

    lead = max(0, (length - 2) // 2)  # frames before `index`
    last = index + (length - 1 - lead)
    buf: deque = deque(maxlen=length)
    frames = read_frames(src)
    n = 0  # frames decoded
    try:
        for n, raw in enumerate(frames, 1):
            if n - 1 <= last:
                buf.append(levels.to_unit(raw))
    finally:
        frames.close()
    seen = min(n, last + 1)  # frames up to the window's end
    return seen - len(buf), list(buf), n <= last  # ended: the video is shorter than the window needs


def busiest_box(a: np.ndarray, b: np.ndarray, bw: int, bh: int) -> tuple[int, int]:
    """Top-left (x, y) of the ``bw`` x ``bh`` box with the most detail and motion between two
    frames (H, W): summed gradient magnitude of both plus their absolute difference."""
    h, w = a.shape
    bw, bh = min(bw, w), min(bh, h)
    score = np.abs(b - a)
    for f in (a, b):  # along an axis of one pixel there is no gradient (np.gradient needs two)
        gy = np.gradient(f, axis=0) if h > 1 else np.zeros_like(f)
        gx = np.gradient(f, axis=1) if w > 1 else np.zeros_like(f)
        score = score + np.hypot(gx, gy)
    c = np.zeros((h + 1, w + 1))
    c[1:, 1:] = score.cumsum(0).cumsum(1)  # box sums in O(1) each
    sums = c[bh:, bw:] - c[:-bh, bw:] - c[bh:, :-bw] + c[:-bh, :-bw]  # (h - bh + 1, w - bw + 1)
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y)


def _region(pair: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) in LR pixels of what the panels show: the whole frame where its upscale
    fits a panel 1:1, else the busiest region that fills one (so the model's time stays that of a
    small frame, whatever the camera)."""
    from theris_cli.model.config import SCALE
    from theris_cli.preview.image import PANEL_BOX

    h, w = pair.shape[-2:]
    cw, ch = min(w, PANEL_BOX[0] // SCALE), min(h, PANEL_BOX[1] // SCALE)
    cx, cy = busiest_box(pair[0], pair[-1], cw, ch) if (cw, ch) != (w, h) else (0, 0)
    return cx, cy, cw, ch


def _rows(x: torch.Tensor, k: int, region: tuple[int, int, int, int], margin: int, up, trained: Optional[bool],
          index: int, fps: Fraction, interp: bool) -> tuple[list[PreviewRow], tuple[int, int, int, int]]:
    """The picture's rows from the window ``x`` (T, 1, h, w), the aligned frame at ``k``: theris
    (``up``) and bicubic run on the region plus ``margin`` LR pixels each side, as upscale's tiles
    are, and cut back to it; the zoom row's box in the panels' (upscaled) pixels."""
    from theris_cli.eval.baselines import bicubic
    from theris_cli.model.config import SCALE

    cx, cy, cw, ch = region
    h, w = x.shape[-2:]
    x0, y0 = max(0, cx - margin), max(0, cy - margin)
    xc = x[:, :, y0 : min(h, cy + ch + margin), x0 : min(w, cx + cw + margin)]
    cut = (slice(None), 0, slice(SCALE * (cy - y0), SCALE * (cy - y0 + ch)), slice(SCALE * (cx - x0), SCALE * (cx - x0 + cw)))
    f = up.factor
    y = up.run_window(xc)[cut].numpy()  # (M, 4ch, 4cw) at input times 0, 1/f, 2/f, ... of the window
    base = bicubic(xc[k : k + (2 if interp else 1)])[0::2][cut].numpy()  # frames index, index + 1
    near = x[k, 0, cy : cy + ch, cx : cx + cw].numpy().repeat(SCALE, 0).repeat(SCALE, 1)  # nearest neighbour x4

    name = "theris" if trained is not False else "theris (UNTRAINED)"
    where = f" · region x {cx}-{cx + cw}, y {cy}-{cy + ch} of {w}x{h}" if (cw, ch) != (w, h) else ""
    rows = [PreviewRow(
        f"input-aligned frame {index} · t = {_fmt_time(float(index / fps))}{where}",
        [Panel("input · nearest x4", near), Panel("bicubic x4", base[0]), Panel(name, y[f * k])],
    )]
    if interp:
        w_next = 1.0 / f  # the interpolated frame lies 1/f of an input interval after `index`
        t_mid = float(Fraction(index * f + 1, f) / fps)
        rows.append(PreviewRow(
            f"interpolated frame · t = {_fmt_time(t_mid)} (between input frames {index} and {index + 1}){where}",
            [Panel(f"input · frame {index} held", near),
             Panel("bicubic x4 + linear blend", (1 - w_next) * base[0] + w_next * base[1]),
             Panel(name, y[f * k + 1])],
        ))
    zw, zh = max(1, cw // ZOOM), max(1, ch // ZOOM)  # LR pixels whose upscale fills a panel at ZOOM x
    shown = x[k : k + (2 if interp else 1), 0, cy : cy + ch, cx : cx + cw].numpy()  # the input on the panels
    bx, by = busiest_box(shown[0], shown[-1], zw, zh)
    box = (SCALE * bx, SCALE * by, SCALE * (bx + zw), SCALE * (by + zh))
    zoomed = rows[-1]
    rows.append(PreviewRow(
        f"zoom x{ZOOM} of the boxed region ({zoomed.title.split(' · ')[0]})",
        [Panel(p.label, p.image[box[1] : box[3], box[0] : box[2]]) for p in zoomed.panels],
    ))
    return rows, box


def make_preview(
    src: str | Path,
    dst: str | Path = "preview.png",
    options: Optional[UpscaleOptions] = None,
    *,
    at: Optional[float] = None,
    overwrite: bool = False,
    model: Optional[torch.nn.Module] = None,
) -> PreviewResult:
    """Write a side-by-side PNG of input, bicubic + linear and theris around ``at`` seconds.

    ``at``: the input-aligned frame's time (default: the middle of the video when its length is
    known, else the start). Errors are TherisErrors with one line, as for `upscale_video`; the PNG is
    written under a temporary name and renamed when complete.
    """
    from theris_cli.engine.infer import DEFAULT_TILE_OVERLAP
    from theris_cli.engine.prepare import prepare
    from theris_cli.model.config import SCALE
    from theris_cli.outputs import atomic_output
    from theris_cli.preview.image import compose

    t_start = time.perf_counter()
    opts = options or UpscaleOptions()
    if at is not None and (not math.isfinite(at) or at < 0):
        raise UsageError(f"--at must be a time from 0 s, got {at}")

    def check_output(dst: Path) -> None:
        if dst.suffix.lower() != ".png":
            raise UsageError(f"{dst}: the preview is a PNG image; give a name ending in .png")

    run = prepare(src, dst, opts, model=model, overwrite=overwrite, check_output=check_output)
    src, dst, info, levels = run.src, run.dst, run.info, run.levels
    weights, trained, dev = run.network.name, run.network.trained, run.network.device
    fps = info.fps
    if at is None:
        at = float(Fraction(info.frame_count // 2) / fps) if info.frame_count else 0.0
    index = int(math.floor(at * fps + 1e-6))  # the frame on screen at `at`
    start, frames, ended = _window(src, levels, index, opts.window)
    n_seen = start + len(frames)
    if index >= n_seen:
        length = f"{n_seen} frames, {_fmt_time(float(n_seen / fps))}"
        raise UsageError(f"--at {at:g} s is past the end of {src} ({length}); choose an earlier time")
    interp = opts.temporal_factor > 1 and len(frames) >= 2
    if interp and index == n_seen - 1 and ended:  # the last frame: nothing after it to interpolate to
        index -= 1
    at = float(index / fps)

    x = torch.from_numpy(np.stack(frames))[:, None]  # (T, 1, h, w), unit range
    k = index - start  # the input-aligned frame's place in the window
    pair = x[k : k + (2 if interp else 1), 0].numpy()  # (1 or 2, h, w): the frames the rows are about
    region, margin = _region(pair), DEFAULT_TILE_OVERLAP
    up = run.network.upscaler()
    rows, box = _rows(x, k, region, margin, up, trained, index, fps, interp)

    # Pillow's bundled font has no x-sign or arrow glyphs: the picture's text is ASCII and "·"
    counts = f" (counts {levels.lo}-{levels.hi})" if levels.bit_depth == 16 else ""
    caption = (
        f"{src.name} · {info.width}x{info.height} {levels.bit_depth}-bit{counts} {float(fps):g} fps -> {SCALE * info.width}x"
        f"{SCALE * info.height} {float(fps * opts.temporal_factor):g} fps · t = {_fmt_time(at)} · weights {weights}"
        f"{'' if trained is not False else ' (random, untrained)'} on {dev.type} · window {opts.window} · "
        + ("grey from false colour (its luma), not temperature" if info.palette_suspected else "grey, white hot")
    )
    cx, cy, cw, ch = region
    shown = pair[:, cy : cy + ch, cx : cx + cw]
    lo, hi = np.percentile(shown, [0.5, 99.5])  # one grey stretch for every panel, from the input shown
    image = compose(rows, caption, (float(lo), float(hi)), box, zoom=ZOOM)
    with atomic_output(dst, overwrite=overwrite, src=src) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return PreviewResult(
        src=str(src), dst=str(dst), at=at, frame=index, size=image.size, weights=weights,
        weights_trained=trained, device=str(dev), seconds=time.perf_counter() - t_start, caption=caption,
        rows=rows, region=(cx, cy, cx + cw, cy + ch),
    )
