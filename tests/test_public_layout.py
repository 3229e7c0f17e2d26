"""pyxenon.public against Xen's real public headers.

A C probe is generated from the Python side, compiled with gcc against
/usr/include/xen (libxen-dev) and run; its output is compared with what the
Python modules say.  Checked, all found programmatically so that new code is
covered without touching this file (except the C_TYPES table):

* every ctypes struct/union in pyxenon.public: sizeof, alignment, and the
  offset and size of every field, recursing into nested structs, unions and
  array elements by dotted path (``start_info.console.domU.evtchn``);
* every module-level int (and str) constant whose name Xen defines, as
  ``NAME`` or ``__NAME``; a constant with no Xen counterpart fails unless it
  is listed in PYTHON_ONLY or ALIASES;
* every ctypes typedef (``xen_pfn_t = ctypes.c_uint64``): its size;
* errno.py against Xen's whole errno list, both ways;
* the tables (HYPERCALL_NAMES, xsd_errors, GNTTABOP_error_msgs);
* that whole constant families (hypercalls, VIRQs, EVTCHNOP_ ...) are
  complete in Python;
* a few helper functions against the C macros they mirror.

Two probes are built: "guest" sees the headers as a PV guest does
(__XEN_INTERFACE_VERSION__ = the headers' latest); "tools" includes
<xenctrl.h>, which adds the toolstack-only parts (some XENMEM_ ops, the e820
entry).
"""

import ctypes
import importlib
import os
import pkgutil
import platform
import re
import shutil
import subprocess

import pytest

import pyxenon.public


XEN_INCLUDE = "/usr/include/xen"

GUEST_HEADERS = [
    "xen/xen.h",
    "xen/version.h",
    "xen/features.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/grant_table.h",
    "xen/memory.h",
    "xen/vcpu.h",
    "xen/callback.h",
    "xen/nmi.h",
    "xen/physdev.h",
    "xen/elfnote.h",
    "xen/errno.h",
    "xen/arch-x86/cpuid.h",
    "xen/io/ring.h",
    "xen/io/console.h",
    "xen/io/xs_wire.h",
    "xen/io/xenbus.h",
    "xen/io/blkif.h",
    "xen/io/netif.h",
]
TOOLS_HEADERS = ["xenctrl.h"]
# libc headers both probes need; <errno.h> must precede xs_wire.h, whose
# xsd_errors table only exists when EINVAL is defined.
LIBC_HEADERS = ["stdint.h", "stddef.h", "stdio.h", "errno.h"]

# Python struct ("module.Class") -> the C type it mirrors.  A struct missing
# here fails the test.  Anonymous nested types are named through their parent
# with member().


def member(c_type, path):
    return "__typeof__(((%s *)0)->%s)" % (c_type, path)


