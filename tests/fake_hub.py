"""A stand-in for the Hugging Face Hub's file endpoint, on 127.0.0.1, for tests with no network.

It answers HEAD and GET on ``/{owner}/{repo}/resolve/{revision}/{path}`` with the headers
huggingface_hub reads (X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size, Content-Length, Range),
and 404s carrying X-Error-Code as the Hub sends them. Switches make it misbehave: `tamper` serves
different bytes than were uploaded, `interrupt` drops the connection halfway through a body (and
refuses to answer any request after that).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the one commit every repository is at


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.tamper = False
        self.interrupt = False
        self._interrupted = False  # a body was cut: answer nothing more while `interrupt` is set
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def upload(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files[(repo_id, filename)] = data

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _error(self, status: int, code: str, commit: str | None = None) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            hub.log(self.command, self.path)
            parts = unquote(urlsplit(self.path).path).lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404, "RepoNotFound")
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if not any(r == repo_id for r, _ in hub.files):
                return self._error(404, "RepoNotFound")
            if revision not in (COMMIT, "main"):
                return self._error(404, "RevisionNotFound")
            data = hub.files.get((repo_id, filename))
            if data is None:
                return self._error(404, "EntryNotFound", COMMIT)
            if hub.tamper:
                data = bytes([data[0] ^ 0xFF]) + data[1:]

            if body and hub.interrupt and hub._interrupted:
                self.close_connection = True  # the network is gone: no answer at all
                return
            start = 0
            rng = self.headers.get("Range")
            if body and rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes="):-1])
            payload = data[start:]
            etag = '"' + hashlib.sha256(data).hexdigest() + '"'

            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("ETag", etag)
            self.send_header("X-Linked-Etag", etag)  # LFS files: the sha256 of the content
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if not body:
                return
            if hub.interrupt:
                hub._interrupted = True
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True  # half a body, then the connection drops
                return
            self.wfile.write(payload)

    return Handler


def reload_hub_constants() -> None:
    """huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, into
    `huggingface_hub.constants`, when it is imported; its functions then read those module
    attributes at call time. Re-executing the module after changing the environment is enough."""
    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)


@pytest.fixture
def hub(tmp_path):
    """A running FakeHub, with HF_ENDPOINT pointing at it and HF_HOME in tmp_path.

    `hub.setenv(NAME, VALUE)` changes the environment for the rest of the test (and reloads the
    constants), e.g. `hub.setenv("HF_HUB_OFFLINE", "1")`. Everything is undone afterwards.
    """
    fake = FakeHub().start()
    with pytest.MonkeyPatch.context() as mp:
        def setenv(name: str, value: str) -> None:
            mp.setenv(name, value)
            reload_hub_constants()

        for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                     "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
            mp.delenv(name, raising=False)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")  # never send the fake Hub's traffic to a proxy
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        mp.setenv("HF_HOME", str(tmp_path / "hf-home"))
        mp.setenv("HF_ENDPOINT", fake.url)
        reload_hub_constants()
        fake.setenv = setenv
        fake.cache_dir = tmp_path / "hf-home" / "hub"
        try:
            yield fake
        finally:
            fake.stop()
    reload_hub_constants()  # back to the real environment's values
