"""upscale_video(): probe -> levels -> decode -> windows -> model -> stitch -> encode, streaming.

Before the first frame, `prepare.prepare` checks the input and output, probes the video, scans its
levels and loads the weights (the same steps as `theris preview`). Then three stages run at once,
joined by bounded queues so that memory does not grow with the video's length and the model is not
idle while frames are read or written:

    decode thread:  read_frames -> Levels.to_unit -> (1, h, w) tensors      -> queue (QUEUE_IN frames)
    calling thread: Upscaler.process (windows, tiles, model, blending)      -> queue (QUEUE_OUT frames)
    encode thread:  Levels.from_unit -> VideoWriter.write (into a temporary file, see outputs.py)

The calling thread runs the model so that Ctrl-C (delivered to the main thread) stops the work at
once; the helper threads notice a stop flag within a fraction of a second and the temporary file is
removed. An error in any stage stops the others and is raised in the calling thread.

Values: one fixed affine map per video (scan_levels: 0..255 for 8-bit, the video's min..max for
16-bit) takes raw samples to the network's [0, 1] and back; model outputs are not clamped to [0, 1]
(that would clip the real range) but rounded and clipped to the container's range by from_unit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from theris_cli.devices import precision_name
from theris_cli.engine.events import NEW, EventCounts, EventDetector
from theris_cli.engine.infer import Upscaler
from theris_cli.engine.options import UpscaleOptions
from theris_cli.engine.prepare import check_output_name, prepare
from theris_cli.engine.resume import SEGMENT_SECONDS, Work, input_identity, weights_identity
from theris_cli.engine.samples import upscale_marked
from theris_cli.errors import InputError, NumericalError, TherisError
from theris_cli.model.config import SCALE
from theris_cli.outputs import atomic_output, output_error, remove_dead_partials

log = logging.getLogger("theris")

QUEUE_IN = 16  # LR frames decoded ahead of the model (small: LR frames are 1/16 of an HR frame)
QUEUE_OUT = 4  # HR frames waiting for the encoder (each 16x an input frame, float32)
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty

ProgressCallback = Callable[[int, Optional[int]], None]  # (output frames written, expected total or None)
EstimateCallback = Callable[[float, int], None]  # (estimated seconds of the whole run, output frames)


@dataclass
class UpscaleResult:
    """What upscale_video did, for reports and benchmarks."""

    src: str
    dst: str
    frames_in: int
    frames_out: int
    fps_in: Fraction
    fps_out: Fraction
    size_in: tuple[int, int]  # (width, height)
    size_out: tuple[int, int]
    bit_depth: int  # of the output file (8 for --pix-fmt yuv420p even from 16-bit input)
    seconds: float  # wall clock, probe to rename
    stages: dict[str, float] = field(default_factory=dict)  # busy seconds: levels, load, decode, events, model,
    # encode (the destination), segments (kept for resuming), join (an earlier run's segments into the destination)
    weights: str = ""  # the weights' name (registry name or file name)
    weights_trained: Optional[bool] = None  # False: random weights, not a real upscale; None: not known
    device: str = ""
    precision: str = ""
    tile: Optional[int] = None  # LR pixels in the end (None: whole frames)
    warnings: list[str] = field(default_factory=list)
    events: Optional[EventCounts] = None  # what event detection found (None: switched off)
    resumed_frames: int = 0  # output frames kept from an earlier, interrupted run
    windows: int = 0  # model windows run
    motion_pairs_reused: int = 0  # windows' first pairs of frames whose motion came from the window before

    @property
    def duration_in(self) -> Fraction:
        return self.frames_in / self.fps_in

    @property
    def duration_out(self) -> Fraction:
        return self.frames_out / self.fps_out


@contextmanager
def _final_name_in_errors(tmp: Path, dst: Path) -> Iterator[None]:
    """Errors raised while writing name the temporary file; the user knows only the output's name."""
    try:
        yield
    except TherisError as e:
        if str(tmp) in str(e):
            e.args = (str(e).replace(str(tmp), str(dst)),) + e.args[1:]
        raise