C_TYPES = {
    # arch_x86.py
    "arch_x86.trap_info": "struct trap_info",
    "arch_x86.cpu_user_regs": "struct cpu_user_regs",
    "arch_x86.iret_context": "struct iret_context",
    "arch_x86.arch_vcpu_info": "struct arch_vcpu_info",
    "arch_x86.arch_shared_info": "struct arch_shared_info",
    "arch_x86.vcpu_guest_context_fpu_ctxt": member("struct vcpu_guest_context", "fpu_ctxt"),
    "arch_x86.vcpu_guest_context": "struct vcpu_guest_context",
    # xen.py
    "xen.mmu_update": "struct mmu_update",
    "xen.mmuext_op_arg1": member("struct mmuext_op", "arg1"),
    "xen.mmuext_op_arg2": member("struct mmuext_op", "arg2"),
    "xen.mmuext_op": "struct mmuext_op",
    "xen.multicall_entry": "struct multicall_entry",
    "xen.vcpu_time_info": "struct vcpu_time_info",
    "xen.vcpu_info": "struct vcpu_info",
    "xen.shared_info": "struct shared_info",
    "xen.start_info_console_domU": member("struct start_info", "console.domU"),
    "xen.start_info_console_dom0": member("struct start_info", "console.dom0"),
    "xen.start_info_console": member("struct start_info", "console"),
    "xen.start_info": "struct start_info",
    # version.py
    "version.xen_compile_info": "struct xen_compile_info",
    "version.xen_platform_parameters": "struct xen_platform_parameters",
    "version.xen_feature_info": "struct xen_feature_info",
    "version.xen_build_id": "struct xen_build_id",
    # sched.py
    "sched.sched_shutdown": "struct sched_shutdown",
    "sched.sched_poll": "struct sched_poll",
    "sched.sched_remote_shutdown": "struct sched_remote_shutdown",
    "sched.sched_watchdog": "struct sched_watchdog",
    "sched.sched_pin_override": "struct sched_pin_override",
    # event_channel.py
    "event_channel.evtchn_alloc_unbound": "struct evtchn_alloc_unbound",
    "event_channel.evtchn_bind_interdomain": "struct evtchn_bind_interdomain",
    "event_channel.evtchn_bind_virq": "struct evtchn_bind_virq",
    "event_channel.evtchn_bind_pirq": "struct evtchn_bind_pirq",
    "event_channel.evtchn_bind_ipi": "struct evtchn_bind_ipi",
    "event_channel.evtchn_close": "struct evtchn_close",
    "event_channel.evtchn_send": "struct evtchn_send",
    "event_channel.evtchn_status_u_unbound": member("struct evtchn_status", "u.unbound"),
    "event_channel.evtchn_status_u_interdomain": member("struct evtchn_status", "u.interdomain"),
    "event_channel.evtchn_status_u": member("struct evtchn_status", "u"),
    "event_channel.evtchn_status": "struct evtchn_status",
    "event_channel.evtchn_bind_vcpu": "struct evtchn_bind_vcpu",
    "event_channel.evtchn_unmask": "struct evtchn_unmask",
    "event_channel.evtchn_reset": "struct evtchn_reset",
    "event_channel.evtchn_init_control": "struct evtchn_init_control",
    "event_channel.evtchn_expand_array": "struct evtchn_expand_array",
    "event_channel.evtchn_set_priority": "struct evtchn_set_priority",
    "event_channel.evtchn_op_u": member("struct evtchn_op", "u"),
    "event_channel.evtchn_op": "struct evtchn_op",
    "event_channel.evtchn_fifo_control_block": "struct evtchn_fifo_control_block",
    # grant_table.py
    "grant_table.grant_entry_v1": "struct grant_entry_v1",
    "grant_table.grant_entry_header": "struct grant_entry_header",
    "grant_table.grant_entry_v2_full_page": member("union grant_entry_v2", "full_page"),
    "grant_table.grant_entry_v2_sub_page": member("union grant_entry_v2", "sub_page"),
    "grant_table.grant_entry_v2_transitive": member("union grant_entry_v2", "transitive"),
    "grant_table.grant_entry_v2": "union grant_entry_v2",
    "grant_table.gnttab_map_grant_ref": "struct gnttab_map_grant_ref",
    "grant_table.gnttab_unmap_grant_ref": "struct gnttab_unmap_grant_ref",
    "grant_table.gnttab_setup_table": "struct gnttab_setup_table",
    "grant_table.gnttab_dump_table": "struct gnttab_dump_table",
    "grant_table.gnttab_transfer": "struct gnttab_transfer",
    "grant_table.gnttab_copy_ptr_u": member("struct gnttab_copy_ptr", "u"),
    "grant_table.gnttab_copy_ptr": "struct gnttab_copy_ptr",
    "grant_table.gnttab_copy": "struct gnttab_copy",
    "grant_table.gnttab_query_size": "struct gnttab_query_size",
    "grant_table.gnttab_unmap_and_replace": "struct gnttab_unmap_and_replace",
    "grant_table.gnttab_set_version": "struct gnttab_set_version",
    "grant_table.gnttab_get_status_frames": "struct gnttab_get_status_frames",
    "grant_table.gnttab_get_version": "struct gnttab_get_version",
    "grant_table.gnttab_swap_grant_ref": "struct gnttab_swap_grant_ref",
    "grant_table.gnttab_cache_flush_a": member("struct gnttab_cache_flush", "a"),
    "grant_table.gnttab_cache_flush": "struct gnttab_cache_flush",
    # memory.py
    "memory.xen_memory_reservation": "struct xen_memory_reservation",
    "memory.xen_memory_exchange": "struct xen_memory_exchange",
    "memory.xen_memory_domain": "struct xen_memory_domain",
    "memory.xen_machphys_mfn_list": "struct xen_machphys_mfn_list",
    "memory.xen_machphys_mapping": "struct xen_machphys_mapping",
    "memory.xen_add_to_physmap": "struct xen_add_to_physmap",
    "memory.xen_add_to_physmap_batch_extra": "union xen_add_to_physmap_batch_extra",
    "memory.xen_add_to_physmap_batch": "struct xen_add_to_physmap_batch",
    "memory.xen_remove_from_physmap": "struct xen_remove_from_physmap",
    "memory.xen_memory_map": "struct xen_memory_map",
    "memory.xen_foreign_memory_map": "struct xen_foreign_memory_map",
    "memory.e820entry": "struct e820entry",  # tools probe (xenctrl.h)
    "callback.xennmi_callback": "struct xennmi_callback",
    # ctl.py: tools probe (xenctrl.h)
    "ctl.xen_sysctl": "struct xen_sysctl",
    "ctl.xen_domctl": "struct xen_domctl",
    "ctl.xen_platform_op": "struct xen_platform_op",
    "ctl.xen_dm_op_buf": "struct xen_dm_op_buf",
    "memory.xen_pod_target": "struct xen_pod_target",
    "memory.xen_mem_acquire_resource": "struct xen_mem_acquire_resource",
    "memory.xen_vmemrange": "struct xen_vmemrange",
    "memory.xen_vnuma_topology_info_vdistance":
        member("struct xen_vnuma_topology_info", "vdistance"),
    "memory.xen_vnuma_topology_info_vcpu_to_vnode":
        member("struct xen_vnuma_topology_info", "vcpu_to_vnode"),
    "memory.xen_vnuma_topology_info_vmemrange":
        member("struct xen_vnuma_topology_info", "vmemrange"),
    "memory.xen_vnuma_topology_info": "struct xen_vnuma_topology_info",
    # vcpu.py
    "vcpu.vcpu_runstate_info": "struct vcpu_runstate_info",
    "vcpu.vcpu_register_runstate_memory_area_addr":
        member("struct vcpu_register_runstate_memory_area", "addr"),
    "vcpu.vcpu_register_runstate_memory_area": "struct vcpu_register_runstate_memory_area",
    "vcpu.vcpu_set_periodic_timer": "struct vcpu_set_periodic_timer",
    "vcpu.vcpu_set_singleshot_timer": "struct vcpu_set_singleshot_timer",
    "vcpu.vcpu_register_vcpu_info": "struct vcpu_register_vcpu_info",
    "vcpu.vcpu_get_physid": "struct vcpu_get_physid",
    "vcpu.vcpu_register_time_memory_area_addr":
        member("struct vcpu_register_time_memory_area", "addr"),
    "vcpu.vcpu_register_time_memory_area": "struct vcpu_register_time_memory_area",
    # callback.py
    "callback.callback_register": "struct callback_register",
    "callback.callback_unregister": "struct callback_unregister",
    # io.py
    "io.xencons_interface": "struct xencons_interface",
    "io.xenstore_domain_interface": "struct xenstore_domain_interface",
    "io.xsd_sockmsg": "struct xsd_sockmsg",
    # blkif.py
    "blkif.blkif_request_segment": "struct blkif_request_segment",
    "blkif.blkif_request": "struct blkif_request",
    "blkif.blkif_request_discard": "struct blkif_request_discard",
    "blkif.blkif_request_indirect": "struct blkif_request_indirect",
    "blkif.blkif_response": "struct blkif_response",
    "blkif.blkif_sring_entry": "union blkif_sring_entry",
    "blkif.blkif_sring_pvt_netif": member("struct blkif_sring", "pvt.netif"),
    "blkif.blkif_sring_pvt_tapif_user": member("struct blkif_sring", "pvt.tapif_user"),
    "blkif.blkif_sring_pvt": member("struct blkif_sring", "pvt"),
    "blkif.blkif_sring": "struct blkif_sring",
    # netif.py
    "netif.netif_tx_request": "struct netif_tx_request",
    "netif.netif_tx_response": "struct netif_tx_response",
    "netif.netif_rx_request": "struct netif_rx_request",
    "netif.netif_rx_response": "struct netif_rx_response",
}

