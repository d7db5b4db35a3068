"""THERIS: encoder -> TDIM -> N x TSSM -> x4 decoder, plus a bicubic global residual, then the still
blend of the in-between frames and the still detail of all (model/still.py).

(B, T, C, H, W) input frames in [0, 1] at integer times 0..T-1 -> (B, M, C, 4H, 4W) frames at the
M target times (default: the 2T-1 half-steps). Any H, W >= 1: nothing here needs multiples (HMB
pads and crops inside).
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.model.config import SCALE, ModelConfig
from theris_cli.model.motion import MotionAlign, aligned_blend, aligned_mix, warp
from theris_cli.model.still import blend_sources, still_blend, still_detail
from theris_cli.model.tdim import TDIM
from theris_cli.model.tssm import TSSM, inference_units, units_lowp

# LR pixels per band of the decoder in an inference forward on the CPU: its x2 stage then holds
# tens of MiB (48 channels at 4x the pixels), not a whole HR window, and the halo rows recomputed
# around each band stay a small share. A speed setting only: results do not depend on it. See
# `_decode_units`.
DECODE_PIXELS = 49152

# the decoder's last conv starts near zero so the untrained network is its bicubic residual
# (a larger start puts the untrained output below bicubic; not exactly zero, so every layer gets a gradient)
OUTPUT_INIT_SCALE = 0.01

# output pixels per band of the motion alignment's warps on the CPU (a few MiB of temporaries)
WARP_PIXELS = 16384

# TDIM weights below this share of an output's largest one are left out of the CPU path's mix. At an
# input frame's own time the other frames' weights are float rounding of an identity (about 1e-8):
# left out, the frame is its own features and those frames are not warped (half of a window's warps),
# with the output within float tolerance of the whole-tensor path's.
NEGLIGIBLE_MIX = 1e-6


def default_times(n_frames: int) -> torch.Tensor:
    """The 2T-1 half-steps 0, 0.5, ..., T-1 (input frame i -> output 2i), float32, (2T-1,)."""
    if n_frames < 1:
        raise ValueError(f"need at least one input frame, got {n_frames}")
    return torch.arange(2 * n_frames - 1, dtype=torch.float32) / 2


def interpolate_frames(x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along time: x (B, T, C, H, W), times (M,) in [0, T-1] -> (B, M, C, H, W)."""
    T = x.shape[1]
    lo = times.floor().long().clamp(0, T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w = (times - lo.to(times.dtype)).to(x.dtype).view(1, -1, 1, 1, 1)
    return x[:, lo] * (1 - w) + x[:, hi] * w


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class Encoder(nn.Module):
    """Shallow features, frame by frame: (N, C, H, W) -> (N, dim, H, W)."""

    def __init__(self, in_channels: int, dim: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(dim) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(x))


class Decoder(nn.Module):
    """Refine at LR, then two x2 pixel-shuffle stages: (N, dim, H, W) -> (N, C, 4H, 4W)."""

    def __init__(self, dim: int, dec_dim: int, blocks: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(*[ResBlock(dim) for _ in range(blocks)])
        self.up1 = nn.Conv2d(dim, 4 * dec_dim, 3, padding=1)
        self.up2 = nn.Conv2d(dec_dim, 4 * dec_dim, 3, padding=1)
        self.out = nn.Conv2d(dec_dim, out_channels, 3, padding=1)
        with torch.no_grad():
            self.out.weight.mul_(OUTPUT_INIT_SCALE)
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        x = F.leaky_relu(F.pixel_shuffle(self.up1(x), 2), 0.1)
        x = F.leaky_relu(F.pixel_shuffle(self.up2(x), 2), 0.1)
        return self.out(x)


class THERIS(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c.in_channels, c.dim, c.enc_blocks)
        self.motion = (MotionAlign(c.in_channels, c.dim, c.motion_dim, c.motion_radius, c.motion_search)
                       if c.use_motion_align else None)
        self.tdim = TDIM(c.dim, c.time_embed_dim, c.decay_bins)
        n_orders = int(c.use_smb) + int(c.use_tmb) + int(c.use_hmb)
        self.blocks = nn.ModuleList(
            TSSM(c, first_reversed=(i * n_orders) % 2 == 1)  # directions alternate across blocks too
            for i in range(c.n_blocks)
        )
        self.body_out = nn.Conv2d(c.dim, c.dim, 3, padding=1)  # closes the long skip around the TSSMs
        self.decoder = Decoder(c.dim, c.dec_dim, c.dec_blocks, c.in_channels)

    def forward(self, x: torch.Tensor, times: Optional[torch.Tensor] = None,
                keep: Optional[Sequence[int]] = None) -> torch.Tensor:
        """x (B, T, C, H, W) in [0, 1]; times (M,) in [0, T-1], default `default_times(T)`
        -> (B, M, C, 4H, 4W), not clamped.

        keep: indices into times of the frames to return, (B, K, C, 4H, 4W). The others still take
        part in the TSSMs' scans over time (so the kept frames equal those of the full call), but
        are not decoded: the body_out, decoder and bicubic residual of a frame are its own.

        With `ModelConfig.use_still_blend` the in-between frames are then gated towards the linear
        blend of the frames at the input times either side (model/still.py); those are decoded too.
        With `ModelConfig.use_still_detail` every frame's detail over bicubic + linear is gated towards
        the window's mean detail; then every frame is decoded."""
        assert x.dim() == 5, f"expected x as (B, T, C, H, W), got shape {tuple(x.shape)}"
        B, T, C, H, W = x.shape
        assert C == self.config.in_channels, f"expected {self.config.in_channels} channels, got {C}"
        times = default_times(T) if times is None else torch.as_tensor(times)
        times = times.to(device=x.device, dtype=torch.float32)
        if times.dim() != 1 or times.numel() < 1:
            raise ValueError(f"times must be a non-empty 1-D tensor, got shape {tuple(times.shape)}")
        if bool((times < 0).any()) or bool((times > T - 1).any()):
            raise ValueError(f"times must lie in [0, {T - 1}] (input-frame units), got {times.tolist()}")
        if keep is not None:
            keep = [int(i) for i in keep]
            if not keep or min(keep) < 0 or max(keep) >= times.numel():
                raise ValueError(f"keep must be indices into the {times.numel()} times, got {keep}")
        c = self.config
        if not (c.use_still_blend or c.use_still_detail):
            return self._forward(x, times, keep)
        # the kept frames and those the still parts read: the input-time frames either side, or all
        decoded = None if c.use_still_detail else blend_sources(times, keep)
        at = times if decoded is None else times[decoded]
        y = self._forward(x, times, decoded)
        if c.use_still_blend:
            y = still_blend(x, at, y)
        if c.use_still_detail:
            y = still_detail(x, interpolate_frames(x, at), at, y)
        if keep is None:
            return y
        return y[:, keep] if decoded is None else y[:, [decoded.index(i) for i in keep]]

    def _forward(self, x: torch.Tensor, times: torch.Tensor, keep: Optional[list[int]]) -> torch.Tensor:
        """`forward` before the still blend and the still detail, times and keep checked."""
        B, T, C, H, W = x.shape
        if inference_units(x):
            lowp = units_lowp()  # read before autocast is turned off: the path does its own casts
            with torch.autocast("cpu", enabled=False):
                return self._forward_units(x, times, keep, lowp)
        M = times.numel()

        feats = self.encoder(x.reshape(B * T, C, H, W)).view(B, T, -1, H, W)      # (B, T, dim, H, W)
        v = None
        if self.motion is None:
            feats, e = self.tdim(feats, times)                                     # (B, M, dim, H, W), (M, E)
        else:
            v = self.motion.at_times(self.motion.velocities(x, feats), times)     # (B, M, 2, H, W)
            mix, e = self.tdim.coefficients(times, T)
            feats = aligned_mix(feats, mix.to(feats.dtype), v, times)
        z = feats.permute(0, 1, 3, 4, 2)                                           # (B, M, H, W, dim)
        for block in self.blocks:
            z = block(z, e.to(z.dtype))
        if keep is not None:                                                       # only the kept frames on
            z, feats, times, M = z[:, keep], feats[:, keep], times[keep], len(keep)
            v = None if v is None else v[:, keep]
        z = z.permute(0, 1, 4, 2, 3).reshape(B * M, -1, H, W)                     # (B*M, dim, H, W)
        z = self.body_out(z) + feats.reshape(B * M, -1, H, W)
        y = self.decoder(z).view(B, M, C, SCALE * H, SCALE * W)

        base = interpolate_frames(x, times) if v is None else aligned_blend(x, v, times)
        base = base.reshape(B * M, C, H, W)
        base = F.interpolate(base, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return y + base.view(B, M, C, SCALE * H, SCALE * W)

    def pair_velocities(self, x: torch.Tensor) -> torch.Tensor:
        """The motion alignment's velocities for each pair of neighbouring input frames, as `forward`
        computes them: x (B, T, C, H, W) -> (B, T-1, 2, H, W), LR pixels per input frame (what
        `theris train --flow-teacher` compares with the teacher's). Gradients reach the motion
        alignment only, not the encoder it reads: a teacher of motion should not reshape the
        features the rest of the network reconstructs from."""
        if self.motion is None:
            raise ValueError("this network has no motion alignment (ModelConfig.use_motion_align)")
        B, T, C, H, W = x.shape
        with torch.no_grad():
            feats = self.encoder(x.reshape(B * T, C, H, W)).view(B, T, -1, H, W)
        return self.motion.velocities(x, feats)

    # ------------------------------------------------------------------------------ CPU inference

    def decoder_halo(self) -> int:
        """LR rows each side of a decoder band that its output depends on: 3x3 convs of the residual
        blocks and body_out at LR (1 each), up1 (1), up2 at 2x and out at 4x (1/2 + 1/4, so 1); the
        bicubic residual reads 2 rows each side, inside the same margin."""
        return 2 * len(self.decoder.body) + 1 + 2

    def _forward_units(self, x: torch.Tensor, times: torch.Tensor, keep: Optional[list[int]] = None,
                       lowp: Optional[torch.dtype] = None) -> torch.Tensor:
        """`forward` without autograd on the CPU: the same network in cache-sized work units.

        Convolutions run channels-last (mkldnn's NHWC kernels are the faster ones) one frame at a
        time; TDIM mixes frames with fused multiply-adds into its output; the TSSMs work in token
        bands (tssm.WORK_TOKENS); the decoder and the bicubic residual run one output frame at a time
        in bands of LR rows with a halo that covers their receptive field, so every band's output
        equals the whole frame's. Equal to the whole-tensor path within float rounding
        (tests/test_model_units.py).

        lowp (bfloat16 under CPU autocast, `tssm.units_lowp`): the convolutions and the TSSMs'
        projections run in it (faster than float32 on CPUs with bfloat16 dot products); features
        between stages, the scans and the output stay float32.
        """
        B, T, C, H, W = x.shape
        M = times.numel()
        cl = torch.channels_last
        dim = self.config.dim
        feats = x.new_empty(B, T, H, W, dim)                                       # (B, T, H, W, dim)
        encoder = _in_dtype(self.encoder, lowp)
        for t in range(T):
            feats[:, t] = encoder(x[:, t].to(lowp or x.dtype, memory_format=cl)).permute(0, 2, 3, 1)
        mix, e = self.tdim.coefficients(times, T)                                  # (M, T, dim), (M, E)
        mix = mix.to(x.dtype)
        interp = x.new_empty(B, M, H, W, dim)                                      # TDIM's output frames
        v = None
        if self.motion is None:
            for i in range(M):
                first, *rest = _mixed_frames(mix[i])
                out = torch.mul(feats[:, first], mix[i, first], out=interp[:, i])
                for t in rest:
                    out.addcmul_(feats[:, t], mix[i, t])
        else:
            if lowp is None:
                pair_v = self.motion.velocities(x, feats.permute(0, 1, 4, 2, 3))
            else:
                motion = _in_dtype(self.motion, lowp)
                if self.motion.radius > 0:  # the matching conv in float32, on the float32 frames
                    motion.match.float()    # (`MotionAlign._matched`)
                pair_v = motion.velocities(x, feats.permute(0, 1, 4, 2, 3).to(lowp)).float()
            v = self.motion.at_times(pair_v, times)
            self._aligned_mix_units(feats, mix, v, times, interp)
        del feats
        z = interp
        for block in self.blocks:
            z = block(z, e.to(z.dtype), lowp)                                      # (B, M, H, W, dim)
        return self._decode_units(x, times, z, interp, keep, v, lowp)

    def _aligned_mix_units(self, feats: torch.Tensor, mix: torch.Tensor, v: torch.Tensor, times: torch.Tensor,
                           interp: torch.Tensor) -> None:
        """`motion.aligned_mix` into interp (B, M, H, W, dim), in bands of rows: feats (B, T, H, W,
        dim), mix (M, T, dim), v (B, M, 2, H, W). A frame at its own time is not resampled, and a frame
        whose weight is negligible (`_mixed_frames`) is left out."""
        B, T, H, W, dim = feats.shape
        rows = max(1, WARP_PIXELS // max(B * W, 1))
        frames = [feats[:, t].permute(0, 3, 1, 2) for t in range(T)]              # (B, dim, H, W) views
        for i in range(times.numel()):
            used = _mixed_frames(mix[i])
            own = [t for t in used if float(t - times[i]) == 0]  # the frame at this time: not moved
            moved_frames = [t for t in used if t not in own]
            if not moved_frames:  # an input frame's own time: nothing to warp, the whole frame at once
                out = torch.mul(feats[:, own[0]], mix[i, own[0]], out=interp[:, i])
                for t in own[1:]:
                    out.addcmul_(feats[:, t], mix[i, t])
                continue
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                # grid_sample returns (B, dim, h, W) contiguous: the moved frames are summed in that
                # layout (a multiply-add on the permuted view is much slower) and transposed once
                acc = None
                for t in moved_frames:
                    moved = warp(frames[t], v[:, i, :, r0:r1] * float(t - times[i]), (r0, r1))
                    gain = mix[i, t].view(1, dim, 1, 1)
                    acc = moved.mul_(gain) if acc is None else acc.addcmul_(moved, gain)
                out = interp[:, i, r0:r1]
                out.copy_(acc.permute(0, 2, 3, 1))
                for t in own:
                    out.addcmul_(feats[:, t, r0:r1], mix[i, t])

    def _decode_units(self, x: torch.Tensor, times: torch.Tensor, z: torch.Tensor, interp: torch.Tensor,
                      keep: Optional[list[int]] = None, v: Optional[torch.Tensor] = None,
                      lowp: Optional[torch.dtype] = None) -> torch.Tensor:
        """body_out + long skip, decoder and bicubic residual, frame by frame in bands of LR rows:
        x (B, T, C, H, W), z and interp (B, M, H, W, dim), v (B, M, 2, H, W) the motion alignment's
        velocities or None -> (B, K, C, 4H, 4W) for the K frames ``keep`` (default all M).
        lowp: body_out and the decoder in that dtype, the bicubic residual added in float32."""
        B, T, C, H, W = x.shape
        keep = list(range(times.numel())) if keep is None else keep
        kept = times[keep]                                                         # the bicubic residual's frames
        base = interpolate_frames(x, kept) if v is None else aligned_blend(x, v[:, keep], kept)  # (B, K, C, H, W)
        y = x.new_empty(B, len(keep), C, SCALE * H, SCALE * W)
        halo = self.decoder_halo()
        w_out, b_out = fold_shuffle_into_conv_2x2(self.decoder.out.weight, self.decoder.out.bias)
        body_out, decoder = _in_dtype(self.body_out, lowp), _in_dtype(self.decoder, lowp)
        w_up1, b_up1 = subpixel_major(self.decoder.up1.weight, self.decoder.up1.bias)
        if lowp is not None:
            w_out, b_out, w_up1, b_up1 = (t.to(lowp) for t in (w_out, b_out, w_up1, b_up1))
        # even bands of at least 4 halos, so that the margins cost at most half again of the band
        n_bands = max(1, min(-(-B * H * W // DECODE_PIXELS), H // (4 * halo)))
        rows = -(-H // n_bands)
        for k, i in enumerate(keep):
            for r0 in range(0, H, rows):
                r1 = min(H, r0 + rows)
                lo, hi = max(0, r0 - halo), min(H, r1 + halo)
                zb = z[:, i, lo:hi].permute(0, 3, 1, 2)                            # (B, dim, h, W) NHWC
                sb = interp[:, i, lo:hi].permute(0, 3, 1, 2)
                # mixed-dtype elementwise ops are slow on the CPU (a bf16 += fp32 view is much slower
                # than a conversion and a bf16 sum), so every operand is converted first
                d = body_out(zb.to(lowp or zb.dtype, memory_format=torch.channels_last)).add_(sb.to(lowp or sb.dtype))
                out = self._decoder_folded(d, w_out, b_out, w_up1, b_up1, decoder).float()  # (B, 4C, 2h+1, 2W+1)
                bic = bicubic_up(base[:, k, :, lo:hi])                                # (B, C, 4h, 4W)
                # the last pixel shuffle, the residual's sum and the store, one pass per sub-pixel:
                # out's channel c*4 + 2*di + dj at (i + di, j + dj) is output pixel (2i + di, 2j + dj)
                # of channel c (`fold_shuffle_into_conv_2x2`)
                n2, a2, a4 = 2 * (r1 - r0), 2 * (r0 - lo), SCALE * (r0 - lo)
                pixels = bic[:, :, a4:a4 + 2 * n2].unflatten(2, (n2, 2)).unflatten(4, (2 * W, 2))
                store = y[:, k, :, SCALE * r0:SCALE * r1].unflatten(2, (n2, 2)).unflatten(4, (2 * W, 2))
                for di in range(2):
                    for dj in range(2):
                        sub = out[:, 2 * di + dj::4, a2 + di:a2 + di + n2, dj:dj + 2 * W]
                        torch.add(sub, pixels[:, :, :, di, :, dj], out=store[:, :, :, di, :, dj])
        return y

    def _decoder_folded(self, x: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor, w_up1: torch.Tensor,
                        b_up1: torch.Tensor, dec: Optional[Decoder] = None) -> torch.Tensor:
        """`Decoder.forward` with its last pixel shuffle moved after the output conv: (N, dim, h, w)
        -> (N, 4C, 2h+1, 2w+1), whose channel c*4 + 2*di + dj read at rows di.. and columns dj.. is
        sub-pixel (di, dj) of the decoder's output channel c (N, C, 4h, 4w).

        w_out, b_out: the output conv from `fold_shuffle_into_conv_2x2`, so it runs at 2x on 48
        channels as 2x2 taps instead of at 4x on 12, and the 4x feature map is never built.
        w_up1, b_up1: the first x2 stage from `subpixel_major` (channels-last input), so its pixel
        shuffle is a copy of whole pixels, cheaper than pixel_shuffle.
        dec: the decoder to run (default this network's; `_in_dtype` gives a bfloat16 copy)."""
        dec = self.decoder if dec is None else dec
        x = dec.body(x)
        x = shuffle_subpixel_major(F.leaky_relu_(F.conv2d(x, w_up1, b_up1, padding=1), 0.1))
        x = F.leaky_relu_(dec.up2(x), 0.1)  # elementwise, so before the shuffle as well as after it
        return F.conv2d(x, w_out, b_out, padding=1)  # the caller shuffles, as it adds the residual


def _mixed_frames(weights: torch.Tensor) -> list[int]:
    """The input frames that take part in one output frame's mix: weights (T, dim) -> the indices t
    whose largest |weight| is at least NEGLIGIBLE_MIX of the largest one (never empty)."""
    peak = weights.abs().amax(dim=1)                                               # (T,)
    return [t for t, keep in enumerate((peak >= NEGLIGIBLE_MIX * peak.max()).tolist()) if keep]


BICUBIC_A = -0.75  # the cubic convolution's parameter in PyTorch's (and OpenCV's) bicubic


@lru_cache(maxsize=None)
def _bicubic_taps(r: int) -> tuple[tuple[float, ...], ...]:
    """For each of the r output phases of an x r bicubic upsampling (align_corners=False), the
    weights of input pixels j-2 .. j+2 for output pixel r*j + phase."""
    a = BICUBIC_A

    def near(d: float) -> float:  # the kernel at distance |d| <= 1 (PyTorch's cubic_convolution1)
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: float) -> float:  # at 1 < |d| < 2 (cubic_convolution2)
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    def cubic(t: float) -> list[float]:  # taps at -1, 0, 1, 2 around a point t past a pixel
        return [far(t + 1), near(t), near(1 - t), far(2 - t)]

    rows = []
    for phase in range(r):
        real = (phase + 0.5) / r - 0.5  # in (-0.5, 0.5): the first tap is j - 2 or j - 1
        first = math.floor(real)
        row = [0.0] * 5
        for k, w in enumerate(cubic(real - first)):
            row[first + 1 + k] = w
        rows.append(tuple(row))
    return tuple(rows)


def bicubic_up(x: torch.Tensor, r: int = SCALE) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=r, mode="bicubic", align_corners=False)`` for (N, C, H, W), as
    two separable passes (replicated borders, as PyTorch clamps): less work than the 2-D kernel,
    equal to float rounding (tests/test_model_units.py)."""
    N, C, H, W = x.shape
    taps = torch.tensor(_bicubic_taps(r), dtype=x.dtype, device=x.device)                 # (r, 5)
    flat = x.reshape(N * C, 1, H, W)
    rows = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), taps.view(r, 1, 1, 5))   # (NC, r, H, W)
    rows = rows.permute(0, 2, 3, 1).reshape(N * C, 1, H, r * W)
    both = F.conv2d(F.pad(rows, (0, 0, 2, 2), mode="replicate"), taps.view(r, 1, 5, 1))   # (NC, r, H, rW)
    return both.permute(0, 2, 1, 3).reshape(N, C, r * H, r * W)


def _in_dtype(module: nn.Module, dtype: Optional[torch.dtype]) -> nn.Module:
    """``module`` itself (dtype None), or a copy with its parameters in ``dtype``: the CPU path's
    bfloat16 convolutions (tens of KiB of weights, copied once per window)."""
    return module if dtype is None else copy.deepcopy(module).to(dtype)


def subpixel_major(weight: torch.Tensor, bias: torch.Tensor, r: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv's output channels reordered from pixel_shuffle's (c, di, dj) to (di, dj, c), for
    `shuffle_subpixel_major`: weight (r*r*C, Ci, k, k), bias (r*r*C,) -> the same, permuted."""
    C = weight.shape[0] // (r * r)
    order = torch.arange(r * r * C, device=weight.device).view(C, r * r).t().reshape(-1)
    return weight[order].contiguous(memory_format=torch.channels_last), bias[order]


def shuffle_subpixel_major(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """``pixel_shuffle`` of a conv's output whose channels are in (di, dj, c) order (`subpixel_major`),
    channels-last in and out: (N, r*r*C, h, w) -> (N, C, r*h, r*w). Output row r*i + di is input row
    i's channels di*r*C .. (di+1)*r*C, pixel after pixel, so each pixel moves as one block."""
    N, rrC, h, w = x.shape
    C = rrC // (r * r)
    out = torch.empty(N, C, r * h, r * w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    src = x.permute(0, 2, 3, 1).reshape(N, h, w, r, r * C).permute(0, 1, 3, 2, 4)
    out.permute(0, 2, 3, 1).view(N, h, r, w, r * C).copy_(src)
    return out


def fold_shuffle_into_conv_2x2(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`fold_shuffle_into_conv` for r = 2 without its zero taps: a 2x2 conv (padding 1) whose
    output channel o*4 + 2*di + dj, read at rows di.. and columns dj.. (one more row and column than
    the input has), is sub-pixel (di, dj) of the folded 3x3 conv's output channel. Sub-pixel di of
    a fine 3x3 neighbourhood reaches coarse rows di-1 and di only, so 5 of the 9 coarse taps are zero:
    as a 2x2 conv it does 4 of the 9 taps' work.
    weight (Co, Ci, 3, 3), bias (Co,) -> (Co*4, Ci*4, 2, 2), (Co*4,)."""
    w3, b = fold_shuffle_into_conv(weight, bias, 2)
    w2 = torch.stack([w3[q, :, (q % 4) // 2:(q % 4) // 2 + 2, q % 2:q % 2 + 2] for q in range(w3.shape[0])])
    return w2.contiguous(memory_format=torch.channels_last), b


def fold_shuffle_into_conv(weight: torch.Tensor, bias: torch.Tensor, r: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of a 3x3 conv (padding 1) that, run before ``pixel_shuffle(., r)``, equals the given
    3x3 conv run after it: conv(ps(x)) == ps(conv'(x)) for every x, borders included.

    weight (Co, Ci, 3, 3), bias (Co,) -> (Co*r*r, Ci*r*r, 3, 3), (Co*r*r,). The output sub-pixel
    (i, j) of channel o is channel o*r*r + i*r + j; an input offset dy at the fine scale reaches
    coarse row (i + dy) // r and sub-row (i + dy) % r, which for r >= 2 and |dy| <= 1 stays within
    one coarse pixel: the folded conv is 3x3 too (mostly zeros)."""
    co, ci = weight.shape[:2]
    assert weight.shape[2:] == (3, 3) and r >= 2, "folds a 3x3 conv after a pixel shuffle of r >= 2"
    folded = weight.new_zeros(co * r * r, ci * r * r, 3, 3)
    ch = torch.arange(ci, device=weight.device) * r * r
    for o in range(co):
        for i in range(r):
            for j in range(r):
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ky, a = (i + dy) // r + 1, (i + dy) % r
                        kx, b = (j + dx) // r + 1, (j + dx) % r
                        folded[o * r * r + i * r + j, ch + a * r + b, ky, kx] += weight[o, :, dy + 1, dx + 1]
    return folded.contiguous(memory_format=torch.channels_last), bias.repeat_interleave(r * r)
