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

Sensor noise: a camera's frames differ by their temporal noise even where nothing moves, by more than
STILL_BELOW at a few tenths of a percent of the range once the gap takes the largest over a
neighbourhood, so without a correction both gates would call a noisy still scene moving and the
network's sharpened noise would flicker there. `noise_level` measures the window's temporal noise
from its frame differences, and the gaps are lowered by NOISE_FLOOR times it: pure noise gates as
still, and a change has to stand out of the noise to count as motion. Where the still detail applies,
a frame's deviation from the window's mean is shrunk by how much of it the noise alone explains, so
a still scene is also denoised in time; on noise-free input (noise 0) both are exactly as above.

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
NOISE_FLOOR = 4.0  # temporal-noise deviations the gaps are lowered by: pure noise then gates as still
# the most temporal noise `noise_level` reports (share of the level range): a window whose content
# changes wholesale from frame to frame (a burst, an unmarked cut) reads as noise, and must not open
# the gates further than this
NOISE_CAP = 0.01
SHRINK_WINDOW = 5  # LR pixels a side over which the still detail weighs a frame's deviation against the noise
# a difference's second derivative in both axes; divided by its norm, so white noise keeps its deviation
NOISE_KERNEL = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3) / 6


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
                noise: torch.Tensor | None = None, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """x (B, T, C, H, W) the input frames in [0, 1], times (M,) the output times, y (B, M, C, 4H, 4W)
    the network's outputs at them -> y, its in-between frames gated towards the linear blend of its
    frames at the input times on either side (written in place; autograd follows). An in-between
    time whose neighbours are not among ``times`` is left as it is. noise (B,): the frames' temporal
    noise (`noise_level`; worked out here when not given), by which the gate's gaps are lowered.

    rows: (r0, r1), the LR rows whose output y holds (then (B, M, C, 4 (r1 - r0), 4W)): the same
    values as those rows of the whole frame's result (the gate reads the LR rows it needs around
    them), for the CPU path, which decodes and blends a band of rows at a time."""
    index = {float(t): j for j, t in enumerate(times.tolist())}
    for i, t in enumerate(times.tolist()):
        lo = float(int(t))
        if t == lo or lo not in index or lo + 1 not in index:
            continue
        w = t - lo
        if noise is None:
            noise = noise_level(x)
        gate = _gate((x[:, int(lo) + 1] - x[:, int(lo)]).abs(), y.dtype, noise, rows)  # (B, 1, 4H, 4W)
        if torch.is_grad_enabled():
            blend = y[:, index[lo]] * (1 - w) + y[:, index[lo + 1]] * w             # (B, C, 4H, 4W)
            y[:, i] = blend + gate * (y[:, i] - blend)
        else:  # the same operations in two temporaries of a frame's size, written into y
            blend = torch.mul(y[:, index[lo]], 1 - w).add_(torch.mul(y[:, index[lo + 1]], w))
            y[:, i].sub_(blend).mul_(gate).add_(blend)
    return y