# Structs and constants only the tools probe can see.
TOOLS_TYPES = {"memory.e820entry", "ctl.xen_sysctl", "ctl.xen_domctl", "ctl.xen_platform_op",
               "ctl.xen_dm_op_buf"}

# Python constant -> C expression, for names Xen defines only under some
# interface versions.
ALIASES = {
    # xen.h: "#define NR_EVENT_CHANNELS EVTCHN_2L_NR_CHANNELS", for guests
    # asking for an interface older than 0x00040400.
    "NR_EVENT_CHANNELS": "EVTCHN_2L_NR_CHANNELS",
}

# Module-level ints / ctypes types that have no C counterpart on purpose.
PYTHON_ONLY = {
    "guest_handle",  # XEN_GUEST_HANDLE(x) is a macro making one typedef per type
}

# Families that must be complete: every C constant with one of these
# prefixes must exist in pyxenon.public.
COMPLETE_FAMILIES = (
    "__HYPERVISOR_", "VIRQ_", "MMU_", "MMUEXT_", "UVMF_", "CONSOLEIO_",
    "VMASST_", "DOMID_", "SIF_", "FLAT_", "SEGBASE_", "VGCF_",
    "FIRST_RESERVED_GDT_", "MACH2PHYS_", "XENVER_", "XENFEAT_", "SCHEDOP_",
    "SHUTDOWN_", "EVTCHNOP_", "EVTCHNSTAT_", "EVTCHN_FIFO_", "GNTTABOP_",
    "GNTST_", "GNTMAP_", "GTF_", "GNTCOPY_", "XENMEM_", "XENMAPSPACE_",
    "VCPUOP_", "RUNSTATE_", "CALLBACKTYPE_", "CALLBACKOP_", "XEN_ELFNOTE_",
    "XS_", "XENSTORE_", "PHYSDEVOP_", "BLKIF_OP_", "BLKIF_RSP_", "XenbusState",
)

