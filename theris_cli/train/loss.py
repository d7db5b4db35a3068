"""Training losses: Charbonnier (the pixel term) and TFM, the thermal-field-modelling residual of
the 2-D heat equation on the predicted sequence.

TFM, on frames t = 1..T-2 of a prediction I (B, T, C, H, W), with one output-frame interval as the
unit of time and one pixel as the unit of length:
    r_t = (I_{t+1} - I_{t-1}) / (2 dt) - D * lap(I_t)       (5-point Laplacian, replicate border)
    w_t = exp(-alpha * |grad G_t|^2)                         (G the ground truth: edges weigh less)
    L_TFM = mean(w * |r|),  D = softplus(d) >= 0 learnable
The central difference in time matches a leapfrog step, so a field that evolves by
u_{t+1} = u_{t-1} + 2 dt D lap(u_t) has r = 0 exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.ops import laplacian  # noqa: F401 (the TFM residual's; re-exported)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)): L1 that is smooth at 0; eps in data units ([0, 1])."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def gradient_sq(x: torch.Tensor) -> torch.Tensor:
    """|grad x|^2 over the last two axes by central differences (replicate border), per px^2."""
    shape = x.shape
    p = F.pad(x.reshape(-1, 1, *shape[-2:]), (1, 1, 1, 1), mode="replicate")
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    return (gx**2 + gy**2).reshape(shape)


class TFMLoss(nn.Module):
    """Heat-equation residual loss with a learnable diffusivity D >= 0 (add its parameter to the
    optimiser and save it with the model). Returns 0 for fewer than 3 frames."""

    def __init__(self, d_init: float = 0.15, alpha: float = 20.0, dt: float = 1.0):
        super().__init__()
        if d_init <= 0:
            raise ValueError(f"d_init must be > 0 (it is a softplus), got {d_init}")
        self.alpha, self.dt = alpha, dt
        # D = softplus(d): d is the inverse softplus of the start value (px^2 per output frame)
        self.d = nn.Parameter(torch.tensor(d_init + math.log(-math.expm1(-d_init))))

    @property
    def D(self) -> torch.Tensor:
        return F.softplus(self.d)

    def residual(self, pred: torch.Tensor) -> torch.Tensor:
        """r for the inner frames: pred (B, T, C, H, W) -> (B, T-2, C, H, W)."""
        dudt = (pred[:, 2:] - pred[:, :-2]) / (2 * self.dt)
        return dudt - self.D.to(pred.dtype) * laplacian(pred[:, 1:-1])

    def weight(self, target: torch.Tensor) -> torch.Tensor:
        """Edge-aware weight from the ground truth's inner frames, (B, T-2, C, H, W), no gradient."""
        with torch.no_grad():
            return torch.exp(-self.alpha * gradient_sq(target[:, 1:-1]))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target (B, T, C, H, W) -> scalar mean(w * |r|)."""
        assert pred.shape == target.shape, f"pred {tuple(pred.shape)} vs target {tuple(target.shape)}"
        assert pred.dim() == 5, f"expected (B, T, C, H, W), got {tuple(pred.shape)}"
        if pred.shape[1] < 3:
            return pred.new_zeros(())
        return (self.weight(target) * self.residual(pred).abs()).mean()
