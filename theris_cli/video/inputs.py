"""Which files are inputs, and how a folder is searched: one set of rules for `upscale IN_DIR`,
`batch`, `evaluate` and `train`.

    walk_inputs(root)          every video and image sequence under a folder, sorted by relative path
    find_inputs(paths)         what a command's path arguments name: files and patterns as given,
                               folders searched with walk_inputs

Rules: videos by extension (VIDEO_EXTENSIONS, any case); a run of at least two numbered stills
(FRAME_EXTENSIONS) in one folder is one input, read through a printf pattern; hidden files and
folders (a leading '.', such as macOS '._' files) and symlinked folders are skipped (no cycles, no
surprises); symlinked files are read and named by the link.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from theris_cli.errors import InputError
from theris_cli.video.decode import IMAGE_EXTENSIONS, image_files

# Containers FFmpeg reads that cameras and recorders produce; matched case-insensitively.
VIDEO_EXTENSIONS = frozenset(
    "mkv mp4 avi mov m4v webm ts mts m2ts mpg mpeg wmv flv 3gp ogv mxf nut y4m asf".split()
)
# Still-image formats that carry 8- and 16-bit grey frames; a folder of numbered ones is one input.
# Not jpg: numbered JPEGs are usually separate camera stills (FLIR0001.jpg, ...), not a video.
FRAME_EXTENSIONS = frozenset("png tif tiff pgm".split())
_IMAGE_START_MAX = 4  # the video reader finds a %d pattern's first file among numbers 0..4 (FFmpeg's rule)
MIN_SEQUENCE_FRAMES = 2  # one numbered image is a picture, not a video

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)$")


def is_image_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of images: one image sequence (upscaled into one video), not a
    folder of videos (a batch). The rule is the video reader's (`decode.image_files`)."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        return bool(image_files(p))
    except InputError:
        return False


@dataclass(frozen=True)
class Input:
    """One input found under a folder."""

    rel: PurePosixPath  # relative to the folder searched: a file, or the folder of a sequence
    src: Path  # what the video reader reads: the file, or a printf pattern such as seq/frame_%05d.png
    kind: str  # "video" | "images"
    frames: tuple[Path, ...] = field(default=(), repr=False, compare=False)  # a sequence's files, sorted
    start_number: int = 0  # a sequence's first frame number
    problem: str = ""  # why this input cannot be read as it is


def walk_inputs(root: Path, skip: Callable[[Path], bool] | None = None) -> list[Input]:
    """Every input under ``root``, sorted by relative path (the same list on every machine).

    ``skip(path)``: also leave out folders and symlinked files for which it is true (the batch
    leaves out its OUT_DIR, so that outputs inside IN_DIR never become inputs).
    """
    skip = skip or (lambda p: False)
    found: list[Input] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        here_rel = PurePosixPath(here.relative_to(root).as_posix()) if here != root else PurePosixPath()
        dirnames[:] = [d for d in sorted(dirnames)  # os.walk descends only into these
                       if not (d.startswith(".") or (here / d).is_symlink() or skip(here / d))]
        visible = sorted(f for f in filenames if not f.startswith("."))
        inputs, used = _sequences(here_rel, here, visible, filenames)
        for f in visible:
            if f in used or f.rpartition(".")[2].lower() not in VIDEO_EXTENSIONS or "." not in f:
                continue
            path = here / f
            if path.is_symlink() and skip(path):
                continue
            inputs.append(Input(rel=here_rel / f, src=path, kind="video"))
        found.extend(inputs)
    found.sort(key=lambda i: i.rel.as_posix())
    return found


def find_inputs(paths: Sequence[str | os.PathLike], what: str = "input") -> list[Path]:
    """The inputs that command-line ``paths`` name, in order, without repeats: a file or an image
    pattern (frames/%05d.png) as given; a folder searched by walk_inputs. InputError for a missing
    path, a folder with no input, or an input that cannot be read as it is (the batch's reasons)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inputs = walk_inputs(p)
            if not inputs:
                raise InputError(f"{p}: no videos or numbered image sequences in this folder; pass a video or a "
                                 f"folder of {what}s")
            for i in inputs:
                if i.problem:
                    raise InputError(f"{p}/{i.problem}")
            found += [i.src for i in inputs]
        elif p.is_file() or "%" in p.name:
            found.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return list(dict.fromkeys(found))


def _sequences(
    folder_rel: PurePosixPath, folder: Path, names: Sequence[str], everything: Sequence[str]
) -> tuple[list[Input], set[str]]:
    """Group numbered still images of one folder (`names`: its visible files; `everything`: hidden
    ones too) into sequences; returns the inputs and the names used."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    all_images = [n for n in everything if "." in n and "." + n.rpartition(".")[2].lower() in IMAGE_EXTENSIONS]
    for name in names:
        stem, dot, ext = name.rpartition(".")
        m = _NUMBERED.match(stem) if dot else None
        if m and ext.lower() in FRAME_EXTENSIONS:
            groups[(m["prefix"], ext)].append((m["num"], name))
    jobs, used = [], set()
    seqs = {k: v for k, v in groups.items() if len(v) >= MIN_SEQUENCE_FRAMES}
    for (prefix, ext), members in sorted(seqs.items()):
        members.sort(key=lambda t: (int(t[0]), t[1]))
        names_here = [name for _, name in members]
        numbers = [int(num) for num, _ in members]
        label = prefix.strip("_-. ") or "frames"
        if len(seqs) == 1:  # the usual case: the folder is the clip
            rel = folder_rel if folder_rel.parts else PurePosixPath(label)
        else:
            rel = folder_rel / label
        # What the video reader gets: a printf pattern, which (as FFmpeg's image2) must start at 0..4,
        # have no gaps and spell every name; failing that, the folder itself when these are its only
        # images (read in natural order); failing both, frames would be silently dropped, so the
        # input is reported instead.
        problem = ""
        width = min(len(num) for num, _ in members)
        spec = next(
            (
                sp for sp in ((f"%0{width}d", "%d") if width > 1 else ("%d",))
                if all(name == f"{prefix}{sp % n}.{ext}" for n, name in zip(numbers, names_here))
            ),
            None,
        )
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        src = folder / f"{prefix.replace('%', '%%')}{spec or '%d'}.{ext}"
        if spec is None or numbers[0] > _IMAGE_START_MAX or not consecutive:
            if len(all_images) == len(members):
                src = folder
            else:
                problem = (
                    f"{rel}/: frames {names_here[0]}..{names_here[-1]} have gaps, mixed numbering or start above "
                    f"{_IMAGE_START_MAX}, and share their folder with other images; move them into a folder of their own"
                )
        jobs.append(
            Input(
                rel=rel,
                src=src,
                kind="images",
                frames=tuple(folder / name for name in names_here),
                start_number=numbers[0],
                problem=problem,
            )
        )
        used.update(names_here)
    return jobs, used
