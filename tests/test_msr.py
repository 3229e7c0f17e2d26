"""The MSR policy in C (_core/msr.c): what a guest kernel's rdmsr/wrmsr get
when the #GP hook answers them without Python, held to the policy
hypervisor/emulate.py answered before it moved there (REFERENCE below,
that code as it was, with Xen's UCODE_REV and TSC_AUX rules added), for
every MSR of the ranges Xen's read_msr and guest_rdmsr name; and the same
answers from the engine, the Python path and fast paths off."""
import pytest

from pyxenon._core import ffi, lib
from pyxenon.toolstack.host import Host

from test_linux_xen_abi import RDMSR, WRMSR, emulate, run, scratch

MASK64 = (1 << 64) - 1
RDTSCP = b"\x0f\x01\xf9"

# -- the reference: emulate.py's policy before the move ---------------------------
FIXED = {0x3A: 1, 0x17: 0, 0x8B: 0, 0xCE: 1 << 31, 0x179: 1 << 24 | 1 << 11 | 1 << 10 | 2,
         0x17A: 0, 0x17B: 0, 0x0: 0, 0x1: 0, 0x198: 0, 0x199: 0, 0x19C: 0,
         0x277: 0x050100070406, 0x1A0: 1 | 1 << 11 | 1 << 12 | 1 << 23, 0x345: 0,
         0xC0000080: 0xD01}
VPMU = ((0xC1, 0xC9), (0x186, 0x18A), (0x309, 0x30C), (0x38D, 0x391))


def ref_bank(index):
    if 0x280 <= index < 0x2A0:
        return 0
    if 0x400 <= index < 0x480:
        return MASK64 if index % 4 == 0 and (index - 0x400) // 4 < 2 else 0
    return None


def ref_vpmu(index):
    return 0 if any(lo <= index < hi for lo, hi in VPMU) else None


def ref_read(state, index):
    per_vcpu = {0xC0000100: state["fs_base"], 0xC0000101: state["gs_base"],
                0xC0000102: state["gs_other"], 0x1B: 0xFEE00900 if state["bsp"] else 0xFEE00800,
                0x140: state["faulting"], 0xC0000103: state["tsc_aux"]}
    if index in per_vcpu:
        return per_vcpu[index]
    if index in FIXED:
        return FIXED[index]
    bank = ref_bank(index)
    return bank if bank is not None else ref_vpmu(index)


def ref_write_ok(index, value):
    bases = (0xC0000100, 0xC0000101, 0xC0000102)
    if index in bases:
        return value < 1 << 47 or value >= MASK64 - (1 << 47) + 1
    rules = {0x140: value in (0, 1), 0xC0000080: value == 0xD01, 0x8B: value == 0,
             0xC0000103: value < 1 << 32}
    if index in rules:
        return rules[index]
    return index == 0x17A or ref_vpmu(index) is not None or ref_bank(index) is not None


INDICES = [i for lo, hi in ((0, 0x1000), (0xC0000000, 0xC0000200), (0x40000000, 0x40000010),
                            (0xC0010000, 0xC0010100)) for i in range(lo, hi) if i != 0x10]


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def state_of(vcpu):
    regs = vcpu.regs()
    return {"fs_base": regs["fs_base"], "gs_base": regs["gs_base"], "gs_other": vcpu.gs_base_other,
            "bsp": vcpu.vcpu_id == 0, "faulting": vcpu.core.cpuid_faulting,
            "tsc_aux": vcpu.core.tsc_aux}


def c_read(vcpu, index):
    value = ffi.new("uint64_t *")
    ok = lib.xc_msr_read(vcpu.domain.machine.core, vcpu.core, index, value)
    return value[0] if ok else None


def test_every_msr_reads_as_the_python_policy_did(dom):
    vcpu = dom.vcpus[0]
    vcpu.set_regs(fs_base=0x1234000, gs_base=0xFFFF888000001000)
    vcpu.gs_base_other = 0x7000
    for index in INDICES:
        assert c_read(vcpu, index) == ref_read(state_of(vcpu), index), hex(index)


