"""Training batches: random crops of real videos and synthetic clips, mixed at a given ratio.

    real = RealSource(load_real_clips(["videos/"]), frames=7)
    synth = SyntheticSource(frames=7, size=128, seed=0)
    data = ClipMixer(real, synth, synthetic_ratio=0.5, frames=7, patch=128, seed=0)
    lr, hr = data.batch(step, 8)    # (8, 4, 1, 32, 32), (8, 7, 1, 128, 128) float32 in [0, 1]

* **Real clips**: every video under the folders (or the files) given, decoded once with the project's
  own `read_frames` and mapped to [0, 1] by `scan_levels(path).to_unit`, exactly as at inference.
  Frames are cached in memory as their raw uint8/uint16 (a 14-bit clip of 300 frames of 160x120 is
  11 MB); at most `max_frames` per video (its first frames) to bound memory on long recordings.
  Clips are drawn with probability proportional to sqrt(frames) x pixels^(1/4): distinct moments
  count for more than area (an 8-frame 1024x768 still has only two windows in time), and no long
  video drowns the others.
* **Synthetic clips** (`synthetic.SyntheticThermal`) come from a pool, rendered a little larger
  than the patch so that crops move around in them; every few steps a chunk of new clips replaces
  the oldest. Which clips the pool holds depends only on the step, so a resumed run sees the
  very same batches as an uninterrupted one.
* **Crops**: 2k+1 consecutive HR frames at the patch size (HR pixels, a multiple of 4), with random
  horizontal and vertical flips, 90-degree rotations and time reversal. A batch with a real clip
  smaller than the patch (a 120x160 Lepton against a 128 patch) uses the largest square crop that
  every clip of the batch has (a multiple of 4), rather than padding with invented pixels.
* **Inputs**: `protocol.make_lr` (the evaluation protocol), plus `degrade.apply_extras` on a fraction
  `extras_p` of the clips (off by default: the default weights are scored on the clean protocol),
  and `degrade.apply_sensor` (a thermal sensor's noise, fixed pattern, flicker and compression) on a
  fraction `sensor_p`.

Every random choice of step s comes from a generator seeded by (seed, s): batches are reproducible
and independent of how the run was split into sessions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from theris_cli.errors import InputError, TrainingError
from theris_cli.protocol import motion_mask
from theris_cli.protocol import SCALE, make_lr
from theris_cli.train.degrade import Extras, SensorRanges, apply_extras, apply_sensor
from theris_cli.train.synthetic import SceneConfig, SyntheticThermal, clip_seed

VAL_INDEX = 1 << 40  # synthetic clip indices from here on are never trained on (validation)


# ---------------------------------------------------------------------------------------------
# Real videos


@dataclass
class RealClip:
    """One decoded video: raw frames (N, H, W) uint8/uint16 and the levels that map them to [0, 1]."""

    path: Path
    frames: np.ndarray
    levels: object  # theris_cli.video.Levels

    @property
    def name(self) -> str:
        """The file's name; for an image sequence (a printf pattern), its folder's, as the batch names it."""
        return self.path.parent.name if "%" in self.path.name else self.path.name

    def unit(self, t0: int, t1: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """Frames t0..t1-1 of the window, as (T, 1, h, w) float32 on the unit range."""
        return torch.from_numpy(self.levels.to_unit(self.frames[t0:t1, y0:y1, x0:x1]))[:, None]


def find_videos(paths: Sequence[str | os.PathLike], exclude: Sequence[str] = ()) -> list[Path]:
    """The clips named by `paths`: video files and image patterns (frames/%05d.png) as given;
    folders, searched for videos and numbered image sequences by the same rules as `theris batch`
    (`video.inputs.walk_inputs`); and list files (`.txt`: one path a line, relative to the list's
    folder; blank lines and `#` comments skipped).

    `exclude`: glob patterns matched against each clip's name and its full path (e.g. "*possum*").
    """
    from theris_cli.video.inputs import walk_inputs

    found: list[Path] = []

    def add(p: Path, origin: str) -> None:
        if p.is_dir():
            for i in walk_inputs(p):
                if i.problem:
                    raise TrainingError(f"{origin} {p}/{i.problem}")
                found.append(i.src)
        elif p.is_file() and p.suffix.lower() == ".txt":
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    q = Path(line).expanduser()
                    add(q if q.is_absolute() else p.parent / q, f"{p}:{n}")
        elif p.is_file() or "%" in p.name:
            found.append(p)
        else:
            raise TrainingError(f"{origin} {p}: no such file or folder; pass videos, folders of videos or of "
                                "numbered frames, or a .txt list of them")

    for p in map(Path, paths):
        add(p, "--data")
    kept = [f for f in found if not any(fnmatch(f.name, pat) or fnmatch(str(f), pat) for pat in exclude)]
    return list(dict.fromkeys(kept))  # keep order, drop repeats


def load_real_clips(paths: Sequence[str | os.PathLike], min_frames: int, min_side: int = 16,
                    max_frames: int = 1000, exclude: Sequence[str] = (), on_skip=None) -> list[RealClip]:
    """Decode the videos under `paths` into memory. Raises TrainingError if none is usable.

    A video shorter than `min_frames` or smaller than `min_side` pixels is skipped and named through
    `on_skip(path, reason)` (the CLI prints it); an unreadable one raises (InputError names it).
    """
    from theris_cli.video import read_frames, scan_levels

    files = find_videos(paths, exclude)
    if not files:
        raise TrainingError(f"no videos found in {', '.join(map(str, paths))}; pass video files or folders of videos")
    clips = []
    for f in files:
        levels = scan_levels(f)
        frames = []
        for raw in read_frames(f):
            frames.append(raw)
            if len(frames) >= max_frames:
                break
        h, w = frames[0].shape
        if len(frames) < min_frames:
            reason = f"{len(frames)} frames, training needs {min_frames}"
        elif min(h, w) < min_side:
            reason = f"{w}x{h} pixels, training needs at least {min_side} on each side"
        else:
            clips.append(RealClip(f, np.stack(frames), levels))
            continue
        if on_skip is not None:
            on_skip(f, reason)
    if not clips:
        raise TrainingError(f"none of the {len(files)} videos is long and large enough to train on "
                            f"({min_frames} frames, {min_side}x{min_side} pixels)")
    return clips


class RealSource:
    """Random windows of 2k+1 consecutive frames from cached real clips."""

    def __init__(self, clips: Sequence[RealClip], frames: int, motion_crops: float = 0.0, candidates: int = 4):
        usable = [c for c in clips if c.frames.shape[0] >= frames]
        if not usable:
            raise InputError(f"no real clip has the {frames} frames a training window needs")
        if not 0.0 <= motion_crops <= 1.0 or candidates < 1:
            raise ValueError(f"need motion_crops in [0, 1] and candidates >= 1, got {motion_crops}, {candidates}")
        self.clips, self.frames = usable, frames
        self.motion_crops, self.candidates = motion_crops, candidates
        n = torch.tensor([math.sqrt(c.frames.shape[0]) * (c.frames.shape[1] * c.frames.shape[2]) ** 0.25 for c in usable])
        self.weights = n / n.sum()

    def pick(self, gen: torch.Generator) -> RealClip:
        return self.clips[int(torch.multinomial(self.weights, 1, generator=gen))]

    @staticmethod
    def side(clip: RealClip) -> int:
        """The largest square crop this clip allows, a multiple of SCALE."""
        return min(clip.frames.shape[1:]) // SCALE * SCALE

    def crop(self, clip: RealClip, gen: torch.Generator, size: int) -> torch.Tensor:
        """A random (2k+1, 1, size, size) window of `clip`, unit range.

        With probability `motion_crops`, the window with the most moving pixels (`moving_fraction`)
        of `candidates` random ones: moving pixels are a few percent of most thermal footage (static
        trail cameras), and the new frames are only hard where something moves."""
        n, h, w = clip.frames.shape
        tries = 1
        if self.motion_crops > 0 and float(torch.rand((), generator=gen)) < self.motion_crops:
            tries = self.candidates
        best, best_score = None, -1.0
        for _ in range(tries):
            t0 = int(torch.randint(0, n - self.frames + 1, (), generator=gen))
            y0 = int(torch.randint(0, h - size + 1, (), generator=gen))
            x0 = int(torch.randint(0, w - size + 1, (), generator=gen))
            x = clip.unit(t0, t0 + self.frames, y0, y0 + size, x0, x0 + size)
            score = moving_fraction(x) if tries > 1 else 0.0
            if score > best_score:
                best, best_score = x, score
        return best

    def describe(self) -> str:
        return ", ".join(f"{c.name} ({c.frames.shape[0]}x{c.frames.shape[2]}x{c.frames.shape[1]}, "
                         f"{c.frames.dtype.itemsize * 8}-bit)" for c in self.clips)


def moving_fraction(clip: torch.Tensor) -> float:
    """Fraction of the pixels of the in-between frames of `clip` (T, 1, H, W), T odd, that move by
    the motion mask of `theris evaluate` (`protocol.motion_mask`, undilated)."""
    return float(motion_mask(clip, dilate=0).float().mean()) if clip.shape[0] >= 3 else 0.0


# ---------------------------------------------------------------------------------------------
# Synthetic clips


class SyntheticSource:
    """A sliding pool of `pool` synthetic clips, renewed `chunk` clips at a time every `every` steps
    (rendering several clips at once is much cheaper per clip than one by one).

    Before step s it holds clips c*chunk .. c*chunk+pool-1 with c = s // every: a function of the step
    alone, so a run resumed at any step has the same pool as one that got there step by step.
    """

    def __init__(self, frames: int, size: int, seed: int = 0, pool: int = 64, chunk: int = 8, every: int = 8,
                 margin: int = 32, config: SceneConfig | None = None):
        if chunk < 1 or every < 1 or pool < chunk:
            raise ValueError(f"need chunk >= 1, every >= 1 and pool >= chunk, got {chunk}, {every}, {pool}")
        self.gen = SyntheticThermal(frames, size + margin, size + margin, seed=seed, config=config)
        self.frames, self.size, self.pool_size = frames, size + margin, pool
        self.chunk, self.every = chunk, every
        self.pool: torch.Tensor | None = None
        self.cycle: int | None = None

    def advance(self, step: int) -> None:
        """Bring the pool to the state it has before `step`."""
        cycle = step // self.every
        if self.cycle == cycle:
            return
        first = cycle * self.chunk
        if self.pool is None or self.cycle is None or cycle != self.cycle + 1:
            clips = self.gen.batch(first, self.pool_size)
            self.pool = torch.empty_like(clips)
            self.pool[[(first + i) % self.pool_size for i in range(self.pool_size)]] = clips
        else:
            new = range(first + self.pool_size - self.chunk, first + self.pool_size)
            self.pool[[i % self.pool_size for i in new]] = self.gen.batch(new.start, self.chunk)
        self.cycle = cycle

    def crop(self, gen: torch.Generator, size: int) -> torch.Tensor:
        """A random (2k+1, 1, size, size) window of a random pooled clip."""
        assert self.pool is not None, "call advance(step) first"
        i = int(torch.randint(0, self.pool_size, (), generator=gen))
        y0 = int(torch.randint(0, self.size - size + 1, (), generator=gen))
        x0 = int(torch.randint(0, self.size - size + 1, (), generator=gen))
        return self.pool[i, :, :, y0:y0 + size, x0:x0 + size]

    def validation(self, n: int, size: int) -> torch.Tensor:
        """n held-out clips (never in any pool), cropped at the centre: (n, 2k+1, 1, size, size)."""
        clips = self.gen.batch(VAL_INDEX, n)
        o = (self.size - size) // 2
        return clips[..., o:o + size, o:o + size]


# ---------------------------------------------------------------------------------------------
# Augmentation and mixing


def augment(clip: torch.Tensor, gen: torch.Generator, reverse: bool = True) -> torch.Tensor:
    """Random flips, 90-degree rotation and time reversal of a square clip (T, C, S, S)."""
    u = torch.rand(4, generator=gen).tolist()
    k = int(torch.randint(0, 4, (), generator=gen))
    if u[0] < 0.5:
        clip = clip.flip(-1)
    if u[1] < 0.5:
        clip = clip.flip(-2)
    if k:
        clip = torch.rot90(clip, k, dims=(-2, -1))
    if reverse and u[2] < 0.5:
        clip = clip.flip(0)
    return clip


class ClipMixer:
    """Batches of (LR input, HR truth) from real and synthetic clips, reproducible per (seed, step)."""

    def __init__(self, real: RealSource | None, synthetic: SyntheticSource | None, synthetic_ratio: float,
                 frames: int, patch: int, seed: int = 0, extras_p: float = 0.0, extras: Extras = Extras(),
                 reverse: bool = True, sensor_p: float = 0.0, sensor: SensorRanges = SensorRanges()):
        if frames < 3 or frames % 2 == 0:
            raise ValueError(f"frames (2k+1 HR frames) must be odd and >= 3, got {frames}")
        if patch % SCALE:
            raise ValueError(f"patch (HR pixels) must be a multiple of {SCALE}, got {patch}")
        if not 0.0 <= synthetic_ratio <= 1.0:
            raise ValueError(f"synthetic_ratio must lie in [0, 1], got {synthetic_ratio}")
        if real is None and synthetic_ratio < 1.0:
            synthetic_ratio = 1.0 if synthetic is not None else synthetic_ratio
        if synthetic is None and synthetic_ratio > 0.0:
            raise ValueError("synthetic_ratio > 0 needs a synthetic source")
        if real is None and synthetic is None:
            raise ValueError("no data source")
        self.real, self.synthetic, self.ratio = real, synthetic, synthetic_ratio
        self.frames, self.patch, self.seed = frames, patch, seed
        self.extras_p, self.extras, self.reverse = extras_p, extras, reverse
        self.sensor_p, self.sensor = sensor_p, sensor

    def hr_batch(self, step: int, batch_size: int) -> torch.Tensor:
        """The HR truth of step `step`: (B, 2k+1, 1, S, S), S = patch or less (see module docstring)."""
        gen = torch.Generator().manual_seed(clip_seed(self.seed, step))
        n_syn = min(batch_size, int(math.floor(self.ratio * batch_size + float(torch.rand((), generator=gen)))))
        kinds = torch.randperm(batch_size, generator=gen) < n_syn  # which items are synthetic
        picks = [None if syn else self.real.pick(gen) for syn in kinds.tolist()]
        size = min([self.patch] + [RealSource.side(c) for c in picks if c is not None])
        if self.synthetic is not None and n_syn:
            self.synthetic.advance(step)
        items = []
        for clip in picks:
            x = self.synthetic.crop(gen, size) if clip is None else self.real.crop(clip, gen, size)
            items.append(augment(x, gen, self.reverse))
        return torch.stack(items)

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr (B, k+1, 1, S/4, S/4), hr (B, 2k+1, 1, S, S)) for step `step`."""
        hr = self.hr_batch(step, batch_size)
        lr = make_lr(hr)
        if self.extras_p > 0:
            gen = torch.Generator().manual_seed(clip_seed(self.seed ^ 0x5A5A5A5A, step))
            for i in range(lr.shape[0]):
                if float(torch.rand((), generator=gen)) < self.extras_p:
                    lr[i] = apply_extras(lr[i], gen, self.extras)
        if self.sensor_p > 0:  # a generator of its own: batches without it stay what they were
            gen = torch.Generator().manual_seed(clip_seed(self.seed ^ 0x5E45, step))
            for i in range(lr.shape[0]):
                if float(torch.rand((), generator=gen)) < self.sensor_p:
                    lr[i] = apply_sensor(lr[i], gen, self.sensor)
        return lr, hr