# (label, Python value, C expression): helpers mirroring function-like macros.
HELPERS = [
    ("MASK_XENCONS_IDX(out)",
     lambda m: m["io"].MASK_XENCONS_IDX(0x12345, 2048),
     "MASK_XENCONS_IDX(0x12345, ((struct xencons_interface *)0)->out)"),
    ("MASK_XENCONS_IDX(in)",
     lambda m: m["io"].MASK_XENCONS_IDX(0x12345, 1024),
     "MASK_XENCONS_IDX(0x12345, ((struct xencons_interface *)0)->in)"),
    ("MASK_XENSTORE_IDX",
     lambda m: m["io"].MASK_XENSTORE_IDX(0x12345),
     "MASK_XENSTORE_IDX(0x12345)"),
    ("XEN_CPUID_LEAF",
     lambda m: m["arch_x86"].XEN_CPUID_LEAF(3),
     "XEN_CPUID_LEAF(3)"),
    ("xen_pfn_to_cr3",
     lambda m: m["arch_x86"].xen_pfn_to_cr3(0x123456789),
     "xen_pfn_to_cr3(0x123456789)"),
    ("xen_cr3_to_pfn",
     lambda m: m["arch_x86"].xen_cr3_to_pfn(0x123456789000),
     "xen_cr3_to_pfn(0x123456789000)"),
    ("TI_GET_DPL",
     lambda m: m["arch_x86"].TI_GET_DPL(m["arch_x86"].trap_info(flags=7)),
     "({ struct trap_info t = { .flags = 7 }; TI_GET_DPL(&t); })"),
    ("TI_GET_IF",
     lambda m: m["arch_x86"].TI_GET_IF(m["arch_x86"].trap_info(flags=7)),
     "({ struct trap_info t = { .flags = 7 }; TI_GET_IF(&t); })"),
    ("TI_SET_DPL",
     lambda m: _apply(m["arch_x86"].trap_info(flags=4), m["arch_x86"].TI_SET_DPL, 3),
     "({ struct trap_info t = { .flags = 4 }; TI_SET_DPL(&t, 3); t.flags; })"),
    ("TI_SET_IF",
     lambda m: _apply(m["arch_x86"].trap_info(flags=1), m["arch_x86"].TI_SET_IF, 9),
     "({ struct trap_info t = { .flags = 1 }; TI_SET_IF(&t, 9); t.flags; })"),
    ("XENMEMF_address_bits",
     lambda m: m["memory"].XENMEMF_address_bits(32), "XENMEMF_address_bits(32)"),
    ("XENMEMF_get_address_bits",
     lambda m: m["memory"].XENMEMF_get_address_bits(0x31220), "XENMEMF_get_address_bits(0x31220)"),
    ("XENMEMF_node", lambda m: m["memory"].XENMEMF_node(3), "XENMEMF_node(3)"),
    ("XENMEMF_get_node",
     lambda m: m["memory"].XENMEMF_get_node(0x30420), "XENMEMF_get_node(0x30420)"),
    ("XENMEMF_exact_node",
     lambda m: m["memory"].XENMEMF_exact_node(2), "XENMEMF_exact_node(2)"),
    ("xen_vcpu_physid_to_x86_apicid",
     lambda m: m["vcpu"].xen_vcpu_physid_to_x86_apicid(0x1122334455667788),
     "xen_vcpu_physid_to_x86_apicid(0x1122334455667788ULL)"),
    ("xen_vcpu_physid_to_x86_acpiid",
     lambda m: m["vcpu"].xen_vcpu_physid_to_x86_acpiid(0x1122334455667788),
     "xen_vcpu_physid_to_x86_acpiid(0x1122334455667788ULL)"),
]


