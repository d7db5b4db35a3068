"""Training losses: Charbonnier (the pixel term) and TFM, the thermal-field-modelling residual of
the 2-D heat equation on the predicted sequence, in two forms.

**The paper's form** (`TFMLoss`, `--tfm-form learned`; the form theris-small was trained with), on frames t = 1..T-2 of a prediction I (B, T, C, H, W), with one output-frame interval as the
unit of time and one pixel as the unit of length:
    r_t = (I_{t+1} - I_{t-1}) / (2 dt) - D * lap(I_t)       (5-point Laplacian, replicate border)
    w_t = exp(-alpha * |grad G_t|^2)                         (G the ground truth: edges weigh less)
    L_TFM = mean(w * |r|),  D = softplus(d) >= 0 learnable
The central difference in time matches a leapfrog step, so a field that evolves by
u_{t+1} = u_{t-1} + 2 dt D lap(u_t) has r = 0 exactly.

It collapses on real footage: minimising mean(w |r(pred)|) jointly over the network and D drives D
towards 0 (motion, not conduction, makes most of the change), and the term becomes a penalty on any
temporal change (theris-small ended at D = 0.0197). And at alpha = 20 the edge weight is nearly
inactive (0.95 for an edge of height 0.1).

**The fitted form** (`FittedTFMLoss`, `--tfm-form fitted`, the default), which keeps the prior
physical:
    D* = argmin_D sum w (dG/dt - D lap G)^2 = sum(w G_t lapG) / sum(w lapG^2)   (G the truth; no gradient)
    L_TFM = mean(w * |r_D*(pred) - r_D*(G)|)
D is fitted per batch to the ground truth's own heat-equation residual by weighted least squares,
so nothing the network does can move it; the loss asks the prediction to break the heat equation
exactly where and as much as the truth does, never to stop changing. The weight's alpha comes from
the batch's gradient statistics: alpha = ln 2 / q (q the `edge_quantile` quantile of |grad G|^2,
floored), so a gradient at that quantile weighs 1/2 and real edges weigh much less. The same weight
enters the fit, which keeps moving edges (advection changes a pixel in proportion to its gradient)
from dragging D* to 0.

**The temporal-difference term** (`temporal_difference`, `--temporal-lambda`): Charbonnier of
(I_{t+1} - I_t) - (G_{t+1} - G_t) over consecutive output frames. The pixel term scores each frame
alone, so it is indifferent to whether an interpolated frame's error agrees with its neighbours';
this term asks the frame-to-frame change to be right, i.e. the error to stay put in time. Without
it theris-small's in-between frames depart from the midpoint of its own aligned frames in ways the
truth does not (benchmarks/temporal_breakdown.py), and its tMAE is no better than bicubic + linear.

**The motion-distillation term** (`velocity_error`, `--flow-teacher`): the end-point error of the
motion alignment's velocities against a flow network's (RIFE, `train.rife.velocities`). End to
end, from the pixel loss alone, the velocity head stays near zero: the warp's gradient only sees a
pixel's own neighbourhood, so it cannot point towards a displacement of several pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from theris_cli.ops import laplacian


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)): L1 that is smooth at 0; eps in data units ([0, 1]).

    weights (B,): the mean over samples of each sample's error times its weight (`balance_weights`)."""
    return sample_mean(torch.sqrt((pred - target) ** 2 + eps * eps), weights)


