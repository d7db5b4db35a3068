"""Upscaler: a THERIS model run over a stream of frames in overlapping windows and tiles.

Tensors in, tensors out, no files: frames (C, h, w) in the unit range go in, frames (C, 4h, 4w)
come out in output order (``temporal_factor`` per input frame, see theris_cli.engine.windows), unclamped
(the caller maps back to the container's range, which is where clipping belongs).

Memory: the model's activations grow with the frame's area (about 2 KB per LR pixel for a window
of 4 frames with the small preset on the CPU, where it runs in work units). Unless ``tile`` is
given, the largest tile that fits in part of the free memory is used, and frames that fit are not
tiled: the largest is also the fastest (a tile recomputes its overlap; the cost per pixel does not
grow with the frame on the CPU). On the CPU a THERIS network's need is estimated from its config;
otherwise (and on CUDA) the first window measures the peak on a 64x64 crop (CUDA: the allocator's
peak; CPU: the resident-set peak, Linux). On CUDA an
error that a tile too large for the GPU raises (out of memory in any form, a launch past CUDA's
limits: `tile_too_large`) halves the tile and retries the window. (On the CPU a process out of memory is
killed rather than told, hence the measurement up front.)
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import time
import traceback
import weakref
from typing import Iterable, Iterator

import torch

from theris_cli.devices import resolve_device, resolve_precision
from theris_cli.errors import DeviceError
from theris_cli.model.config import SCALE  # HR pixels per LR pixel: the network's fixed factor
from theris_cli.model.motion import PairMemo
from theris_cli.engine.hugepages import keep_freed_memory
from theris_cli.engine.memory import (
    available_memory,
    describe_error,
    peak_resident,
    reset_peak_resident,
    resident,
    tile_too_large,
)
from theris_cli.engine.options import MIN_TILE, UpscaleOptions
from theris_cli.engine.stitch import TemporalBlender, TileCanvas
from theris_cli.engine.windows import (
    Tile,
    Window,
    frame_shape,
    local_times,
    plan_tiles,
    plan_windows,
    temporal_stride,
    tile_from_memory,
    window_targets,
)

log = logging.getLogger("theris")

DEFAULT_TILE_OVERLAP = 16  # LR pixels shared by neighbouring tiles, feathered together in stitch
_PROBE_TILE = 64  # LR pixels: side of the crop used to measure memory per pixel on CUDA
# Without options an Upscaler runs where its results are reproducible: the CPU, full precision.
BARE_OPTIONS = UpscaleOptions(device="cpu", precision="fp32")


class Upscaler:
    """Runs ``model`` over a stream of frames: windows of ``options.window`` input frames in time,
    tiles of at most ``options.tile`` LR pixels in space (None: chosen from free memory on the first
    window; whole frames where they fit), on ``options.device`` in ``options.precision``.

        Upscaler(model, opts)                       # the options upscale, preview and evaluate share
        Upscaler(model, tile=64)                    # BARE_OPTIONS (CPU, fp32) with these fields changed

    The encoding fields (codec, crf, pix_fmt) are not used here.
    model(x (B, T, C, h, w) in [0, 1], times (M,) in input-frame units) -> (B, M, C, 4h, 4w).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        options: UpscaleOptions | None = None,
        *,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        **fields,
    ):
        opts = UpscaleOptions.of(options if options is not None else BARE_OPTIONS, **fields)  # validated
        self.options = opts
        device, precision, window, tile = opts.device, opts.precision, opts.window, opts.tile
        temporal_factor = opts.temporal_factor
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # large temporaries reuse the heap instead of being faulted in again
        self.dtype = resolve_precision(precision, self.device)
        self.window = window
        self.stride = temporal_stride(window)
        self.factor = temporal_factor
        self.tile = tile
        self._tile_chosen = tile is not None
        self.tile_overlap = tile_overlap
        self.model = model.to(self.device).eval()
        try:  # a model that can leave frames undecoded: forward(x, times, keep=...)
            self._takes_keep = "keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self._takes_keep = False
        self.windows_run = 0
        self.oom_retries = 0
        self.pairs_reused = 0  # motion pairs taken from the window before (`motion.PairMemo`)
        self.model_seconds = 0.0  # wall time inside run_window (model and tile blending)
        # CPU: windows run side by side, one per core, each at one thread (`process`). The work
        # units are cache-sized, which one core keeps busy; split across cores, each unit's ops
        # are too small to pay for the synchronisation, while whole windows need none.
        self.workers = max(1, torch.get_num_threads()) if self.device.type == "cpu" else 1

    # ---------------------------------------------------------------------------------- streaming

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Frames (C, h, w) in -> frames (C, 4h, 4w) float32 on the CPU out, in output order.

        Memory is bounded: at most ``window + stride`` input frames and about one window of output
        frames are held, whatever the length. A window is run once the frame after it has arrived
        (or the stream has ended), so that it is known whether the window is the video's last.
        """
        with self.pair_memo():
            if self.workers > 1:
                yield from self._process_parallel(frames)
                return
            blender = TemporalBlender(self.factor)
            n = 0  # input frames in the windows run so far
            for w, first, last, x in self._windows(frames):
                yield from self._run(w, x, blender, first, last)
                n = w.end + 1
            if n:
                yield from blender.finish(n)

    @contextlib.contextmanager
    def pair_memo(self):
        """While one stream runs, the network keeps each window's last pair of frames' motion for
        the next window, which starts with it (`motion.PairMemo`; the same velocities, not computed
        twice). Only for that stream: afterwards the network holds none (its weights may change).
        A pair for each window in flight and one more: a window puts its own last pair before it
        looks for its first, the last pair of the window started before it."""
        if getattr(self.model, "motion", None) is None or getattr(self.model, "pair_memo", 0) is not None:
            yield  # no motion part, not a THERIS, or a stream around this one keeps the memo
            return
        memo = self.model.pair_memo = PairMemo(capacity=self.workers + 1)
        try:
            yield
        finally:
            self.model.pair_memo = None
            self.pairs_reused += memo.hits

    def _windows(self, frames: Iterable[torch.Tensor]) -> Iterator[tuple[Window, bool, bool, torch.Tensor]]:
        """(window, first, last, its frames (T, C, h, w)) in window order, each as soon as it is
        known: a window is handed out once the frame after it has arrived (or the stream has ended),
        so that it is known whether the window is the video's last. The last one ends at the last
        frame. At most ``window + stride`` input frames are held."""
        buf: dict[int, torch.Tensor] = {}
        n = 0  # input frames seen
        ran = 0  # windows handed out so far (they are a prefix of plan_windows(n, window))
        start = 0  # start of the next regular window
        shape = None
        for frame in frames:
            shape = frame_shape(frame, shape, n)
            buf[n] = frame
            n += 1
            while start + self.window < n:  # frame start + window exists: not the last window
                w = Window(start, self.window)
                yield w, start == 0, False, torch.stack([buf[i] for i in range(w.start, w.end + 1)])
                ran += 1
                start += self.stride
                for i in [i for i in buf if i <= w.start]:  # later windows start after w.start
                    del buf[i]
        if n == 0:
            return
        for w in plan_windows(n, self.window)[ran:]:
            yield w, w.start == 0, w.end == n - 1, torch.stack([buf[i] for i in range(w.start, w.end + 1)])

    def _process_parallel(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """`process` with up to ``workers`` windows in flight at once, each in a worker thread at one
        intra-op thread; results are blended in window order, so the output is the same frame for
        frame (every window's prediction is its own). The tile is chosen before the first window is
        handed out. Memory: ``workers`` windows' buffers instead of one."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        blender = TemporalBlender(self.factor)
        pending: deque = deque()  # (window, first, last, keep, future), in window order
        t_busy = [0.0, None]  # seconds with a window in flight; start of the current stretch

        def one_thread(x: torch.Tensor, keep: list[int]) -> torch.Tensor:
            torch.set_num_threads(1)  # this worker's OpenMP team: itself (a thread setting)
            return self._run_window(x, keep)

        def submit(pool, w: Window, x: torch.Tensor, first: bool, last: bool) -> None:
            keep = window_targets(w.length, self.factor, first, last)
            if not pending:
                t_busy[1] = time.perf_counter()
            self.choose_tile(x)  # before any worker reads it
            pending.append((w, first, last, keep, pool.submit(one_thread, x, keep)))

        def collect() -> Iterator[torch.Tensor]:
            w, first, last, keep, fut = pending.popleft()
            preds = fut.result()
            now = time.perf_counter()
            if not pending:
                t_busy[0] += now - t_busy[1]
            self.model_seconds = t_busy[0] + (now - t_busy[1] if pending else 0.0)
            blender.add(w, preds, first, last, keep)
            self.windows_run += 1
            for frame in blender.pop_ready(min(self.factor * (w.start + 1), self.factor * w.end + 1)):
                yield frame.cpu()

        n = 0  # input frames in the windows handed out so far
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="theris-window")
        finished = False
        try:
            for w, first, last, x in self._windows(frames):
                while len(pending) >= self.workers:
                    yield from collect()
                submit(pool, w, x.to(self.device, torch.float32), first, last)
                n = w.end + 1
            while pending:
                yield from collect()
            if n:
                yield from blender.finish(n)
            finished = True
        finally:
            # on an error, Ctrl-C or the consumer stopping, windows not started are dropped and a
            # running one is not waited for (its thread finishes it and ends): the caller cleans up at once
            pool.shutdown(wait=finished, cancel_futures=not finished)
            self.model_seconds = t_busy[0] + (time.perf_counter() - t_busy[1] if pending and t_busy[1] else 0.0)

    def _run(self, w: Window, x: torch.Tensor, blender: TemporalBlender, first: bool, last: bool) -> Iterator[torch.Tensor]:
        """Window w's frames x (T, C, h, w) through the model into the blender; the frames now final."""
        keep = window_targets(w.length, self.factor, first, last)  # the times the blend uses
        preds = self.run_window(x, keep)  # (K, C, 4h, 4w)
        blender.add(w, preds, first, last, keep)
        self.windows_run += 1
        # No later window starts at or before w.start, so outputs before input time w.start + 1 are final
        # (a one-frame window predicts only its own start).
        for frame in blender.pop_ready(min(self.factor * (w.start + 1), self.factor * w.end + 1)):
            yield frame.cpu()

    # ---------------------------------------------------------------------------------- one window

    def times(self, length: int) -> torch.Tensor:
        """(M,) target times of a window of ``length`` input frames, in input-frame units."""
        return torch.tensor([float(t) for t in local_times(length, self.factor)], device=self.device)

    def run_window(self, x: torch.Tensor, keep: list[int] | None = None,
                   times: torch.Tensor | None = None) -> torch.Tensor:
        """x (T, C, h, w) unit range -> (M, C, 4h, 4w) float32 at times(T), tiled; OOM halves the tile.

        ``keep``: indices into times(T) of the frames to return, (K, C, 4h, 4w). The model still sees
        every time (its temporal scan runs over all M, so the kept frames are the same); a model that
        takes ``keep`` (THERIS) does not decode the others. ``times``: (M,) other target times, in
        input-frame units on this device (repeated frames: theris_cli.engine.samples)."""
        t0 = time.perf_counter()
        try:
            y = self._run_window(x, keep, times)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so that model_seconds is the GPU's time, not the launch's
            return y
        finally:
            self.model_seconds += time.perf_counter() - t0

    def use_tile(self, tile: int | None) -> None:
        """Run with ``tile`` (None: whole frames) instead of choosing one from free memory: a resumed
        run keeps the tile its first frames were made with, so that its output does not depend on
        how much memory was free at each start."""
        self.tile, self._tile_chosen = tile, True

    def choose_tile(self, x: torch.Tensor) -> None:
        """Choose the tile now from a window x (T, C, h, w), as its first run would: before windows
        run side by side, so that no worker chooses it."""
        if not self._tile_chosen:
            self.tile = self._tile_for_memory(x.to(self.device, torch.float32), self.times(x.shape[0]))
            self._tile_chosen = True

    def _run_window(self, x: torch.Tensor, keep: list[int] | None, times: torch.Tensor | None = None) -> torch.Tensor:
        T, C, h, w = x.shape
        x = x.to(self.device, torch.float32)
        times = self.times(T) if times is None else times
        if not self._tile_chosen:
            self.tile = self._tile_for_memory(x, times)
            self._tile_chosen = True
        if self.device.type == "cpu":  # where malloc's heap ends, for this size of window or tile
            keep_freed_memory(min(h, self.tile or h) * min(w, self.tile or w))
        while True:
            try:
                return self._run_tiles(x, times, plan_tiles(h, w, self.tile, self.tile_overlap), keep)
            except Exception as e:  # noqa: BLE001 - only a tile too large for the GPU is handled here
                if not tile_too_large(e):
                    raise
                why = describe_error(e)
                # the traceback's frames hold the failed attempt's tensors: drop them here, so that
                # empty_cache() below can hand their memory back
                traceback.clear_frames(e.__traceback__)
            current = min(self.tile or max(h, w), max(h, w))
            smaller = current // 2
            if smaller < MIN_TILE:
                raise DeviceError(
                    f"out of GPU memory or launch limits even with {current}-pixel tiles ({why}); "
                    f"close other GPU programs, "
                    f"use a smaller --window, or --device cpu"
                ) from None
            log.warning("tile too large for the GPU with %s-pixel tiles (%s); retrying with %s", current, why, smaller)
            self.tile = smaller
            self.oom_retries += 1
            self._release()

    def _release(self) -> None:
        """Hand the memory of a failed attempt back to the GPU; called once its tensors are no
        longer referenced (outside the `except` block, its traceback's frames cleared)."""
        gc.collect()  # what is still alive only through a reference cycle
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _model(self, x: torch.Tensor, times: torch.Tensor, keep: list[int] | None = None) -> torch.Tensor:
        """x (T, C, th, tw) -> (K, C, 4th, 4tw) float32 at times[keep] (all M times when keep is None)."""
        with torch.inference_mode(), self._autocast():
            if keep is not None and self._takes_keep:
                y = self.model(x.unsqueeze(0), times, keep=keep)  # (1, K, C, 4th, 4tw)
            else:
                y = self.model(x.unsqueeze(0), times)  # (1, M, C, 4th, 4tw)
                if keep is not None:
                    y = y[:, keep]
        K = times.numel() if keep is None else len(keep)
        T, C, th, tw = x.shape
        expected = (1, K, C, SCALE * th, SCALE * tw)
        assert tuple(y.shape) == expected, f"model returned {tuple(y.shape)}, expected {expected}"
        return y[0].float()

    def _run_tiles(self, x: torch.Tensor, times: torch.Tensor, tiles: list[Tile], keep: list[int] | None = None) -> torch.Tensor:
        T, C, h, w = x.shape
        if len(tiles) == 1:
            return self._model(x, times, keep)
        K = times.numel() if keep is None else len(keep)
        canvas = TileCanvas(K, C, h, w, SCALE, self.tile_overlap, device=self.device)
        for t in tiles:
            canvas.add(t, self._model(x[:, :, t.y0 : t.y1, t.x0 : t.x1], times, keep))
        return canvas.result()

    def _tile_for_memory(self, x: torch.Tensor, times: torch.Tensor) -> int | None:
        """Measure the peak memory of one window on a small crop and scale it to the free memory.

        Frames no larger than the crop are never tiled. Where memory cannot be measured or the free
        amount is unknown, whole frames are used.
        """
        T, C, h, w = x.shape
        ph, pw = min(h, _PROBE_TILE), min(w, _PROBE_TILE)
        if h * w <= ph * pw:
            return None
        if self.device.type == "cpu" and self._whole_frame_fits_cpu(h, w, C, times.numel()):
            # On the CPU whole frames are the fastest plan (a tile recomputes its overlap and the
            # work-unit path's cost per pixel does not grow with the frame), and here they surely
            # fit: no probe window needed.
            log.info("tile chosen from free RAM: whole frame (estimate)")
            return None
        crop = x[:, :, :ph, :pw]
        if self.device.type == "cuda":
            peak, free = self._measure_cuda(crop, times)
        else:
            peak, free = self._measure_cpu(crop, times)
        if peak is None or free is None:
            return None
        # Remember the largest measurement per model and window shape: a later probe in the same
        # process (batch) reuses freed heap and would see less than a fresh one.
        key = (str(self.device), self.dtype, tuple(crop.shape), times.numel())
        seen = _BYTES_PER_PIXEL.setdefault(self.model, {})
        bpp = seen[key] = max(peak / (ph * pw), seen.get(key, 0.0))
        # The stitched window (M frames at 16x the pixels, float32, about three copies while
        # blending and queued) lives beside the model and is not part of the probe.
        outputs = 3 * times.numel() * C * SCALE * SCALE * h * w * 4
        fraction = 0.5 if self.device.type == "cuda" else 0.4  # the CPU also holds decode/encode buffers
        tile = tile_from_memory(max(free // self.workers - outputs, 0), bpp, h, w, fraction=fraction)
        if tile is not None and tile < MIN_TILE:
            tile = MIN_TILE
        where = "GPU" if self.device.type == "cuda" else "RAM"
        log.info("tile chosen from free %s: %s", where, "whole frame" if tile is None else f"{tile} px")
        return tile

    def _whole_frame_fits_cpu(self, h: int, w: int, C: int, M: int) -> bool:
        """Whether a THERIS network's window of whole frames fits in RAM by a safe upper estimate.

        Without autograd the network runs in work units (theris_cli.model.units): beside
        a bounded working set it holds about six feature maps of M frames x dim channels and its
        output, float32. Twice that, plus the stitched outputs, must fit in 40 % of the free RAM.
        Other models (no ``config.dim``), and a THERIS network on its plain path
        (``use_work_units`` off), are measured instead."""
        dim = getattr(getattr(self.model, "config", None), "dim", None)
        free = available_memory()
        if not isinstance(dim, int) or free is None or not getattr(self.model, "use_work_units", False):
            return False
        window = 4.0 * M * (6 * dim + C * SCALE * SCALE) * h * w + _CPU_UNIT_BYTES
        outputs = 3 * M * C * SCALE * SCALE * h * w * 4
        return self.workers * (2 * window + outputs) <= 0.4 * free  # each window in flight

    def _measure_cuda(self, crop: torch.Tensor, times: torch.Tensor) -> tuple[float | None, int | None]:
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            self._model(crop, times)
        except Exception as e:  # noqa: BLE001 - only a crop too large for the GPU is handled here
            if not tile_too_large(e):
                raise
            traceback.clear_frames(e.__traceback__)
        else:
            peak = torch.cuda.max_memory_allocated(self.device) - base
            free, _ = torch.cuda.mem_get_info(self.device)
            return float(peak), int(free)
        self._release()
        return float("inf"), 0  # -> the smallest tile; OOM halving is not needed below it

    def _measure_cpu(self, crop: torch.Tensor, times: torch.Tensor) -> tuple[float | None, int | None]:
        # A process that runs out of RAM is killed, not told: so on the CPU the tile must be right
        # the first time. Linux keeps the peak resident size (VmHWM) and lets a process reset it.
        free = available_memory()
        before = resident()
        if free is None or before is None or not reset_peak_resident():
            return None, None
        self._model(crop, times)
        peak = peak_resident()
        if peak is None or peak <= before:
            return None, None
        return float(max(peak - before, _MIN_CPU_BYTES_PER_PIXEL * crop.shape[-1] * crop.shape[-2])), free


# host memory per pixel of a window, measured once per model (`_bytes_per_pixel`)
_BYTES_PER_PIXEL: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_CPU_UNIT_BYTES = 512 * 2**20  # upper bound of the work units' temporaries and the model's own memory
_MIN_CPU_BYTES_PER_PIXEL = 8 * 1024  # floor for the measurement: freed heap reused by the probe hides some of it
