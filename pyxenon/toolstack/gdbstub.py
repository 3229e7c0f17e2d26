"""A GDB stub for one domain: the remote serial protocol's commands on
top of hypervisor/debugger.py (framing in gdbpacket.py, sockets in
gdbserver.py).

Registers are in gdb's amd64 order (the target description this stub
serves, features i386.core, i386.sse and i386.segments): rax rbx rcx rdx
rsi rdi rbp rsp r8-r15 rip eflags cs ss ds es fs gs, the x87 and SSE
registers (reported unavailable: the engine's FPU state is not exposed),
then fs_base and gs_base.  One thread per vcpu, thread id vcpu_id + 1.
Errors are errno numbers, as gdbserver's: E14 (EFAULT) for memory that is
not mapped or may not be written, E22 (EINVAL) for a malformed packet or a
refused request; an unknown packet gets the empty reply.
"""
from pyxenon.hypervisor import debugger as dbg
from pyxenon.hypervisor.debugger import DebugError

from .gdbpacket import MAX_PACKET, PacketError, hex_bytes, hex_int, split_fields, unescape

EFAULT, EINVAL, ESRCH = b"E14", b"E22", b"E03"
SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11
MAX_MEMORY = (MAX_PACKET - 16) // 2        # bytes one m reply can carry in hex
SHUTDOWN_crash = 3

GP_NAMES = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"] + [f"r{i}" for i in range(8, 16)]
# (name, bytes, value from the vcpu) in gdb's regnum order.
REGISTERS = ([(n, 8, True) for n in GP_NAMES + ["rip"]] + [("rflags", 4, True)]
             + [(n, 4, True) for n in dbg.SEGMENTS]
             + [(f"st{i}", 10, False) for i in range(8)]
             + [(n, 4, False) for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg",
                                        "fooff", "fop")]
             + [(f"xmm{i}", 16, False) for i in range(16)] + [("mxcsr", 4, False)]
             + [("fs_base", 8, True), ("gs_base", 8, True)])

