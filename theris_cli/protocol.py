"""The task protocol shared by training and evaluation: how an LR, low-frame-rate input is made from
an HR clip, and the classical answer to it (bicubic x4 + linear blend in time).

* **space** - every kept frame is shrunk x1/4 by antialiased bicubic interpolation
  (`F.interpolate(mode="bicubic", antialias=True, align_corners=False)`, i.e. a bicubic kernel
  stretched over 4 HR pixels, like PIL/Matlab `imresize`), then clamped to [0, 1] because a camera
  frame cannot leave its range. HR height and width must be multiples of 4 (`crop_to_multiple`).
* **time** - only HR frames 0, 2, 4, ... are kept: LR input frame i is HR frame 2i, and the network
  must make the odd HR frames (the x2 frame rate) itself. 2k+1 HR frames give k+1 LR frames.

`train/` and `eval/` both import this module and never each other (training's extras live in
`train/degrade.py`, the other baselines in `eval/baselines.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from theris_cli.model.config import SCALE  # HR pixels per LR pixel, along each axis: the network's

TIME_STRIDE = 2  # HR frames per LR frame


def crop_to_multiple(x: torch.Tensor, multiple: int = SCALE) -> torch.Tensor:
    """Crop the last two axes (H, W) to multiples of `multiple`, keeping the top-left corner.

    Top-left so that pixel (0, 0) stays pixel (0, 0): LR pixel (i, j) then covers HR pixels
    4i..4i+3, 4j..4j+3 exactly, whatever the original size.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = x.shape[-2:]
    hh, ww = h - h % multiple, w - w % multiple
    if hh == 0 or ww == 0:
        raise ValueError(f"frame {h}x{w} is smaller than {multiple} pixels along an axis")
    return x[..., :hh, :ww]


def downscale(hr: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Antialiased bicubic x1/4.  hr: (..., H, W) float, H and W multiples of 4 -> (..., H/4, W/4).

    Computed in float32 (or float64 if given) whatever the input dtype; returned in the input's
    floating dtype. `clamp` keeps the result in [0, 1] (bicubic rings slightly past sharp edges).
    """
    if not hr.is_floating_point():
        raise ValueError(f"downscale needs a float tensor in [0, 1], got {hr.dtype}")
    if hr.dim() < 2:
        raise ValueError(f"downscale needs (..., H, W), got shape {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    if h % SCALE or w % SCALE or h == 0 or w == 0:
        raise ValueError(f"HR size {h}x{w} is not a multiple of {SCALE}; crop it first (crop_to_multiple)")
    lead = hr.shape[:-2]
    work_dtype = hr.dtype if hr.dtype in (torch.float32, torch.float64) else torch.float32
    x = hr.reshape(-1, 1, h, w).to(work_dtype)  # (N, 1, H, W): interpolate wants 4-D
    y = F.interpolate(x, size=(h // SCALE, w // SCALE), mode="bicubic", antialias=True, align_corners=False)
    if clamp:
        y = y.clamp_(0.0, 1.0)
    return y.reshape(*lead, h // SCALE, w // SCALE).to(hr.dtype)


def make_lr(hr: torch.Tensor) -> torch.Tensor:
    """The STVSR input for an HR clip.  hr: (T, C, H, W) -> (ceil(T/2), C, H/4, W/4).

    Input frame i is HR frame 2i, downscaled. Also accepts a batch (B, T, C, H, W) -> (B, ceil(T/2), ...).
    """
    if hr.dim() not in (4, 5):
        raise ValueError(f"make_lr needs (T, C, H, W) or (B, T, C, H, W), got shape {tuple(hr.shape)}")
    t_axis = hr.dim() - 4
    kept = hr[:, ::TIME_STRIDE] if t_axis == 1 else hr[::TIME_STRIDE]
    return downscale(kept)



def bicubic_linear(lr: torch.Tensor) -> torch.Tensor:
    """Bicubic x4 per frame + linear blend in time.  (T, 1, h, w) -> (2T-1, 1, 4h, 4w); also a batch
    (B, T, 1, h, w) -> (B, 2T-1, 1, 4h, 4w). Output frame 2i is input i upscaled, 2i+1 the mean of
    the upscaled inputs i and i+1. Not clamped."""
    if lr.dim() == 5:
        return torch.stack([bicubic_linear(clip) for clip in lr])
    if lr.dim() != 4 or lr.shape[1] != 1 or lr.shape[0] < 1:
        raise ValueError(f"expected an LR grey clip (T, 1, h, w), got shape {tuple(lr.shape)}")
    up = F.interpolate(lr.float(), scale_factor=SCALE, mode="bicubic", align_corners=False)  # (T, 1, 4h, 4w)
    t = up.shape[0]
    out = up.new_empty((2 * t - 1, *up.shape[1:]))
    out[0::2] = up
    out[1::2] = 0.5 * (up[:-1] + up[1:])  # halfway between input i and i+1
    return out


MOTION_THRESHOLD = 0.03  # of the data range: a new frame that far from the blend of its neighbours moves
MOTION_DILATE = 2  # px: the mask also covers the moving edges' immediate surroundings


def midpoint_residual(hr: torch.Tensor) -> torch.Tensor:
    """|frame 2i+1 - the mean of frames 2i and 2i+2| of (N, 1, H, W), N odd: (N//2, 1, H, W), float32.
    What a linear blend gets wrong at each in-between frame."""
    x = hr.float()
    return (x[1::2] - 0.5 * (x[0:-2:2] + x[2::2])).abs()


def motion_mask(hr: torch.Tensor, threshold: float = MOTION_THRESHOLD, dilate: int = MOTION_DILATE) -> torch.Tensor:
    """Where the in-between frames of a clip move: (N, 1, H, W) on [0, 1], N odd -> bool (N//2, 1, H, W).

    Frame 2i+1 (made, not input) is marked where it differs from the mean of frames 2i and 2i+2 by
    more than `threshold`, then dilated by `dilate` px (a (2 dilate + 1)^2 square): the pixels a
    linear blend gets wrong because something moved (or changed fast), from the truth alone."""
    if hr.dim() != 4 or hr.shape[0] < 3 or hr.shape[0] % 2 == 0:
        raise ValueError(f"motion_mask needs (N, 1, H, W) with N odd >= 3, got {tuple(hr.shape)}")
    m = (midpoint_residual(hr) > threshold).float()
    if dilate > 0:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    return m > 0