def _apply(ti, setter, value):
    setter(ti, value)
    return ti.flags


# ---------------------------------------------------------------------------
# The Python side.
# ---------------------------------------------------------------------------

def public_modules():
    """{short name: module} for every module of pyxenon.public."""
    mods = {}
    for info in pkgutil.iter_modules(pyxenon.public.__path__):
        mods[info.name] = importlib.import_module("pyxenon.public." + info.name)
    return mods


def is_record(value):
    return isinstance(value, type) and issubclass(value, (ctypes.Structure, ctypes.Union))


def is_typedef(value):
    return isinstance(value, type) and issubclass(value, (ctypes._SimpleCData, ctypes.Array))


def python_structs(mods):
    """{"module.Class": class} for the structs each module defines itself."""
    found = {}
    for short, mod in mods.items():
        for name, value in vars(mod).items():
            if is_record(value) and value.__module__ == mod.__name__:
                found["%s.%s" % (short, name)] = value
    return found


def python_constants(mods, kinds):
    """{name: (value, "module")} for module-level constants of these types."""
    found = {}
    for short, mod in mods.items():
        if short == "errno":
            continue  # checked against Xen's own errno list instead
        for name, value in vars(mod).items():
            if name.startswith("_") or isinstance(value, bool):
                continue
            if isinstance(value, kinds):
                found.setdefault(name, (value, short))
    return found


def python_typedefs(mods):
    found = {}
    for short, mod in mods.items():
        for name, value in vars(mod).items():
            if not name.startswith("_") and is_typedef(value):
                found.setdefault(name, (value, short))
    return found


def walk_fields(cls, prefix="", base=0):
    """Yield (C path, offset, size or None) for every field, depth first.

    Nested structs/unions are entered; arrays are entered through their
    element [0].  Size is None for zero-length (flexible) arrays.
    """
    anonymous = getattr(cls, "_anonymous_", ())
    for field in cls._fields_:
        assert len(field) == 2, "bit fields are not expected in the Xen ABI"
        name, ftype = field
        offset = base + getattr(cls, name).offset
        if name in anonymous:
            yield from walk_fields(ftype, prefix, offset)
            continue
        path = prefix + name
        yield path, offset, (ctypes.sizeof(ftype) or None)
        elem = ftype
        while issubclass(elem, ctypes.Array) and elem._length_:
            elem = elem._type_
            path += "[0]"
        if is_record(elem):
            yield from walk_fields(elem, path + ".", offset)


# ---------------------------------------------------------------------------
# The C side.
# ---------------------------------------------------------------------------

def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def defined_names(workdir, name, source):
    """(macros and enumerators, preprocessed text) of a C source.

    Macros come from gcc -dM (function-like ones left out), enumerators from
    the enum bodies of the preprocessed text, so only what the compiler
    really sees under this configuration counts.
    """
    path = os.path.join(workdir, name + ".c")
    with open(path, "w") as f:
        f.write(source)
    out = run(["gcc", "-E", "-dM", path])
    assert out.returncode == 0, out.stderr
    names = set(re.findall(r"^#define (\w+)(?=[ \n])", out.stdout, re.M))
    out = run(["gcc", "-E", "-P", path])
    assert out.returncode == 0, out.stderr
    for body in re.findall(r"\benum\b\s*\w*\s*\{(.*?)\}", out.stdout, re.S):
        names.update(re.findall(r"(?:^|,)\s*([A-Za-z_]\w*)", body))
    return names, out.stdout


