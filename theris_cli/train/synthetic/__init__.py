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

The package, in the order a clip is made: `config.py` (SceneConfig, what is drawn from), `draws.py`
(each clip's random numbers), `scene.py` (the world's temperature, heat conduction, the camera),
`bodies.py` (warm bodies), `sensor.py` (optics, noise, quantisation).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from theris_cli.ops import laplacian
from theris_cli.train.synthetic.config import SceneConfig
from theris_cli.train.synthetic.draws import draw_clip
from theris_cli.train.synthetic.scene import render


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
        draws = [draw_clip(torch.Generator().manual_seed(clip_seed(self.seed, start + i)), self) for i in range(n)]
        p = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
        return render(p, self)


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


__all__ = ["SceneConfig", "SyntheticThermal", "clip_seed", "draw_clip", "heat_residual"]
