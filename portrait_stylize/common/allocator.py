"""The C allocator's settings for this process: freed network activations kept for the next pass.

glibc's ``malloc`` hands large freed blocks back to the system at once (its trim threshold follows
the largest block freed, at most 64 MB). A network pass on the CPU allocates and frees tens of
megabytes of activations, so every pass faults all those pages in again, and for the small face
networks that costs as much as their arithmetic: on a 1024² portrait, face detection with its mesh
and the region parsing took 90 ms with glibc's defaults and 80 ms with :func:`keep_freed_memory`
(2-core Xeon, AVX-512; ``benchmarks/bench_pipeline.py --faces`` times both engines under it).

:func:`keep_freed_memory` serves blocks up to :data:`MMAP_THRESHOLD` from the heap and keeps up to
:data:`TRIM_THRESHOLD` of freed heap for reuse: the process holds at most that much more memory
than it uses. The package applies it once, when it is imported, and only on glibc in a process
that has no allocator settings of its own (a ``MALLOC_*`` variable or a ``glibc.malloc``
tunable, or another allocator preloaded: jemalloc, tcmalloc, mimalloc);
``PORTRAIT_STYLIZE_KEEP_FREED_MEMORY=0`` leaves the allocator alone.

PyTorch's CPU kernels (oneDNN) keep a compiled kernel for every convolution shape they meet, up to
1024 by default: a server that sees pictures of many sizes grows by them for its whole life (the
web demo's functions: +145 MB over 150 requests of new sizes). :func:`bound_kernel_cache` sets
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` to :data:`KERNEL_CACHE` unless it is set (oneDNN reads it
when it first compiles a kernel, so the package sets it on import): +25 MB over those requests,
and no slower (a 512² call with a face mesh and regions: 146 ms, 145 with 1024; 64 thrashed
the face mesh's 150 convolutions: 199 ms).

A server gives what it kept back when it goes idle: :func:`release_freed_memory` (glibc's
``malloc_trim``) returns the free memory of every arena, including the per-thread arenas that
concurrent requests grow and the trim threshold never shrinks (the web demo: 1383 MB after 120
requests, still 1383 MB idle; ``benchmarks/soak_app.py``).
"""

from __future__ import annotations

import ctypes
import os

#: Blocks up to this size come from the heap (glibc's own default grows to 32 MB as blocks are freed).
MMAP_THRESHOLD = 32 << 20
#: Freed memory at the top of the heap is returned to the system only beyond this much.
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_GLIBC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
SWITCH = "PORTRAIT_STYLIZE_KEEP_FREED_MEMORY"


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # not glibc (macOS, Windows, musl)
        return False


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring), unless the process chose
    its allocator's settings itself or ``PORTRAIT_STYLIZE_KEEP_FREED_MEMORY=0``; whether they were set."""
    environ = os.environ if environ is None else environ
    # Another allocator preloaded (jemalloc, tcmalloc, mimalloc: all named *malloc*) has its own policy.
    preloaded_allocator = "malloc" in environ.get("LD_PRELOAD", "")
    tuned = any(k in environ for k in _GLIBC_SETTINGS) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
    if environ.get(SWITCH, "1") == "0" or preloaded_allocator or tuned:
        return False
    if not _glibc():
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))


#: Compiled oneDNN kernels kept (the face mesh alone has about 150 convolutions).
KERNEL_CACHE = 256


def bound_kernel_cache(environ: dict[str, str] | None = None) -> None:
    """``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` = :data:`KERNEL_CACHE` unless the process set it."""
    (os.environ if environ is None else environ).setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(KERNEL_CACHE))


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the system (glibc's ``malloc_trim(0)``, every arena);
    whether any was returned. A no-op elsewhere. Costs a few milliseconds: for idle moments."""
    if not _glibc():
        return False
    return bool(ctypes.CDLL(None).malloc_trim(0))
