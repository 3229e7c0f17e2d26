/*
 * The CPUID a PV guest sees: one table, answered both for plain `cpuid`
 * (a UC_HOOK_INSN hook: what Xen's CPUID faulting gives PV guests on modern
 * hardware) and for the forced-emulation prefix (hypervisor/traps.py asks
 * xc_cpuid).
 *
 * The values are the engine's own CPU (Unicorn 2.1.4's x86_64 model, a
 * Haswell-like Intel) filtered as Xen 4.17 builds a PV domU's default
 * policy: only features marked 'A' in public/arch-x86/cpufeatureset.h
 * survive (so PSE, PGE, PSE36, MTRR, VME, SMEP, PCID and 1 GiB pages,
 * which are HVM/shadow only, are gone), the HYPERVISOR bit is set, the
 * APIC id in leaf 1 is 0 (guest_cpuid's "res->b &= 0x00ffffff"), and
 * Xen's own leaves follow cpuid_hypervisor_leaves (arch/x86/traps.c).
 *
 * Deliberately narrower than Xen: XSAVE, OSXSAVE, AVX (which needs XSAVE)
 * and leaf 0xD are hidden, because the emulated vcpu cannot have its XCR0
 * set from ring 3 (Xen emulates xsetbv); a guest offered them would take
 * #UD.  FSGSBASE ('A': Xen's PV default) is offered while
 * xc_machine.offer_fsgsbase is set, as it is from the start; the engine's
 * CPU keeps CR4.FSGSBASE clear and traps.c answers the #UDs of
 * RD/WR{FS,GS}BASE for a guest whose CR4 has it.  With it cleared,
 * pv_fixup_guest_cr4 (emulate.py, from this table) discards CR4.FSGSBASE
 * and the four stay #UD, as Xen's are for a policy without the feature.
 */
#include "core.h"

#define ANY_SUBLEAF 0xFFFFFFFFu
/* Deterministic mode hides RDRAND (Unicorn answers it from the host's
 * entropy), as a domain given xl's cpuid="host,rdrand=0" would be. */
#define CPUID1_ECX_RDRAND (1u << 30)
#define CPUID7_EBX_FSGSBASE 1u

struct cpuid_entry {
    uint32_t leaf, subleaf, a, b, c, d;
};

static const struct cpuid_entry policy[] = {
    {0x00000000, ANY_SUBLEAF, 0x0000000d, 0x756e6547, 0x6c65746e, 0x49656e69}, /* GenuineIntel */
    {0x00000001, ANY_SUBLEAF, 0x000306c4, 0x00000800, 0xc2d82203, 0x0789cbf5},
    {0x00000002, ANY_SUBLEAF, 0x00000001, 0x00000000, 0x00000000, 0x002c307d},
    {0x00000004, 0, 0x00000121, 0x01c0003f, 0x0000003f, 0x00000001},
    {0x00000004, 1, 0x00000122, 0x01c0003f, 0x0000003f, 0x00000001},
    {0x00000007, 0, 0x00000000, 0x00000308, 0x00000000, 0x00000000},       /* BMI1 BMI2 ERMS */
    {0x80000000, ANY_SUBLEAF, 0x80000008, 0x756e6547, 0x6c65746e, 0x49656e69},
    {0x80000001, ANY_SUBLEAF, 0x000306c4, 0x00000000, 0x00000021, 0x28100800},
    {0x80000002, ANY_SUBLEAF, 0x65746e49, 0x6f43206c, 0x50206572, 0x65636f72},
    {0x80000003, ANY_SUBLEAF, 0x726f7373, 0x61482820, 0x6c657773, 0x0000296c},
    {0x80000005, ANY_SUBLEAF, 0x01ff01ff, 0x01ff01ff, 0x40020140, 0x40020140},
    {0x80000006, ANY_SUBLEAF, 0x00000000, 0x42004200, 0x02008140, 0x00000000},
    {0x80000008, ANY_SUBLEAF, 0x00003028, 0x00000000, 0x00000000, 0x00000000},
};

