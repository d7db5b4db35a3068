"""Transparent huge pages for PyTorch's CPU allocator, asked for before torch is imported.

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
