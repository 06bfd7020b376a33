"""Give the memory of freed tensors back to the operating system during training.

On Linux, glibc's malloc serves a large allocation with mmap (returned to the system on free) only above a
threshold that it raises every time such a block is freed, up to 32 MiB. A training step frees activation tensors
of many sizes, so after the first steps most of them come from the heap instead, which keeps the freed memory and
fragments: the process's resident memory ends well above what the step ever holds at once (TAILOR on MOSEI shapes:
3.31 GiB peak RSS against 2.12 GiB with a fixed threshold; docs/models/tailor.md, "Performance").

`release_freed_memory` fixes the threshold, which also stops it from moving. The trainer calls it once per process;
it changes how memory is obtained, not any computed value. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 16  # tensors of 64 KiB and more (16k float32 values) are mapped and unmapped


@functools.cache
def release_freed_memory(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve allocations of at least `threshold` bytes with mmap from now on (glibc); True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