def c_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


PROBE_PRELUDE = r"""
static void pint(const char *kind, const char *key, int negative,
                 long long s, unsigned long long u)
{
    if (negative)
        printf("%s\t%s\t%lld\n", kind, key, s);
    else
        printf("%s\t%s\t%llu\n", kind, key, u);
}
#define PINT(kind, key, e) \
    pint(kind, key, (e) < 0, (long long)(e), (unsigned long long)(e))
#define PSIZE(kind, key, e) printf("%s\t%s\t%zu\n", kind, key, (size_t)(e))
#define PSTR(kind, key, e) printf("%s\t%s\t%s\n", kind, key, e)
"""


class Probe:
    """Collects printf lines ("kind<TAB>key<TAB>value"), then builds and runs
    one C program and returns {(kind, key): value}."""

    def __init__(self, name, includes):
        self.name = name
        self.includes = includes
        self.lines = []

    def size(self, kind, key, expr):
        self.lines.append("PSIZE(%s, %s, %s);" % (c_string(kind), c_string(key), expr))

    def int(self, kind, key, expr):
        self.lines.append("PINT(%s, %s, %s);" % (c_string(kind), c_string(key), expr))

    def str(self, kind, key, expr):
        self.lines.append("PSTR(%s, %s, %s);" % (c_string(kind), c_string(key), expr))

    def raw(self, code):
        self.lines.append(code)

    def run(self, workdir):
        src = os.path.join(workdir, self.name + "_probe.c")
        exe = os.path.join(workdir, self.name + "_probe")
        with open(src, "w") as f:
            f.write(self.includes + PROBE_PRELUDE + "int main(void)\n{\n")
            f.writelines("    %s\n" % line for line in self.lines)
            f.write("    return 0;\n}\n")
        out = run(["gcc", "-std=gnu11", "-Wall", "-Wno-type-limits", "-o", exe, src])
        assert out.returncode == 0, "probe %s does not compile:\n%s" % (self.name, out.stderr)
        out = run([exe])
        assert out.returncode == 0, out.stderr
        results = {}
        for line in out.stdout.splitlines():
            kind, key, value = line.split("\t", 2)
            results[(kind, key)] = value
        return results


def includes(headers):
    return "".join("#include <%s>\n" % h for h in headers)


def latest_interface_version():
    with open(os.path.join(XEN_INCLUDE, "xen-compat.h")) as f:
        m = re.search(r"#define __XEN_LATEST_INTERFACE_VERSION__\s+(0x[0-9a-fA-F]+)", f.read())
    assert m, "no __XEN_LATEST_INTERFACE_VERSION__ in xen-compat.h"
    return m.group(1)


def require_headers():
    if not os.path.exists(os.path.join(XEN_INCLUDE, "xen.h")):
        pytest.skip("Xen public headers not found in %s: apt-get install libxen-dev"
                    % XEN_INCLUDE)
    if not os.path.exists("/usr/include/xenctrl.h"):
        pytest.skip("/usr/include/xenctrl.h not found: apt-get install libxen-dev")
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the probe against the Xen headers")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the probe must be built by an x86_64 compiler (the ABI is x86_64's)")


# ---------------------------------------------------------------------------
# Planning: each plan_* adds printf lines to the probes and returns
# (expected {(kind, key): value} per probe, problems found without C).
# ---------------------------------------------------------------------------

def plan_structs(structs, probes):
    expected = {name: {} for name in probes}
    problems = []
    for key, cls in sorted(structs.items()):
        c_type = C_TYPES.get(key)
        if c_type is None:
            problems.append("%s: no C counterpart in C_TYPES "
                            "(add it to tests/test_public_layout.py)" % key)
            continue
        where = "tools" if key in TOOLS_TYPES else "guest"
        probe, exp = probes[where], expected[where]
        probe.size("size", key, "sizeof(%s)" % c_type)
        exp[("size", key)] = ctypes.sizeof(cls)
        probe.size("align", key, "_Alignof(%s)" % c_type)
        exp[("align", key)] = ctypes.alignment(cls)
        for path, offset, size in walk_fields(cls):
            fkey = "%s.%s" % (key, path)
            probe.size("off", fkey, "__builtin_offsetof(%s, %s)" % (c_type, path))
            exp[("off", fkey)] = offset
            if size is not None:
                probe.size("fsize", fkey, "sizeof(((%s *)0)->%s)" % (c_type, path))
                exp[("fsize", fkey)] = size
    return expected, problems


