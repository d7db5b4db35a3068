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
