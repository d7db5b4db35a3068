"""One fixed affine map per video between raw sample values and the network's [0, 1].

    levels = scan_levels("in.mkv")          # 8-bit: 0..255; 16-bit: min..max over every frame
    x = levels.to_unit(frame)               # float32, lo -> 0.0, hi -> 1.0
    raw = levels.from_unit(y)               # uint8/uint16: round, clip to the container's range

The map is fixed for the whole video, so windows and tiles see the same scale (no flicker), and it
never clips the video's own range: every raw value in lo..hi maps into [0, 1], and
`from_unit(to_unit(raw)) == raw` for all of them. Network outputs outside [0, 1] are kept by
`from_unit` as far as the container allows (clipped to 0..255 or 0..65535 only).

Why min/max for 16-bit: radiometric cameras fill only part of 0..65535 (a 14-bit Lepton uses a few
thousand counts), so 0..65535 would squash the scene into a sliver of [0, 1]; 8-bit video already
spans its range, so it keeps 0..255 and needs no pre-pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Levels", "scan_levels"]


FROM_UNIT_CHUNK = 1 << 18  # values per step of `Levels.from_unit` (2 MiB of float64)


@dataclass(frozen=True)
class Levels:
    """Raw value `lo` maps to 0.0 and `hi` to 1.0; `bit_depth` (8 or 16) is the container's."""

    lo: int
    hi: int
    bit_depth: int

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        top = (1 << self.bit_depth) - 1
        if not (0 <= self.lo < self.hi <= top):
            raise ValueError(f"need 0 <= lo < hi <= {top}, got lo={self.lo}, hi={self.hi}")
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", int(self.hi))

    @classmethod
    def full_range(cls, bit_depth: int) -> Levels:
        """0..255 or 0..65535: the map for 8-bit video, or for 16-bit when no scan is wanted."""
        return cls(0, (1 << bit_depth) - 1, bit_depth)

    @classmethod
    def from_range(cls, lo: int, hi: int, bit_depth: int) -> Levels:
        """Levels from an observed min/max; a flat video (hi == lo) gets hi = lo + 1."""
        lo, hi = int(lo), int(hi)
        if hi <= lo:
            top = (1 << bit_depth) - 1
            lo, hi = (lo, lo + 1) if lo < top else (top - 1, top)
        return cls(lo, hi, bit_depth)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth == 8 else np.uint16)

    def to_unit(self, raw: Any) -> np.ndarray:
        """Raw samples (any shape, any integer or float array) -> float32 with lo -> 0, hi -> 1.

        Not clipped: a value outside lo..hi (another video's frame) lands outside [0, 1].
        """
        raw = np.asarray(raw)
        # float64 for the subtraction so that 16-bit values stay exact before the final cast
        return ((raw.astype(np.float64) - self.lo) / (self.hi - self.lo)).astype(np.float32)

    def from_unit(self, x: Any) -> np.ndarray:
        """Unit-range values (numpy array or torch tensor, any shape) -> uint8/uint16 raw samples.

        Exact inverse of `to_unit` on lo..hi: float32 keeps 24 bits, so the error of a round trip is
        below 0.01 of a count even for hi - lo = 65535, and rounding recovers the value.
        """
        if hasattr(x, "detach"):  # a torch tensor; avoid importing torch here
            x = x.detach().float().cpu().numpy()
        x = np.asarray(x)
        out = np.empty(x.shape, self.dtype)
        src, dst = x.reshape(-1), out.reshape(-1)
        top = (1 << self.bit_depth) - 1
        # float64, in place in one temporary of FROM_UNIT_CHUNK values reused along the frame (a
        # whole HR frame's would be 42 MB at 2560x2048, mapped and faulted in for every frame)
        buf = np.empty(min(src.size, FROM_UNIT_CHUNK), np.float64)
        for i in range(0, src.size, FROM_UNIT_CHUNK):
            raw = buf[:min(FROM_UNIT_CHUNK, src.size - i)]
            raw[...] = src[i:i + raw.size]
            np.multiply(raw, self.hi - self.lo, out=raw)
            np.add(raw, self.lo, out=raw)
            np.rint(raw, out=raw)
            np.clip(raw, 0, top, out=raw)
            dst[i:i + raw.size] = raw
        return out

    def to_dict(self) -> dict[str, int]:
        """JSON-able, for checkpoints and logs."""
        return {"lo": self.lo, "hi": self.hi, "bit_depth": self.bit_depth}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Levels:
        return cls(int(d["lo"]), int(d["hi"]), int(d["bit_depth"]))


def scan_levels(path: str | Path) -> Levels:
    """The video's fixed map: 0..255 for 8-bit (no decoding), min..max over all frames for 16-bit.

    The 16-bit case decodes the whole video once (a pre-pass); memory stays one frame.
    Raises InputError for anything `read_frames` would reject.
    """
    from .decode import read_frames  # local import: decode imports probe, which is heavier
    from .probe import probe

    info = probe(path)
    if info.bit_depth == 8:
        return Levels.full_range(8)
    lo, hi = None, None
    for frame in read_frames(path):
        f_lo, f_hi = int(frame.min()), int(frame.max())
        lo = f_lo if lo is None else min(lo, f_lo)
        hi = f_hi if hi is None else max(hi, f_hi)
    assert lo is not None and hi is not None, "read_frames yields at least one frame or raises"
    return Levels.from_range(lo, hi, 16)
