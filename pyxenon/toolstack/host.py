"""The host: one machine plus the toolstack's view of its domains.

This is the Python API (and what the CLI and the pytest fixtures use):

    host = Host()
    dom = host.create("guests/hello.cfg")
    host.run()
    dom.console_text, dom.shutdown_reason
"""
import os
import resource
import time
import uuid

from pyxenon.errors import HostLimitError, read_user_file
from pyxenon.hypervisor.domain import SHUTDOWN
from pyxenon.hypervisor import grants_copy
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.machine import Machine

from . import builder
from .devices import Devices
from pyxenon.backends.console import ConsoleBackend
from .elfimage import load_kernel
from pyxenon.backends.xenstore import XenStore
from pyxenon.public import grant_table as gt
from .xlcfg import DomainConfig, load_cfg

PAGES_PER_MIB = 256
MACHINE_MIB = 8192          # machine memory reserved (address space, not RAM) by default
MACHINE_ENV = "PYXENON_MACHINE_MIB"
# Address space the engine takes besides machine memory: Unicorn's
# translation buffer (1 GiB) and room for the process to grow.
ENGINE_BYTES = (1 << 30) + (64 << 20)
MIN_FITTED_MIB = 64         # a machine fitted under a limit is at least this big
# Machine memory per MiB of it: the frames, the m2p (8 bytes) and the
# frame table (12 bytes) per 4 KiB frame.
BYTES_PER_MIB = (1 << 20) + PAGES_PER_MIB * 20


