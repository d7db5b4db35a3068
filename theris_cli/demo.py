"""`theris demo`: make a short synthetic thermal clip and upscale it, with nothing but the install.

    res = run_demo("theris-demo")       # writes theris-demo/thermal_input.mkv, then thermal_upscaled.mp4
    res.input, res.output, res.upscale  # paths and the UpscaleResult (weights used, trained or not)

The clip comes from the training data generator (theris_cli.train.synthetic): a scene whose
temperature field conducts heat, with warm bodies walking and driving through it, seen by a camera
with optics and sensor noise. It is written losslessly (8-bit FFV1) at a Lepton-like frame rate, and
upscaled into H.264 .mp4 so that any player shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

from theris_cli.outputs import atomic_output, output_error
from theris_cli.engine.pipeline import ProgressCallback, UpscaleResult, upscale_video

INPUT_NAME = "thermal_input.mkv"
OUTPUT_NAME = "thermal_upscaled.mp4"
DEMO_SEED, DEMO_CLIP = 0, 4  # a clip with a person walking and a car driving past (seed 0, index 4)
DEMO_FPS = Fraction(9)  # frames per second: what export-controlled thermal cores (FLIR Lepton) deliver
DEMO_FRAMES, DEMO_HEIGHT, DEMO_WIDTH = 27, 64, 80  # 3 s of 80x64: the output is 320x256 at 18 fps


@dataclass
class DemoResult:
    input: Path
    output: Path
    upscale: UpscaleResult


def write_demo_clip(path: str | Path, frames: int = DEMO_FRAMES, height: int = DEMO_HEIGHT, width: int = DEMO_WIDTH,
                    fps: Fraction = DEMO_FPS) -> Path:
    """Render the synthetic clip and write it as lossless 8-bit video (atomically; replaces ``path``)."""
    from theris_cli.train.synthetic import SyntheticThermal
    from theris_cli.video import Levels, VideoWriter

    clip = SyntheticThermal(frames=frames, height=height, width=width, seed=DEMO_SEED).clip(DEMO_CLIP)  # (T, 1, H, W)
    levels = Levels.full_range(8)  # 8-bit, as most thermal cameras export video
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        with VideoWriter(tmp, width, height, fps, bit_depth=8) as writer:
            for frame in clip[:, 0]:
                writer.write(levels.from_unit(frame))
    return path


def run_demo(
    out_dir: str | Path = "theris-demo",
    *,
    weights: Optional[str] = None,
    device: str = "auto",
    on_progress: Optional[ProgressCallback] = None,
    frames: Optional[int] = None,
) -> DemoResult:
    """Write the demo clip into ``out_dir`` (created if missing) and upscale it with ``weights``
    (default: the registry's default). Files of an earlier demo in ``out_dir`` are replaced."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only, forbidden, full, or a file of that name
        raise output_error(e, out, "the demo folder") from None
    src = write_demo_clip(out / INPUT_NAME, frames=frames or DEMO_FRAMES)
    res = upscale_video(src, out / OUTPUT_NAME, weights=weights, device=device, overwrite=True, on_progress=on_progress)
    return DemoResult(src, out / OUTPUT_NAME, res)
