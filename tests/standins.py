"""Stand-in models with the THERIS contract, for tests that need exact, known outputs.

model(x (B, T, C, h, w), times (M,)) -> (B, M, C, 4h, 4w)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class NearestLinear(torch.nn.Module):
    """Identity-like: nearest-neighbour x4 in space, linear blend between the two nearest inputs in time.

    At integer times it returns the input frame exactly (each pixel repeated 4x4).
    """

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.calls: list[tuple[int, ...]] = []  # input shapes seen, for tests that count work

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C, h, w = x.shape
        self.calls.append(tuple(x.shape))
        if times is None:
            times = torch.arange(2 * T - 1, dtype=torch.float32) / 2
        assert float(times.min()) >= 0 and float(times.max()) <= T - 1, f"times {times.tolist()} outside [0, {T - 1}]"
        i0 = times.floor().long().clamp(0, T - 1)
        i1 = (i0 + 1).clamp(max=T - 1)
        a = (times - i0.to(times.dtype)).to(x.dtype).view(1, -1, 1, 1, 1)
        y = x[:, i0] * (1 - a) + x[:, i1] * a  # (B, M, C, h, w)
        y = y.flatten(0, 1)
        y = F.interpolate(y, scale_factor=self.scale, mode="nearest")
        return y.view(B, times.numel(), C, self.scale * h, self.scale * w)


class Smooth(NearestLinear):
    """Like NearestLinear but spatially smooth (bilinear) plus a small conv, so that tiles see context."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, times=None):
        B, T, C, h, w = x.shape
        y = super().forward(x, times)  # (B, M, C, 4h, 4w)
        M = y.shape[1]
        lr = y.flatten(0, 1)[:, :, :: self.scale, :: self.scale]  # back to (B*M, C, h, w)
        hr = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        hr = hr + 0.1 * self.conv(hr)
        return hr.view(B, M, C, 4 * h, 4 * w)


class OOMAbove(NearestLinear):
    """Raises torch.cuda.OutOfMemoryError for tiles with more than ``max_pixels`` LR pixels."""

    def __init__(self, max_pixels: int):
        super().__init__()
        self.max_pixels = max_pixels

    def forward(self, x, times=None):
        if x.shape[-1] * x.shape[-2] > self.max_pixels:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x, times)


class Sleepy(NearestLinear):
    """NearestLinear that takes ``delay`` seconds a call: a run slow enough to be killed midway."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.delay = delay

    def forward(self, x, times=None):
        import time

        time.sleep(self.delay)
        return super().forward(x, times)


def perturbed(config, seed: int = 7, scale: float = 0.02):
    """A THERIS network of ``config`` with random weights in eval mode, every parameter moved by
    ``scale`` times a seeded draw, so that the parts that start at zero (spectral mask, prompts,
    velocity head, cost input) act too, as trained ones would."""
    from theris_cli.model import THERIS

    torch.manual_seed(seed)
    net = THERIS(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net
