"""The selective scan (Mamba-2 SSD) with two backends: a pure-PyTorch chunked reference that is fast
forward and backward on CPU, and mamba-ssm's Triton kernel on CUDA when it imports.

The recurrence, per sequence, head h and step t (x: (P,) channels of the head, state: (P, N)):
    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * x_t B_t^T
    y_t     = state_t C_t + D_h x_t
C already carries the thermal prompt (C + T) when it arrives here, so both backends share it.

The backend is chosen once, lazily (nothing GPU-related is imported at module import), and can be
forced with THERIS_SCAN=reference|mamba. `backend_info()` says which one is in use and why.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import math
import os
import sys
import types
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from theris_cli.errors import BackendUnavailable, UsageError

# Largest chunk of the Triton kernel (Mamba-2's default). A call uses the smallest power of two
# that holds its sequence, at least MIN_KERNEL_CHUNK, up to this (`kernel_chunk`): the kernel keeps
# a (chunk x chunk) float32 block per sequence and chunk, 256 KiB at 256, so TMB's 7-token
# sequences at 256 would need 256 KiB per LR pixel. The chunk never changes the result.
KERNEL_CHUNK = 256
MIN_KERNEL_CHUNK = 16  # the kernel's tl.dot tiles are at least 16 wide
# CUDA's limit on a launch grid's y (and z) extent. mamba-ssm's SSD kernels put batch x chunks on
# axis y, so `selective_scan` splits the batch (and, past the limit in chunks alone, the sequence)
# into calls that stay within it.
GRID_Y_LIMIT = 65535
# Largest float32 scratch (`Launch.scratch_bytes`) of one kernel call: more sequences are split
# into several calls. TMB's sequences are one chunk each, whose state alone is heads x headdim x
# d_state floats twice (96 KiB for `base`): 65,535 of them at once would hold 6 GiB of it.
KERNEL_SCRATCH_LIMIT = 2**30
# the pure-Python install: seconds, no compiler (theris uses only mamba-ssm's Triton kernel)
MAMBA_INSTALL_HINT = "MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE pip install --no-build-isolation mamba-ssm"

_backend: Optional[tuple[str, str]] = None
_kernel: Optional[Callable] = None
_recorder: Optional[list] = None


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., L) -> (..., L, L) with out[..., i, j] = sum_{j < k <= i} a[k] for j <= i and -inf above
    the diagonal, so exp(out) is the decay from step j to step i (0 where j > i). Summing inside a
    masked cumsum instead of subtracting two cumsums keeps it exact when the cumsums grow large."""
    L = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, L)  # [..., i, j] = a[i]
    strict = torch.ones(L, L, dtype=torch.bool, device=a.device).tril(-1)
    x = x.masked_fill(~strict, 0.0).cumsum(dim=-2)
    lower = torch.ones(L, L, dtype=torch.bool, device=a.device).tril(0)
    return x.masked_fill(~lower, float("-inf"))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous. The scan's output is
    permuted back to (b, L, h, p), so its gradient arrives as a permuted view; CPU bmm on such a
    view falls back to a per-matrix loop, much slower with many small chunks (TMB: L = T')."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


SUPER = 128  # chunks per block of the inter-chunk pass: a (SUPER x SUPER) decay matrix per head
# the same without autograd: smaller blocks, more loop steps (a speed setting only: results do not
# depend on it)
SUPER_INFERENCE = 32


def _pass_states(states: torch.Tensor, totals: torch.Tensor, size: Optional[int] = None) -> torch.Tensor:
    """State entering each chunk, from each chunk's own end state and total log-decay.

    states: (..., c, d) end state of chunk c from its inputs alone; totals: (..., c) sum of dt*A in
    chunk c. Returns (..., c, d): sum over c' < z of decay(end of c' -> start of z) * states[c'].
    Blocks of ``size`` chunks (default SUPER) are one masked matrix product; a short Python loop carries the
    state across blocks, so memory stays linear in c for long sequences (large frames).
    """
    c = states.shape[-2]
    out = []
    carry = None  # state entering the current block, (..., d)
    size = size or SUPER
    for s0 in range(0, c, size):
        st, tot = states[..., s0:s0 + size, :], totals[..., s0:s0 + size]
        # [z, c'] = decay from the end of chunk c' to the start of chunk z in this block (0 unless c' < z)
        decay = torch.exp(_segsum(F.pad(tot, (1, 0))))[..., :-1, 1:]
        block = decay @ st
        if carry is not None:
            into = torch.exp(tot.cumsum(-1) - tot)  # decay from the block's start to the start of z
            block = block + into.unsqueeze(-1) * carry.unsqueeze(-2)
        out.append(block)
        carry = block[..., -1, :] * torch.exp(tot[..., -1:]) + st[..., -1, :]
    return torch.cat(out, dim=-2) if len(out) > 1 else out[0]


def _entering_states(
    flat: torch.Tensor, totals: torch.Tensor, initial_state: Optional[torch.Tensor], return_final_state: bool,
    state_shape: tuple[int, int, int, int],
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The state entering each chunk, and the state after the last one (with ``return_final_state``,
    else None). flat (b, g, r, c, p*n): each chunk's end state from its own inputs; totals
    (b, g, r, c): each chunk's total log-decay; initial_state (b, h, p, n) = state_shape, or None:
    the state before the first chunk. Returns (b, g, r, c, p*n) and (b, h, p, n) or None."""
    b, g, r = flat.shape[:3]
    if initial_state is not None:
        # the state before the sequence is the end state of a virtual chunk -1 with no decay
        assert initial_state.shape == state_shape, f"initial_state: expected {state_shape}, got {tuple(initial_state.shape)}"
        flat = torch.cat([initial_state.to(flat.dtype).reshape(b, g, r, 1, -1), flat], dim=3)
        totals = F.pad(totals, (1, 0))
    size = SUPER if torch.is_grad_enabled() else SUPER_INFERENCE
    passed = _pass_states(flat, totals, size)                                            # (b,g,r,c(+1),p*n)
    final = None
    if return_final_state:
        final = (passed[..., -1, :] * torch.exp(totals[..., -1:]) + flat[..., -1, :]).reshape(state_shape)
    if initial_state is not None:
        passed = passed[..., 1:, :]
    return passed, final


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: Optional[torch.Tensor] = None, chunk_size: int = 64, *,
    initial_state: Optional[torch.Tensor] = None, return_final_state: bool = False,
    dt_bias: Optional[torch.Tensor] = None, dt_softplus: bool = False,
):
    """Chunked SSD scan in plain PyTorch (Mamba-2's "ssd_minimal_discrete", with groups and padding).

    x: (b, L, h, p); dt: (b, L, h) > 0; A: (h,) < 0; B, C: (b, L, g, n) with h % g == 0; D: (h,) or None.
    dt_bias (h,) is added to dt and ``dt_softplus`` applies softplus to the sum first (as the kernel's
    options of the same names do, so the GPU can fuse them); dt must then be > 0 after that.
    initial_state: (b, h, p, n) state before the first step (None: zeros), so that a long sequence can
    be scanned in consecutive segments; with ``return_final_state`` the result is (y, state after the
    last step, (b, h, p, n) float32).
    Returns y: (b, L, h, p) in x's dtype. Computes in float32 (float64 for float64 input). Inside a chunk the scan
    is a masked (l x l) matrix product; between chunks the states are passed by small matrix
    products too (`_pass_states`), so there is no Python loop over L and autograd gives a fast
    backward.
    """
    b, L, h, p = x.shape
    g, n = B.shape[-2:]
    assert dt.shape == (b, L, h), f"dt: expected {(b, L, h)}, got {tuple(dt.shape)}"
    assert B.shape == C.shape == (b, L, g, n), f"B, C: expected {(b, L, g, n)}, got {tuple(B.shape)}, {tuple(C.shape)}"
    assert h % g == 0, f"heads ({h}) must be a multiple of groups ({g})"
    r = h // g
    dtype = x.dtype
    work = torch.promote_types(dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays (tests)
    x32, dt32, B32, C32 = x.to(work), dt.to(work), B.to(work), C.to(work)
    if dt_bias is not None:
        dt32 = dt32 + dt_bias.to(work)
    if dt_softplus:
        dt32 = F.softplus(dt32)

    l = min(chunk_size, L)  # a short sequence (TMB: T' tokens) is one chunk, not padded to 64
    pad = (-L) % l
    if pad:  # zero dt and x at the end: no decay, no input, and only later (cropped) steps see them
        x32 = F.pad(x32, (0, 0, 0, 0, 0, pad))
        dt32 = F.pad(dt32, (0, 0, 0, pad))
        B32 = F.pad(B32, (0, 0, 0, 0, 0, pad))
        C32 = F.pad(C32, (0, 0, 0, 0, 0, pad))
    c = (L + pad) // l
    if not torch.is_grad_enabled():
        out = _ssd_factored(x, x32, dt32, A.to(work), B32, C32, D, l, initial_state, return_final_state)
        if out is not None:
            return out

    # axes: b batch, c chunk, l/s step in chunk, g group, r head in group, p head channel, n state
    # Operands of matmuls are made contiguous: CPU bmm on some strided views (and on their
    # gradients) falls back to a per-matrix loop, much slower for many small chunks.
    if torch.is_grad_enabled():
        xdt = (x32 * dt32.unsqueeze(-1)).view(b, c, l, g, r, p).permute(0, 1, 3, 4, 2, 5).contiguous()  # (b,c,g,r,l,p)
    else:  # one pass: the product written straight into the chunk layout
        xdt = x32.new_empty(b, c, g, r, l, p)
        torch.mul(x32.view(b, c, l, g, r, p).permute(0, 1, 3, 4, 2, 5),
                  dt32.view(b, c, l, g, r, 1).permute(0, 1, 3, 4, 2, 5), out=xdt)
    a = (dt32 * A.to(work)).view(b, c, l, g, r).permute(0, 1, 3, 4, 2)                   # (b,c,g,r,l)
    Bc = B32.view(b, c, l, g, n).transpose(2, 3).contiguous()                            # (b,c,g,l,n)
    Cc = C32.view(b, c, l, g, n).transpose(2, 3).contiguous()                            # (b,c,g,l,n)
    a_cum = a.cumsum(dim=-1)                                                             # (b,c,g,r,l)

    # 1. within each chunk: y_i = sum_{j<=i} (C_i . B_j) decay(j->i) xdt_j, decay = exp(cum_i - cum_j).
    # The difference of cumsums (as mamba-ssm's kernel does) is exact enough inside one chunk and
    # touches each (l x l) entry far fewer times than a masked cumsum; j > i is masked before exp.
    causal = torch.ones(l, l, dtype=torch.bool, device=x.device).tril()
    # in place on the fresh (l x l) tensor: two fewer passes over the largest tensor of the scan
    decay = (a_cum.unsqueeze(-1) - a_cum.unsqueeze(-2)).masked_fill_(~causal, float("-inf")).exp_()
    CB = Cc @ Bc.transpose(-1, -2)                                                       # (b,c,g,l,s)
    scores = CB.unsqueeze(3) * decay                                                     # (b,c,g,r,l,s)
    y = _ContiguousGrad.apply(scores @ xdt)                                              # (b,c,g,r,l,p)

    final = None
    if c > 1 or initial_state is not None or return_final_state:
        # 2. state at the end of each chunk from its own inputs
        if torch.is_grad_enabled():
            decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)                            # (b,c,g,r,l)
        else:  # the in-chunk decays computed once: the last row of step 1's matrix
            decay_to_end = decay[..., -1, :]
        if torch.is_grad_enabled():
            states = (xdt * decay_to_end.unsqueeze(-1)).transpose(-1, -2) @ Bc.unsqueeze(3)  # (b,c,g,r,p,n)
        else:  # the decay on B (n < p columns) and no broadcast of B over the heads
            states = xdt.transpose(-1, -2) @ (decay_to_end.unsqueeze(-1) * Bc.unsqueeze(3))
        # 3. state entering each chunk: a scan over chunks with scalar decays per head
        totals = a_cum[..., -1].permute(0, 2, 3, 1)                                      # (b,g,r,c)
        flat = states.permute(0, 2, 3, 1, 4, 5).reshape(b, g, r, c, p * n)
        passed, final = _entering_states(flat, totals, initial_state, return_final_state, (b, h, p, n))
        states_in = passed.reshape(b, g, r, c, p, n).permute(0, 3, 1, 2, 4, 5)         # (b,c,g,r,p,n)
        # 4. contribution of the entering state to every step of the chunk
        if torch.is_grad_enabled():
            y_off = _ContiguousGrad.apply(Cc.unsqueeze(3) @ states_in.transpose(-1, -2)) * torch.exp(a_cum).unsqueeze(-1)
            y = y + y_off
        else:
            y = y.addcmul_(Cc.unsqueeze(3) @ states_in.transpose(-1, -2), torch.exp(a_cum).unsqueeze(-1))

    y = y.permute(0, 1, 4, 2, 3, 5).reshape(b, c * l, h, p)[:, :L]
    if D is not None:
        if torch.is_grad_enabled():
            y = y + x.to(work) * D.to(work).view(1, 1, h, 1)
        else:  # in place, reading x once in its own (strided) layout
            y = y.contiguous().addcmul_(x.to(work), D.to(work).view(1, 1, h, 1))
    return (y.to(dtype), final) if return_final_state else y.to(dtype)


# Largest |log-decay| between a step and its chunk's middle for which `_ssd_factored` is used. Its
# factors then stay within exp(+-60) = 1e+-26, so the sums they scale keep 1e12 of float32's range
# (3e38) as headroom. The trained layers' chunks span up to about 110, i.e. 55 each side.
FACTOR_LIMIT = 60.0


def _ssd_factored(
    x: torch.Tensor, x32: torch.Tensor, dt32: torch.Tensor, A: torch.Tensor, B32: torch.Tensor, C32: torch.Tensor,
    D: Optional[torch.Tensor], l: int, initial_state: Optional[torch.Tensor], return_final_state: bool,
):
    """`ssd_chunked` without autograd, the in-chunk decay factored: exp(cum_i - cum_j) =
    exp(cum_i - m) * exp(m - cum_j) with m halfway between the chunk's first and last cumulative
    log-decay. The
    (l x l) decay matrix of every head is then never built: one masked C B^T per group and chunk,
    one matrix product with all heads of the group side by side as its columns, and two per-token
    scalings, all in the sequence's own layout. None when a chunk decays by more than
    FACTOR_LIMIT from its middle to either end (the caller then builds the matrix); the inputs are
    padded to whole chunks already (x: the caller's unpadded x, for the D term). (bf16 operands
    for its matrix products were tried for the CPU's bf16 path: no faster, the conversions cost
    what the products gain.)"""
    b, Lp, h, p = x32.shape
    L = x.shape[1]
    g, n = B32.shape[-2:]
    r, c = h // g, Lp // l
    a_cum = (dt32 * A).view(b, c, l, h).cumsum(2)                                      # (b,c,l,h)
    mid = (a_cum[:, :, :1] + a_cum[:, :, -1:]) / 2                                     # (b,c,1,h)
    rel = a_cum - mid
    if float(rel.abs().amax()) > FACTOR_LIMIT:
        return None
    grow = rel.exp()                                                                   # exp(cum_i - m)
    shrink = rel.neg_().exp_().mul_(dt32.view(b, c, l, h))                            # exp(m - cum_j) dt_j
    # axes: b batch, c chunk, l step in chunk, g group, r head in group, p head channel, n state
    xs = (x32.view(b, c, l, g, r, p) * shrink.view(b, c, l, g, r, 1)).transpose(2, 3)  # (b,c,g,l,r,p)
    xs = xs.reshape(b * c * g, l, r * p)  # a view for one group (every preset)
    Bg = B32.view(b, c, l, g, n).transpose(2, 3).reshape(b * c * g, l, n)
    Cg = C32.view(b, c, l, g, n).transpose(2, 3).reshape(b * c * g, l, n)
    causal = torch.ones(l, l, dtype=torch.bool, device=x32.device).tril()
    CB = torch.bmm(Cg, Bg.transpose(1, 2)).masked_fill_(~causal, 0.0)                # (bcg, l, l)
    y = torch.bmm(CB, xs).view(b, c, g, l, r, p)
    y.mul_(grow.view(b, c, l, g, r, 1).transpose(2, 3))

    final = None
    if c > 1 or initial_state is not None or return_final_state:
        # state at the end of each chunk from its own inputs: exp(cum_end - m) sum_j shrink_j x_j B_j^T
        own = torch.bmm(xs.transpose(1, 2), Bg).view(b, c, g, r, p, n)
        own.mul_((a_cum[:, :, -1] - mid[:, :, 0]).exp_().view(b, c, g, r, 1, 1))
        totals = a_cum[:, :, -1].view(b, c, g, r).permute(0, 2, 3, 1)                  # (b,g,r,c)
        flat = own.permute(0, 2, 3, 1, 4, 5).reshape(b, g, r, c, p * n)
        passed, final = _entering_states(flat, totals, initial_state, return_final_state, (b, h, p, n))
        # the entering state's contribution exp(cum_i) C_i S^T, all heads of a group as columns
        S = passed.view(b, g, r, c, p, n).permute(0, 3, 1, 5, 2, 4).reshape(b * c * g, n, r * p)
        y_in = torch.bmm(Cg, S).view(b, c, g, l, r, p)
        y.addcmul_(y_in, a_cum.exp().view(b, c, l, g, r, 1).transpose(2, 3))

    y = y.transpose(2, 3).reshape(b, Lp, h, p)[:, :L]  # a view for one group
    if D is not None:
        y = y.addcmul_(x.to(y.dtype), D.to(y.dtype).view(1, 1, h, 1))
    return (y.to(x.dtype), final) if return_final_state else y.to(x.dtype)


def ssd_recurrent(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The same scan, one step at a time: slow, obviously correct, for tests. Shapes as `ssd_chunked`."""
    b, L, h, p = x.shape
    g, n = B.shape[-2:]
    work = torch.promote_types(x.dtype, torch.float32)
    x, dt, A = x.to(work), dt.to(work), A.to(work)
    Bh = B.to(work).repeat_interleave(h // g, dim=2)  # (b, L, h, n)
    Ch = C.to(work).repeat_interleave(h // g, dim=2)
    state = x.new_zeros(b, h, p, n)
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)                                            # (b, h)
        inject = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * Bh[:, t].unsqueeze(2)  # (b, h, p, n)
        state = state * decay[..., None, None] + inject
        yt = (state @ Ch[:, t].unsqueeze(-1)).squeeze(-1)                         # (b, h, p)
        if D is not None:
            yt = yt + D.to(work).view(1, h, 1) * x[:, t]
        ys.append(yt)
    return torch.stack(ys, dim=1)


# ---------------------------------------------------------------------------------------------
# backend choice


@functools.lru_cache(maxsize=None)
def _import_kernel() -> tuple[Optional[Callable], str]:
    """mamba-ssm's Triton SSD kernel, or None and why.

    mamba-ssm's package __init__ imports its compiled CUDA extensions (Mamba-1's
    `selective_scan_cuda`, causal-conv1d) without a guard, so a pure-Python install
    (MAMBA_SKIP_CUDA_BUILD=TRUE: seconds, no compiler) fails there, although the Triton SSD kernel
    needs nothing compiled. When the package does not import, its submodule
    `mamba_ssm.ops.triton.ssd_combined` is loaded with the package's __init__ skipped. Tried once
    per process."""
    name = "mamba_ssm.ops.triton.ssd_combined"
    try:
        import mamba_ssm  # noqa: F401, PLC0415
    except Exception as e:  # noqa: BLE001 - whatever breaks inside mamba-ssm's __init__
        package_error = _first_line(e)
    else:
        package_error = None
    try:
        if package_error is None:
            module = importlib.import_module(name)
        else:
            module = _import_skipping_package_init("mamba_ssm", name)
    except Exception as e:  # noqa: BLE001 - the kernel itself does not import: unusable
        return None, f"mamba-ssm's Triton kernel does not import ({_first_line(e)})"
    why = "mamba-ssm Triton kernel (mamba_chunk_scan_combined) on CUDA tensors"
    if package_error is not None:
        why += (f"; mamba-ssm's package __init__ skipped ({package_error}): the Triton kernel needs "
                "none of its compiled extensions")
    return module.mamba_chunk_scan_combined, why


def _first_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:120]}" if first else type(e).__name__


def _import_skipping_package_init(package: str, name: str) -> types.ModuleType:
    """Import submodule ``name`` of ``package`` without running the package's __init__: the package
    is entered in sys.modules as an empty module over its own folder (its subpackages' own
    __init__ files still run). Raises ImportError when the package is not installed."""
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)  # finds the folder without executing anything
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"No module named {package!r}")
        shell = types.ModuleType(package)
        shell.__path__ = list(spec.submodule_search_locations)
        shell.__spec__ = spec
        shell.__file__ = spec.origin
        sys.modules[package] = shell
    return importlib.import_module(name)


