"""The GDB stub's socket: 127.0.0.1:PORT, one client at a time, never
blocking the loop that polls it (`pyxenon run --gdb`, or the daemon's
selector for a domain whose cfg sets ``gdb = PORT``).

A client that vanishes, stops reading (its replies past MAX_OUTPUT) or
sends garbage costs only its connection: the domain is released (its
breakpoints go, it runs on) and the next client may attach, which stops
it again.  Packets the client garbles get ``-`` and it resends them; a
``-`` from the client resends our last reply.
"""
import errno
import selectors
import socket
import sys
import time

from pyxenon.errors import UserInputError
from pyxenon.hypervisor.debugger import Debugger
from pyxenon.hypervisor.domain import RUNNING

from .gdbpacket import Reader, frame
from .gdbstub import Session

MAX_OUTPUT = 1 << 20       # reply bytes queued for a client that does not read
RECV = 64 * 1024
CLOSE_FLUSH_S = 1.0        # how long a closing server waits for its last reply to leave
RUN_SLICE = 0.05           # seconds of guest time between looks at the sockets
IDLE_POLL = 0.2            # how long to wait on the sockets when nothing can run


class GdbServer:
    def __init__(self, debugger, port, selector=None, log=None):
        """port 0 takes any free port (self.port says which)."""
        self.debugger = debugger
        self.log = log or (lambda text: print(f"pyxenon: {text}", file=sys.stderr))
        self.own_selector = selector is None
        self.selector = selector or selectors.DefaultSelector()
        self.listener = listen(port)
        self.port = self.listener.getsockname()[1]
        self.selector.register(self.listener, selectors.EVENT_READ, self)
        self.client = self.session = None
        self.reader = Reader()
        self.outbuf = bytearray()
        self.last = b""            # the last reply framed, for a client's '-'
        self.closing = False

    def owns(self, key):
        return key.data is self

    def poll(self, timeout):
        """Wait up to timeout seconds on the sockets (own selector only)."""
        for key, mask in self.selector.select(timeout):
            if self.owns(key):
                self.ready(key, mask)

    def ready(self, key, mask):
        if key.fileobj is self.listener:
            self.accept()
        elif key.fileobj is self.client:
            if mask & selectors.EVENT_READ:
                self.readable()
            if self.client is not None and mask & selectors.EVENT_WRITE:
                self.flush()

    # -- connections ----------------------------------------------------------------

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        if self.client is not None or not self.debugger.alive:
            sock.close()              # one debugger at a time
            return
        sock.setblocking(False)
        # an ack and its reply leave as two writes: no Nagle wait between them
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.attach(sock)

    def attach(self, sock):
        """Serve a connected client (accept's; the fuzzer's socket-less client too)."""
        self.client, self.reader, self.outbuf, self.last = sock, Reader(), bytearray(), b""
        self.session = Session(self.debugger, self.reply, self.hang_up)
        self.debugger.interrupt()     # a new client finds the domain stopped
        self.selector.register(sock, selectors.EVENT_READ, self)
        self.log(f"gdb attached to domain {self.debugger.domain.name}")

    def hang_up(self):
        """End the connection once its queued replies are out."""
        self.closing = True
        self.flush()

    def drop(self):
        if self.client is None:
            return
        self.selector.unregister(self.client)
        self.client.close()
        self.client, self.closing = None, False
        self.session.end()
        self.session = None
        self.debugger.release()
        self.log(f"gdb detached from domain {self.debugger.domain.name}")

    # -- bytes in -------------------------------------------------------------------

    def readable(self):
        try:
            data = self.client.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self.drop()
        for event in self.reader.feed(data):
            self.handle(event)
            if self.client is None:
                return

    def handle(self, event):
        session = self.session
        if event.kind == "packet":
            if not session.no_ack:
                self.send(b"+")
            reply = self.answer(session, event.payload)
            if reply is not None:
                self.reply(reply)
        elif event.kind == "bad":
            self.send(b"-")
        elif event.kind == "nak" and self.last:
            self.send(self.last)
        elif event.kind == "interrupt":
            session.interrupt()

    def answer(self, session, payload):
        """The session's reply; a bug in a handler costs the client an
        error reply, never the host (the daemon's rule for its requests)."""
        try:
            return session.packet(payload)
        except Exception as e:  # noqa: BLE001 - any failure is this packet's
            self.log(f"gdb stub: {payload[:40]!r} failed: {e!r}")
            return b"E22"

    # -- bytes out ------------------------------------------------------------------

    def reply(self, payload):
        if self.client is None:
            return
        self.last = frame(payload)
        self.send(self.last)

    def send(self, data):
        if len(self.outbuf) + len(data) > MAX_OUTPUT:
            self.log("gdb client does not read its replies: dropped")
            return self.drop()
        self.outbuf += data
        self.flush()

    def flush(self):
        if self.client is None:
            return
        try:
            sent = self.client.send(self.outbuf) if self.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return self.drop()
        del self.outbuf[:sent]
        if self.closing and not self.outbuf:
            return self.drop()
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0)
        self.selector.modify(self.client, events, self)

    def close(self):
        """Stop serving: the last replies get a moment to leave."""
        if self.client is not None and self.outbuf:
            try:
                self.client.settimeout(CLOSE_FLUSH_S)
                self.client.sendall(self.outbuf)
            except OSError:
                pass
            self.outbuf.clear()
        self.drop()
        self.selector.unregister(self.listener)
        self.listener.close()
        if self.own_selector:
            self.selector.close()


