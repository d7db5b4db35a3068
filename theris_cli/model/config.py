"""Every dimension of the THERIS network in one frozen dataclass, and the named presets.

A checkpoint stores `ModelConfig.to_dict()` next to its weights, so a file describes the network
that reads it; `from_dict` refuses anything it does not understand instead of guessing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

SCALE = 4  # output pixels per LR pixel, along each axis


# zero blocks is a valid (ablated) network; a zero motion_radius means no matching, a zero motion_search its radius
_MAY_BE_ZERO = ("enc_blocks", "n_blocks", "dec_blocks", "motion_radius", "motion_search")

# fields added after checkpoints were shipped, with the value that reads an older file as it was meant
_ADDED_LATER = {"use_motion_align": False, "motion_dim": 24, "motion_radius": 0, "motion_search": 0,
                "use_still_blend": False, "use_still_detail": False, "use_noise_input": False}


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int = 1          # C: 1 for thermal grey levels
    dim: int = 32                 # feature channels through encoder, TDIM and TSSMs
    enc_blocks: int = 2           # residual conv blocks in the shallow encoder
    n_blocks: int = 2             # N: number of TSSMs
    d_state: int = 16             # SSM state size per group (Mamba-2 "d_state")
    expand: int = 2               # d_inner = expand * dim
    headdim: int = 16             # channels per SSM head; d_inner must be a multiple
    ngroups: int = 1              # groups sharing B and C (Mamba-2 "ngroups")
    d_conv: int = 4               # width of the causal depthwise conv before the scan, in tokens
    chunk_size: int = 64          # tokens per chunk of the PyTorch scan (speed only: results do not depend on it)
    hilbert_window: int = 8       # HMB window side in pixels (power of two)
    time_embed_dim: int = 32      # width of TDIM's time embedding e_i
    decay_bins: int = 8           # TDIM: kappa is given at this many frequencies in [0, pi], interpolated
    spectral_bins: int = 16       # spectral mask: radial-frequency bins per channel
    dec_dim: int = 16             # channels of the x2 / x4 stages of the decoder
    dec_blocks: int = 1           # residual conv blocks before the decoder's upsampling
    bidirectional: bool = False   # also scan each sequence reversed (twice the scan cost)
    use_spectral_mask: bool = True
    use_thermal_prompt: bool = True
    use_smb: bool = True          # spatial-first scan: frame after frame, raster order
    use_tmb: bool = True          # temporal-first scan: pixel after pixel, through time
    use_hmb: bool = True          # Hilbert-curve scan inside hilbert_window^2 windows
    use_motion_align: bool = False  # theris's addition: frames moved along estimated motion before TDIM (model/motion.py)
    motion_dim: int = 24          # channels of the motion-alignment CNN
    motion_radius: int = 0        # its matching's reach in half-resolution pixels (2x in LR pixels) per input frame (0: none)
    motion_search: int = 0        # how far the matching's estimate looks (>= motion_radius; 0: motion_radius; no weights)
    use_still_blend: bool = True  # theris's addition: in-between frames are the blend of their neighbours where still (model/still.py)
    use_still_detail: bool = True  # theris's addition: every frame's detail is the window's mean where still (model/still.py)
    use_noise_input: bool = False  # theris's addition: features scaled and shifted by the input's measured noise (model/network.py)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"ModelConfig.{f.name} must be an int, got {v!r}")
                least = 0 if f.name in _MAY_BE_ZERO else 1
                if v < least:
                    raise ValueError(f"ModelConfig.{f.name} must be >= {least}, got {v}")
        if (self.expand * self.dim) % self.headdim:
            raise ValueError(f"expand*dim = {self.expand * self.dim} must be a multiple of headdim = {self.headdim}")
        if ((self.expand * self.dim) // self.headdim) % self.ngroups:
            raise ValueError("the number of heads (expand*dim/headdim) must be a multiple of ngroups")
        w = self.hilbert_window
        if w & (w - 1):
            raise ValueError(f"hilbert_window must be a power of two, got {w}")
        if self.motion_search and self.motion_search < self.motion_radius:
            raise ValueError(f"motion_search ({self.motion_search}) must be 0 or at least motion_radius ({self.motion_radius})")
        if self.decay_bins < 2 or self.spectral_bins < 2:
            raise ValueError("decay_bins and spectral_bins must be >= 2 (they are interpolated)")

    @property
    def d_inner(self) -> int:
        return self.expand * self.dim

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; raises ValueError naming unknown, missing or ill-typed keys."""
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a dict, got {type(d).__name__}")
        d = {**_ADDED_LATER, **d}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        missing = sorted(set(known) - set(d))
        problems = []
        if unknown:
            problems.append(f"unknown keys {unknown}")
        if missing:
            problems.append(f"missing keys {missing}")
        for name, v in d.items():
            if name not in known:
                continue
            want = bool if known[name].type in ("bool", bool) else int
            if want is bool and not isinstance(v, bool):
                problems.append(f"{name} must be a bool, got {v!r}")
            elif want is int and (isinstance(v, bool) or not isinstance(v, int)):
                problems.append(f"{name} must be an int, got {v!r}")
        if problems:
            raise ValueError("bad model config: " + "; ".join(problems))
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    # random weights for tests: a forward on 8x8 takes milliseconds
    "tiny": ModelConfig(
        dim=8, enc_blocks=1, n_blocks=1, d_state=4, expand=2, headdim=8, hilbert_window=4,
        time_embed_dim=8, decay_bins=4, spectral_bins=4, dec_dim=4, dec_blocks=1,
    ),
    # trainable on a 2-core CPU in about an hour on 32x32 LR patches, k = 3: fwd+bwd of 8 x 4 frames
    # of 32x32 in about 0.5 s with 2 threads (2 heads and 32-token chunks are the fastest there)
    "small": ModelConfig(
        dim=24, enc_blocks=1, n_blocks=1, d_state=16, expand=2, headdim=24, chunk_size=32, hilbert_window=8,
        time_embed_dim=32, decay_bins=8, spectral_bins=16, dec_dim=12, dec_blocks=1,
    ),
    # a GPU model of a few million parameters
    "base": ModelConfig(
        dim=96, enc_blocks=3, n_blocks=6, d_state=64, expand=2, headdim=32, hilbert_window=8,
        time_embed_dim=64, decay_bins=16, spectral_bins=32, dec_dim=48, dec_blocks=2, bidirectional=True,
    ),
}
