"""Classical space-time upscalers that THERIS is compared with, on the same inputs.

Every method here is a *predictor*: it takes the LR clip `(T, 1, h, w)` float in [0, 1] (T = k+1
input frames, as `make_lr` makes them) and returns all `2T - 1` HR frames `(2T - 1, 1, 4h, 4w)`:
output frame 2i is input frame i upscaled, output frame 2i+1 lies halfway between inputs i and i+1.
Outputs are not clamped; `evaluate` clamps every method's output to [0, 1] before scoring.

* `bicubic` — `F.interpolate(mode="bicubic", align_corners=False)` ×4 of each input frame, and the
  midpoints as the mean of the two neighbouring upscaled frames (linear blend in time).
* `ffmpeg` — what FFmpeg offers: `scale=iw*4:ih*4:flags=lanczos` then
  `minterpolate=fps=2*rate:mi_mode=mci` (motion-compensated interpolation, all other options at
  FFmpeg's defaults, scene-change detection included), run through PyAV's filter graph. Three traps,
  handled here and checked by the tests:
    - minterpolate only takes 8-bit frames: fed anything deeper, the graph silently inserts a
      conversion to `gray`. So the lanczos step runs on 16-bit frames (`gray16le`, 1/65535 steps:
      no visible loss) and only minterpolate's input is rounded to 8 bits of the clip's own range.
      Input-aligned frames are taken from the 16-bit lanczos output (minterpolate copies them
      unchanged: output 2i equals input i exactly, verified in the tests), midpoints from
      minterpolate (8-bit: an RMS rounding error of 0.0011, ~59 dB, negligible next to the error of
      any interpolation).
    - minterpolate holds back the last input and the last midpoint at the end of the stream, so
      the clip is padded with one copy of its last frame and the surplus output dropped.
    - output frames are matched to times by their timestamps (output pts in 1/(2·rate) units, input
      i at 2i), not by their order, and every expected time must be present.
* `theris` lives in `evaluate.py` (it needs a model).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import numpy as np
import torch

from theris_cli.protocol import bicubic_linear


# A nominal input rate: minterpolate only needs the ratio output/input = 2, and a whole-number rate
# keeps every timestamp exact.
_RATE = 25
FFMPEG_SCALE = "iw*4:ih*4:flags=lanczos"  # filter arguments, as on an ffmpeg command line
FFMPEG_MINTERPOLATE = f"fps={2 * _RATE}:mi_mode=mci"

Predictor = Callable[[torch.Tensor], torch.Tensor]  # (T, 1, h, w) in [0, 1] -> (2T-1, 1, 4h, 4w)


def _check_lr(lr: torch.Tensor) -> None:
    if lr.dim() != 4 or lr.shape[1] != 1 or lr.shape[0] < 1:
        raise ValueError(f"expected an LR grey clip (T, 1, h, w), got shape {tuple(lr.shape)}")


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    """Bicubic ×4 per frame + linear blend in time.  (T, 1, h, w) -> (2T-1, 1, 4h, 4w)."""
    _check_lr(lr)
    return bicubic_linear(lr)


# ---------------------------------------------------------------------------------------------
# FFmpeg through PyAV


def _run_graph(frames: list[np.ndarray], pix_fmt: str, filters: list[tuple[str, str]]) -> dict[int, np.ndarray]:
    """Push `frames` (input i at time i/_RATE) through buffer → filters → buffersink.

    Returns {output pts: frame}; the sink's time base is the last filter's (1/_RATE for scale,
    1/(2·_RATE) for minterpolate). The output pixel format is forced to `pix_fmt` by a final
    `format` filter, so no conversion happens behind our back at the sink.
    """
    import av  # imported here: only the ffmpeg baseline needs libavfilter

    h, w = frames[0].shape
    graph = av.filter.Graph()
    node = graph.add(
        "buffer", f"video_size={w}x{h}:pix_fmt={pix_fmt}:time_base=1/{_RATE}:frame_rate={_RATE}/1:pixel_aspect=1/1"
    )
    for name, args in [*filters, ("format", pix_fmt)]:
        nxt = graph.add(name, args)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()

    out: dict[int, np.ndarray] = {}

    def drain() -> None:
        while True:
            try:
                frame = sink.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            out[int(frame.pts)] = frame.to_ndarray()

    for i, a in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=pix_fmt)
        vf.pts = i
        vf.time_base = Fraction(1, _RATE)
        graph.push(vf)
        drain()
    graph.push(None)  # end of stream: flush what the filters hold back
    drain()
    return out


def ffmpeg_lanczos(lr: torch.Tensor) -> torch.Tensor:
    """FFmpeg lanczos ×4 of each frame, on 16-bit frames.  (T, 1, h, w) -> (T, 1, 4h, 4w)."""
    _check_lr(lr)
    x = lr[:, 0].detach().float().clamp(0, 1).cpu().numpy()
    frames = [np.round(f * 65535.0).astype(np.uint16) for f in x]
    out = _run_graph(frames, "gray16le", [("scale", FFMPEG_SCALE)])
    missing = sorted(set(range(len(frames))) - set(out))
    if missing:
        raise RuntimeError(f"FFmpeg scale returned no frame for inputs {missing}")
    up = np.stack([out[i] for i in range(len(frames))]).astype(np.float32) / 65535.0
    return torch.from_numpy(up).unsqueeze(1).to(lr.device)


def ffmpeg_minterpolate(up: torch.Tensor) -> torch.Tensor:
    """minterpolate (mci) ×2 in time on 8-bit frames.  up: (T, 1, H, W) in [0, 1] -> (2T-1, 1, H, W).

    Output frames in time order, as minterpolate made them (8-bit levels / 255).
    """
    _check_lr(up)
    t = up.shape[0]
    frames = [np.round(f * 255.0).astype(np.uint8) for f in up[:, 0].detach().float().clamp(0, 1).cpu().numpy()]
    if t == 1:  # nothing to interpolate
        return torch.from_numpy(frames[0].astype(np.float32) / 255.0)[None, None].to(up.device)
    # One copy of the last frame: minterpolate emits output time j only once it holds the input
    # after it, so without it the last midpoint and the last input never come out.
    out = _run_graph([*frames, frames[-1]], "gray", [("minterpolate", FFMPEG_MINTERPOLATE)])
    want = range(2 * t - 1)  # output pts j in 1/(2·_RATE) = time j/2 in input frames
    missing = [j for j in want if j not in out]
    if missing:
        raise RuntimeError(f"FFmpeg minterpolate returned no frame for output times {missing} (of {2 * t - 1})")
    y = np.stack([out[j] for j in want]).astype(np.float32) / 255.0
    return torch.from_numpy(y).unsqueeze(1).to(up.device)


def ffmpeg(lr: torch.Tensor) -> torch.Tensor:
    """FFmpeg lanczos ×4 + minterpolate mci.  (T, 1, h, w) -> (2T-1, 1, 4h, 4w).

    Input-aligned frames come from the 16-bit lanczos output (which minterpolate would copy, rounded
    to 8 bits), midpoints from minterpolate.
    """
    up = ffmpeg_lanczos(lr)
    out = ffmpeg_minterpolate(up)
    out[0::2] = up
    return out


BASELINES: dict[str, Predictor] = {"bicubic": bicubic, "ffmpeg": ffmpeg}
