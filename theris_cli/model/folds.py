"""Standard operations rewritten as equal ones that suit the CPU work-unit path (model/units.py):
each equals its PyTorch form within float rounding (tests/test_model_units.py).

    bicubic_up(x, r)                   F.interpolate(..., mode="bicubic") as two separable passes
    subpixel_major / shuffle_subpixel_major    a conv + pixel_shuffle whose shuffle copies whole pixels
    fold_shuffle_into_conv(_2x2)       a 3x3 conv after a pixel shuffle, moved before it
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from theris_cli.model.config import SCALE


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
    two separable passes (replicated borders, as PyTorch clamps), for one channel cheaper than
    PyTorch's kernel; equal to float rounding (tests/test_model_units.py)."""
    N, C, H, W = x.shape
    taps = torch.tensor(_bicubic_taps(r), dtype=x.dtype, device=x.device)                 # (r, 5)
    flat = x.reshape(N * C, 1, H, W)
    rows = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), taps.view(r, 1, 1, 5))   # (NC, r, H, W)
    rows = rows.permute(0, 2, 3, 1).reshape(N * C, 1, H, r * W)
    both = F.conv2d(F.pad(rows, (0, 0, 2, 2), mode="replicate"), taps.view(r, 1, 5, 1))   # (NC, r, H, rW)
    return both.permute(0, 2, 1, 3).reshape(N, C, r * H, r * W)


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
    as a 2x2 conv it does less than half the 3x3 conv's work.
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
