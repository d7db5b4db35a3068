"""The chunked SSD scan equals the step-by-step recurrence; the backend choice and its errors."""

from __future__ import annotations

import pytest
import torch

from theris_cli.errors import BackendUnavailable, UsageError
from theris_cli.model import PRESETS, THERIS, kernel, scan
from theris_cli.model.scan import selective_scan, ssd_chunked, ssd_recurrent


def _inputs(b, L, h, p, g, n, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale + shift).requires_grad_()

    x = leaf(b, L, h, p)
    dt = (torch.rand(b, L, h, generator=gen, dtype=dtype) * 0.5 + 0.01).requires_grad_()
    A = (-torch.rand(h, generator=gen, dtype=dtype) * 3 - 0.1).requires_grad_()
    B, C = leaf(b, L, g, n), leaf(b, L, g, n)
    D = leaf(h)
    return x, dt, A, B, C, D


@pytest.mark.parametrize("L", [1, 5, 16, 37, 100])
def test_chunked_equals_recurrence_forward_and_gradients(L):
    x, dt, A, B, C, D = inputs = _inputs(2, L, 4, 3, 2, 5)
    prompt = torch.randn(1, L, 2, 5, dtype=torch.float64, requires_grad=True)  # the C + T shift
    y1 = ssd_chunked(x, dt, A, B, C + prompt, D, chunk_size=16)
    y2 = ssd_recurrent(x, dt, A, B, C + prompt, D)
    assert y1.shape == (2, L, 4, 3)
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(y1)
    leaves = [*inputs, prompt]
    g1 = torch.autograd.grad((y1 * w).sum(), leaves)
    g2 = torch.autograd.grad((y2 * w).sum(), leaves)
    for name, a, b in zip(["x", "dt", "A", "B", "C", "D", "prompt"], g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_chunked_many_chunks_crosses_state_blocks(monkeypatch):
    monkeypatch.setattr(scan, "SUPER", 3)  # force several blocks in the inter-chunk pass
    x, dt, A, B, C, D = _inputs(1, 75, 2, 2, 1, 3)
    torch.testing.assert_close(ssd_chunked(x, dt, A, B, C, D, chunk_size=4), ssd_recurrent(x, dt, A, B, C, D))


def test_inference_pass_crosses_state_blocks(monkeypatch):
    monkeypatch.setattr(scan, "SUPER_INFERENCE", 2)  # the no-autograd pass in blocks of 2 chunks
    x, dt, A, B, C, D = (t.detach() for t in _inputs(2, 75, 2, 2, 1, 3))
    with torch.no_grad():
        y = ssd_chunked(x, dt, A, B, C, D, chunk_size=4)
    torch.testing.assert_close(y, ssd_recurrent(x, dt, A, B, C, D))


def test_float32_close_and_dtype_kept():
    x, dt, A, B, C, D = (t.detach().float() for t in _inputs(2, 130, 2, 4, 1, 8))
    y = ssd_chunked(x, dt, A, B, C, D)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ssd_recurrent(x, dt, A, B, C, D), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("b, L, h, p, g, n, chunk", [(2, 45, 4, 3, 2, 5, 8), (1, 70, 2, 24, 1, 16, 32), (3, 7, 2, 24, 1, 16, 32)])
def test_factored_inference_scan_equals_the_decay_matrix(monkeypatch, b, L, h, p, g, n, chunk):
    """Without autograd the in-chunk decay is factored (`_ssd_factored`): the same result as the
    (l x l) decay matrices, with a carried state in and out, padded chunks and several groups, and
    as the recurrence from a zero state."""
    x, dt, A, B, C, D = (t.detach() for t in _inputs(b, L, h, p, g, n))
    init = torch.randn(b, h, p, n, dtype=x.dtype)
    ran = []
    factored = scan._ssd_factored
    monkeypatch.setattr(scan, "_ssd_factored", lambda *a: ran.append(factored(*a) is not None) or factored(*a))
    with torch.no_grad():
        y, final = ssd_chunked(x, dt, A, B, C, D, chunk, initial_state=init, return_final_state=True)
        fresh = ssd_chunked(x, dt, A, B, C, D, chunk)
        monkeypatch.setattr(scan, "_ssd_factored", lambda *a: None)  # the decay-matrix path
        y0, final0 = ssd_chunked(x, dt, A, B, C, D, chunk, initial_state=init, return_final_state=True)
    assert ran == [True, True]
    torch.testing.assert_close(y, y0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(final, final0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fresh, ssd_recurrent(x, dt, A, B, C, D), rtol=1e-9, atol=1e-9)


def test_factored_scan_near_its_limit_stays_finite_in_float32():
    """A chunk that decays by almost 2 * FACTOR_LIMIT, with inputs of a few units: the factors reach
    exp(+-60) and the float32 sums stay finite and equal to the decay-matrix path's."""
    x, dt, A, B, C, D = (t.detach().float() * 3 for t in _inputs(1, 64, 2, 24, 1, 16))
    A = torch.tensor([-1.0, -1.0])
    dt = torch.full_like(dt, 1.9 * scan.FACTOR_LIMIT / 32)  # each 32-step chunk spans 1.9 x the limit
    with torch.no_grad():
        y = ssd_chunked(x, dt, A, B, C, D, 32)
        assert scan._ssd_factored(x, x, dt, A, B, C, D, 32, None, False) is not None  # it was factored
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, ssd_recurrent(x.double(), dt.double(), A.double(), B.double(), C.double(), D.double()).float(),
                               rtol=1e-4, atol=1e-4)


def test_decays_too_steep_to_factor_fall_back_to_the_matrices():
    x, dt, A, B, C, D = (t.detach() for t in _inputs(1, 32, 2, 4, 1, 3))
    steep = torch.full_like(dt, 3 * scan.FACTOR_LIMIT / 32 / float(-A.max()))  # each chunk half decays > limit
    with torch.no_grad():
        assert scan._ssd_factored(x, x, steep, A, B, C, D, 32, None, False) is None
        y = ssd_chunked(x, steep, A, B, C, D, 32)
    torch.testing.assert_close(y, ssd_recurrent(x, steep, A, B, C, D), rtol=1e-9, atol=1e-9)


@pytest.fixture
def fresh_backend(monkeypatch):
    scan.reset_backend()
    yield monkeypatch
    scan.reset_backend()


def test_forced_reference(fresh_backend):
    fresh_backend.setenv("THERIS_SCAN", "reference")
    name, reason = scan.backend_info()
    assert name == "reference" and "THERIS_SCAN" in reason


def test_auto_on_cpu_is_reference_and_says_why(fresh_backend):
    fresh_backend.delenv("THERIS_SCAN", raising=False)
    fresh_backend.setattr(torch.cuda, "is_available", lambda: False)
    name, reason = scan.backend_info()
    assert name == "reference" and "CUDA" in reason


def test_forced_mamba_without_kernel_names_the_fix(fresh_backend):
    fresh_backend.setenv("THERIS_SCAN", "mamba")
    fresh_backend.setattr(kernel, "_import_kernel", lambda: (None, "mamba-ssm does not import (ModuleNotFoundError)"))
    with pytest.raises(BackendUnavailable) as err:
        scan.backend_info()
    msg = str(err.value)
    assert "pip install --no-build-isolation mamba-ssm" in msg and "THERIS_SCAN" in msg
    assert "\n" not in msg


def test_forced_mamba_without_cuda(fresh_backend):
    fresh_backend.setenv("THERIS_SCAN", "mamba")
    fresh_backend.setattr(kernel, "_import_kernel", lambda: (lambda *a, **k: None, "kernel"))
    fresh_backend.setattr(torch.cuda, "is_available", lambda: False)
    fresh_backend.delenv("TRITON_INTERPRET", raising=False)  # the interpreter would run it on the CPU
    with pytest.raises(BackendUnavailable, match="CUDA"):
        scan.backend_info()


def test_bad_value_is_a_usage_error(fresh_backend):
    fresh_backend.setenv("THERIS_SCAN", "fast")
    with pytest.raises(UsageError, match="reference"):
        scan.backend_info()


def test_choice_is_made_once(fresh_backend):
    fresh_backend.setenv("THERIS_SCAN", "reference")
    first = scan.backend_info()
    fresh_backend.setenv("THERIS_SCAN", "bogus")  # ignored: already decided
    assert scan.backend_info() == first


def test_selective_scan_on_cpu_uses_reference(fresh_backend):
    fresh_backend.delenv("THERIS_SCAN", raising=False)
    x, dt, A, B, C, D = (t.detach().float() for t in _inputs(1, 20, 2, 2, 1, 4))
    torch.testing.assert_close(selective_scan(x, dt, A, B, C, D), ssd_chunked(x, dt, A, B, C, D))


@pytest.mark.gpu
@pytest.mark.parametrize("L", [7, 100, 448])
def test_mamba_kernel_equals_reference(fresh_backend, L):
    fn, why = kernel._import_kernel()
    if fn is None:
        pytest.skip(why)
    leaves = [t.detach().float().cuda().requires_grad_() for t in _inputs(2, L, 4, 16, 1, 16)]
    x, dt, A, B, C, D = leaves
    prompt = torch.randn(1, L, 1, 16, device="cuda")
    ref = ssd_chunked(x, dt, A, B, C + prompt, D, chunk_size=64)
    out = fn(x, dt, A, B, (C + prompt).contiguous(), 64, D=D)
    torch.testing.assert_close(out, ref, rtol=2e-3, atol=2e-3)
    w = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((out * w).sum(), leaves), torch.autograd.grad((ref * w).sum(), leaves)):
        torch.testing.assert_close(a, b, rtol=5e-3, atol=5e-3)
    fresh_backend.setenv("THERIS_SCAN", "mamba")
    assert scan.backend_info()[0] == "mamba"
    torch.testing.assert_close(selective_scan(x, dt, A, B, C + prompt, D), ref, rtol=2e-3, atol=2e-3)


