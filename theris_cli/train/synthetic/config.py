"""What synthetic clips are drawn from: `SceneConfig` (ranges per clip) and the fixed counts."""

from __future__ import annotations

from dataclasses import dataclass

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
