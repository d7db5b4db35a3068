"""THERIS: encoder -> TDIM -> N x TSSM -> x4 decoder, plus a bicubic global residual, then the still
blend of the in-between frames and the still detail of all (model/still.py).

(B, T, C, H, W) input frames in [0, 1] at integer times 0..T-1 -> (B, M, C, 4H, 4W) frames at the
M target times (default: the 2T-1 half-steps). Any H, W >= 1: nothing here needs multiples (HMB
pads and crops inside).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.model.config import SCALE, ModelConfig
from theris_cli.model import units
from theris_cli.model.motion import MotionAlign, aligned_blend, aligned_mix
from theris_cli.model.still import blend_sources, noise_level, spatial_noise_level, still_blend, still_detail
from theris_cli.model.tdim import TDIM
from theris_cli.model.tssm import TSSM
from theris_cli.ops import interpolate_frames

# the decoder's last conv starts near zero so the untrained network is its bicubic residual
# (a larger start puts the untrained output below bicubic; not exactly zero, so every layer gets a gradient)
OUTPUT_INIT_SCALE = 0.01


def default_times(n_frames: int) -> torch.Tensor:
    """The 2T-1 half-steps 0, 0.5, ..., T-1 (input frame i -> output 2i), float32, (2T-1,)."""
    if n_frames < 1:
        raise ValueError(f"need at least one input frame, got {n_frames}")
    return torch.arange(2 * n_frames - 1, dtype=torch.float32) / 2


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


class NoiseFiLM(nn.Module):
    """theris's addition (`ModelConfig.use_noise_input`): a gain and an offset per feature channel for
    the encoder's output and for the TSSMs' output, from the window's measured noise (temporal,
    `noise_level`, and pixel to pixel, `spatial_noise_level`, in percent of the range), so one network
    can keep the detail of clean input and smooth a sensor's noise. Starts at gain 1 and offset 0:
    the network it is added to computes exactly what it did."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(2, 4 * dim)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, T, C, H, W), noise (B,) its `noise_level` -> (encoder gain, encoder offset, TSSM gain,
        TSSM offset), each (B, dim)."""
        levels = torch.stack([noise, spatial_noise_level(x)], dim=-1).float() * 100
        g1, b1, g2, b2 = self.proj(levels).chunk(4, dim=-1)
        return 1 + g1, b1, 1 + g2, b2


class THERIS(nn.Module):
    """The network. Two ways to run the same function: the plain path (each module's ``forward``,
    whole tensors: training and the GPU) and, for inference on the CPU, the work-unit path
    (model/units.py: the same layers in cache-sized units). `runs_in_units` chooses; set
    ``use_work_units = False`` to keep the plain path for inference too."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.use_work_units = True  # CPU inference in work units (model/units.py); not saved with the weights
        # the motion alignment's velocities of pairs shared by overlapping windows, kept from one
        # window for the next (`motion.PairMemo`): set by whoever runs the windows (engine/infer.py)
        self.pair_memo = None
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
        self.noise_film = NoiseFiLM(c.dim) if c.use_noise_input else None

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
        # checked and read by the still parts on the host: no wait for a GPU in a training step
        host = times.detach().to("cpu", torch.float32)
        times = times.to(device=x.device, dtype=torch.float32)
        if host.dim() != 1 or host.numel() < 1:
            raise ValueError(f"times must be a non-empty 1-D tensor, got shape {tuple(host.shape)}")
        if bool((host < 0).any()) or bool((host > T - 1).any()):
            raise ValueError(f"times must lie in [0, {T - 1}] (input-frame units), got {host.tolist()}")
        if keep is not None:
            keep = [int(i) for i in keep]
            if not keep or min(keep) < 0 or max(keep) >= times.numel():
                raise ValueError(f"keep must be indices into the {times.numel()} times, got {keep}")
        c = self.config
        # the input frames' temporal noise, which both still parts look past and the noise input reads
        noise = noise_level(x) if (c.use_still_blend or c.use_still_detail or c.use_noise_input) else None
        film = None if self.noise_film is None else self.noise_film(x, noise)
        if not (c.use_still_blend or c.use_still_detail):
            return self._forward(x, times, keep, film)
        if self.runs_in_units(x):  # the still parts band by band, with the decoder (units.decode_units)
            lowp = units.units_lowp()  # read before autocast is turned off: the path does its own casts
            with torch.autocast("cpu", enabled=False):
                return units.forward_units(self, x, times, keep, lowp, film, still=True, noise=noise)
        # the kept frames and those the still parts read: the input-time frames either side, or all
        decoded = None if c.use_still_detail else blend_sources(host, keep)
        at, at_host = (times, host) if decoded is None else (times[decoded], host[decoded])
        y = self._forward(x, times, decoded, film)
        if c.use_still_blend:
            y = still_blend(x, at_host, y, noise)
        if c.use_still_detail:
            y = still_detail(x, interpolate_frames(x, at), at_host, y, noise)
        if keep is None:
            return y
        return y[:, keep] if decoded is None else y[:, [decoded.index(i) for i in keep]]

    def _forward(self, x: torch.Tensor, times: torch.Tensor, keep: Optional[list[int]],
                 film: Optional[tuple[torch.Tensor, ...]] = None) -> torch.Tensor:
        """`forward` before the still blend and the still detail, times and keep checked; film: the
        noise input's gains and offsets (`NoiseFiLM`), or None."""
        B, T, C, H, W = x.shape
        if self.runs_in_units(x):
            lowp = units.units_lowp()  # read before autocast is turned off: the path does its own casts
            with torch.autocast("cpu", enabled=False):
                return units.forward_units(self, x, times, keep, lowp, film)
        M = times.numel()

        feats = self.encoder(x.reshape(B * T, C, H, W)).view(B, T, -1, H, W)      # (B, T, dim, H, W)
        if film is not None:
            feats = feats * film[0].view(B, 1, -1, 1, 1).to(feats.dtype) + film[1].view(B, 1, -1, 1, 1).to(feats.dtype)
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
        if film is not None:
            z = z * film[2].view(B, 1, 1, 1, -1).to(z.dtype) + film[3].view(B, 1, 1, 1, -1).to(z.dtype)
        z = z.permute(0, 1, 4, 2, 3).reshape(B * M, -1, H, W)                     # (B*M, dim, H, W)
        z = self.body_out(z) + feats.reshape(B * M, -1, H, W)
        y = self.decoder(z).view(B, M, C, SCALE * H, SCALE * W)

        base = interpolate_frames(x, times) if v is None else aligned_blend(x, v, times)
        base = base.reshape(B * M, C, H, W)
        base = F.interpolate(base, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return y + base.view(B, M, C, SCALE * H, SCALE * W)

    def runs_in_units(self, x: torch.Tensor) -> bool:
        """Whether a forward on ``x`` takes the work-unit path (model/units.py): only when
        ``use_work_units`` is set, autograd is off (training keeps whole tensors, whose backward is
        faster) and ``x`` is on the CPU (a GPU wants the largest launches it can get)."""
        return self.use_work_units and not torch.is_grad_enabled() and x.device.type == "cpu"

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