def kernel_status() -> str:
    """Whether mamba-ssm's Triton kernel imports here, and how (`theris info`): imports Triton."""
    kernel, why = _import_kernel()
    return f"imports: {why}" if kernel is not None else f"{why}; to install: {MAMBA_INSTALL_HINT}"


def mamba_version() -> Optional[str]:
    """The installed mamba-ssm version, or None; reads package metadata only (no import)."""
    try:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        return version("mamba-ssm")
    except PackageNotFoundError:
        return None


def _choose() -> tuple[str, str, Optional[Callable]]:
    forced = os.environ.get("THERIS_SCAN", "").strip().lower()
    if forced not in ("", "auto", "reference", "mamba"):
        raise UsageError(f"THERIS_SCAN must be 'reference' or 'mamba' (or unset), got {forced!r}")
    if forced == "reference":
        return "reference", "forced by THERIS_SCAN=reference", None
    if forced == "mamba":
        kernel, why = _import_kernel()
        if kernel is None:
            raise BackendUnavailable(
                f"THERIS_SCAN=mamba but {why}; on a CUDA machine install it with "
                f"`{MAMBA_INSTALL_HINT}`, or unset THERIS_SCAN to use the PyTorch scan"
            )
        if not torch.cuda.is_available() and not interpreting():
            raise BackendUnavailable(
                "THERIS_SCAN=mamba but no CUDA device is visible; the kernel runs on CUDA only, "
                "unset THERIS_SCAN to use the PyTorch scan"
            )
        return "mamba", f"forced by THERIS_SCAN=mamba: {why}", kernel
    if not torch.cuda.is_available():
        return "reference", "no CUDA device: PyTorch chunked scan", None
    kernel, why = _import_kernel()
    if kernel is None:
        return "reference", f"{why}; for the fast kernel: {MAMBA_INSTALL_HINT}", None
    return "mamba", why, kernel