def plan_typedefs(typedefs, probes, guest_text):
    expected = {name: {} for name in probes}
    problems = []
    for name, (ctype, short) in sorted(typedefs.items()):
        if name in PYTHON_ONLY:
            continue
        if not re.search(r"\btypedef\b[^;]*\b%s\b" % re.escape(name), guest_text):
            problems.append("%s.%s: Xen has no such typedef" % (short, name))
            continue
        probes["guest"].size("typedef", name, "sizeof(%s)" % name)
        expected["guest"][("typedef", name)] = ctypes.sizeof(ctype)
    return expected, problems


def c_name_of(name, names):
    """(probe, C expression) for a Python constant, or (None, None)."""
    if name in ALIASES:
        return "guest", ALIASES[name]
    for candidate in (name, "__" + name):
        for where in ("guest", "tools"):
            if candidate in names[where]:
                return where, candidate
    return None, None


def plan_constants(constants, probes, names):
    expected = {name: {} for name in probes}
    problems = []
    for name, (value, short) in sorted(constants.items()):
        if name in PYTHON_ONLY:
            continue
        where, c_name = c_name_of(name, names)
        if where is None:
            problems.append("%s.%s: Xen defines neither %s nor __%s (list it in "
                            "PYTHON_ONLY if it is meant to be Python-only)"
                            % (short, name, name, name))
        elif isinstance(value, str):
            probes[where].str("str", name, c_name)
            expected[where][("str", name)] = value
        else:
            probes[where].int("int", name, c_name)
            expected[where][("int", name)] = value
    return expected, problems


def plan_tables(probe):
    # errno: the whole list, Xen-internal entries included, through the
    # header's X-macro form (it has no include guard when XEN_ERRNO is set).
    probe.raw('#define __XEN__\n'
              '#define XEN_ERRNO(name, value) PINT("errno", #name, value);\n'
              '#include <xen/errno.h>\n'
              '#undef __XEN__')
    probe.raw('for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++) {\n'
              '        char key[32];\n'
              '        snprintf(key, sizeof(key), "%zu", i);\n'
              '        PINT("xsd_errnum", key, xsd_errors[i].errnum);\n'
              '        PSTR("xsd_errstring", key, xsd_errors[i].errstring);\n'
              '    }')
    probe.raw('static const char *gnttab_msgs[] = GNTTABOP_error_msgs;\n'
              '    for (size_t i = 0; i < sizeof(gnttab_msgs) / sizeof(gnttab_msgs[0]); i++) {\n'
              '        char key[32];\n'
              '        snprintf(key, sizeof(key), "%zu", i);\n'
              '        PSTR("gntmsg", key, gnttab_msgs[i]);\n'
              '    }')
    for label, _, c_expr in HELPERS:
        probe.int("helper", label, c_expr)


@pytest.fixture(scope="module")
def abi(tmp_path_factory):
    """Both sides of the comparison, gathered once."""
    require_headers()
    workdir = str(tmp_path_factory.mktemp("xen_probe"))
    libc = includes(LIBC_HEADERS)
    guest_src = ("#define __XEN_INTERFACE_VERSION__ %s\n" % latest_interface_version()
                 + libc + includes(GUEST_HEADERS))
    tools_src = libc + includes(TOOLS_HEADERS)

    # Names the Xen headers define, libc's own subtracted.
    base_names, _ = defined_names(workdir, "base", libc)
    guest_names, guest_text = defined_names(workdir, "guest", guest_src)
    tools_names, _ = defined_names(workdir, "tools", tools_src)
    names = {"guest": guest_names - base_names, "tools": tools_names - base_names}

    probes = {"guest": Probe("guest", guest_src), "tools": Probe("tools", tools_src)}
    mods = public_modules()
    plans = {
        "struct layout": plan_structs(python_structs(mods), probes),
        "typedef": plan_typedefs(python_typedefs(mods), probes, guest_text),
        "constant": plan_constants(python_constants(mods, (int, str)), probes, names),
    }
    plan_tables(probes["guest"])
    results = {name: probe.run(workdir) for name, probe in probes.items()}
    return {"mods": mods, "names": names, "results": results, "plans": plans}


