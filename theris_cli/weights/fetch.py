"""Files for registry entries and hf:// specs: Hub downloads into the Hub cache, verified by SHA-256.

Downloads go through `huggingface_hub.hf_hub_download`, so HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE,
HF_ENDPOINT and tokens behave as for every other Hub client. It writes each download to a
process-unique ``*.incomplete`` file beside the blob and renames it only when complete, so a broken
transfer never becomes a cached file. Nothing is ever written into the installed package.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from theris_cli.errors import WeightsError
from theris_cli.weights.registry import ModelEntry, is_shipped_present, shipped_path

_CHUNK = 1 << 20  # bytes per read while hashing: constant memory for any file size
REACH_TIMEOUT_S = 10.0  # seconds to wait for the Hub's first answer (huggingface_hub's own ETag timeout)
_HF_SPEC_RE = re.compile(r"^hf://(?P<repo>[^/@\s]+/[^/@\s]+)/(?P<file>[^@\s]+?)(?:@(?P<rev>[^@\s/]+))?$")


def sha256_file(path: str | os.PathLike) -> str:
    """Lowercase hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str | None = None  # None: the repository's default branch

    def __str__(self) -> str:
        return f"hf://{self.repo_id}/{self.filename}" + (f"@{self.revision}" if self.revision else "")


def parse_hf_spec(spec: str) -> HubFile:
    """`hf://owner/repo/path/to/file.safetensors[@revision]` -> HubFile, or WeightsError."""
    m = _HF_SPEC_RE.match(spec)
    if not m:
        raise WeightsError(f"bad Hub spec {spec!r}: write hf://owner/repo/file.safetensors[@revision]")
    return HubFile(m["repo"], m["file"], m["rev"])


def hub_file(entry: ModelEntry) -> HubFile:
    if entry.source != "hub":
        raise ValueError(f"{entry.name} is not a Hub entry")
    if not entry.published:
        raise WeightsError(
            f"{entry.name} is not published yet: pass a local checkpoint with --weights PATH, "
            "or pick another model (`theris weights list`)"
        )
    return HubFile(entry.repo_id, entry.filename, entry.revision)


# --- the Hub cache -----------------------------------------------------------------------------


def cached_hub_path(hf: HubFile) -> Path | None:
    """The cached copy of a Hub file, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hf.repo_id, hf.filename, revision=hf.revision or "main")
    return Path(found) if isinstance(found, str) else None


def download_hub_file(hf: HubFile, *, label: str | None = None) -> Path:
    """`hf` in the Hub cache (downloaded when missing), or a one-line WeightsError."""
    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from theris_cli import __version__

    label = label or str(hf)
    endpoint = hf_constants.ENDPOINT
    if not hf_constants.HF_HUB_OFFLINE and cached_hub_path(hf) is None:
        _check_reachable(endpoint, label)
    try:
        with _quiet_retries():
            return Path(
                huggingface_hub.hf_hub_download(
                    hf.repo_id, hf.filename, revision=hf.revision, library_name="theris", library_version=__version__
                )
            )
    except LocalEntryNotFoundError as e:
        # hf_hub_download could not reach the Hub (or was told not to) and has no cached copy
        offline = hf_constants.HF_HUB_OFFLINE or isinstance(e.__cause__, OfflineModeIsEnabled)
        if offline:
            raise WeightsError(
                f"{label} is not in the Hub cache and HF_HUB_OFFLINE is set: unset it and run once with network "
                "access to download it, or pass a local file with --weights PATH"
            ) from None
        raise WeightsError(
            f"cannot reach the Hub at {endpoint} to download {label}, and it is not in the Hub cache "
            f"({_reason(e)}): check the connection, proxy or HF_ENDPOINT, then retry"
        ) from None
    except GatedRepoError:
        raise WeightsError(f"{label}: the repository {hf.repo_id} is gated: log in with `hf auth login` after accepting its terms") from None
    except RepositoryNotFoundError:
        raise WeightsError(
            f"{label}: repository {hf.repo_id} not found on {endpoint} (or private): check the name, or log in with `hf auth login`"
        ) from None
    except RevisionNotFoundError:
        raise WeightsError(f"{label}: revision {hf.revision!r} not found in {hf.repo_id}: check the revision") from None
    except RemoteEntryNotFoundError:
        raise WeightsError(f"{label}: file {hf.filename!r} not found in {hf.repo_id}@{hf.revision or 'main'}: check the path") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise WeightsError(f"the Hub at {endpoint} answered HTTP {status} for {label}: retry later") from None
    except Exception as e:
        if _is_transport_error(e):
            # a transfer that broke off (connection reset, timeout, truncated body) after huggingface_hub's
            # own retries; its process-unique *.incomplete file is already removed
            raise WeightsError(
                f"the download of {label} from {endpoint} was interrupted ({_reason(e)}); nothing was cached: retry"
            ) from None
        if isinstance(e, OSError):
            # disk full, unwritable cache, or a size mismatch after the transfer ("Consistency check failed")
            raise WeightsError(
                f"downloading {label} failed ({_reason(e)}); nothing was cached: check HF_HOME and free space, then retry"
            ) from None
        raise


def _check_reachable(endpoint: str, label: str) -> None:
    """Fail in one line, at once, when the Hub cannot be reached at all (no network, refused, bad
    HF_ENDPOINT): huggingface_hub would retry five times over about 25 s, printing each retry.
    One HEAD request through huggingface_hub's own HTTP client (its proxies and certificates); any
    HTTP answer counts as reachable, and the download's own retries still cover a flaky network."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=REACH_TIMEOUT_S, follow_redirects=False)
    except Exception as e:
        if not _is_transport_error(e):
            raise
        raise WeightsError(
            f"cannot reach the Hub at {endpoint} to download {label}, and it is not in the Hub cache "
            f"({_reason(e)}): check the connection, proxy or HF_ENDPOINT, then retry"
        ) from None


