"""benchmarks/gpu_check.py runs from the checkout as it is (not installed, from any folder) and its
launch check finds every kernel launch of a 640x512 window within CUDA's grid limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu_from_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--dry-run"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert f"theris_cli from {ROOT / 'theris_cli'}" in out  # this checkout's code, whatever is installed
    checks = re.findall(r"^launch check: (\w+) 640x512: largest grid y (\d+) \(limit 65535\), kernel scratch (\d+) MiB",
                        out, flags=re.M)
    assert [name for name, _, _ in checks] == ["tiny", "small", "base"], out
    assert all(0 < int(grid) <= 65535 and int(scratch) > 0 for _, grid, scratch in checks), out
    assert "FAIL" not in out
    assert "out fps" in out  # the speed rows ran
