"""Run a command as if on an AVX2-only CPU: every runtime in it sees no AVX-512, VNNI, bf16 or AMX.

Run:  .venv/bin/python benchmarks/isa_cap.py -- .venv/bin/python benchmarks/bench_peer_tflite.py

``ONEDNN_MAX_CPU_ISA=AVX2`` caps only oneDNN (PyTorch's convolutions); ONNX Runtime, OpenVINO
and TFLite's XNNPACK read the CPUID instruction themselves. This wrapper builds
``benchmarks/isa_cap.c`` with the C compiler (``cc``) and runs the command with it preloaded: the
library asks Linux to trap CPUID (CPUID faulting, the ``cpuid_fault`` flag in /proc/cpuinfo;
most Intel CPUs since 2012 and recent AMD ones offer it, also inside VMs) and answers with the
wider units cleared. glibc's own string functions are capped the same way with
``GLIBC_TUNABLES``. What stays this machine's: its caches, memory bandwidth and clock, so the
numbers are "AVX2 kernels on this CPU", not those of a real AVX2 laptop; say so with them.

Inside, ``torch.backends.cpu.get_cpu_capability()`` reports ``AVX2`` and the benchmarks print
it with the CPU line (``portrait_stylize.runtime.cpu.cpu_description``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("isa_cap.c")
#: glibc's names for what the shim hides (its memcpy/strlen variants are chosen before the shim
#: loads, so they are capped by glibc's own tunable).
GLIBC_HWCAPS = ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512_VNNI",
                "AVX512_BF16", "AVX512_FP16", "AVX_VNNI", "AMX_BF16", "AMX_TILE", "AMX_INT8")


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


def capped_environment(library: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the shim preloaded and glibc capped too."""
    env = dict(os.environ if env is None else env)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    tunable = "glibc.cpu.hwcaps=" + ",".join("-" + name for name in GLIBC_HWCAPS)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), tunable]))
    return env


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print(__doc__)
        return 2
    try:
        library = build()
    except IsaCapError as exc:
        print(f"isa_cap: {exc}", file=sys.stderr)
        return 2
    os.execvpe(command[0], command, capped_environment(library))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
