"""mamba-ssm's Triton SSD kernel, run on CPU tensors by Triton's interpreter, equals theris's
PyTorch scan: the CUDA path checked on a machine without a GPU.

Needs `triton`, `einops`, `transformers` and mamba-ssm's pure-Python wheel (README "Tests": the
Triton interpreter); skipped where they are missing. TRITON_INTERPRET=1 must be set before triton
is imported: tests/conftest.py sets it on machines without CUDA. On a GPU machine these tests run
the compiled kernel on CUDA tensors instead (the `gpu` tests in test_scan.py cover that too).

The kernel is imported as theris imports it, from the pure-Python wheel with no compiled extension
(`kernel._import_kernel` skips mamba-ssm's package __init__, which needs one). Three test-only shims
let mamba-ssm's wrapper run without a GPU driver:
- `torch.cuda.device` as a null context (the wrapper enters `torch.cuda.device(x.device.index)`);
- `torch.cuda.get_device_properties` answering `multi_processor_count` (the backward asks);
- Triton's `Autotuner.prune_configs` cut to its first config (it would otherwise time every
  config through a GPU driver).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from theris_cli.model import PRESETS, THERIS, ModelConfig, kernel, scan
from theris_cli.model.tssm import Mamba2Layer

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() or not kernel.interpreting(),
    reason="the interpreter tests run without CUDA and with TRITON_INTERPRET=1 (tests/conftest.py sets it)",
)


@pytest.fixture(scope="module")
def mamba_backend():
    pytest.importorskip("triton")
    pytest.importorskip("einops")
    mp = pytest.MonkeyPatch()
    mp.setattr(torch.cuda, "device", lambda index=None: contextlib.nullcontext())
    mp.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(multi_processor_count=2))
    from triton.runtime.autotuner import Autotuner

    mp.setattr(Autotuner, "prune_configs", lambda self, kwargs, *a, **k: self.configs[:1])
    fn, why = kernel._import_kernel()
    if fn is None:
        mp.undo()
        pytest.skip(f"mamba-ssm's Triton kernel is not importable here: {why}")
    mp.setenv("THERIS_SCAN", "mamba")
    scan.reset_backend()
    assert scan.backend_info()[0] == "mamba"
    yield fn
    mp.undo()
    scan.reset_backend()


def _inputs(b, L, h, p, g, n, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    x, B, C = r(b, L, h, p), r(b, L, g, n), r(b, L, g, n)
    dt_raw = r(b, L, h) - 1.0                       # before bias and softplus, as the layer hands it over
    A = -torch.rand(h, generator=gen) * 4 - 0.5
    D, dt_bias = r(h), r(h) * 0.5
    return x, dt_raw, A, B, C, D, dt_bias


# head size and chunk of every preset (the kernel's chunk is set to the preset's, so that a short
# sequence still spans several chunks and the inter-chunk state passing is exercised)
PRESET_SHAPES = sorted({(c.headdim, c.chunk_size, c.d_state, c.ngroups, c.nheads) for c in PRESETS.values()})


@pytest.mark.parametrize("headdim, chunk, d_state, ngroups, nheads", PRESET_SHAPES)
def test_kernel_forward_backward_equals_reference(mamba_backend, monkeypatch, headdim, chunk, d_state, ngroups, nheads):
    monkeypatch.setattr(kernel, "KERNEL_CHUNK", chunk)
    L = 2 * chunk + chunk // 2 + 3  # two whole chunks and a partial one
    x, dt, A, B, C, D, bias = _inputs(1, L, nheads, headdim, ngroups, d_state, seed=headdim)
    leaves = [t.clone().requires_grad_() for t in (x, dt, B, C, D, bias)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, dt, B, C, D, bias)]
    y = scan.selective_scan(leaves[0], leaves[1], A, leaves[2], leaves[3], leaves[4], chunk,
                            dt_bias=leaves[5], dt_softplus=True)
    ref = scan.ssd_chunked(ref_leaves[0], ref_leaves[1], A, ref_leaves[2], ref_leaves[3], ref_leaves[4], chunk,
                           dt_bias=ref_leaves[5], dt_softplus=True)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(ref)
    (y * g).sum().backward()
    (ref * g).sum().backward()
    for name, a, b in zip(("x", "dt", "B", "C", "D", "dt_bias"), leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, atol=2e-3, rtol=2e-3, msg=lambda m, name=name: f"d{name}: {m}")


def test_kernel_hands_state_on_like_the_reference(mamba_backend, monkeypatch):
    """Initial and final states (the CPU work-unit path scans SMB in segments with them)."""
    monkeypatch.setattr(kernel, "KERNEL_CHUNK", 16)
    x, dt, A, B, C, D, bias = _inputs(2, 40, 2, 8, 1, 4, seed=5)
    s0 = torch.randn(2, 2, 8, 4)
    y, s1 = scan.selective_scan(x, dt, A, B, C, D, 16, initial_state=s0, return_final_state=True,
                                dt_bias=bias, dt_softplus=True)
    ry, rs1 = scan.ssd_chunked(x, dt, A, B, C, D, 16, initial_state=s0, return_final_state=True,
                               dt_bias=bias, dt_softplus=True)
    torch.testing.assert_close(y, ry, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s1, rs1, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_layer_on_kernel_equals_layer_on_reference(mamba_backend, monkeypatch, direction):
    monkeypatch.setattr(kernel, "KERNEL_CHUNK", 16)
    torch.manual_seed(2)
    layer = Mamba2Layer(8, d_state=4, expand=2, headdim=8, ngroups=1, d_conv=4, chunk_size=16,
                        bidirectional=direction == "bidirectional", prompt_dim=3, reverse=direction == "reverse")
    with torch.no_grad():
        layer.prompt.weight.normal_(0, 0.5)
    seq, shift = torch.randn(2, 37, 8), torch.randn(1, 37, 4)
    got = layer(seq, shift)
    monkeypatch.setenv("THERIS_SCAN", "reference")
    scan.reset_backend()
    try:
        want = layer(seq, shift)
    finally:
        monkeypatch.setenv("THERIS_SCAN", "mamba")
        scan.reset_backend()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_tiny_model_under_theris_scan_mamba(mamba_backend, monkeypatch):
    """The whole `tiny` network, inference (work units) and autograd paths, kernel vs reference."""
    torch.manual_seed(0)
    net = THERIS(ModelConfig(**{**PRESETS["tiny"].to_dict()})).eval()
    x = torch.rand(1, 3, 1, 6, 7)
    with torch.no_grad():
        got = net(x)
    with torch.enable_grad():
        got_grad_path = net(x).detach()
    monkeypatch.setenv("THERIS_SCAN", "reference")
    scan.reset_backend()
    try:
        with torch.no_grad():
            want = net(x)
    finally:
        monkeypatch.setenv("THERIS_SCAN", "mamba")
        scan.reset_backend()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_grad_path, want, atol=1e-4, rtol=1e-4)


def test_kernel_imports_from_the_pure_python_wheel_without_compiled_extensions():
    """In a fresh interpreter, nothing stood in: mamba-ssm's compiled extensions are absent here
    and its package __init__ fails on them, yet theris reaches the Triton kernel."""
    pytest.importorskip("triton")
    pytest.importorskip("einops")
    import importlib.util

    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm is not installed")
    code = (
        "import importlib.util, sys\n"
        "from theris_cli.model import kernel\n"
        "assert importlib.util.find_spec('selective_scan_cuda') is None, 'a compiled extension is installed'\n"
        "try:\n"
        "    import mamba_ssm.ops.selective_scan_interface\n"
        "except ImportError as e:\n"
        "    print('package import fails:', e)\n"
        "fn, why = kernel._import_kernel()\n"
        "assert fn is not None and fn.__module__ == 'mamba_ssm.ops.triton.ssd_combined', why\n"
        "print(kernel.kernel_status())\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    if "package import fails" not in run.stdout:
        pytest.skip("mamba-ssm's package imports here (a compiled install): nothing to skip")
    assert "imports" in run.stdout and "__init__ skipped" in run.stdout


@pytest.mark.parametrize("limit, scratch", [(3, 2**30), (2, 2**30), (65535, 4000)])
def test_a_split_kernel_call_equals_an_unsplit_one(mamba_backend, monkeypatch, limit, scratch):
    """Calls cut by CUDA's grid limit or the scratch limit (in sequences, and a sequence into
    segments that hand the state on) give the one call's output, final state and gradients."""
    monkeypatch.setattr(kernel, "KERNEL_CHUNK", 16)
    x, dt, A, B, C, D, bias = _inputs(5, 40, 2, 8, 1, 4, seed=7)
    s0 = torch.randn(5, 2, 8, 4)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, dt, B, C, s0)]
        y, s1 = scan.selective_scan(leaves[0], leaves[1], A, leaves[2], leaves[3], D, 16, initial_state=leaves[4],
                                    return_final_state=True, dt_bias=bias, dt_softplus=True)
        ((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + s1.square().sum()).backward()
        return [y.detach(), s1.detach()] + [t.grad for t in leaves]

    whole = run()
    with kernel.recording_launches() as launches:
        scan.selective_scan(x, dt, A, B, C, D, 16, initial_state=s0, return_final_state=True)
    assert len(launches) == 1
    monkeypatch.setattr(kernel, "GRID_Y_LIMIT", limit)
    monkeypatch.setattr(kernel, "KERNEL_SCRATCH_LIMIT", scratch)
    with kernel.recording_launches() as launches:
        scan.selective_scan(x, dt, A, B, C, D, 16, initial_state=s0, return_final_state=True)
    assert len(launches) > 1 and all(l.grid_y <= limit for l in launches)
    split = run()
    for name, a, b in zip(("y", "final state", "dx", "ddt", "dB", "dC", "dinitial"), split, whole):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
