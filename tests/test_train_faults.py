"""`theris train` under write faults (full disk, read-only or forbidden folder) and with damaged
--init weights: one line, a non-zero exit, never a traceback."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import pytest
import torch
from test_train_loop import FixedBatch, _settings
from typer.testing import CliRunner

from theris_cli.cli import app
from theris_cli.errors import OutputError, TherisError, UsageError, WeightsError
from theris_cli.train.loop import train

CLI = ["train", "--preset", "tiny", "--steps", "3", "--batch", "1", "--patch", "4", "--frames", "2",
       "--val-every", "0", "--device", "cpu"]


class FullDisk:
    """Writes to files under `root` whose name `fills(name, writes_so_far)` selects fail with ENOSPC."""

    def __init__(self, monkeypatch, root: Path, fills):
        self.root, self.fills, self.writes = root.resolve(), fills, 0
        real_open = builtins.open
        disk = self

        class Full:
            def __init__(self, f, name):
                self.f, self.name = f, name

            def write(self, data):
                disk.writes += 1
                if disk.fills(self.name, disk.writes):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.f.write(data)

            def __getattr__(self, attr):
                return getattr(self.f, attr)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        def open_(file, mode="r", *a, **k):
            f = real_open(file, mode, *a, **k)
            p = Path(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else None
            if p is not None and any(m in mode for m in "wax") and self.root in p.resolve().parents:
                return Full(f, p.name)
            return f

        monkeypatch.setattr(builtins, "open", open_)


def test_full_disk_at_a_log_flush_is_one_line(tmp_path, monkeypatch):
    FullDisk(monkeypatch, tmp_path, lambda name, n: name == "log.jsonl" and n >= 3)
    with pytest.raises(OutputError, match=r"disk full while writing .*log\.jsonl") as e:
        train(_settings(steps=6), FixedBatch(), tmp_path / "run")
    assert "\n" not in str(e.value)


def test_full_disk_at_a_checkpoint_mid_run_is_one_line(tmp_path, monkeypatch):
    # the checkpoint cannot be written, and the log's last line neither: the checkpoint's error is said
    FullDisk(monkeypatch, tmp_path, lambda name, n: name.endswith(".tmp") or n > 4)
    with pytest.raises(WeightsError, match=r"cannot write checkpoint .*step-000002\.safetensors: No space left") as e:
        train(_settings(steps=6, checkpoint_steps=2, log_every=100), FixedBatch(), tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_an_unwritable_out_is_one_line_from_the_cli(tmp_path, monkeypatch, code, words):
    real_mkdir = os.mkdir

    def mkdir(path, *a, **k):
        if Path(path).resolve().is_relative_to(tmp_path.resolve() / "ro"):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    r = CliRunner().invoke(app, CLI + ["--out", str(tmp_path / "ro" / "run")])
    assert isinstance(r.exception, OutputError), r.output  # main() prints it as one line, exit 1
    assert words in str(r.exception).lower() and "\n" not in str(r.exception)
    assert not (tmp_path / "ro").exists()


def test_init_with_nan_weights_is_one_line_and_makes_no_run_folder(tmp_path):
    from theris_cli.weights import load_checkpoint
    from theris_cli.weights.checkpoint import write_checkpoint

    base = train(_settings(steps=1), FixedBatch(), tmp_path / "base")
    ck = load_checkpoint(base.checkpoint)
    state = dict(ck.state_dict)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    bad = write_checkpoint(tmp_path / "nan.safetensors", ck.config, state, ck.metadata)
    args = [a for a in CLI if a not in ("--preset", "tiny")]
    r = CliRunner().invoke(app, args + ["--init", str(bad), "--out", str(tmp_path / "ft")])
    assert isinstance(r.exception, UsageError), r.output
    msg = str(r.exception)
    assert "NaN or infinite" in msg and name in msg and "--lr" not in msg and "\n" not in msg
    assert not (tmp_path / "ft").exists()
    assert isinstance(r.exception, TherisError)


def test_an_existing_read_only_out_is_one_line(tmp_path, monkeypatch):
    real_open = builtins.open
    out = tmp_path / "run"
    out.mkdir()

    def open_(file, mode="r", *a, **k):
        if any(m in mode for m in "wax") and Path(os.fsdecode(file)).parent == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", open_)
    with pytest.raises(OutputError, match=r"log\.jsonl: read-only file system") as e:
        train(_settings(steps=2), FixedBatch(), out)
    assert "\n" not in str(e.value) and list(out.iterdir()) == []
