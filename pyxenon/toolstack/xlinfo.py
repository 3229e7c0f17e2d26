"""Domains and the host as xl shows them: `xl list` rows (and `list -l`,
libxl's JSON grouping of a domain's configuration), `xl info`'s fields.

The daemon answers list and info with these (daemon.py); `xl create -n`
prints config_json.  Field names, order and formats are xl's
(tools/xl/xl_info.c, libxl_types.idl).
"""
import os
import resource
import time

from pyxenon.hypervisor.domain import DEAD, PAUSED, RUNNING, SHUTDOWN

from . import xenperf

PAGES_PER_MIB = 256
REASON_LETTERS = {"poweroff": "-", "reboot": "r", "suspend": "s", "crash": "c", "watchdog": "w"}
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# physinfo.hw_cap: Xen's featureset words 0-7 (public/arch-x86/cpufeatureset.h):
# (leaf, subleaf, register index in eax, ebx, ecx, edx)
HW_CAP_WORDS = ((1, 0, 3), (1, 0, 2), (0x80000001, 0, 3), (0x80000001, 0, 2),
                (0xD, 1, 0), (7, 0, 1), (7, 0, 2), (0x80000007, 0, 3))


# -- xl list --------------------------------------------------------------------

def host_row(since):
    """Domain-0: the host process itself, the way xl shows dom0."""
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    cpu = time.process_time()
    return {"domid": 0, "name": "Domain-0", "mem_mib": rss_mib, "maxmem_mib": rss_mib,
            "vcpus": 1, "state": "r-----", "cpu_time": cpu,
            "uptime": time.monotonic() - since, "shutdown_code": None,
            "uuid": NIL_UUID, "ssid_label": None, "hypercalls": 0, "events_sent": 0,
            "config": {"c_info": {"type": "pv", "name": "Domain-0", "uuid": NIL_UUID}},
            "vcpu_info": [{"name": "Domain-0", "domid": 0, "vcpu": 0, "state": "r--",
                           "cpu_time": cpu}]}


def domain_row(domain, cpu_ns, started):
    """A domain's row; cpu_ns: (domid, vcpu id) -> ns it ran; started: monotonic time."""
    vcpus = [vcpu_row(domain, v, cpu_ns[(domain.domid, v.vcpu_id)]) for v in domain.vcpus]
    hypercalls, events = xenperf.totals(domain.perfc)
    return {"domid": domain.domid, "name": domain.name,
            "mem_mib": domain.nr_pages // PAGES_PER_MIB,
            "maxmem_mib": getattr(domain.config, "maxmem_mib", None),
            "vcpus": len(domain.vcpus), "state": state_letters(domain),
            "cpu_time": sum(v["cpu_time"] for v in vcpus),
            "uptime": time.monotonic() - started,
            "shutdown_code": domain.shutdown_code, "uuid": uuid_text(domain.handle),
            "ssid_label": domain.label, "hypercalls": hypercalls, "events_sent": events,
            "config": config_dict(domain), "vcpu_info": vcpus}


def vcpu_row(domain, vcpu, ns):
    """xl vcpu-list's columns; a vcpu that is down shows "--p" and no cpu,
    as xl's print_vcpuinfo shows one not online."""
    running = domain.state == RUNNING and vcpu.runnable
    blocked = domain.state == RUNNING and not vcpu.runnable
    state = ("r" if running else "-") + ("b" if blocked else "-") + \
            ("p" if domain.state == PAUSED else "-")
    return {"name": domain.name, "domid": domain.domid, "vcpu": vcpu.vcpu_id,
            "online": vcpu.up, "state": state if vcpu.up else "--p", "cpu_time": ns / 1e9}


def state_letters(domain):
    """xl's six state columns: running, blocked, paused, shutdown, reason, dying."""
    shut = domain.state == SHUTDOWN
    reason = REASON_LETTERS.get(domain.shutdown_reason, "?") if shut else "-"
    # a domain a debugger holds shows paused, as gdbsx's domains do
    paused = domain.state == PAUSED or domain.debug_paused
    return "".join([run_letters(domain, paused), "p" if paused else "-", "s" if shut else "-",
                    reason, "d" if domain.state == DEAD else "-"])


def run_letters(domain, paused):
    """xl's first two columns: running or blocked, for a domain that runs."""
    if domain.state != RUNNING or paused:
        return "--"
    return "r-" if any(v.up and v.runnable for v in domain.vcpus) else "-b"


def uuid_text(handle):
    h = bytes(handle).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- xl list -l, xl create -n -----------------------------------------------------

