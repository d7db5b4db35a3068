"""TFM loss: zero on a field that obeys the discrete heat equation, positive on one that does not."""

from __future__ import annotations

import pytest
import torch

from theris_cli.ops import laplacian
from theris_cli.train.loss import TFMLoss, balance_weights, charbonnier, temporal_difference


def _leapfrog(D: float, T: int = 7, H: int = 12, W: int = 10) -> torch.Tensor:
    """u_{t+1} = u_{t-1} + 2 dt D lap(u_t), dt = 1: the scheme the central difference matches."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 1, H + 4, W + 4, generator=g, dtype=torch.float64), 5, 1)
    u = [smooth[0, 0], smooth[0, 0] + D * laplacian(smooth[0, 0])]
    for _ in range(T - 2):
        u.append(u[-2] + 2 * D * laplacian(u[-1]))
    return torch.stack(u).view(1, T, 1, H, W)


def test_residual_zero_on_heat_equation_field():
    loss = TFMLoss(d_init=0.15).double()
    u = _leapfrog(loss.D.item())
    assert loss.residual(u).abs().max().item() < 1e-12
    assert loss(u, u).item() < 1e-12


def test_residual_positive_off_the_equation():
    loss = TFMLoss(d_init=0.15).double()
    u = _leapfrog(0.15)
    wrong_d = _leapfrog(0.05)  # diffuses three times slower than the loss's D
    g = torch.Generator().manual_seed(1)
    noisy = u + 0.02 * torch.randn(u.shape, generator=g, dtype=torch.float64)
    assert loss(wrong_d, wrong_d).item() > 1e-4
    assert loss(noisy, u).item() > 1e-3


def test_d_is_learnable_and_nonnegative():
    loss = TFMLoss(d_init=0.15)
    assert abs(loss.D.item() - 0.15) < 1e-6
    u = _leapfrog(0.05).float()
    loss(u, u).backward()
    assert loss.d.grad is not None and loss.d.grad.abs().item() > 0
    with torch.no_grad():
        loss.d.fill_(-50.0)
    assert loss.D.item() >= 0


def test_edges_weigh_less():
    loss = TFMLoss(alpha=20.0)
    target = torch.zeros(1, 3, 1, 8, 8)
    target[..., 4:] = 1.0  # a hot edge at x = 4
    w = loss.weight(target)
    assert w[0, 0, 0, 0, 0].item() == pytest.approx(1.0)
    assert w[0, 0, 0, 0, 4].item() < 0.01


def test_fewer_than_three_frames_give_zero():
    loss = TFMLoss()
    pred = torch.rand(2, 2, 1, 4, 4, requires_grad=True)
    assert loss(pred, pred.detach()).item() == 0.0


def test_gradient_reaches_prediction():
    loss = TFMLoss()
    pred = torch.rand(1, 3, 1, 6, 6, requires_grad=True)
    loss(pred, torch.rand(1, 3, 1, 6, 6)).backward()
    assert pred.grad.abs().sum() > 0


def test_charbonnier():
    a = torch.zeros(4)
    assert charbonnier(a, a, eps=1e-3).item() == pytest.approx(1e-3)
    assert charbonnier(a + 1, a, eps=1e-3).item() == pytest.approx(1.0, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# temporal difference


def _clip(seed: int = 0, T: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, T, 1, 8, 8, generator=g)


def test_temporal_difference_is_zero_when_the_changes_are_right():
    gt = _clip()
    assert temporal_difference(gt, gt).item() == pytest.approx(1e-3, rel=1e-6)  # Charbonnier's floor: eps
    assert temporal_difference(gt + 0.05, gt).item() == pytest.approx(1e-3, rel=1e-4)  # an offset is no flicker
    assert temporal_difference(gt[:, :1], gt[:, :1]).item() == 0.0  # one frame: nothing to compare


def test_temporal_difference_penalises_flicker_that_the_pixel_loss_cannot_tell():
    gt = _clip()
    sign = torch.tensor([1.0, -1.0] * 4)[: gt.shape[1]].view(1, -1, 1, 1, 1)
    flicker = gt + 0.02 * sign  # in-between frames too dark, aligned too bright
    steady = gt + 0.02  # the same error everywhere
    assert charbonnier(flicker, gt).item() == pytest.approx(charbonnier(steady, gt).item(), rel=1e-4)
    assert temporal_difference(flicker, gt).item() == pytest.approx(0.04, rel=1e-2)
    assert temporal_difference(steady, gt).item() < 2e-3


def test_temporal_difference_gradient_flows_to_the_prediction_only():
    gt = _clip().requires_grad_(True)
    pred = _clip(seed=1).requires_grad_(True)
    temporal_difference(pred, gt).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert gt.grad is None


def test_balance_weights_are_inverse_to_the_baseline_error_with_mean_one():
    target = torch.zeros(3, 5, 1, 8, 8)
    baseline = torch.stack([torch.full((5, 1, 8, 8), v) for v in (0.01, 0.02, 0.04)])  # errors 1 : 2 : 4
    w = balance_weights(baseline.requires_grad_(), target, eps=0.0)
    assert not w.requires_grad
    assert w.mean().item() == pytest.approx(1.0)
    assert (w * torch.tensor([0.01, 0.02, 0.04])).tolist() == pytest.approx([w[0].item() * 0.01] * 3)
    assert w[0].item() == pytest.approx(4 * w[2].item())  # the quiet crop weighs 4x the busy one


def test_weighted_charbonnier_is_the_weighted_mean_of_each_sample_s_error():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 1, 4, 4, generator=g), torch.rand(2, 3, 1, 4, 4, generator=g)
    per = [charbonnier(pred[i], target[i]).item() for i in range(2)]
    assert charbonnier(pred, target, weights=torch.ones(2)).item() == pytest.approx(charbonnier(pred, target).item())
    w = torch.tensor([1.5, 0.5])
    assert charbonnier(pred, target, weights=w).item() == pytest.approx((1.5 * per[0] + 0.5 * per[1]) / 2)
    td = [temporal_difference(pred[i:i + 1], target[i:i + 1]).item() for i in range(2)]
    assert temporal_difference(pred, target, weights=w).item() == pytest.approx((1.5 * td[0] + 0.5 * td[1]) / 2)
