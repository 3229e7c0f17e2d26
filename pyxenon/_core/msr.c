/*
 * The MSRs a PV domU sees, as Xen 4.17 answers them: the one policy, which
 * the #GP of a guest kernel's rdmsr/wrmsr reaches here without Python
 * (xc_emulate_msr, from the interrupt hook) and hypervisor/emulate.py asks
 * for an rdmsr/wrmsr it decoded itself.  Reads are pv/emul-priv-op.c's
 * read_msr after guest_rdmsr (msr.c) for a domain with an Intel policy:
 * vmce_rdmsr for the machine-check MSRs, vpmu_do_rdmsr with the vPMU off
 * for the counters.  Writes are write_msr after guest_wrmsr: the segment
 * bases, CPUID faulting, and the writes Xen drops; the hypercall page
 * (Xen writes a page of the guest's) is hypervisor/emulate.py's.
 */
#include "core.h"
#include "perfc.h"

#define MSR_IA32_TSC 0x10
#define MSR_APIC_BASE 0x1B
#define MSR_INTEL_MISC_FEATURES_ENABLES 0x140
#define MSR_MCG_STATUS 0x17A
#define MSR_EFER 0xC0000080
#define MSR_FS_BASE 0xC0000100
#define MSR_GS_BASE 0xC0000101
#define MSR_SHADOW_GS_BASE 0xC0000102
#define MSR_TSC_AUX 0xC0000103
#define MSR_UCODE_REV 0x8B
#define MSR_HYPERCALL_PAGE 0x40000000   /* CPUID leaf 0x40000002 names it */

#define EFER_VALUE 0xD01                 /* guest_efer: SCE LME LMA NXE */
#define XEN_MSR_PAT 0x050100070406UL
#define APIC_BASE (0xFEE00000UL | 0x800) /* APIC_DEFAULT_PHYS_BASE | APIC_BASE_ENABLE */
#define APIC_BASE_BSP 0x100
#define GUEST_MCG_CAP ((1UL << 24) | (1UL << 11) | (1UL << 10) | 2)  /* SER_P TES_P CMCI_P, 2 banks */
#define GUEST_MC_BANKS 2
#define MISC_FEATURES_CPUID_FAULTING 1

/* Fixed answers, by MSR. */
static const struct { uint32_t index; uint64_t value; } fixed[] = {
    {0x3A, 1},                  /* FEATURE_CONTROL: locked, nothing enabled */
    {0x17, 0},                  /* PLATFORM_ID (the host's; none here) */
    {0x8B, 0},                  /* UCODE_REV: Xen's last microcode load (none) */
    {0xCE, 1UL << 31},          /* PLATFORM_INFO: CPUID faulting, as on an Intel host */
    {0x179, GUEST_MCG_CAP}, {MSR_MCG_STATUS, 0}, {0x17B, 0},  /* vmce: MCG_CAP, _STATUS, _CTL */
    {0x0, 0}, {0x1, 0},         /* P5_MC_ADDR/TYPE: vmce, not banks */
    {0x198, 0}, {0x199, 0}, {0x19C, 0},   /* PERF_STATUS, PERF_CTL, THERM_STATUS: read as zero */
    {0x277, XEN_MSR_PAT},       /* CR_PAT */
    {0x1A0, 1 | 1UL << 11 | 1UL << 12 | 1UL << 23},  /* guest_misc_enable: BTS/PEBS unavailable, xTPR off */
    {0x345, 0},                 /* PERF_CAPABILITIES: none */
    {MSR_EFER, EFER_VALUE},
};

/* vmce_rdmsr's banks: MCi_CTL2 (0x280+) and MCi_CTL/STATUS/ADDR/MISC
 * (0x400+); MCi_CTL of the guest's banks reads all-ones, the rest 0. */
static int mc_bank(uint32_t index, uint64_t *value)
{
    if (index >= 0x280 && index < 0x2A0) {
        *value = 0;
        return 1;
    }
    if (index >= 0x400 && index < 0x480) {
        *value = (index % 4 == 0 && (index - 0x400) / 4 < GUEST_MC_BANKS) ? ~0UL : 0;
        return 1;
    }
    return 0;
}

