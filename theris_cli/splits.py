"""Named data splits: which real clips are held out for validation, as data in one place.

`theris train --split NAME` never trains on a split's validation clips (and validates on them);
`theris evaluate --split NAME` scores exactly them. Clips are named by file name, never by path:
they are found under the folders given on the command line, so the split means the same on every
machine. The model card records the split by name and lists its clips.

    paths = split_clips("v1", ["../shared/data"])        # the validation clips found there
    excluded = training_exclusions("v1")                 # globs `theris train` leaves out
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from theris_cli.errors import InputError, UsageError


@dataclass(frozen=True)
class HeldOut:
    name: str  # file name
    why: str  # what it stands for in the split
    motion: bool = False  # a clip with moving objects or camera (scored for the motion figures)


@dataclass(frozen=True)
class Split:
    name: str
    description: str
    validation: tuple[HeldOut, ...]
    also_excluded: tuple[str, ...] = ()  # globs never trained on though not scored (e.g. derived copies)

    def names(self, motion_only: bool = False) -> list[str]:
        return [c.name for c in self.validation if c.motion or not motion_only]


SPLITS: dict[str, Split] = {
    "v1": Split(
        name="v1",
        description="possum, horse and horse_h264 of ../ir/, and seven of the 19 clips of ../ir-train/ held out: "
                    "8-bit non-Lepton, Lepton 3.5 radiometric, Lepton 3 raw, walking people and moving animals",
        validation=(
            HeldOut("lepton_possum.mkv", "Lepton 3 raw 14-bit trail camera (the earlier validation clip)"),
            HeldOut("vottir_horse.mkv", "8-bit, panning camera, horse and rider", motion=True),
            HeldOut("vottir_horse_h264.mp4", "8-bit H.264 copy of horse's first 120 frames (lossy user recording)",
                    motion=True),
            HeldOut("tno-fel_natocamp.mkv", "8-bit non-Lepton (TNO FEL), walking person", motion=True),
            HeldOut("tno-fel_tree.mkv", "8-bit non-Lepton (TNO FEL), walking person among trees", motion=True),
            HeldOut("cacophony-cptvtools_a075-building.mkv", "Lepton 3.5 16-bit radiometric, high contrast, device "
                    "A075 (no other clip from it)"),
            HeldOut("cacophony-thermalrecorder_cat.mkv", "Lepton 3 raw 14-bit, cat moving fast", motion=True),
        ),
    ),
}
DEFAULT_SPLIT = "v1"


def get_split(name: str) -> Split:
    if name not in SPLITS:
        raise UsageError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
    return SPLITS[name]


def training_exclusions(name: str) -> list[str]:
    """Globs (file names) that training on split `name` must leave out."""
    s = get_split(name)
    return s.names() + list(s.also_excluded)


def split_clips(name: str, roots: Sequence[str | Path], motion_only: bool = False) -> list[Path]:
    """The validation clips of split `name`, found by name under `roots` (searched recursively), in
    the split's order. Raises InputError naming the clips that are missing."""
    s = get_split(name)
    if not roots:
        raise UsageError(f"split {name}: give the folder(s) that hold its clips")
    found: dict[str, Path] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise InputError(f"{root}: not a folder; --split looks for its clips in folders")
        for f in sorted(root.rglob("*")):
            if f.is_file():
                found.setdefault(f.name, f)
    wanted = s.names(motion_only)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise InputError(f"split {name}: {', '.join(missing)} not found under {', '.join(map(str, roots))}")
    return [found[n] for n in wanted]
