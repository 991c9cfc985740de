/* Make every runtime in a process see an AVX2-only x86-64 CPU, on a CPU with wider units.
 *
 * Loaded with LD_PRELOAD by benchmarks/isa_cap.py (which builds it); not part of the package.
 *
 * PyTorch (oneDNN, ATen), ONNX Runtime (MLAS), OpenVINO and TFLite (XNNPACK) each choose their
 * kernels from what the CPUID instruction reports, and only oneDNN has a switch to cap it
 * (ONEDNN_MAX_CPU_ISA). Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, where the CPU offers
 * it: the "cpuid_fault" flag) turns every CPUID into a SIGSEGV; the handler below runs the real
 * instruction with faulting briefly off, clears the AVX-512, AVX-VNNI, bf16/fp16 and AMX bits
 * (and their XSAVE state components), and resumes after the instruction. The kernels then
 * chosen are the AVX2 ones an AVX2-only machine runs; the caches and memory stay this machine's.
 *
 * Other SIGSEGVs are passed on: a handler installed later (Python's faulthandler, a runtime's
 * own) is recorded instead of replacing this one and called for every fault that is not a CPUID.
 * The setting is inherited by threads and child processes' threads; execve resets it and the
 * constructor below sets it again (LD_PRELOAD is inherited).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
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

/* Clear what an AVX2-only CPU (e.g. AMD Zen 2/3) lacks. Leaf 7: AVX-512 F/DQ/IFMA/PF/ER/CD/BW/VL,
 * VBMI/VBMI2/VNNI/BITALG/VPOPCNTDQ, 4VNNIW/4FMAPS/VP2INTERSECT/FP16, AMX BF16/TILE/INT8; leaf 7.1:
 * AVX-VNNI, AVX512_BF16, AMX-FP16, AVX-IFMA, AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16, AVX10;
 * leaf 0xD: the opmask/ZMM and AMX tile state components; leaves 0x1D, 0x1E, 0x24: AMX and AVX10. */
static void cap_to_avx2(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        r[3] &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));
    } else if (leaf == 0xD && sub == 0) {
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
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
        cap_to_avx2(leaf, sub, r);
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
