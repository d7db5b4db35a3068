"""TDIM, thermal diffusion interpolation: features at any target time from k+1 feature frames.

The k+1 frames are samples of a field along time at x = 0..k. Their orthonormal DCT-II along time
(the discrete eigenbasis of the heat equation) gives F_n; a frame at time tau is rebuilt as
    f(tau) = sum_n F_n * W(n, e) * phi_n(tau),   W = exp(-kappa(n; e) * omega_n^2 * dt),
with omega_n = n*pi/(k+1), dt the distance (in input-frame units) from tau to the nearest input
frame, e the time embedding of tau, and phi_n the DCT-II basis evaluated at tau + 1/2 (its sample
positions), so that at an input time (dt = 0, W = 1) the input frame comes back exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.ops import dct_matrix

# kappa = softplus(-9) ~ 1.2e-4 at start: W ~ 1, i.e. plain cosine interpolation, yet differentiable
KAPPA_INIT_BIAS = -9.0
N_SINUSOIDS = 4  # time encoding frequencies: periods of 16, 8, 4, 2 input frames


def dct_basis(tau: torch.Tensor, n: int) -> torch.Tensor:
    """phi_k(tau) = s_k cos(pi k (tau + 1/2) / n) for continuous tau (input-frame units), (M, n)."""
    k = torch.arange(n, dtype=tau.dtype, device=tau.device)
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=tau.dtype, device=tau.device)
    scale[0] = math.sqrt(1.0 / n)
    return scale * torch.cos(math.pi * k * (tau[:, None] + 0.5) / n)


def distance_to_input(times: torch.Tensor) -> torch.Tensor:
    """Distance from each target time to the nearest input frame (integer time), in frames."""
    return (times - times.round()).abs()


def time_encoding(times: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Fixed features of each target time, (M, 2 + 2 * N_SINUSOIDS): distance to the nearest input
    (x2, so in [0, 1]), relative position in the window, and sinusoids of tau."""
    dt = distance_to_input(times)
    rel = times / max(n_frames - 1, 1)
    freqs = math.pi / 8.0 * 2.0 ** torch.arange(N_SINUSOIDS, dtype=times.dtype, device=times.device)
    ang = times[:, None] * freqs
    return torch.cat([2 * dt[:, None], rel[:, None], torch.sin(ang), torch.cos(ang)], dim=1)


class TDIM(nn.Module):
    def __init__(self, dim: int, time_embed_dim: int, decay_bins: int):
        super().__init__()
        self.dim, self.decay_bins = dim, decay_bins
        # Theta: time encoding -> e_i (TMNet conditions on time with a small MLP the same way)
        self.theta = nn.Sequential(
            nn.Linear(2 + 2 * N_SINUSOIDS, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        # kappa(omega; e) >= 0 per channel, given at decay_bins frequencies spread over [0, pi] and
        # interpolated at each omega_n, so one network serves any window length k+1
        self.kappa = nn.Sequential(
            nn.Linear(time_embed_dim, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, decay_bins * dim)
        )
        nn.init.normal_(self.kappa[-1].weight, std=1e-2)  # small, not zero: earlier layers still learn
        nn.init.constant_(self.kappa[-1].bias, KAPPA_INIT_BIAS)

    def embed(self, times: torch.Tensor, n_frames: int) -> torch.Tensor:
        """e_i for each target time: (M,) -> (M, time_embed_dim)."""
        return self.theta(time_encoding(times, n_frames))

    def kappa_at(self, e: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Decay rates kappa(n; e_i) >= 0 for n = 0..n_frames-1: (M, E) -> (M, n_frames, dim)."""
        bins = F.softplus(self.kappa(e)).view(-1, self.decay_bins, self.dim)     # (M, bins, dim)
        pos = torch.arange(n_frames, dtype=e.dtype, device=e.device) / n_frames * (self.decay_bins - 1)
        lo = pos.floor().long().clamp(max=self.decay_bins - 1)
        hi = (lo + 1).clamp(max=self.decay_bins - 1)
        frac = (pos - lo.to(pos.dtype))[None, :, None]
        return bins[:, lo] * (1 - frac) + bins[:, hi] * frac

    def coefficients(self, times: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixing weights M[i, t, c] (output i from input t, channel c) and the embeddings e.
        times: (M,) -> (M, n_frames, dim) in float32 (float64 for a float64 module), (M, E).
        The DCT and the decay are computed in at least float32 even in a half-precision model."""
        pdtype = self.kappa[-1].weight.dtype
        work = torch.promote_types(pdtype, torch.float32)
        e = self.embed(times.to(pdtype), n_frames)
        kappa = self.kappa_at(e, n_frames).to(work)                                # (M, n, dim)
        times = times.to(work)
        omega = math.pi * torch.arange(n_frames, dtype=work, device=times.device) / n_frames
        dt = distance_to_input(times)                                              # (M,)
        w = torch.exp(-kappa * (omega**2)[None, :, None] * dt[:, None, None])      # (M, n, dim)
        phi = dct_basis(times, n_frames)                                           # (M, n)
        dct = dct_matrix(n_frames, work, times.device)                             # (n, t)
        mix = torch.einsum("inc,in,nt->itc", w, phi, dct)                          # (M, t, dim)
        return mix, e

    def forward(self, feats: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, C, H, W), times (M,) in [0, T-1] -> (B, M, C, H, W) features, e (M, E)."""
        B, T, C, H, W = feats.shape
        assert C == self.dim, f"TDIM expects {self.dim} channels, got {C}"
        mix, e = self.coefficients(times, T)
        out = torch.einsum("itc,btchw->bichw", mix.to(feats.dtype), feats)
        return out, e