class Host:
    def __init__(self, memory_mib=None, slice_ms=10, deterministic=False, policy=None,
                 audit=None, fast_paths=True, perfc=True):
        """memory_mib: machine memory (default $PYXENON_MACHINE_MIB, else
        8192).  policy: a path to a policy file, or a compiled Policy; None
        refuses every inter-domain operation.  audit: a callable given each
        MSM decision (default: the newest 10,000 kept in machine.audit_log).
        perfc: domains keep hypercall statistics (domain.perfc; off only to
        measure their cost)."""
        if isinstance(policy, (str, bytes)) or hasattr(policy, "__fspath__"):
            from .policy import load_policy

            policy = load_policy(policy)
        self.policy = policy
        memory_mib = machine_mib(memory_mib)
        check_address_space(memory_mib)
        try:
            self.machine = Machine(memory_mib=memory_mib, slice_ms=slice_ms,
                                   deterministic=deterministic, policy=policy, audit=audit,
                                   fast_paths=fast_paths, perfc=perfc)
        except MemoryError:
            raise HostLimitError(cannot_reserve(memory_mib, "out of memory")) from None
        self.machine.shutdown_listeners.append(self._on_shutdown)
        self.machine.destroy_listeners.append(self._on_destroy)
        self.new_store()
        self.domains = []  # every domain created, dead ones included (their logs)

    def new_store(self):
        """An empty XenStore and the backends that use it (a new host's;
        the fuzzer's World.reset asks for them again)."""
        self.xenstore = XenStore(gate=self._xenstore_gate)
        # XS_INTRODUCE of a domain the store released: its ring, as built
        self.xenstore.mapper = lambda domid: getattr(self.machine.domains.get(domid),
                                                     "store_ring", None)
        self.devices = Devices(self.machine, self.xenstore)   # disks (blkback)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.machine is not None:
            for domain in list(self.machine.domains.values()):
                self.devices.detach(domain)
            self.devices.close()
            self.machine.close()
            self.machine = None

    # -- creating domains -----------------------------------------------------

    def create(self, cfg=None, *, overrides=(), paused=False, trace=None, **options):
        """A domain from an xl.cfg path, or from options (kernel=..., name=...,
        memory=MiB, cmdline=..., ramdisk=..., on_poweroff=..., seclabel=...).
        trace: a callable given one line per hypercall."""
        config = load_cfg(cfg, overrides) if cfg is not None else config_from(options)
        return self.create_from_config(config, paused=paused, trace=trace)

    def create_from_config(self, config, paused=False, trace=None, image=None):
        """image: the kernel already loaded (a caller creating many domains
        from one kernel, e.g. the fuzzer, loads it once)."""
        if image is None:
            image = load_kernel(config.kernel, max_bytes=config.memory_mib << 20)
        ramdisk = read_ramdisk(config.ramdisk, config.memory_mib << 20)
        domain = self.machine.create_domain(config.name, config.memory_mib * PAGES_PER_MIB,
                                            label=config.seclabel,
                                            max_vcpus=config.max_vcpus or config.vcpus)
        domain.config = config
        domain.handle = uuid.UUID(config.uuid).bytes   # xen_domain_handle_t
        try:
            self._build(domain, image, config, ramdisk)
        except Exception:
            self.machine.destroy_domain(domain)
            raise
        domain.trace_sink = trace
        if trace is not None:
            from pyxenon.hypercalls import traced

            domain.dispatch = traced(trace)
            self.machine.core.fast_paths = 0    # a trace shows every hypercall
        if paused:
            domain.pause()
        self.domains.append(domain)
        return domain

    def _build(self, domain, image, config, ramdisk):
        layout = builder.plan(image, domain.nr_pages, len(ramdisk))
        builder.check_fits(image, layout, domain.nr_pages)
        domid = domain.domid
        domain.store_port = domain.events.alloc_host(lambda: self.xenstore.on_event(domid))
        domain.console = ConsoleBackend(domain, layout.pfn(layout.console))
        builder.build(domain, image, config.cmdline, ramdisk,
                      ports=(domain.store_port, domain.console.port),
                      wallclock_ns=self.wallclock_ns())
        domain.ring_maps = map_rings(domain)
        domain.store_ring = (domain.page(layout.pfn(layout.xenstore)),
                             lambda: domain.events.set_pending(domain.store_port))
        self.xenstore.connect(domid, *domain.store_ring)
        populate_store(self.xenstore, domain, layout)
        self.devices.attach(domain, config)

    # -- running -------------------------------------------------------------

    def wallclock_ns(self):
        """The wall clock at system time 0 (shared_info's wc_*): the host's,
        or in deterministic mode the epoch, so that a run repeats."""
        return 0 if self.machine.scheduler.deterministic else time.time_ns()

    def run(self, timeout=None):
        """Run until every domain has stopped (or timeout seconds)."""
        return self.machine.run(timeout)

    def find(self, which):
        """A live domain by name or id."""
        for domain in self.machine.domains.values():
            if str(domain.domid) == str(which) or domain.name == which:
                return domain
        return None

    def _on_destroy(self, domain):
        self.devices.detach(domain)
        for handle in getattr(domain, "ring_maps", ()):
            grants_copy.backend_unmap(self.machine, handle)
        if self.xenstore.is_introduced(domain.domid):
            self.xenstore.release(domain.domid)

    def _xenstore_gate(self, caller, owner, need):
        """A guest touching another guest's XenStore nodes: the MSM decides."""
        domains = self.machine.domains
        subject, obj = domains.get(caller), domains.get(owner)
        if subject is None or obj is None:
            return False
        access = {1: "r", 2: "w"}.get(need & 3, "rw")
        try:
            self.machine.msm.check(subject, obj, "xenstore", access, "xenstore")
        except HypercallError:
            return False
        return True

    def _on_shutdown(self, domain):
        """Apply the cfg's on_poweroff/on_reboot/on_crash action."""
        action = action_for(domain)
        if action in ("destroy", "coredump-destroy"):
            self.machine.destroy_domain(domain)
        elif action in ("restart", "rename-restart", "coredump-restart"):
            self.machine.destroy_domain(domain)
            self.create_from_config(domain.config, trace=domain.trace_sink)


def map_rings(domain):
    """xenconsoled and xenstored map the console and store rings by the
    builder's reserved grants and keep them mapped while they serve the
    domain (console/daemon/io.c domain_create_ring, xenstored_domain.c
    map_interface): the frames hold the writable type, so the guest can
    never make a page table or a GDT of a page the daemons write into."""
    return [grants_copy.backend_map(domain, ref)[0]
            for ref in (gt.GNTTAB_RESERVED_CONSOLE, gt.GNTTAB_RESERVED_XENSTORE)]


