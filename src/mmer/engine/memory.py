"""Opt-in lower peak memory: give the memory of freed tensors back to the operating system (`train.release_memory`).

On Linux, glibc's malloc serves a large allocation with mmap (returned to the system on free) only above a
threshold that it raises every time such a block is freed, up to 32 MiB. A training step frees activation tensors
of many sizes, so after the first step most of them come from the heap instead, which keeps freed memory and
fragments: the process's resident memory ends well above what the step ever holds at once.

`release_freed_memory` fixes the threshold, which also stops it from moving. Every tensor above it is then mapped
fresh and zero-filled by the kernel, which costs time, so the trainer calls it only when `train.release_memory`
is true. TAILOR on MOSEI shapes: peak RSS 3.47 -> 2.16 GiB, step 24% slower (docs/models/tailor.md,
"Performance"). It changes how memory is obtained, never a computed value. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the hint only: the module stays free of the config stack's imports (tests probe its malloc effects)
    from mmer.config import TrainConfig

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20  # 1 MiB: as low a peak as 64 KiB on TAILOR, with small tensors still on the heap


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


def apply_memory_option(train: TrainConfig) -> bool:
    """Do what `train.release_memory` asks of this process (the trainer and the speed benchmarks call this)."""
    return release_freed_memory() if train.release_memory else False