@pytest.mark.parametrize("value", [0, 1, 2, 0xD01, 1 << 32, 1 << 47, MASK64])
def test_every_msr_write_is_taken_or_refused_as_the_python_policy_did(dom, value):
    vcpu = dom.vcpus[0]
    m = dom.machine.core
    for index in INDICES:
        if index == 0x40000000:
            continue             # the hypercall page: Python's (test_traps)
        answer = lib.xc_msr_write(m, vcpu.core, index, value)
        assert (answer == lib.XC_MSR_DONE) == ref_write_ok(index, value), hex(index)
        assert answer != lib.XC_MSR_PYTHON
    assert lib.xc_msr_write(m, vcpu.core, 0x40000000, value) == lib.XC_MSR_PYTHON


def msr_counts(dom):
    p = dom.perfc.core
    return list(p.msr), list(p.msr_python)


@pytest.mark.parametrize("index", [0x8B, 0x277, 0x179, 0xCE, 0x1B, 0x1A0, 0x400, 0xC1, 0xC0000080,
                                   0xC0000100, 0xC0000103])
def test_the_engine_answers_rdmsr_in_c_as_the_policy(host, dom, index):
    expected = c_read(dom.vcpus[0], index)
    r = run(host, dom, RDMSR, rcx=index)
    assert r["rip"] == scratch(dom) + 2          # past the rdmsr, at the hlt
    assert (r["rdx"] & 0xFFFFFFFF) << 32 | (r["rax"] & 0xFFFFFFFF) == expected
    assert msr_counts(dom) == ([1, 0], [0, 0])   # answered in C, never in Python


def test_an_msr_xen_refuses_goes_to_python_and_is_gp(host, dom):
    run(host, dom, RDMSR, rcx=0x10A)
    assert "rdmsr" in dom.crash_report
    assert msr_counts(dom) == ([0, 0], [1, 0])


def test_wrmsr_in_the_engine_sets_fs_base_and_tsc_aux_for_rdtscp(host, dom):
    code = (WRMSR + b"\xb9\x03\x01\x00\xc0" + b"\xb8\x07\x00\x00\x00" + WRMSR  # TSC_AUX = 7
            + RDTSCP + b"\x89\xcb"                                             # mov ebx, ecx
            + b"\xb9\x00\x01\x00\xc0" + RDMSR)                                # FS_BASE back
    r = run(host, dom, code, rcx=0xC0000100, rax=0x5000, rdx=0)
    assert r["rbx"] & 0xFFFFFFFF == 7 and r["rax"] & 0xFFFFFFFF == 0x5000
    assert msr_counts(dom) == ([1, 2], [0, 0])


def test_the_hypercall_page_is_still_pythons(host, dom):
    mfn = dom.pfn_to_mfn(dom.layout.pfn(dom.layout.virt_end) + 6)
    r = run(host, dom, WRMSR, rcx=0x40000000, rax=(mfn << 12) & 0xFFFFFFFF, rdx=mfn >> 20)
    assert r["rip"] == scratch(dom) + 2 and "wrmsr" not in dom.crash_report   # done, at the hlt
    assert msr_counts(dom) == ([0, 0], [0, 1])


@pytest.mark.parametrize("index", [0x277, 0x1B, 0x401, 0xC0000102, 0x10A])
def test_fast_paths_off_and_the_python_decoder_answer_the_same(guests, index):
    answers = []
    for fast in (True, False):
        with Host(memory_mib=256, fast_paths=fast) as host:
            dom = host.create(str(guests / "hello.cfg"))
            dom.vcpus[0].gs_base_other = 0x9000
            r = run(host, dom, RDMSR, rcx=index)
            answers.append((r["rip"], r["rax"], r["rdx"], "rdmsr" in dom.crash_report))
            python = msr_counts(dom)[1][0]
            assert python == (0 if fast and index != 0x10A else 1)
    assert answers[0] == answers[1]


def test_the_python_decoder_uses_the_same_policy(dom):
    r = emulate(dom, RDMSR, rcx=0xC0000080)
    assert r["rax"] == 0xD01 and msr_counts(dom) == ([0, 0], [1, 0])
