"""The world and the camera, vectorised over the batch: scene temperature on a canvas larger than the
view (ground texture, vegetation, roads, buildings, sky), emissivity, heat conduction and cooling
frame by frame, heat left by bodies, the camera's pan, then bodies and sensor (`render`). `s` is the
SyntheticThermal being rendered (config, frames, size, canvas)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from theris_cli.ops import laplacian
from theris_cli.train.synthetic.bodies import body_parts, render_bodies
from theris_cli.train.synthetic.config import MAX_SUBSTEP_D, N_BUILDINGS, N_HOTSPOTS, N_ROADS
from theris_cli.train.synthetic.sensor import apply_sensor


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


def render(p: dict, s: SyntheticThermal) -> torch.Tensor:
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
    parts, centre, contact = body_parts(p["bodies"], T)
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
        view = render_bodies(view, bp, parts, centre, cam, base)
    x = apply_sensor(view, p, s)
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
