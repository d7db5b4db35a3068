"""Still blend (theris's addition to the paper, `ModelConfig.use_still_blend`): where the two input
frames around an in-between time agree, the in-between output frame is the linear blend of the
network's own outputs at those two input times.

Why: on a still scene the truth of an in-between frame is its neighbours plus sensor noise, and the
best guess of it is their blend. The network's in-between frames are decoded from their own
features, and there they add a curvature in time that the truth does not have: on the Lepton 3.5
building clip of split v1 the in-between frames' second difference was 0.51 per mille of the range
where the linear blend of the same network's aligned frames has none, and tMAE was 1.13 per mille
against the blend's 0.91 (benchmarks/temporal_breakdown.py, column theris+lin). Where something
moves, the network's own frame is kept: that is where it beats a blend.

The gate is the largest absolute difference of the two LR input frames over the colour channels and
a (2 * STILL_DILATE + 1)^2 neighbourhood, in units of the window's level range: 0 (the blend) up to
STILL_BELOW, 1 (the network's frame) from MOVING_ABOVE, linear between, bilinearly upsampled to the
output. MOVING_ABOVE is the motion metric's threshold (`theris evaluate`, column move), so every
pixel that metric calls moving keeps the network's frame; STILL_BELOW gave the lowest tMAE of the
settings tried on eight training clips (`benchmarks/still_gate.py`). The dilation is not: there no dilation
scored best, but on split v1 it cost possum's moving pixels 0.15 dB, and a moving object's
in-between position lies beside where it was and where it goes, not on it. The README gives both.
It has no weights: a checkpoint switches it on or off in its config, and training sees it as
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


def still_blend(x: torch.Tensor, times: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (B, T, C, H, W) the input frames in [0, 1], times (M,) the output times, y (B, M, C, 4H, 4W)
    the network's outputs at them -> y, its in-between frames gated towards the linear blend of its
    frames at the input times on either side (written in place; autograd follows). An in-between
    time whose neighbours are not among ``times`` is left as it is."""
    index = {float(t): j for j, t in enumerate(times.tolist())}
    for i, t in enumerate(times.tolist()):
        lo = float(int(t))
        if t == lo or lo not in index or lo + 1 not in index:
            continue
        w = t - lo
        blend = y[:, index[lo]] * (1 - w) + y[:, index[lo + 1]] * w                 # (B, C, 4H, 4W)
        gap = (x[:, int(lo) + 1] - x[:, int(lo)]).abs().amax(dim=1, keepdim=True)  # (B, 1, H, W)
        if STILL_DILATE:
            gap = F.max_pool2d(gap, 2 * STILL_DILATE + 1, stride=1, padding=STILL_DILATE)
        gate = ((gap - STILL_BELOW) / (MOVING_ABOVE - STILL_BELOW)).clamp_(0, 1)
        gate = F.interpolate(gate, scale_factor=SCALE, mode="bilinear", align_corners=False).to(y.dtype)
        y[:, i] = blend + gate * (y[:, i] - blend)
    return y
