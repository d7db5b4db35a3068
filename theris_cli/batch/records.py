"""Completion records: the proof that an output is finished, for the same input and settings.

One small JSON file per output, `OUT_DIR/.theris/done/<output path>.json`, written atomically
(temporary name, fsync, rename) only after the output has its final name. An output counts as done
when its record parses and matches:
  - the input: same relative path and fingerprint (size and mtime in ns; for an image sequence
    the frame count, total size and newest mtime);
  - the settings: same hash of every option that changes the output pixels or container
    (weights, precision, window, tile, temporal factor, codec, crf, pix-fmt, extension; not the
    device, so a mixed CPU/GPU cluster agrees);
  - the output: exists with the recorded size, and with `--verify` also the recorded SHA-256.
A missing or mismatching record means "not done": the output is redone and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from theris_cli import __version__
from theris_cli.batch.discover import Job
from theris_cli.errors import OutputError
from theris_cli.weights.fetch import sha256_file  # the one streaming SHA-256: weights and outputs alike

RECORD_FORMAT = "theris-batch-record/1"


def settings_hash(settings: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def input_fingerprint(job: Job) -> dict[str, Any]:
    """Cheap identity of an input: changes when the input is replaced or edited (stat follows links)."""
    if job.kind == "video":
        st = job.src.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    stats = [f.stat() for f in job.frames]
    return {
        "frames": len(stats),
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max(s.st_mtime_ns for s in stats),
        "first": job.frames[0].name,
        "last": job.frames[-1].name,
    }


def record_path(state_dir: Path, job: Job) -> Path:
    return state_dir / "done" / (job.dst_rel.as_posix() + ".json")


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Write the record atomically; an OS error becomes an OutputError (the file is then not done)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(dict(record), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(
            f"cannot write its completion record {path}: {e.strerror or e}; the output is kept but not "
            "counted as done, so a rerun redoes it", errno=e.errno,
        ) from e
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def make_record(job: Job, dst: Path, fingerprint: dict, settings: Mapping[str, Any], **extra: Any) -> dict:
    st = dst.stat()
    return {
        "format": RECORD_FORMAT,
        "input": job.rel.as_posix(),
        "kind": job.kind,
        "input_fingerprint": fingerprint,
        "output": job.dst_rel.as_posix(),
        "output_size": st.st_size,
        "output_sha256": sha256_file(dst),
        "settings": dict(settings),
        "settings_hash": settings_hash(settings),
        "finished": time.time(),
        "theris_version": __version__,
        **extra,
    }


def read_record(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("format") == RECORD_FORMAT else None


def check_record(
    record: dict | None,
    job: Job,
    dst: Path,
    settings: Mapping[str, Any],
    fingerprint: dict,
    *,
    verify: bool = False,
    not_before: float | None = None,
) -> str | None:
    """None when `record` proves `dst` is a finished output of `job` (whose input now has
    `fingerprint`) with `settings`; else why not.

    `not_before` (unix seconds) rejects records written before it: `--overwrite` uses the run's
    start, so files another worker finished during this run are not done twice.
    """
    if record is None:
        return "no completion record"
    try:
        if record["input"] != job.rel.as_posix() or record["output"] != job.dst_rel.as_posix():
            return "record is for another file"
        if record["settings_hash"] != settings_hash(settings):
            return "settings changed"
        if record["input_fingerprint"] != fingerprint:
            return "input changed"
        if not_before is not None and float(record["finished"]) < not_before:
            return "--overwrite"
        if not dst.is_file() or dst.stat().st_size != record["output_size"]:
            return "output missing or changed"
        if verify and sha256_file(dst) != record["output_sha256"]:
            return "output checksum differs"
    except (KeyError, TypeError, ValueError, OSError) as e:
        return f"unreadable record ({e.__class__.__name__})"
    return None
