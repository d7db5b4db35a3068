"""run_batch(): upscale every input of a folder into a mirrored folder, unattended and resumable.

For each input of this worker's shard, in sorted order:
  done already (completion record matches)   -> skipped
  claimed by a live worker (lock file)       -> busy, left to that worker
  otherwise: claim, upscale to a temporary name, rename, hash, write the record, release.
A TherisError on one input (corrupt, unreadable, unsupported) fails that input only; any other
exception is a bug and is isolated too, reported as internal with its traceback. Failures to
load the model, Ctrl-C and SIGTERM stop the batch (after writing the report); so does a full or
read-only OUT_DIR (ENOSPC, EDQUOT, EROFS at any write: output, record, lock), which every further
file would meet too: that file fails, the rest are left for a rerun, and run_batch returns with
`stopped` set. A report that cannot be written is noted in `report_errors`, never fatal: the
outputs and records are what a rerun relies on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from theris_cli.batch.claims import Claim, lock_path, try_claim
from theris_cli.batch.discover import STATE_DIR, Job, PathFilter, check_roots, discover
from theris_cli.batch.paths import safe_output_path
from theris_cli.batch.records import (
    check_record, input_fingerprint, make_record, read_record, record_path, sha256_file, write_record,
)
from theris_cli.batch.shard import Shard, resolve_shard
from theris_cli.engine.options import UpscaleOptions
from theris_cli.errors import BackendUnavailable, DeviceError, InputError, OutputError, TherisError, UsageError, WeightsError
from theris_cli.outputs import output_error, remove_dead_partials, stops_everything

OUTPUT_EXTENSIONS = ("mkv", "mp4", "mov", "avi", "nut", "same")  # "same": keep each input's container
STATUSES = ("done", "skipped", "busy", "failed")
_SLURM_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURMD_NODENAME")
FATAL = (DeviceError, WeightsError, BackendUnavailable)  # errors that stop the batch instead of one file


@dataclass
class FileResult:
    input: str  # relative to IN_DIR; a sequence folder ends in '/'
    output: str  # relative to OUT_DIR
    status: str  # one of STATUSES
    reason: str = ""  # skipped/busy: why; failed: the one-line error message
    error_type: str = ""  # failed: the TherisError class, or "internal" for a bug
    traceback: str = ""  # internal errors only
    seconds: float = 0.0
    frames_in: Optional[int] = None
    frames_out: Optional[int] = None
    output_bytes: Optional[int] = None
    warnings: list[str] = field(default_factory=list)  # the pipeline's, e.g. false colour suspected
    # what event detection found (engine.events.EventCounts as a dict: repeated, splices, shutters;
    # frame indices of the input); None where it was off or the file was not processed
    events: Optional[dict[str, Any]] = None


@dataclass
class BatchResult:
    in_dir: str
    out_dir: str
    shard: str
    settings: dict[str, Any]
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    finished: Optional[float] = None
    stopped: str = ""  # why the batch stopped early: "interrupted" (Ctrl-C, SIGTERM) or the fatal error, and where
    discovered: int = 0  # inputs under IN_DIR after filters, before sharding
    shard_source: str = "none"  # "--shard", "slurm" or "none"
    slurm: dict[str, str] = field(  # the job this worker ran in, to match reports with Slurm logs
        default_factory=lambda: {k: v for k, v in os.environ.items() if k in _SLURM_KEYS}
    )
    files: list[FileResult] = field(default_factory=list)
    not_started: int = 0  # inputs of this shard left untouched because the batch stopped early
    report_errors: list[str] = field(default_factory=list)  # reports that could not be written

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.stopped and self.count("failed") == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = {s: self.count(s) for s in STATUSES}
        d["elapsed_s"] = round((self.finished or time.time()) - self.started, 3)
        d["format"] = "theris-batch-report/1"
        return d


class BatchListener:
    """Hooks for progress display; every method is optional (the default does nothing)."""

    def batch_start(self, jobs: Sequence[Job], total_bytes: int, result: BatchResult) -> None: ...
    def file_start(self, job: Job, index: int) -> None: ...
    def file_progress(self, frames_done: int, frames_total: Optional[int]) -> None: ...
    def file_end(self, job: Job, result: FileResult, input_bytes: int) -> None: ...


def input_bytes(job: Job) -> int:
    """An input's size on disk (a sequence: all its frames), 0 when unreadable."""
    try:
        return job.src.stat().st_size if job.kind == "video" else sum(f.stat().st_size for f in job.frames)
    except OSError:
        return 0


