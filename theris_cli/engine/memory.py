"""What the upscaler needs to know about memory: whether an error is a tile too large for the GPU
(so that a smaller tile may succeed), and how much host memory there is and the process holds
(Linux /proc; elsewhere these return None and frames are not tiled on the CPU)."""

from __future__ import annotations

import torch


# The RuntimeErrors a GPU gives for a tile too large for it, besides torch.OutOfMemoryError: a
# message from CUDA, cuBLAS, cuDNN or Triton's launcher that says memory ran out or a launch grid
# is past CUDA's limits (Triton: "Triton Error [CUDA]: invalid argument"; PyTorch's own kernels:
# "CUDA error: invalid configuration argument"). Errors that leave the CUDA context unusable (an
# illegal memory access) are not among them: no smaller tile can run after those.
_GPU_SOURCES = ("CUDA", "cuDNN", "CUDNN", "CUBLAS", "Triton")
_TOO_LARGE = ("out of memory", "ALLOC_FAILED", "NOT_ENOUGH_WORKSPACE", "invalid argument",
              "invalid configuration argument")


def tile_too_large(e: BaseException) -> bool:
    """Whether ``e`` is what a GPU raises for a tile too large for it (out of memory in any of its
    forms, a launch grid past CUDA's limits, Triton out of shared memory or registers), so that a
    smaller tile may succeed."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    if type(e).__name__ == "OutOfResources":  # triton.runtime.errors.OutOfResources
        return True
    if isinstance(e, RuntimeError):
        text = str(e)
        return any(s in text for s in _GPU_SOURCES) and any(m in text for m in _TOO_LARGE)
    return False


def describe_error(e: BaseException) -> str:
    """The first line of an error, shortened: for the log and the final message."""
    first = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


# ------------------------------------------------------------------------------------------------
# host memory (Linux /proc; elsewhere these return None and frames are not tiled on the CPU)



def available_memory() -> int | None:
    """Bytes of RAM available to new allocations (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _proc_status_bytes(field: str) -> int | None:
    """A /proc/self/status field in bytes (the file states kB), or None where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident() -> int | None:
    return _proc_status_bytes("VmRSS")


def peak_resident() -> int | None:
    return _proc_status_bytes("VmHWM")


def reset_peak_resident() -> bool:
    """Set VmHWM to the current resident size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
