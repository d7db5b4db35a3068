"""Training batches in step order, built by worker processes ahead of the training step.

A run's batch depends on (seed, step) alone (`dataset.ClipMixer.batch`), so any process can build
any step's batch: with ``workers`` > 0 a torch DataLoader hands step i to worker i mod workers
(each with its own copy of the sources), keeps ``prefetch`` batches per worker ready, and, for a
CUDA run, copies them into pinned memory so that the loop's ``.to(device, non_blocking=True)`` is
an asynchronous copy. The batches are the same as those built in the loop, in the same order.

    for step, (lr, hr) in enumerate(step_batches(mixer, 8, start, steps, workers=4, pin=True), start): ...
"""

from __future__ import annotations

import signal
from typing import Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset


class BatchSource(Protocol):
    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class _Steps(Dataset):
    """Item i: the batch of step start + i."""

    def __init__(self, data: BatchSource, batch_size: int, start: int, stop: int):
        self.data, self.batch_size, self.start, self.stop = data, batch_size, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.batch(self.start + i, self.batch_size)


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def worker_init(_: int = 0) -> None:
    """Set up a worker: one thread (it builds one batch at a time beside the training process, whose
    thread pool it would otherwise slow down), and deaf to the stop signals. Ctrl-C and a
    scheduler's SIGTERM reach the whole process group; the training process finishes its step and
    saves (`loop._StopFlag`), and then shuts its workers down itself. A worker killed by the signal
    instead would make the DataLoader raise in the middle of that step."""
    torch.set_num_threads(1)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def step_batches(data: BatchSource, batch_size: int, start: int, stop: int, *, workers: int = 0,
                 pin: bool = False, prefetch: int = 2) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(lr, hr) of steps start, start + 1, ..., stop - 1 from ``data.batch(step, batch_size)``.

    workers 0: built in this process when asked for (``pin`` still applies). workers > 0: built
    by that many processes, ``prefetch`` batches each ahead; ``pin``: in pinned (page-locked)
    memory, for asynchronous copies to a GPU."""
    if workers <= 0:
        for step in range(start, stop):
            lr, hr = data.batch(step, batch_size)
            yield (lr.pin_memory(), hr.pin_memory()) if pin else (lr, hr)
        return
    loader = DataLoader(
        _Steps(data, batch_size, start, stop), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin, prefetch_factor=prefetch, persistent_workers=False, worker_init_fn=worker_init,
    )
    yield from loader
