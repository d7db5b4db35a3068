"""Where a batch may write: only inside OUT_DIR, never through a symlink that leads out of it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from theris_cli.errors import OutputError


def inside(path: Path, root: Path) -> bool:
    """`path` is `root` or below it (both already resolved)."""
    return path == root or root in path.parents


def safe_output_path(out_root: Path, rel: PurePosixPath | str, *, create_parents: bool = False) -> Path:
    """`out_root / rel`, refusing `..`, absolute paths and any symlink on the way that leads outside
    `out_root` (resolved). With `create_parents`, makes the missing folders, then checks again
    (the check is not proof against someone swapping folders for links while the batch runs)."""
    rel = PurePosixPath(rel)
    if rel.is_absolute() or not rel.parts or any(p in ("..", ".") for p in rel.parts):
        raise OutputError(f"refusing output path {str(rel)!r}: it must stay inside OUT_DIR")
    cur = out_root
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink() and not inside(cur.resolve(), out_root):
            raise OutputError(f"{cur} is a symlink to {cur.resolve()}, outside OUT_DIR; remove it or choose another OUT_DIR")
        if create_parents and not cur.exists():
            cur.mkdir(exist_ok=True)
    dst = cur / rel.parts[-1]
    if dst.is_symlink():
        raise OutputError(f"{dst} is a symlink; remove it so the output is written in OUT_DIR itself")
    if create_parents and not inside(dst.parent.resolve(), out_root):
        raise OutputError(f"{dst.parent} resolves outside OUT_DIR; remove the symlink on that path")
    return dst
