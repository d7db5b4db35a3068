"""Endless synthetic thermal clips, built from the physics THERIS assumes.

    gen = SyntheticThermal(frames=7, height=128, width=128, seed=0)
    clip = gen.clip(12)              # (T, 1, H, W) float32 in [0, 1]; the same for the same (seed, index)
    batch = gen.batch(0, 8)          # (8, T, 1, H, W): clips 0..7, rendered together (vectorised)

What a clip is made of, in the order a camera sees it:

1. **Scene temperature** u(x, y, t) on a world canvas larger than the view: ground with fractal
   (1/f^beta) texture, vegetation patches with fine texture, roads with painted markings, buildings
   with windows and roofs, an optional sky above a tilted horizon. u = u_static + u_transient: the
   static part is near equilibrium (conducts slowly), the transient part (hot spots, heat left by
   feet and tyres) conducts fast and cools by Newton's law. Both evolve by the 2-D heat equation
   du/dt = D lap(u) with explicit 5-point steps, D dt <= 0.2 px^2 per sub-step (stable below 0.25).
2. **Emissivity**: observed radiance = eps * u + (1 - eps) * T_reflected (cold sky), so glass and
   metal (low eps) look cold, paint slightly different from asphalt - edges without temperature edges.
3. **Warm bodies** that move: people (legs and arms swinging with the gait, torso, hot head and
   face), quadrupeds (four legs in a diagonal gait, neck, head, tail), vehicles (cool body, cold
   windows, hot engine, warm tyres, hot exhaust). Parts are rounded boxes with antialiased edges and
   cooler rims (grazing-angle emissivity); bodies are drawn in the view at sub-pixel positions.
4. **Camera**: pan with a constant velocity plus per-frame jitter, by resampling the world at
   sub-pixel offsets (bilinear), or fixed (trail cameras).
5. **Sensor**: Gaussian optical PSF (soft, as thermal optics are), radial vignetting, a smooth
   band of housing shade or glow along one edge (as the top rows of many Lepton clips), column and
   row fixed-pattern noise (constant over the clip), temporal noise, then either 8-bit AGC (a percentile stretch over
   the whole clip, not per frame, so levels do not flicker) or 14-bit raw counts normalised by their
   min/max over the clip (what `Levels` does for 16-bit video); a random affine squeeze then stands
   in for a longer video whose range is wider than the clip's.

Determinism: clip `index` of `seed` draws every random number from its own generator (seeded by
`(seed, index)`), in a fixed order and with shapes that depend only on the frame size and config,
so a clip is the same whether it is rendered alone or in any batch. `SceneConfig.diffusion_only()`
switches everything off except heat conduction (used by the physics test, `heat_residual`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from theris_cli.ops import laplacian

N_BODIES = 4  # body slots per clip (inactive slots are skipped)
N_PARTS = 8  # rounded boxes per body
N_BUILDINGS = 4
N_ROADS = 2
N_HOTSPOTS = 3
PERSON, ANIMAL, VEHICLE = 0, 1, 2
MAX_SUBSTEP_D = 0.2  # px^2 of D*dt per explicit sub-step; the scheme is stable below 0.25


@dataclass(frozen=True)
class SceneConfig:
    """Ranges the generator draws from (per clip). Temperatures are in arbitrary kelvin-like units."""

    bodies: bool = True
    body_count_p: tuple[float, ...] = (0.15, 0.35, 0.3, 0.12, 0.08)  # P(0..4 bodies)
    body_types_p: tuple[float, float, float] = (0.4, 0.35, 0.25)  # person, animal, vehicle
    body_size: tuple[float, float] = (0.08, 0.6)  # height (person) or length, fraction of min(H, W), log-uniform
    body_contrast: tuple[float, float] = (0.4, 4.0)  # body minus ground temperature
    structures: bool = True  # buildings, roads, vegetation, sky
    sky_p: float = 0.4
    uniform_emissivity: bool = False
    camera_motion: bool = True
    pan_p: float = 0.5
    pan_speed: float = 2.0  # px/frame, max along each axis
    jitter: float = 0.4  # px, max std of per-frame camera shake
    static_diffusion: tuple[float, float] = (0.0, 0.05)  # D of the static scene, px^2/frame
    transient_diffusion: tuple[float, float] = (0.05, 0.6)  # D of hot spots and trails, px^2/frame
    cooling: tuple[float, float] = (0.0, 0.08)  # Newton cooling rate of the transient field, 1/frame
    one_diffusivity: bool = False  # static and transient fields share D (one conducting medium)
    burn_in: int = 0  # frames of conduction before the first frame (the clip starts mid-way)
    hotspot_p: float = 0.5
    trail_p: float = 0.5
    sensor: bool = True
    psf_sigma: tuple[float, float] = (0.4, 2.0)  # optical blur, px (thermal optics are soft)
    temporal_noise: tuple[float, float] = (0.0, 0.012)  # std, fraction of the scene's span
    fpn: tuple[float, float] = (0.0, 0.008)  # column/row offset std, fraction of span
    vignetting: tuple[float, float] = (-0.25, 0.25)  # corner offset, fraction of span
    shade_p: float = 0.3  # P(a smooth band of housing shade/glow along one frame edge)
    shade_amp: tuple[float, float] = (-0.8, 0.8)  # its amplitude at the edge, fraction of span
    shade_width: tuple[float, float] = (2.0, 16.0)  # its e-folding width, px
    # fast motion (off by default): a fraction of clips whose camera pans and whose bodies move up to
    # ~10 LR px per input frame (20 HR px per output frame), with at least two bodies (occlusions)
    fast_p: float = 0.0  # P(a clip is a fast one)
    fast_pan_speed: float = 20.0  # px/frame, max along each axis; the pan is centred on the middle frame
    fast_body_speed: tuple[float, float] = (3.0, 20.0)  # px/frame of each moving body, log-uniform
    raw14_p: float = 0.4  # else 8-bit AGC
    squeeze_p: float = 0.5  # P(the clip uses only part of [0, 1])
    quantise: bool = True

    @classmethod
    def diffusion_only(cls, diffusion: tuple[float, float] = (0.2, 0.4)) -> SceneConfig:
        """A scene that obeys du/dt = D lap(u) exactly (up to the discretisation): no bodies, no
        camera motion, one D for everything, uniform emissivity, no cooling, no sensor effects."""
        return cls(
            bodies=False, sky_p=0.0, uniform_emissivity=True, camera_motion=False,
            static_diffusion=diffusion, transient_diffusion=diffusion, one_diffusivity=True, cooling=(0.0, 0.0),
            trail_p=0.0, sensor=False, squeeze_p=0.0, quantise=False, burn_in=8,
        )


def clip_seed(seed: int, index: int) -> int:
    """A 63-bit seed for clip `index` of stream `seed` (well mixed, so nearby indices are unrelated)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, index & 0xFFFFFFFF, index >> 32]).generate_state(2, np.uint64)[0] >> 1)


