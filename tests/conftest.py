"""Shared fixtures. Tests run on CPU with one thread so that they behave the same on every machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

# Without CUDA, mamba-ssm's Triton kernels run on CPU tensors in Triton's interpreter
# (tests/kernels/). Triton reads this when it is imported, so it is set before any test module is.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Real thermal clips for development; absent on users' machines and skipped there.
SHARED_IR = Path(os.environ.get("THERIS_SHARED_IR", Path(__file__).resolve().parents[2] / "shared" / "data" / "ir"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def shared_ir() -> Path:
    """The folder of real thermal clips, or skip the test where it is absent."""
    if not SHARED_IR.is_dir():
        pytest.skip(f"real clips not found at {SHARED_IR}")
    return SHARED_IR
