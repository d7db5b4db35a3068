"""Small tensor operators that the network, training and evaluation share, each defined once.

    dct_matrix(n)      orthonormal DCT-II matrix (n, n): TDIM's time basis, the JPEG-like extras' blocks
    laplacian(x)       5-point Laplacian over the last two axes: the heat equation (TFM loss, synthetic scenes)
    interpolate_frames(x, times)  linear blend in time: the network's residual base, its two paths alike
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II, (n, n): D[k, t] = s_k cos(pi k (t + 1/2) / n), s_0 = sqrt(1/n), else
    sqrt(2/n); D @ D.T = I. Row k is basis function k. Built in float64, then cast."""
    t = torch.arange(n, dtype=torch.float64)
    k = t[:, None]
    d = torch.cos(math.pi * k * (t[None, :] + 0.5) / n) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """5-point Laplacian [[0,1,0],[1,-4,1],[0,1,0]] over the last two axes, per px^2.

    Replicate border: no heat flows through the frame's edge (zero flux). Any leading shape.
    """
    shape = x.shape
    p = F.pad(x.reshape(-1, 1, *shape[-2:]), (1, 1, 1, 1), mode="replicate")
    lap = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * p[..., 1:-1, 1:-1]
    return lap.reshape(shape)


def interpolate_frames(x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along time: x (B, T, C, H, W), times (M,) in [0, T-1] -> (B, M, C, H, W)."""
    T = x.shape[1]
    lo = times.floor().long().clamp(0, T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w = (times - lo.to(times.dtype)).to(x.dtype).view(1, -1, 1, 1, 1)
    return x[:, lo] * (1 - w) + x[:, hi] * w
