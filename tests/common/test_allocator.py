"""The allocator setting the package applies when imported (portrait_stylize/common/allocator.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psutil
import pytest

from portrait_stylize.common.allocator import (
    KERNEL_CACHE,
    SWITCH,
    _glibc,
    bound_kernel_cache,
    keep_freed_memory,
    release_freed_memory,
)

from helpers import REPO

glibc_only = pytest.mark.skipif(not _glibc(), reason="the setting is glibc's")

#: In a fresh process: import the package, fault in a 24 MB array, free it, and print how much of it
#: the process still holds (resident pages, MB).
_HELD_AFTER_FREE = """
import numpy as np, portrait_stylize
page = __import__("os").sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
block = np.ones(24 << 18, np.float32)
before = rss()
del block
print(before - rss())
"""


def _mb_returned(**env: str) -> float:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    result = subprocess.run([sys.executable, "-c", _HELD_AFTER_FREE], capture_output=True, text=True, cwd=REPO,
                            env={**environ, **env}, check=True)
    return float(result.stdout)


@glibc_only
def test_importing_the_package_keeps_freed_blocks_for_reuse():
    assert _mb_returned() < 1  # the 24 MB stay with the process, ready for the next pass
    assert _mb_returned(**{SWITCH: "0"}) > 23  # glibc's default gives them back at once


@glibc_only
def test_a_process_with_allocator_settings_of_its_own_is_left_alone():
    assert keep_freed_memory({}) is True
    # benchmarks/isa_cap.py's CPUID shim and glibc CPU tunable are no allocator settings
    assert keep_freed_memory({"LD_PRELOAD": "/tmp/isa_cap-0123.so", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})
    for environ in ({SWITCH: "0"}, {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, {"MALLOC_TRIM_THRESHOLD_": "0"},
                    {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F:glibc.malloc.trim_threshold=0"}):
        assert keep_freed_memory(environ) is False, environ
    assert _mb_returned(MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="131072") > 23


@glibc_only
def test_release_freed_memory_returns_memory_to_the_system():
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    process = psutil.Process()
    # Many mid-sized blocks from another thread's arena, freed but kept (under the trim threshold).
    def churn():
        blocks = [libc.malloc(256 << 10) for _ in range(600)]
        for block in blocks:
            ctypes.memset(block, 1, 256 << 10)
        for block in blocks[:-1]:
            libc.free(block)
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    before = process.memory_info().rss
    release_freed_memory()
    assert before - process.memory_info().rss > 64 << 20, (before, process.memory_info().rss)


def test_compiled_kernels_are_bounded_unless_the_process_chose():
    environ: dict[str, str] = {}
    bound_kernel_cache(environ)
    assert environ == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(KERNEL_CACHE)}
    mine = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "4096"}
    bound_kernel_cache(mine)
    assert mine == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "4096"}
    code = "import os, portrait_stylize; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    environ = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=environ,
                              check=True)
    assert imported.stdout.strip() == str(KERNEL_CACHE)
