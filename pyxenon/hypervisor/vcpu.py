"""A virtual CPU: its C state, its registers, and the hypercall entry from C."""
from pyxenon._core import ffi, lib

from . import debugreg, debugtrap

REG_NAMES = ffi.string(lib.xc_reg_names()).decode().split()
_REG_INDEX = {name: i for i, name in enumerate(REG_NAMES)}
MASK64 = (1 << 64) - 1
RFLAGS_TF = 0x100
_WRITABLE = set(REG_NAMES[:18] + ["fs_base", "gs_base"])

# handle -> Vcpu: the C core names a vcpu by this index in its callback.
_VCPUS = []


def emulate_cr4(machine_core):
    from .emulate import fixup_guest_cr4   # pv_vcpu_initialise: pv_fixup_guest_cr4(v, 0)

    return fixup_guest_cr4(machine_core, 0)
_FREE_HANDLES = []


class Vcpu:
    def __init__(self, domain, vcpu_id):
        self.domain = domain
        self.vcpu_id = vcpu_id
        self.handle = _FREE_HANDLES.pop() if _FREE_HANDLES else len(_VCPUS)
        if self.handle == len(_VCPUS):
            _VCPUS.append(None)
        _VCPUS[self.handle] = self
        self.core = lib.xc_vcpu_new(domain.machine.core, domain.domid, vcpu_id, self.handle)
        if self.core == ffi.NULL:
            raise MemoryError("no memory for a vcpu")
        self.core.vcpu_info_ma = domain.shared_info_mfn * 4096 + vcpu_id * 64
        self.core.shared_ma = domain.shared_info_mfn * 4096
        # Xen's toolstack leaves a PV domain's other vcpus down and not
        # initialised: the guest brings them up (VCPUOP_initialise, _up)
        self._up = vcpu_id == 0
        self.initialised = vcpu_id == 0   # the builder sets vcpu 0 up
        self.offline_ns = 0               # RUNSTATE_offline time, before _down_since
        self._down_since = 0 if self._up else domain.machine.now()
        self.core.domain_running = domain.state == "running" and self._up
        self.sched_update()
        self._poll_set = None   # a poll's ports, when the C vcpu cannot hold them
        self.core.max_ports = domain.events.max_ports   # one vcpu: C may unmask
        self.core.evtchn_fifo = domain.events.fifo is not None   # C knows 2-level only
        self.core.io = domain.io
        domain.perfc.attach(self.core)
        self.info = domain.shared_info.vcpu_info[vcpu_id]   # until register_vcpu_info
        self.info_registered = False
        self.timer_period = 0   # VCPUOP_set_periodic_timer (ns), 0 = none
        self.want_yield = False
        self.pending_rip = None   # rip set by a handler, for when the engine stops
        self.pending_tf = False   # and TF (set_regs)
        self.in_multicall = False
        # Trap virtualization state (Xen's struct pv_vcpu):
        self.trap_table = {}      # vector -> (flags, cs, address)
        self.callbacks = {}       # CALLBACKTYPE_* -> (address, flags)
        self.nmi_pending = False  # arch.nmi_pending (VCPUOP_send_nmi)
        self.nmi_masked = False   # VCPU_TRAP_NMI in async_exception_mask: until iret
        self.kernel_ss = 0        # stack_switch: guest kernel stack
        self.kernel_sp = 0
        self.debugreg = debugreg.reset_values()   # dr0-7 as set_debugreg keeps them
        self.dr7_emul = 0         # I/O breakpoint enables (Xen's pv.dr7_emul)
        self.db_armed = ((), [])  # what the engine's hooks for them arm (debugtrap)
        self.cr4 = emulate_cr4(domain.machine.core)  # guest-visible CR4 (Xen's pv.ctrlreg[4])
        self.ldt = (0, 0)         # (linear address, entries)
        self.gdt_frames = []      # frames installed by set_gdt

    @property
    def up(self):
        """Not _VPF_down: the scheduler may run it (domain permitting)."""
        return self._up

    @up.setter
    def up(self, value):
        now = self.domain.machine.now()
        if self._up and not value:
            self._down_since = now
        elif value and not self._up:
            self.offline_ns += now - self._down_since
        self._up = bool(value)
        self.domain.sync_running()

    def offline_time(self):
        """ns spent down (RUNSTATE_offline), up to now."""
        down = 0 if self._up else self.domain.machine.now() - self._down_since
        return self.offline_ns + down

    def free(self):
        debugtrap.disarm(self)
        lib.xc_vcpu_free(self.domain.machine.core, self.core)
        _VCPUS[self.handle] = None
        _FREE_HANDLES.append(self.handle)
        self.core = ffi.NULL

    def regs(self):
        """Every register, as a dict name -> value."""
        vals = ffi.new("uint64_t[]", len(REG_NAMES))
        lib.xc_regs(self.domain.machine.core, self.core, 0, vals)
        return dict(zip(REG_NAMES, vals))

    def set_regs(self, **changes):
        """Change general registers, rip, rflags, fs_base, gs_base.

        rip changed while this vcpu is inside the engine (a hypercall
        handler) takes effect when the engine stops: Unicorn would move a
        pc written from the syscall hook on past the syscall.  So does TF:
        QEMU re-checks it at the end of that syscall and would raise the
        single step's #DB before the guest's next instruction had run."""
        bad = set(changes) - _WRITABLE
        if bad:
            raise ValueError(f"registers not writable here: {sorted(bad)}")
        machine = self.domain.machine
        inside = machine.in_engine and machine.core.current == self.core
        if inside:
            self._defer_tf(changes)
        rip = changes.pop("rip", None)
        if changes:
            self._write_regs(changes)
        if inside and (rip is not None or self.pending_tf):
            if rip is not None:
                self.pending_rip = rip & MASK64
            self.stop()
        elif rip is not None:
            lib.xc_set_rip(machine.core, self.core, rip & MASK64)

    def _write_regs(self, changes):
        machine = self.domain.machine
        vals = ffi.new("uint64_t[]", len(REG_NAMES))
        lib.xc_regs(machine.core, self.core, 0, vals)
        for name, value in changes.items():
            vals[_REG_INDEX[name]] = value & MASK64
        lib.xc_regs(machine.core, self.core, 1, vals)

    def _defer_tf(self, changes):
        if changes.get("rflags", 0) & RFLAGS_TF:
            changes["rflags"] &= ~RFLAGS_TF
            self.pending_tf = True

    def apply_pending_rip(self):
        """Set the rip a handler chose; True if there was one."""
        if self.pending_tf:
            self.pending_tf = False
            self.set_regs(rflags=self.regs()["rflags"] | RFLAGS_TF)
        if self.pending_rip is None:
            return False
        lib.xc_set_rip(self.domain.machine.core, self.core, self.pending_rip)
        self.pending_rip = None
        return True

    def hypercall(self, nr, *args):
        """Hypercall nr with up to five arguments, entered as this vcpu's
        trap enters it (C fast paths, then the Python handlers): the host's
        way in, for tests and the fuzzer."""
        a = ffi.new("uint64_t[6]", [x & MASK64 for x in (nr, *args, 0, 0, 0, 0, 0)[:6]])
        return lib.xc_hypercall(self.domain.machine.core, self.core, a)

    def stop(self):
        """Leave the engine after this hypercall so the scheduler can look."""
        lib.xc_stop(self.domain.machine.core)

    # Blocking lives in the C vcpu, where the event-channel fast paths
    # (_core/events.c) block and wake it too.

    @property
    def runnable(self):
        """False while blocked or polling."""
        return not self.core.blocked

    @runnable.setter
    def runnable(self, value):
        self.core.blocked = 0 if value else 1
        self.sched_update()

    def sched_update(self):
        """The run queue and the deadline heap follow the C vcpu's fields
        (_core/runq.c): every change of them ends here."""
        lib.xc_sched_update(self.domain.machine.core, self.core)

    @property
    def wake_at(self):
        """System time (ns) a block or poll times out, or None."""
        return self.core.wake_at or None if self.core.blocked else None

    @property
    def poll_ports(self):
        """The ports a SCHEDOP_poll waits on (None: not polling)."""
        if not self.core.blocked or self.core.poll_port == 0:
            return None
        if self.core.poll_port == lib.XC_POLL_SET:
            return self._poll_set
        return {self.core.poll_port}

    @property
    def runstate(self):
        """ns in RUNSTATE_running/runnable/blocked/offline (C's array)."""
        return self.core.runstate

    @property
    def gs_base_other(self):
        """The GS base of the guest mode not running (C's: msr.c reads it)."""
        return self.core.gs_base_other

    @gs_base_other.setter
    def gs_base_other(self, value):
        self.core.gs_base_other = value

    @property
    def timer_at(self):
        """set_timer_op / singleshot timer deadline (ns), or None."""
        return self.core.timer_at or None

    @timer_at.setter
    def timer_at(self, value):
        # 0 means "no timer" in C: a deadline of 0 (long past) fires as 1 would;
        # one past 2**64 ns (now + a huge period) is as good as never
        self.core.timer_at = 0 if value is None else min(max(value, 1), (1 << 64) - 1)
        self.sched_update()

    def block(self, wake_at=None, ports=None):
        """Sleep until an event (ports None) or one of ports is pending, or wake_at."""
        core = self.core
        core.blocked = 1
        core.wake_at = wake_at or 0
        one = next(iter(ports)) if ports is not None and len(ports) == 1 else 0
        if ports is None:
            core.poll_port = 0
        elif 0 < one < lib.XC_POLL_SET:
            core.poll_port = one
        else:
            core.poll_port, self._poll_set = lib.XC_POLL_SET, set(ports)
        self.sched_update()
        self.stop()

    def wake_if_pending(self):
        """An event that came while the domain was held (paused, or by a
        debugger) ends its block or poll now: the C paths wake only a running
        domain's vcpus, while Xen unblocks a paused vcpu at once
        (vcpu_unblock) and it runs once unpaused."""
        if self.runnable:
            return
        ports = self.poll_ports
        if ports is None:
            info = self.domain.vcpu_info(self.vcpu_id)
            pending = info.evtchn_upcall_pending and not info.evtchn_upcall_mask
        else:
            pending = any(self.domain.events.is_pending(port) for port in ports)
        if pending:
            self.wake()

    def wake(self):
        self.core.blocked = 0
        self.core.poll_port = 0
        self.core.wake_at = 0
        self._poll_set = None
        self.sched_update()


def vcpu_by_handle(handle):
    """The Vcpu the C core names by handle."""
    return _VCPUS[handle]


@ffi.def_extern()
def xc_py_hypercall(handle, nr, a1, a2, a3, a4, a5):
    vcpu = _VCPUS[handle]
    return vcpu.domain.dispatch(vcpu, nr, a1, a2, a3, a4, a5)
