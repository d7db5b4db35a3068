"""Find the inputs of a batch: videos and image-sequence folders under IN_DIR, and where each goes.

Pure file-system reading: nothing here writes. The list is sorted by relative path so that every
worker of a cluster job sees the same list in the same order, and each output name depends only on
the input folder's contents and the outputs already done (not on --include/--exclude), so
filtering never renames an output.

Output names: `site/clip.mp4` -> `site/clip.mkv` (the output extension in place of the input's; a
sequence folder `site/seq/` -> `site/seq.mkv`). Inputs that would share a name (`clip.mkv` and
`clip.mp4`) keep their own extension in it instead: `clip.mkv.mkv`, `clip.mp4.mkv`. An output
once done keeps its name for as long as its input is there: an input added later that would share
it takes the longer name (`clip.mp4.mkv` beside a finished `clip.mkv`), so nothing done is redone
or orphaned, and removing an input never renames another's output.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Sequence

from theris_cli.batch.paths import inside
from theris_cli.errors import UsageError
from theris_cli.video.inputs import walk_inputs

STATE_DIR = ".theris"  # batch bookkeeping inside OUT_DIR (records, locks, reports)



@dataclass(frozen=True)
class Job:
    """One input of the batch and the output it becomes."""

    rel: PurePosixPath  # the input relative to IN_DIR: a file, or the folder of a sequence
    src: Path  # what the pipeline reads: the file, or a printf pattern such as seq/frame_%05d.png
    dst_rel: PurePosixPath  # the output relative to OUT_DIR
    kind: str  # "video" | "images"
    frames: tuple[Path, ...] = field(default=(), repr=False, compare=False)  # a sequence's files, sorted
    start_number: int = 0  # a sequence's first frame number
    problem: str = ""  # why this input cannot be read as it is (the batch reports it as failed)

    @property
    def name(self) -> str:
        """The input as the user knows it, for messages and the report."""
        return str(self.rel) + ("/" if self.kind == "images" else "")


# --- include / exclude globs -------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob into a regex over '/'-separated paths: `*` and `?` stay inside one folder
    name, `**` crosses folders, `[...]` is a character class."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 2 :]:
            j = pattern.index("]", i + 2)
            body = pattern[i + 1 : j]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


class PathFilter:
    """--include / --exclude, relative to IN_DIR.

    A pattern without '/' matches any single name at any depth (`*.mp4`, `calibration`); a pattern
    with '/' matches a path from IN_DIR (`site1/**/*.mkv`, `site2/day3`). A pattern that matches a
    folder covers everything inside it. With includes, an input must match one of them; an input
    matching any exclude is dropped (exclude wins).
    """

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()):
        self.include = [self._compile(p, "--include") for p in include]
        self.exclude = [self._compile(p, "--exclude") for p in exclude]

    @staticmethod
    def _compile(pattern: str, flag: str) -> tuple[bool, re.Pattern[str]]:
        p = pattern.strip()
        while p.startswith("./"):
            p = p[2:]
        p = p.rstrip("/")
        if not p or p.startswith("/") or ".." in p.split("/"):
            raise UsageError(f"{flag} {pattern!r}: give a glob relative to IN_DIR, such as '*.mp4' or 'site1/**'")
        return ("/" in p, _glob_regex(p))

    @staticmethod
    def _hit(patterns: list[tuple[bool, re.Pattern[str]]], rel: PurePosixPath) -> bool:
        parts = rel.parts
        for has_slash, rx in patterns:
            if has_slash:
                if any(rx.fullmatch("/".join(parts[: k + 1])) for k in range(len(parts))):
                    return True
            elif any(rx.fullmatch(part) for part in parts):
                return True
        return False

    def excluded(self, rel: PurePosixPath) -> bool:
        return self._hit(self.exclude, rel)

    def selects(self, rel: PurePosixPath) -> bool:
        return (not self.include or self._hit(self.include, rel)) and not self.excluded(rel)


# --- roots and discovery -----------------------------------------------------------------------


def check_roots(in_dir: Path | str, out_dir: Path | str) -> tuple[Path, Path]:
    """Resolve IN_DIR and OUT_DIR (symlinks followed) and refuse layouts that could overwrite inputs."""
    in_root = Path(in_dir).expanduser()
    if not in_root.is_dir():
        what = "does not exist" if not in_root.exists() else "is not a folder"
        raise UsageError(f"IN_DIR {in_dir} {what}; give the folder that holds the recordings")
    in_root = in_root.resolve()
    out_root = Path(out_dir).expanduser().resolve()
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"OUT_DIR {out_dir} is a file; give a folder (it is created if missing)")
    if out_root == in_root:
        raise UsageError("IN_DIR and OUT_DIR are the same folder; give a separate OUT_DIR so inputs are never overwritten")
    if inside(in_root, out_root):
        raise UsageError(f"IN_DIR {in_root} lies inside OUT_DIR {out_root}; outputs could land on inputs, choose another OUT_DIR")
    return in_root, out_root


def _output_name(rel: PurePosixPath, kind: str, ext: str) -> PurePosixPath:
    if kind == "video":
        suffix = rel.suffix if ext == "same" else "." + ext
        return rel.with_suffix(suffix)
    return rel.with_name(rel.name + "." + ("mkv" if ext == "same" else ext))


def _long_name(job: Job, plain: PurePosixPath, ext: str) -> PurePosixPath:
    """The name that keeps the input's own extension: clip.mp4 -> clip.mp4.mkv, seq/ -> seq.png.mkv."""
    tail = job.rel.name if job.kind == "video" else job.rel.name + (job.frames[0].suffix.lower() if job.frames else "")
    return plain.with_name(tail + "." + (ext if ext != "same" else job.rel.suffix[1:] or "mkv"))


