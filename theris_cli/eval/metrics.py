"""Image-quality figures of a predicted clip against its ground truth.

All functions take grey frames on the unit range: `(T, 1, H, W)` or `(T, H, W)` float tensors with
values in [0, 1] (data_range = 1), and score each frame separately; callers average per-frame figures
over the frames they want (all, input-aligned, interpolated). No border is cropped. Predictions are
expected to be clamped to [0, 1] by the caller (`evaluate` does it), as a written video would be.

* PSNR, dB: 10·log10(1 / MSE) per frame. An exact match has MSE = 0 and PSNR = ∞; we report it as
  `PSNR_CAP` = 100 dB instead, so that means over frames stay finite and JSON stays standard.
  100 dB is an RMS error of 1e-5 of the data range, below what float32 arithmetic on [0, 1] frames
  distinguishes from exact, and far above any real result: read 100 as "exact".
* SSIM: `pytorch_msssim.ssim` (Gaussian window 11, σ = 1.5, K = (0.01, 0.03), data_range 1, mean
  of the valid-convolution SSIM map), the implementation of Wang et al. 2004 used by most SR papers'
  PyTorch code. It silently skips the Gaussian along an axis shorter than the window, which would
  give a different figure, so frames smaller than 11×11 are refused.
* Temporal consistency: the error of frame-to-frame differences, pred[t+1] − pred[t] against
  gt[t+1] − gt[t], over all consecutive pairs: its mean absolute value (`tmae`, grey units of the
  data range, lower is better; flicker and judder raise it even when each frame looks right), and
  the same as a PSNR (`tpsnr`, dB, capped like PSNR).
* Moving pixels (`masked_psnr`, `masked_ssim`): the same figures over the pixels of a mask only
  (`protocol.motion_mask`: the in-between frames' pixels that differ from the blend of their
  neighbours by more than 3 % of the range, dilated 2 px). PSNR from the MSE pooled over all masked
  pixels of all frames (a mask is a few percent of a frame: per-frame figures would be noise); SSIM
  as the mean of the SSIM map (the very map whose mean `ssim` is) over the masked pixels where the
  11-px window fits, i.e. 5 px from the border.
"""

from __future__ import annotations

import math

import torch

PSNR_CAP = 100.0  # dB reported for an exact match (MSE = 0 would give infinity)
SSIM_WINDOW = 11  # Gaussian window side, pixels (Wang et al. 2004)
SSIM_SIGMA = 1.5  # Gaussian window std, pixels
_MSE_FLOOR = 10.0 ** (-PSNR_CAP / 10.0)  # MSE at which PSNR reaches the cap (1e-10, data range 1)


_CHUNK = 8  # frames scored at once: bounds the float64 working set (SSIM keeps ~10 maps per frame)


