"""The host's debugger on one domain: what Xen gives gdbsx through its
domctls (pause for the debugger, a vcpu's registers, guest memory), plus
breakpoints, watchpoints and single steps as engine hooks (_core/debug.c).

A Debugger holds its domain (Domain.debug_paused) from the moment it
attaches, as xl's `create -p` would, until resumed; every other domain
keeps running.  All of it runs outside the engine, between slices.  The
hooks are the debugger's own: the guest's debug registers and #DB never
see them, and nothing is hooked while none is set.
"""
from collections import namedtuple

from pyxenon._core import ffi, lib
from pyxenon.public import sched

from .errors import GuestFault
from .guestmem import debug_read, debug_write

PAGE = 4096
MAX_POINTS = 256          # breakpoints and watchpoint pages a client may set
MAX_WATCH = 4096          # bytes one watchpoint may cover
# Why a domain stopped, for the stub: gdb's Z types, then these.
SW, HW, WRITE, READ, ACCESS = range(5)
STEP, ENTRY, INTERRUPT, EXITED = "step", "entry", "interrupt", "exited"
DATA_KINDS = (WRITE, READ, ACCESS)

# What a debugger may change in rflags: the arithmetic flags, DF, AC.  IF
# stays set and IOPL clear, as Xen's arch_set_info_guest keeps them for a
# PV vcpu; TF, NT, RF, VM and the virtual-interrupt flags are not its to set.
RFLAGS_WRITABLE = 0x0008D5 | 0x400 | 0x40000
RFLAGS_FIXED = 0x2 | 0x200
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
MASK64 = (1 << 64) - 1

Stop = namedtuple("Stop", "why addr code", defaults=(0, 0))


class DebugError(Exception):
    """A debugger request the hypervisor refuses (the stub's E NN reply)."""


