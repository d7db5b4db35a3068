"""upscale_video(): probe -> levels -> decode -> windows -> model -> stitch -> encode, streaming.

Three stages run at once, joined by bounded queues so that memory does not grow with the video's
length and the model is not idle while frames are read or written:

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

from theris_cli.devices import precision_name, resolve_device, resolve_precision
from theris_cli.errors import InputError, NumericalError, TherisError, UsageError, WeightsError
from theris_cli.engine.events import NEW, EventCounts, EventDetector
from theris_cli.engine.infer import Upscaler
from theris_cli.engine.resume import SEGMENT_SECONDS, Work, input_identity, remove_partials, weights_identity
from theris_cli.engine.samples import upscale_marked
from theris_cli.model.config import SCALE
from theris_cli.engine.options import UpscaleOptions
from theris_cli.outputs import atomic_output, check_destination, output_error

log = logging.getLogger("theris")

QUEUE_IN = 16  # LR frames decoded ahead of the model (small: LR frames are 1/16 of an HR frame)
QUEUE_OUT = 4  # HR frames waiting for the encoder (each 16x an input frame, float32)
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty

ProgressCallback = Callable[[int, Optional[int]], None]  # (output frames written, expected total or None)


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
    stages: dict[str, float] = field(default_factory=dict)  # busy seconds: levels, load, decode, model, encode
    weights: str = ""  # the weights' name (registry name or file name)
    weights_trained: Optional[bool] = None  # False: random weights, not a real upscale; None: not known
    device: str = ""
    precision: str = ""
    tile: Optional[int] = None  # LR pixels in the end (None: whole frames)
    warnings: list[str] = field(default_factory=list)
    events: Optional[EventCounts] = None  # what event detection found (None: switched off)
    resumed_frames: int = 0  # output frames kept from an earlier, interrupted run

    @property
    def duration_in(self) -> Fraction:
        return self.frames_in / self.fps_in

    @property
    def duration_out(self) -> Fraction:
        return self.frames_out / self.fps_out


def check_input(src: str | Path) -> Path:
    """Fail early, in one line, on inputs that are certainly wrong (probe checks the rest)."""
    src = Path(src)
    if "%" in src.name and not src.exists():  # an image-sequence pattern such as frames/%05d.png: probe resolves it
        return src
    if src.is_dir():  # a folder of numbered images is one sequence; anything else is refused here
        from theris_cli.video.decode import image_files

        try:
            if image_files(src):
                return src
        except InputError:
            pass
        raise InputError(
            f"{src}: is a folder without images; give a video file, a folder of images or a pattern such as "
            f"{src / 'frame_%05d.png'} (a folder of videos takes a folder as output: theris batch)"
        )
    if not src.exists():
        raise InputError(f"{src}: no such file; check the path")
    return src


def check_output_name(dst: Path) -> None:
    """Refuse output names the writer cannot take, before any work."""
    from theris_cli.video.encode import output_kind

    if output_kind(dst) == "images":
        # One file a frame cannot be renamed into place at once, so it could be left half written.
        raise UsageError(f"{dst}: image-sequence output is not supported; write a video (.mkv keeps 16 bits losslessly)")


def load_weights(weights: Optional[str], device: torch.device,
                 model: Optional[torch.nn.Module] = None) -> tuple[torch.nn.Module, str, Optional[bool]]:
    """The network for ``weights`` (default: the registry's default) on ``device``, its name, and
    whether it is trained (None: not known). An already loaded ``model`` is used as it is."""
    if model is None:
        from theris_cli.weights import DEFAULT_MODEL, load_model

        weights = weights or DEFAULT_MODEL
        model = load_model(weights, device=str(device))
    winfo = getattr(model, "weights_info", None)  # set by load_model: name, trained or random
    name = winfo.name if winfo is not None else (weights or "custom")
    return model, str(name), (winfo.trained if winfo is not None else None)


def check_finite_weights(model: torch.nn.Module, label: str) -> None:
    """Refuse weights holding NaN or infinities: they make every output frame NaN (black video)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise WeightsError(
            f"{label}: {len(bad)} of its {len(tensors)} tensors hold NaN or infinite values (first: {bad[0]}); "
            "the checkpoint is broken: re-download it or retrain"
        )


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
    **fields: Any,
) -> UpscaleResult:
    """Upscale ``src`` 4x in space and ``temporal_factor``x in time into ``dst``.

    ``options``: the UpscaleOptions (weights, device, precision, window, tile, temporal_factor,
    codec, crf, pix_fmt); ``fields``: any of them as keywords instead, or to change ``options``.
    ``model``: an already loaded network (then ``weights`` only labels the result). Output: the
    container from ``dst``'s extension, the input's bit depth, fps = temporal_factor x input fps,
    temporal_factor x input frames (the same duration; the last input frame's trailing slots repeat its
    super-resolved frame). Raises a TherisError subclass with a one-line message on every expected
    failure, leaving no output and no temporary file.

    The work is kept in segments of ``segment_seconds`` of output beside ``dst`` (theris_cli.engine.resume):
    the same call after a crash or kill continues after the last complete segment; ``resume=False``
    starts over.
    """
    from theris_cli.video import VideoWriter, probe, scan_levels
    from theris_cli.video.encode import check_crf

    t_start = time.perf_counter()
    stages = {"levels": 0.0, "load": 0.0, "decode": 0.0, "events": 0.0, "model": 0.0, "encode": 0.0, "join": 0.0}
    # Everything that can be checked without reading the video, before any slow step.
    opts = UpscaleOptions.of(options, **fields)  # validated: window, tile, factor, spellings
    temporal_factor = opts.temporal_factor
    dev = resolve_device(opts.device)
    resolve_precision(opts.precision, dev)
    src, dst = check_input(src), Path(dst)
    check_output_name(dst)
    check_crf(opts.crf, opts.codec, dst.suffix)
    check_destination(dst, overwrite=overwrite, src=src)

    info = probe(src)
    warnings: list[str] = []
    if info.palette_suspected:
        msg = (
            f"{src} looks like false colour (a palette), not temperature: it is upscaled from its luma, "
            "which the model was not trained on; export grey (radiometric) video from the camera if you can"
        )
        log.warning(msg)
        warnings.append(msg)

    if info.vfr_gaps:
        lo, hi = info.vfr_gaps
        msg = (
            f"{src} has a variable frame rate (frames {float(lo) * 1000:.0f} to {float(hi) * 1000:.0f} ms apart): its "
            f"{info.frame_count} frames are taken as evenly spaced at the mean {float(info.fps):.4g} fps, so the "
            "output lasts as long as the input"
        )
        log.warning(msg)
        warnings.append(msg)

    t = time.perf_counter()
    levels = scan_levels(src)  # a full decode pass for 16-bit input (min/max), free for 8-bit
    stages["levels"] = time.perf_counter() - t

    t = time.perf_counter()
    model, weights, trained = load_weights(opts.weights, dev, model)
    check_finite_weights(model, weights)
    from theris_cli.weights.checkpoint import contract_warning

    outside = contract_warning(model, window=opts.window, temporal_factor=temporal_factor)  # once per process
    if outside:
        log.warning("%s", outside)
        warnings.append(outside)
    up = Upscaler(model, device=dev, precision=opts.precision, window=opts.window, tile=opts.tile,
                  temporal_factor=temporal_factor)
    stages["load"] = time.perf_counter() - t
    key = {"input": input_identity(src), "weights": weights_identity(model), "options": opts.output_fields()}
    work, note = Work.open(dst, key, resume=resume)
    if note:
        log.warning("%s", note)
        remove_partials(dst)  # the temporary output of the interrupted run
    if work.segments and work.tile != "unset":  # the tile the frames were made with, whatever memory is free now
        up.tile, up._tile_chosen = work.tile, True
    detector = EventDetector() if opts.events else None

    fps_out = info.fps * temporal_factor  # Fraction: 30000/1001 -> 60000/1001 exactly
    total = info.frame_count * temporal_factor if info.frame_count else None
    skip = work.done
    counts = {"in": 0, "out": skip}
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
                sink = work.sink(SCALE * info.width, SCALE * info.height, fps_out, levels.bit_depth, segment_frames, up)
                _Stages(src, dst, levels, up, sink, on_progress, total, stages, counts, detector, skip).run()
                if counts["in"] == 0:  # read_frames raises first; a guard, inside the block so nothing is kept
                    raise InputError(f"{src}: contains no video frames")
                t = time.perf_counter()
                try:  # the destination, encoded once from the lossless segments
                    for raw in work.frames():
                        writer.write(raw)
                    writer.close()
                except OSError as e:
                    raise output_error(e, dst) from e
                stages["join"] = time.perf_counter() - t
    except BaseException:
        if not work.segments:  # nothing a rerun could keep: leave nothing behind
            work.remove_quietly()
        raise
    work.remove()

    return UpscaleResult(
        src=str(src), dst=str(dst), frames_in=counts["in"], frames_out=counts["out"],
        fps_in=info.fps, fps_out=fps_out, size_in=(info.width, info.height),
        size_out=(SCALE * info.width, SCALE * info.height), bit_depth=bits_out,
        seconds=time.perf_counter() - t_start, stages=stages, weights=str(weights), weights_trained=trained,
        device=str(up.device), precision=precision_name(up.dtype), tile=up.tile, warnings=warnings,
        events=detector.counts if detector is not None else None, resumed_frames=skip,
    )


