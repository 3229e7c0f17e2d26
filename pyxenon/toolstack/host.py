"""The host: one machine plus the toolstack's view of its domains.

This is the Python API (and what the CLI and the pytest fixtures use):

    host = Host()
    dom = host.create("guests/hello.cfg")
    host.run()
    dom.console_text, dom.shutdown_reason
"""
import time

from pyxenon.errors import read_user_file
from pyxenon.hypervisor.domain import SHUTDOWN
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.machine import Machine

from . import builder
from .console import ConsoleBackend
from .elfimage import load_kernel
from .xenstore import XenStore
from .xlcfg import DomainConfig, load_cfg

PAGES_PER_MIB = 256


class Host:
    def __init__(self, memory_mib=8192, slice_ms=10, deterministic=False, policy=None,
                 audit=None, fast_paths=True):
        """policy: a path to a policy file, or a compiled Policy; None
        refuses every inter-domain operation.  audit: a callable given each
        MSM decision (default: kept in machine.audit_log)."""
        if isinstance(policy, (str, bytes)) or hasattr(policy, "__fspath__"):
            from .policy import load_policy

            policy = load_policy(policy)
        self.policy = policy
        self.machine = Machine(memory_mib=memory_mib, slice_ms=slice_ms,
                               deterministic=deterministic, policy=policy, audit=audit,
                               fast_paths=fast_paths)
        self.machine.shutdown_listeners.append(self._on_shutdown)
        self.machine.destroy_listeners.append(self._on_destroy)
        self.xenstore = XenStore(gate=self._xenstore_gate)
        self.domains = []  # every domain created, dead ones included (their logs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.machine is not None:
            self.machine.close()
            self.machine = None

    # -- creating domains -----------------------------------------------------

    def create(self, cfg=None, *, overrides=(), paused=False, trace=None, **options):
        """A domain from an xl.cfg path, or from options (kernel=..., name=...,
        memory=MiB, cmdline=..., ramdisk=..., on_poweroff=..., seclabel=...).
        trace: a callable given one line per hypercall."""
        config = load_cfg(cfg, overrides) if cfg is not None else config_from(options)
        return self.create_from_config(config, paused=paused, trace=trace)

    def create_from_config(self, config, paused=False, trace=None):
        image = load_kernel(config.kernel, max_bytes=config.memory_mib << 20)
        ramdisk = read_ramdisk(config.ramdisk, config.memory_mib << 20)
        domain = self.machine.create_domain(config.name, config.memory_mib * PAGES_PER_MIB,
                                            label=config.seclabel)
        domain.config = config
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
                      wallclock_ns=time.time_ns())
        self.xenstore.connect(domid, domain.page(layout.pfn(layout.xenstore)),
                              lambda: domain.events.set_pending(domain.store_port))
        populate_store(self.xenstore, domain, layout)

    # -- running -------------------------------------------------------------

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


def populate_store(xs, domain, layout):
    """The nodes xl writes for a new PV domain, under its home."""
    home = f"/local/domain/{domain.domid}"
    nodes = {
        "name": domain.name, "domid": str(domain.domid),
        "memory/target": str(domain.nr_pages * 4), "memory/static-max": str(domain.nr_pages * 4),
        "cpu/0/availability": "online",
        "console/ring-ref": str(domain.pfn_to_mfn(layout.pfn(layout.console))),
        "console/port": str(domain.console.port), "console/type": "xenconsoled",
        "console/limit": "1048576", "console/backend-id": "0",
        "store/ring-ref": str(domain.pfn_to_mfn(layout.pfn(layout.xenstore))),
        "store/port": str(domain.store_port),
    }
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