def still_detail(x: torch.Tensor, lin: torch.Tensor, times: torch.Tensor, y: torch.Tensor,
                 noise: torch.Tensor | None = None, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """x (B, T, C, H, W) the window's input frames in [0, 1], lin (B, M, C, H, W) their linear
    interpolation at the output times (M,), y (B, M, C, 4H, 4W) the outputs there -> y, where all T
    input frames agree, each frame's detail over the bicubic upsampling of lin replaced by the mean
    detail of the frames at input times (written in place; autograd follows). Left as it is when
    ``times`` holds no input time.

    With mean output ym and mean LR frame xm over the input times, frame i's detail is
    y_i - up(lin_i) and the mean detail ym - up(xm), so frame i moves by (1 - gate) times
    ym - y_i - up(s_i * (xm - lin_i)): one upsampling of an LR difference per frame. s_i is 1 on
    noise-free input (the output then changes there exactly as bicubic + linear does) and shrinks
    frame i's deviation from the mean towards 0 where it is no larger than the window's temporal noise
    would make it (`_shrink`): a still scene's frames then differ by less than their noise. noise (B,)
    as for `still_blend`.

    rows: (r0, r1), the LR rows whose output y holds, as in `still_blend` (x and lin whole)."""
    host = times.tolist()
    inputs = [i for i, t in enumerate(host) if t == int(t)]
    if not inputs:
        return y
    if noise is None:
        noise = noise_level(x)
    still = 1 - _gate(x.amax(dim=1) - x.amin(dim=1), y.dtype, noise, rows)         # (B, 1, 4H, 4W)
    ym, xm = y[:, inputs].mean(dim=1), lin[:, inputs].mean(dim=1)                  # (B, C, 4H, 4W), (B, C, H, W)
    # the LR rows whose shrunk deviation the band's upsampling reads, shrunk as in the whole frame
    H = x.shape[-2]
    r0, r1 = (0, H) if rows is None else rows
    lo, hi = max(0, r0 - _BICUBIC_HALO - SHRINK_WINDOW // 2), min(H, r1 + _BICUBIC_HALO + SHRINK_WINDOW // 2)
    for i in range(times.numel()):
        dev = xm[..., lo:hi, :] - lin[:, i, ..., lo:hi, :]  # with noise 0 the factors are exactly 1
        dev = dev * _shrink(dev, noise, _spread(float(host[i]), [float(host[j]) for j in inputs], x.shape[1]))
        up = _up_rows(dev, (r0 - lo, r1 - lo), _BICUBIC_HALO, "bicubic")
        if torch.is_grad_enabled():
            y[:, i] = y[:, i] + still * (ym - y[:, i] - up.to(y.dtype))
        else:  # the same operations in one temporary of a frame's size, written into y
            y[:, i].add_(torch.sub(ym, y[:, i]).sub_(up.to(y.dtype)).mul_(still))
    return y


def _spread(t: float, inputs: list[float], n_frames: int) -> float:
    """How many times a frame's noise variance lies in lin(t) - xm, where lin is the linear
    interpolation of ``n_frames`` frames of independent noise and xm the mean of lin at ``inputs``:
    the sum of the squared coefficients of that difference over the frames."""
    coef = [max(0.0, 1.0 - abs(t - j)) for j in range(n_frames)]
    for j in inputs:
        coef[int(j)] -= 1.0 / len(inputs)
    return sum(c * c for c in coef)


def _shrink(dev: torch.Tensor, noise: torch.Tensor, spread: float) -> torch.Tensor:
    """dev (B, C, H, W) a frame's deviation from the window's mean, noise (B,) the frames' temporal
    noise -> (B, C, H, W) factors in [0, 1]: 1 - (the variance noise alone gives dev) / (dev's mean
    square over SHRINK_WINDOW^2 pixels), clamped (a local Wiener, or Lee, filter of the deviation)."""
    with torch.no_grad():
        power = F.avg_pool2d(dev.float() ** 2, SHRINK_WINDOW, stride=1, padding=SHRINK_WINDOW // 2,
                             count_include_pad=False)
        expected = (noise.float() ** 2 * spread).view(-1, 1, 1, 1)
        return (1 - expected / (power + 1e-12)).clamp_(0, 1).to(dev.dtype)


def noise_level(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, C, H, W) a window's input frames -> (B,) the standard deviation of their temporal noise,
    in x's units, without gradient.

    Read off the second differences in time, x[t+1] - 2 x[t] + x[t-1] (6 times the variance of
    independent noise), each filtered with NOISE_KERNEL (which cancels its smooth part: a slow change
    of level), by the median of their magnitude (which leaves out a moving object's edges). A second
    difference also cancels what changes at a steady rate, so a slow pan reads as less noise than in
    a single difference; real sensors' noise, whose frames are not independent (a Lepton's: slow
    offsets that wander), reads there about as in a single difference. With two frames only the
    single difference is there to read (2 times the noise's variance). At most NOISE_CAP; 0 for one
    frame, for frames under 3 pixels a side and where the differences are mostly exactly 0 (a still,
    noise-free or quantised scene)."""
    B, T, C, H, W = x.shape
    if T < 2 or H < 3 or W < 3:
        return x.new_zeros(B)
    with torch.no_grad():
        d, variances = (x[:, 1] - x[:, 0], 2) if T == 2 else (x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2], 6)
        r = F.conv2d(d.reshape(-1, 1, H, W).float(), NOISE_KERNEL.to(d.device)).reshape(B, -1)
        # the median of |N(0, s^2)| is 0.6745 s
        sigma = r.abs().median(dim=1).values / (0.6745 * variances ** 0.5)
        return sigma.clamp_(max=NOISE_CAP).to(x.dtype)


def spatial_noise_level(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, C, H, W) -> (B,) the standard deviation of the frames' pixel-to-pixel noise (a
    sensor's fixed pattern and its temporal noise together), as `noise_level` reads it off the frames
    themselves instead of their differences: scene texture counts where it is as fine as the kernel,
    but the median leaves out edges. 0 for frames under 3 pixels a side."""
    B, T, C, H, W = x.shape
    if H < 3 or W < 3:
        return x.new_zeros(B)
    with torch.no_grad():
        r = F.conv2d(x.reshape(B * T * C, 1, H, W).float(), NOISE_KERNEL.to(x.device)).reshape(B, -1).abs()
        return (r.median(dim=1).values / 0.6745).to(x.dtype)


def _gate(gap: torch.Tensor, dtype: torch.dtype, noise: torch.Tensor | None = None,
          rows: tuple[int, int] | None = None) -> torch.Tensor:
    """gap (B, C, H, W) input-frame differences -> (B, 1, 4H, 4W) in [0, 1]: 0 (still) where the
    largest over the channels and a (2 * STILL_DILATE + 1)^2 neighbourhood, less NOISE_FLOOR times
    ``noise`` (B,) (`noise_level`), is at most STILL_BELOW, 1 (moving) from MOVING_ABOVE, linear
    between, bilinearly upsampled to the output. rows (r0, r1): only the output of those LR rows,
    (B, 1, 4 (r1 - r0), 4W)."""
    def gate(gap: torch.Tensor) -> torch.Tensor:
        gap = gap.amax(dim=1, keepdim=True)
        if STILL_DILATE:
            gap = F.max_pool2d(gap, 2 * STILL_DILATE + 1, stride=1, padding=STILL_DILATE)
        if noise is not None:
            gap = gap - NOISE_FLOOR * noise.view(-1, 1, 1, 1).to(gap.dtype)
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
