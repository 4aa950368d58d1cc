"""Keep the memory a training or inference step frees, instead of handing it back to the kernel.

PyTorch's CPU tensors come from malloc. glibc serves large blocks with mmap and gives
freed memory at the top of its heap back to the kernel once more than its trim threshold
is free (both thresholds move with the sizes it has seen); the next step then faults the
same pages in again, each one zeroed by the kernel. A `model=tiny` pretraining step
faulted 10,000 to 17,000 pages (40 to 70 MB) that way on every step here, none with the
memory kept, and ran 1.05x faster (benchmarks/allocator.py). The PyTorch CPU tuning guide
gets the same from preloading jemalloc or tcmalloc; `mallopt` does it in-process.

Only on glibc, and only where the user has not chosen: a `MALLOC_*` variable, a malloc
setting in `GLIBC_TUNABLES`, or anything in `LD_PRELOAD` (where jemalloc and tcmalloc go;
bertlab cannot tell what a preloaded library does, so it stays out) is left in charge:
`MALLOC_TRIM_THRESHOLD_=131072 bertlab-train ...` runs with glibc's default trim threshold
(fixed, no longer moving) and without bertlab's setting.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB (glibc's largest mmap threshold) come from the heap, and up to
# 1 GiB of free heap is kept: a step's working set, not a data set's.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


def _is_choice(name: str, value: str) -> bool:
    return (
        name.startswith("MALLOC_")
        or (name == "GLIBC_TUNABLES" and "malloc" in value)
        or (name == "LD_PRELOAD" and bool(value.strip()))
    )


def user_chose_allocator(environ: Mapping[str, str] = os.environ) -> bool:
    """The environment already tunes glibc's malloc or preloads another allocator."""
    return any(_is_choice(name, value) for name, value in environ.items())


def without_allocator_choice(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`environ` less what `user_chose_allocator` reads: for child processes that compare
    glibc as it comes with bertlab's setting (benchmarks/allocator.py, the tests)."""
    return {name: value for name, value in environ.items() if not _is_choice(name, value)}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if they were set."""
    if not sys.platform.startswith("linux") or user_chose_allocator():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; either call failing leaves glibc's own behaviour.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