_CORE = "".join(
    [f'<reg name="{n}" bitsize="64" type="int64"/>' for n in GP_NAMES[:6]]
    + ['<reg name="rbp" bitsize="64" type="data_ptr"/><reg name="rsp" bitsize="64" type="data_ptr"/>']
    + [f'<reg name="{n}" bitsize="64" type="int64"/>' for n in GP_NAMES[8:]]
    + ['<reg name="rip" bitsize="64" type="code_ptr"/>',
       '<reg name="eflags" bitsize="32" type="i386_eflags"/>']
    + [f'<reg name="{n}" bitsize="32" type="int32"/>' for n in dbg.SEGMENTS]
    + [f'<reg name="st{i}" bitsize="80" type="i387_ext"/>' for i in range(8)]
    + [f'<reg name="{n}" bitsize="32" type="int" group="float"/>'
       for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")])
_FLAGS = "".join(f'<field name="{n}" start="{b}" end="{b}"/>' for n, b in (
    ("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
    ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
    ("VIP", 20), ("ID", 21)))
_VEC = ('<vector id="v4f" type="ieee_single" count="4"/><vector id="v2d" type="ieee_double" count="2"/>'
        '<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>'
        '<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>'
        '<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>'
        '<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>'
        '<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>'
        '<field name="uint128" type="uint128"/></union>')
TARGET_XML = (
    '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
    '<target version="1.0"><architecture>i386:x86-64</architecture>'
    '<feature name="org.gnu.gdb.i386.core"><flags id="i386_eflags" size="4">' + _FLAGS
    + '</flags>' + _CORE + '</feature>'
    '<feature name="org.gnu.gdb.i386.sse">' + _VEC
    + "".join(f'<reg name="xmm{i}" bitsize="128" type="vec128" regnum="{40 + i}"/>' for i in range(16))
    + '<reg name="mxcsr" bitsize="32" type="int" group="vector"/></feature>'
    '<feature name="org.gnu.gdb.i386.segments"><reg name="fs_base" bitsize="64" type="int"/>'
    '<reg name="gs_base" bitsize="64" type="int"/></feature></target>').encode()

FEATURES = (b"PacketSize=%x;qXfer:features:read+;swbreak+;hwbreak+;vContSupported+;"
            b"QStartNoAckMode+" % MAX_PACKET)


def encode_register(index, regs):
    name, size, known = REGISTERS[index]
    if not known:
        return b"xx" * size
    return (regs[name] & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex().encode()


def decode_register(index, data):
    """(name, value) of register index from its little-endian bytes; None
    for a register the stub does not hold (its value is ignored)."""
    name, size, known = REGISTERS[index]
    if len(data) != size:
        raise PacketError(f"register {name} takes {size} bytes")
    return (name, int.from_bytes(data, "little")) if known else None


class Session:
    """One client's conversation.  send(bytes) queues a reply payload
    (gdbserver.py frames it); close() ends the connection."""

    def __init__(self, debugger, send, close):
        self.debugger = debugger
        self.send = send
        self.close = close
        self.waiting = False       # gdb resumed the target and waits for its stop reply
        self.thread = 1            # H's choice, as vcpu_id + 1
        self.peer_features = set()
        self.no_ack = False
        debugger.listeners.append(self.on_stop)

    def end(self):
        if self.on_stop in self.debugger.listeners:
            self.debugger.listeners.remove(self.on_stop)

    # -- events ---------------------------------------------------------------------

    def on_stop(self, stop):
        """The domain stopped (or exited) by itself: the reply gdb waits for."""
        if self.waiting:
            self.waiting = False
            self.send(self.stop_reply(stop))

    def interrupt(self):
        if self.waiting:
            self.debugger.interrupt()
            self.on_stop(self.debugger.stopped)

    def packet(self, payload):
        """One packet's reply (None: no reply now, as for c and s)."""
        handler = self.handler(payload)
        try:
            return handler(self, payload)
        except PacketError:
            return EINVAL
        except DebugError:
            return EFAULT if payload[:1] in b"mMX" else EINVAL

    def handler(self, payload):
        for prefix, handler in NAMED:
            if payload.startswith(prefix):
                return handler
        return SINGLE.get(payload[:1], Session.unknown)

    def unknown(self, payload):
        return b""

    # -- stops and running ------------------------------------------------------------

    def stop_reply(self, stop):
        if stop is None:
            stop = dbg.Stop(dbg.INTERRUPT)
        if stop.why == dbg.EXITED:
            return b"X%02x" % SIGSEGV if stop.code == SHUTDOWN_crash else b"W%02x" % stop.code
        signal = SIGINT if stop.why == dbg.INTERRUPT else SIGTRAP
        return b"T%02xthread:%x;" % (signal, self.thread) + self.reason(stop)

    def reason(self, stop):
        if stop.why == dbg.SW and b"swbreak+" in self.peer_features:
            return b"swbreak:;"
        if stop.why == dbg.HW and b"hwbreak+" in self.peer_features:
            return b"hwbreak:;"
        name = {dbg.WRITE: b"watch", dbg.READ: b"rwatch", dbg.ACCESS: b"awatch"}.get(stop.why)
        return name + b":%x;" % stop.addr if name else b""

    def question(self, payload):
        return self.stop_reply(self.debugger.stopped)

    def resume(self, step, addr=None):
        stopped = self.debugger.stopped
        if stopped is not None and stopped.why == dbg.EXITED:
            return self.stop_reply(stopped)
        if addr is not None:
            self.debugger.set_registers(self.vcpu_id, rip=addr)
        self.waiting = True
        if stopped is not None:
            self.debugger.resume(step=step, vcpu_id=self.vcpu_id)
        return None

    def cont(self, payload):
        return self.resume(payload[:1] == b"s", hex_int(payload[1:]) if payload[1:] else None)

    def cont_signal(self, payload):
        """C sig[;addr] / S sig[;addr]: there are no signals to give a guest."""
        sig, _, addr = payload[1:].partition(b";")
        hex_int(sig, 0xFF)
        return self.resume(payload[:1] == b"S", hex_int(addr) if addr else None)

    def vcont(self, payload):
        if payload == b"vCont?":
            return b"vCont;c;C;s;S"
        step = None
        for action in payload[6:].split(b";"):
            verb, _, thread = action.partition(b":")
            if verb[:1] not in (b"c", b"C", b"s", b"S") or (thread and self.thread_of(thread) is None):
                raise PacketError("unknown vCont action")
            if step is None and (not thread or self.thread_of(thread) in (0, -1, self.thread)):
                step = verb[:1] in (b"s", b"S")
        return self.resume(bool(step))

    def detach(self, payload):
        self.send(b"OK")
        self.debugger.release()
        self.close()
        return None

    def kill(self, payload):
        domain = self.debugger.domain
        if self.debugger.alive:
            domain.crash(f"domain {domain.name} (d{domain.domid}) killed by the debugger")
            domain.machine.after_slice()
        self.close()
        return None

    # -- threads ----------------------------------------------------------------------

    @property
    def vcpu_id(self):
        return self.thread - 1

    def thread_of(self, text):
        """A thread id as gdb writes it: -1 (all), 0 (any) or vcpu_id + 1."""
        if text == b"-1":
            return -1
        tid = hex_int(text)
        if tid == 0 or (self.debugger.alive and tid <= len(self.debugger.domain.vcpus)):
            return tid
        return None

    def set_thread(self, payload):
        tid = self.thread_of(payload[2:])
        if payload[1:2] not in (b"g", b"c") or tid is None:
            return ESRCH
        if tid > 0:
            self.thread = tid
        return b"OK"

    def thread_alive(self, payload):
        tid = self.thread_of(payload[1:])
        return b"OK" if tid is not None and tid > 0 else ESRCH

    def thread_list(self, payload):
        count = len(self.debugger.domain.vcpus) if self.debugger.alive else 0
        return b"m" + b",".join(b"%x" % (i + 1) for i in range(count)) if count else b"l"

    def thread_info(self, payload):
        tid = self.thread_of(payload[len(b"qThreadExtraInfo,"):])
        if tid is None or tid <= 0:
            return ESRCH
        return f"vcpu {tid - 1} of domain {self.debugger.domain.name}".encode().hex().encode()

    # -- registers --------------------------------------------------------------------

    def read_registers(self, payload):
        regs = self.debugger.registers(self.vcpu_id)
        return b"".join(encode_register(i, regs) for i in range(len(REGISTERS)))

    def write_registers(self, payload):
        data, values, offset = hex_bytes(payload[1:]), {}, 0
        for index, (_, size, _) in enumerate(REGISTERS):
            if offset + size > len(data):
                break
            decoded = decode_register(index, data[offset:offset + size])
            offset += size
            if decoded:
                values[decoded[0]] = decoded[1]
        self.debugger.set_registers(self.vcpu_id, **values)
        return b"OK"

    def read_register(self, payload):
        index = hex_int(payload[1:])
        if index >= len(REGISTERS):
            return EINVAL
        return encode_register(index, self.debugger.registers(self.vcpu_id))

    def write_register(self, payload):
        index, value = split_fields(payload[1:], b"=", 2)
        index = hex_int(index)
        if index >= len(REGISTERS):
            return EINVAL
        decoded = decode_register(index, hex_bytes(value))
        if decoded is None:
            return EINVAL
        self.debugger.set_registers(self.vcpu_id, **dict([decoded]))
        return b"OK"

    # -- memory -----------------------------------------------------------------------

    def address_range(self, text):
        addr, length = split_fields(text, b",", 2)
        addr, length = hex_int(addr), hex_int(length)
        if addr + length > 1 << 64:
            raise DebugError("past the end of the address space")
        return addr, length

    def read_memory(self, payload):
        """As much of the range as is mapped from its start (a short reply
        is gdb's partial read); E14 when its first byte is not."""
        addr, length = self.address_range(payload[1:])
        length = min(length, MAX_MEMORY)
        out = bytearray()
        while len(out) < length:
            n = min(length - len(out), 4096 - ((addr + len(out)) & 4095))
            try:
                out += self.debugger.read_memory(addr + len(out), n, self.vcpu_id)
            except DebugError:
                if not out:
                    raise
                break
        return out.hex().encode()

    def write_memory(self, payload):
        where, data = split_fields(payload[1:], b":", 2)
        addr, length = self.address_range(where)
        data = hex_bytes(data) if payload[:1] == b"M" else unescape(data)
        if len(data) != length:
            raise PacketError("length and data differ")
        if data:
            self.debugger.write_memory(addr, data, self.vcpu_id)
        return b"OK"

    # -- breakpoints ------------------------------------------------------------------

    def breakpoint(self, payload):
        kind, addr, length = split_fields(payload[1:].split(b";")[0], b",", 3)
        kind, addr, length = hex_int(kind, 4), hex_int(addr), hex_int(length)
        if payload[:1] == b"Z":
            self.debugger.insert(kind, addr, length, self.vcpu_id)
        else:
            self.debugger.remove(kind, addr, length)
        return b"OK"

    # -- queries ----------------------------------------------------------------------

    def supported(self, payload):
        self.peer_features = set(payload.partition(b":")[2].split(b";"))
        return FEATURES

    def no_ack_mode(self, payload):
        self.no_ack = True
        return b"OK"

    def features(self, payload):
        """qXfer:features:read:ANNEX:offset,length"""
        annex, _, where = payload[len(b"qXfer:features:read:"):].partition(b":")
        if annex != b"target.xml":
            return EINVAL
        offset, length = split_fields(where, b",", 2)
        offset, length = hex_int(offset), min(hex_int(length), MAX_MEMORY)
        chunk = TARGET_XML[offset:offset + length]
        return (b"m" if offset + length < len(TARGET_XML) else b"l") + chunk

    def current_thread(self, payload):
        return b"QC%x" % self.thread

    def attached(self, payload):
        return b"1"        # gdb's quit detaches: the domain runs on

    def symbol(self, payload):
        return b"OK"


SINGLE = {
    b"?": Session.question, b"g": Session.read_registers, b"G": Session.write_registers,
    b"p": Session.read_register, b"P": Session.write_register, b"m": Session.read_memory,
    b"M": Session.write_memory, b"X": Session.write_memory, b"Z": Session.breakpoint,
    b"z": Session.breakpoint, b"c": Session.cont, b"s": Session.cont,
    b"C": Session.cont_signal, b"S": Session.cont_signal, b"D": Session.detach,
    b"k": Session.kill, b"H": Session.set_thread, b"T": Session.thread_alive,
}
NAMED = [
    (b"qSupported", Session.supported), (b"QStartNoAckMode", Session.no_ack_mode),
    (b"qXfer:features:read:", Session.features), (b"qfThreadInfo", Session.thread_list),
    (b"qsThreadInfo", lambda self, payload: b"l"), (b"qThreadExtraInfo,", Session.thread_info),
    (b"qC", Session.current_thread), (b"qAttached", Session.attached),
    (b"qSymbol", Session.symbol), (b"vCont", Session.vcont),
    (b"vMustReplyEmpty", Session.unknown),
]
