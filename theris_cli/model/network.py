"""THERIS: encoder -> TDIM -> N x TSSM -> x4 decoder, plus a bicubic global residual.

(B, T, C, H, W) input frames in [0, 1] at integer times 0..T-1 -> (B, M, C, 4H, 4W) frames at the
M target times (default: the 2T-1 half-steps). Any H, W >= 1: nothing here needs multiples (HMB
pads and crops inside).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.model.config import SCALE, ModelConfig
from theris_cli.model.tdim import TDIM
from theris_cli.model.tssm import TSSM

# the decoder's last conv starts near zero so the untrained network is its bicubic residual
# (0.1 started training 0.8 dB below bicubic; not exactly zero, so every layer gets a gradient)
OUTPUT_INIT_SCALE = 0.01


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
        self.tdim = TDIM(c.dim, c.time_embed_dim, c.decay_bins)
        n_orders = int(c.use_smb) + int(c.use_tmb) + int(c.use_hmb)
        self.blocks = nn.ModuleList(
            TSSM(
                c.dim, c.d_state, c.expand, c.headdim, c.ngroups, c.d_conv, c.chunk_size, c.bidirectional,
                c.hilbert_window, c.spectral_bins, c.time_embed_dim, c.use_spectral_mask,
                c.use_thermal_prompt, c.use_smb, c.use_tmb, c.use_hmb,
                first_reversed=(i * n_orders) % 2 == 1,  # directions alternate across blocks too
            )
            for i in range(c.n_blocks)
        )
        self.body_out = nn.Conv2d(c.dim, c.dim, 3, padding=1)  # closes the long skip around the TSSMs
        self.decoder = Decoder(c.dim, c.dec_dim, c.dec_blocks, c.in_channels)

    def forward(self, x: torch.Tensor, times: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, T, C, H, W) in [0, 1]; times (M,) in [0, T-1], default `default_times(T)`
        -> (B, M, C, 4H, 4W), not clamped."""
        assert x.dim() == 5, f"expected x as (B, T, C, H, W), got shape {tuple(x.shape)}"
        B, T, C, H, W = x.shape
        assert C == self.config.in_channels, f"expected {self.config.in_channels} channels, got {C}"
        times = default_times(T) if times is None else torch.as_tensor(times)
        times = times.to(device=x.device, dtype=torch.float32)
        if times.dim() != 1 or times.numel() < 1:
            raise ValueError(f"times must be a non-empty 1-D tensor, got shape {tuple(times.shape)}")
        if bool((times < 0).any()) or bool((times > T - 1).any()):
            raise ValueError(f"times must lie in [0, {T - 1}] (input-frame units), got {times.tolist()}")
        M = times.numel()

        feats = self.encoder(x.reshape(B * T, C, H, W)).view(B, T, -1, H, W)      # (B, T, dim, H, W)
        feats, e = self.tdim(feats, times)                                         # (B, M, dim, H, W), (M, E)
        z = feats.permute(0, 1, 3, 4, 2)                                           # (B, M, H, W, dim)
        for block in self.blocks:
            z = block(z, e.to(z.dtype))
        z = z.permute(0, 1, 4, 2, 3).reshape(B * M, -1, H, W)                     # (B*M, dim, H, W)
        z = self.body_out(z) + feats.reshape(B * M, -1, H, W)
        y = self.decoder(z).view(B, M, C, SCALE * H, SCALE * W)

        base = interpolate_frames(x, times).reshape(B * M, C, H, W)
        base = F.interpolate(base, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return y + base.view(B, M, C, SCALE * H, SCALE * W)
