"""The GDB remote protocol target: a client's bytes, in chunks, to the
stub (toolstack/gdbserver.py, gdbstub.py, gdbpacket.py) serving a held
hello domain on a deterministic host, the guest running a few scheduler
rounds between chunks when the client let it go on.

The contract: whatever the bytes (garbled packets and checksums, escapes,
run-length marks, overlong packets, binary X writes, qSupported, vCont,
Ctrl-C, detach, kill), every reply the stub sends is a well-framed packet
no longer than the PacketSize it announces, or an ack; its buffers stay
bounded; no handler raises (the server's net, which turns a handler's
exception into E22, is taken away here so that a raise is a finding with
its traceback); a refused memory write changes nothing; and the debugger
leaves the hypervisor's rules whole (the whole-state checker,
hypervisor/audit.py, after every chunk).
"""
import functools

from pyxenon.hypervisor import audit
from pyxenon.hypervisor.domain import DEAD

from ..common import GUESTS, ParserFinding

MAX_ROUNDS = 4            # scheduler rounds after a chunk (each at most a slice)
GUEST = "hello"
settings = {"guests": GUESTS}     # the campaign's --guests (set_guests)


def set_guests(folder):
    settings["guests"] = folder


@functools.lru_cache(maxsize=None)
def hello_config(guests):
    """hello's DomainConfig and kernel, read once per process."""
    from pyxenon.toolstack.elfimage import load_kernel
    from pyxenon.toolstack.xlcfg import load_cfg

    config = load_cfg(str(guests / f"{GUEST}.cfg"), ['on_poweroff="destroy"'])
    return config, load_kernel(config.kernel, max_bytes=config.memory_mib << 20)


def addresses(guests=None):
    """Addresses worth naming in packets: the kernel's entry and segments,
    the start of day's elements (the page tables, and just below them: a
    write across into a table), Xen's range, non-canonical ones."""
    from pyxenon.toolstack import builder

    config, image = hello_config(guests or settings["guests"])
    lay = builder.plan(image, config.memory_mib * 256, 0)
    found = [image.entry]
    for seg in image.segments:
        found += [seg.vaddr, seg.vaddr + seg.memsz, seg.vaddr + seg.memsz - 1]
    found += [lay.pt_base, lay.pt_base - 0x800, lay.pt_base - 8, lay.start_info, lay.stack,
              lay.p2m, lay.xenstore, lay.virt_end - 4]
    return found + [0xFFFF800000000000, 0x0000800000000000, 0, (1 << 64) - 1]


class Client:
    """The stub's socket, without a socket: what the fuzzer sent, what the
    stub wrote back."""

    def __init__(self):
        self.inbox = []
        self.sent = bytearray()
        self.closed = False

    def recv(self, size):
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0)

    def send(self, data):
        self.sent += data
        return len(data)

    def close(self):
        self.closed = True


class Selector:
    """The server registers its sockets; nothing polls them here."""

    def register(self, *args):
        pass

    modify = unregister = close = register


def fuzzed_server_class():
    from pyxenon.hypervisor.debugger import DebugError
    from pyxenon.toolstack.gdbpacket import PacketError
    from pyxenon.toolstack.gdbserver import GdbServer

    class FuzzedServer(GdbServer):
        """The stub with its net taken away, and refused writes checked."""

        def answer(self, session, payload):
            before = self.written_range(session, payload)
            reply = session.packet(payload)
            if before is not None and reply != b"OK" and before[1] != self.snapshot(*before[0]):
                raise ParserFinding(f"gdb: refused {payload[:1]!r} write changed memory "
                                    f"(reply {reply!r})")
            return reply

        def written_range(self, session, payload):
            """(addr, length) and its bytes before an M or X packet."""
            if payload[:1] not in (b"M", b"X"):
                return None
            try:
                addr, length = session.address_range(payload[1:].split(b":", 1)[0])
            except (PacketError, DebugError):     # a malformed packet writes nothing
                return None
            where = (addr, min(length, 1 << 15))
            return where, self.snapshot(*where)

        def snapshot(self, addr, length):
            """What the debugger reads of [addr, addr+length), page by page."""
            out = []
            end = addr + length
            while addr < end:
                n = min(end - addr, 4096 - (addr & 4095))
                try:
                    out.append(self.debugger.read_memory(addr, n))
                except DebugError:                 # unmapped: nothing to compare
                    out.append(None)
                addr += n
            return out

    return FuzzedServer


class GdbTarget:
    """A deterministic host, hello held by a debugger, its stub serving a
    socket-less client."""

    def __init__(self, guests):
        from pyxenon.hypervisor.debugger import Debugger
        from pyxenon.toolstack.gdbpacket import MAX_PACKET, Reader
        from pyxenon.toolstack.host import Host

        config, image = hello_config(guests)
        self.host = Host(memory_mib=64, deterministic=True)
        audit.shadow_tlb(self.host.machine)
        self.domain = self.host.create_from_config(config, image=image)
        self.logged = []
        self.server = fuzzed_server_class()(Debugger(self.domain), 0, Selector(),
                                            self.logged.append)
        self.client = Client()
        self.server.attach(self.client)
        self.replies = Reader(limit=MAX_PACKET)    # gdb's side of the conversation

    def close(self):
        self.server.close()
        self.host.close()

    def chunk(self, data, rounds):
        """The client sends data (none: it waits; an empty read would be its
        hang-up, which D and k reach); the guest may run rounds scheduler rounds."""
        if data and self.server.client is not None:
            self.client.inbox.append(data)
            self.server.readable()
        self.run(min(rounds, MAX_ROUNDS))
        self.check()

    def run(self, rounds):
        from ..world import run_rounds

        if self.domain.state != DEAD and not self.domain.debug_paused:
            run_rounds(self.host.machine, rounds)
            self.host.machine.after_slice()

    def check(self):
        """The replies so far (read as gdb reads them), the stub's buffers,
        the hypervisor's state."""
        from pyxenon.toolstack.gdbpacket import MAX_PACKET, unescape

        server = self.server
        if server.reader.body is not None and len(server.reader.body) > 2 * server.reader.limit:
            raise ParserFinding(f"gdb: packet buffer grew to {len(server.reader.body)} bytes")
        for event in self.replies.feed(bytes(self.client.sent)):
            if event.kind == "bad":
                raise ParserFinding(f"gdb: a reply the client cannot read ({event.payload.decode()})")
            if event.kind == "packet" and len(unescape(event.payload)) > MAX_PACKET:
                raise ParserFinding(f"gdb: a reply of {len(event.payload)} bytes, past PacketSize")
        del self.client.sent[:]
        problems = audit.findings(self.host.machine)
        if problems:
            raise ParserFinding(f"gdb: the debugger broke the hypervisor's rules: {problems[0]}")
        report = self.domain.crash_report
        if report and "hypervisor error" in report:
            raise ParserFinding(f"gdb: hypervisor error: {report.splitlines()[-1]}")


def feed_gdb(given, folder):
    """given: {"chunks": [[hex bytes, rounds], ...]}."""
    target = GdbTarget(settings["guests"])
    try:
        for data, rounds in given["chunks"]:
            target.chunk(bytes.fromhex(data), rounds)
        return "served" if target.server.client is not None else "hung up"
    finally:
        target.close()
