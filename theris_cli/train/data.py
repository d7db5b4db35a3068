"""The data of a run: training batches and a fixed validation batch from real clips and synthetic
scenes, and a description of both for the checkpoint (clip names, never only paths).

    settings, mixer, val = build_data(settings, ["clips/"], exclude=[], val_paths=[])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from theris_cli.train.settings import TrainSettings


def build_data(s: TrainSettings, data_paths: list[str], exclude: list[str], val_paths: list[str],
               max_frames: int = 1000, on_skip: Callable[[Path, str], None] | None = None,
               n_val: int = 8, scene=None, split: str | None = None):
    """(settings, mixer, val): the settings as the data makes them (synthetic only without real
    clips; `data` describes the sources), the training batches (a ClipMixer) and a fixed validation
    batch. `s` itself is not changed.

    `scene` (a synthetic.SceneConfig) changes what the synthetic clips look like; by default the
    standard scenes with `s.motion_p` of fast-moving ones. `split`: the name of the split whose
    validation clips were left out (recorded)."""
    from theris_cli.train.dataset import ClipMixer, RealSource, SyntheticSource, load_real_clips, validation_batch
    from theris_cli.train.degrade import SensorRanges
    from theris_cli.train.synthetic import SceneConfig

    hr_frames, hr_patch = s.hr_frames, 4 * s.patch
    real = None
    if data_paths:
        real = RealSource(load_real_clips(data_paths, hr_frames, min_side=16, max_frames=max_frames,
                                          exclude=exclude, on_skip=on_skip), hr_frames, motion_crops=s.motion_crops)
    ratio = s.synthetic_ratio if real is not None else 1.0  # nothing real to mix in
    if scene is None:
        scene = SceneConfig(fast_p=s.motion_p)
    synthetic = None
    if ratio > 0 or not val_paths:
        # about one new clip for every four synthetic crops trained on, rendered eight at a time
        per_step = max(1.0, ratio * s.batch)
        synthetic = SyntheticSource(hr_frames, hr_patch, seed=s.seed, pool=max(64, 8 * s.batch), chunk=8,
                                    every=max(1, round(32 / per_step)), config=scene)
    mixer = ClipMixer(real, synthetic, ratio, hr_frames, hr_patch, seed=s.seed, extras_p=s.extras_p,
                      sensor_p=s.sensor_p, sensor=SensorRanges.from_dict(s.sensor_ranges))
    val_real = None
    if val_paths:
        val_real = RealSource(load_real_clips(val_paths, hr_frames, min_side=16, max_frames=max_frames,
                                              on_skip=on_skip), hr_frames)
    val_src = val_real if val_real is not None else real
    val = validation_batch(val_src, synthetic, n_real=n_val if val_src is not None else 0,
                           n_synthetic=n_val if synthetic is not None else 0, frames=hr_frames, patch=hr_patch,
                           seed=s.seed)
    desc = {
        "real": [_describe(c) for c in (real.clips if real else [])],
        "validation": [_describe(c) for c in (val_real.clips if val_real else [])],
        "split": split,
        "paths": [str(p) for p in data_paths], "exclude": list(exclude), "val_paths": [str(p) for p in val_paths],
        "val_held_out": bool(val_paths), "synthetic_ratio": ratio, "synthetic": "theris_cli.train.synthetic",
        "synthetic_fast_p": scene.fast_p, "motion_crops": s.motion_crops,
        "degradation": "antialiased bicubic x1/4 of HR frames 0, 2, 4, ... (protocol.make_lr)"
                       + (f"; extras on {s.extras_p:.0%} of clips" if s.extras_p else "")
                       + (f"; sensor degradation (train.degrade.SensorRanges) on {s.sensor_p:.0%} of clips"
                          if s.sensor_p else ""),
    }
    return dataclasses.replace(s, synthetic_ratio=ratio, data=desc), mixer, val


def _describe(c) -> dict:
    return {"name": c.name, "frames": int(c.frames.shape[0]), "width": int(c.frames.shape[2]),
            "height": int(c.frames.shape[1]), "bit_depth": c.frames.dtype.itemsize * 8}