def run_batch(
    in_dir: Path | str,
    out_dir: Path | str,
    options: Optional[UpscaleOptions] = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    ext: str = "mkv",
    shard: Shard | str | None = None,
    overwrite: bool = False,
    verify: bool = False,
    stale_after: float = 600.0,
    model: Any = None,
    report: Path | str | None = None,
    listener: Optional[BatchListener] = None,
    upscale: Optional[Callable[..., Any]] = None,
    resume: bool = True,
    **fields: Any,
) -> BatchResult:
    """Upscale every video and image sequence under `in_dir` into the same tree under `out_dir`.

    `options` (or its fields as keywords, see UpscaleOptions.of) is what every file is upscaled
    with; the fields that change the output are hashed into each completion record.

    Returns a BatchResult (check `.ok`); raises UsageError for bad arguments, and lets model
    loading errors, KeyboardInterrupt and SystemExit through after writing the report. The report
    goes to `report` if given and always to OUT_DIR/.theris/reports/. `upscale` replaces
    pipeline.upscale_video (tests; it then checks its own options); `model` skips loading
    (`weights` then only labels the settings).
    """
    ext = ext.lower().lstrip(".")
    if ext not in OUTPUT_EXTENSIONS:
        raise UsageError(f"--ext {ext!r}: choose one of {', '.join(OUTPUT_EXTENSIONS)}")
    if stale_after <= 0:
        raise UsageError("--stale-after must be a positive number of seconds")
    from theris_cli.video.encode import check_crf

    options = UpscaleOptions.of(options, **fields)  # bad values fail the batch, once, before any work
    check_crf(options.crf, options.codec, None if ext == "same" else "." + ext)  # once, not once per file
    in_root, out_root = check_roots(in_dir, out_dir)
    shard = shard if isinstance(shard, Shard) else resolve_shard(shard)
    if upscale is None:
        from theris_cli.devices import resolve_device, resolve_precision
        from theris_cli.engine.pipeline import upscale_video as upscale

        resolve_precision(options.precision, resolve_device(options.device))  # a missing GPU, likewise
        if not resume:  # a file's unfinished segments are deleted, not continued
            upscale = functools.partial(upscale, resume=False)
    if options.weights is None:
        from theris_cli.weights import default_model

        # the name actually used, so shipping trained weights redoes outputs
        options = dataclasses.replace(options, weights=default_model())
    # What changes the output's pixels or container: a change makes finished files redo.
    settings = {**options.output_fields(), "ext": ext}
    weights = options.weights
    if model is None and Path(str(weights)).is_file():  # a local checkpoint: retraining it redoes outputs
        settings["weights_sha256"] = sha256_file(Path(str(weights)))

    report = check_report_path(report)
    all_jobs = discover(in_root, out_root, ext=ext, path_filter=PathFilter(include, exclude))
    if not all_jobs:  # before OUT_DIR is made: a wrong IN_DIR or filter leaves nothing behind
        which = " that --include/--exclude select" if include or exclude else ""
        raise InputError(f"IN_DIR {in_dir} holds no videos or image sequences{which}; check the folder "
                         "(videos: .mp4, .mkv, .avi, .mov, ...; sequences: a folder of numbered images)")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        for sub in ("done", "locks", "reports"):  # refuses a planted symlink out of OUT_DIR
            safe_output_path(out_root, f"{STATE_DIR}/{sub}/x", create_parents=True)
    except OSError as e:
        raise OutputError(
            f"cannot create OUT_DIR {out_dir} (or its {STATE_DIR} folder): {e.strerror or e}; choose another OUT_DIR",
            errno=e.errno,
        ) from None
    state = out_root / STATE_DIR
    jobs = [j for j in all_jobs if shard.owns(j.rel.as_posix())]

    result = BatchResult(
        str(in_root), str(out_root), str(shard), settings, discovered=len(all_jobs), shard_source=shard.source
    )
    listener = listener or BatchListener()
    worker = _Worker(
        out_root=out_root, state=state, settings=settings, options=options, upscale=upscale, model=model,
        verify=verify, stale_after=stale_after, listener=listener,
        not_before=result.started if overwrite else None, overwrite=overwrite,
    )
    sizes = [input_bytes(j) for j in jobs]
    listener.batch_start(jobs, sum(sizes), result)
    job = None
    try:
        for i, (job, size) in enumerate(zip(jobs, sizes)):
            listener.file_start(job, i)
            t0 = time.monotonic()
            fr = worker.one(job)
            fr.seconds = round(time.monotonic() - t0, 3)
            result.files.append(fr)
            listener.file_end(job, fr, size)
            if worker.stop_reason:
                result.not_started = len(jobs) - i - 1
                result.stopped = f"{worker.stop_reason} (at {job.name})"
                break
    except BaseException as e:
        result.stopped = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        unfinished = job is not None and not any(f.input == job.name for f in result.files)
        if unfinished:
            result.stopped += f" (during {job.name}, which is left unfinished)"
        result.not_started = len(jobs) - len(result.files) - unfinished
        raise
    finally:
        result.finished = time.time()
        _write_reports(result, state, report)
    return result