# ------------------------------------------------------------------------------------------------
# the three stages


class _End:
    """Sentinel: the producer has finished."""


class _Stages:
    def __init__(self, src, dst, levels, up, writer, on_progress, total, stages, counts, detector=None, skip=0):
        self.src, self.dst, self.levels, self.up, self.writer = src, dst, levels, up, writer
        self.on_progress, self.total, self.stages, self.counts = on_progress, total, stages, counts
        self.detector, self.skip = detector, skip  # events (None: off); output frames already written
        self.q_in: queue.Queue = queue.Queue(QUEUE_IN)
        self.q_out: queue.Queue = queue.Queue(QUEUE_OUT)
        self.stop = threading.Event()
        self.errors: dict[str, BaseException] = {}  # stage -> exception, set by the helper threads
        self.encoded = False  # the writer closed cleanly

    def run(self) -> None:
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
                self.stages["events"] += time.perf_counter() - t
                self.counts["in"] += 1
                self._put(self.q_in, (x, mark))
            self._put(self.q_in, _End)
        finally:
            self.stages["decode"] = busy
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
                self._put(self.q_out, y)
        finally:
            self.stages["model"] = self.up.model_seconds  # the model and tile blending, not waiting
            out.close()

    def _encode(self) -> None:
        busy = 0.0
        while True:
            item = self._get(self.q_out)
            if item is _End:
                break
            t = time.perf_counter()
            # numpy, single-threaded: a torch op here would start a second OpenMP team in this
            # thread, whose spinning threads take the cores from the model's (2-3x slower on 2 cores)
            if not np.isfinite(item.numpy()).all():  # NaN would be written as black, and exit 0
                raise NumericalError(
                    f"{self.src}: the network's output frame {self.counts['out']} holds NaN or infinite values, so "
                    "nothing was written; with --precision fp16 try fp32, else the weights do not suit this video"
                )
            raw = self.levels.from_unit(item[0])  # round, clip to the container's range (not to lo..hi)
            try:
                self.writer.write(raw)
            except OSError as e:
                raise output_error(e, self.dst) from e
            busy += time.perf_counter() - t
            self.counts["out"] += 1
            self.stages["encode"] = busy
            if self.on_progress is not None:
                self.on_progress(self.counts["out"], self.total)
        t = time.perf_counter()
        try:
            self.writer.close()
        except OSError as e:
            raise output_error(e, self.dst) from e
        self.encoded = True
        self.stages["encode"] = busy + time.perf_counter() - t

    def _close_quietly(self) -> None:
        # After a failure: release the temporary file; its content is discarded anyway.
        try:
            self.writer.close()
        except Exception:
            pass


class _Stopped(TherisError):
    """Internal: this stage stops because another one failed (that one's error is raised instead)."""
