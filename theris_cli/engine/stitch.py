"""Overlap blending in output coordinates: tiles in space (feathered), windows in time (cross-faded).

Both blends are normalised weighted sums: every contribution adds ``weight * value`` to a numerator
and ``weight`` to a denominator, and the result is their ratio. Weights are positive wherever a
prediction is made, so a pixel or frame predicted once is returned exactly, and where predictions
overlap the weights ramp linearly from one to the other, so there is no seam (a step) anywhere. (In
time a window's crossed edge frame would have weight 0: it is not predicted, its neighbour predicts
that time; see theris_cli.engine.windows.time_weight.)
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from theris_cli.engine.windows import Tile, Window, time_weight, window_targets

# --------------------------------------------------------------------------------------------
# space


def _ramp(size: int, ramp_in: int, ramp_out: int) -> torch.Tensor:
    """1-D weights of length ``size``: rising over the first ``ramp_in`` samples, falling over the last
    ``ramp_out``, 1 in between. Sample p of a ramp of n gets (p + 0.5) / n: never 0."""
    w = torch.ones(size)
    if ramp_in > 0:
        n = min(ramp_in, size)
        w[:n] = torch.minimum(w[:n], (torch.arange(n) + 0.5) / ramp_in)
    if ramp_out > 0:
        n = min(ramp_out, size)
        w[size - n :] = torch.minimum(w[size - n :], ((torch.arange(n) + 0.5) / ramp_out).flip(0))
    return w


def feather(tile: Tile, height: int, width: int, overlap: int, scale: int) -> torch.Tensor:
    """(scale*th, scale*tw) blend weights of one tile's high-resolution output.

    ``height``, ``width`` and ``overlap`` are in LR pixels. Edges of the tile that lie on the frame's
    border keep weight 1 (no other tile covers them); inner edges ramp over ``scale * overlap`` HR
    pixels.
    """
    ramp = scale * overlap
    wy = _ramp(scale * (tile.y1 - tile.y0), ramp if tile.y0 > 0 else 0, ramp if tile.y1 < height else 0)
    wx = _ramp(scale * (tile.x1 - tile.x0), ramp if tile.x0 > 0 else 0, ramp if tile.x1 < width else 0)
    return wy[:, None] * wx[None, :]


class TileCanvas:
    """Accumulates tiles of a window's HR output: ``add`` each tile, then ``result``.

    Shapes: output (M, C, scale*H, scale*W) for M target times; tiles (M, C, scale*th, scale*tw).
    """

    def __init__(self, frames: int, channels: int, height: int, width: int, scale: int, overlap: int,
                 device: torch.device | str = "cpu"):
        self.height, self.width, self.scale, self.overlap = height, width, scale, overlap
        self.acc = torch.zeros(frames, channels, scale * height, scale * width, device=device)
        self.wsum = torch.zeros(scale * height, scale * width, device=device)

    def add(self, tile: Tile, hr: torch.Tensor) -> None:
        s = self.scale
        w = feather(tile, self.height, self.width, self.overlap, s).to(self.acc.device)
        ys, xs = slice(s * tile.y0, s * tile.y1), slice(s * tile.x0, s * tile.x1)
        assert hr.shape[-2:] == w.shape, f"tile output {tuple(hr.shape)} does not match tile {tile} x{s}"
        self.acc[:, :, ys, xs] += hr.float() * w
        self.wsum[ys, xs] += w

    def result(self) -> torch.Tensor:
        return self.acc / self.wsum


# --------------------------------------------------------------------------------------------
# time


class TemporalBlender:
    """Cross-fades overlapping windows into a stream of output frames, in order.

    ``add`` a window's predictions (M, C, H, W) at its output indices; ``pop_ready(limit)`` yields the
    finished frames with output index < ``limit`` (no later window may touch them); ``finish(n)`` yields
    the rest for a video of ``n`` input frames, then repeats the last frame so that ``factor * n`` frames
    come out in all (see theris_cli.engine.windows: the last input frame is held for its display time).
    Memory: only frames not yet popped are kept, i.e. about one window's worth.
    """

    def __init__(self, factor: int):
        self.factor = factor
        self.num: dict[int, torch.Tensor] = {}
        self.den: dict[int, float] = {}
        self.next_out = 0  # index of the next frame to yield
        self.last: torch.Tensor | None = None

    def add(self, window: Window, preds: torch.Tensor, first: bool, last: bool,
            local: Sequence[int] | None = None) -> None:
        """Add a window's predictions (M, C, H, W) at its local output indices ``local`` (default
        ``window_targets``: the times with weight > 0; predictions at others are not needed)."""
        if local is None:
            local = window_targets(window.length, self.factor, first, last)
        out = window.output_range(self.factor)
        assert preds.shape[0] == len(local), f"window {window} needs {len(local)} predictions, got {preds.shape[0]}"
        for p, j in zip(preds, local):
            m = out[j]
            if m < self.next_out:
                raise RuntimeError(f"output frame {m} was already emitted; windows out of order")
            w = time_weight(j, self.factor, window.length, first, last)
            if w == 0:
                continue
            p = p.float() * w
            if m in self.num:
                self.num[m] += p
                self.den[m] += w
            else:
                self.num[m] = p
                self.den[m] = w

    def pop_ready(self, limit: int) -> Iterator[torch.Tensor]:
        while self.next_out < limit:
            m = self.next_out
            if m not in self.num:
                raise RuntimeError(f"output frame {m} was never predicted")
            frame = self.num.pop(m) / self.den.pop(m)
            self.next_out += 1
            self.last = frame
            yield frame

    def finish(self, n: int) -> Iterator[torch.Tensor]:
        yield from self.pop_ready(self.factor * (n - 1) + 1)
        while self.next_out < self.factor * n:
            assert self.last is not None
            self.next_out += 1
            yield self.last