def populate_store(xs, domain, layout):
    """The nodes xl writes for a new PV domain, under its home."""
    home = f"/local/domain/{domain.domid}"
    nodes = {
        "name": domain.name, "domid": str(domain.domid),
        "memory/target": str(domain.nr_pages * 4), "memory/static-max": str(domain.nr_pages * 4),
        "console/ring-ref": str(domain.pfn_to_mfn(layout.pfn(layout.console))),
        "console/port": str(domain.console.port), "console/type": "xenconsoled",
        "console/limit": "1048576", "console/backend-id": "0",
        "store/ring-ref": str(domain.pfn_to_mfn(layout.pfn(layout.xenstore))),
        "store/port": str(domain.store_port),
    }
    online = getattr(getattr(domain, "config", None), "vcpus", 1)
    for vcpu in domain.vcpus:   # libxl's cpu/N/availability: Linux's cpu_hotplug reads it
        nodes[f"cpu/{vcpu.vcpu_id}/availability"] = "online" if vcpu.vcpu_id < online else "offline"
    for key, value in nodes.items():
        xs.write(f"{home}/{key}", value)
    for key in ("control", "device", "data", "drivers", "feature", "attr", "error"):
        xs.mkdir(f"{home}/{key}")
    for path in [home] + [f"{home}/{k.split('/')[0]}" for k in nodes]:
        xs.set_perms(path, [(domain.domid, "n")])


def action_for(domain):
    config = getattr(domain, "config", None)
    if config is None or domain.state != SHUTDOWN:
        return "destroy"
    reason = domain.shutdown_reason
    return {"poweroff": config.on_poweroff, "reboot": config.on_reboot,
            "crash": config.on_crash, "watchdog": config.on_watchdog}.get(reason, "destroy")


def config_from(options):
    """A DomainConfig from keyword options (the API's cfg-less form)."""
    kernel = options.pop("kernel")
    memory = options.pop("memory", 16)
    name = options.pop("name", None) or str(kernel).rsplit("/", 1)[-1].split(".")[0]
    return DomainConfig(name=name, kernel=str(kernel), memory_mib=memory, **options)


def read_ramdisk(path, limit):
    """The ramdisk, no larger than the domain's memory (it must fit there)."""
    return read_user_file(path, "ramdisk", limit, "the domain's memory") if path else b""


# -- sizing the machine ------------------------------------------------------------

def machine_mib(requested=None):
    """requested, else $PYXENON_MACHINE_MIB, else MACHINE_MIB or, under an
    address-space limit that cannot hold that, as much as the limit can."""
    if requested is not None:
        return requested
    text = os.environ.get(MACHINE_ENV, "")
    if not text:
        return fitted(MACHINE_MIB)
    if not text.isdigit() or int(text) < 1:
        raise HostLimitError(f"{MACHINE_ENV}={text[:40]!r}: not a size in MiB")
    return int(text)


def address_space_left():
    """Bytes of address space this process may still map; None: no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    return soft - used


def fitted(memory_mib):
    left = address_space_left()
    if left is None:
        return memory_mib
    room = (left - ENGINE_BYTES) // BYTES_PER_MIB
    return min(memory_mib, room) if room >= MIN_FITTED_MIB else memory_mib


def check_address_space(memory_mib):
    """Refuse in one line, before the engine tries and fails (Unicorn would
    abort the process), a machine the address-space limit cannot hold."""
    left = address_space_left()
    if left is not None and memory_mib * BYTES_PER_MIB + ENGINE_BYTES > left:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        raise HostLimitError(cannot_reserve(
            memory_mib, f"the address-space limit, ulimit -v, is {soft >> 10} KiB, "
                        f"{max(left, 0) >> 20} MiB of it free, and the engine needs "
                        f"{ENGINE_BYTES >> 20} MiB besides"))


def cannot_reserve(memory_mib, why):
    return (f"cannot reserve {memory_mib} MiB of machine memory ({why}); "
            f"lower it with {MACHINE_ENV}=MiB or raise the limit")


def sized_for(configs):
    """Machine memory for a run of these domains: the default, or, when an
    address-space limit is set, what they need (each its maxmem plus its
    Xen pages) and a margin, so the run fits under the limit."""
    if os.environ.get(MACHINE_ENV) or address_space_left() is None:
        return None
    need = sum(max(c.memory_mib, c.maxmem_mib or 0) + 1 for c in configs) + 16
    return min(MACHINE_MIB, need)
