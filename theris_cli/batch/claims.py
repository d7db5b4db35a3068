"""Per-file claims, so two workers on the same OUT_DIR never process the same file at once.

A claim is a lock file `OUT_DIR/.theris/locks/<key>.lock` created with O_CREAT|O_EXCL (atomic on
local disks and on NFSv3+), holding one JSON line: host, pid, the pid's start time (Linux), start
time and a random token. The holder removes it when the file is finished, failed or interrupted,
and touches it every `heartbeat` seconds while working, so its mtime says "still alive".

A lock is stale, and is taken over, when
  - its host is this host and its pid is dead, or alive but started at another time (pid reused);
  - its host is another host and it has not been touched for `stale_after` seconds;
  - it cannot be parsed (a writer died between create and write) and is older than a minute.
Taking over is atomic: rename the stale lock to a private name (only one contender's rename can
succeed), check the renamed file is the one judged stale (not a fresh lock created meanwhile,
which is then put back), delete it, and claim with O_EXCL again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from theris_cli.errors import OutputError

UNREADABLE_GRACE_S = 60.0  # a lock with no content for this long lost its writer mid-create
_HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in (...) may hold spaces
    return fields[19] if len(fields) > 19 else None  # field 22 of stat(5), counted after the name


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False
    return True


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its holder."""

    host: str
    pid: int
    pid_start: str | None
    started: float  # unix seconds
    token: str
    input: str = ""
    age_s: float = 0.0  # seconds since the holder last touched it, when read

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}, started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}"

    def to_json(self) -> bytes:
        d = {k: getattr(self, k) for k in ("host", "pid", "pid_start", "started", "token", "input")}
        return (json.dumps(d) + "\n").encode()


def lock_path(locks_dir: Path, output_rel: str) -> Path:
    """One lock per output: a hash for uniqueness, the file name for people listing the folder."""
    digest = hashlib.sha256(output_rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", output_rel.rsplit("/", 1)[-1])[:60]
    return locks_dir / f"{digest}-{readable}.lock"


def read_lock(path: Path) -> tuple[LockInfo | None, bytes, float] | None:
    """(info or None if unparseable, raw bytes, age in seconds), or None when there is no lock."""
    try:
        raw = path.read_bytes()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        d = json.loads(raw)
        info = LockInfo(
            host=str(d["host"]), pid=int(d["pid"]), pid_start=d.get("pid_start"),
            started=float(d["started"]), token=str(d["token"]), input=str(d.get("input", "")), age_s=age,
        )
    except (ValueError, KeyError, TypeError):
        info = None
    return info, raw, age


def is_stale(info: LockInfo | None, age: float, stale_after: float) -> bool:
    if info is None:
        return age > UNREADABLE_GRACE_S
    if info.host == _HOST:
        return not _pid_alive(info.pid, info.pid_start)
    return age > stale_after


class Claim:
    """A held lock: keeps it fresh from a background thread, removes it on release (idempotent)."""

    def __init__(self, path: Path, info: LockInfo, recovered: LockInfo | None, heartbeat: float):
        self.path, self.info = path, info
        self.recovered = recovered  # the dead holder whose lock this took over, if any
        self.lost = False  # set if someone else took the lock over (we were judged stale)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="theris-lock")
        self._thread.start()

    def _mine(self) -> bool:
        got = read_lock(self.path)
        return bool(got and got[0] and got[0].token == self.info.token)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self._mine():
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._mine():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _break_stale(path: Path, seen: bytes) -> bool:
    """Remove the stale lock whose content was `seen`; False if what we caught was a fresh lock."""
    grave = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return True  # another worker broke it first; try to claim
    try:
        if grave.read_bytes() == seen:
            return True
        # A new holder created the lock between our read and rename: give it back without
        # clobbering a lock that may have appeared since (link fails if the name exists).
        try:
            os.link(grave, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.rename(grave, path)
        return False
    finally:
        grave.unlink(missing_ok=True)


def try_claim(
    path: Path, *, input_name: str = "", stale_after: float = 600.0, heartbeat: float | None = None
) -> Claim | LockInfo | None:
    """Claim `path`. Returns a Claim, or the live holder's LockInfo (None if it could not be read).

    Raises OutputError (with the errno) when the lock cannot be written: no half-written lock is left.
    """
    try:
        return _try_claim(path, input_name=input_name, stale_after=stale_after, heartbeat=heartbeat)
    except OSError as e:
        raise OutputError(f"cannot write the lock {path}: {e.strerror or e}", errno=e.errno) from e


def _try_claim(path: Path, *, input_name: str, stale_after: float, heartbeat: float | None) -> Claim | LockInfo | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    heartbeat = heartbeat if heartbeat is not None else max(0.5, min(60.0, stale_after / 5))
    recovered: LockInfo | None = None
    holder: LockInfo | None = None
    for _ in range(5):  # a few rounds of break-and-retry; more means a crowd, leave the file to it
        info = LockInfo(_HOST, os.getpid(), _proc_start(os.getpid()), time.time(), uuid.uuid4().hex, input_name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            got = read_lock(path)
            if got is None:
                continue  # released meanwhile
            holder, raw, age = got
            if not is_stale(holder, age, stale_after) or not _break_stale(path, raw):
                return holder
            recovered = holder or recovered
            continue
        try:
            try:
                os.write(fd, info.to_json())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            path.unlink(missing_ok=True)  # ours, empty or half written: it would look held for a minute
            raise
        return Claim(path, info, recovered, heartbeat)
    return holder
