"""Cores shared by windows that run side by side on the CPU, and a core no window holds lent to
a window's independent work units.

On the CPU the upscaler runs one window per core, each at one thread (theris_cli.engine.infer).
When fewer windows than cores are left (a short clip's last window, a scene's end), a core would
stand idle; `for_each` lends it to the running window: the frames or bands of one loop (the
encoder's frames, TDIM's output frames, the spectral mask's frames, TMB and HMB's bands, the
decoder's frames, the motion's pairs) are taken one by one by the window's thread and by a helper
thread on the spare core. Each unit runs the same single-threaded operations on its own part of
the output, so the result is the same to the bit, however the units are shared. The helper stops
taking units as soon as a window waits for a core: windows come first.

    share = CoreShare(2)
    with share.window():              # in each window's thread
        for_each(n, run_unit)         # run_unit(0), ..., run_unit(n-1), on one or two cores

Outside a window of a `CoreShare` (one core, training, the GPU), `for_each` is a plain loop.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch

_local = threading.local()  # .share: the CoreShare of the window this thread runs, if any


def _one_thread() -> None:
    torch.set_num_threads(1)  # a helper's OpenMP team: itself (a setting of the calling thread)


class CoreShare:
    """``cores`` cores for windows side by side: a window holds one while it runs (`window`), and
    a window's loop borrows one that no window holds (`for_each`)."""

    def __init__(self, cores: int):
        if cores < 1:
            raise ValueError(f"need at least one core, got {cores}")
        self.cores = cores
        self._cond = threading.Condition()
        self._busy = 0  # cores held: by windows and by lent helpers
        self._waiting = 0  # windows waiting for a core
        self._helpers: Optional[ThreadPoolExecutor] = None
        self.lent = 0  # loops that got a spare core (for tests and benchmarks)

    @contextmanager
    def window(self) -> Iterator[None]:
        """Hold a core for the window run in this thread (waits while every core is busy)."""
        with self._cond:
            self._waiting += 1
            while self._busy >= self.cores:
                self._cond.wait()
            self._waiting -= 1
            self._busy += 1
        _local.share = self
        try:
            yield
        finally:
            _local.share = None
            self._release()

    def _borrow(self) -> bool:
        with self._cond:
            if self._busy >= self.cores or self._waiting:
                return False
            self._busy += 1
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(self.cores - 1, thread_name_prefix="theris-helper",
                                                   initializer=_one_thread)
            self.lent += 1
            return True

    def _release(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wanted(self) -> bool:
        """Whether a window waits for a core (a lent helper then stops taking units)."""
        return self._waiting > 0

    def close(self) -> None:
        """Stop the helper threads (after the last window)."""
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)
            self._helpers = None


def for_each(n: int, unit: Callable[[int], None]) -> None:
    """``unit(i)`` for i in 0..n-1, each writing its own part of the output: on this thread, and
    where this thread runs a window of a `CoreShare` with a core free, also on that core."""
    share: Optional[CoreShare] = getattr(_local, "share", None)
    if share is None or n < 2 or not share._borrow():
        for i in range(n):
            unit(i)
        return
    lock = threading.Lock()
    todo = iter(range(n))
    stop = [False]
    # autograd and autocast are settings of a thread: the helper runs under the caller's
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    autocast, lowp = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def take() -> Optional[int]:
        with lock:
            return None if stop[0] else next(todo, None)

    def helper() -> None:
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                    torch.autocast("cpu", dtype=lowp, enabled=autocast):
                while not share.wanted():
                    i = take()
                    if i is None:
                        return
                    unit(i)
        finally:
            share._release()

    try:
        done = share._helpers.submit(helper)
    except BaseException:
        share._release()
        raise
    try:
        while (i := take()) is not None:
            unit(i)
    except BaseException:
        stop[0] = True
        raise
    finally:
        done.result()