def sample_mean(err: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean(err), or with weights (B,) the mean over the batch of weight * each sample's mean."""
    if weights is None:
        return err.mean()
    assert weights.shape == err.shape[:1], f"weights {tuple(weights.shape)} for a batch of {err.shape[0]}"
    return (err.flatten(1).mean(1) * weights).mean()


def balance_weights(baseline: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B,) weights, mean 1, inversely proportional to the baseline's Charbonnier error on each sample.

    `theris evaluate` averages dB over clips, i.e. log errors, while a plain mean of errors lets the
    few crops with large errors outweigh the many quiet ones: on split v1's training batches the top
    tenth of crops holds half of bicubic's squared error (benchmarks/crop_errors.py). d log(e_s) = de_s / e_s, so weighting each crop's error by 1 / (the
    baseline's error on it) makes a step's gain count as a relative (dB-like) one on every crop. No
    gradient flows through the weights."""
    with torch.no_grad():
        e = torch.sqrt((baseline.float() - target.float()) ** 2 + eps * eps).flatten(1).mean(1)
        w = 1.0 / e
        return w / w.mean()


def gradient_sq(x: torch.Tensor) -> torch.Tensor:
    """|grad x|^2 over the last two axes by central differences (replicate border), per px^2."""
    shape = x.shape
    p = F.pad(x.reshape(-1, 1, *shape[-2:]), (1, 1, 1, 1), mode="replicate")
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    return (gx**2 + gy**2).reshape(shape)


def temporal_difference(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Charbonnier of (pred[t+1] - pred[t]) - (target[t+1] - target[t]) over consecutive frames.

    pred, target (B, T, C, H, W) -> scalar, data units; 0 for fewer than 2 frames. A constant offset
    of pred costs nothing; an error that changes from frame to frame (flicker) does. weights (B,) as
    for `charbonnier`."""
    assert pred.shape == target.shape, f"pred {tuple(pred.shape)} vs target {tuple(target.shape)}"
    assert pred.dim() == 5, f"expected (B, T, C, H, W), got {tuple(pred.shape)}"
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    return charbonnier(pred.diff(dim=1), target.detach().diff(dim=1), eps, weights)


MOVING_VELOCITY = 0.3  # LR pixels per input frame: where the teacher sees motion, for `velocity_error`
MOVING_WEIGHT = 5.0  # how much more such pixels count


def velocity_error(pred: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """The motion-distillation term (`--flow-teacher`): a smooth end-point error between the motion
    alignment's velocities and a teacher's, pred, teacher (B, P, 2, H, W) in LR pixels -> scalar.

    sqrt(|pred - teacher|^2 + eps^2) per pixel, a weighted mean: pixels the teacher sees moving
    faster than MOVING_VELOCITY weigh MOVING_WEIGHT times the others. Moving pixels are a few percent
    of a crop, so without the weight the loss is nearly met by predicting no motion at all."""
    assert pred.shape == teacher.shape, f"pred {tuple(pred.shape)} vs teacher {tuple(teacher.shape)}"
    teacher = teacher.detach()
    err = torch.sqrt((pred - teacher).pow(2).sum(dim=2) + eps * eps)                # (B, P, H, W)
    w = 1 + (MOVING_WEIGHT - 1) * (teacher.norm(dim=2) > MOVING_VELOCITY).to(err.dtype)
    return (w * err).sum() / w.sum()


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


class FittedTFMLoss(nn.Module):
    """TFM with D fitted to the ground truth of each clip and alpha from the batch's gradient
    statistics (see the module docstring). No learnable parameter: nothing the network does moves D.

    The fit of clip b, on its inner frames, uses the truth smoothed by a binomial filter (sigma about
    1 px, so that pixel noise in lap G does not bias D towards 0) and leaves out
      - edges (the edge weight w), and
      - moving pixels: where a frame differs from the mean of its two neighbours by more than
        `motion_threshold` (dilated by 2 px). Diffusion changes a frame almost linearly in time;
        motion does not, and in the camera's frame it is not conduction at all, so it would drag D to 0.
    A clip with less than `min_static` of its pixels left (a panning camera) takes the running mean
    `D` of earlier clips instead (`d_init` before any), and so does the loss's own estimate: D never
    follows the network, and motion cannot pull it to 0. `last_D` holds the batch's mean D used,
    `last_alpha` the batch's alpha, `last_fitted` the fraction of clips fitted (not fallen back)."""

    def __init__(self, edge_quantile: float = 0.9, d_range: tuple[float, float] = (0.0, 4.0), dt: float = 1.0,
                 grad_floor: float = 2e-3, momentum: float = 0.99, motion_threshold: float = 0.02,
                 min_static: float = 0.2, d_init: float = 0.15):
        super().__init__()
        if not 0 < edge_quantile < 1:
            raise ValueError(f"edge_quantile must lie in (0, 1), got {edge_quantile}")
        self.edge_quantile, self.d_range, self.dt = edge_quantile, d_range, dt
        # floor of the reference gradient, grey units per px: below it a frame is flat and noise-level
        # gradients must not count as edges
        self.grad_floor, self.momentum = grad_floor, momentum
        self.motion_threshold, self.min_static, self.d_init = motion_threshold, min_static, d_init
        self.register_buffer("d_ema", torch.tensor(float("nan")))  # running mean of fitted D, px^2/frame
        # the last batch's alpha, mean D and fitted share, kept as tensors on the device: read back
        # (a host sync) only when logged, through last_alpha, last_D, last_fitted
        self._last: dict[str, torch.Tensor] = {}

    @property
    def D(self) -> torch.Tensor:
        return self.d_ema

    @property
    def last_alpha(self) -> float:
        return float(self._last["alpha"]) if "alpha" in self._last else float("nan")

    @property
    def last_D(self) -> float:
        return float(self._last["D"]) if "D" in self._last else float("nan")

    @property
    def last_fitted(self) -> float:
        return float(self._last["fitted"]) if "fitted" in self._last else float("nan")

    def alpha(self, target: torch.Tensor) -> torch.Tensor:
        """ln 2 / (the edge_quantile quantile of |grad G|^2 over the inner frames), floored: a 0-d
        tensor on target's device."""
        g2 = gradient_sq(target[:, 1:-1].detach().float()).flatten()
        step = max(1, g2.numel() // 65536)  # torch.quantile sorts: a strided sample is plenty
        q = torch.quantile(g2[::step], self.edge_quantile)
        return math.log(2.0) / q.clamp(min=self.grad_floor**2)

    def weight(self, target: torch.Tensor, alpha: torch.Tensor | float | None = None) -> torch.Tensor:
        """Edge-aware weight from the truth's inner frames, (B, T-2, C, H, W), no gradient."""
        with torch.no_grad():
            a = self.alpha(target) if alpha is None else alpha
            return torch.exp(-a * gradient_sq(target[:, 1:-1].float()))

    def fallback(self) -> torch.Tensor:
        """D where a clip cannot be fitted: the running mean, or d_init before any fit (0-d)."""
        return torch.where(torch.isfinite(self.d_ema), self.d_ema, torch.full_like(self.d_ema, self.d_init))

    def fit_d(self, target: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D per clip (B,), px^2 per output frame, clamped to d_range; whether each was fitted)."""
        with torch.no_grad():
            g = smooth(target.float())
            dudt = (g[:, 2:] - g[:, :-2]) / (2 * self.dt)
            lap = laplacian(g[:, 1:-1])
            if "alpha" in self._last:  # the weight of the smoothed truth, with this batch's alpha
                w = torch.exp(-self._last["alpha"] * gradient_sq(g[:, 1:-1]))
            curve = (g[:, 1:-1] - 0.5 * (g[:, :-2] + g[:, 2:])).abs() > self.motion_threshold
            shape = curve.shape
            moving = F.max_pool2d(curve.reshape(-1, 1, *shape[-2:]).float(), 5, stride=1, padding=2).reshape(shape)
            wf = w * (1 - moving)
            dims = tuple(range(1, wf.dim()))
            num, den = (wf * dudt * lap).sum(dims), (wf * lap * lap).sum(dims)
            static = (1 - moving).mean(dims)
            fitted = (static >= self.min_static) & (den > 1e-12)
            d = (num / den.clamp(min=1e-12)).clamp(*self.d_range)
            return torch.where(fitted, d, self.fallback().to(d.dtype)), fitted

    def residual(self, x: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """r for the inner frames: x (B, T, C, H, W), D (B,) or a scalar -> (B, T-2, C, H, W)."""
        D = D.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))) if D.dim() else D.to(x.dtype)
        return (x[:, 2:] - x[:, :-2]) / (2 * self.dt) - D * laplacian(x[:, 1:-1])

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target (B, T, C, H, W) -> scalar mean(w * |r_D(pred) - r_D(target)|)."""
        assert pred.shape == target.shape, f"pred {tuple(pred.shape)} vs target {tuple(target.shape)}"
        assert pred.dim() == 5, f"expected (B, T, C, H, W), got {tuple(pred.shape)}"
        if pred.shape[1] < 3:
            return pred.new_zeros(())
        alpha = self.alpha(target)
        w = self.weight(target, alpha)
        self._last["alpha"] = alpha
        D, fitted = self.fit_d(target, w)
        with torch.no_grad():  # all on the device: no host sync per step
            self._last["D"], self._last["fitted"] = D.mean(), fitted.float().mean()
            n = fitted.sum()
            m = (D * fitted).sum() / n.clamp(min=1)  # the mean of the fitted clips' D
            moved = torch.where(torch.isnan(self.d_ema), m, self.momentum * self.d_ema + (1 - self.momentum) * m)
            self.d_ema.copy_(torch.where(n > 0, moved, self.d_ema))  # unchanged when no clip was fitted
        return (w * (self.residual(pred, D) - self.residual(target.detach(), D)).abs()).mean()


def smooth(x: torch.Tensor) -> torch.Tensor:
    """Separable binomial [1, 4, 6, 4, 1] / 16 blur over the last two axes (sigma 1 px), replicate border."""
    shape = x.shape
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype, device=x.device) / 16
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
    return y.reshape(shape)


def make_tfm(form: str, d_init: float = 0.15, alpha: float = 20.0, edge_quantile: float = 0.9) -> nn.Module:
    """The TFM loss of a run: "fitted" (FittedTFMLoss) or "learned" (TFMLoss, the paper's form)."""
    if form == "fitted":
        return FittedTFMLoss(edge_quantile=edge_quantile, d_init=d_init)
    if form == "learned":
        return TFMLoss(d_init=d_init, alpha=alpha)
    raise ValueError(f"unknown TFM form {form!r}; choose fitted or learned")
