"""Atomic outputs: write under a temporary name beside the target, rename when complete.

    with atomic_output("out.mp4", overwrite=False, src="in.mp4") as tmp:   # tmp: out.theris-partial-1a2b3c.mp4
        write_video(tmp)
    # out.mp4 now exists, complete; on any error or Ctrl-C inside the block, tmp is removed and out.mp4
    # (if it existed) is untouched

The temporary file keeps the target's extension, so writers that pick the container from the
extension behave as for the target. It lives in the target's folder, so the final rename is an atomic
``os.replace`` on one file system. Only a hard kill (SIGKILL, power loss) can leave a
``*.theris-partial-*`` file behind; it is safe to delete, and the next run writing the same output
deletes it (the writer holds a lock on its partial file, so a run still at work keeps its own).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from theris_cli.errors import OutputError

PARTIAL_MARK = ".theris-partial-"  # in every temporary name, so that leftovers are easy to find
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_WRITE_ERRNOS = _DISK_FULL | _DENIED  # OS errors inside the block that can only be about the output


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name the same file (also through links and ``..``)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_destination(dst: str | Path, *, overwrite: bool = False, src: str | Path | None = None) -> Path:
    """Refuse a destination that cannot or must not be written, before any work is done."""
    dst = Path(dst)
    if src is not None and same_file(src, dst):
        raise OutputError(f"the output {dst} is the input; choose another output name")
    if dst.is_dir():
        raise OutputError(f"the output {dst} is a folder; give a file name such as {dst / 'out.mkv'}")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst} already exists; pass --overwrite to replace it, or choose another name")
    parent = dst.parent
    if not parent.exists():
        raise OutputError(f"the output folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(f"cannot write {dst}: {parent} is not a folder")
    if _read_only(parent):
        raise OutputError(f"cannot write to the folder {parent}: read-only file system; choose another output",
                          errno=errno.EROFS)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to the folder {parent} (permission denied); choose another output")
    return dst


def _read_only(folder: Path) -> bool:
    """The folder lies on a file system mounted read-only (os.access says 'denied' for that too)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will say
        return False


def partial_name(dst: Path) -> Path:
    """A fresh temporary name beside ``dst`` with the same extension."""
    return dst.with_name(f"{dst.stem}{PARTIAL_MARK}{secrets.token_hex(3)}{dst.suffix}")


def output_error(e: BaseException, dst: str | Path, what: str | None = None) -> OutputError:
    """One line for an OS error met while writing ``dst`` (``what``: which step, e.g. "frame 12"),
    the same wording for every writer: the pipeline, the video encoder, reports and checkpoints.
    The errno is kept on the error: a batch stops on a full or read-only disk."""
    code = getattr(e, "errno", None)
    where = f"{dst} ({what})" if what else f"{dst}"
    reason = (getattr(e, "strerror", None) or str(e)).strip().rstrip(".")
    if code in _DISK_FULL:
        return OutputError(f"disk full while writing {where}; free some space (or choose another disk) and retry", errno=code)
    if code == errno.EROFS:
        return OutputError(f"cannot write {where}: read-only file system; choose another output folder", errno=code)
    if code in _DENIED or isinstance(e, PermissionError):
        return OutputError(f"cannot write {where}: {reason.lower()}; choose another output", errno=code)
    return OutputError(f"cannot write {where}: {reason}", errno=code)


def stops_everything(e: BaseException) -> bool:
    """A write failed because the whole file system cannot take more (full, quota, read-only)."""
    return isinstance(e, OutputError) and e.errno in _DISK_FULL | {errno.EROFS}


@contextmanager
def atomic_output(dst: str | Path, *, overwrite: bool = False, src: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it to ``dst`` if the block completes.

    On any exception (KeyboardInterrupt included) the temporary file is removed and the exception
    goes on; an OSError for a full disk or a denied write becomes a one-line OutputError (other
    errors keep their type: the block reads the input too).
    """
    dst = check_destination(dst, overwrite=overwrite, src=src)
    remove_dead_partials(dst)
    tmp = partial_name(dst)
    try:
        # Claim the name now: proves the folder is writable and keeps another run from taking it.
        # The lock on it lasts as long as this process works on it: a later run removes the file
        # only once nobody holds it (its writer was killed), see remove_dead_partials.
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise output_error(e, dst) from None
    _try_lock(fd)
    try:
        yield tmp
        if dst.exists() and not overwrite:  # appeared while we worked: still never touched
            raise OutputError(f"{dst} appeared while writing; pass --overwrite to replace it")
        try:
            os.replace(tmp, dst)
        except OSError as e:  # only about the output, whatever the errno (EIO too)
            raise output_error(e, dst) from e
    except OSError as e:
        _remove(tmp)
        if e.errno in _WRITE_ERRNOS:
            raise output_error(e, dst) from e
        raise
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, KeyboardInterrupt):
            removed_on_interrupt.append(dst)
        raise
    finally:
        os.close(fd)


removed_on_interrupt: list[Path] = []  # outputs whose partial file Ctrl-C (or SIGTERM) removed: for the CLI's message


def _try_lock(fd: int) -> bool:
    """An exclusive lock on the open file `fd` (released when the process ends, however it ends);
    False when it is held elsewhere or this system has no such locks."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (ImportError, OSError):
        return False


def remove_dead_partials(dst: Path) -> list[Path]:
    """Remove the partial files of `dst` that no living writer holds (left by a kill -9 or a
    power loss); partial files of a run still writing `dst` are locked, and kept."""
    pattern = re.compile(re.escape(dst.stem + PARTIAL_MARK) + r"[0-9a-f]+" + re.escape(dst.suffix))
    gone = []
    try:
        names = [n for n in os.listdir(dst.parent) if pattern.fullmatch(n)]
    except OSError:
        return gone
    for name in names:
        path = dst.parent / name
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                path.unlink(missing_ok=True)
                gone.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return gone


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