def _check(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes; (T, H, W) -> (T, 1, H, W). Values are converted per chunk, not here."""
    if pred.dim() == 3:
        pred = pred.unsqueeze(1)
    if gt.dim() == 3:
        gt = gt.unsqueeze(1)
    for name, x in (("pred", pred), ("gt", gt)):
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"{name}: expected grey frames (T, 1, H, W) or (T, H, W), got shape {tuple(x.shape)}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    return pred.detach(), gt.detach()


def _chunks(pred: torch.Tensor, gt: torch.Tensor, overlap: int = 0):
    """Yield (pred, gt) float64 chunks of _CHUNK frames along T (sums of many small terms want float64).

    `overlap` frames are repeated at the start of each following chunk (1 for frame differences).
    """
    t = pred.shape[0]
    start = 0
    while start < t:
        stop = min(t, start + _CHUNK)
        yield pred[start:stop].to(torch.float64), gt[start:stop].to(device=pred.device, dtype=torch.float64)
        if stop == t:
            break
        start = stop - overlap


def mse_to_psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for data_range 1, capped at PSNR_CAP for (near-)exact matches."""
    return (10.0 * torch.log10(1.0 / mse.clamp(min=_MSE_FLOOR))).clamp(max=PSNR_CAP)


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR, dB.  pred, gt: (T, 1, H, W) or (T, H, W) in [0, 1] -> (T,) float64."""
    pred, gt = _check(pred, gt)
    mse = [(p - g).pow(2).flatten(1).mean(1) for p, g in _chunks(pred, gt)]
    return mse_to_psnr(torch.cat(mse)).cpu()


def ssim(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM.  pred, gt: (T, 1, H, W) or (T, H, W) in [0, 1], H, W >= 11 -> (T,) float64."""
    from pytorch_msssim import ssim as _ssim  # imported here: only scoring needs it

    pred, gt = _check(pred, gt)
    h, w = pred.shape[-2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    out = [
        _ssim(p, g, data_range=1.0, size_average=False, win_size=SSIM_WINDOW, win_sigma=SSIM_SIGMA)
        for p, g in _chunks(pred, gt)
    ]
    return torch.cat(out).cpu()


def _diff_errors(pred: torch.Tensor, gt: torch.Tensor):
    """Yield (Δpred − Δgt) chunks, shape (pairs, 1, H, W), over all consecutive frame pairs."""
    pred, gt = _check(pred, gt)
    if pred.shape[0] < 2:
        raise ValueError("temporal consistency needs at least 2 frames")
    for p, g in _chunks(pred, gt, overlap=1):
        if p.shape[0] >= 2:
            yield p.diff(dim=0) - g.diff(dim=0)


def temporal_mae(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean |Δpred − Δgt| over consecutive frame pairs and pixels (grey units of the data range)."""
    total, count = 0.0, 0
    for e in _diff_errors(pred, gt):
        total += e.abs().sum().item()
        count += e.numel()
    return total / count


def temporal_psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR (dB, data range 1, capped) of the frame differences, per pair then averaged over pairs."""
    mse = torch.cat([e.pow(2).flatten(1).mean(1) for e in _diff_errors(pred, gt)])
    return mse_to_psnr(mse).mean().item()


def mean(values: torch.Tensor) -> float:
    """Average of per-frame figures as a Python float (NaN for an empty selection)."""
    return values.mean().item() if values.numel() else math.nan


def masked_psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, data range 1, capped) of the MSE pooled over the pixels where `mask` (same shape,
    bool) is set; NaN for an empty mask."""
    pred, gt = _check(pred, gt)
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.shape != pred.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, the frames {tuple(pred.shape)}")
    n = int(mask.sum())
    if n == 0:
        return math.nan
    err = sum(float(((p - g).pow(2) * m.to(p.device, torch.float64)).sum())
              for (p, g), m in zip(_chunks(pred, gt), mask.split(_CHUNK)))
    return float(mse_to_psnr(torch.tensor(err / n)))


def ssim_map(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The SSIM map of pytorch_msssim.ssim (Gaussian window 11, sigma 1.5, K = (0.01, 0.03), data
    range 1, valid convolution): (T, 1, H, W) -> (T, 1, H-10, W-10) float64; its mean is `ssim`."""
    import torch.nn.functional as F

    pred, gt = _check(pred, gt)
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    c1, c2 = 0.01**2, 0.03**2

    def blur(x):
        x = F.conv2d(x, g.to(x.device).view(1, 1, 1, -1))
        return F.conv2d(x, g.to(x.device).view(1, 1, -1, 1))

    maps = []
    for p, q in _chunks(pred, gt):
        mu_p, mu_q = blur(p), blur(q)
        s_pp, s_qq, s_pq = blur(p * p) - mu_p**2, blur(q * q) - mu_q**2, blur(p * q) - mu_p * mu_q
        maps.append(((2 * mu_p * mu_q + c1) * (2 * s_pq + c2)) / ((mu_p**2 + mu_q**2 + c1) * (s_pp + s_qq + c2)))
    return torch.cat(maps).cpu()


def masked_ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of the SSIM map over the masked pixels 5 px or more from the border; NaN if none."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    r = SSIM_WINDOW // 2
    inner = mask[..., r:-r, r:-r]
    if not bool(inner.any()):
        return math.nan
    return float(ssim_map(pred, gt)[inner.cpu()].mean())
