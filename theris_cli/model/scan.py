"""The selective scan (Mamba-2 SSD) with two backends: a pure-PyTorch chunked reference that is fast
forward and backward on CPU, and mamba-ssm's Triton kernel on CUDA when it imports.

The recurrence, per sequence, head h and step t (x: (P,) channels of the head, state: (P, N)):
    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * x_t B_t^T
    y_t     = state_t C_t + D_h x_t
C already carries the thermal prompt (C + T) when it arrives here, so both backends share it.

This module holds the reference (`ssd_chunked`, `ssd_recurrent` for tests), the backend choice and
the dispatcher `selective_scan`; kernel.py holds the kernel's side: its import, the planning of its
launches, and the launch recorder. The backend is chosen once, lazily (nothing GPU-related is
imported at module import), and can be forced with THERIS_SCAN=reference|mamba. `backend_info()`
says which one is in use and why.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from theris_cli.errors import BackendUnavailable, UsageError
from theris_cli.model import kernel  # names read through the module: a test's monkeypatch of one takes effect

_backend: Optional[tuple[str, str]] = None
_kernel: Optional[Callable] = None


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


def _choose() -> tuple[str, str, Optional[Callable]]:
    forced = os.environ.get("THERIS_SCAN", "").strip().lower()
    if forced not in ("", "auto", "reference", "mamba"):
        raise UsageError(f"THERIS_SCAN must be 'reference' or 'mamba' (or unset), got {forced!r}")
    if forced == "reference":
        return "reference", "forced by THERIS_SCAN=reference", None
    if forced == "mamba":
        fn, why = kernel._import_kernel()
        if fn is None:
            raise BackendUnavailable(
                f"THERIS_SCAN=mamba but {why}; on a CUDA machine install it with "
                f"`{kernel.MAMBA_INSTALL_HINT}`, or unset THERIS_SCAN to use the PyTorch scan"
            )
        if not torch.cuda.is_available() and not kernel.interpreting():
            raise BackendUnavailable(
                "THERIS_SCAN=mamba but no CUDA device is visible; the kernel runs on CUDA only, "
                "unset THERIS_SCAN to use the PyTorch scan"
            )
        return "mamba", f"forced by THERIS_SCAN=mamba: {why}", fn
    if not torch.cuda.is_available():
        return "reference", "no CUDA device: PyTorch chunked scan", None
    fn, why = kernel._import_kernel()
    if fn is None:
        return "reference", f"{why}; for the fast kernel: {kernel.MAMBA_INSTALL_HINT}", None
    return "mamba", why, fn


def backend_info() -> tuple[str, str]:
    """(name, reason): name is "reference" or "mamba". Decided once per process, on first use.
    Raises BackendUnavailable when THERIS_SCAN=mamba cannot be honoured, UsageError on a bad value."""
    global _backend, _kernel
    if _backend is None:
        name, reason, fn = _choose()
        _backend, _kernel = (name, reason), fn
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
    `chunk_size` is the reference scan's; the kernel's is `kernel.kernel_chunk(L)`, and a call too
    large for one launch grid is split (`kernel.kernel_pieces`). Inside `kernel.recording_launches()`
    nothing is computed: the launches are recorded and an uninitialised result returned."""
    if kernel._recorder is not None:
        return kernel._record(x, B, initial_state, return_final_state)
    name, _ = backend_info()
    if name == "mamba" and (x.is_cuda or kernel.interpreting()):
        return kernel._on_kernel(_kernel, x, dt, A, B, C, D, initial_state, return_final_state, dt_bias, dt_softplus)
    return ssd_chunked(
        x, dt, A, B, C, D, chunk_size, initial_state=initial_state, return_final_state=return_final_state,
        dt_bias=dt_bias, dt_softplus=dt_softplus,
    )
