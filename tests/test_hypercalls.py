"""Each hypercall and sub-op of the foundation, called as the trap path does."""
import ctypes
import struct

import pytest

from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.public import errno, event_channel, sched, version, xen

PAGE = 4096


@pytest.fixture
def dom(guests, host):
    """A built (not yet run) hello domain."""
    return host.create(str(guests / "hello.cfg"))


@pytest.fixture
def scratch(dom):
    """A writable guest page inside the start-of-day mapping (the padding)."""
    return dom.layout.stack + PAGE


def put(dom, va, data):
    copy_to_guest(dom.vcpus[0], va, data)


def get(dom, va, n):
    return copy_from_guest(dom.vcpus[0], va, n)


BAD_VA = 0x0000000100000000   # not mapped by the start-of-day tables


# -- unknown hypercalls ---------------------------------------------------------

def test_unknown_hypercall_is_enosys_and_counted(dom, hypercall):
    assert hypercall(dom, 63) == -errno.ENOSYS
    assert hypercall(dom, 1000) == -errno.ENOSYS
    assert dom.unsupported[63] == 1 and dom.unsupported[64] == 1   # numbers >= 64 share a key


# -- console_io -----------------------------------------------------------------

def test_console_write(dom, hypercall, scratch):
    put(dom, scratch, b"hi there")
    assert hypercall(dom, xen.HYPERVISOR_console_io, xen.CONSOLEIO_write, 8, scratch) == 0
    assert dom.dmesg_text.endswith("hi there")


def test_console_write_bad_buffer(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_console_io, xen.CONSOLEIO_write, 4, BAD_VA) == -errno.EFAULT


def test_console_read(dom, hypercall, scratch):
    dom.console_input += b"typed"
    assert hypercall(dom, xen.HYPERVISOR_console_io, xen.CONSOLEIO_read, 3, scratch) == 3
    assert get(dom, scratch, 3) == b"typ"
    assert hypercall(dom, xen.HYPERVISOR_console_io, xen.CONSOLEIO_read, 10, scratch) == 2
    assert hypercall(dom, xen.HYPERVISOR_console_io, xen.CONSOLEIO_read, 10, scratch) == 0


def test_console_unknown_cmd(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_console_io, 7, 0, 0) == -errno.ENOSYS


# -- xen_version ----------------------------------------------------------------

def xv(hypercall, dom, cmd, arg=0):
    return hypercall(dom, xen.HYPERVISOR_xen_version, cmd, arg)


def test_version(dom, hypercall):
    assert xv(hypercall, dom, version.XENVER_version) == 4 << 16 | 17


@pytest.mark.parametrize("cmd, size, expect", [
    (version.XENVER_extraversion, 16, b"-pyxenon\0"),
    (version.XENVER_capabilities, 1024, b"xen-3.0-x86_64\0"),
    (version.XENVER_changeset, 64, b"pyxenon "),
])
def test_version_strings(dom, hypercall, scratch, cmd, size, expect):
    assert xv(hypercall, dom, cmd, scratch) == 0
    assert get(dom, scratch, size).startswith(expect)


def test_compile_info(dom, hypercall, scratch):
    assert xv(hypercall, dom, version.XENVER_compile_info, scratch) == 0
    info = version.xen_compile_info.from_buffer_copy(get(dom, scratch, ctypes.sizeof(version.xen_compile_info)))
    assert info.compiler == b"gcc"


def test_platform_parameters(dom, hypercall, scratch):
    assert xv(hypercall, dom, version.XENVER_platform_parameters, scratch) == 0
    assert struct.unpack("<Q", get(dom, scratch, 8))[0] == 0xFFFF800000000000


def test_get_features(dom, hypercall, scratch):
    put(dom, scratch, struct.pack("<II", 0, 0xFFFFFFFF))
    assert xv(hypercall, dom, version.XENVER_get_features, scratch) == 0
    idx, submap = struct.unpack("<II", get(dom, scratch, 8))
    assert idx == 0
    for bit in ("memory_op_vnode_supported", "mmu_pt_update_preserve_ad", "highmem_assist",
                "gnttab_map_avail_bits", "direct_mapped"):   # Linux panics without map_avail_bits
        assert submap >> getattr(version, "XENFEAT_" + bit) & 1, bit
    # writable_page_tables is for translated guests only; pae_pgdir follows the assist
    assert not submap >> version.XENFEAT_writable_page_tables & 1
    assert not submap >> version.XENFEAT_pae_pgdir_above_4gb & 1
    assert hypercall(dom, xen.HYPERVISOR_vm_assist, xen.VMASST_CMD_enable,
                     xen.VMASST_TYPE_pae_extended_cr3) == 0
    assert xv(hypercall, dom, version.XENVER_get_features, scratch) == 0
    assert struct.unpack("<II", get(dom, scratch, 8))[1] >> version.XENFEAT_pae_pgdir_above_4gb & 1
    put(dom, scratch, struct.pack("<II", 5, 0xFFFFFFFF))
    assert xv(hypercall, dom, version.XENVER_get_features, scratch) == -errno.EINVAL


