"""atomic_output: complete files only, nothing left behind, existing files never touched."""

import errno
import os

import pytest

from theris_cli.errors import OutputError
from theris_cli.outputs import PARTIAL_MARK, atomic_output


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if PARTIAL_MARK in p.name)


def test_written_under_a_temporary_name_then_renamed(tmp_path):
    dst = tmp_path / "out.mp4"
    with atomic_output(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and PARTIAL_MARK in tmp.name
        assert not dst.exists()
        tmp.write_bytes(b"video")
    assert dst.read_bytes() == b"video" and leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_error_or_ctrl_c_removes_the_temporary_and_keeps_the_old_file(tmp_path, exc):
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"old")
    with pytest.raises(type(exc)):
        with atomic_output(dst, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise exc
    assert dst.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        with atomic_output(dst):
            pass
    with atomic_output(dst, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert dst.read_bytes() == b"new"


def test_input_equal_to_output_is_refused(tmp_path):
    src = tmp_path / "in.mkv"
    src.write_bytes(b"x")
    for dst in [src, tmp_path / "sub" / ".." / "in.mkv"]:
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError, match="is the input"):
            with atomic_output(dst, overwrite=True, src=src):
                pass
    assert src.read_bytes() == b"x"


def test_unwritable_destinations(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_output(tmp_path / "nowhere" / "out.mkv"):
            pass
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="not a folder"):
        with atomic_output(tmp_path / "file" / "out.mkv"):
            pass
    with pytest.raises(OutputError, match="is a folder"):
        with atomic_output(tmp_path):
            pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            with atomic_output(ro / "out.mkv"):
                pass
    finally:
        ro.chmod(0o700)


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    dst = tmp_path / "out.mkv"
    with pytest.raises(OutputError, match="disk full while writing") as ei:
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"part")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert "\n" not in str(ei.value)
    assert not dst.exists() and leftovers(tmp_path) == []


def test_a_read_only_file_system_is_called_so(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import theris_cli.outputs as outputs

    monkeypatch.setattr(outputs.os, "statvfs", lambda p: SimpleNamespace(f_flag=os.ST_RDONLY))
    with pytest.raises(OutputError, match="read-only file system") as e:
        outputs.check_destination(tmp_path / "out.mkv")
    assert "permission denied" not in str(e.value)


def test_a_partial_left_by_a_killed_writer_is_removed_by_the_next_run(tmp_path):
    import fcntl

    from theris_cli.outputs import PARTIAL_MARK, atomic_output

    dead = tmp_path / f"out{PARTIAL_MARK}a1b2c3.mkv"  # kill -9: nobody holds it
    dead.write_bytes(b"")
    alive = tmp_path / f"out{PARTIAL_MARK}d4e5f6.mkv"  # a run still writing: it holds the lock
    alive.write_bytes(b"half")
    fd = os.open(alive, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = tmp_path / f"clip{PARTIAL_MARK}a1b2c3.mkv"  # another output's: not ours to judge
    other.write_bytes(b"")
    try:
        with atomic_output(tmp_path / "out.mkv") as tmp:
            tmp.write_bytes(b"done")
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.mkv", alive.name, other.name])


def test_kill_9_of_a_writer_leaves_a_partial_that_the_next_run_removes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from theris_cli.outputs import atomic_output\n"
        "with atomic_output(sys.argv[1]) as tmp:\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out.mkv")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        partials = [p for p in tmp_path.iterdir() if PARTIAL_MARK in p.name]
        assert len(partials) == 1
        with atomic_output(tmp_path / "other.mkv"):  # a writer at work keeps its partial file
            pass
        from theris_cli.outputs import remove_dead_partials

        assert remove_dead_partials(tmp_path / "out.mkv") == [] and partials[0].exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.05)
    with atomic_output(tmp_path / "out.mkv") as tmp:
        tmp.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.mkv", "out.mkv"]
