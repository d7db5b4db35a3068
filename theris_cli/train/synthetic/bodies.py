"""Warm bodies that move: people, quadrupeds and vehicles as rounded boxes per part, with their gait,
drawn into the view at sub-pixel positions with antialiased edges and cooler rims."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from theris_cli.train.synthetic.config import ANIMAL, PERSON, VEHICLE


def _soft_box(px, py, cx, cy, ang, hx, hy, r) -> torch.Tensor:
    """Signed distance (px) of points to an oriented rounded box; negative inside."""
    dx, dy = px - cx, py - cy
    ca, sa = torch.cos(ang), torch.sin(ang)
    lx = (dx * ca + dy * sa).abs() - hx
    ly = (-dx * sa + dy * ca).abs() - hy
    outside = torch.sqrt(lx.clamp(min=0) ** 2 + ly.clamp(min=0) ** 2)
    return outside + torch.maximum(lx, ly).clamp(max=0) - r


def body_parts(bp: torch.Tensor, T: int):
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


def render_bodies(view: torch.Tensor, bp: torch.Tensor, parts: torch.Tensor, centre: torch.Tensor, cam: torch.Tensor,
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