def report(problems, what):
    assert not problems, "%d %s mismatch(es) against the Xen headers:\n  %s" % (
        len(problems), what, "\n  ".join(problems))


def check_plan(abi, what):
    expected, problems = abi["plans"][what]
    problems = list(problems)
    for where, values in expected.items():
        got = abi["results"][where]
        for (kind, key), value in values.items():
            c_value = got[(kind, key)]
            if not isinstance(value, str):
                c_value = int(c_value)
            if c_value != value:
                problems.append("%s %s: Python %r, Xen %r" % (kind, key, value, c_value))
    report(problems, what)


def results_of(abi, kind):
    """[(key, value)] the guest probe printed for kind, in print order."""
    return [(key, value) for (k, key), value in abi["results"]["guest"].items() if k == kind]


# ---------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------

def test_struct_layouts_match_xen(abi):
    check_plan(abi, "struct layout")


def test_typedef_sizes_match_xen(abi):
    check_plan(abi, "typedef")


def test_constants_match_xen(abi):
    check_plan(abi, "constant")


def test_c_types_table_has_no_stale_entries():
    structs = python_structs(public_modules())
    stale = sorted(set(C_TYPES) - set(structs))
    assert not stale, "C_TYPES names structs pyxenon.public no longer has: %s" % stale


def test_errno_matches_xen(abi):
    xen = {name: int(value) for name, value in results_of(abi, "errno")}
    errno = abi["mods"]["errno"]
    ours = {name: value for name, value in vars(errno).items()
            if name.isupper() and isinstance(value, int)}
    problems = ["%s: Python %s, Xen %s" % (name, ours.get(name), xen.get(name))
                for name in sorted(set(xen) | set(ours)) if xen.get(name) != ours.get(name)]
    names = {}
    for name, value in xen.items():  # in Xen's order: the first name of a value wins
        names.setdefault(value, name)
    if errno.ERRNO_NAMES != names:
        problems.append("ERRNO_NAMES = %r, expected %r" % (errno.ERRNO_NAMES, names))
    report(problems, "errno")


def test_xsd_errors_match_xen(abi):
    xen = tuple(zip((int(v) for _, v in results_of(abi, "xsd_errnum")),
                    (v for _, v in results_of(abi, "xsd_errstring"))))
    assert abi["mods"]["io"].xsd_errors == xen


def test_grant_status_messages_match_xen(abi):
    xen = tuple(v for _, v in results_of(abi, "gntmsg"))
    assert abi["mods"]["grant_table"].GNTTABOP_error_msgs == xen


def test_hypercall_names_match_xen(abi):
    xen = {}
    for c_name in abi["names"]["guest"]:
        value = abi["results"]["guest"].get(("int", c_name[2:]))
        if c_name.startswith("__HYPERVISOR_") and "VIRT_" not in c_name and value:
            xen[int(value)] = c_name[len("__HYPERVISOR_"):]
    # (A number Python lacks altogether is reported by the families test.)
    assert abi["mods"]["xen"].HYPERCALL_NAMES == dict(sorted(xen.items()))


def test_constant_families_complete(abi):
    ours = set()
    for mod in abi["mods"].values():
        ours.update(vars(mod))
    missing = []
    for c_name in sorted(abi["names"]["guest"]):
        py_name = c_name[2:] if c_name.startswith("__") else c_name
        if c_name.startswith(COMPLETE_FAMILIES) and py_name not in ours | PYTHON_ONLY:
            missing.append("%s is not in pyxenon.public" % c_name)
    report(missing, "missing constant")


def test_helpers_match_xen_macros(abi):
    got = dict(results_of(abi, "helper"))
    problems = []
    for label, python, _ in HELPERS:
        value, c_value = python(abi["mods"]), int(got[label])
        if value != c_value:
            problems.append("%s: Python %d, Xen %d" % (label, value, c_value))
    report(problems, "helper")
