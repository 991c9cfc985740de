"""Run a command as if on a narrower CPU class: every runtime in it sees only the units that class has.

Run:  .venv/bin/python benchmarks/isa_cap.py -- .venv/bin/python benchmarks/bench_peer_tflite.py
      .venv/bin/python benchmarks/isa_cap.py --level avx512-vnni -- .venv/bin/python benchmarks/bench_peer_tflite.py

Levels (``--level``, default ``avx2``), on a CPU that has more:

* ``avx2``: no AVX-512, VNNI, bf16/fp16 or AMX (AMD Zen 2/3, Intel laptops and desktops);
* ``avx512-vnni``: AVX-512 with VNNI, no bf16/fp16 or AMX (Intel Cascade Lake, Ice Lake servers);
* ``avx512-bf16``: AVX-512 with VNNI and BF16, no fp16 or AMX (AMD Zen 4);
* ``native``: the command as it is (the same wrapper, so tables of every level come from one loop).

``ONEDNN_MAX_CPU_ISA`` caps only oneDNN (PyTorch's convolutions); ONNX Runtime, OpenVINO
and TFLite's XNNPACK read the CPUID instruction themselves. This wrapper builds
``benchmarks/isa_cap.c`` with the C compiler (``cc``) and runs the command with it preloaded: the
library asks Linux to trap CPUID (CPUID faulting, the ``cpuid_fault`` flag in /proc/cpuinfo;
most Intel CPUs since 2012 and recent AMD ones offer it, also inside VMs) and answers with the
level's missing units cleared. glibc's own string functions are capped the same way with
``GLIBC_TUNABLES``. What stays this machine's: its caches, memory bandwidth and clock, so the
numbers are "that class's kernels on this CPU", not those of a real machine of the class; say so
with them.

Inside, ``torch.backends.cpu.get_cpu_capability()`` reports ``AVX2`` or ``AVX512`` and the
benchmarks print it with the CPU line (``portrait_stylize.runtime.cpu.cpu_description``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("isa_cap.c")
#: Per level, glibc's names for what the shim hides (its memcpy/strlen variants are chosen before
#: the shim loads, so they are capped by glibc's own tunable); ``native`` hides nothing.
_NO_AMX = ("AVX512_FP16", "AVX_VNNI", "AMX_BF16", "AMX_TILE", "AMX_INT8")
GLIBC_HWCAPS = {"avx2": ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512_VNNI", "AVX512_BF16",
                         *_NO_AMX),
                "avx512-vnni": ("AVX512_BF16", *_NO_AMX),
                "avx512-bf16": _NO_AMX,
                "native": ()}
LEVELS = tuple(GLIBC_HWCAPS)


class IsaCapError(RuntimeError):
    """The cap cannot be applied on this machine (no CPUID faulting, no compiler, not x86-64)."""


def cpuid_faulting() -> bool:
    """Whether the kernel reports CPUID faulting for this CPU."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return "cpuid_fault" in flags.split()


def build(cache: Path | None = None) -> Path:
    """Compile ``isa_cap.c`` once into ``cache`` (default: the temporary folder), named by the
    source's hash so an edited source is rebuilt; returns the shared library's path."""
    if os.uname().machine != "x86_64" or not cpuid_faulting():
        raise IsaCapError("this machine offers no CPUID faulting (x86-64 with the cpuid_fault flag); "
                          "run the benchmark on a real AVX2-only machine instead")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise IsaCapError("no C compiler (cc or gcc) on PATH; install one (Debian: apt install gcc)")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    library = (cache or Path(tempfile.gettempdir())) / f"isa_cap-{digest}.so"
    if not library.is_file():
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-ldl"], check=True)
        partial.replace(library)
    return library


def capped_environment(library: Path | None, env: dict[str, str] | None = None,
                       level: str = "avx2") -> dict[str, str]:
    """``env`` (default: this process's) with the shim preloaded for ``level`` and glibc capped too
    (``native``: ``env`` unchanged; ``library`` may then be ``None``)."""
    env = dict(os.environ if env is None else env)
    if level == "native":
        return env
    if level not in GLIBC_HWCAPS:
        raise IsaCapError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    env["ISA_CAP_LEVEL"] = level
    tunable = "glibc.cpu.hwcaps=" + ",".join("-" + name for name in GLIBC_HWCAPS[level])
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), tunable]))
    return env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="isa_cap.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", choices=LEVELS, default="avx2", help="the CPU class to make (default avx2)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.print_help(sys.stderr)
        return 2
    try:
        library = None if args.level == "native" else build()
    except IsaCapError as exc:
        print(f"isa_cap: {exc}", file=sys.stderr)
        return 2
    os.execvpe(command[0], command, capped_environment(library, level=args.level))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