def test_pagesize_and_handle(dom, hypercall, scratch):
    assert xv(hypercall, dom, version.XENVER_pagesize) == PAGE
    put(dom, scratch, b"\xff" * 16)
    assert xv(hypercall, dom, version.XENVER_guest_handle, scratch) == 0
    assert get(dom, scratch, 16) == dom.handle


@pytest.mark.parametrize("cmd", [version.XENVER_commandline, version.XENVER_build_id])
def test_privileged_version_ops(dom, hypercall, scratch, cmd):
    assert xv(hypercall, dom, cmd, scratch) == -errno.EPERM


def test_version_faults_and_unknown(dom, hypercall):
    assert xv(hypercall, dom, version.XENVER_extraversion, BAD_VA) == -errno.EFAULT
    assert xv(hypercall, dom, 99) == -errno.ENOSYS


# -- sched_op -------------------------------------------------------------------

def so(hypercall, dom, cmd, arg=0):
    return hypercall(dom, xen.HYPERVISOR_sched_op, cmd, arg)


@pytest.mark.parametrize("reason, name", [(0, "poweroff"), (1, "reboot"), (2, "suspend"),
                                          (3, "crash"), (4, "watchdog")])
def test_shutdown_reasons(guests, host, hypercall, reason, name):
    dom = host.create(str(guests / "hello.cfg"), overrides=['on_reboot="destroy"'])
    va = dom.layout.stack + PAGE
    put(dom, va, struct.pack("<I", reason))
    assert so(hypercall, dom, sched.SCHEDOP_shutdown, va) == 0
    assert dom.shutdown_reason == name


def test_shutdown_bad_pointer(dom, hypercall):
    assert so(hypercall, dom, sched.SCHEDOP_shutdown, BAD_VA) == -errno.EFAULT
    assert dom.shutdown_reason is None


def test_yield_keeps_running(dom, hypercall):
    assert so(hypercall, dom, sched.SCHEDOP_yield) == 0
    assert dom.vcpus[0].runnable


def test_block_unmasks_and_sleeps(dom, hypercall):
    info = dom.vcpu_info(0)
    assert info.evtchn_upcall_mask == 1
    assert so(hypercall, dom, sched.SCHEDOP_block) == 0
    assert info.evtchn_upcall_mask == 0
    assert not dom.vcpus[0].runnable
    dom.events.set_pending(dom.console.port)     # an event wakes it
    assert dom.vcpus[0].runnable


def test_block_with_pending_upcall_returns_at_once(dom, hypercall):
    dom.vcpu_info(0).evtchn_upcall_pending = 1
    assert so(hypercall, dom, sched.SCHEDOP_block) == 0
    assert dom.vcpus[0].runnable


def poll_args(dom, va, ports, timeout=0):
    put(dom, va + 64, struct.pack(f"<{len(ports)}I", *ports))
    put(dom, va, struct.pack("<QIxxxxQ", va + 64, len(ports), timeout))


def test_poll_returns_when_port_pending(dom, hypercall, scratch):
    dom.shared_info.evtchn_pending[0] |= 1 << dom.console.port
    poll_args(dom, scratch, [dom.console.port])
    assert so(hypercall, dom, sched.SCHEDOP_poll, scratch) == 0
    assert dom.vcpus[0].runnable


def test_poll_sleeps_until_its_port(dom, hypercall, scratch):
    poll_args(dom, scratch, [dom.console.port], timeout=10 ** 15)
    assert so(hypercall, dom, sched.SCHEDOP_poll, scratch) == 0
    vcpu = dom.vcpus[0]
    assert not vcpu.runnable and vcpu.wake_at == 10 ** 15
    dom.events.set_pending(dom.store_port)        # another port: still asleep
    assert not vcpu.runnable
    dom.events.set_pending(dom.console.port)
    assert vcpu.runnable


def test_poll_bad_arguments(dom, hypercall, scratch):
    poll_args(dom, scratch, [1] * 129)
    assert so(hypercall, dom, sched.SCHEDOP_poll, scratch) == -errno.EINVAL
    poll_args(dom, scratch, [1 << 20])
    assert so(hypercall, dom, sched.SCHEDOP_poll, scratch) == -errno.EINVAL
    put(dom, scratch, struct.pack("<QIxxxxQ", BAD_VA, 1, 0))
    assert so(hypercall, dom, sched.SCHEDOP_poll, scratch) == -errno.EFAULT


