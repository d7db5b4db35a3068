"""Each clip's random numbers: small tensors plus a few noise fields, drawn in a fixed order from the
clip's own generator, with shapes that depend only on the frame size and the config (so a clip is the
same alone or in any batch). `s` is the SyntheticThermal being rendered (config, frames, size, canvas)."""

from __future__ import annotations

import math

import torch

from theris_cli.train.synthetic.config import N_BODIES, N_BUILDINGS, N_HOTSPOTS, N_ROADS, VEHICLE


def _u(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape or (), generator=g)


def draw_clip(g: torch.Generator, s: SyntheticThermal) -> dict[str, torch.Tensor]:
    c, T, H, W = s.config, s.frames, s.height, s.width
    Hc, Wc = s.canvas
    d: dict[str, torch.Tensor] = {}
    # noise fields for the scene textures (white; coloured later in one batched FFT)
    d["noise"] = torch.randn(3, Hc, Wc, generator=g)  # terrain, vegetation layout, vegetation texture
    d["beta"] = torch.stack([_u(g, 1.6, 3.0), _u(g, 2.5, 3.5), _u(g, 0.8, 1.5)])  # spectral slopes
    d["ground"] = torch.stack([_u(g, -0.5, 0.5), _u(g, -0.6, 0.6), torch.exp(_u(g, math.log(0.03), math.log(0.5)))])  # level, vertical gradient, texture amp
    structures = float(c.structures)
    d["veg"] = torch.stack([_u(g, -0.6, 1.0) * structures + (1 - structures) * 9, _u(g, -0.4, 0.3), _u(g, 0.05, 0.3)])  # threshold, temp, texture
    d["sky"] = torch.stack([(_u(g, 0, 1) < c.sky_p * structures).float(), _u(g, 0.05, 0.5), _u(g, -0.15, 0.15), _u(g, -2.0, -0.6)])  # on, horizon, tilt, temp offset
    # roads: on, point (x, y), angle, width, temp offset, marking period
    roads = torch.stack([
        (_u(g, 0, 1, N_ROADS) < 0.35 * structures).float(), _u(g, 0, 1, N_ROADS), _u(g, 0, 1, N_ROADS),
        _u(g, 0, math.pi, N_ROADS), _u(g, 0.05, 0.25, N_ROADS), _u(g, -0.3, 0.6, N_ROADS), _u(g, 6, 24, N_ROADS),
    ], -1)
    d["roads"] = roads
    # buildings: on, x0, y0, w, h, temp, window period x, y, window fill, window temp, roof eps
    b = torch.stack([
        (_u(g, 0, 1, N_BUILDINGS) < 0.3 * structures).float(), _u(g, -0.2, 0.9, N_BUILDINGS), _u(g, -0.2, 0.8, N_BUILDINGS),
        _u(g, 0.15, 0.6, N_BUILDINGS), _u(g, 0.15, 0.8, N_BUILDINGS), _u(g, -0.3, 0.8, N_BUILDINGS),
        _u(g, 5, 20, N_BUILDINGS), _u(g, 6, 22, N_BUILDINGS), _u(g, 0.3, 0.7, N_BUILDINGS), _u(g, -0.6, 0.8, N_BUILDINGS),
        _u(g, 0.2, 0.9, N_BUILDINGS),
    ], -1)
    d["buildings"] = b
    d["eps_window"] = _u(g, 0.3, 0.9)  # glass emissivity in LWIR (reflects the cold sky)
    # hot spots in the transient field: on, x, y, sigma px, amplitude
    d["hotspots"] = torch.stack([
        (_u(g, 0, 1, N_HOTSPOTS) < c.hotspot_p).float(), _u(g, 0, 1, N_HOTSPOTS), _u(g, 0, 1, N_HOTSPOTS),
        _u(g, 1.0, 6.0, N_HOTSPOTS), _u(g, 0.3, 2.0, N_HOTSPOTS),
    ], -1)
    d["diffusion"] = torch.stack([_u(g, *c.static_diffusion), _u(g, *c.transient_diffusion), _u(g, *c.cooling)])
    if c.one_diffusivity:
        d["diffusion"][0] = d["diffusion"][1]
    # camera: pan velocity (x, y) px/frame, jitter std, jitter noise per frame
    pan = (_u(g, 0, 1) < c.pan_p).float() * _u(g, -c.pan_speed, c.pan_speed, 2) * float(c.camera_motion)
    jit = _u(g, 0, c.jitter) * float(c.camera_motion) * torch.randn(T, 2, generator=g)
    d["camera"] = pan[None, :] * torch.arange(T, dtype=torch.float32)[:, None] + jit  # (T, 2) offset (x, y) px
    fast = False
    if c.fast_p > 0:  # drawn only then, so that the clips of a config without fast motion stay the same
        fast = bool(_u(g, 0, 1) < c.fast_p)
        fast_pan = _u(g, -c.fast_pan_speed, c.fast_pan_speed, 2) * float(c.camera_motion)
        fast_speed = torch.exp(_u(g, math.log(c.fast_body_speed[0]), math.log(c.fast_body_speed[1]), N_BODIES))
        if fast:
            t_mid = torch.arange(T, dtype=torch.float32)[:, None] - (T - 1) / 2
            d["camera"] = fast_pan[None, :] * t_mid + jit
    # bodies: on, type, size px, x, y (view at the middle frame), speed px/frame, direction sign, vy,
    # gait phase, contrast, trail amplitude
    count = int(torch.multinomial(torch.tensor(c.body_count_p, dtype=torch.float32), 1, generator=g)) if c.bodies else 0
    types = torch.multinomial(torch.tensor(c.body_types_p, dtype=torch.float32), N_BODIES, replacement=True, generator=g).float()
    lo, hi = c.body_size
    size = torch.exp(_u(g, math.log(lo), math.log(hi), N_BODIES)) * min(H, W)
    size = torch.where(types == VEHICLE, size * 1.3, size)
    speed = _u(g, 0, 1, N_BODIES) ** 2 * torch.where(types == VEHICLE, 0.12, 0.07) * size
    still = _u(g, 0, 1, N_BODIES) < 0.2
    if fast:
        count, speed = max(count, 2), fast_speed
    speed = torch.where(still, 0.0, speed)
    bodies = torch.stack([
        (torch.arange(N_BODIES) < count).float(), types, size, _u(g, -0.1, 1.1, N_BODIES) * W, _u(g, 0.0, 1.1, N_BODIES) * H,
        speed, torch.where(_u(g, 0, 1, N_BODIES) < 0.5, -1.0, 1.0), _u(g, -0.15, 0.15, N_BODIES) * speed,
        _u(g, 0, 2 * math.pi, N_BODIES), _u(g, *c.body_contrast, N_BODIES),
        (_u(g, 0, 1, N_BODIES) < c.trail_p).float() * _u(g, 0.05, 0.4, N_BODIES),
    ], -1)
    # largest first, so that slot j's window (max over a batch) shrinks with j
    d["bodies"] = bodies[torch.argsort(-(bodies[:, 0] * bodies[:, 2]), stable=True)]
    # sensor: psf sigma, temporal noise, fpn col, fpn row, vignetting, raw14?, counts span, AGC lo, hi pct,
    # squeeze scale, squeeze offset
    sens = float(c.sensor)
    squeeze = (_u(g, 0, 1) < c.squeeze_p).float()
    scale = 1 - squeeze * _u(g, 0.0, 0.4)
    d["sensor"] = torch.stack([
        _u(g, *c.psf_sigma) * sens, _u(g, *c.temporal_noise) * sens, _u(g, *c.fpn) * sens, _u(g, *c.fpn) * sens,
        _u(g, *c.vignetting) * sens, (_u(g, 0, 1) < c.raw14_p).float(), _u(g, 150, 3000),
        _u(g, 0.0, 0.02), _u(g, 0.001, 0.02), scale, _u(g, 0, 1) * (1 - scale),
    ])
    d["sensor_noise"] = torch.randn(T, H, W, generator=g)
    d["fpn_noise"] = torch.randn(H + W, generator=g)
    # edge shade: on, amplitude, width px, which edge (0..3), curvature
    d["shade"] = torch.stack([
        (_u(g, 0, 1) < c.shade_p * sens).float(), _u(g, *c.shade_amp), _u(g, *c.shade_width),
        torch.floor(_u(g, 0, 4)), _u(g, -0.3, 0.3),
    ])
    return d
