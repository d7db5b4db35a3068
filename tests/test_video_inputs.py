"""One set of rules for which files in a folder are inputs: batch, evaluate and train agree."""

import pytest

from clips import ramp_frames, write_clip
from theris_cli.batch.discover import discover
from theris_cli.errors import InputError
from theris_cli.eval.evaluate import find_clips
from theris_cli.train.dataset import find_videos
from theris_cli.video.inputs import find_inputs, walk_inputs


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "rec"
    write_clip(root / "b.MP4", ramp_frames(3, 16, 16))
    write_clip(root / "site" / "a.mkv", ramp_frames(3, 16, 16))
    write_clip(root / "site" / "seq" / "frame_%04d.png", ramp_frames(3, 16, 16))
    write_clip(root / ".cache" / "hidden.mkv", ramp_frames(2, 16, 16))  # hidden folder: skipped
    (root / "site" / "._a.mkv").write_bytes(b"macOS resource fork")  # hidden file: skipped
    (root / "notes.txt").write_text("not a video")
    (root / "link").symlink_to(root / "site", target_is_directory=True)  # symlinked folder: skipped
    return root


def test_walk_finds_videos_and_sequences_and_skips_hidden_and_links(tree):
    found = walk_inputs(tree)
    assert [(i.rel.as_posix(), i.kind) for i in found] == [
        ("b.MP4", "video"), ("site/a.mkv", "video"), ("site/seq", "images")]
    assert found[2].src == tree / "site" / "seq" / "frame_%04d.png"


def test_batch_evaluate_and_train_see_the_same_inputs(tree, tmp_path):
    batch = [j.src for j in discover(tree.resolve(), (tmp_path / "out").resolve())]
    assert find_clips([tree.resolve()]) == batch
    assert find_videos([tree.resolve()]) == batch


def test_files_and_patterns_are_taken_as_given_and_missing_paths_fail(tree):
    assert find_inputs([tree / "b.MP4", tree / "x_%03d.png"]) == [tree / "b.MP4", tree / "x_%03d.png"]
    with pytest.raises(InputError, match="no such file or folder"):
        find_inputs([tree / "missing.mkv"])
    (tree / "empty").mkdir()
    with pytest.raises(InputError, match="no videos or numbered image sequences"):
        find_inputs([tree / "empty"])