def config_dict(domain):
    """The domain's settings as `xl list -l` shows them (libxl's grouping)."""
    config = getattr(domain, "config", None)
    return None if config is None else config_json(config)


def config_json(config):
    """A DomainConfig as libxl groups it (libxl_domain_config)."""
    return {
        "c_info": {"type": "pv", "name": config.name, "uuid": config.uuid,
                   "ssid_label": config.seclabel},
        "b_info": {"max_vcpus": config.vcpus, "max_memkb": config.maxmem_mib * 1024,
                   "target_memkb": config.memory_mib * 1024,
                   "type.pv": {"kernel": config.kernel, "cmdline": config.cmdline,
                               "ramdisk": config.ramdisk}},
        "disks": [disk_json(disk) for disk in config.disks],
        "nics": [nic_json(vif) for vif in config.vifs],
        "on_poweroff": config.on_poweroff, "on_reboot": config.on_reboot,
        "on_watchdog": config.on_watchdog, "on_crash": config.on_crash,
    }


def disk_json(disk):
    """A parsed disk (xldevices.DiskSpec) as libxl_device_disk's fields."""
    return {"backend_domid": 0, "pdev_path": disk.target, "vdev": disk.vdev,
            "backend": "qdisk", "format": "raw", "readwrite": int(not disk.readonly),
            "is_cdrom": int(disk.devtype == "cdrom")}


def nic_json(vif):
    """A parsed vif (xldevices.VifSpec) as libxl_device_nic's fields."""
    return {"backend_domid": 0, "devid": vif.devid, "mac": vif.mac, "bridge": vif.bridge,
            "mtu": vif.mtu}


# -- xl info ----------------------------------------------------------------------

def policy_text(policy):
    """`xl info`'s xen_policy: the file and its size, or what having none means."""
    if policy is None:
        return "none (inter-domain paths refused)"
    labels, rules = len(policy.labels), policy.rule_count
    return (f"{policy.source} ({labels} label{'s' * (labels != 1)}, "
            f"{rules} rule{'s' * (rules != 1)})")


def host_info(machine, policy=None):
    """`xl info`'s fields, in xl's order (print_info), for this host."""
    from pyxenon.hypercalls import xen_version as ver
    from pyxenon.public import arch_x86

    uname = os.uname()
    free = sum(size for _, size in machine.free_ranges)
    extra = ver.EXTRAVERSION.decode()
    scheduler = "rr (deterministic)" if machine.scheduler.deterministic else "rr"
    khz = int(xenperf.tsc_hz() / 1000)
    return [
        ["host", uname.nodename], ["release", uname.release], ["version", uname.version],
        ["machine", uname.machine], ["nr_cpus", 1], ["max_cpu_id", 0], ["nr_nodes", 1],
        ["cores_per_socket", 1], ["threads_per_core", 1],
        ["cpu_mhz", f"{khz // 1000}.{khz % 1000:03d}"], ["hw_caps", hw_caps(machine)],
        ["virt_caps", "pv gnttab-v1"],
        ["total_memory", machine.nr_frames // PAGES_PER_MIB],
        ["free_memory", free // PAGES_PER_MIB], ["sharing_freed_memory", 0],
        ["sharing_used_memory", 0], ["outstanding_claims", 0], ["free_cpus", 0],
        ["xen_major", ver.MAJOR], ["xen_minor", ver.MINOR], ["xen_extra", extra],
        ["xen_version", f"{ver.MAJOR}.{ver.MINOR}{extra}"],
        ["xen_caps", ver.CAPABILITIES.decode()], ["xen_scheduler", scheduler],
        ["xen_pagesize", ver.PAGE_SIZE],
        ["platform_params", f"virt_start={arch_x86.HYPERVISOR_VIRT_START:#x}"],
        ["xen_changeset", ver.CHANGESET.decode()], ["xen_commandline", ""],
        ["xen_policy", policy_text(policy)],
        ["cc_compiler", "gcc"], ["cc_compile_by", "pyxenon"], ["cc_compile_domain", ""],
        ["cc_compile_date", ""], ["build_id", ""], ["xend_config_format", 4],
    ]


def hw_caps(machine):
    """physinfo's hw_cap as xl prints it: eight featureset words, the CPU
    the guests run on (the engine's CPUID as the C core answers it)."""
    from pyxenon._core import ffi, lib

    regs = ffi.new("uint32_t[4]")
    words = []
    for leaf, subleaf, index in HW_CAP_WORDS:
        lib.xc_cpuid(machine.core, leaf, subleaf, regs)
        words.append(f"{regs[index]:08x}")
    return ":".join(words)
