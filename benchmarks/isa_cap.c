/* Make every runtime in a process see a narrower x86-64 CPU than the one it runs on.
 *
 * Loaded with LD_PRELOAD by benchmarks/isa_cap.py (which builds it); not part of the package.
 *
 * PyTorch (oneDNN, ATen), ONNX Runtime (MLAS), OpenVINO and TFLite (XNNPACK) each choose their
 * kernels from what the CPUID instruction reports, and only oneDNN has a switch to cap it
 * (ONEDNN_MAX_CPU_ISA). Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, where the CPU offers
 * it: the "cpuid_fault" flag) turns every CPUID into a SIGSEGV; the handler below runs the real
 * instruction with faulting briefly off, clears the bits of the units the chosen level lacks (and
 * their XSAVE state components), and resumes after the instruction. The level comes from
 * ISA_CAP_LEVEL: "avx2" (the default: no AVX-512, VNNI, bf16/fp16 or AMX; AMD Zen 2/3, Intel
 * before Skylake-SP), "avx512-vnni" (AVX-512 with VNNI, no bf16/fp16 or AMX; Intel Cascade Lake,
 * Ice Lake) or "avx512-bf16" (AVX-512 with VNNI and BF16, no fp16 or AMX; AMD Zen 4). The kernels
 * then chosen are those such a CPU runs; the caches and memory stay this machine's.
 *
 * Other SIGSEGVs are passed on: a handler installed later (Python's faulthandler, a runtime's
 * own) is recorded instead of replacing this one and called for every fault that is not a CPUID.
 * The setting is inherited by threads and child processes' threads; execve resets it and the
 * constructor below sets it again (LD_PRELOAD and ISA_CAP_LEVEL are inherited).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
#define BIT(n) (1u << (n))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static struct sigaction passed_on; /* what the program believes handles SIGSEGV */
static int installed;

static sigaction_fn real_sigaction(void) {
    static sigaction_fn real;
    if (!real) real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return real;
}

enum { AVX2, AVX512_VNNI, AVX512_BF16 };
static int level = AVX2;

/* Clear what the level's CPU lacks. Leaf 7: AVX-512 F/DQ/IFMA/PF/ER/CD/BW/VL, VBMI/VBMI2/VNNI/
 * BITALG/VPOPCNTDQ, 4VNNIW/4FMAPS/VP2INTERSECT (cleared for AVX2 only), FP16 and AMX BF16/TILE/INT8
 * (cleared at every level); leaf 7.1: AVX512_BF16 (kept for avx512-bf16), AVX-VNNI, AMX-FP16,
 * AVX-IFMA, AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16, AVX10; leaf 0xD: the opmask/ZMM (for AVX2)
 * and AMX tile state components; leaves 0x1D, 0x1E, 0x24: AMX and AVX10. */
static void cap(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        if (level == AVX2) {
            r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
            r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
            r[3] &= ~(BIT(2) | BIT(3) | BIT(8));
        }
        r[3] &= ~(BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~(BIT(4) | BIT(21) | BIT(23) | (level == AVX512_BF16 ? 0 : BIT(5)));
        r[3] &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));
    } else if (leaf == 0xD && sub == 0) {
        r[0] &= ~(BIT(17) | BIT(18) | (level == AVX2 ? BIT(5) | BIT(6) | BIT(7) : 0));
    } else if (leaf == 0x1D || leaf == 0x1E || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    /* CPUID faulting raises a general-protection fault (si_code SI_KERNEL) at the instruction. */
    if (info->si_code == SI_KERNEL && ip[0] == 0x0F && ip[1] == 0xA2) {
        uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], r[4];
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        cap(leaf, sub, r);
        regs[REG_RAX] = r[0];
        regs[REG_RBX] = r[1];
        regs[REG_RCX] = r[2];
        regs[REG_RDX] = r[3];
        regs[REG_RIP] += 2;
        return;
    }
    if ((passed_on.sa_flags & SA_SIGINFO) && passed_on.sa_sigaction) {
        passed_on.sa_sigaction(sig, info, context);
    } else if (passed_on.sa_handler != SIG_DFL && passed_on.sa_handler != SIG_IGN) {
        passed_on.sa_handler(sig);
    } else {
        /* No handler of the program's own: die of the fault as it would have without us. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction()(SIGSEGV, &dfl, NULL);
    }
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (sig == SIGSEGV && installed) {
        if (old) *old = passed_on;
        if (act) passed_on = *act;
        return 0;
    }
    return real_sigaction()(sig, act, old);
}

__attribute__((constructor)) static void install(void) {
    const char *name = getenv("ISA_CAP_LEVEL");
    if (name && strcmp(name, "avx512-vnni") == 0) level = AVX512_VNNI;
    else if (name && strcmp(name, "avx512-bf16") == 0) level = AVX512_BF16;
    else if (name && *name && strcmp(name, "avx2") != 0) {
        fprintf(stderr, "isa_cap: unknown ISA_CAP_LEVEL %s (avx2, avx512-vnni, avx512-bf16)\n", name);
        _exit(97);
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_segv;
    act.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&act.sa_mask);
    if (real_sigaction()(SIGSEGV, &act, &passed_on) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "isa_cap: this CPU or kernel offers no CPUID faulting; the cap is NOT in effect\n");
        _exit(97);
    }
    installed = 1;
}