def check_report_path(report: Path | str | None) -> Optional[Path]:
    """Refuse a --report that cannot be written, before any work; its folder must exist (never made)."""
    if report is None:
        return None
    path = Path(report)
    if path.is_dir():
        raise UsageError(f"--report {report} is a folder; give a file name such as {path / 'report.json'}")
    if not path.parent.is_dir():
        what = "does not exist" if not path.parent.exists() else "is not a folder"
        raise UsageError(f"--report {report}: the folder {path.parent} {what}; create it or choose another path")
    return path


@dataclass
class _Worker:
    """The per-file steps of one batch run (state kept across files: the lazily loaded model)."""

    out_root: Path
    state: Path  # OUT_DIR/.theris
    settings: dict[str, Any]  # what the completion records must match
    options: UpscaleOptions  # passed through to upscale
    upscale: Callable[..., Any]
    model: Any
    verify: bool
    stale_after: float
    listener: BatchListener
    not_before: Optional[float]  # --overwrite: records older than this run do not count
    overwrite: bool
    stop_reason: str = ""  # set when OUT_DIR's file system is full or read-only: the batch stops

    def _load_model(self) -> Any:
        # Once per batch, and only when some file needs it: a rerun with everything done loads nothing.
        if self.model is None:
            from theris_cli.devices import resolve_device
            from theris_cli.weights import load_model

            self.model = load_model(self.options.weights, device=str(resolve_device(self.options.device)))
        return self.model

    def _done(self, job: Job, dst: Path, fingerprint: dict) -> Optional[str]:
        record = read_record(record_path(self.state, job))
        return check_record(record, job, dst, self.settings, fingerprint, verify=self.verify, not_before=self.not_before)

    def one(self, job: Job) -> FileResult:
        res = FileResult(input=job.name, output=job.dst_rel.as_posix(), status="failed")
        if job.problem:
            res.reason, res.error_type = job.problem, "InputError"
            return res
        try:
            dst = safe_output_path(self.out_root, job.dst_rel)
            fingerprint = input_fingerprint(job)
        except OutputError as e:
            res.reason, res.error_type = str(e), type(e).__name__
            return res
        except OSError as e:
            res.reason, res.error_type = f"cannot read {job.name}: {e.strerror or e}; check the file and its permissions", "InputError"
            return res
        if self._done(job, dst, fingerprint) is None:
            res.status, res.reason = "skipped", "already done"
            res.output_bytes = dst.stat().st_size
            return res

        try:
            claim = try_claim(
                lock_path(self.state / "locks", job.dst_rel.as_posix()), input_name=job.name, stale_after=self.stale_after
            )
        except OutputError as e:
            return self._failed(res, e, job)
        if not isinstance(claim, Claim):
            res.status = "busy"
            res.reason = f"being processed by {claim.describe()}" if claim else "being processed by another worker"
            return res
        with claim:
            if claim.recovered:  # its holder died mid-file: clear what it left beside the output
                remove_dead_partials(dst)
            if self._done(job, dst, fingerprint) is None:  # finished by another worker since we looked
                res.status, res.reason = "skipped", "already done by another worker"
                res.output_bytes = dst.stat().st_size
                return res
            model = self._load_model()  # errors here stop the batch: every file would fail alike
            try:
                self._process(job, dst, fingerprint, model, claim, res)
            except FATAL:  # about this machine or the model, not the file: every file would fail
                raise
            except TherisError as e:
                self._failed(res, e, job)
            except Exception as e:  # a bug: isolate it, keep its traceback for the report
                res.reason = f"internal error: {type(e).__name__}: {e}"
                res.error_type, res.traceback = "internal", traceback.format_exc()
        return res

    def _failed(self, res: FileResult, e: TherisError, job: Optional[Job] = None) -> FileResult:
        res.reason = _short(str(e), job) if job is not None else str(e)
        res.error_type = type(e).__name__
        if stops_everything(e):
            self.stop_reason = res.reason
        return res

    def _process(self, job: Job, dst: Path, fingerprint: dict, model: Any, claim: Claim, res: FileResult) -> None:
        rec = record_path(self.state, job)
        try:
            safe_output_path(self.out_root, rec.relative_to(self.out_root).as_posix(), create_parents=True)
            rec.unlink(missing_ok=True)  # the old record describes an output about to be replaced
            dst = safe_output_path(self.out_root, job.dst_rel, create_parents=True)
        except OSError as e:
            raise output_error(e, dst.parent) from e
        # An output without a valid record is not done (a crash between rename and record, other
        # settings, a changed input): it is ours to replace, OUT_DIR being the batch's folder.
        replace = self.overwrite or dst.exists()
        out = self.upscale(job.src, dst, options=self.options, model=model, overwrite=replace, on_progress=self._on_progress)
        res.frames_in = getattr(out, "frames_in", None)
        res.frames_out = getattr(out, "frames_out", None)
        res.warnings = list(getattr(out, "warnings", []))
        events = getattr(out, "events", None)
        res.events = asdict(events) if events is not None else None
        record = make_record(job, dst, fingerprint, self.settings, frames_in=res.frames_in, frames_out=res.frames_out)
        write_record(rec, record)
        if claim.lost:  # judged stale and taken over meanwhile (clock skew, --stale-after too short)
            res.reason = "another worker took the lock over while this one ran"
        res.status, res.output_bytes = "done", record["output_size"]

    def _on_progress(self, done: int, total: Optional[int] = None, *_: Any, **__: Any) -> None:
        self.listener.file_progress(done, total)


def _short(message: str, job: Job) -> str:
    """The message without a leading "<absolute input path>: ", which the report's input field says."""
    for prefix in (f"{job.src}: ", f"{job.src.parent}: " if job.kind == "images" else None):
        if prefix and message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _write_reports(result: BatchResult, state: Path, report: Optional[Path]) -> None:
    """Write OUT_DIR's report, then --report's; a failure is noted in `result.report_errors` (and in
    the other report, where that one can be written), never raised: the batch's work is done."""
    from theris_cli.batch.report import write_report

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.started))
    paths = [state / "reports" / f"{stamp}-{result.host}-{result.pid}-{uuid.uuid4().hex[:4]}.json"]
    paths += [report] if report is not None else []
    for path in paths:
        try:
            write_report(path, result)
        except OutputError as e:
            result.report_errors.append(str(e))
