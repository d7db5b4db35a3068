import math

import numpy as np
import pytest
import torch

from theris_cli.eval import metrics


def _frames(seed: int, t: int = 3, h: int = 24, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, 1, h, w, generator=g)


def test_psnr_exact_match_is_the_cap():
    x = _frames(0)
    assert torch.equal(metrics.psnr(x, x), torch.full((3,), metrics.PSNR_CAP, dtype=torch.float64))


def test_psnr_known_values():
    gt = torch.full((2, 1, 16, 16), 0.5)
    # constant error 0.1 -> MSE 0.01 -> 20 dB; 0.01 -> 40 dB
    pred = torch.stack([gt[0] + 0.1, gt[1] - 0.01])
    assert metrics.psnr(pred, gt).tolist() == pytest.approx([20.0, 40.0], abs=1e-5)
    # half the pixels off by 0.2 -> MSE 0.02 -> 10 log10(50)
    half = gt.clone()
    half[:, :, :8] += 0.2
    assert metrics.psnr(half, gt).tolist() == pytest.approx([10 * math.log10(50)] * 2, abs=1e-5)


def test_psnr_per_frame_then_mean_not_pooled():
    gt = torch.zeros(2, 1, 16, 16)
    pred = torch.stack([gt[0] + 0.1, gt[1] + 0.01])
    assert metrics.mean(metrics.psnr(pred, gt)) == pytest.approx(30.0, abs=1e-5)  # (20 + 40) / 2


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 written out: Gaussian 11x11, sigma 1.5, valid window, K = (0.01, 0.03), L = 1."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    k = np.outer(g, g) / np.outer(g, g).sum()

    def filt(a):
        win = np.lib.stride_tricks.sliding_window_view(a, (11, 11))
        return np.einsum("ijkl,kl->ij", win, k)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(m.mean())


def test_ssim_identical_is_one_and_matches_a_direct_implementation():
    x = _frames(1)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    y = (x + 0.1 * _frames(2)).clamp(0, 1)
    got = metrics.ssim(y, x)
    for i in range(3):
        assert got[i].item() == pytest.approx(_ssim_reference(y[i, 0].double().numpy(), x[i, 0].double().numpy()), abs=1e-9)


def test_ssim_refuses_frames_smaller_than_its_window():
    x = torch.rand(2, 1, 10, 40)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(x, x)


def test_temporal_consistency():
    gt = _frames(3, t=11)  # 11 frames: more than one chunk, so the pair across a chunk edge counts
    assert metrics.temporal_mae(gt, gt) == 0.0
    assert metrics.temporal_psnr(gt, gt) == metrics.PSNR_CAP
    # a constant offset does not change frame differences; flicker (+0.1 on odd frames) does
    assert metrics.temporal_mae(gt + 0.05, gt) == pytest.approx(0.0, abs=1e-7)
    flicker = gt.clone()
    flicker[1::2] += 0.1
    assert metrics.temporal_mae(flicker, gt) == pytest.approx(0.1, abs=1e-6)
    assert metrics.temporal_psnr(flicker, gt) == pytest.approx(20.0, abs=1e-4)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.zeros(2, 1, 16, 16), torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match="grey frames"):
        metrics.psnr(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
    assert metrics.psnr(torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)).shape == (2,)  # (T, H, W) accepted


def test_ssim_map_mean_is_ssim_and_masks_select_pixels():
    from theris_cli.eval.metrics import masked_psnr, masked_ssim, ssim_map

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 1, 24, 24, generator=g)
    pred = (gt + 0.05 * torch.randn(3, 1, 24, 24, generator=g)).clamp(0, 1)
    assert torch.allclose(ssim_map(pred, gt).flatten(1).mean(1), metrics.ssim(pred, gt), atol=1e-6)
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[:, :, 8:16, 8:16] = True
    pred2 = pred.clone()
    pred2[~mask] = gt[~mask]  # errors outside the mask do not count
    assert masked_psnr(pred, gt, mask) == pytest.approx(masked_psnr(pred2, gt, mask))
    mse = float(((pred - gt)[mask] ** 2).double().mean())
    assert masked_psnr(pred, gt, mask) == pytest.approx(10 * math.log10(1 / mse))
    assert masked_ssim(pred, gt, mask) == pytest.approx(masked_ssim(pred2, gt, mask), abs=0.05)
    assert masked_ssim(gt, gt, mask) == pytest.approx(1.0)
    empty = torch.zeros_like(mask)
    assert math.isnan(masked_psnr(pred, gt, empty)) and math.isnan(masked_ssim(pred, gt, empty))
