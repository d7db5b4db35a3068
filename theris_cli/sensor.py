"""What a thermal sensor and its file add to a low-resolution clip, at the sensor's own pixel scale.

Shared by training (`train/degrade.py` draws `SensorLevels` at random per clip) and evaluation
(`theris evaluate --degrade sensor` applies `EVAL_LEVELS` with a seed fixed per clip), the way
`protocol.py` is: `train/` and `eval/` never import each other.

An LR clip (T, C, h, w) in [0, 1] goes through, in the camera's order:

1. optics - an extra Gaussian PSF (`blur`, LR pixels);
2. fixed pattern, drawn once per clip - per-pixel gain and offset non-uniformity (`pixel_gain`,
   `pixel`), per-column and per-row offsets (`column`, `row`: the readout's stripes);
3. slow offset drift - the offset pattern moves linearly over the clip by a per-pixel and a global
   amount (`drift`: std of the change over the whole clip), as a microbolometer warms between
   flat-field corrections;
4. AGC flicker - per-frame gain and offset of the 8-bit automatic gain control (`flicker_gain`:
   relative std; `flicker_offset`: std), around the clip's mean level;
5. temporal noise - new every frame: `temporal` (std) plus a signal-dependent part whose std is
   `shot` * sqrt(level);
6. the file - lossy inter-frame compression (`codec`: "libx264" or "libx265" through PyAV at
   `crf`, on the 8-bit grey levels as yuv420p), else rounding to 2^`bits` grey levels (0: none).

All strengths are in units of the clip's range (the [0, 1] grey scale `scan_levels` maps a clip
to). Every random draw comes from the `torch.Generator` given, on the CPU: one seed, one clip.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

CODECS = ("libx264", "libx265")


@dataclass(frozen=True)
class SensorLevels:
    """The strengths of one clip's degradation (see the module docstring); zero switches a part off."""

    blur: float = 0.0  # Gaussian PSF std, LR pixels
    pixel: float = 0.0  # std of the per-pixel offset
    pixel_gain: float = 0.0  # relative std of the per-pixel gain
    column: float = 0.0  # std of the per-column offset
    row: float = 0.0  # std of the per-row offset
    drift: float = 0.0  # std of the offset change over the clip (per pixel, and as much again globally)
    flicker_gain: float = 0.0  # relative std of the per-frame gain
    flicker_offset: float = 0.0  # std of the per-frame offset
    temporal: float = 0.0  # std of the per-frame noise
    shot: float = 0.0  # std of the signal-dependent per-frame noise at level 1 (grows with sqrt(level))
    codec: str = ""  # "libx264", "libx265" or "" (none)
    crf: int = 23  # the codec's constant rate factor (higher: more loss)
    bits: int = 0  # grey levels 2^bits when there is no codec (8: 8-bit AGC output); 0: none

    def __post_init__(self) -> None:
        if self.codec and self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)} or empty, got {self.codec!r}")
        if not 0 <= self.bits <= 16:
            raise ValueError(f"bits must lie in 0..16, got {self.bits}")

    def to_dict(self) -> dict:
        return asdict(self)


# `theris evaluate --degrade sensor`: the levels measured on the Lepton clips (benchmarks/sensor_noise.py):
# temporal noise 0.6 %, per-pixel offsets 0.4 %, column offsets 0.3 % of the clip's range, 8-bit output
EVAL_LEVELS = SensorLevels(pixel=0.004, column=0.003, temporal=0.005, shot=0.002, bits=8)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of the last two axes, reflect-padded.  x: (..., H, W), sigma in pixels."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, h, w)
    # reflect padding needs pad < size; fall back to replicate for tiny frames
    mode = "reflect" if radius < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(*lead, h, w)


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen)


def degrade(lr: torch.Tensor, levels: SensorLevels, gen: torch.Generator) -> torch.Tensor:
    """One LR clip (T, C, h, w) in [0, 1] as the sensor and its file would give it; a new float
    tensor in [0, 1] of the same shape and dtype. Random draws from `gen` (CPU), in a fixed order."""
    if lr.dim() != 4:
        raise ValueError(f"degrade needs one clip (T, C, h, w), got shape {tuple(lr.shape)}")
    T, C, h, w = lr.shape
    x = lr.detach().float().cpu()
    x = gaussian_blur(x, levels.blur)
    # fixed pattern, one per clip: (1, C, h, w) maps broadcast over the frames
    gain = 1 + levels.pixel_gain * _randn(gen, 1, C, h, w)
    offset = (levels.pixel * _randn(gen, 1, C, h, w) + levels.column * _randn(gen, 1, C, 1, w)
              + levels.row * _randn(gen, 1, C, h, 1))
    # drift: the offsets move linearly from frame 0 to frame T-1 by a per-pixel and a global amount
    ramp = torch.linspace(0.0, 1.0, T).view(T, 1, 1, 1) if T > 1 else torch.zeros(1, 1, 1, 1)
    change = levels.drift * (_randn(gen, 1, C, h, w) + _randn(gen, 1, C, 1, 1))
    x = x * gain + offset + ramp * change
    # AGC flicker around the clip's mean level, one gain and offset per frame
    mean = x.mean()
    a = 1 + levels.flicker_gain * _randn(gen, T, 1, 1, 1)
    b = levels.flicker_offset * _randn(gen, T, 1, 1, 1)
    x = (x - mean) * a + mean + b
    # temporal noise, new every frame, with a signal-dependent part
    std = levels.temporal + levels.shot * x.clamp(min=0).sqrt()
    x = (x + std * _randn(gen, T, C, h, w)).clamp(0.0, 1.0)
    if levels.codec:
        x = compress(x, levels.codec, levels.crf)
    elif levels.bits:
        n = 2 ** levels.bits - 1
        x = torch.round(x * n) / n
    return x.to(lr.dtype)


def compress(x: torch.Tensor, codec: str = "libx264", crf: int = 23) -> torch.Tensor:
    """A clip (T, C, h, w) in [0, 1] through an 8-bit yuv420p `codec` at `crf` and back (grey in
    the luma plane); frames are padded by edge repetition to multiples of 16 for the encoder and
    cropped back. Returns a float tensor on 8-bit levels."""
    import io

    import av

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    T, C, h, w = x.shape
    H, W = -(-h // 16) * 16, -(-w // 16) * 16
    grey = (x.float().mean(dim=1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # (T, h, w)
    grey = np.pad(grey, ((0, 0), (0, H - h), (0, W - w)), mode="edge")
    buf = io.BytesIO()
    options = {"crf": str(int(crf)), "preset": "veryfast"}
    if codec == "libx265":
        options["x265-params"] = "log-level=none"
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        chroma = np.full((H // 2, W // 2), 128, np.uint8)
        for t in range(T):
            yuv = np.concatenate([grey[t], chroma.reshape(-1, W), chroma.reshape(-1, W)], axis=0)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    buf.seek(0)
    got = []
    with av.open(buf, "r") as inp:
        for frame in inp.decode(video=0):
            got.append(frame.to_ndarray()[:h, :w])  # yuv420p: the luma plane is the first H rows
    if len(got) != T:
        raise RuntimeError(f"{codec} returned {len(got)} frames for {T}")
    y = torch.from_numpy(np.stack(got)).float().div_(255).view(T, 1, h, w)
    return y.expand(T, C, h, w).clone()
