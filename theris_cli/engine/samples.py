"""Output frames from distinct samples, scene by scene: what the upscaler does with events.

    out = upscale_marked(up, ((frame, mark) for ...))   # marks from theris_cli.engine.events

The frames arrive with their marks. A run of repeats is one *sample* (the frame first seen); a
break (splice, shutter event) ends a *scene*. Windows of ``up.window`` samples run within a scene
only, so no output frame blends the two sides of a break; and the model sees each sensor frame
once, at its place in the sequence of samples, so motion between samples is interpolated instead
of frozen for the repeats and then jumping.

Time. Output frame ``m`` lies at file time ``t = m / factor`` (input-frame units), ``factor`` frames
per input frame as without events: the output keeps the file's timing. A scene's samples were first
seen at file frames ``p_0 < p_1 < ...``; ``t`` maps to the *sample time* ``s``:

- in a span ``p_k <= t < p_{k+1}`` of ``L`` file frames, the last ``min(L, MAX_SPAN)`` frames move
  linearly from sample ``k`` to ``k + 1``; earlier ones hold ``k`` (a long frozen feed is held,
  then moves on at the usual pace);
- from the scene's last sample to its end, ``s`` holds the last sample (the frozen run before a
  shutter event, the end of the video).

The model is asked for sample times in window-local units; the blend weights are the tent of
theris_cli.engine.windows.time_weight over sample times. Without repeats ``p_k = k`` and
``s = t``: windows, times, weights and the order of the sums are those of Upscaler.process, so the
output is the same to the bit.

Resume: ``skip`` output frames are not produced. Windows that only feed them are not run; the
others run exactly as in a full run (same samples, same times), so the frames from ``skip`` on are
the ones a full run writes.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Iterable, Iterator

import torch

from theris_cli.engine.events import BREAKS, REPEAT
from theris_cli.engine.windows import Window, frame_shape, local_times, plan_windows, time_weight

MAX_SPAN = 4  # file frames over which a sample moves to the next (recorders repeat a frame 2-3x)
_ADD_ROWS = 64  # output rows per step of `add_weighted`: its temporary is a band, not a frame


class _Scene:
    """Samples of one scene: file positions (all), frames (those later windows still need)."""

    def __init__(self, first: int):
        self.first = first  # file index of the scene's first frame
        self.pos: list[int] = []  # file index where each sample was first seen
        self.buf: dict[int, torch.Tensor] = {}
        self.start = 0  # sample index of the next regular window
        self.ran = 0  # windows run (a prefix of plan_windows(len(pos), window))

    def add(self, index: int, frame: torch.Tensor) -> None:
        self.buf[len(self.pos)] = frame
        self.pos.append(index)

    def sample_time(self, t: Fraction) -> Fraction:
        """Sample time of file time ``t`` (``t`` >= the scene's first frame; known samples only)."""
        k = bisect_right(self.pos, t) - 1
        if k >= len(self.pos) - 1:
            return Fraction(len(self.pos) - 1)  # held from the last sample on
        nxt = self.pos[k + 1]
        ramp = min(nxt - self.pos[k], MAX_SPAN)
        if t <= nxt - ramp:
            return Fraction(k)
        return k + (t - (nxt - ramp)) / ramp


def upscale_marked(up, frames: Iterable[tuple[torch.Tensor, str]], skip: int = 0) -> Iterator[torch.Tensor]:
    """Frames (C, h, w) with their marks in -> ``up.factor`` output frames (C, 4h, 4w) per input
    frame, float32 on the CPU, in output order from output frame ``skip`` on. ``up``: an Upscaler."""
    with up.pair_memo():  # a window's last pair of frames is the next one's first: its motion is kept
        yield from _Run(up, skip).process(frames)


class _Run:
    def __init__(self, up, skip: int):
        self.up, self.skip, self.factor = up, skip, up.factor
        self.num: dict[int, torch.Tensor] = {}
        self.den: dict[int, float] = {}
        self.next_out = 0
        # times per model call: as many as a regular window has (the memory plan is made for it),
        # at least one between two samples
        self.max_times = max(len(local_times(up.window, up.factor)), up.window + 1)

    def process(self, frames: Iterable[tuple[torch.Tensor, str]]) -> Iterator[torch.Tensor]:
        """Windows run ``up.workers`` at a time (CPU: one per core, each at one thread, as in
        Upscaler.process); their predictions are added and frames popped in window order, so the
        output is the same to the bit."""
        self.pending: deque = deque()  # (targets, future or None, pop limit or None), in window order
        self.busy = [0.0, 0.0]  # seconds with a window in flight; start of the current stretch
        self.pool = ThreadPoolExecutor(self.up.workers, thread_name_prefix="theris-window") if self.up.workers > 1 else None
        finished = False
        try:
            yield from self._process(frames)
            finished = True
        finally:
            if self.pool is not None:
                # on an error or Ctrl-C a running window is not waited for: the caller cleans up at once
                self.pool.shutdown(wait=finished, cancel_futures=not finished)
                self.up.model_seconds = self.busy[0]

    def _process(self, frames: Iterable[tuple[torch.Tensor, str]]) -> Iterator[torch.Tensor]:
        scene: _Scene | None = None
        shape = None
        n = 0
        for frame, mark in frames:
            shape = frame_shape(frame, shape, n)
            if scene is None or mark in BREAKS:
                if scene is not None:
                    yield from self._finish(scene, n)
                scene = _Scene(n)
                scene.add(n, frame)
            elif mark != REPEAT:
                scene.add(n, frame)
                yield from self._regular(scene)
            n += 1
        if scene is not None:
            yield from self._finish(scene, n)

    # -- windows -------------------------------------------------------------------------------

    def _regular(self, scene: _Scene) -> Iterator[torch.Tensor]:
        """Run the windows that are certainly not the scene's last (a later sample exists)."""
        W = self.up.window
        while scene.start + W < len(scene.pos):
            w = Window(scene.start, W)
            # outputs before sample w.start + 1 are final once this window is added: no later
            # window reaches back to them
            yield from self._window(scene, w, first=w.start == 0, last=False, end=None,
                                    limit=self.factor * scene.pos[w.start + 1])
            scene.ran += 1
            scene.start += self.up.stride
            for i in [i for i in scene.buf if i <= w.start]:  # later windows start after w.start
                del scene.buf[i]

    def _finish(self, scene: _Scene, end: int) -> Iterator[torch.Tensor]:
        """The scene's remaining windows (it ends before file frame ``end``) and all its outputs."""
        K = len(scene.pos)
        for w in plan_windows(K, self.up.window)[scene.ran:]:
            yield from self._window(scene, w, first=w.start == 0, last=w.end == K - 1, end=end, limit=None)
        while self.pending:
            yield from self._collect()
        yield from self._pop(self.factor * end)

    def _targets(self, scene: _Scene, w: Window, first: bool, last: bool, end: int | None) -> list[tuple[int, Fraction, float]]:
        """(output index, window-local sample time, weight > 0) of the outputs ``w`` predicts."""
        stop = self.factor * (end if w.end == len(scene.pos) - 1 else scene.pos[w.end + 1])
        out = []
        for m in range(self.factor * scene.pos[w.start], stop):
            s = scene.sample_time(Fraction(m, self.factor))
            if s > w.end:
                break
            tau = s - w.start
            weight = time_weight(float(tau), 1, w.length, first, last)
            if weight > 0:
                out.append((m, tau, weight))
        return out

    def _window(self, scene: _Scene, w: Window, first: bool, last: bool, end: int | None,
                limit: int | None) -> Iterator[torch.Tensor]:
        """Run window ``w`` (on a worker where there are several), then add every finished window's
        predictions in order and pop the frames before each one's ``limit``."""
        targets = self._targets(scene, w, first, last, end)
        future = None
        if targets and targets[-1][0] >= self.skip:  # else it feeds only frames already written
            x = torch.stack([scene.buf[i] for i in range(w.start, w.end + 1)])  # (T, C, h, w)
            taus = sorted({tau for _, tau, _ in targets})
            if self.pool is None:
                # outputs before this window's first are final: it and every later window predict
                # only later times (a window starts after the one before it). Handed on before the
                # model runs, they are written while it runs instead of waiting in the sums.
                yield from self._pop(targets[0][0])
                self._add(targets, self._predict(x, taus))
            else:
                self.up.choose_tile(x)  # before any worker reads it
                if not any(f is not None for _, f, _ in self.pending):
                    self.busy[1] = time.perf_counter()
                future = self.pool.submit(self._predict_one_thread, x, taus)
        if self.pool is None:
            if limit is not None:
                yield from self._pop(limit)
            return
        self.pending.append((targets, future, limit))
        while len(self.pending) >= self.up.workers or (self.pending and self.pending[0][1] is None):
            yield from self._collect()

    def _predict_one_thread(self, x: torch.Tensor, taus: list[Fraction]) -> dict[Fraction, torch.Tensor]:
        torch.set_num_threads(1)  # this worker's OpenMP team: itself (a setting of the calling thread)
        return self._predict(x, taus)

    def _collect(self) -> Iterator[torch.Tensor]:
        """Add the oldest pending window's predictions and pop the frames it finishes."""
        targets, future, limit = self.pending.popleft()
        if future is not None:
            preds = future.result()
            if not any(f is not None for _, f, _ in self.pending):
                self.busy[0] += time.perf_counter() - self.busy[1]
            self._add(targets, preds)
        if limit is not None:
            yield from self._pop(limit)

    def _add(self, targets: list[tuple[int, Fraction, float]], preds: dict[Fraction, torch.Tensor]) -> None:
        """A window's predictions into the running sums of its output frames.

        Every output frame has one sum of its own, made by its first prediction and added to in
        place; `_pop` divides it in place and hands it on. So a window allocates a frame only for
        each output frame it starts, never a frame-sized temporary: these are the largest buffers
        the process makes often, and every temporary one would leave a hole in the heap that the
        next window's buffers fragment (`hugepages.keep_freed_memory` keeps the heap)."""
        self.up.windows_run += 1
        weighted: dict[tuple[Fraction, float], torch.Tensor] = {}
        for m, tau, weight in targets:
            if m < self.skip:
                continue
            if m in self.num:
                add_weighted(self.num[m], preds[tau], weight)
                self.den[m] += weight
                continue
            p = weighted.get((tau, weight))
            if p is None:
                p = weighted[(tau, weight)] = preds[tau].float() * weight
            else:
                p = p.clone()  # a held output: every sum is changed in place later
            self.num[m] = p
            self.den[m] = weight

    def _predict(self, x: torch.Tensor, taus: list[Fraction]) -> dict[Fraction, torch.Tensor]:
        """The model's frames at window-local sample times ``taus``: every call is given the window's
        sample times (integers) too, and at most ``max_times`` times in all."""
        T = x.shape[0]
        ints = [Fraction(i) for i in range(T)]
        between = [t for t in taus if t.denominator != 1]
        room = max(self.max_times - T, 1)
        calls = max(1, -(-len(between) // room))
        out: dict[Fraction, torch.Tensor] = {}
        for c in range(calls):
            times = sorted(ints + between[c::calls])  # interleaved: each call spans the window
            want = [i for i, t in enumerate(times) if t in taus and t not in out]
            dev = torch.tensor([float(t) for t in times], device=self.up.device)
            y = self.up.run_window(x, want, times=dev)
            for i, frame in zip(want, y):
                out[times[i]] = frame
        return out

    def _pop(self, limit: int) -> Iterator[torch.Tensor]:
        while self.next_out < limit:
            m = self.next_out
            self.next_out += 1
            if m < self.skip:
                continue
            if m not in self.num:
                raise RuntimeError(f"output frame {m} was never predicted")
            yield self.num.pop(m).div_(self.den.pop(m)).cpu()  # its own sum (`_add`): no copy


def add_weighted(acc: torch.Tensor, pred: torch.Tensor, weight: float) -> None:
    """acc += pred * weight, in place, in bands of rows: acc and pred (C, H, W). The same values as
    ``acc + pred.float() * weight`` (the product is rounded to float32 before the sum, as there),
    without a frame-sized temporary."""
    for r in range(0, acc.shape[-2], _ADD_ROWS):
        rows = slice(r, r + _ADD_ROWS)
        acc[..., rows, :] += pred[..., rows, :].float() * weight
