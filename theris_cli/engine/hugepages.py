"""Allocator settings for large temporaries: transparent huge pages for PyTorch's CPU allocator
(asked for before torch is imported), and freed memory kept by malloc (`keep_freed_memory`).

An upscaling window holds feature maps of hundreds of MiB at large frame sizes; in 4 KiB pages each
fresh one costs tens of thousands of page faults (system time). PyTorch's CPU allocator aligns
allocations of 2 MiB and more to huge pages and madvise()s them when THP_MEM_ALLOC_ENABLE=1, which
it reads once, at its first allocation: so this must run before `import torch`. Where the kernel's
THP mode is "never" it changes nothing. A value the user has set is left alone.
"""

from __future__ import annotations

import os
import sys


def prefer_huge_pages() -> bool:
    """Set THP_MEM_ALLOC_ENABLE=1 unless set or torch is already imported; True if it is in effect."""
    if "torch" not in sys.modules:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 2**31 - 1  # bytes: the largest value mallopt takes (an int)
_kept = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of returning it to the
    kernel; True where that is in effect (glibc), False elsewhere (nothing changes).

    By default an allocation of more than a few MiB is a fresh mmap() and its free an munmap(): an
    upscaling window allocates and frees such buffers (feature maps, a band's cost volume, an output
    frame) thousands of times, and every fresh one is page-faulted in again (system time, a fifth of
    the user time at 640x512). With both thresholds at their maximum, large blocks come from the
    heap and stay there once freed, so the next window's buffers reuse pages already mapped. The
    resident size then stays at the window's high-water mark between windows, which it reaches anyway.
    Called by the inference path (`infer.Upscaler`) only: training's memory use is left as it is.
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
    return _kept