/* Xen's leaves at 0x40000000 (cpuid_hypervisor_leaves, PV, not viridian). */
static int hypervisor_leaf(struct xc_machine *m, uint32_t leaf, uint32_t *r)
{
    switch (leaf - XEN_CPUID_FIRST_LEAF) {
    case 0:
        r[0] = XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES;
        r[1] = 0x566e6558;          /* "XenVMMXenVMM" */
        r[2] = 0x65584d4d;
        r[3] = 0x4d4d566e;
        return 1;
    case 1:
        r[0] = (uint32_t)m->xen_version;
        return 1;
    case 2:
        r[0] = 1;                   /* one hypercall page, through MSR 0x40000000 */
        r[1] = 0x40000000;
        r[2] = 1;                   /* XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD */
        return 1;
    case 5:
        r[1] = 52;                  /* XEN_CPUID_MACHINE_ADDRESS_WIDTH */
        return 1;
    }
    return leaf - XEN_CPUID_FIRST_LEAF <= XEN_CPUID_MAX_NUM_LEAVES;
}

/* r[0..3] = eax..edx for (leaf, subleaf); a leaf outside the policy is all
 * zeros, as Xen answers leaves beyond a policy's limits. */
void xc_cpuid(struct xc_machine *m, uint32_t leaf, uint32_t subleaf, uint32_t *r)
{
    r[0] = r[1] = r[2] = r[3] = 0;
    if ((leaf & 0xFFFFFF00u) == XEN_CPUID_FIRST_LEAF) {
        hypervisor_leaf(m, leaf, r);
        return;
    }
    for (unsigned i = 0; i < sizeof(policy) / sizeof(policy[0]); i++) {
        const struct cpuid_entry *e = &policy[i];
        if (e->leaf == leaf && (e->subleaf == ANY_SUBLEAF || e->subleaf == subleaf)) {
            r[0] = e->a;
            r[1] = e->b;
            r[2] = e->c & (leaf == 1 && m->vtsc ? ~CPUID1_ECX_RDRAND : ~0u);
            r[1] |= leaf == 7 && m->offer_fsgsbase ? CPUID7_EBX_FSGSBASE : 0;
            r[3] = e->d;
            return;
        }
    }
}

/*
 * With CPUID faulting on, cpuid outside guest kernel mode is a #GP(0):
 * x86_emulate's cpuid case reads MSR_INTEL_MISC_FEATURES_ENABLES unless at
 * ring 0, and Xen's PV read_segment gives a guest kernel's SS DPL 0
 * (pv/emul-priv-op.c), delivered at the cpuid itself (exits.c).
 */
static int cpuid_faults(struct xc_machine *m)
{
    struct xc_vcpu *v = m->current;
    if (!v || !v->cpuid_faulting || v->kernel_mode)
        return 0;
    xc_fault_in_hook(m, 13, 0);
    return 1;
}

/* Plain cpuid: answered from the policy, the instruction then skipped. */
int xc_hook_cpuid(uc_engine *uc, void *data)
{
    uint64_t rax = 0, rcx = 0;
    uint32_t r[4];
    if (cpuid_faults(data))
        return 1;
    uc_reg_read(uc, UC_X86_REG_RAX, &rax);
    uc_reg_read(uc, UC_X86_REG_RCX, &rcx);
    xc_cpuid(data, (uint32_t)rax, (uint32_t)rcx, r);
    uint64_t out[4] = {r[0], r[1], r[2], r[3]};    /* 32-bit results zero-extend */
    uc_reg_write(uc, UC_X86_REG_RAX, &out[0]);
    uc_reg_write(uc, UC_X86_REG_RBX, &out[1]);
    uc_reg_write(uc, UC_X86_REG_RCX, &out[2]);
    uc_reg_write(uc, UC_X86_REG_RDX, &out[3]);
    return 1;
}