/* The Intel PMU's counters and controls: vpmu_do_rdmsr with the vPMU off
 * reads 0, vpmu_do_wrmsr drops the write. */
static int vpmu(uint32_t index)
{
    return (index >= 0xC1 && index < 0xC9) || (index >= 0x186 && index < 0x18A) ||
           (index >= 0x309 && index < 0x30C) || (index >= 0x38D && index < 0x391);
}

static int per_vcpu(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t *value)
{
    switch (index) {
    case MSR_IA32_TSC:           /* what rdtsc reads (time.c) */
        *value = xc_guest_tsc(m, v);
        return 1;
    case MSR_APIC_BASE:
        *value = APIC_BASE | (v->vcpu_id ? 0 : APIC_BASE_BSP);
        return 1;
    case MSR_FS_BASE:
        *value = xc_vcpu_reg(m, v, UC_X86_REG_FS_BASE);
        return 1;
    case MSR_GS_BASE:
        *value = xc_vcpu_reg(m, v, UC_X86_REG_GS_BASE);
        return 1;
    case MSR_SHADOW_GS_BASE:     /* Xen's arch.pv.gs_base_user, in kernel mode */
        *value = v->gs_base_other;
        return 1;
    case MSR_INTEL_MISC_FEATURES_ENABLES:
        *value = v->cpuid_faulting;
        return 1;
    case MSR_TSC_AUX:            /* guest_rdmsr: msrs->tsc_aux (rdtscp is in the policy) */
        *value = v->tsc_aux;
        return 1;
    }
    return 0;
}

/* rdmsr of index: 1 and the value, or 0 for the #GP Xen raises. */
int xc_msr_read(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t *value)
{
    if (per_vcpu(m, v, index, value))
        return 1;
    for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i].index == index) {
            *value = fixed[i].value;
            return 1;
        }
    if (mc_bank(index, value))
        return 1;
    *value = 0;
    return vpmu(index);
}

static int canonical(uint64_t va)
{
    return va < (1UL << 47) || va >= ~0UL - (1UL << 47) + 1;
}

/* write_msr's segment bases: canonical, or a #GP. */
static int write_base(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t value)
{
    if (!canonical(value))
        return XC_MSR_GP;
    if (index == MSR_SHADOW_GS_BASE)
        v->gs_base_other = value;
    else
        xc_vcpu_set_reg(m, v, index == MSR_FS_BASE ? UC_X86_REG_FS_BASE : UC_X86_REG_GS_BASE, value);
    return XC_MSR_DONE;
}

/* The engine's TSC_AUX (what rdtscp reads) is the running vcpu's: its
 * saved context keeps it, but only the engine can write it. */
void xc_load_tsc_aux(struct xc_machine *m, struct xc_vcpu *v)
{
    uc_x86_msr msr = {MSR_TSC_AUX, v->tsc_aux};
    uc_reg_write(m->uc, UC_X86_REG_MSR, &msr);
    v->tsc_aux_stale = 0;
}

/* guest_wrmsr's TSC_AUX: 32 bits, the vcpu's, and the CPU's while it runs
 * (wrmsr_tsc_aux); a vcpu not running gets it when it is next entered. */
static int write_tsc_aux(struct xc_machine *m, struct xc_vcpu *v, uint64_t value)
{
    if (value >> 32)
        return XC_MSR_GP;
    v->tsc_aux = (uint32_t)value;
    if (m->current == v)
        xc_load_tsc_aux(m, v);
    else
        v->tsc_aux_stale = 1;
    return XC_MSR_DONE;
}

/* Writes Xen drops: MCG_STATUS, the banks, the vPMU's counters. */
static int dropped(uint32_t index)
{
    uint64_t ignored;
    return index == MSR_MCG_STATUS || vpmu(index) || mc_bank(index, &ignored);
}