@contextmanager
def _quiet_retries():
    """Keep huggingface_hub's retry warnings (two lines a retry) off the terminal during a download:
    the outcome is reported in one line either way."""
    logger = logging.getLogger("huggingface_hub.utils._http")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_transport_error(e: BaseException) -> bool:
    """Network errors of whichever HTTP client this huggingface_hub uses (httpx2, httpx or requests)."""
    module = type(e).__module__.split(".")[0]
    return module in {"httpx2", "httpx", "httpcore", "requests", "urllib3"} or isinstance(e, (ConnectionError, TimeoutError))


def _reason(e: BaseException) -> str:
    cause = e.__cause__ or e
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def remove_cached(path: Path) -> None:
    """Delete a cached Hub file: the snapshot entry and the blob it links to."""
    if path.is_symlink():
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
    else:
        path.unlink(missing_ok=True)


# --- verification ------------------------------------------------------------------------------


def verify_file(path: Path, expected: str | None, name: str, *, cached: bool) -> str:
    """Check the SHA-256 of `path` against the registry; return the actual hash.

    A cached Hub copy that does not match is removed, so the next download starts clean.
    """
    if expected is None:
        raise WeightsError(
            f"{name}: no SHA-256 recorded in the registry, so {path} cannot be verified: "
            f"record it with `python -m theris_cli.weights --hash {path}`"
        )
    actual = sha256_file(path)
    if actual != expected.lower():
        if cached:
            remove_cached(path)
            todo = f"the bad copy was removed from the Hub cache; run `theris weights download {name}` again, and report it if it persists"
        else:
            todo = "the file was changed or damaged: reinstall theris, or record the new file's hash if you meant to replace it"
        raise WeightsError(f"{name}: checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}; {todo}")
    return actual


def entry_local_path(entry: ModelEntry) -> Path | None:
    """Where an entry's file is on this machine now (shipped or cached), without any network."""
    if entry.source == "shipped":
        return shipped_path(entry) if is_shipped_present(entry) else None
    if entry.source == "hub" and entry.published:
        return cached_hub_path(hub_file(entry))
    return None


def fetch_entry(entry: ModelEntry) -> Path:
    """The verified local file of a shipped or Hub entry (downloading a Hub one if it is not cached)."""
    if entry.source == "random":
        raise WeightsError(f"{entry.name} is built in memory and has no file")
    if entry.source == "shipped":
        path = shipped_path(entry)
        if not path.is_file():
            if entry.sha256 is None:
                raise WeightsError(
                    f"{entry.name} is not shipped yet (no {entry.filename} in this theris): pass a checkpoint with "
                    "--weights PATH, or see `theris weights list`"
                )
            raise WeightsError(
                f"{entry.name} should ship with theris but {path} is missing from this install: reinstall theris, "
                "or pass a checkpoint with --weights PATH"
            )
        verify_file(path, entry.sha256, entry.name, cached=False)
        return path
    path = download_hub_file(hub_file(entry), label=entry.name)
    verify_file(path, entry.sha256, entry.name, cached=True)
    return path