def validation_batch(real: RealSource | None, synthetic: SyntheticSource | None, n_real: int, n_synthetic: int,
                     frames: int, patch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch for watching training: `n_synthetic` held-out synthetic clips and `n_real` crops
    of `real` (pass a source of clips that are not trained on to make them held out), all cropped to
    one size (patch, or the smallest real clip's side). Returns (lr, hr) as `ClipMixer.batch` does,
    and the slices of the batch that are "synthetic" and "real"."""
    gen = torch.Generator().manual_seed(clip_seed(seed ^ 0x7E57, 0))
    items_real = []
    size = patch
    if real is not None and n_real:
        size = min([patch] + [RealSource.side(c) for c in real.clips])
        for i in range(n_real):
            items_real.append(real.crop(real.clips[i % len(real.clips)], gen, size))
    parts, groups = [], {}
    if synthetic is not None and n_synthetic:
        parts.append(synthetic.validation(n_synthetic, size))
        groups["synthetic"] = slice(0, n_synthetic)
    if items_real:
        n0 = sum(len(p) for p in parts)
        parts.append(torch.stack(items_real))
        groups["real"] = slice(n0, n0 + len(items_real))
    if not parts:
        raise ValueError("validation batch needs at least one clip")
    hr = torch.cat(parts)
    return make_lr(hr), hr, groups
