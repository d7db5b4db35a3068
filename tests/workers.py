"""Waiting in tests for other processes and threads: real workers stopped mid-file (kill -9,
SIGTERM, SIGHUP), and background threads (a lock's heartbeat)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# A cap, not the expected time: the wait ends as soon as the file appears or the worker exits. With a
# fixed 30 s wait, the signal test once failed on a heavily loaded 2-core machine.
WORKER_STARTUP_CAP = 300.0


def start_worker(script: str, log: Path) -> subprocess.Popen:
    """`python -c script` in a new process, its stderr written to ``log``."""
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-c", script], stderr=err)


def wait_until_written(worker: subprocess.Popen, folder: Path, pattern: str, log: Path) -> list[Path]:
    """Wait until a file matching ``pattern`` exists in ``folder``; fail with the worker's stderr if it
    exits first (or the cap passes). Returns the matches."""
    deadline = time.monotonic() + WORKER_STARTUP_CAP
    while not (found := list(folder.glob(pattern))) and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not found:
        found = list(folder.glob(pattern))
    if not found:
        worker.kill()
        worker.wait()
        pytest.fail(f"the worker never wrote {pattern} (exit {worker.returncode}): {log.read_text()[-2000:]}")
    return found


def eventually(condition, cap: float = 30.0) -> bool:
    """Whether ``condition()`` becomes true within ``cap`` seconds (checked every 10 ms): for what a
    background thread does soon, which a fixed sleep can miss on a loaded machine."""
    deadline = time.monotonic() + cap
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