def upscale_video(
    src: str | Path,
    dst: str | Path,
    options: Optional[UpscaleOptions] = None,
    *,
    model: Optional[torch.nn.Module] = None,
    overwrite: bool = False,
    on_progress: Optional[ProgressCallback] = None,
    resume: bool = True,
    segment_seconds: float = SEGMENT_SECONDS,
    on_estimate: Optional[EstimateCallback] = None,
    **fields: Any,
) -> UpscaleResult:
    """Upscale ``src`` 4x in space and ``temporal_factor``x in time into ``dst``.

    ``options``: the UpscaleOptions (weights, device, precision, window, tile, temporal_factor,
    codec, crf, pix_fmt); ``fields``: any of them as keywords instead, or to change ``options``.
    ``model``: an already loaded network (then ``weights`` only labels the result).
    ``on_estimate``: called once, when the first window is done and the frame count is known, with
    the estimated seconds of the whole model stage (`engine.estimate`) and the output frames. Output: the
    container from ``dst``'s extension, the input's bit depth, fps = temporal_factor x input fps,
    temporal_factor x input frames (the same duration; the last input frame's trailing slots repeat its
    super-resolved frame). Raises a TherisError subclass with a one-line message on every expected
    failure, leaving no output and no temporary file.

    The work is kept in segments of ``segment_seconds`` of output beside ``dst`` (theris_cli.engine.resume):
    the same call after a crash or kill continues after the last complete segment; ``resume=False``
    deletes unfinished work and keeps no segments.
    """
    from theris_cli.video import VideoWriter
    from theris_cli.video.encode import check_crf

    t_start = time.perf_counter()
    opts = UpscaleOptions.of(options, **fields)  # validated: window, tile, factor, spellings

    def check_output(dst: Path) -> None:
        check_output_name(dst)
        check_crf(opts.crf, opts.codec, dst.suffix)

    run = prepare(src, dst, opts, model=model, overwrite=overwrite, check_output=check_output)
    src, dst, info, levels, warnings = run.src, run.dst, run.info, run.levels, list(run.warnings)
    t = time.perf_counter()
    up = run.network.upscaler()
    stages = {"levels": run.seconds["levels"], "load": run.seconds["load"] + time.perf_counter() - t,
              "decode": 0.0, "events": 0.0, "model": 0.0, "encode": 0.0, "segments": 0.0, "join": 0.0}
    key = {"input": input_identity(src), "weights": weights_identity(run.network.model), "options": opts.output_fields()}
    work, note = Work.open(dst, key, resume=resume)
    if note:
        log.warning("%s", note)
        remove_dead_partials(dst)  # the temporary output of the interrupted run
    if work.segments and work.tile != "unset":  # the tile the frames were made with, whatever memory is free now
        up.use_tile(work.tile)
    detector = EventDetector() if opts.events else None

    fps_out = info.fps * opts.temporal_factor  # Fraction: 30000/1001 -> 60000/1001 exactly
    total = info.frame_count * opts.temporal_factor if info.frame_count else None
    skip = work.done  # output frames in complete segments of an earlier run
    segment_frames = max(1, round(segment_seconds * fps_out))
    try:
        with atomic_output(dst, overwrite=overwrite, src=src) as tmp, _final_name_in_errors(tmp, dst):
            writer = VideoWriter(
                tmp, SCALE * info.width, SCALE * info.height, fps_out, levels.bit_depth,
                codec=opts.codec, crf=opts.crf, pix_fmt=opts.pix_fmt, source=info, levels=levels,
            )
            with writer:  # closed on every path: aborted on an error, the temporary file then removed
                bits_out = writer.stored_bits
                for note in writer.notes:  # what the output container cannot carry over (audio, rotation, ...)
                    log.warning("%s", note)
                    warnings.append(note)
                sink = writer  # --no-resume: no segments, nothing to continue from
                if resume:
                    sink = work.sink(writer, SCALE * info.width, SCALE * info.height, fps_out, levels.bit_depth,
                                     segment_frames, up)
                flow = _Stages(src=src, dst=dst, levels=levels, upscaler=up, writer=sink, on_progress=on_progress,
                               total=total, detector=detector, skip=skip,
                               on_estimate=on_estimate, frames_in=info.frame_count).run()
                stages.update(decode=flow.decode_seconds, events=flow.events_seconds, model=flow.model_seconds,
                              segments=getattr(sink, "segment_seconds", 0.0), join=getattr(sink, "replay_seconds", 0.0))
                stages["encode"] = flow.encode_seconds - stages["segments"] - stages["join"]
                if flow.frames_in == 0:  # read_frames raises first; a guard, inside the block so nothing is kept
                    raise InputError(f"{src}: contains no video frames")
    except BaseException:
        if not work.segments:  # nothing a rerun could keep: leave nothing behind
            work.remove_quietly()
        raise
    work.remove()

    return UpscaleResult(
        src=str(src), dst=str(dst), frames_in=flow.frames_in, frames_out=flow.frames_out,
        fps_in=info.fps, fps_out=fps_out, size_in=(info.width, info.height),
        size_out=(SCALE * info.width, SCALE * info.height), bit_depth=bits_out,
        seconds=time.perf_counter() - t_start, stages=stages, weights=run.network.name,
        weights_trained=run.network.trained, device=str(up.device), precision=precision_name(up.dtype),
        tile=up.tile, warnings=warnings, events=detector.counts if detector is not None else None,
        resumed_frames=skip, windows=up.windows_run, motion_pairs_reused=up.pairs_reused,
    )


