"""Checkpoints: exact round trips, atomic writes, and clear refusals of everything else."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from theris_cli.errors import WeightsError
from theris_cli.model import PRESETS, THERIS
from theris_cli.weights import export_checkpoint, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from theris_cli.weights.checkpoint import EXTRA_PREFIX


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


def test_round_trip_is_exact(tmp_path, tiny):
    metadata = {"step": 1200, "lr": 3e-4, "clips": ["lepton_hedgehog.mkv"], "loss": {"tfm": 0.0123}, "note": "ü"}
    extra = {
        "optim.state.0.exp_avg": torch.randn(3, 4),
        "optim.state.0.step": torch.tensor(1200, dtype=torch.int64),
        "ema.bf16": torch.randn(5).to(torch.bfloat16),
    }
    path = save_checkpoint(tmp_path / "run" / "last.safetensors", tiny, metadata=metadata, extra_tensors=extra)
    ck = load_checkpoint(path)

    assert ck.config == tiny.config == PRESETS["tiny"]
    assert ck.metadata == metadata
    ref = tiny.state_dict()
    assert ck.state_dict.keys() == ref.keys()  # extras kept out of the state_dict
    for k, v in ref.items():
        assert ck.state_dict[k].dtype == v.dtype and torch.equal(ck.state_dict[k], v), k
    assert ck.extra_tensors.keys() == extra.keys()
    for k, v in extra.items():
        assert ck.extra_tensors[k].dtype == v.dtype and torch.equal(ck.extra_tensors[k], v), k
    assert ck.theris_version and ck.format_version == 1
    assert sorted(os.listdir(path.parent)) == ["last.safetensors"]  # no temporary file left


def test_saved_model_loads_back_and_computes_the_same(tmp_path, tiny):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny)
    model = load_model(str(path))
    assert not model.training and model.weights_info.source == "file"
    x = torch.rand(1, 2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), tiny(x))


def test_overwrite_is_atomic(tmp_path, tiny, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny, metadata={"v": 1})
    before = path.read_bytes()

    def full_disk(fd):  # the file is written, the flush to disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(WeightsError, match="cannot write checkpoint .*No space left"):
        save_checkpoint(path, tiny, metadata={"v": 2})
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_export_drops_extra_tensors(tmp_path, tiny):
    src = save_checkpoint(tmp_path / "train.safetensors", tiny, {"step": 5}, {"opt": torch.zeros(1000)})
    dst = export_checkpoint(src, tmp_path / "ship.safetensors")
    info = inspect_checkpoint(dst)
    assert (info.n_extra, info.metadata) == (0, {"step": 5})
    assert dst.stat().st_size < src.stat().st_size


def test_export_sets_weightless_fields_and_records_them(tmp_path, tiny):
    import dataclasses

    off = THERIS(dataclasses.replace(tiny.config, use_still_blend=False, use_still_detail=False))
    src = save_checkpoint(tmp_path / "train.safetensors", off, {"step": 5})
    changes = {"use_still_blend": True, "use_still_detail": True, "motion_search": 6}
    dst = export_checkpoint(src, tmp_path / "ship.safetensors", changes)
    info = inspect_checkpoint(dst)
    assert info.config == dataclasses.replace(off.config, **changes)
    assert info.metadata == {"step": 5, "config_changes": changes}
    with pytest.raises(WeightsError, match="cannot set dim on export"):
        export_checkpoint(src, tmp_path / "bad.safetensors", {"dim": 3})
    with pytest.raises(WeightsError, match="use_still_blend must be a bool"):
        export_checkpoint(src, tmp_path / "bad.safetensors", {"use_still_blend": 2})
    assert not (tmp_path / "bad.safetensors").exists()


def test_metadata_and_names_are_checked(tmp_path, tiny):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "a.safetensors", tiny, metadata={"bad": object()})
    with pytest.raises(ValueError, match="reserved prefix"):
        from theris_cli.weights.checkpoint import write_checkpoint

        write_checkpoint(tmp_path / "b.safetensors", tiny.config, {EXTRA_PREFIX + "x": torch.zeros(1)})


def test_plain_safetensors_file_is_not_a_theris_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not a theris checkpoint") as err:
        load_model(str(path))
    assert "\n" not in str(err.value)


def test_garbage_is_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(300))
    with pytest.raises(WeightsError, match="is not a complete safetensors file") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


class _Boobytrap:
    """Unpickling this object creates a file: proof that a loader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    for name, write in (
        ("model.pt", lambda p: torch.save({"x": _Boobytrap(marker)}, p)),
        ("model.pkl", lambda p: p.write_bytes(pickle.dumps(_Boobytrap(marker)))),
    ):
        path = tmp_path / name
        write(path)
        with pytest.raises(WeightsError, match="pickled PyTorch file: theris never unpickles"):
            load_model(str(path))
    assert not marker.exists()


