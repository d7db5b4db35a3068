"""Temporal windows and spatial tiles: pure index arithmetic, no tensors.

Time
----
A video of ``n`` input frames is cut into windows of ``length = k + 1`` consecutive input frames
(``--window``, default 4, so k = 3 as in the STVSR convention). Consecutive windows start
``stride = max(1, k - 1)`` frames apart, so neighbours share two input frames — one whole input
interval — and every output time inside that interval is predicted twice and cross-faded
(:func:`time_weight`). The paper's convention (stride k, neighbours share one frame) would leave a
hard switch from one window's prediction to the next at the shared frame; the extra overlap removes
that seam.

The cross-fade gives a window's edge frame weight 0 where a neighbour crosses it (that neighbour
predicts the same time one input frame away from its own edges), so the model is not asked for it
(:func:`window_targets`): an inner window of 4 at factor 2 predicts 5 of its 7 output times, and
only the middle of the shared interval is predicted twice (1.25x the output times, not 1.75x).

Where the regular starts 0, stride, 2*stride, ... do not reach the last frame, one more window is
placed flush with the end (start ``n - 1 - k``), so no window reaches past the video and every
window has exactly ``length`` frames. A video shorter than a window is one window of all its frames.

Output time ``m`` (an integer) is input time ``m / factor``: input frame ``i`` becomes output frame
``factor * i`` and the ``factor - 1`` frames after it lie at ``i + j / factor``. To keep the
output duration equal to the input duration, ``n`` input frames give ``factor * n`` output frames:
the last input frame has no successor to interpolate towards, so its trailing ``factor - 1`` slots
repeat its super-resolved frame (the frame is held for its whole display time, as in the input).

Space
-----
Tiles are rectangles in low-resolution (LR) pixels that cover the frame, each at most ``tile``
pixels on a side, overlapping their neighbours by at least ``overlap`` LR pixels. The last tile in
a row or column is placed flush with the edge, so all tiles of a grid have the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# time


def temporal_stride(window: int) -> int:
    """Input frames between the starts of consecutive windows of ``window`` input frames."""
    if window < 2:
        raise ValueError(f"a window needs at least 2 input frames, got {window}")
    k = window - 1
    return max(1, k - 1)


@dataclass(frozen=True)
class Window:
    """Input frames ``start .. start + length - 1`` (inclusive), run through the model together."""

    start: int
    length: int

    @property
    def end(self) -> int:
        """Index of the window's last input frame."""
        return self.start + self.length - 1

    def output_range(self, factor: int) -> range:
        """Output-frame indices (``factor`` per input interval) that this window predicts."""
        return range(factor * self.start, factor * self.end + 1)


def plan_windows(n: int, window: int) -> list[Window]:
    """All windows for a video of ``n`` input frames (the streaming code produces the same list)."""
    if n < 1:
        return []
    stride = temporal_stride(window)
    if n <= window:
        return [Window(0, n)]
    out = [Window(s, window) for s in range(0, n - window + 1, stride)]
    if out[-1].end < n - 1:
        out.append(Window(n - window, window))
    return out


def local_times(length: int, factor: int) -> list[Fraction]:
    """Target times of one window in input-frame units, 0 .. length - 1 in steps of 1 / factor."""
    return [Fraction(m, factor) for m in range(factor * (length - 1) + 1)]


EDGE_FLOOR = 1e-3  # weight of a shared edge frame of windows of 2 (neighbours share only that frame)


def time_weight(m_local: int, factor: int, length: int, first: bool, last: bool) -> float:
    """Blend weight of a window's prediction at local output index ``m_local``.

    A tent: the distance (in input frames) to the nearest window edge that another window crosses.
    Edges on the video's first frame (``first``) or last frame (``last``) are not crossed by any
    other window, so they do not fall off. A crossed edge gets weight 0: with windows of 3 or more
    frames neighbours share two frames (see :func:`plan_windows`), so the neighbour predicts that
    time at least one input frame inside its own edges, with weight >= 1. Windows of 2 share only
    their edge frames, so there an edge keeps ``EDGE_FLOOR`` and the two edges are averaged.
    """
    t = m_local / factor
    k = length - 1
    d_start = float("inf") if first else t
    d_end = float("inf") if last else k - t
    d = min(d_start, d_end)
    if d == float("inf"):  # the only window of the video
        return 1.0
    if d > 0:
        return d
    return 0.0 if length >= 3 else EDGE_FLOOR


def window_targets(length: int, factor: int, first: bool, last: bool) -> list[int]:
    """Local output indices of a window that the blend uses (weight > 0): the ones to predict.

    All of ``0 .. factor * (length - 1)`` except a crossed edge (see :func:`time_weight`)."""
    return [j for j in range(factor * (length - 1) + 1) if time_weight(j, factor, length, first, last) > 0]


# --------------------------------------------------------------------------------------------
# space


@dataclass(frozen=True)
class Tile:
    """LR pixel rows ``y0:y1`` and columns ``x0:x1`` of a frame (half-open)."""

    y0: int
    y1: int
    x0: int
    x1: int


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Half-open spans of at most ``tile`` covering ``0 .. size`` that overlap by >= ``overlap``."""
    if tile >= size:
        return [(0, size)]
    overlap = min(overlap, tile // 2)  # a tile must advance by at least half its size
    step = tile - overlap
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)  # flush with the edge: same size as the others
    return [(s, s + tile) for s in starts]


def plan_tiles(height: int, width: int, tile: int | None, overlap: int) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` LR frame; ``tile=None`` means the whole frame."""
    if tile is None or (tile >= height and tile >= width):
        return [Tile(0, height, 0, width)]
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, got {tile}")
    return [
        Tile(y0, y1, x0, x1)
        for (y0, y1) in _spans(height, tile, overlap)
        for (x0, x1) in _spans(width, tile, overlap)
    ]


def tile_from_memory(
    free_bytes: int, bytes_per_pixel: float, height: int, width: int, fraction: float = 0.5, multiple: int = 8
) -> int | None:
    """Largest square tile (LR pixels) whose estimated memory fits ``fraction`` of ``free_bytes``.

    ``bytes_per_pixel`` is the measured peak memory of one window per LR pixel of a tile. Returns
    None when the whole frame fits (no tiling), else a multiple of ``multiple`` of at least
    ``multiple``.
    """
    if bytes_per_pixel <= 0:
        return None
    pixels = fraction * free_bytes / bytes_per_pixel
    if pixels >= height * width:
        return None
    side = int(pixels**0.5) // multiple * multiple
    return max(multiple, side)


def frame_shape(frame: "torch.Tensor", first: "torch.Size | None", n: int) -> "torch.Size":
    """The shape every frame of a stream must have: frame n's (C, h, w), checked against the first's."""
    if frame.dim() != 3:
        raise ValueError(f"expected a frame (C, h, w), got shape {tuple(frame.shape)}")
    if first is not None and frame.shape != first:
        raise ValueError(f"frame {n} has shape {tuple(frame.shape)}, the first had {tuple(first)}")
    return frame.shape