def test_remote_shutdown_refused(dom, hypercall, scratch):
    put(dom, scratch, struct.pack("<HxxI", dom.domid, 0))
    assert so(hypercall, dom, sched.SCHEDOP_remote_shutdown, scratch) == -errno.EPERM
    put(dom, scratch, struct.pack("<HxxI", 999, 0))
    assert so(hypercall, dom, sched.SCHEDOP_remote_shutdown, scratch) == -errno.ESRCH


def test_shutdown_code_and_pin_override(dom, hypercall, scratch):
    put(dom, scratch, struct.pack("<I", 1))
    assert so(hypercall, dom, sched.SCHEDOP_shutdown_code, scratch) == 0
    assert dom.pending_shutdown_code == 1
    assert so(hypercall, dom, sched.SCHEDOP_pin_override, scratch) == -errno.EPERM


def test_watchdog(dom, hypercall, scratch):
    put(dom, scratch, struct.pack("<II", 0, 30))
    first = so(hypercall, dom, sched.SCHEDOP_watchdog, scratch)
    second = so(hypercall, dom, sched.SCHEDOP_watchdog, scratch)
    assert {first, second} == {1, 2}
    assert so(hypercall, dom, sched.SCHEDOP_watchdog, scratch) == -errno.ENOSPC
    put(dom, scratch, struct.pack("<II", first, 0))
    assert so(hypercall, dom, sched.SCHEDOP_watchdog, scratch) == 0
    assert first not in dom.watchdogs
    put(dom, scratch, struct.pack("<II", 7, 1))
    assert so(hypercall, dom, sched.SCHEDOP_watchdog, scratch) == -errno.EINVAL


def test_watchdog_expiry_shuts_down(dom, host):
    dom.watchdogs[1] = 0
    host.machine.scheduler.wake_expired()
    assert dom.shutdown_reason == "watchdog"


def test_sched_unknown_cmd(dom, hypercall):
    assert so(hypercall, dom, 42) == -errno.ENOSYS


# -- event_channel_op -----------------------------------------------------------

def test_send_on_console_port_drains_ring(dom, hypercall, scratch):
    put(dom, scratch, struct.pack("<I", dom.console.port))
    ring = dom.console.ring
    dom.console.page[1024:1024 + 3] = b"abc"          # out[] starts after in[1024]
    ring.out_prod = 3
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op, event_channel.EVTCHNOP_send, scratch) == 0
    assert ring.out_cons == 3
    assert dom.console_text.endswith("abc")
    assert dom.events.is_pending(dom.console.port)     # the backend signalled back


@pytest.mark.parametrize("port", [0, 77, 5000, 0xFFFFFFFF])
def test_send_on_bad_port(dom, hypercall, scratch, port):
    put(dom, scratch, struct.pack("<I", port))
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op, event_channel.EVTCHNOP_send,
                     scratch) == -errno.EINVAL


def test_evtchn_unsupported_op_and_fault(dom, hypercall):
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op, 99, 0) == -errno.ENOSYS
    assert hypercall(dom, xen.HYPERVISOR_event_channel_op, event_channel.EVTCHNOP_send,
                     BAD_VA) == -errno.EFAULT


def test_masked_port_sets_no_upcall(dom):
    port = dom.console.port
    dom.shared_info.evtchn_mask[0] |= 1 << port
    dom.events.set_pending(port)
    assert dom.events.is_pending(port)
    assert dom.vcpu_info(0).evtchn_upcall_pending == 0


def test_unmasked_port_sets_selector_and_upcall(dom):
    port = dom.console.port
    dom.events.set_pending(port)
    info = dom.vcpu_info(0)
    assert info.evtchn_upcall_pending == 1 and info.evtchn_pending_sel & 1


def test_handler_bug_crashes_only_that_domain(dom, hypercall):
    from pyxenon import hypercalls

    def broken(vcpu, *args):
        raise RuntimeError("bug")
    saved = hypercalls.TABLE[xen.HYPERVISOR_xen_version]
    hypercalls.TABLE[xen.HYPERVISOR_xen_version] = broken
    try:
        # XENVER_extraversion: a command the C fast path leaves to Python
        assert hypercall(dom, xen.HYPERVISOR_xen_version, 1, 0) == -errno.EFAULT
    finally:
        hypercalls.TABLE[xen.HYPERVISOR_xen_version] = saved
    assert dom.shutdown_reason == "crash"
    assert "RuntimeError" in dom.crash_report