def _rewrite_header(src, dst, **changes):
    """Copy a checkpoint with some metadata values replaced (strings, as safetensors stores them)."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_unknown_config_is_refused(tmp_path, tiny):
    src = save_checkpoint(tmp_path / "m.safetensors", tiny)
    cfg = dict(tiny.config.to_dict(), future_knob=3)
    bad = _rewrite_header(src, tmp_path / "future.safetensors", model_config=json.dumps(cfg))
    with pytest.raises(WeightsError, match="network config this theris does not know.*future_knob") as err:
        load_model(str(bad))
    assert "\n" not in str(err.value)


def test_newer_format_is_refused(tmp_path, tiny):
    src = save_checkpoint(tmp_path / "m.safetensors", tiny)
    bad = _rewrite_header(src, tmp_path / "v9.safetensors", format_version="9", theris_version="9.0.0")
    with pytest.raises(WeightsError, match="written by theris 9.0.0 in checkpoint format 9.*upgrade theris"):
        load_checkpoint(bad)


def test_truncated_file_is_refused(tmp_path, tiny):
    src = save_checkpoint(tmp_path / "m.safetensors", tiny)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(WeightsError):
        load_checkpoint(cut)


def test_tensors_that_do_not_fit_the_config(tmp_path, tiny):
    state = dict(tiny.state_dict())
    state.pop(next(iter(state)))
    from theris_cli.weights.checkpoint import write_checkpoint

    path = write_checkpoint(tmp_path / "short.safetensors", tiny.config, state)
    with pytest.raises(WeightsError, match="do not fit the network its config describes"):
        load_model(str(path))


def test_missing_local_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(str(tmp_path / "nope.safetensors"))


def test_optimizer_state_resumes_exactly(tmp_path):
    from theris_cli.weights import pack_state, unpack_state

    def train_step(model, opt):
        opt.zero_grad()
        model(torch.rand(1, 1, 1, 4, 4, generator=torch.Generator().manual_seed(1))).square().mean().backward()
        opt.step()

    model = load_model("tiny-random").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    train_step(model, opt)
    tensors, skeleton = pack_state(opt.state_dict(), "optimizer")
    path = save_checkpoint(tmp_path / "run.safetensors", model, {"optimizer": skeleton, "step": 1}, tensors)

    ck = load_checkpoint(path)
    resumed = load_model(str(path)).train()
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=5.0)
    opt2.load_state_dict(unpack_state(ck.extra_tensors, ck.metadata["optimizer"]))
    assert opt2.param_groups[0]["betas"] == (0.9, 0.99) and opt2.param_groups[0]["lr"] == 1e-3
    train_step(model, opt)
    train_step(resumed, opt2)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def _tensor_data_offset(path) -> int:
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def test_tampered_tensor_data_is_refused_in_one_line(tmp_path, tiny):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny)
    data = bytearray(path.read_bytes())
    at = _tensor_data_offset(path) + 1000
    for i in range(64):  # 64 flipped bytes inside the tensor data: the header still parses
        data[at + i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert inspect_checkpoint(path).n_tensors > 0
    with pytest.raises(WeightsError, match="does not match the digest in its header") as e:
        load_model(str(path))
    assert "\n" not in str(e.value)


def test_a_checkpoint_without_a_digest_loads_with_a_note(tmp_path, tiny, caplog):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = {k: v for k, v in f.metadata().items() if k != "tensor_sha256"}
    save_file(load_file(str(path)), str(path), metadata=header)  # as an older theris wrote it
    with caplog.at_level("WARNING", logger="theris"):
        model = load_model(str(path))
    notes = [r.getMessage() for r in caplog.records if "no digest" in r.getMessage()]
    assert len(notes) == 1 and "loaded unverified" in notes[0] and "\n" not in notes[0]
    assert load_checkpoint(path).verified is False
    x = torch.rand(1, 2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), tiny(x))


def test_checkpoints_are_written_with_the_usual_permissions(tmp_path, tiny):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", tiny)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the group, as any other output


@pytest.mark.parametrize("code, words", [(30, "read-only file system"), (13, "choose a folder you can write to")])
def test_checkpoint_write_failures_say_what_to_do(tmp_path, tiny, monkeypatch, code, words):
    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(WeightsError, match=words):
        save_checkpoint(tmp_path / "m.safetensors", tiny)
    assert os.listdir(tmp_path) == []