# ------------------------------------------------------------------------------------------------
# the three stages


class _End:
    """Sentinel: the producer has finished."""


@dataclass
class Flow:
    """What the three stages did: frames through each end, and each stage's busy seconds."""

    frames_in: int = 0
    frames_out: int = 0  # from the first frame not yet written (an interrupted run's are counted)
    decode_seconds: float = 0.0
    events_seconds: float = 0.0  # event detection, in the decode thread
    model_seconds: float = 0.0  # the model and tile blending, not waiting
    encode_seconds: float = 0.0


class _Stages:
    """The decode, model and encode stages of one video, joined by bounded queues (module docstring).

    Each helper thread writes only its own fields of ``self.flow`` (decode: frames_in and
    decode_seconds; encode: frames_out and encode_seconds), read by the calling thread after it
    has joined them; an exception in a helper thread is kept in ``self.errors`` and raised in the
    calling thread.
    """

    def __init__(self, *, src: Path, dst: Path, levels: Any, upscaler: Upscaler, writer: Any,
                 on_progress: Optional[ProgressCallback], total: Optional[int],
                 detector: Optional[EventDetector] = None, skip: int = 0,
                 on_estimate: Optional[EstimateCallback] = None, frames_in: Optional[int] = None):
        self.src, self.dst, self.levels, self.up, self.writer = src, dst, levels, upscaler, writer
        self.on_progress, self.total = on_progress, total
        self.on_estimate, self.frames_expected = on_estimate, frames_in
        self.detector, self.skip = detector, skip  # events (None: off); output frames already written
        self.flow = Flow(frames_out=skip)
        self.q_in: queue.Queue = queue.Queue(QUEUE_IN)
        self.q_out: queue.Queue = queue.Queue(QUEUE_OUT)
        self.stop = threading.Event()
        self.errors: dict[str, BaseException] = {}  # stage -> exception, set by the helper threads
        self.encoded = False  # the writer closed cleanly

    def run(self) -> Flow:
        """Run the three stages to the end; the first error of any stage is raised here."""
        if self.on_progress is not None:
            self.on_progress(0, self.total)  # the total (when known) before the first, slow window
        threads = [
            threading.Thread(target=self._guard, args=("decode", self._decode), name="theris-decode", daemon=True),
            threading.Thread(target=self._guard, args=("encode", self._encode), name="theris-encode", daemon=True),
        ]
        for th in threads:
            th.start()
        try:
            self._infer()
            self._put(self.q_out, _End)
            while threads[1].is_alive():  # the encoder flushes and closes the file
                threads[1].join(_POLL)
                self._raise_errors()
            self._raise_errors()
        finally:
            self.stop.set()
            for th in threads:
                th.join(5.0)
            if not self.encoded and not threads[1].is_alive():  # never close from two threads at once
                self._close_quietly()
        return self.flow

    # -- helpers ---------------------------------------------------------------------------------

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # handed to the calling thread, which raises it
            self.errors[name] = e
            self.stop.set()

    def _raise_errors(self) -> None:
        for name in ("decode", "encode"):  # the input's error first: it usually caused the other
            if name in self.errors:
                raise self.errors[name]

    def _put(self, q: queue.Queue, item: Any) -> None:
        """Put, waking up regularly to give up when another stage has stopped."""
        while True:
            if self.stop.is_set():
                self._raise_errors()
                raise _Stopped
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        """Get, giving up as soon as another stage has stopped."""
        while True:
            if self.stop.is_set():
                self._raise_errors()
                raise _Stopped
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue

    # -- stages ----------------------------------------------------------------------------------

    def _decode(self) -> None:
        from theris_cli.video import read_frames

        frames = read_frames(self.src)
        busy = 0.0
        try:
            while True:
                t = time.perf_counter()
                try:
                    raw = next(frames)
                except StopIteration:
                    break
                x = torch.from_numpy(self.levels.to_unit(raw))[None]  # (1, h, w) float32, lo..hi -> 0..1
                busy += time.perf_counter() - t
                t = time.perf_counter()
                mark = self.detector.observe(raw) if self.detector is not None else NEW
                self.flow.events_seconds += time.perf_counter() - t
                self.flow.frames_in += 1
                self._put(self.q_in, (x, mark))
            self._put(self.q_in, _End)
        finally:
            self.flow.decode_seconds = busy
            getattr(frames, "close", lambda: None)()

    def _inputs(self) -> Iterator[tuple[torch.Tensor, str]]:
        while True:
            item = self._get(self.q_in)
            if item is _End:
                return
            yield item

    def _infer(self) -> None:
        out = upscale_marked(self.up, self._inputs(), self.skip)
        try:
            for y in out:  # (1, 4h, 4w) float32 on the CPU
                if self.on_estimate is not None and self.up.windows_run == 1 and self.frames_expected:
                    from theris_cli.engine.estimate import estimate_seconds

                    self.on_estimate(estimate_seconds(self.frames_expected, self.up.window, self.up.workers,
                                                      self.up.model_seconds), self.total or 0)
                    self.on_estimate = None  # once
                self._put(self.q_out, y)
        finally:
            self.flow.model_seconds = self.up.model_seconds  # the model and tile blending, not waiting
            out.close()

    def _encode(self) -> None:
        busy = 0.0
        begin = getattr(self.writer, "begin", None)  # resumed: the kept frames first, while the model starts
        if begin is not None:
            t = time.perf_counter()
            begin()
            busy = time.perf_counter() - t
        while True:
            item = self._get(self.q_out)
            if item is _End:
                break
            t = time.perf_counter()
            # numpy, single-threaded: a torch op here would start a second OpenMP team in this
            # thread, whose spinning threads would take the cores from the model's
            if not np.isfinite(item.numpy()).all():  # NaN would be written as black, and exit 0
                raise NumericalError(
                    f"{self.src}: the network's output frame {self.flow.frames_out} holds NaN or infinite values, so "
                    "nothing was written; with --precision fp16 try fp32, else the weights do not suit this video"
                )
            raw = self.levels.from_unit(item[0])  # round, clip to the container's range (not to lo..hi)
            try:
                self.writer.write(raw)
            except OSError as e:
                raise output_error(e, self.dst) from e
            busy += time.perf_counter() - t
            self.flow.frames_out += 1
            self.flow.encode_seconds = busy
            if self.on_progress is not None:
                self.on_progress(self.flow.frames_out, self.total)
        t = time.perf_counter()
        try:
            self.writer.close()
        except OSError as e:
            raise output_error(e, self.dst) from e
        self.encoded = True
        self.flow.encode_seconds = busy + time.perf_counter() - t

    def _close_quietly(self) -> None:
        # After a failure: release the temporary file; its content is discarded anyway.
        try:
            getattr(self.writer, "abort", self.writer.close)()
        except Exception:
            pass


class _Stopped(TherisError):
    """Internal: this stage stops because another one failed (that one's error is raised instead)."""