class Debugger:
    def __init__(self, domain):
        if domain.debugger is not None:
            raise DebugError(f"domain {domain.name} already has a debugger")
        self.domain = domain
        self.machine = domain.machine
        self.points = {}           # (kind, addr, length) -> [C points]
        self.boundary = None       # the per-instruction check while a watchpoint is set
        self.step_point = None
        self.continue_after_step = False
        self.stopped = None        # a Stop, while the domain is held
        self.listeners = []        # f(stop): the domain stopped, or exited, by itself
        domain.debugger = self
        self.machine.shutdown_listeners.append(self._on_shutdown)
        self.machine.destroy_listeners.append(self._on_destroy)
        self.hold(Stop(ENTRY))

    @property
    def alive(self):
        return self.domain.debugger is self

    def vcpu(self, vcpu_id=0):
        if not self.alive:
            raise DebugError(f"domain {self.domain.name} is gone")
        vcpus = self.domain.vcpus
        if not 0 <= vcpu_id < len(vcpus):
            raise DebugError(f"no vcpu {vcpu_id}")
        return vcpus[vcpu_id]

    # -- stopping and going on -------------------------------------------------

    def hold(self, stop):
        self.stopped = stop
        self.domain.debug_paused = True

    def interrupt(self):
        """Stop the domain where it is (gdb's Ctrl-C); False if it was held."""
        if self.stopped is not None or not self.alive:
            return False
        self.hold(Stop(INTERRUPT))
        return True

    def resume(self, step=False, vcpu_id=0):
        """Let the domain run on; step: one instruction of vcpu_id, then stop.
        Leaving a breakpoint's address takes one step with it passed over."""
        vcpu = self.vcpu(vcpu_id)
        core = vcpu.core
        rip = vcpu.regs()["rip"]
        core.dbg_skip = 0
        if step or self.breakpoint_at(rip):
            core.dbg_skip_pc, core.dbg_skip, core.dbg_steps = rip, 1, 0
            self.step_point = self._insert(vcpu, lib.XC_DBG_STEP)
            self.continue_after_step = not step
        self.stopped = None
        vcpu.wake_if_pending()
        self.domain.debug_paused = False

    def on_stop(self, vcpu):
        """The engine stopped vcpu at a hook (the scheduler calls this)."""
        core = vcpu.core
        kind, addr = core.dbg_kind, core.dbg_addr
        core.stop, core.dbg_skip, core.dbg_pending = 0, 0, 0
        going_on = self.continue_after_step
        self._drop_step()
        if kind == lib.XC_DBG_STEP:
            if going_on:               # off the breakpoint: on as asked
                return
            kind = STEP
        self.hold(Stop(kind, addr))
        self._tell(self.stopped)

    def release(self):
        """Drop every hook and let the domain run on (gdb's D); attached
        still, so a later client can stop it again."""
        if not self.alive:
            return
        for key in list(self.points):
            self.remove(*key)
        self._drop_step()
        if self.stopped is not None:
            self.resume()

    def detach(self):
        self.release()
        if self.alive:
            self._forget()

    def _drop_step(self):
        if self.step_point is not None:
            self._remove(self.step_point)
            self.step_point = None
        self.continue_after_step = False

    def _forget(self):
        self._drop_step()
        self.domain.debugger = None
        self.domain.debug_paused = False
        for listeners, f in ((self.machine.shutdown_listeners, self._on_shutdown),
                             (self.machine.destroy_listeners, self._on_destroy)):
            if f in listeners:
                listeners.remove(f)

    def _on_shutdown(self, domain):
        if domain is self.domain and self.alive:
            self._exited()

    def _exited(self):
        """The domain shut down, or went (the host's action may destroy it
        before this debugger hears of the shutdown): its last stop."""
        if self.stopped is None or self.stopped.why != EXITED:
            code = self.domain.shutdown_code
            self.stopped = Stop(EXITED, 0, sched.SHUTDOWN_crash if code is None else code)
            self._tell(self.stopped)

    def _on_destroy(self, domain):
        if domain is not self.domain or not self.alive:
            return
        for points in self.points.values():
            for point in points:
                self._remove(point)
        self.points.clear()
        self._drop_boundary()
        self._forget()
        self._exited()

    def _tell(self, stop):
        for listener in list(self.listeners):
            listener(stop)

    # -- registers --------------------------------------------------------------

    def registers(self, vcpu_id=0):
        return self.vcpu(vcpu_id).regs()

    def set_registers(self, vcpu_id=0, **values):
        """General registers, rip, rflags (within RFLAGS_WRITABLE), the FS
        and GS bases.  Segment selectors cannot change (a PV guest loads
        them itself, checked by the CPU); naming one with its value is fine."""
        vcpu = self.vcpu(vcpu_id)
        now = vcpu.regs()
        for name in SEGMENTS:
            if name in values and values.pop(name) & 0xFFFF != now[name] & 0xFFFF:
                raise DebugError(f"{name} cannot be changed")
        unknown = set(values) - set(now)
        if unknown:
            raise DebugError(f"no register {sorted(unknown)[0]}")
        if "rflags" in values:
            values["rflags"] = (now["rflags"] & ~RFLAGS_WRITABLE) | RFLAGS_FIXED | (
                values["rflags"] & RFLAGS_WRITABLE)
        vcpu.set_regs(**{k: v & MASK64 for k, v in values.items()})

    # -- memory -----------------------------------------------------------------

    def read_memory(self, va, size, vcpu_id=0):
        try:
            return debug_read(self.vcpu(vcpu_id), va, size)
        except GuestFault as e:
            raise DebugError(f"{e.va:#x} is not mapped") from None

    def write_memory(self, va, data, vcpu_id=0):
        """Drops translations of code it overwrites (_core/debug.c)."""
        try:
            debug_write(self.vcpu(vcpu_id), va, data)
        except GuestFault as e:
            raise DebugError(f"{e.va:#x} cannot be written") from None

    # -- breakpoints and watchpoints ------------------------------------------------

    def breakpoint_at(self, rip):
        return any(kind in (SW, HW) and addr == rip for kind, addr, _ in self.points)

    def insert(self, kind, addr, length, vcpu_id=0):
        """gdb's Z: kind 0-4; a breakpoint's length is gdb's kind (ignored)."""
        key = (kind, addr, length if kind in DATA_KINDS else 0)
        if key in self.points:
            return
        check_point(kind, addr, length)
        vcpu = self.vcpu(vcpu_id)
        pieces = self._pieces(kind, addr, length, vcpu)
        if sum(map(len, self.points.values())) + len(pieces) > MAX_POINTS:
            raise DebugError("too many breakpoints and watchpoints")
        if kind in DATA_KINDS and self.boundary is None:
            self.boundary = self._insert(vcpu, lib.XC_DBG_BOUNDARY)
        self.points[key] = []
        try:
            for va, ma, n in pieces:
                self.points[key].append(self._insert(vcpu, kind, va, ma, n))
        except DebugError:     # none of it stays set
            self.remove(kind, addr, length)
            raise

    def remove(self, kind, addr, length):
        """gdb's z: a point that is not set is no error."""
        for point in self.points.pop((kind, addr, length if kind in DATA_KINDS else 0), ()):
            self._remove(point)
        if not any(k[0] in DATA_KINDS for k in self.points):
            self._drop_boundary()

    def _pieces(self, kind, addr, length, vcpu):
        """(va, machine address, bytes) per page a watchpoint covers; a
        breakpoint is its address alone."""
        if kind not in DATA_KINDS:
            return [(addr, 0, 0)]
        pieces = []
        end = addr + length
        while addr < end:
            n = min(end - addr, PAGE - (addr & (PAGE - 1)))
            ma = lib.xc_dbg_translate(self.machine.core, vcpu.core, addr, 0)
            if ma < 0:
                raise DebugError(f"{addr:#x} is not mapped")
            pieces.append((addr, ma, n))
            addr += n
        return pieces

    def _insert(self, vcpu, kind, va=0, ma=0, length=0):
        point = lib.xc_dbg_insert(self.machine.core, vcpu.core, kind, va, ma, length)
        if point == ffi.NULL:
            raise DebugError("the engine refused the hook")
        return point

    def _remove(self, point):
        lib.xc_dbg_remove(self.machine.core, point)

    def _drop_boundary(self):
        for vcpu in self.domain.vcpus:   # a hit its boundary will not see now
            if vcpu.core != ffi.NULL:
                vcpu.core.dbg_pending = 0
        if self.boundary is not None:
            self._remove(self.boundary)
            self.boundary = None


def check_point(kind, addr, length):
    if kind not in (SW, HW) + DATA_KINDS:
        raise DebugError(f"no breakpoint type {kind}")
    if not 0 <= addr <= MASK64 or (addr >> 47) not in (0, 0x1FFFF):
        raise DebugError(f"{addr:#x} is not a canonical address")
    if kind in DATA_KINDS and not 1 <= length <= MAX_WATCH:
        raise DebugError(f"a watchpoint covers 1 to {MAX_WATCH} bytes, not {length}")
