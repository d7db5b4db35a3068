"""The suite's own settings: a failed assertion in a background thread fails the test that started it
(pytest alone only warns: pyproject.toml's filterwarnings turns that warning into an error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

INNER = '''
import threading


def test_helper_thread_asserts():
    def work():
        assert 1 + 1 == 3, "wrong in the helper thread"

    t = threading.Thread(target=work)
    t.start()
    t.join()
'''


def _run_inner(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    test = tmp_path / "test_inner.py"
    test.write_text(INNER)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(config),
         "--rootdir", str(tmp_path), str(test)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )


def test_an_assertion_failing_in_a_thread_fails_the_test(tmp_path):
    res = _run_inner(tmp_path, PYPROJECT)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 failed" in res.stdout and "wrong in the helper thread" in res.stdout


def test_without_the_setting_pytest_would_only_warn(tmp_path):
    # the control: the same test passes under a bare configuration, so the setting is what fails it
    bare = tmp_path / "bare.ini"
    bare.write_text("[pytest]\n")
    res = _run_inner(tmp_path, bare)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout and "PytestUnhandledThreadExceptionWarning" in res.stdout