def done_outputs(out_root: Path) -> dict[str, str]:
    """Input -> output (relative paths) of every completion record under OUT_DIR/.theris/done."""
    pinned = {}
    done = out_root / STATE_DIR / "done"
    for rec in sorted(done.rglob("*.json")) if done.is_dir() else ():
        try:
            d = json.loads(rec.read_text())
            if isinstance(d, dict) and isinstance(d.get("input"), str) and isinstance(d.get("output"), str):
                pinned[d["input"]] = d["output"]
        except (OSError, ValueError):
            continue  # an unreadable record proves nothing: that output is simply not done
    return pinned


def _name_outputs(jobs: list[Job], ext: str, pinned: dict[str, str] | None = None) -> list[Job]:
    """Give every input its output path, over all inputs before filtering, so that names never depend
    on --include/--exclude. Inputs that would share a name (clip.mp4 and clip.avi -> clip.mkv; a
    sequence folder clip/ and clip.mp4 beside it; compared case-insensitively for macOS and Windows
    disks) keep their own extension in it instead (clip.mp4.mkv, clip.avi.mkv, clip.png.mkv).
    `pinned` (input -> output of finished work) wins: a done output keeps its name, and a newer
    input that would share it takes the long name (see the module doc)."""
    pinned = pinned or {}
    named = []
    for j in jobs:
        plain = _output_name(j.rel, j.kind, ext)
        pin = pinned.get(j.rel.as_posix())
        # a record under the current extension's naming pins; one from other settings does not
        keep = PurePosixPath(pin) if pin in (plain.as_posix(), _long_name(j, plain, ext).as_posix()) else None
        named.append((j, plain, keep))
    taken = {str(keep).lower() for _, _, keep in named if keep is not None}
    counts = Counter(str(plain).lower() for _, plain, keep in named if keep is None)
    out = []
    for job, name, keep in named:
        if keep is not None:
            name = keep
        elif counts[str(name).lower()] > 1 or str(name).lower() in taken:
            name = _long_name(job, name, ext)
        out.append(replace(job, dst_rel=name))
    # Still shared after that (an input literally named clip.mp4.mkv beside the above): report both.
    counts = Counter(str(j.dst_rel).lower() for j in out)
    return [
        replace(j, problem=f"its output name {j.dst_rel} is also another input's; rename one of them")
        if counts[str(j.dst_rel).lower()] > 1 else j
        for j in out
    ]


def discover(
    in_root: Path,
    out_root: Path,
    *,
    ext: str = "mkv",
    path_filter: PathFilter | None = None,
) -> list[Job]:
    """Every input under `in_root` (already resolved, see check_roots), sorted by relative path.

    Found by `video.inputs.walk_inputs` (its rules: hidden files and symlinked folders skipped, ...),
    leaving out anything that resolves inside OUT_DIR, so an OUT_DIR inside IN_DIR never feeds the
    batch its own outputs. Excluded folders are walked all the same: naming needs every input,
    and the completion records already in OUT_DIR (see the module doc).
    """
    path_filter = path_filter or PathFilter()
    found = walk_inputs(in_root, skip=lambda p: inside(p.resolve(), out_root))
    jobs = [
        Job(rel=i.rel, src=i.src, dst_rel=PurePosixPath(), kind=i.kind, frames=i.frames,
            start_number=i.start_number, problem=i.problem)
        for i in found
    ]
    jobs = _name_outputs(jobs, ext, done_outputs(out_root))
    jobs = [j for j in jobs if path_filter.selects(j.rel)]
    jobs.sort(key=lambda j: j.rel.as_posix())
    return jobs