def backend_info() -> tuple[str, str]:
    """(name, reason): name is "reference" or "mamba". Decided once per process, on first use.
    Raises BackendUnavailable when THERIS_SCAN=mamba cannot be honoured, UsageError on a bad value."""
    global _backend, _kernel
    if _backend is None:
        name, reason, kernel = _choose()
        _backend, _kernel = (name, reason), kernel
    return _backend


def reset_backend() -> None:
    """Forget the choice, so the next call decides again (tests that change THERIS_SCAN)."""
    global _backend, _kernel
    _backend, _kernel = None, None


def selective_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: Optional[torch.Tensor] = None, chunk_size: int = 64, *,
    initial_state: Optional[torch.Tensor] = None, return_final_state: bool = False,
    dt_bias: Optional[torch.Tensor] = None, dt_softplus: bool = False,
):
    """The scan on the chosen backend. Shapes and options as `ssd_chunked`. CPU tensors take the
    reference path (the kernel runs on CUDA), so a CPU model works next to a GPU, except under
    Triton's interpreter (TRITON_INTERPRET=1: the test suite checks the kernel on the CPU).
    `chunk_size` is the reference scan's; the kernel's is `kernel_chunk(L)`, and a call too large
    for one launch grid is split (`kernel_pieces`). Inside `recording_launches()` nothing is
    computed: the launches are recorded and an uninitialised result returned."""
    if _recorder is not None:
        return _record(x, B, initial_state, return_final_state)
    name, _ = backend_info()
    if name == "mamba" and (x.is_cuda or interpreting()):
        return _on_kernel(x, dt, A, B, C, D, initial_state, return_final_state, dt_bias, dt_softplus)
    return ssd_chunked(
        x, dt, A, B, C, D, chunk_size, initial_state=initial_state, return_final_state=return_final_state,
        dt_bias=dt_bias, dt_softplus=dt_softplus,
    )