def test_info_command_names_the_backend(fresh_backend):
    from typer.testing import CliRunner

    from theris_cli.cli import app

    fresh_backend.setenv("THERIS_SCAN", "reference")
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "scan backend" in result.output and "reference" in result.output
    assert "torch" in result.output and "mamba-ssm" in result.output


# ---------------------------------------------------------------------------------------------
# the kernel's launches: chunk sized to the sequence, CUDA's grid limit, bounded scratch


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


@pytest.mark.parametrize("L", [1, 2, 7, 16, 17, 100, 112, 448, 4096, 2293760])
def test_kernel_chunk_is_sized_to_the_sequence(L):
    chunk = kernel.kernel_chunk(L)
    assert chunk <= max(kernel.MIN_KERNEL_CHUNK, _next_pow2(L)) and chunk <= kernel.KERNEL_CHUNK
    assert chunk & (chunk - 1) == 0 and chunk >= kernel.MIN_KERNEL_CHUNK
    assert L <= chunk or chunk == kernel.KERNEL_CHUNK  # one chunk holds a short sequence


@pytest.mark.parametrize("b, L, limit, scratch", [
    (327680, 7, 65535, 2**30),      # TMB at 640x512: batch split
    (2, 2293760, 65535, 2**30),     # SMB at 640x512: sequence cut into segments by scratch
    (1, 40_000_000, 65535, 2**40),  # more chunks than the grid holds, whatever the memory
    (7, 40, 3, 2**30),              # tiny limits: both cuts at once
    (5, 40, 2, 2**14),
])
def test_kernel_pieces_cover_every_token_once_within_the_limits(monkeypatch, b, L, limit, scratch):
    monkeypatch.setattr(kernel, "GRID_Y_LIMIT", limit)
    monkeypatch.setattr(kernel, "KERNEL_SCRATCH_LIMIT", scratch)
    h, p, g, n = 6, 32, 1, 64
    chunk = 16 if limit < 100 else kernel.kernel_chunk(L)
    pieces = kernel.kernel_pieces(b, L, h, p, g, n, chunk)
    covered = torch.zeros(min(b, 8), dtype=torch.long)  # count tokens per sequence for the first few
    segments = sorted({(l0, l1) for _, _, l0, l1 in pieces})
    assert segments[0][0] == 0 and segments[-1][1] == L
    assert all(a[1] == c[0] for a, c in zip(segments, segments[1:]))         # consecutive, no gaps
    assert all(l0 % chunk == 0 for l0, _ in segments)                        # cut at whole chunks
    for b0, b1, l0, l1 in pieces:
        assert (b1 - b0) * -(-(l1 - l0) // chunk) <= limit
        if (b1 - b0) > 1 or -(-(l1 - l0) // chunk) > 1:  # more than one chunk of one sequence
            assert kernel.scratch_bytes(b1 - b0, l1 - l0, h, p, g, n, chunk) <= scratch
        covered[b0:min(b1, len(covered))] += l1 - l0
    assert covered.tolist() == [L] * len(covered)
    assert sum(b1 - b0 for b0, b1, l0, _ in pieces if l0 == 0) == b              # every sequence once


def _window_launches(preset: str, H: int = 512, W: int = 640, frames: int = 4):
    """The kernel launches of every TSSM layer of ``preset`` for one window of ``frames`` LR frames
    of H x W, recorded from the real layers on the meta device (no memory, no arithmetic)."""
    c = PRESETS[preset]
    with torch.device("meta"):
        net = THERIS(c)
    M = 2 * frames - 1
    z = torch.empty(1, M, H, W, c.dim, device="meta")
    e = torch.empty(M, c.time_embed_dim, device="meta")
    with kernel.recording_launches() as launches, torch.no_grad():
        for block in net.blocks:
            z = block(z, e)
    return launches


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_every_kernel_launch_of_a_640x512_window_stays_within_cuda_limits(preset):
    launches = _window_launches(preset)
    c = PRESETS[preset]
    layers = c.n_blocks * (int(c.use_smb) + int(c.use_tmb) + int(c.use_hmb))
    assert len({l.sequence for l in launches}) >= min(layers, 3)  # SMB, TMB and HMB all recorded
    for launch in launches:
        assert launch.grid_y <= kernel.GRID_Y_LIMIT, launch
        assert launch.chunk <= max(16, _next_pow2(launch.sequence)), launch
        assert launch.scratch_bytes <= kernel.KERNEL_SCRATCH_LIMIT, launch
    tmb = [l for l in launches if l.sequence == 7]
    # every LR pixel's sequence through the 7 target times, in both directions when bidirectional
    assert sum(l.batch for l in tmb) == 512 * 640 * c.n_blocks * (2 if c.bidirectional else 1)


def test_recording_returns_results_of_the_right_shape_and_computes_nothing():
    x, dt, A, B, C, D = (t.detach() for t in _inputs(3, 20, 2, 4, 1, 5, dtype=torch.float32))
    s0 = torch.zeros(3, 2, 4, 5)
    with kernel.recording_launches() as launches:
        y, final = selective_scan(x, dt, A, B, C, D, initial_state=s0, return_final_state=True)
    assert y.shape == x.shape and final.shape == s0.shape
    assert launches == [kernel.Launch(3, 20, 20, 2, 4, 1, 5, 32)]
    assert kernel._recorder is None  # recording ends with the block
