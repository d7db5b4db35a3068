"""Two weightless additions of theris's to the paper, for still parts of a scene.

The still blend (`ModelConfig.use_still_blend`): where the two input frames around an in-between time
agree, the in-between output frame is the linear blend of the network's own outputs at those two input
times.

The still detail (`ModelConfig.use_still_detail`): where all the window's input frames agree, every
output frame's detail (its difference from bicubic + linear) is the mean detail of the window's frames
at the input times, so the output changes there exactly as bicubic + linear does.

Why the still blend: on a still scene the truth of an in-between frame is its neighbours plus sensor
noise, and the best guess of it is their blend. The network's in-between frames are decoded from their
own features, and there they add a curvature in time that the truth does not have (the linear blend
of the same network's aligned frames has none; `benchmarks/temporal_breakdown.py` measures both).
Where something moves, the network's own frame is kept: that is where it beats a blend.

The gate is the largest absolute difference of the two LR input frames over the colour channels and
a (2 * STILL_DILATE + 1)^2 neighbourhood, in units of the window's level range: 0 (the blend) up to
STILL_BELOW, 1 (the network's frame) from MOVING_ABOVE, linear between, bilinearly upsampled to the
output. MOVING_ABOVE is the motion metric's threshold (`theris evaluate`, column move), so every
pixel that metric calls moving keeps the network's frame; STILL_BELOW and STILL_DILATE were chosen
with `benchmarks/still_gate.py`. The dilation costs a little tMAE but keeps fast objects: a moving
object's in-between position lies beside where it was and where it goes, not on it, so an undilated
gate can blend it away. docs/network.md gives the figures.

Why the still detail: where nothing moves, the truth changes from frame to frame only by sensor noise,
and bicubic + linear follows it about as well as anything can (its frames are the input frames' own
noise, smoothed). The network's frames are sharper, noise included, and that sharpened noise changes
from frame to frame, so after the still blend a still scene still flickers more than bicubic + linear.
The window's frames all estimate the same still detail, so their mean is the better estimate and a
steady one. Its gate is the still blend's, on the largest difference among all the window's input
frames. What remains is where two windows cross-fade, each with its own mean (docs/evaluation.md).

Neither has weights: a checkpoint switches them on or off in its config, and training sees them as
inference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from theris_cli.model.config import SCALE

STILL_BELOW = 0.01  # input-frame difference (share of the level range) up to which the blend is used
MOVING_ABOVE = 0.03  # from which the network's own frame is used
STILL_DILATE = 2  # LR pixels: a moving object's in-between position lies near where it was or goes


def blend_sources(times: torch.Tensor, keep: list[int] | None) -> list[int] | None:
    """The indices into ``times`` that `still_blend` needs decoded for the frames ``keep`` (default
    all): the kept ones and, for each in-between time, the input times on either side where ``times``
    has them. None when all are needed."""
    if keep is None:
        return None
    index = {float(t): j for j, t in enumerate(times.tolist())}
    need = set(keep)
    for i in keep:
        t = float(times[i])
        lo = float(int(t))
        if t != lo and lo in index and lo + 1 in index:
            need.update((index[lo], index[lo + 1]))
    return sorted(need)


def still_blend(x: torch.Tensor, times: torch.Tensor, y: torch.Tensor,
                rows: tuple[int, int] | None = None) -> torch.Tensor:
    """x (B, T, C, H, W) the input frames in [0, 1], times (M,) the output times, y (B, M, C, 4H, 4W)
    the network's outputs at them -> y, its in-between frames gated towards the linear blend of its
    frames at the input times on either side (written in place; autograd follows). An in-between
    time whose neighbours are not among ``times`` is left as it is.

    rows: (r0, r1), the LR rows whose output y holds (then (B, M, C, 4 (r1 - r0), 4W)): the same
    values as those rows of the whole frame's result (the gate reads the LR rows it needs around
    them), for the CPU path, which decodes and blends a band of rows at a time."""
    index = {float(t): j for j, t in enumerate(times.tolist())}
    for i, t in enumerate(times.tolist()):
        lo = float(int(t))
        if t == lo or lo not in index or lo + 1 not in index:
            continue
        w = t - lo
        gate = _gate((x[:, int(lo) + 1] - x[:, int(lo)]).abs(), y.dtype, rows)      # (B, 1, 4H, 4W)
        if torch.is_grad_enabled():
            blend = y[:, index[lo]] * (1 - w) + y[:, index[lo + 1]] * w             # (B, C, 4H, 4W)
            y[:, i] = blend + gate * (y[:, i] - blend)
        else:  # the same operations in two temporaries of a frame's size, written into y
            blend = torch.mul(y[:, index[lo]], 1 - w).add_(torch.mul(y[:, index[lo + 1]], w))
            y[:, i].sub_(blend).mul_(gate).add_(blend)
    return y


def still_detail(x: torch.Tensor, lin: torch.Tensor, times: torch.Tensor, y: torch.Tensor,
                 rows: tuple[int, int] | None = None) -> torch.Tensor:
    """x (B, T, C, H, W) the window's input frames in [0, 1], lin (B, M, C, H, W) their linear
    interpolation at the output times (M,), y (B, M, C, 4H, 4W) the outputs there -> y, where all T
    input frames agree, each frame's detail over the bicubic upsampling of lin replaced by the mean
    detail of the frames at input times (written in place; autograd follows). Left as it is when
    ``times`` holds no input time.

    With mean output ym and mean LR frame xm over the input times, frame i's detail is
    y_i - up(lin_i) and the mean detail ym - up(xm), so frame i moves by (1 - gate) times
    ym - y_i - up(xm - lin_i): one upsampling of an LR difference per frame.

    rows: (r0, r1), the LR rows whose output y holds, as in `still_blend` (x and lin whole)."""
    inputs = [i for i, t in enumerate(times.tolist()) if t == int(t)]
    if not inputs:
        return y
    still = 1 - _gate(x.amax(dim=1) - x.amin(dim=1), y.dtype, rows)                # (B, 1, 4H, 4W)
    ym, xm = y[:, inputs].mean(dim=1), lin[:, inputs].mean(dim=1)                  # (B, C, 4H, 4W), (B, C, H, W)
    for i in range(times.numel()):
        up = _up_rows(xm - lin[:, i], rows, _BICUBIC_HALO, "bicubic")
        if torch.is_grad_enabled():
            y[:, i] = y[:, i] + still * (ym - y[:, i] - up.to(y.dtype))
        else:  # the same operations in one temporary of a frame's size, written into y
            y[:, i].add_(torch.sub(ym, y[:, i]).sub_(up.to(y.dtype)).mul_(still))
    return y


def _gate(gap: torch.Tensor, dtype: torch.dtype, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """gap (B, C, H, W) input-frame differences -> (B, 1, 4H, 4W) in [0, 1]: 0 (still) where the
    largest over the channels and a (2 * STILL_DILATE + 1)^2 neighbourhood is at most STILL_BELOW, 1
    (moving) from MOVING_ABOVE, linear between, bilinearly upsampled to the output. rows (r0, r1):
    only the output of those LR rows, (B, 1, 4 (r1 - r0), 4W)."""
    def gate(gap: torch.Tensor) -> torch.Tensor:
        gap = gap.amax(dim=1, keepdim=True)
        if STILL_DILATE:
            gap = F.max_pool2d(gap, 2 * STILL_DILATE + 1, stride=1, padding=STILL_DILATE)
        gate = ((gap - STILL_BELOW) / (MOVING_ABOVE - STILL_BELOW)).clamp_(0, 1)
        return F.interpolate(gate, scale_factor=SCALE, mode="bilinear", align_corners=False).to(dtype)

    return _up_rows(gap, rows, STILL_DILATE + 1, gate)


_BICUBIC_HALO = 2  # LR rows each side that a bicubic upsampling of a band of rows reads


def _up_rows(lr: torch.Tensor, rows: tuple[int, int] | None, halo: int, up) -> torch.Tensor:
    """The output rows 4 r0 .. 4 r1 of an upsampling by SCALE of lr (B, C, H, W) (``up``: a function,
    or "bicubic"), computed from LR rows r0 - halo .. r1 + halo only (all where rows is None): equal
    to those rows of the whole frame's upsampling where ``halo`` covers what ``up`` reads beyond a
    row (the borders of the band are then rows it does not return, unless they are the frame's)."""
    if up == "bicubic":
        up = lambda t: F.interpolate(t, scale_factor=SCALE, mode="bicubic", align_corners=False)  # noqa: E731
    if rows is None:
        return up(lr)
    H = lr.shape[-2]
    r0, r1 = rows
    lo, hi = max(0, r0 - halo), min(H, r1 + halo)
    return up(lr[..., lo:hi, :])[..., SCALE * (r0 - lo):SCALE * (r1 - lo), :]
