"""Hub downloads through the real huggingface_hub code path, against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest
import torch
from fake_hub import COMMIT, hub  # noqa: F401 - `hub` is a fixture

from theris_cli.errors import WeightsError
from theris_cli.weights import REGISTRY, ModelEntry, load_model, save_checkpoint
from theris_cli.weights.fetch import cached_hub_path, fetch_entry, parse_hf_spec
from theris_cli.weights.status import verify_entry

REPO, FILE = "theris-test/tiny", "tiny.safetensors"


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ck") / FILE
    save_checkpoint(path, load_model("tiny-random"), metadata={"note": "served by the fake hub"})
    return path.read_bytes()


@pytest.fixture
def entry(hub, tiny_bytes, monkeypatch) -> ModelEntry:  # noqa: F811
    """A published registry entry for a file on the fake Hub."""
    hub.upload(REPO, FILE, tiny_bytes)
    e = ModelEntry(
        name="test-hub", description="test", source="hub", config="tiny", trained=True, filename=FILE,
        sha256=hashlib.sha256(tiny_bytes).hexdigest(), size=len(tiny_bytes), repo_id=REPO, revision=COMMIT,
    )
    monkeypatch.setitem(REGISTRY, e.name, e)
    return e


def cache_files(hub):  # noqa: F811
    """Every file under the Hub cache's blobs/ and snapshots/ (links included)."""
    if not hub.cache_dir.exists():
        return []
    return sorted(
        str(p.relative_to(hub.cache_dir)) for p in hub.cache_dir.rglob("*")
        if (p.is_file() or p.is_symlink()) and ("blobs" in p.parts or "snapshots" in p.parts)
    )


@pytest.fixture
def no_backoff(monkeypatch):
    """huggingface_hub sleeps 1-8 s between retries; the tests need the retries, not the waits."""
    monkeypatch.setattr(time, "sleep", lambda s: None)


def test_download_lands_in_the_hub_cache_verified(hub, entry, tiny_bytes):  # noqa: F811
    path = fetch_entry(entry)
    assert path.read_bytes() == tiny_bytes
    assert hub.cache_dir in path.parents  # HF_HOME honoured; nothing written into the package
    assert hub.requests[0] == ("HEAD", "/")  # is the Hub there at all (see fetch._check_reachable)
    assert [m for m, _ in hub.requests[1:]] == ["HEAD", "GET"]
    assert f"/{REPO}/resolve/{COMMIT}/{FILE}" in hub.requests[1][1]
    model = load_model("test-hub")
    ref = load_model("tiny-random")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert model.weights_info.sha256 == entry.sha256 and not model.training


def test_cache_hit_makes_no_request(hub, entry):  # noqa: F811
    first = fetch_entry(entry)
    n = len(hub.requests)
    assert fetch_entry(entry) == first
    load_model("test-hub")
    assert len(hub.requests) == n  # a pinned commit in the cache needs no network at all
    assert cached_hub_path(parse_hf_spec(f"hf://{REPO}/{FILE}@{COMMIT}")) == first


def test_offline_after_caching(hub, entry):  # noqa: F811
    fetch_entry(entry)
    n = len(hub.requests)
    hub.setenv("HF_HUB_OFFLINE", "1")
    assert load_model("test-hub").weights_info.name == "test-hub"
    assert len(hub.requests) == n


def test_offline_without_cache_is_a_clear_error(hub, entry):  # noqa: F811
    hub.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not in the Hub cache and HF_HUB_OFFLINE is set") as err:
        load_model("test-hub")
    assert "\n" not in str(err.value)
    assert hub.requests == []


def test_checksum_mismatch_is_refused_and_the_bad_copy_removed(hub, entry):  # noqa: F811
    hub.tamper = True
    with pytest.raises(WeightsError, match="checksum mismatch") as err:
        fetch_entry(entry)
    msg = str(err.value)
    assert entry.sha256 in msg and "got " in msg and "theris weights download test-hub" in msg
    assert cache_files(hub) == []  # neither the blob nor the snapshot link is left
    hub.tamper = False
    assert fetch_entry(entry).is_file()  # the next try starts clean


def test_interrupted_download_never_becomes_a_cached_file(hub, entry, no_backoff):  # noqa: F811
    hub.interrupt = True
    with pytest.raises(WeightsError, match="interrupted.*nothing was cached") as err:
        fetch_entry(entry)
    assert "\n" not in str(err.value)
    assert cache_files(hub) == []  # no blob, no *.incomplete, no snapshot link
    assert cached_hub_path(parse_hf_spec(f"hf://{REPO}/{FILE}@{COMMIT}")) is None
    assert verify_entry(entry).outcome == "skipped"
    hub.interrupt = False
    assert fetch_entry(entry).is_file()


def test_hub_unreachable(hub, entry, no_backoff):  # noqa: F811
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsError, match=f"cannot reach the Hub at http://127.0.0.1:{port}"):
        fetch_entry(entry)


def test_hub_unreachable_fails_at_once_without_retry_noise(hub, entry, monkeypatch, capsys, caplog):  # noqa: F811
    # huggingface_hub retried 5 times over ~25 s, printing two lines a retry, before the error
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    with caplog.at_level("WARNING"), pytest.raises(WeightsError) as err:
        fetch_entry(entry)
    assert "\n" not in str(err.value) and not [s for s in slept if s >= 1]  # no retry backoff waited for
    assert "Retrying" not in capsys.readouterr().err + caplog.text


def test_hf_spec_downloads_any_file(hub, entry):  # noqa: F811
    model = load_model(f"hf://{REPO}/{FILE}@{COMMIT}")
    assert model.weights_info.source == "hub"
    assert load_model(f"hf://{REPO}/{FILE}").weights_info.sha256 == entry.sha256  # default branch


@pytest.mark.parametrize(
    "spec, message",
    [
        ("hf://theris-test/missing/x.safetensors", "repository theris-test/missing not found"),
        (f"hf://{REPO}/nope.safetensors", "file 'nope.safetensors' not found"),
        (f"hf://{REPO}/{FILE}@v9", "revision 'v9' not found"),
        ("hf://just-a-name", "bad Hub spec"),
    ],
)
def test_hub_errors_are_one_line(hub, entry, spec, message):  # noqa: F811
    with pytest.raises(WeightsError, match=message) as err:
        load_model(spec)
    assert "\n" not in str(err.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(WeightsError) as err:
        load_model("theris-huge")
    msg = str(err.value)
    assert "unknown model 'theris-huge'" in msg
    assert all(name in msg for name in REGISTRY)


def test_unpublished_entry_says_so():
    with pytest.raises(WeightsError, match="theris-base is not published yet"):
        load_model("theris-base")
