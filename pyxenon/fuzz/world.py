"""The world a hypercall campaign runs in: one Host (deterministic time)
with a domain in each of three slots, recreated when it dies."""
import functools
import pathlib

from pyxenon._core import lib
from pyxenon.hypervisor import audit, mm
from pyxenon.hypervisor.domain import DEAD
from pyxenon.hypervisor.errors import GuestFault
from pyxenon.hypervisor.guestmem import copy_to_guest

from .common import GUESTS, PAGE, hypercall_name, result_problem


SCRATCH_PAGES = 32        # argument buffers: the first pages of the padding
MEMORY_MIB = 256
CONSOLE_KEEP = 1 << 16    # host-side console log trimmed past this
POLICY = """\
version = 1

[labels]
ping = "fuzzed domain, may reach pong on every path"
pong = "fuzzed domain, may reach ping on every path"
intruder = "fuzzed domain named by no rule"

[[allow]]
from = "ping"
to = "pong"
paths = ["event_channel", "grant_map", "grant_copy", "xenstore"]
access = "readwrite"
bidirectional = true
"""


# (name and label, cfg, command line): hello prints and powers off, nullcall
# keeps making hypercalls, hostile tries its 21 ways out.
SLOTS = (("ping", "hello.cfg", ""), ("pong", "nullcall.cfg", "loops=1000000000"),
         ("intruder", "hostile.cfg", ""))


# The machine's counters a run moves (struct xc_machine): reset() puts them
# back as a new machine has them (the TLB flush clock decides which flushes
# a type change needs; the others are statistics and budgets).
CORE_COUNTERS = ("tlbflush_clock", "tlb_fills", "tlb_misses", "tlb_size", "work",
                 "slices", "py_calls", "slice_stime", "flush_pending", "code_flush_pending")


# Fixed bugs the C core can reintroduce (xc_machine.plant), so a campaign can
# show that it finds them: the isolation issue's two page-table breaches.
PLANTS = {None: 0, "type-after-validation": lib.PLANT_TYPE_AFTER_VALIDATION,
          "no-type-change-flush": lib.PLANT_NO_TYPE_CHANGE_FLUSH}


@functools.lru_cache(maxsize=None)
def slot_config(guests, slot):
    """A slot's DomainConfig and loaded kernel: read once per process (a
    world recreates its domains often; the files do not change meanwhile)."""
    from pyxenon.toolstack.elfimage import load_kernel
    from pyxenon.toolstack.xlcfg import load_cfg

    name, cfg, cmdline = SLOTS[slot]
    overrides = [f'name="{name}"', f'seclabel="{name}"', f'cmdline="{cmdline}"']
    overrides += [f'{key}="destroy"' for key in ("on_poweroff", "on_reboot", "on_crash",
                                                  "on_watchdog")]
    config = load_cfg(str(guests / cfg), overrides)
    return config, load_kernel(config.kernel, max_bytes=config.memory_mib << 20)


class ResultCheck:
    """Wraps a domain's dispatch: every result, nested ones (multicall) and
    the engine's included, is checked; problems go to sink(text, nr, problem)."""

    def __init__(self, inner, sink):
        self.inner = inner
        self.sink = sink

    def __call__(self, vcpu, nr, a1, a2, a3, a4, a5):
        rc = self.inner(vcpu, nr, a1, a2, a3, a4, a5)
        check_result(self.sink, nr, (a1, a2, a3, a4, a5), rc)
        return rc


def check_result(sink, nr, args, rc):
    problem = result_problem(nr, rc, args)
    if problem:
        sink(f"{hypercall_name(nr)}({', '.join(f'{a:#x}' for a in args)}) "
             f"returned {rc!r}: {problem}", nr, problem)