class SyntheticThermal:
    """Deterministic stream of synthetic thermal clips of `frames` x `height` x `width`."""

    def __init__(self, frames: int = 7, height: int = 128, width: int = 128, seed: int = 0,
                 config: SceneConfig | None = None):
        if frames < 1 or height < 8 or width < 8:
            raise ValueError(f"need frames >= 1 and a view of at least 8x8, got {frames}x{height}x{width}")
        self.frames, self.height, self.width, self.seed = frames, height, width, seed
        self.config = config or SceneConfig()
        c = self.config
        # world margin: the largest camera travel the config allows, so the canvas size (and with it
        # every random draw's shape) depends only on the config
        travel = (c.pan_speed * (frames - 1) + 3 * c.jitter) if c.camera_motion else 0.0
        if c.fast_p > 0 and c.camera_motion:
            travel = max(travel, c.fast_pan_speed * (frames - 1) / 2 + 3 * c.jitter)
        self.margin = int(math.ceil(travel)) + 4
        self.canvas = (height + 2 * self.margin, width + 2 * self.margin)

    def clip(self, index: int) -> torch.Tensor:
        """Clip `index` as (T, 1, H, W) float32 in [0, 1]."""
        return self.batch(index, 1)[0]

    def batch(self, start: int, n: int) -> torch.Tensor:
        """Clips start .. start+n-1 as (n, T, 1, H, W) float32 in [0, 1]."""
        draws = [_draw(torch.Generator().manual_seed(clip_seed(self.seed, start + i)), self) for i in range(n)]
        p = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
        return _render(p, self)


