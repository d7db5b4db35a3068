"""Motion alignment (theris's addition to the paper, `ModelConfig.use_motion_align`): input frames
moved along an estimated velocity to each target time before TDIM mixes them.

TDIM rebuilds a target time from the *same pixel* of every input frame, and TMB scans the same
pixel through time, so content that moves several pixels between frames can only come out as a
blend: two faded copies of a moving object. Here a small CNN reads each pair of neighbouring input
frames (grey levels and encoder features) at half resolution, where three dilated 3x3 convs see
about 30 LR pixels, and gives a velocity field v_j for the pair (LR pixels per input frame, at its
midpoint j + 1/2). The velocity at a target time tau is the linear interpolation of the v_j along
time, held constant beyond the first and last midpoints. Input frame t is then resampled at
x + (t - tau) * v(tau, x) (backward warping, bilinear, border pixels repeated), for the features TDIM
mixes and for the two frames of the bicubic residual alike, so the residual is no longer a
double image either.

The velocity head's last conv starts at zero: a new network, or one whose weights were trained
without this part (`theris train --init ... --motion-align`), starts out exactly as it would
without it, and the warp learns only what the loss asks of it. With `ModelConfig.motion_radius` the
velocities start from a matching estimate instead (`MotionAlign`), which counts from the first step.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

DILATIONS = (1, 2, 4)  # at half resolution: receptive field 2 * (1 + 2 * 7) = 30 LR pixels
MATCH_DIM = 16  # channels of the features the matching compares
MATCH_STRIDE = 2  # the matching works at 1/MATCH_STRIDE of the LR frame: MATCH_STRIDE x the reach per offset
MATCH_TEMPERATURE = 50.0  # initial sharpness of the matching's soft argmax (cosine similarity x this)
SEARCH_MARGIN = 0.05  # cosine similarity an offset beyond the cost volume must beat the ones inside it by


class PairMemo:
    """The velocities of the last few pairs of frames, for the windows after them.

    `theris upscale` runs windows of 4 input frames 2 frames apart, so each window's first pair of
    frames is the last pair of the window before it. A pair's velocities depend on its two frames
    alone (and on the network), so the next window can take them as they are instead of running
    the matching and the CNN on that pair again (a third of `MotionAlign.velocities`). Pairs are
    found by their frames' values, not by position, so repeated frames, splices and tiles can never
    get another pair's velocities; ``tag`` holds what else they were computed with (dtypes), and
    `follow` forgets every pair once the network's weights change. Thread-safe: windows that run
    side by side share one. Holds ``capacity`` pairs (two frames and a velocity field each, at LR),
    the oldest dropped first."""

    def __init__(self, capacity: int = 2):
        self.capacity = max(1, capacity)
        self.hits = 0  # pairs taken from here instead of computed
        self._pairs: list[tuple] = []  # (tag, first frame, second frame, velocities), oldest first
        self._weights = None  # the network's parameters and their versions when the pairs were put
        self._lock = threading.Lock()

    def follow(self, net: nn.Module) -> None:
        """Called with the network before each window: the pairs are dropped if any of its
        parameters has been replaced or changed in place (a training step, loaded weights) since
        the last call."""
        try:
            weights = tuple((id(p), p._version) for p in net.parameters())
        except RuntimeError:  # parameters made under inference mode keep no version: trust none
            weights = None
        with self._lock:
            if weights is None or weights != self._weights:
                self._pairs.clear()
            self._weights = weights

    def get(self, tag, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor | None:
        """The velocities (2, H, W) put for frames equal to ``first`` and ``second`` (C, H, W) under
        ``tag``, or None."""
        with self._lock:
            for t, a, b, v in self._pairs:
                if (t == tag and a.shape == first.shape and a.device == first.device
                        and torch.equal(a, first) and torch.equal(b, second)):
                    self.hits += 1
                    return v
        return None

    def put(self, tag, first: torch.Tensor, second: torch.Tensor, v: torch.Tensor) -> None:
        """Keep the velocities ``v`` (2, H, W) of the pair ``first``, ``second`` (copies of all three)."""
        entry = (tag, first.clone(), second.clone(), v.clone())
        with self._lock:
            self._pairs.append(entry)
            del self._pairs[:-self.capacity]


class MotionAlign(nn.Module):
    """Velocities for each pair of neighbouring input frames.

    radius 0: a CNN regresses them from the pair. radius r > 0 (`ModelConfig.motion_radius`): first
    a matching estimate, then the CNN's correction of it. Learned features of both frames, averaged
    to half resolution, are compared (cosine similarity) at every offset of at most r half-resolution
    pixels along each axis, i.e. 2r LR pixels: a cost volume. Its soft argmax is each pixel's
    forward motion; the same from frame t+1 back to t gives the backward motion, and half their
    difference is the estimate at the pair's middle time. The CNN sees both cost volumes beside the
    frames and adds its correction (zero at the start, as is its input from the cost volumes).

    search s > r (`ModelConfig.motion_search`): the soft argmax looks at every offset of at most s
    half-resolution pixels, the CNN still reads the cost volume of radius r. The offsets beyond r
    count SEARCH_MARGIN less similar than they are, so a match there must be clearly better than
    any within r: without the margin a wider search finds chance matches in noise and flat regions
    (docs/network.md). No weights: a network trained with one search runs with another.

    Why: end to end from the pixel loss the CNN alone does not learn motion of several pixels (the
    warp's gradient only sees a pixel's neighbourhood). benchmarks/motion_masks.py (column th+rv)
    shows what better velocities are worth to given weights: RIFE's in the CNN's place, nothing
    retrained. A match is found wherever the content is distinct, before any training
    (tests/test_motion_align.py); `theris train --flow-teacher` teaches the rest.
    """

    def __init__(self, in_channels: int, dim: int, width: int, radius: int = 0, search: int = 0):
        super().__init__()
        self.down = nn.Conv2d(2 * (in_channels + dim), width, 3, stride=2, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in DILATIONS)
        self.head = nn.Conv2d(width, 2, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.radius = radius
        self.search = max(search, radius)
        if radius > 0:
            self.match = nn.Conv2d(in_channels + dim, MATCH_DIM, 3, padding=1)
            self.cost_in = nn.Conv2d(2 * (2 * radius + 1) ** 2, width, 3, padding=1)
            self.log_temperature = nn.Parameter(torch.tensor(math.log(MATCH_TEMPERATURE)))
            nn.init.zeros_(self.cost_in.weight)  # the CNN starts as it was without the cost volume
            nn.init.zeros_(self.cost_in.bias)

    def velocities(self, x: torch.Tensor, feats: torch.Tensor, memo: "PairMemo | None" = None) -> torch.Tensor:
        """x (B, T, C, H, W) frames, feats (B, T, dim, H, W) their encoder features (any strides)
        -> (B, T-1, 2, H, W): (dx, dy) in LR pixels per input frame for each pair (t, t+1).

        memo (inference only): a pair found there is not computed again, and the last pair is put
        there, for the next window, which starts with it (`PairMemo`). ``feats`` must then be the
        encoder's features of the frames alone, as every window computes them."""
        B, T, C, H, W = x.shape
        if T < 2:
            return x.new_zeros(B, 0, 2, H, W)
        if not torch.is_grad_enabled() and B * (T - 1) > 1:
            # inference: pair by pair (each pair's velocities are its own), so the pairs, their
            # cost volumes and the CNN's maps are one pair's, not all of them at once
            out = torch.empty(B, T - 1, 2, H, W, dtype=x.dtype, device=x.device)
            tag = (feats.dtype, self.down.weight.dtype)
            g, lo = None, 0 if memo is None else 1
            if self.radius > 0:  # the matching's features; with a memo the first frame's only if needed
                g = self._match_features(x[:, lo:], feats[:, lo:])
            # the last pair first and the first pair last: a window that runs beside the one before it
            # then finds the pair they share, which that one computes first
            for t in reversed(range(T - 1)):
                for b in range(B):
                    if memo is not None and (v := memo.get(tag, x[b, t], x[b, t + 1])) is not None:
                        out[b, t] = v
                        continue
                    gt = None
                    if g is not None:
                        gt = g[b:b + 1, t - lo:t - lo + 2] if t >= lo else torch.cat(
                            [self._match_features(x[b:b + 1, :1], feats[b:b + 1, :1]), g[b:b + 1, :1]], dim=1)
                    out[b, t] = self._velocities(x[b:b + 1, t:t + 2], feats[b:b + 1, t:t + 2], gt)[0, 0]
                    if memo is not None and t == T - 2:
                        memo.put(tag, x[b, t], x[b, t + 1], out[b, t])
            return out
        return self._velocities(x, feats, None)

    def _velocities(self, x: torch.Tensor, feats: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """`velocities`, with the matching features ``g`` (`_match_features`) given or not."""
        B, T, C, H, W = x.shape
        xw = x.to(self.down.weight.dtype)  # the CNN in its own dtype (bfloat16 on the CPU's fast path)
        if torch.is_grad_enabled():
            both = torch.cat([xw, feats.to(xw.dtype)], dim=2)                      # (B, T, C+dim, H, W)
            pairs = torch.cat([both[:, :-1], both[:, 1:]], dim=2).flatten(0, 1)   # (B*(T-1), 2(C+dim), H, W)
        else:  # the same pairs, built channels-last: `down` runs faster on them than on the NCHW
            # pairs, and converting those afterwards costs more than it saves
            pairs = _pairs_channels_last(xw, feats.to(xw.dtype))
        h = F.leaky_relu(self.down(pairs), 0.1)
        del pairs
        v0 = None
        if self.radius > 0:  # the cost volumes written in h's dtype, the one cost_in reads them in
            v0, cost = self._matched(x, feats, g, h.dtype)
            h = h + F.leaky_relu(self.cost_in(cost.to(h.dtype)), 0.1)
        for conv in self.body:
            h = h + F.leaky_relu(conv(h), 0.1)
        # velocities are coordinates: the head (two output channels, cheap) and all after it in
        # float32 even under autocast, whose bfloat16 output would round 40.3 px to 40.25
        with torch.autocast(h.device.type, enabled=False):
            head = self.head
            v = F.conv2d(h.float(), head.weight.float(), head.bias.float(), padding=head.padding)
            v = F.interpolate(v, size=(H, W), mode="bilinear", align_corners=False)
        if v0 is not None:
            v = v + v0.float()
        return v.view(B, T - 1, 2, H, W)

    def _match_features(self, x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """The matching's features of every frame, unit length at half resolution: x, feats as in
        `velocities` -> (B, T, MATCH_DIM, ceil(H/2), ceil(W/2)) float32; without autograd frame by
        frame (a frame's features are its own)."""
        B, T, C, H, W = x.shape
        work = self.match.weight.dtype

        def one(xs: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:                # (N, C+dim, H, W) in
            g = F.avg_pool2d(self.match(torch.cat([xs.to(work), fs.to(work)], dim=1)).float(), MATCH_STRIDE,
                             ceil_mode=True)
            return F.normalize(g, dim=1)

        if torch.is_grad_enabled():
            g = one(x.flatten(0, 1), feats.flatten(0, 1))
            return g.view(B, T, MATCH_DIM, *g.shape[2:])
        return torch.stack([one(x[:, t], feats[:, t]) for t in range(T)], dim=1)

    def _matched(self, x: torch.Tensor, feats: torch.Tensor, g: torch.Tensor | None = None,
                 cost_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The matching estimate (B*(T-1), 2, H, W) and the forward and backward cost volumes of
        radius r at the CNN's half resolution (B*(T-1), 2 (2r+1)^2, ceil(H/2), ceil(W/2)) for x,
        feats as in `velocities`; in the matching conv's dtype, float32 from its output on (a soft
        argmax this sharp needs more than bfloat16's 8 bits: the CPU's fast path keeps that conv in
        float32). Without autograd the cost volumes are stored in ``cost_dtype`` where given (the
        values ``.to(cost_dtype)`` gives), written into one buffer band by band."""
        B, T, C, H, W = x.shape
        r, s = self.radius, self.search
        if g is None:
            g = self._match_features(x, feats)                                     # (B, T, MATCH_DIM, h, w)
        first, second = g[:, :-1].flatten(0, 1), g[:, 1:].flatten(0, 1)
        sharp = self.log_temperature.exp()
        if not torch.is_grad_enabled():  # inference: the same, in bands of rows (`matched_rows`)
            N, _, h, w = first.shape
            K = (2 * r + 1) ** 2
            cost = first.new_empty(N, 2 * K, h, w, dtype=cost_dtype or first.dtype)
            forward, _ = matched_rows(first, second, s, r, sharp, near=cost[:, :K])
            backward, _ = matched_rows(second, first, s, r, sharp, near=cost[:, K:])
            v0 = F.interpolate((forward - backward) * (MATCH_STRIDE / 2), size=(H, W), mode="bilinear", align_corners=False)
            return v0, cost
        ahead, back = correlation(first, second, s), correlation(second, first, s)  # (N, (2s+1)^2, h, w)
        forward, backward = soft_argmax(ahead, r, sharp), soft_argmax(back, r, sharp)
        v0 = F.interpolate((forward - backward) * (MATCH_STRIDE / 2), size=(H, W), mode="bilinear", align_corners=False)
        if s > r:  # the CNN reads the offsets within r
            ahead, back = _within(ahead, s, r), _within(back, s, r)
        return v0, torch.cat([ahead, back], dim=1)

    @staticmethod
    def at_times(v: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Pair velocities v (B, T-1, 2, H, W), placed at times j + 1/2, interpolated linearly to
        each target time (constant outside [1/2, T - 3/2]) -> (B, M, 2, H, W)."""
        B, P = v.shape[:2]
        if P == 0:
            return v.new_zeros(B, times.numel(), *v.shape[2:])
        pos = (times.to(torch.float32) - 0.5).clamp(0, P - 1)
        lo = pos.floor().long().clamp(max=P - 1)
        hi = (lo + 1).clamp(max=P - 1)
        w = (pos - lo.to(pos.dtype)).to(v.dtype).view(1, -1, 1, 1, 1)
        return v[:, lo] * (1 - w) + v[:, hi] * w


def displacement_grid(radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The offsets (dx, dy) of `correlation`'s channels, in its order: (K, 2), K = (2r+1)^2."""
    d = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=1)


def soft_argmax(cost: torch.Tensor, radius: int, sharpness: torch.Tensor | float) -> torch.Tensor:
    """The expected offset (dx, dy) of a cost volume (N, (2s+1)^2, h, w) of any radius s under the
    softmax of its similarities x ``sharpness`` -> (N, 2, h, w); offsets beyond ``radius`` count
    SEARCH_MARGIN less similar than they are (`MotionAlign`)."""
    search = (math.isqrt(cost.shape[1]) - 1) // 2
    work = torch.promote_types(cost.dtype, torch.float32)  # an offset is a coordinate: float32 at least
    with torch.autocast(cost.device.type, enabled=False):  # (autocast would run the einsum in bfloat16)
        cost = cost.to(work)
        offsets = displacement_grid(search, work, cost.device)                   # (K, 2)
        if search > radius:
            beyond = (offsets.abs().amax(dim=1) > radius).to(work).view(1, -1, 1, 1)
            cost = cost - beyond * SEARCH_MARGIN
        return torch.einsum("nkhw,kc->nchw", torch.softmax(cost * sharpness, dim=1), offsets)


def _within(cost: torch.Tensor, search: int, radius: int) -> torch.Tensor:
    """The channels of a cost volume of radius ``search`` (N, (2s+1)^2, h, w) that one of radius
    ``radius`` has, in its order: (N, (2r+1)^2, h, w)."""
    N, _, h, w = cost.shape
    k, e = 2 * search + 1, search - radius
    return cost.view(N, k, k, h, w)[:, e:k - e, e:k - e].reshape(N, -1, h, w)


def correlation(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """The cost volume of two feature maps: a, b (N, D, h, w) -> (N, (2r+1)^2, h, w), channel
    (dy + r) * (2r+1) + (dx + r) holding the sum over channels of a(x, y) * b(x + dx, y + dy) (b's
    border repeated beyond the frame)."""
    N, D, h, w = a.shape
    r = radius
    padded = F.pad(b, (r, r, r, r), mode="replicate")
    out = a.new_empty(N, (2 * r + 1) ** 2, h, w)
    k = 0
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out[:, k] = (a * padded[:, :, dy:dy + h, dx:dx + w]).sum(1)
            k += 1
    return out


MATCH_BAND = 8192  # half-resolution pixels per band of `matched_rows`: its cost volume stays a few MiB


def matched_rows(a: torch.Tensor, b: torch.Tensor, search: int, radius: int,
                 sharpness: torch.Tensor | float, near: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``soft_argmax(correlation(a, b, search), radius, sharpness)`` and
    ``_within(correlation(a, b, search), search, radius)`` in bands of rows, without autograd:
    a, b (N, D, h, w) -> (N, 2, h, w), (N, (2r+1)^2, h, w). Every pixel's cost volume is its own,
    so each band's result is the whole map's; the (2s+1)^2-channel volume of the whole map (and
    the products of every offset, each a map of D channels) is never built, only a band's.
    near: where to write the second result (any float dtype: it is converted as it is stored)."""
    N, D, h, w = a.shape
    s, r = search, radius
    padded = F.pad(b, (s, s, s, s), mode="replicate")
    est = a.new_empty(N, 2, h, w)
    if near is None:
        near = a.new_empty(N, (2 * r + 1) ** 2, h, w)
    rows = max(1, MATCH_BAND // max(N * w, 1))
    k = 2 * s + 1
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        band = a[:, :, r0:r1]
        cost = a.new_empty(N, k * k, r1 - r0, w)
        prod = torch.empty_like(band)
        for dy in range(k):
            for dx in range(k):
                torch.mul(band, padded[:, :, r0 + dy:r1 + dy, dx:dx + w], out=prod)
                torch.sum(prod, 1, out=cost[:, dy * k + dx])
        est[:, :, r0:r1] = soft_argmax(cost, r, sharpness)
        near[:, :, r0:r1] = _within(cost, s, r)
    return est, near


def _pairs_channels_last(x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """`MotionAlign.velocities`' input pairs (frame t and its features, then frame t+1 and its
    features) as a channels-last (B*(T-1), 2(C+dim), H, W) tensor: x (B, T, C, H, W), feats (B, T,
    dim, H, W), any strides."""
    B, T, C, H, W = x.shape
    both = C + feats.shape[2]
    out = x.new_empty(B, T - 1, H, W, 2 * both)
    for offset, frames in ((0, slice(None, -1)), (both, slice(1, None))):
        out[..., offset:offset + C] = x[:, frames].permute(0, 1, 3, 4, 2)
        out[..., offset + C:offset + both] = feats[:, frames].permute(0, 1, 3, 4, 2)
    return out.flatten(0, 1).permute(0, 3, 1, 2)


def warp(img: torch.Tensor, disp: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """img (N, C, H, W) sampled at x + disp(x): disp (N, 2, h, W) in pixels, (dx, dy), for the
    output rows ``rows`` = (r0, r1) of the frame (h = r1 - r0; default all H) -> (N, C, h, W).
    Bilinear, border pixels repeated beyond the frame; a zero disp returns img's rows exactly. The
    result is in img's dtype; the sampling positions are float32 (float64 for float64 operands)."""
    N, C, H, W = img.shape
    r0, r1 = rows if rows is not None else (0, H)
    # Coordinates and sampling in at least float32, whatever the operands' dtype or autocast: in
    # bfloat16 (8 significant bits) pixel 1279 lies 8 px from its neighbours and a sub-pixel shift
    # rounds away (tests/test_motion_align.py, a 0.3 px shift of a 1280-wide frame).
    work = torch.promote_types(torch.promote_types(img.dtype, disp.dtype), torch.float32)
    with torch.autocast(img.device.type, enabled=False):
        ys = torch.arange(r0, r1, dtype=work, device=disp.device).view(1, -1, 1)
        xs = torch.arange(W, dtype=work, device=disp.device).view(1, 1, -1)
        d = disp.to(work)
        # grid_sample's coordinates (align_corners=False): pixel centre i of n is (2i + 1) / n - 1
        gx = (2 * (xs + d[:, 0]) + 1) / W - 1
        gy = (2 * (ys + d[:, 1]) + 1) / H - 1
        grid = torch.stack([gx, gy], dim=-1)                                       # (N, h, W, 2)
        out = F.grid_sample(img.to(work), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(img.dtype)


def aligned_mix(feats: torch.Tensor, mix: torch.Tensor, v: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """TDIM's mix of motion-aligned frames: out_i = sum_t mix[i, t] * warp(feats_t, (t - tau_i) v_i).

    feats (B, T, D, H, W), mix (M, T, D), v (B, M, 2, H, W) velocities at the target times
    -> (B, M, D, H, W). The whole-tensor path (training and GPU); the CPU inference path does the
    same in bands (`units.aligned_mix_into`)."""
    B, T, D, H, W = feats.shape
    v = v.to(torch.promote_types(v.dtype, torch.float32))  # displacements are coordinates (`warp`)
    out = []
    for i in range(times.numel()):
        shift = (torch.arange(T, dtype=v.dtype, device=v.device) - times[i].to(v.dtype)).view(1, T, 1, 1, 1)
        disp = (shift * v[:, i, None]).flatten(0, 1)                               # (B*T, 2, H, W)
        moved = warp(feats.flatten(0, 1), disp).view(B, T, D, H, W)
        out.append(torch.einsum("tc,btchw->bchw", mix[i], moved))
    return torch.stack(out, dim=1)


def aligned_blend(x: torch.Tensor, v: torch.Tensor, times: torch.Tensor,
                  rows: tuple[int, int] | None = None) -> torch.Tensor:
    """The linear blend of the two input frames around each target time, each moved to it along v:
    x (B, T, C, H, W), v (B, M, 2, h, W) for the rows ``rows`` (default all) -> (B, M, C, h, W).
    At zero velocity this is `network.interpolate_frames`. All target times at once, indexed on the
    device (no host sync): at an input time the second frame's weight is zero."""
    B, T, C, H, W = x.shape
    M, h = times.numel(), v.shape[3]
    v = v.to(torch.promote_types(v.dtype, torch.float32))  # displacements are coordinates (`warp`)
    times = times.to(v.dtype)
    lo = times.floor().long().clamp(0, T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w = (times - lo.to(times.dtype)).to(x.dtype).view(1, M, 1, 1, 1)
    to_lo = (lo.to(v.dtype) - times).view(1, M, 1, 1, 1)   # sample frame lo at x - (tau - lo) v
    to_hi = (hi.to(v.dtype) - times).view(1, M, 1, 1, 1)
    first = warp(x[:, lo].flatten(0, 1), (v * to_lo).flatten(0, 1), rows).view(B, M, C, h, W)
    second = warp(x[:, hi].flatten(0, 1), (v * to_hi).flatten(0, 1), rows).view(B, M, C, h, W)
    return first * (1 - w) + second * w