class World:
    """One Host (deterministic time) with a domain in each slot, recreated
    when it dies; applies ops and collects what went wrong."""

    def __init__(self, guests=GUESTS, plant=None):
        from pyxenon.toolstack.host import Host
        from pyxenon.toolstack.policy import parse_policy

        self.guests = pathlib.Path(guests)
        self.policy = parse_policy(POLICY, "<fuzz policy>")
        self.host = Host(memory_mib=MEMORY_MIB, deterministic=True, policy=self.policy)
        self.machine = self.host.machine
        audit.shadow_tlb(self.machine)      # the checker sees what the TLB may hold
        self.core_start = {name: getattr(self.machine.core, name) for name in CORE_COUNTERS}
        self.plant = PLANTS[plant]
        self.slots = [None] * len(SLOTS)
        self.bad_results = []     # (text, nr, problem) from ResultCheck
        self.unraisable = []      # sys.unraisablehook records
        self.examined = set()     # ids of domains whose crash report was read
        self.tables = {}          # domid -> [(mfn, level)] validated tables, from Invariants
        self.recreated = 0
        self.refresh()

    def close(self):
        self.host.close()

    def reset(self):
        """Back to the state of a fresh World, without a new Host: every
        domain destroyed (the toolstack's own path, which a campaign takes
        all the time), the domid counter, virtual time, the machine's
        counters and a new XenStore as a new Host has them, then the slots
        filled again.  Equivalence with a fresh world (the same domids,
        frames, memory, results) is tested (tests/test_fuzz_throughput.py);
        a world a problem was found in is not reset but replaced."""
        host, machine = self.host, self.machine
        host.devices.close()
        host.new_store()          # first: the old store need not forget each domain
        for dom in list(machine.domains.values()):
            machine.destroy_domain(dom)
        machine.after_slice()
        machine.next_domid = 1
        machine.scheduler.virtual_ns = 0
        for name, value in self.core_start.items():
            setattr(machine.core, name, value)
        host.domains.clear()
        self.slots = [None] * len(SLOTS)
        self.examined.clear()
        self.tables.clear()
        self.refresh()

    # -- domains --

    def create(self, slot):
        config, image = slot_config(self.guests, slot)
        # A planted bug is the guests' to find: the toolstack builds without it.
        self.machine.core.plant = 0
        try:
            dom = self.host.create_from_config(config, image=image)
        finally:
            self.machine.core.plant = self.plant
        dom.dispatch = ResultCheck(dom.dispatch, self.note_bad_result)
        return dom

    def note_bad_result(self, text, nr, problem):
        self.bad_results.append((text, nr, problem))

    def refresh(self):
        """Let the toolstack act on shutdowns, then fill empty slots."""
        self.machine.after_slice()
        for slot, dom in enumerate(self.slots):
            if dom is None or dom.state == DEAD:
                self.slots[slot] = self.create(slot)
                self.recreated += dom is not None

    def domain(self, slot):
        dom = self.slots[slot]
        return dom if dom is not None and dom.state != DEAD else None

    def live(self):
        return [d for d in self.machine.domains.values() if d.state != DEAD]

    def guest_writable(self, dom, mfn):
        """Could the guest map this frame writable (its own, a plain page)?"""
        if self.owner(mfn) != dom.domid:
            return False
        page = self.machine.core.frames[mfn]
        return page.type_count == 0 or page.type == mm.WRITABLE

    def owner(self, mfn):
        if 0 <= mfn < self.machine.nr_frames:
            return self.machine.core.frames[mfn].owner
        return None

    # -- ops --

    def apply(self, op):
        kind = op["op"]
        if kind == "call":
            return self.call(op)
        if kind == "store":
            return self.store(op)
        if kind == "destroy":
            return self.destroy(op["slot"])
        if kind == "touch":
            return self.touch(op)
        return self.run(op["rounds"])

    def touch(self, op):
        dom = self.domain(op["slot"])
        if dom is None:
            return None
        return lib.xc_tlb_probe(self.machine.core, dom.vcpus[0].core, op["va"], int(op["write"]))

    def destroy(self, slot):
        """The toolstack destroys a domain (the slot gets a new one)."""
        dom = self.domain(slot)
        if dom is not None:
            self.machine.destroy_domain(dom)
        return 0

    def call(self, op):
        dom = self.domain(op["slot"])
        if dom is None:
            return None
        vcpu = dom.vcpus[0]
        for va, data in op["writes"]:
            try:
                copy_to_guest(vcpu, va, bytes.fromhex(data))
            except GuestFault:
                pass      # the guest could not have written there either
        seen = len(self.bad_results)
        rc = vcpu.hypercall(op["nr"], *op["args"])     # the trap's entry: C, then Python
        # The flush the guest's next instruction gets: until it is done the
        # checker cannot tell a stale translation from one about to go.
        lib.xc_settle(self.machine.core)
        if len(self.bad_results) == seen:     # else Python's ResultCheck said it already
            check_result(self.note_bad_result, op["nr"], op["args"], rc)
        return rc

    def store(self, op):
        dom = self.domain(op["slot"])
        data = bytes.fromhex(op["data"])
        offset = op["offset"] % PAGE
        if dom is None or not self.guest_writable(dom, op["mfn"]) or offset + len(data) > PAGE:
            return None
        start = op["mfn"] * PAGE + offset
        self.machine.mem[start:start + len(data)] = data
        return 0

    def run(self, rounds):
        run_rounds(self.machine, rounds)
        return 0

    # -- after each op --

    def crash_problems(self):
        """Domains newly crashed by a handler bug (dispatch's net)."""
        found = []
        for dom in self.host.domains:
            report = dom.crash_report
            if report and id(dom) not in self.examined:
                self.examined.add(id(dom))
                if "hypervisor error" in report:
                    found.append(report)
        return found

    def trim_logs(self):
        for dom in self.machine.domains.values():
            for log in (dom.console_log, dom.dmesg_log):
                if len(log) > CONSOLE_KEEP:
                    del log[:]


def run_rounds(machine, rounds):
    """Scheduler.run's loop with a budget of rounds instead of wall-clock
    time, so a run is the same on every machine (time is virtual)."""
    scheduler = machine.scheduler
    for _ in range(rounds):
        scheduler.wake_expired()
        if not scheduler.round() and not scheduler.wait_for_timer(None):
            break