# ---------------------------------------------------------------------------------------------
# Per-clip random draws (small tensors plus a few noise fields), in a fixed order


def _u(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape or (), generator=g)


def _draw(g: torch.Generator, s: SyntheticThermal) -> dict[str, torch.Tensor]:
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


# ---------------------------------------------------------------------------------------------
# Rendering, vectorised over the batch


def _fractal(white: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Colour white noise (B, H, W) to a 1/f^beta power spectrum per clip; zero mean, unit std. beta: (B,)."""
    B, H, W = white.shape
    fy = torch.fft.fftfreq(H)[:, None]
    fx = torch.fft.rfftfreq(W)[None, :]
    f = torch.sqrt(fy**2 + fx**2).clamp(min=1.0 / max(H, W))
    # power ~ 1/f^beta, so amplitude ~ f^(-beta/2); natural images have beta ~ 2
    out = torch.fft.irfft2(torch.fft.rfft2(white) * f[None] ** (-beta[:, None, None] / 2), s=(H, W))
    out = out - out.mean(dim=(-2, -1), keepdim=True)
    return out / out.std(dim=(-2, -1), keepdim=True).clamp(min=1e-8)


def _soft_box(px, py, cx, cy, ang, hx, hy, r) -> torch.Tensor:
    """Signed distance (px) of points to an oriented rounded box; negative inside."""
    dx, dy = px - cx, py - cy
    ca, sa = torch.cos(ang), torch.sin(ang)
    lx = (dx * ca + dy * sa).abs() - hx
    ly = (-dx * sa + dy * ca).abs() - hy
    outside = torch.sqrt(lx.clamp(min=0) ** 2 + ly.clamp(min=0) ** 2)
    return outside + torch.maximum(lx, ly).clamp(max=0) - r


def _scene(p: dict, s: SyntheticThermal) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Static temperature (B, Hc, Wc), emissivity, reflected temperature (B, 1, 1), sky mask."""
    Hc, Wc = s.canvas
    B = p["noise"].shape[0]
    yy = torch.arange(Hc, dtype=torch.float32)[None, :, None].expand(B, Hc, Wc)
    xx = torch.arange(Wc, dtype=torch.float32)[None, None, :].expand(B, Hc, Wc)
    textures = _fractal(p["noise"].reshape(B * 3, Hc, Wc), p["beta"].reshape(B * 3)).reshape(B, 3, Hc, Wc)
    gl, gg, ga = (p["ground"][:, i, None, None] for i in range(3))
    u = gl + gg * yy / Hc + ga * textures[:, 0]
    eps = torch.full_like(u, 0.95)
    # vegetation: patches where the layout noise exceeds a threshold, with fine texture
    vt, vtemp, vtex = (p["veg"][:, i, None, None] for i in range(3))
    veg = torch.sigmoid((textures[:, 1] - vt) / 0.15)
    u = u + veg * (vtemp + vtex * textures[:, 2])
    eps = eps + veg * 0.03
    # roads: strips with a dashed painted centre line (paint: lower emissivity than asphalt)
    for k in range(N_ROADS):
        on, rx, ry, ang, wid, temp, period = (p["roads"][:, k, i, None, None] for i in range(7))
        nx, ny = -torch.sin(ang), torch.cos(ang)
        dist = (xx - rx * Wc) * nx + (yy - ry * Hc) * ny
        along = (xx - rx * Wc) * ny - (yy - ry * Hc) * nx
        half = wid * min(Hc, Wc) / 2
        road = on * (half - dist.abs()).clamp(0, 1)
        u = u + road * temp
        paint = road * (1.2 - dist.abs()).clamp(0, 1) * (torch.sin(along * 2 * math.pi / period) > 0).float()
        eps = eps - paint * 0.12
    # sky: above a tilted horizon, cold, brightening towards the horizon
    on, hz, tilt, stemp = (p["sky"][:, i, None, None] for i in range(4))
    horizon = hz * Hc + tilt * (xx - Wc / 2)
    sky = on * (horizon - yy).clamp(0, 1)
    sky_temp = gl + stemp + 0.4 * (yy / Hc - hz)  # colder away from the horizon
    u = u * (1 - sky) + sky * sky_temp
    eps = eps * (1 - sky) + sky  # the sky's "temperature" is already its radiance
    # buildings: warm or cool walls, a grid of windows (glass: low emissivity), a metal roof band
    for k in range(N_BUILDINGS):
        on, x0, y0, bw, bh, temp, pxw, pyw, fill, wtemp, roof_eps = (p["buildings"][:, k, i, None, None] for i in range(11))
        x0, y0, bw, bh = x0 * Wc, y0 * Hc, bw * Wc * 0.6, bh * Hc * 0.6
        inside = on * ((xx - x0).clamp(0, 1) * (x0 + bw - xx).clamp(0, 1) * (yy - y0).clamp(0, 1) * (y0 + bh - yy).clamp(0, 1))
        u = u * (1 - inside) + inside * (gl + temp)
        e = torch.full_like(u, 0.93)
        fx = torch.remainder(xx - x0, pxw) / pxw
        fy = torch.remainder(yy - y0, pyw) / pyw
        margin = (1 - fill) / 2
        win = ((fx > margin) & (fx < 1 - margin) & (fy > margin) & (fy < 1 - margin)).float()
        win = win * ((yy - y0) > 0.15 * bh).float() * ((y0 + bh - yy) > 2).float()
        # some windows lit (warm room behind the glass): a hash of the window's grid cell
        cell = torch.floor((xx - x0) / pxw) * 12.9898 + torch.floor((yy - y0) / pyw) * 78.233
        lit = (torch.frac(torch.sin(cell) * 43758.5453).abs() < 0.3).float()
        u = u + inside * win * lit * wtemp.clamp(min=0)
        e = e * (1 - win) + win * p["eps_window"][:, None, None]
        roof = (yy - y0 < 0.12 * bh).float()
        e = e * (1 - roof) + roof * roof_eps
        eps = eps * (1 - inside) + inside * e
    if s.config.uniform_emissivity:
        eps = torch.ones_like(eps)
    t_reflected = (gl + p["sky"][:, 3, None, None])  # a cold sky reflects in glass and metal
    return u, eps.clamp(0.05, 1.0), t_reflected, sky


def _bodies_parts(bp: torch.Tensor, T: int):
    """Part geometry per (B, body, frame, part) as (x, y, angle, hx, hy, r, temperature) in px at zero camera
    offset; the body origin (B, N, T, 2); the ground contact point (B, N, T, 2)."""
    on, typ, size, x, y, speed, facing, vy, phase, contrast, _ = bp.unbind(-1)  # each (B, N)
    t = torch.arange(T, dtype=torch.float32) - (T - 1) / 2  # frames relative to the middle one
    # body centre per frame (view coordinates at zero camera offset)
    cx = x[..., None] + facing[..., None] * speed[..., None] * t
    cy = y[..., None] + vy[..., None] * t
    stride = torch.where(typ == VEHICLE, 1.0, 0.8) * size
    gait = phase[..., None] + 2 * math.pi * speed[..., None] * t / stride[..., None]  # (B, N, T)
    moving = (speed > 0).float()[..., None]
    sg = torch.sin(gait) * moving
    sg2 = torch.sin(gait + math.pi) * moving
    z = torch.zeros_like(gait)
    one = torch.ones_like(gait)

    def seg(ax, ay, ang, half, r, temp, hy=0.0):  # a limb from (ax, ay) along ang, local units
        ang = ang * one
        return (ax + half * torch.cos(ang), ay + half * torch.sin(ang), ang, half * one, hy * one, r * one, temp * one)

    def blob(px, py, hx, hy, r, temp):
        return (px * one, py * one, z, hx * one, hy * one, r * one, temp * one)

    down = math.pi / 2
    # people: origin at the hip, height 1; legs and arms swing about the vertical, opposite phases
    person = [
        seg(0.0, 0.0, down + 0.45 * sg2, 0.25, 0.055, 0.7),
        seg(0.0, -0.3, down - 0.5 * sg2, 0.17, 0.04, 0.8),
        blob(0.0, -0.17, 0.05, 0.13, 0.06, 0.75),
        seg(0.0, 0.0, down + 0.45 * sg, 0.25, 0.055, 0.72),
        seg(0.0, -0.3, down - 0.5 * sg, 0.17, 0.04, 0.82),
        blob(0.01, -0.42, 0.0, 0.0, 0.07, 1.0),
        blob(0.045, -0.42, 0.0, 0.0, 0.032, 1.15),
        blob(0.0, -0.17, 0.0, 0.0, 0.0, 0.0),  # unused slot (zero size)
    ]
    # quadrupeds: origin at the body centre, length 1; diagonal leg pairs swing together
    animal = [
        seg(0.22, 0.06, down + 0.4 * sg2, 0.15, 0.035, 0.55),
        seg(-0.22, 0.06, down + 0.4 * sg, 0.15, 0.035, 0.55),
        blob(0.0, 0.0, 0.28, 0.07, 0.08, 0.8),
        seg(0.22, 0.06, down + 0.4 * sg, 0.15, 0.035, 0.6),
        seg(-0.22, 0.06, down + 0.4 * sg2, 0.15, 0.035, 0.6),
        seg(-0.36, -0.04, 2.3 + 0.2 * sg, 0.1, 0.02, 0.5),
        seg(0.3, -0.05, -0.8, 0.1, 0.05, 0.85),
        blob(0.47, -0.2, 0.05, 0.0, 0.07, 1.0),
    ]
    # vehicles: origin at the body centre, length 1; cool shell, cold glass, hot engine and exhaust
    vehicle = [
        blob(0.0, 0.0, 0.46, 0.06, 0.04, 0.15),
        blob(-0.05, -0.16, 0.2, 0.05, 0.04, 0.2),
        blob(-0.05, -0.16, 0.17, 0.025, 0.02, -0.3),
        blob(0.33, -0.02, 0.09, 0.04, 0.03, 1.0),
        blob(0.3, 0.12, 0.0, 0.0, 0.09, 0.7),
        blob(-0.3, 0.12, 0.0, 0.0, 0.09, 0.7),
        blob(-0.5, 0.08, 0.0, 0.0, 0.025, 1.8),
        blob(0.49, -0.03, 0.0, 0.0, 0.02, 0.6),
    ]
    out = []
    for a, b, v in zip(person, animal, vehicle):
        parts = []
        for qa, qb, qv in zip(a, b, v):
            parts.append(torch.where(typ[..., None] == PERSON, qa, torch.where(typ[..., None] == ANIMAL, qb, qv)))
        lx, ly, ang, hx, hy, r, temp = parts
        # mirror for bodies walking left: x -> -x, angle -> pi - angle
        f = facing[..., None]
        ang = torch.where(f < 0, math.pi - ang, ang)
        sz = size[..., None]
        out.append(torch.stack([cx + f * lx * sz, cy + ly * sz, ang, hx * sz, hy * sz, r * sz, temp * contrast[..., None]], -1))
    parts = torch.stack(out, -2)  # (B, N, T, P, 7)
    # ground contact (feet, tyres) for trails, view px
    foot = torch.where(typ == PERSON, 0.5, torch.where(typ == ANIMAL, 0.36, 0.21))[..., None] * size[..., None]
    contact = torch.stack([cx, cy + foot], -1)  # (B, N, T, 2)
    return parts, torch.stack([cx, cy], -1), contact


def _render_bodies(view: torch.Tensor, bp: torch.Tensor, parts: torch.Tensor, centre: torch.Tensor, cam: torch.Tensor,
                   base: torch.Tensor, group: int = 8) -> torch.Tensor:
    """Composite the active bodies over view (B, T, H, W); cam (B, T, 2) camera offsets, base (B,) ground level.

    Each body is drawn in a square window around its origin; bodies of the whole batch are sorted by
    size and drawn `group` at a time with the group's largest window, so small bodies cost little.
    Within a clip larger bodies are pasted first (painter's order). Coverage is exactly 0 outside a
    shape, so the window size never changes a pixel (a clip is the same in any batch).
    """
    B, T, H, W = view.shape
    size = bp[..., 2] * bp[..., 0]  # (B, N), 0 for inactive slots
    bs, js = torch.nonzero(size > 0, as_tuple=True)
    if len(bs) == 0:
        return view
    order = torch.argsort(-size[bs, js], stable=True)
    bs, js = bs[order], js[order]
    # window side: every part lies within 0.57 sizes of the body origin (see _bodies_parts)
    sides = (torch.ceil(1.2 * size[bs, js]) + 4).long()
    Pd = int(sides.max())
    pad = F.pad(view, (Pd, Pd, Pd, Pd))  # windows that leave the frame still fit
    ti = torch.arange(T)[:, None, None]
    for g0 in range(0, len(bs), group):
        b, j = bs[g0:g0 + group], js[g0:g0 + group]
        S = int(sides[g0])
        pj = parts[b, j]  # (G, T, P, 7)
        camb = cam[b]  # (G, T, 2)
        cxy = pj[..., 0:2] - camb[:, :, None, :]  # part centres in each frame's view
        origin = centre[b, j] - camb  # (G, T, 2)
        ox = torch.floor(origin[..., 0] - S / 2)  # (G, T) window corner, integer px
        oy = torch.floor(origin[..., 1] - S / 2)
        ar = torch.arange(S, dtype=torch.float32)
        px = (ox[..., None] + ar)[:, :, None, :]  # (G, T, 1, S) pixel centres
        py = (oy[..., None] + ar)[:, :, :, None]  # (G, T, S, 1)
        col = torch.zeros(len(b), T, S, S)  # premultiplied temperature
        alpha = torch.zeros(len(b), T, S, S)
        bb = base[b][:, None, None, None]
        for k in range(pj.shape[2]):
            q = pj[:, :, k, :, None, None]  # (G, T, 7, 1, 1)
            d = _soft_box(px, py, cxy[:, :, k, 0, None, None], cxy[:, :, k, 1, None, None],
                          q[:, :, 2], q[:, :, 3], q[:, :, 4], q[:, :, 5])
            a = (0.5 - d).clamp(0, 1)  # box-filter coverage of a 1-px edge: exactly 0 outside the shape
            thick = (q[:, :, 4] + q[:, :, 5]).clamp(min=1.0)
            rim = 0.75 + 0.25 * (-d / thick).clamp(0, 1)  # rims look cooler: emissivity falls at grazing angles
            col = col + a * (bb + q[:, :, 6] * rim - col)
            alpha = alpha + a * (1 - alpha)
        arl = torch.arange(S)
        for i in range(len(b)):  # one body at a time: two bodies of one clip may overlap
            iy = ((oy[i].long() + Pd)[:, None, None] + arl[None, :, None]).clamp(0, H + 2 * Pd - 1)
            ix = ((ox[i].long() + Pd)[:, None, None] + arl[None, None, :]).clamp(0, W + 2 * Pd - 1)
            bi = int(b[i])
            under = pad[bi, ti, iy, ix]  # clamped indices only ever land in the border, cropped below
            pad[bi, ti, iy, ix] = under * (1 - alpha[i]) + col[i]
    return pad[:, :, Pd:Pd + H, Pd:Pd + W]


def _render(p: dict, s: SyntheticThermal) -> torch.Tensor:
    c, T, H, W, M = s.config, s.frames, s.height, s.width, s.margin
    B = p["noise"].shape[0]
    Hc, Wc = s.canvas
    u_static, eps, t_refl, sky = _scene(p, s)
    # transient field: hot spots at t = 0, then trails deposited frame by frame
    yy = torch.arange(Hc, dtype=torch.float32)[None, :, None]
    xx = torch.arange(Wc, dtype=torch.float32)[None, None, :]
    u_tr = torch.zeros(B, Hc, Wc)
    for k in range(N_HOTSPOTS):
        on, hx, hy, sig, amp = (p["hotspots"][:, k, i, None, None] for i in range(5))
        u_tr = u_tr + on * amp * torch.exp(-((xx - hx * Wc) ** 2 + (yy - hy * Hc) ** 2) / (2 * sig**2))
    u_tr = u_tr * (1 - sky)
    d_static, d_tr, cool = p["diffusion"].unbind(-1)
    nsub = max(1, math.ceil(c.transient_diffusion[1] / MAX_SUBSTEP_D))  # sub-steps per frame, for stability
    nsub_static = max(1, math.ceil(c.static_diffusion[1] / MAX_SUBSTEP_D))
    cam = p["camera"]  # (B, T, 2): camera offset (x, y) px, added to view coordinates to get world ones
    parts, centre, contact = _bodies_parts(p["bodies"], T)
    bp = p["bodies"]
    radiance = []
    for t in range(-c.burn_in, T):
        if t > -c.burn_in:
            for _ in range(nsub):
                u_tr = u_tr + (d_tr / nsub)[:, None, None] * laplacian(u_tr)
            for _ in range(nsub_static):
                u_static = u_static + (d_static / nsub_static)[:, None, None] * laplacian(u_static)
            u_tr = u_tr * torch.exp(-cool)[:, None, None]
        if t < 0:
            continue
        radiance.append(eps * (u_static + u_tr) + (1 - eps) * t_refl)
        if c.bodies:  # heat left where each active body touches the ground, splatted bilinearly
            wpos = contact[:, :, t] + M  # (B, N, 2) world px (bodies live in the world, not the view)
            amp = bp[..., 0] * bp[..., 10] * bp[..., 9]
            _splat(u_tr, wpos, amp)
    world = torch.stack(radiance, 1)  # (B, T, Hc, Wc)
    # camera: sample the view window at sub-pixel offsets (bilinear; exact for integer offsets)
    gy = torch.arange(H, dtype=torch.float32) + M
    gx = torch.arange(W, dtype=torch.float32) + M
    wx = gx[None, None, None, :] + cam[..., 0, None, None]  # (B, T, 1, W)
    wy = gy[None, None, :, None] + cam[..., 1, None, None]  # (B, T, H, 1)
    grid = torch.stack([(2 * wx + 1) / Wc - 1 + 0 * wy, (2 * wy + 1) / Hc - 1 + 0 * wx], -1)  # align_corners=False
    view = F.grid_sample(world.reshape(B * T, 1, Hc, Wc), grid.reshape(B * T, H, W, 2), mode="bilinear",
                         padding_mode="border", align_corners=False).reshape(B, T, H, W)
    if c.bodies:
        base = p["ground"][:, 0]
        view = _render_bodies(view, bp, parts, centre, cam, base)
    x = _sensor(view, p, s)
    return x[:, :, None]


def _splat(u: torch.Tensor, pos: torch.Tensor, amp: torch.Tensor) -> None:
    """Add amp at sub-pixel positions pos (B, N, 2 as x, y) into u (B, H, W), bilinearly, in place."""
    B, H, W = u.shape
    x0 = torch.floor(pos[..., 0])
    y0 = torch.floor(pos[..., 1])
    fx, fy = pos[..., 0] - x0, pos[..., 1] - y0
    bi = torch.arange(B)[:, None].expand_as(x0)
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yi, xi = (y0 + dy).long(), (x0 + dx).long()
        ok = (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
        u.index_put_((bi[ok], yi[ok], xi[ok]), (amp * w)[ok] * 4.0, accumulate=True)


def _sensor(view: torch.Tensor, p: dict, s: SyntheticThermal) -> torch.Tensor:
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


def heat_residual(clip: torch.Tensor) -> tuple[float, float]:
    """How well a clip (T, 1, H, W) obeys du/dt = D lap(u): (relative residual, best-fit D px^2/frame).

    The time derivative is the central difference (u[t+1] - u[t-1]) / 2 and lap the 5-point stencil
    at u[t], both on the interior; D is fitted by least squares; the residual is
    |du/dt - D lap u| / |du/dt| (0: pure conduction; about 1: changes that conduction cannot explain).
    """
    u = clip[:, 0].double()
    if u.shape[0] < 3:
        raise ValueError("heat_residual needs at least 3 frames")
    dudt = (u[2:] - u[:-2]) / 2
    lap = laplacian(u[1:-1])[:, 1:-1, 1:-1]  # the interior, where the border rule does not reach
    dudt = dudt[:, 1:-1, 1:-1]
    D = float((dudt * lap).sum() / (lap * lap).sum().clamp(min=1e-20))
    rel = float((dudt - D * lap).norm() / dudt.norm().clamp(min=1e-20))
    return rel, D


__all__ = ["SceneConfig", "SyntheticThermal", "clip_seed", "heat_residual"]
