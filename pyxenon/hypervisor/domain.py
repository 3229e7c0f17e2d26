"""A domain: its frames, vcpus, shared_info, event channels and life cycle."""
import collections

from pyxenon._core import ffi, lib
from pyxenon.public import sched, xen

from .events import EventChannels
from .grants import GrantTable
from .perfc import Perfc
from .states import DEAD, PAUSED, RUNNING, SHUTDOWN  # noqa: F401 - the domain's vocabulary
from .vcpu import Vcpu

PAGE = 4096
CONSOLE_LOG_LIMIT = 1 << 20   # the last MiB a guest printed


# SHUTDOWN_* code -> the word xl uses for it.
SHUTDOWN_NAMES = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog"}


class Domain:
    def __init__(self, machine, domid, name, first_mfn, nr_pages, label=None, max_vcpus=1):
        self.machine = machine
        self.debugger = None    # hypervisor/debugger.py's Debugger, while one is attached
        self._debug_paused = False
        self.domid = domid
        self.name = name
        self.label = label
        self.first_mfn = first_mfn          # RAM is [first_mfn, first_mfn + nr_pages)
        self.nr_pages = nr_pages
        self.shared_info_mfn = first_mfn + nr_pages  # Xen's page, owned by us
        self.state = RUNNING
        self.shutdown_code = None
        self.crash_report = None
        self.unsupported = collections.Counter()    # hypercall nr -> calls
        self.console_log = bytearray()               # its PV console ring's output (xl console)
        self.dmesg_log = bytearray()                 # its console_io writes (xl dmesg's (dN) lines)
        self.console_input = bytearray()             # host input for CONSOLEIO_read
        self.watchdogs = {}                          # watchdog id -> deadline (ns)
        self.pending_shutdown_code = None            # SCHEDOP_shutdown_code
        self.handle = bytes(16)                      # xen_domain_handle_t (uuid)
        self.start_info_va = None
        self.vm_assist = 0
        self.pirqs = set()      # PIRQs get_free_pirq marked PIRQ_ALLOCATED (physdev_op.py)
        self.e820 = None        # set_memory_map's entries (bytes); None: the map xl sets
        self.io = ffi.new("struct xc_domio *")       # ports Xen emulates for it (_core/io.c)
        self.shared_info = xen.shared_info.from_buffer(machine.mem, self.shared_info_mfn * PAGE)
        self.events = EventChannels(self)
        self.grant_table = GrantTable(self, self.shared_info_mfn + 1)
        self.share_xen_pages()
        self.perfc = Perfc(on=machine.perfc)           # hypercall statistics (perfc.py)
        if not 1 <= max_vcpus <= len(self.shared_info.vcpu_info):
            raise ValueError(f"a domain has 1 to {len(self.shared_info.vcpu_info)} vcpus")
        self.vcpus = [Vcpu(self, i) for i in range(max_vcpus)]
        if max_vcpus > 1:
            for vcpu in self.vcpus:   # C's unmask marks the caller: one vcpu only
                vcpu.core.max_ports = 0
        from pyxenon.hypercalls import dispatch  # the handler table

        self.dispatch = dispatch

    def __repr__(self):
        """<Domain 'hello' d1 shutdown (crash)>: which domain, and how it stands."""
        why = f" ({self.shutdown_reason})" if self.shutdown_reason else ""
        return f"<Domain {self.name!r} d{self.domid} {self.state}{why}>"

    @property
    def state(self):
        return self._state

    @state.setter
    def state(self, value):
        self._state = value
        self.sync_running()

    @property
    def debug_paused(self):
        """A debugger holds the domain (Xen's domain_pause_for_debugger):
        its state stays running, its vcpus stay out of the engine."""
        return self._debug_paused

    @debug_paused.setter
    def debug_paused(self, value):
        self._debug_paused = bool(value)
        self.sync_running()

    def sync_running(self):
        """The C vcpus know whether they may run (their domain runs and
        they are up): an event may wake only those."""
        running = self._state == RUNNING and not self._debug_paused
        for vcpu in getattr(self, "vcpus", ()):
            if vcpu.core != ffi.NULL:
                vcpu.core.domain_running = running and vcpu.up
                vcpu.sched_update()

    # -- memory -------------------------------------------------------------

    def share_xen_pages(self):
        """shared_info and the grant-table frames are Xen's pages lent to the
        guest: a permanent writable type reference (as Xen's
        share_xen_page_with_guest gives) keeps them from ever becoming page
        tables or descriptor pages, which Xen itself writes into."""
        frames = self.machine.core.frames
        first = self.shared_info_mfn
        for mfn in range(first, first + 1 + self.grant_table.max_frames):
            frames[mfn].type = lib.PGT_WRITABLE
            frames[mfn].type_count = 1
            frames[mfn].flags |= lib.PGF_VALIDATED

    def pfn_to_mfn(self, pfn):
        if not 0 <= pfn < self.nr_pages:
            raise IndexError(f"pfn {pfn:#x} outside domain {self.domid}")
        return self.first_mfn + pfn

    def page(self, pfn):
        """A writable view of one of the domain's pages (host side)."""
        mfn = self.pfn_to_mfn(pfn)
        return self.machine.mem[mfn * PAGE:(mfn + 1) * PAGE]

    def vcpu_info(self, vcpu_id):
        return self.vcpus[vcpu_id].info

    @property
    def console_text(self):
        """What `xl console` shows: the PV console ring's output only."""
        return self.console_log.decode("utf-8", errors="replace")

    @property
    def dmesg_text(self):
        """The domain's CONSOLEIO_write output, which Xen keeps in its own
        log (`xl dmesg`, each line prefixed "(dN) "), never on the console."""
        return self.dmesg_log.decode("utf-8", errors="replace")

    # -- events and output ----------------------------------------------------

    def kick(self, vcpu, port):
        """An event arrived for vcpu: end a block, or a poll on this port."""
        if vcpu.runnable or self.state != RUNNING:
            return
        if vcpu.poll_ports is None or port in vcpu.poll_ports:
            vcpu.wake()

    def emit(self, data, source="ring"):
        """Guest output reached the host: from its console ring (source
        "ring"), or through console_io ("hypervisor"), which on Xen goes to
        the hypervisor's log and not to the console (guest_console_write)."""
        log = self.console_log if source == "ring" else self.dmesg_log
        log += data
        if len(log) > CONSOLE_LOG_LIMIT:   # a guest cannot grow host memory
            del log[:len(log) - CONSOLE_LOG_LIMIT]
        self.machine.on_console(self, bytes(data), source)

    # -- life cycle ---------------------------------------------------------

    @property
    def shutdown_reason(self):
        return SHUTDOWN_NAMES.get(self.shutdown_code) if self.shutdown_code is not None else None

    def shutdown(self, code):
        """The guest (or the host) shut the domain down; the toolstack decides
        what follows (destroy, restart, preserve)."""
        if self.state in (SHUTDOWN, DEAD):
            return
        self.state = SHUTDOWN
        self.shutdown_code = code
        for vcpu in self.vcpus:
            vcpu.runnable = False
            vcpu.stop()
        self.machine.shutdown_queue.append(self)

    def crash(self, report):
        """Crash the domain: keep the report, shut down with SHUTDOWN_crash."""
        if self.crash_report is None:
            self.crash_report = report
        self.shutdown(sched.SHUTDOWN_crash)

    def pause(self):
        if self.state == RUNNING:
            self.state = PAUSED

    def unpause(self):
        if self.state == PAUSED:
            self.state = RUNNING
            for vcpu in self.vcpus:
                vcpu.wake_if_pending()

