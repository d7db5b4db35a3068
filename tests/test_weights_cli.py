"""`theris weights list | download | verify | path`, through cli.main (exit codes and one-line errors)."""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import pytest
from fake_hub import COMMIT, hub  # noqa: F401 - `hub` is a fixture

from theris_cli import cli
from theris_cli.weights import DEFAULT_MODEL, FALLBACK_MODEL, REGISTRY, ModelEntry, load_model, save_checkpoint
from theris_cli.weights import registry


def run(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["theris", *args])
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: one row a line
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hub_entry(hub, tmp_path, monkeypatch):  # noqa: F811
    path = save_checkpoint(tmp_path / "t.safetensors", load_model("tiny-random"))
    data = path.read_bytes()
    hub.upload("theris-test/tiny", "t.safetensors", data)
    e = ModelEntry(
        name="test-hub", description="test", source="hub", config="tiny", trained=True, filename="t.safetensors",
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), repo_id="theris-test/tiny", revision=COMMIT,
    )
    monkeypatch.setitem(REGISTRY, e.name, e)
    return e


def test_list_shows_every_model_and_the_fallback(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "shipped_dir", lambda: tmp_path)
    code, out, _ = run(capsys, monkeypatch, "weights", "list")
    assert code == 0
    for name in REGISTRY:
        assert name in out
    line = next(l for l in out.splitlines() if FALLBACK_MODEL in l and "│" in l)
    assert "fallback" in line
    assert f"{DEFAULT_MODEL} is not in this install" in out
    assert "not published yet" in out


def test_list_marks_the_shipped_default_with_its_hash(capsys, monkeypatch, tmp_path):
    entry = REGISTRY[DEFAULT_MODEL]
    path = save_checkpoint(tmp_path / entry.filename, load_model("tiny-random"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(registry, "shipped_dir", lambda: tmp_path)
    monkeypatch.setitem(REGISTRY, DEFAULT_MODEL, dataclasses.replace(entry, config="tiny", sha256=sha, size=path.stat().st_size))
    code, out, _ = run(capsys, monkeypatch, "weights", "list")
    line = next(l for l in out.splitlines() if l.startswith("│ " + DEFAULT_MODEL))
    assert "default" in line and sha[:12] in line and "in package" in line
    assert "not in this install" not in out

    code, out, _ = run(capsys, monkeypatch, "weights", "verify", DEFAULT_MODEL)
    assert code == 0 and "ok" in out
    code, out, _ = run(capsys, monkeypatch, "weights", "path", DEFAULT_MODEL)
    assert (code, out.strip()) == (0, str(path))

    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # damaged after install
    code, out, err = run(capsys, monkeypatch, "weights", "verify")
    assert code == 1 and "FAILED" in out and "checksum mismatch" in out
    assert err.strip().startswith("error: verification failed for theris-small")


def test_download_verify_path_from_the_hub(capsys, monkeypatch, hub_entry):
    code, out, err = run(capsys, monkeypatch, "weights", "path", "test-hub")
    assert code == 1 and "not downloaded: run `theris weights download test-hub`" in err
    code, out, _ = run(capsys, monkeypatch, "weights", "download", "test-hub")
    assert code == 0 and "downloaded and verified" in out
    code, out, _ = run(capsys, monkeypatch, "weights", "path", "test-hub")
    assert code == 0 and out.strip().endswith("t.safetensors")
    code, out, _ = run(capsys, monkeypatch, "weights", "verify", "test-hub")
    assert code == 0
    code, out, _ = run(capsys, monkeypatch, "weights", "list")
    assert "cached" in next(l for l in out.splitlines() if "test-hub" in l)


def test_errors_are_one_line_with_a_non_zero_exit(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "shipped_dir", lambda: tmp_path)
    for args, message in [
        (("weights", "download", "nope"), "unknown model 'nope': choose one of"),
        (("weights", "download", "theris-base"), "theris-base is not published yet"),
        (("weights", "path", "tiny-random"), "built in memory"),
        (("weights", "verify", "theris-base"), "verification failed for theris-base"),
    ]:
        code, _, err = run(capsys, monkeypatch, *args)
        assert code == 1, args
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    # the shipped default missing from its folder is a failure of `verify` (all), not a silent skip
    code, _, err = run(capsys, monkeypatch, "weights", "verify")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err


def test_download_and_verify_take_hf_files_and_paths_for_offline_nodes(capsys, monkeypatch, hub, tmp_path):  # noqa: F811
    path = save_checkpoint(tmp_path / "t.safetensors", load_model("tiny-random"))
    hub.upload("theris-test/tiny", "t.safetensors", path.read_bytes())
    spec = "hf://theris-test/tiny/t.safetensors"
    code, _, err = run(capsys, monkeypatch, "weights", "verify", spec)
    assert code == 1 and f"run `theris weights download {spec}`" in err
    code, out, _ = run(capsys, monkeypatch, "weights", "download", spec)
    assert code == 0 and out.startswith(f"{spec}: downloaded, tensor digest verified: ")
    hub.setenv("HF_HUB_OFFLINE", "1")  # the cluster node: no network, the cache pre-loaded
    assert load_model(spec).weights_info.source == "hub"
    code, out, _ = run(capsys, monkeypatch, "weights", "verify", spec)
    assert code == 0 and "ok" in out and "tensor digest verified" in out
    code, out, _ = run(capsys, monkeypatch, "weights", "verify", str(path))
    assert code == 0 and "tensor digest verified" in out
    code, out, _ = run(capsys, monkeypatch, "weights", "download", str(path))
    assert code == 0 and "a local file, nothing to download" in out