def listen(port):
    """The listening socket on 127.0.0.1 only: a debugger owns the guest."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        why = "in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise UserInputError(f"127.0.0.1:{port}", f"cannot serve gdb there: {why}") from None
    sock.listen(1)
    sock.setblocking(False)
    return sock


def serve(domain, port, selector=None, log=None):
    """Hold domain before its next instruction and serve gdb for it."""
    debugger = Debugger(domain)
    try:
        return GdbServer(debugger, port, selector, log)
    except Exception:
        debugger.detach()
        raise


def run_debugged(host, servers, selector, timeout=None):
    """Host.run with the stubs served between slices, so a held domain waits
    for its debugger while the others run; returns as Host.run does, but
    not "blocked" while a debugger holds a domain that may go on."""
    end = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            outcome = debug_round(host, selector)
            if end is not None and time.monotonic() >= end:
                return "timeout"
            if outcome == "idle" or (outcome == "blocked" and not holding(servers)):
                return outcome
    finally:
        for server in servers:
            server.close()


def debug_round(host, selector):
    domains = host.machine.domains.values()
    runnable = any(d.state == RUNNING and not d.debug_paused for d in domains)
    for key, mask in selector.select(0 if runnable else IDLE_POLL):
        key.data.ready(key, mask)
    if any(d.state == RUNNING and not d.debug_paused for d in domains):
        return host.run(timeout=RUN_SLICE)
    return "blocked" if host.machine.domains else "idle"


def holding(servers):
    return any(s.debugger.alive and s.debugger.stopped is not None for s in servers)


class Stubs:
    """The daemon's stubs: one per domain whose cfg sets ``gdb``, on the
    daemon's selector, each closed when its domain goes."""

    def __init__(self, selector, log):
        self.selector = selector
        self.log = log
        self.servers = {}            # domid -> GdbServer

    def start(self, domain, port):
        server = serve(domain, port, self.selector, self.log)
        self.servers[domain.domid] = server
        self.log(f"d{domain.domid} ({domain.name}) stopped before its first instruction, "
                 f"gdb stub on 127.0.0.1:{server.port}")
        return server.port

    def owns(self, key):
        return isinstance(key.data, GdbServer) and key.data in self.servers.values()

    def ready(self, key, mask):
        key.data.ready(key, mask)

    def reap(self, live):
        """Close the stubs of domains no longer in live (domid -> Domain)."""
        for domid in [d for d in self.servers if d not in live]:
            self.servers.pop(domid).close()

    def close(self):
        self.reap({})
