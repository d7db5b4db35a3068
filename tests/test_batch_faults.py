"""Fault injection for the batch runner: ENOSPC, EACCES, EROFS and EIO at each write it makes.

The writes: the output (its final rename), the completion record, the lock, the report. Each fault
must end in a one-line error or a failed file (never a traceback), a correct summary and report,
nothing half written, and a rerun that finishes what remains without redoing finished files.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from test_batch import files_under, run, upscaler

from theris_cli.batch.runner import BatchResult
from theris_cli.cli import app
from theris_cli.commands.upscale import run_batch_command
from theris_cli.errors import BatchError, OutputError, TherisError, UsageError
from theris_cli.outputs import PARTIAL_MARK

ERRNOS = {"ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES, "EROFS": errno.EROFS, "EIO": errno.EIO}
STOPS = {"ENOSPC", "EROFS"}  # the file system is full or read-only: every further file would fail too


def _in_dir(root: Path) -> Path:
    root.mkdir()
    for n in "abc":
        (root / f"{n}.mp4").write_bytes(f"video {n}".encode())
    return root


class Faults:
    """Fail os.replace / os.open for paths that `where` selects, with `code`, while armed."""

    def __init__(self, monkeypatch, out_dir: Path, point: str, code: int, only: str | None = None):
        self.out_dir, self.point, self.code, self.only, self.armed, self.hits = out_dir, point, code, only, True, 0
        real_replace, real_open = os.replace, os.open

        def replace(src, dst, *a, **k):
            self._maybe_fail("replace", Path(dst))
            return real_replace(src, dst, *a, **k)

        def open_(path, flags, *a, **k):
            self._maybe_fail("open", Path(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "open", open_)

    def _selects(self, call: str, path: Path) -> bool:
        try:
            rel = path.resolve().relative_to(self.out_dir.resolve())
        except ValueError:
            return self.point == "report" and call == "replace" and path.name.endswith(".json")  # --report
        parts = rel.parts
        if self.only and self.only not in path.name:
            return False
        return {
            "output": call == "replace" and ".theris" not in parts,
            "record": call == "replace" and parts[:2] == (".theris", "done"),
            "lock": call == "open" and parts[:2] == (".theris", "locks"),
            "report": call == "replace" and parts[:2] == (".theris", "reports"),
        }[self.point]

    def _maybe_fail(self, call: str, path: Path) -> None:
        if self.armed and self._selects(call, path):
            self.hits += 1
            raise OSError(self.code, os.strerror(self.code), str(path))


def _no_debris(out_dir: Path) -> None:
    everything = [p for p in out_dir.rglob("*") if p.is_file()]
    assert not [p for p in everything if PARTIAL_MARK in p.name or p.name.endswith(".tmp")]
    assert not list((out_dir / ".theris" / "locks").iterdir())


@pytest.mark.parametrize("name", list(ERRNOS))
@pytest.mark.parametrize("point", ["output", "record", "lock"])
def test_a_write_fault_on_one_file_then_a_rerun_finishes_the_rest(tmp_path, monkeypatch, point, name):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    faults = Faults(monkeypatch, out_dir, point, ERRNOS[name], only="b.")
    calls: list[str] = []
    result = run(in_dir, out_dir, upscale=upscaler(calls=calls), report=tmp_path / "r.json")
    assert faults.hits >= 1
    status = {f.input: f.status for f in result.files}
    b = next(f for f in result.files if f.input == "b.mp4")
    assert b.status == "failed" and b.error_type == "OutputError" and "\n" not in b.reason
    assert os.strerror(ERRNOS[name]).lower() in b.reason.lower() or "disk full" in b.reason
    if name in STOPS:  # stop at once rather than run the model on every remaining file
        assert status == {"a.mp4": "done", "b.mp4": "failed"} and result.not_started == 1
        assert result.stopped.startswith(b.reason[:20]) and "(at b.mp4)" in result.stopped
    else:
        assert status == {"a.mp4": "done", "b.mp4": "failed", "c.mp4": "done"} and not result.stopped
    report = json.loads((tmp_path / "r.json").read_text())  # the report still tells the truth
    assert report["counts"]["failed"] == 1 and report["counts"]["done"] == len(result.files) - 1
    assert report["stopped"] == result.stopped
    assert not (out_dir / ".theris" / "done" / "b.mkv.json").exists()
    _no_debris(out_dir)

    faults.armed = False
    calls.clear()
    again = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert {f.input: f.status for f in again.files} == {
        "a.mp4": "skipped", "b.mp4": "done", "c.mp4": "done" if name in STOPS else "skipped"
    }
    assert [Path(c).name for c in calls] == (["b.mp4", "c.mp4"] if name in STOPS else ["b.mp4"])
    assert files_under(out_dir) == {"a.mkv", "b.mkv", "c.mkv"}
    assert all((out_dir / f"{n}.mkv").read_bytes() == f"x4:video {n}".encode() for n in "abc")
    _no_debris(out_dir)


@pytest.mark.parametrize("name", list(ERRNOS))
def test_a_report_that_cannot_be_written_loses_no_work(tmp_path, monkeypatch, name):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    faults = Faults(monkeypatch, out_dir, "report", ERRNOS[name])
    result = run(in_dir, out_dir, report=tmp_path / "r.json")
    assert faults.hits == 2  # OUT_DIR's own report and --report were both tried
    assert [f.status for f in result.files] == ["done"] * 3 and not result.stopped
    assert len(result.report_errors) == 2 and all("cannot write the report" in e for e in result.report_errors)
    assert not (tmp_path / "r.json").exists()
    _no_debris(out_dir)
    faults.armed = False
    assert [f.status for f in run(in_dir, out_dir).files] == ["skipped"] * 3


def test_the_cli_prints_the_summary_then_one_line_when_the_report_fails(tmp_path, monkeypatch, capsys):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    Faults(monkeypatch, out_dir, "report", errno.EIO)
    with pytest.raises(OutputError) as e:
        run_batch_command(
            in_dir, out_dir, quiet=False, upscale=upscaler(), model=object(), weights="stand-in",
            report=tmp_path / "r.json",
        )
    assert "cannot write the report" in str(e.value) and "\n" not in str(e.value)
    out = capsys.readouterr()
    assert "3 done, 0 skipped, 0 busy, 0 failed" in out.out  # the summary table's caption
    assert "warning: cannot write the report" in out.err  # the other report's failure


def test_the_cli_says_where_a_full_disk_stopped_the_batch(tmp_path, monkeypatch, capsys):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    Faults(monkeypatch, out_dir, "output", errno.ENOSPC, only="b.")
    with pytest.raises(BatchError) as e:
        run_batch_command(in_dir, out_dir, quiet=True, upscale=upscaler(), model=object(), weights="stand-in")
    msg = str(e.value)
    assert msg.startswith("stopped: disk full while writing") and "1 inputs not started" in msg and "\n" not in msg


def test_report_in_a_missing_folder_is_refused_before_any_work_and_not_created(tmp_path):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    with pytest.raises(UsageError, match="does not exist"):
        run(in_dir, out_dir, report=tmp_path / "nonexistent" / "dir" / "r.json")
    assert not (tmp_path / "nonexistent").exists() and not out_dir.exists()
    with pytest.raises(UsageError, match="is a folder"):
        run(in_dir, out_dir, report=tmp_path)


@pytest.mark.parametrize("layout", ["file", "below_a_file"])
def test_out_dir_that_cannot_be_made_is_one_line(tmp_path, layout):
    in_dir = _in_dir(tmp_path / "in")
    (tmp_path / "f").write_text("a file")
    out_dir = tmp_path / "f" if layout == "file" else tmp_path / "f" / "out"
    with pytest.raises(TherisError) as e:
        run(in_dir, out_dir)
    assert str(out_dir) in str(e.value) and "\n" not in str(e.value)


def test_read_only_out_dir_is_one_line(tmp_path, monkeypatch):
    in_dir, out_dir = _in_dir(tmp_path / "in"), tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if self == out_dir or out_dir in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(OutputError, match="cannot create OUT_DIR .*Read-only file system"):
        run(in_dir, out_dir)


def test_batch_cli_errors_are_library_errors_not_tracebacks(tmp_path):
    # through Typer, as `theris batch` runs: main() turns a TherisError into one line
    from typer.testing import CliRunner

    in_dir = _in_dir(tmp_path / "in")
    (tmp_path / "f").write_text("a file")
    for args in (
        [in_dir, tmp_path / "f"],
        [in_dir, tmp_path / "f" / "out"],
        [in_dir, tmp_path / "out", "--report", tmp_path / "nonexistent" / "r.json"],
    ):
        res = CliRunner().invoke(app, ["batch", *map(str, args), "-w", "tiny-random", "--device", "cpu", "-q"])
        assert isinstance(res.exception, TherisError), (args, res.exception)
    assert not (tmp_path / "nonexistent").exists()


def test_batch_result_keeps_its_report_fields():
    assert {"not_started", "report_errors"} <= set(BatchResult("i", "o", "0/1", {}).to_dict())


def test_a_damaged_file_is_never_recorded_done(tmp_path):
    # the repro through the real pipeline: FFV1 with 200 zeroed bytes among good files
    # was recorded as done in 4 of 4 batch runs, so every rerun skipped it
    import numpy as np
    from clips import write_clip

    from theris_cli.weights import load_model

    in_dir = tmp_path / "in"
    rng = np.random.default_rng(0)
    for name in ("a.mkv", "bad.mkv", "c.mkv"):
        write_clip(in_dir / name, rng.integers(0, 255, (20, 32, 48), dtype=np.uint8))
    data = bytearray((in_dir / "bad.mkv").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 200] = bytes(200)
    (in_dir / "bad.mkv").write_bytes(bytes(data))
    model = load_model("tiny-random", device="cpu")
    for attempt in range(2):
        out_dir = tmp_path / f"out{attempt}"
        result = run(in_dir, out_dir, upscale=None, model=model, weights="tiny-random", device="cpu")
        status = {f.input: f.status for f in result.files}
        assert status == {"a.mkv": "done", "bad.mkv": "failed", "c.mkv": "done"}, attempt
        bad = next(f for f in result.files if f.input == "bad.mkv")
        assert "corrupt or truncated at frame" in bad.reason and bad.error_type == "InputError"
        assert not (out_dir / ".theris" / "done" / "bad.mkv.json").exists() and not (out_dir / "bad.mkv").exists()
        again = run(in_dir, out_dir, upscale=None, model=model, weights="tiny-random", device="cpu")
        assert {f.input: f.status for f in again.files}["bad.mkv"] == "failed"  # retried, not skipped


def test_a_full_disk_met_by_the_encoder_stops_the_batch(tmp_path, monkeypatch):
    # the real pipeline: FFmpeg's write fails with ENOSPC inside the encoder (an OutputError made
    # in video/encode.py), which carried no errno, so the batch went on to the next file
    import av
    import numpy as np
    from clips import write_clip

    from theris_cli.outputs import output_error  # the encoder's errors are made by it too
    from theris_cli.video import encode
    from theris_cli.weights import load_model

    in_dir = tmp_path / "in"
    for name in "abc":
        write_clip(in_dir / f"{name}.mkv", np.zeros((3, 12, 16), np.uint8))
    real_write = encode.VideoWriter.write

    def write(self, frame):
        if self.path.name.startswith("b"):
            raise output_error(av.error.OSError(errno.ENOSPC, "No space left on device"), self.path, "frame 0")
        return real_write(self, frame)

    monkeypatch.setattr(encode.VideoWriter, "write", write)
    model = load_model("tiny-random", device="cpu")
    result = run(in_dir, tmp_path / "out", upscale=None, model=model, weights="tiny-random", device="cpu")
    assert [(f.input, f.status) for f in result.files] == [("a.mkv", "done"), ("b.mkv", "failed")]
    assert result.not_started == 1 and "disk full while writing" in result.stopped
