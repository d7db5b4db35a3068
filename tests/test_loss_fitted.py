"""The fitted TFM form: D from the truth (not the network), physical on motion-dominated scenes,
and an edge weight that drops on real edges."""

from __future__ import annotations

import pytest
import torch

from theris_cli.ops import laplacian
from theris_cli.train.loss import FittedTFMLoss, TFMLoss, gradient_sq, make_tfm


def _scene(D=0.3, T=7, H=64, pan=0.0, speed=12.0, B=4, noise=0.0, seed=0) -> torch.Tensor:
    """A conducting field (D px^2/frame, explicit sub-steps) seen by a camera panning `pan` px/frame,
    with a hot body crossing at `speed` px/frame (B, T, 1, H, H); most of its change is the body."""
    g = torch.Generator().manual_seed(seed)
    W = H + int(pan * T) + 8
    u = torch.nn.functional.avg_pool2d(torch.rand(B, 1, H + 16, W + 16, generator=g), 5, 1, 2)[..., 8:-8, 8:-8]
    u = (u - u.amin()) / (u.amax() - u.amin()) * 0.5 + 0.2
    frames = []
    for t in range(T):
        x0 = int(round(pan * t))
        frames.append(u[..., :, x0:x0 + H])
        for _ in range(20):
            u = u + (D / 20) * laplacian(u)
    f = torch.stack(frames, 1).clone()
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    for t in range(T):
        body = ((xx - (4 + speed * t)).abs() < 8) & ((yy - H // 2).abs() < 12)
        f[:, t, 0][:, body] = 0.9
    return f + noise * torch.randn(f.shape, generator=g)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_d_stays_physical_when_a_body_moves_fast(noise):
    truth = _scene(D=0.3, speed=12.0, noise=noise)
    moving = (truth[:, 1:] - truth[:, :-1]).abs() > 0.05
    assert moving.float().mean() > 0.05  # the body's motion is most of the change
    loss = FittedTFMLoss()
    loss(truth, truth)
    assert loss.last_fitted == 1.0
    assert 0.2 < loss.last_D < 0.4  # true D 0.3; a fit without the motion mask and edge weight gives ~0.02
    dudt = (truth[:, 2:] - truth[:, :-2]) / 2
    lap = laplacian(truth[:, 1:-1])
    assert float((dudt * lap).sum() / (lap * lap).sum()) < 0.05  # the naive fit collapses


def test_d_does_not_follow_the_prediction_and_freezing_is_not_rewarded():
    truth = _scene(D=0.3, speed=12.0)
    frozen = truth[:, :1].expand_as(truth).clone().requires_grad_(True)  # a prediction that stops changing
    fitted = FittedTFMLoss()
    l_truth = fitted(truth, truth)
    d_truth = fitted.last_D
    l_frozen = fitted(frozen, truth)
    assert fitted.last_D == pytest.approx(d_truth)  # D is the truth's, whatever the prediction
    assert float(l_truth) == pytest.approx(0.0, abs=1e-7) and float(l_frozen.detach()) > 1e-3
    l_frozen.backward()
    assert frozen.grad is not None and not list(fitted.parameters())  # nothing but the prediction learns
    # the paper's form with the collapsed D of theris-small (0.0197) prefers the frozen prediction
    old = TFMLoss(d_init=0.0197, alpha=20.0)
    with torch.no_grad():
        assert float(old(frozen.detach(), truth)) < float(old(truth, truth))


def test_a_panning_camera_keeps_the_running_d():
    loss = FittedTFMLoss()
    loss(_scene(D=0.3, speed=12.0), _scene(D=0.3, speed=12.0))
    before = float(loss.D)
    panning = _scene(D=0.3, pan=4.0, speed=12.0, seed=1)
    loss(panning, panning)
    assert loss.last_fitted == 0.0  # every pixel moves: nothing to fit on
    assert loss.last_D == pytest.approx(before) and float(loss.D) == pytest.approx(before)
    fresh = FittedTFMLoss(d_init=0.15)
    fresh(panning, panning)
    assert fresh.last_D == pytest.approx(0.15)  # before any fit: the start value, not 0


def test_edge_weight_drops_on_real_edges():
    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 68, 68, generator=g), 5, 1)[0, 0] * 0.05
    frame = 0.4 + texture
    frame[:, 32:] += 0.1  # an edge of height 0.1 (10 % of the range)
    truth = frame.expand(1, 3, 1, 64, 64).clone()
    w_new = FittedTFMLoss().weight(truth)[0, 0, 0]
    w_old = TFMLoss(alpha=20.0).weight(truth)[0, 0, 0]
    assert float(w_new[:, 31:33].max()) < 0.5  # the edge weighs less than half
    assert float(w_new[:, 8:24].median()) > 0.5  # smooth ground keeps most of its weight
    assert float(w_old[:, 31:33].min()) > 0.9  # the paper's alpha = 20 barely notices it


def test_real_edges_of_a_real_clip(shared_ir):
    from theris_cli.video import read_frames, scan_levels

    path = shared_ir / "vottir_horse.mkv"
    levels = scan_levels(path)
    frames = []
    for raw in read_frames(path):
        frames.append(torch.from_numpy(levels.to_unit(raw)))
        if len(frames) == 7:
            break
    truth = torch.stack(frames)[None, :, None]
    w_new = FittedTFMLoss().weight(truth)
    g2 = gradient_sq(truth[:, 1:-1])  # the frames the weight is for
    edges = g2 >= torch.quantile(g2.flatten()[::7], 0.95)  # the clip's strongest 5 % of gradients
    assert float(w_new[edges].mean()) < 0.5
    assert float(TFMLoss(alpha=20.0).weight(truth)[edges].mean()) > 0.9


def test_make_tfm_forms():
    assert isinstance(make_tfm("fitted"), FittedTFMLoss)
    assert isinstance(make_tfm("learned"), TFMLoss)
    with pytest.raises(ValueError):
        make_tfm("other")
