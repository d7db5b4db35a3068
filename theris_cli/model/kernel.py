"""mamba-ssm's Triton SSD kernel (`mamba_chunk_scan_combined`), the CUDA backend of
`scan.selective_scan`: its import (without mamba-ssm's package __init__, which a pure-Python install
cannot run), the planning of its launches (the chunk per sequence length, and calls cut to fit
CUDA's launch grid and a scratch limit), the launches themselves, and a recorder that lists the
launches a model would make without computing anything (benchmarks/gpu_check.py plans a window's
launches with it).

Nothing here imports Triton or mamba-ssm at module import, nor scan.py: scan.py chooses the backend
and calls `_on_kernel` with the kernel function that `_import_kernel` returned.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

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

_recorder: Optional[list] = None  # the launches of `recording_launches`, while inside it


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


def _on_kernel(kernel, x, dt, A, B, C, D, initial_state, return_final_state, dt_bias, dt_softplus):
    """`selective_scan` on mamba-ssm's kernel (``kernel``: `mamba_chunk_scan_combined`), in launches
    that fit CUDA's grid (`kernel_pieces`)."""
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
        out = kernel(
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
