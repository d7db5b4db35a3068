"""The camera's sensor: optical PSF, vignetting, housing shade, fixed-pattern and temporal noise, then
8-bit AGC or 14-bit counts. `s` is the SyntheticThermal being rendered (config, frames, size)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def apply_sensor(view: torch.Tensor, p: dict, s: SyntheticThermal) -> torch.Tensor:
    """Optics, sensor noise and quantisation: radiance (B, T, H, W) -> [0, 1] float32."""
    c = s.config
    B, T, H, W = view.shape
    sig, tn, fcol, frow, vig, raw14, span_counts, plo, phi, scale, offset = p["sensor"].unbind(-1)
    if c.sensor:
        # optical PSF: a Gaussian per clip (grouped convolution, one kernel per clip)
        rad = max(1, math.ceil(3 * c.psf_sigma[1]))
        taps = torch.arange(-rad, rad + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (taps[None] / sig.clamp(min=1e-3)[:, None]) ** 2)
        k = k / k.sum(-1, keepdim=True)  # (B, K)
        x = view.permute(1, 0, 2, 3)  # (T, B, H, W): clips as channels
        x = F.conv2d(F.pad(x, (rad, rad, 0, 0), mode="replicate"), k[:, None, None, :], groups=B)
        x = F.conv2d(F.pad(x, (0, 0, rad, rad), mode="replicate"), k[:, None, :, None], groups=B)
        view = x.permute(1, 0, 2, 3)
        span = _robust_span(view)  # scene contrast, so noise levels are relative to it
        yy = torch.linspace(-1, 1, H)[:, None]
        xx = torch.linspace(-1, 1, W)[None, :]
        r2 = (xx**2 + yy**2) / 2  # 1 at the corners
        fpn = p["fpn_noise"]
        # housing shade or glow: a smooth band along one edge (a Lepton's dark, curved top rows)
        on, amp, width, edge, curve = p["shade"].unbind(-1)
        ys = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
        xs = torch.arange(W, dtype=torch.float32)[None, :].expand(H, W)
        dist = torch.stack([ys, H - 1 - ys, xs, W - 1 - xs])  # (4, H, W) distance to each edge, px
        along = torch.stack([xs / W, xs / W, ys / H, ys / H]) - 0.5
        d = dist[edge.long()] + curve[:, None, None] * (along[edge.long()] ** 2) * min(H, W)  # (B, H, W)
        shade = (on * amp * span)[:, None, None] * torch.exp(-d.clamp(min=0) / width[:, None, None])
        view = (
            view
            + shade[:, None]
            + (vig * span)[:, None, None, None] * r2
            + (fcol * span)[:, None, None, None] * fpn[:, None, None, H:]
            + (frow * span)[:, None, None, None] * fpn[:, None, :H, None]
            + (tn * span)[:, None, None, None] * p["sensor_noise"]
        )
    flat = view.reshape(B, -1)
    if c.quantise:
        # 8-bit AGC: percentile stretch over the whole clip; 14-bit: counts, then min/max (as Levels does)
        lo_agc, hi_agc = _percentiles(flat[:, ::5], plo, 1 - phi)
        lo_raw, hi_raw = flat.min(1).values, flat.max(1).values
        counts_per_unit = span_counts / (hi_raw - lo_raw).clamp(min=1e-6)
        counts = torch.round((flat - lo_raw[:, None]) * counts_per_unit[:, None])
        raw = counts / counts.max(1, keepdim=True).values.clamp(min=1)
        agc = ((flat - lo_agc[:, None]) / (hi_agc - lo_agc).clamp(min=1e-6)[:, None]).clamp(0, 1)
        x = torch.where(raw14[:, None] > 0.5, raw, agc)
        x = offset[:, None] + scale[:, None] * x
        levels = torch.where(raw14 > 0.5, 16383.0, 255.0)[:, None]
        x = torch.where(raw14[:, None] > 0.5, x, torch.round(x * levels) / levels)
    else:
        lo, hi = flat.min(1).values, flat.max(1).values
        x = (flat - lo[:, None]) / (hi - lo).clamp(min=1e-6)[:, None]
        x = offset[:, None] + scale[:, None] * x
    return x.reshape(B, T, H, W).clamp(0, 1).float()


def _robust_span(x: torch.Tensor) -> torch.Tensor:
    """Per-clip 1st..99th percentile distance of (B, ...) values, >= 1e-3."""
    flat = x.reshape(x.shape[0], -1)[:, ::17]
    lo, hi = _percentiles(flat, torch.full((x.shape[0],), 0.01), torch.full((x.shape[0],), 0.99))
    return (hi - lo).clamp(min=1e-3)


def _percentiles(flat: torch.Tensor, qlo: torch.Tensor, qhi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row quantiles qlo, qhi (B,) of (B, N) by one sort (nearest rank)."""
    srt = flat.sort(1).values
    n = srt.shape[1]
    ilo = (qlo * (n - 1)).round().long().clamp(0, n - 1)
    ihi = (qhi * (n - 1)).round().long().clamp(0, n - 1)
    return srt.gather(1, ilo[:, None])[:, 0], srt.gather(1, ihi[:, None])[:, 0]
