"""Training-time extras on top of the clean protocol in `theris_cli/protocol.py`.

The protocol itself (`protocol.make_lr`: every other HR frame, antialiased bicubic x1/4, clamped to
[0, 1]) is shared by training and `theris evaluate`, so both score the same task; it lives there.

Optional, training only (`Extras` / `apply_extras`): real recordings are not clean bicubic
downscales, so the LR clip can be made worse in ways a real thermal camera and its file are worse,
with parameters drawn once per clip from a seeded `torch.Generator` (deterministic per seed):

* extra optical blur - Gaussian PSF, sigma in LR pixels (a softer lens / focus than bicubic assumes);
* noise - Gaussian read noise plus signal-dependent shot-like noise (std grows with sqrt(level)),
  drawn independently per frame (temporal noise, NETD);
* compression - 8x8 block-DCT quantisation as in JPEG / H.264 intra blocks (blockiness, lost detail);
* quantisation - rounding to 2^bits grey levels (8-bit AGC output, 14-bit raw).

Sensor (`SensorRanges` / `apply_sensor`): the noise, fixed pattern, drift, AGC flicker and lossy
inter-frame compression a thermal camera and its file add at the LR pixel scale (`theris_cli.sensor`,
shared with `theris evaluate --degrade sensor`), with strengths drawn per clip from ranges that span
what `benchmarks/sensor_noise.py` measures on real clips.

Evaluation uses only `protocol.make_lr` (and `--degrade sensor` its fixed levels); neither touches
the HR targets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from theris_cli.ops import dct_matrix
from theris_cli.sensor import CODECS, SensorLevels, degrade, gaussian_blur


# ---------------------------------------------------------------------------------------------
# Training-time extras


@dataclass(frozen=True)
class Extras:
    """Probabilities and ranges of the optional LR degradations (all in [0, 1] grey units).

    Each extra is applied to a clip with its probability; its strength is drawn uniformly in its range,
    once per clip (noise samples are new per frame). The defaults are mild: they teach robustness to
    real files without making the clean task much harder.
    """

    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.2, 0.8)  # Gaussian PSF std, LR pixels
    noise_p: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.01)  # additive Gaussian std (read noise / NETD)
    shot_std: tuple[float, float] = (0.0, 0.01)  # std at level 1.0 of the sqrt(level) noise
    block_p: float = 0.2
    block_step: tuple[float, float] = (0.01, 0.04)  # DCT-coefficient quantiser step (orthonormal 8x8 DCT)
    quant_p: float = 0.3
    quant_bits: tuple[int, int] = (8, 8)  # grey levels 2^bits (8-bit AGC output; 14 for raw)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def block_dct_quantise(x: torch.Tensor, step: float, block: int = 8) -> torch.Tensor:
    """JPEG-like compression: orthonormal DCT of each `block`x`block` tile, coefficients rounded to a
    multiple of `step` (coarser for high frequencies, as JPEG's tables are), inverse DCT.

    x: (..., H, W); edges that do not fill a whole tile are left as they are.
    """
    if step <= 0:
        return x
    h, w = x.shape[-2:]
    hb, wb = h // block * block, w // block * block
    if hb == 0 or wb == 0:
        return x
    d = dct_matrix(block, x.dtype, x.device)
    f = torch.arange(block, dtype=x.dtype, device=x.device)
    q = step * (1 + (f[:, None] + f[None, :]) / 2)  # quantiser step per coefficient (u, v)
    core = x[..., :hb, :wb]
    tiles = core.reshape(*x.shape[:-2], hb // block, block, wb // block, block).transpose(-3, -2)  # (..., by, bx, 8, 8)
    coef = d @ tiles @ d.T
    coef = torch.round(coef / q) * q
    rec = (d.T @ coef @ d).transpose(-3, -2).reshape(*x.shape[:-2], hb, wb)
    out = x.clone()
    out[..., :hb, :wb] = rec
    return out


def apply_extras(lr: torch.Tensor, gen: torch.Generator, extras: Extras = Extras()) -> torch.Tensor:
    """Make one LR clip (T, C, h, w) in [0, 1] look more like a real recording; returns a new tensor in [0, 1].

    Order follows the camera: optics (blur) -> sensor (noise) -> file (compression, quantisation).
    All random draws come from `gen` (on the CPU), so a seed gives the same clip every time.
    """
    if lr.dim() != 4:
        raise ValueError(f"apply_extras needs one clip (T, C, h, w), got shape {tuple(lr.shape)}")
    x = lr.float()
    u = torch.rand(4, generator=gen).tolist()  # which extras this clip gets
    if u[0] < extras.blur_p:
        x = gaussian_blur(x, _uniform(gen, *extras.blur_sigma))
    if u[1] < extras.noise_p:
        read = _uniform(gen, *extras.noise_std)
        shot = _uniform(gen, *extras.shot_std)
        std = read + shot * x.clamp(min=0).sqrt()
        x = x + std * torch.randn(x.shape, generator=gen).to(x.device)
    x = x.clamp(0.0, 1.0)
    if u[2] < extras.block_p:
        x = block_dct_quantise(x, _uniform(gen, *extras.block_step)).clamp(0.0, 1.0)
    if u[3] < extras.quant_p:
        bits = int(torch.randint(extras.quant_bits[0], extras.quant_bits[1] + 1, (), generator=gen))
        levels = 2**bits - 1
        x = torch.round(x * levels) / levels
    return x.to(lr.dtype)


# ---------------------------------------------------------------------------------------------
# Sensor


@dataclass(frozen=True)
class SensorRanges:
    """Ranges of the sensor degradation's strengths (`theris_cli.sensor.SensorLevels`), drawn
    uniformly once per clip, in units of the clip's range.

    The ranges span what benchmarks/sensor_noise.py measures on the Lepton clips (temporal noise,
    column and row offsets) and start at zero, so that clean inputs stay part of the task; the TNO
    and VOT-TIR clips' temporal noise lies above them.
    """

    temporal: tuple[float, float] = (0.0, 0.012)
    shot: tuple[float, float] = (0.0, 0.006)
    pixel: tuple[float, float] = (0.0, 0.008)
    pixel_gain: tuple[float, float] = (0.0, 0.02)
    column: tuple[float, float] = (0.0, 0.010)
    row: tuple[float, float] = (0.0, 0.004)
    drift: tuple[float, float] = (0.0, 0.005)
    flicker_gain: tuple[float, float] = (0.0, 0.02)
    flicker_offset: tuple[float, float] = (0.0, 0.01)
    blur_p: float = 0.3
    blur: tuple[float, float] = (0.2, 0.8)  # Gaussian PSF std, LR pixels
    codec_p: float = 0.25  # share of clips through H.264 / H.265 (about 20 ms a clip)
    crf: tuple[int, int] = (18, 32)
    bits_p: float = 0.7  # share of the other clips rounded to 8-bit grey levels

    def to_dict(self) -> dict:
        """The ranges as JSON-friendly values (a training checkpoint keeps them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SensorRanges":
        """Ranges from `to_dict`'s form; fields it lacks keep their defaults, unknown ones raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown sensor range {unknown[0]!r}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})

    def draw(self, gen: torch.Generator) -> SensorLevels:
        """One clip's SensorLevels; a fixed number of draws from `gen` whatever comes out."""
        u = torch.rand(13, generator=gen).tolist()

        def pick(i: int, lo_hi: tuple[float, float]) -> float:
            return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u[i]

        use_codec = u[10] < self.codec_p
        return SensorLevels(
            temporal=pick(0, self.temporal), shot=pick(1, self.shot), pixel=pick(2, self.pixel),
            pixel_gain=pick(3, self.pixel_gain), column=pick(4, self.column), row=pick(5, self.row),
            drift=pick(6, self.drift), flicker_gain=pick(7, self.flicker_gain),
            flicker_offset=pick(8, self.flicker_offset),
            blur=pick(9, self.blur) if u[9] < self.blur_p else 0.0,
            codec=CODECS[int(u[11] * len(CODECS)) % len(CODECS)] if use_codec else "",
            crf=int(round(pick(12, self.crf))),
            bits=8 if not use_codec and u[12] < self.bits_p else 0,
        )


def apply_sensor(lr: torch.Tensor, gen: torch.Generator, ranges: SensorRanges = SensorRanges()) -> torch.Tensor:
    """One LR clip (T, C, h, w) in [0, 1] with a sensor degradation drawn from `ranges`; a new tensor."""
    return degrade(lr, ranges.draw(gen), gen)