def kernel_chunk(L: int) -> int:
    """The kernel's chunk for sequences of L tokens: the smallest power of two >= L, at least
    MIN_KERNEL_CHUNK, at most KERNEL_CHUNK."""
    return min(KERNEL_CHUNK, max(MIN_KERNEL_CHUNK, 1 << max(L - 1, 0).bit_length()))


def kernel_pieces(b: int, L: int, h: int, p: int, g: int, n: int, chunk: int) -> list[tuple[int, int, int, int]]:
    """How `selective_scan` cuts a kernel call of b sequences of L tokens (h heads of p channels, g
    groups of state size n) so that no launch puts more than GRID_Y_LIMIT blocks on grid axis y
    (mamba-ssm's SSD kernels launch batch x chunks there) and no call's scratch passes
    KERNEL_SCRATCH_LIMIT (unless one chunk of one sequence does): [(b0, b1, l0, l1), ...],
    sequences b0:b1 and tokens l0:l1 of each, in batch-major order. A sequence too long for one
    call is cut into consecutive segments of whole chunks that hand the scan state on; the
    sequences are then split into calls."""
    nchunks = -(-L // chunk)
    per_chunk = 4 * (2 * h * chunk + 2 * h * p * n + g * chunk ** 2)  # `scratch_bytes` per chunk
    fit = max(1, (KERNEL_SCRATCH_LIMIT - 4 * h * p * n) // per_chunk)
    seg_chunks = min(nchunks, GRID_Y_LIMIT, fit)
    seg = seg_chunks * chunk                                         # tokens per segment
    per = GRID_Y_LIMIT // seg_chunks                                 # sequences per call
    per = max(1, min(per, KERNEL_SCRATCH_LIMIT // scratch_bytes(1, min(L, seg), h, p, g, n, chunk)))
    return [(b0, min(b, b0 + per), l0, min(L, l0 + seg)) for b0 in range(0, b, per) for l0 in range(0, L, seg)]


def scratch_bytes(b: int, L: int, h: int, p: int, g: int, n: int, chunk: int) -> int:
    """The float32 intermediates mamba-ssm's kernel allocates in its forward for b sequences of L
    tokens (h heads of p channels, g groups of state size n): per head and chunk the cumulative
    decays and dt (2 x chunk), per head and chunk the chunk's own and its entering state (2 x p x
    n), per group and chunk C B^T (chunk x chunk), and the final states (h x p x n)."""
    c = -(-L // chunk)
    return 4 * b * (2 * h * c * chunk + 2 * c * h * p * n + c * g * chunk ** 2 + h * p * n)


def _pieces(x: torch.Tensor, B: torch.Tensor) -> tuple[int, list[tuple[int, int, int, int]]]:
    """The kernel's chunk and `kernel_pieces` for a call on x (b, L, h, p), B (b, L, g, n)."""
    b, L, h, p = x.shape
    g, n = B.shape[-2:]
    chunk = kernel_chunk(L)
    return chunk, kernel_pieces(b, L, h, p, g, n, chunk)


def _on_kernel(x, dt, A, B, C, D, initial_state, return_final_state, dt_bias, dt_softplus):
    """`selective_scan` on mamba-ssm's kernel, in launches that fit CUDA's grid (`kernel_pieces`)."""
    b, L = x.shape[:2]
    chunk, pieces = _pieces(x, B)
    x, dt, B, C = x.contiguous(), dt.contiguous(), B.contiguous(), C.contiguous()
    A = A.float().contiguous()
    D = None if D is None else D.float().contiguous()
    dt_bias = None if dt_bias is None else dt_bias.float().contiguous()
    state = None if initial_state is None else initial_state.float().contiguous()
    ys, finals = [], []
    for i, (b0, b1, l0, l1) in enumerate(pieces):
        if l0 == 0:
            carry = None if state is None else state[b0:b1]
        last_segment = l1 == L
        out = _kernel(
            x[b0:b1, l0:l1], dt[b0:b1, l0:l1], A, B[b0:b1, l0:l1], C[b0:b1, l0:l1], chunk, D=D,
            dt_bias=dt_bias, dt_softplus=dt_softplus, initial_states=carry,
            return_final_states=return_final_state or not last_segment,
        )
        y, carry = out if isinstance(out, tuple) else (out, None)
        ys.append(y)
        if last_segment and return_final_state:
            finals.append(carry)
    if len(ys) == 1:
        y = ys[0]
    else:  # pieces are in batch-major order: segments of one batch slice, then the next slice
        per_slice = sum(1 for p in pieces if p[0] == 0)
        rows = [torch.cat(ys[k:k + per_slice], dim=1) for k in range(0, len(ys), per_slice)]
        y = torch.cat(rows, dim=0)
    if return_final_state:
        return y, torch.cat(finals, dim=0)
    return y


@dataclass(frozen=True)
class Launch:
    """One kernel call as `selective_scan` would make it (`recording_launches`)."""

    batch: int          # sequences in this call
    length: int         # tokens per sequence in this call
    sequence: int       # tokens per sequence of the `selective_scan` call (a long one is cut into segments)
    heads: int
    headdim: int
    groups: int
    d_state: int
    chunk: int          # the kernel's chunk (`kernel_chunk`)

    @property
    def nchunks(self) -> int:
        return -(-self.length // self.chunk)

    @property
    def grid_y(self) -> int:
        """The largest grid-y extent of the call's launches: batch x chunks (mamba-ssm's SSD kernels)."""
        return self.batch * self.nchunks

    @property
    def scratch_bytes(self) -> int:
        """The float32 intermediates of the kernel's forward for this call (`scratch_bytes`)."""
        return scratch_bytes(self.batch, self.length, self.heads, self.headdim, self.groups, self.d_state, self.chunk)


def _record(x: torch.Tensor, B: torch.Tensor, initial_state, return_final_state):
    b, L, h, p = x.shape
    g, n = B.shape[-2:]
    chunk, pieces = _pieces(x, B)
    for b0, b1, l0, l1 in pieces:
        _recorder.append(Launch(b1 - b0, l1 - l0, L, h, p, g, n, chunk))
    y = x.new_empty(b, L, h, p)
    return (y, x.new_empty(b, h, p, n, dtype=torch.float32)) if return_final_state else y


@contextlib.contextmanager
def recording_launches() -> Iterator[list[Launch]]:
    """Inside, `selective_scan` computes nothing and appends to the yielded list the kernel
    launches it would make on CUDA (whatever the backend and device): run a model on the "meta"
    device to plan a window's launches without memory or time (benchmarks/gpu_check.py)."""
    global _recorder
    previous, _recorder = _recorder, []
    try:
        yield _recorder
    finally:
        _recorder = previous


def interpreting() -> bool:
    """Whether Triton kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1, tests only)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"