/* The writes that change the vcpu's state: the answer, or -1 for others. */
static int write_state(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t value)
{
    switch (index) {
    case MSR_FS_BASE:
    case MSR_GS_BASE:
    case MSR_SHADOW_GS_BASE:
        return write_base(m, v, index, value);
    case MSR_INTEL_MISC_FEATURES_ENABLES:   /* PLATFORM_INFO offers faulting: the one bit */
        if (value & ~(uint64_t)MISC_FEATURES_CPUID_FAULTING)
            return XC_MSR_GP;
        v->cpuid_faulting = (uint32_t)value;
        return XC_MSR_DONE;
    case MSR_TSC_AUX:
        return write_tsc_aux(m, v, value);
    }
    return -1;
}

/* wrmsr of index: XC_MSR_DONE, XC_MSR_GP (Xen's #GP), or XC_MSR_PYTHON
 * for the hypercall page. */
int xc_msr_write(struct xc_machine *m, struct xc_vcpu *v, uint32_t index, uint64_t value)
{
    int answer = write_state(m, v, index, value);
    if (answer >= 0)
        return answer;
    if (index == MSR_HYPERCALL_PAGE)
        return XC_MSR_PYTHON;
    if (index == MSR_EFER)                  /* unchanged, or a #GP */
        return value == EFER_VALUE ? XC_MSR_DONE : XC_MSR_GP;
    if (index == MSR_UCODE_REV)   /* Intel's "write 0, cpuid, read": 0 only (guest_wrmsr) */
        return value ? XC_MSR_GP : XC_MSR_DONE;
    return dropped(index) ? XC_MSR_DONE : XC_MSR_GP;
}

/* The instruction at rip: 0 for rdmsr (0f 32), 1 for wrmsr (0f 30), else -1. */
static int msr_insn(struct xc_machine *m, struct xc_vcpu *v, uint64_t rip)
{
    uint8_t insn[2];
    if (xc_copy_from_guest(m, v, insn, rip, 2) || insn[0] != 0x0F)
        return -1;
    return insn[1] == 0x32 ? 0 : insn[1] == 0x30 ? 1 : -1;
}

/* Answer the rdmsr or wrmsr (edx:eax in r[1], r[2]; ecx in r[0]); 0 if
 * Python must, for a #GP or the hypercall page. */
static int answer(struct xc_machine *m, struct xc_vcpu *v, int write, uint64_t *r)
{
    uint64_t value;
    if (write)
        return xc_msr_write(m, v, (uint32_t)r[0], (r[2] << 32) | (uint32_t)r[1]) == XC_MSR_DONE;
    if (!xc_msr_read(m, v, (uint32_t)r[0], &value))
        return 0;
    r[1] = value & 0xFFFFFFFFUL;
    r[2] = value >> 32;
    return 1;
}

static const int msr_regs[3] = {UC_X86_REG_RCX, UC_X86_REG_RAX, UC_X86_REG_RDX};

/*
 * A guest kernel's #GP: if rdmsr or wrmsr raised it and the policy answers
 * it here, emulate it as Xen's emulator does (edx:eax, rip past it) and let
 * the guest go on; 1 if so.  A #GP Xen would raise, the hypercall page, a
 * prefixed form and fast paths off go on to Python, as before.
 */
int xc_emulate_msr(struct xc_machine *m, struct xc_vcpu *v)
{
    uint64_t rip = 0, r[3] = {0};
    void *p[3] = {&r[0], &r[1], &r[2]};
    int write;
    if (!v->kernel_mode || !m->fast_paths)
        return 0;
    uc_reg_read(m->uc, UC_X86_REG_RIP, &rip);
    write = msr_insn(m, v, rip);
    if (write < 0)
        return 0;
    uc_reg_read_batch(m->uc, (int *)msr_regs, p, 3);
    if (!answer(m, v, write, r))
        return 0;
    if (v->perfc)
        v->perfc->msr[write]++;
    rip += 2;
    xc_clear_exception(m);   /* taken here, never delivered: not "in flight" */
    if (!write)
        uc_reg_write_batch(m->uc, (int *)msr_regs + 1, p + 1, 2);
    xc_write_rip(m->uc, rip);   /* last: Unicorn may leave the hook here */
    return 1;
}
