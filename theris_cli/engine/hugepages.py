"""Allocator settings for large temporaries: freed memory kept by malloc (`keep_freed_memory`),
pages of a buffer handed back while it is being read for the last time (`release_pages`), and
transparent huge pages for PyTorch's CPU allocator only where the user asks for them.

An upscaling window allocates and frees feature maps of hundreds of MiB and thousands of smaller
buffers; every block that goes back to the kernel is page-faulted in again at its next use (system
time). `keep_freed_memory` keeps them in malloc's heap instead. Transparent huge pages
(THP_MEM_ALLOC_ENABLE=1, read by PyTorch at its first allocation) are left off: with that heap
their faults (2 MiB zeroed and compacted at a time) add system time instead of saving it.
"""

from __future__ import annotations

import mmap
import os
import sys


def prefer_huge_pages() -> bool:
    """Whether PyTorch's CPU allocator will ask for transparent huge pages: only where the user has
    set THP_MEM_ALLOC_ENABLE=1 (theris does not set it; see the module docstring). Called before
    torch is imported, where the allocator's settings are decided."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 2**31 - 1  # bytes: the largest value mallopt takes (an int)
# bytes from which a block is mapped on its own and unmapped when freed, at 640x512 LR pixels a
# window (or tile), in proportion above: whole feature maps and decoded windows (a few a window,
# hundreds of MiB) rather than bands and frames, whose sizes grow with the frame too
_MAP_FROM = 32 * 2**20
_MAP_FROM_PIXELS = 640 * 512
_mallopt = None
_threshold = 0  # the mmap threshold in effect (0: not set by theris)


def map_threshold(pixels: int = 0) -> int:
    """Bytes from which malloc maps a block on its own, for windows (or tiles) of `pixels` LR pixels."""
    return min(_KEEP, max(_MAP_FROM, _MAP_FROM * pixels // _MAP_FROM_PIXELS))


def keep_freed_memory(pixels: int = 0) -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of returning it to the
    kernel; True where that is in effect (glibc), False elsewhere (nothing changes). `pixels`: the
    LR pixels of a window (or tile) about to run, which sets where the heap ends (`map_threshold`).

    By default an allocation of more than a few MiB is a fresh mmap() and its free an munmap(): an
    upscaling window allocates and frees such buffers (a band's cost volume or decoder stage, an
    output frame) thousands of times, and every fresh one is page-faulted in again (system time, a
    fifth of the user time at 640x512). Here blocks below the threshold (32 MiB up to 640x512 LR
    pixels, in proportion above) come from the heap and stay there once freed, so the next buffers
    reuse pages already mapped. Larger blocks (the window's feature maps and decoded frames: a few a
    window) are still mapped on their own: their faults are a small share of a window's time, and
    unmapping them keeps the heap from growing by their size at every window whose smaller buffers
    land between them (the resident peak is then the window's live data plus the kept heap, not the
    sum of every window's layout). The threshold grows with the frame because every buffer does: a
    fixed one would send a large frame's bands and output frames back to mmap, fault by fault.
    Called by the inference path (`infer.Upscaler`) only: training's memory use is left as it is.
    """
    global _mallopt, _threshold
    want = map_threshold(pixels)
    if _threshold == want:
        return True
    if not sys.platform.startswith("linux"):
        return False
    if _mallopt is None:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others without mallopt
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _mallopt = mallopt
    if _mallopt(_M_MMAP_THRESHOLD, want) and _mallopt(_M_TRIM_THRESHOLD, _KEEP):
        _threshold = want
        return True
    return False


_MADV_DONTNEED = 4  # madvise(2): drop the pages' contents; a later touch maps zeroed pages
_madvise = None


def release_pages(t) -> bool:
    """Hand the memory pages that lie wholly inside tensor ``t``'s bytes (contiguous) back to the
    kernel now, before the tensor is freed: for the rows of a feature map that its last reader has
    finished with while it still reads the others (the CPU decoder's bands, `units.decode_units`).
    ``t`` must not be read again (its released bytes read as zeros); writing is allowed. True where
    done (Linux), False elsewhere (then nothing changes)."""
    global _madvise
    if not sys.platform.startswith("linux") or not t.is_contiguous() or t.device.type != "cpu":
        return False
    if _madvise is None:
        import ctypes
        import ctypes.util

        try:
            madvise = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
        except (OSError, AttributeError):
            return False
        madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
        _madvise = madvise
    start, end = t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # the first whole page, the last: not shared
    last = end // mmap.PAGESIZE * mmap.PAGESIZE         # with the allocator's own bookkeeping
    return last <= first or _madvise(first, last - first, _MADV_DONTNEED) == 0
