"""The host daemon: one Host whose domains outlive the command that made them.

xl's commands talk to it over a Unix socket (see protocol.py).  It is a
single-threaded event loop, because the engine may only be touched from one
thread: wait on the sockets, serve every request that arrived, then give the
scheduler a bounded slice (Host.run(timeout=RUN_SLICE)) and go round again.
Nothing a client or a guest does may end the loop: a malformed request gets
an error reply, a vanished client is dropped, a domain that breaks the engine
is crashed on its own.

The policy the host enforces is fixed when the daemon starts (`daemon start
--policy FILE`, or $PYXENON_POLICY); every decision the reference monitor
makes goes, as a JSON line, to audit.log in the runtime folder.  XenStore
requests act as domain 0 through the store's host API.
"""
import collections
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from pyxenon.errors import HostLimitError, UserInputError
from pyxenon.hypervisor.domain import DEAD, PAUSED, RUNNING, SHUTDOWN

from . import protocol
from pyxenon.backends.console import ConsoleLogs
from .host import Host
from .policy import JsonLinesAudit
from .protocol import MAX_LINE, ToolstackError, b64
from pyxenon.backends.xenstore import XenStoreError
from .xenstored_socket import XenstoredSocket

RUN_SLICE = 0.05          # seconds of guest time between looks at the sockets
IDLE_WAIT = 0.5           # select timeout when no domain can run
MAX_CLIENTS = 256         # past this, the longest idle client makes room for a new one
MAX_OUTPUT = 1 << 20      # bytes queued for a client that does not read: past it, dropped
CLIENT_TIMEOUT = 10.0     # seconds a client that streams nothing may send nothing
TIMEOUT_ENV = "PYXENON_CLIENT_TIMEOUT"
CONSOLE_BACKLOG = 64 * 1024
MAX_INPUT_QUEUE = 64 * 1024
DMESG_LINES = 10000
REPLY_BUDGET = MAX_LINE - 4096   # bytes of list items in one reply (the rest: framing)
BACKLOG_CHUNK = 32 * 1024        # console bytes per message (base64 grows them by 4/3)
MAX_AUDIT_BYTES = 16 << 20       # audit.log is rotated to audit.log.1 past this size
PAGES_PER_MIB = 256
REASON_LETTERS = {"poweroff": "-", "reboot": "r", "suspend": "s", "crash": "c", "watchdog": "w"}


class RequestError(Exception):
    """A request the daemon refuses; its text is the error reply."""


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.outbuf = bytearray()
        self.console = None      # the Domain whose console this client streams
        self.watch = None        # the XenStore watch this client streams
        self.closing = False     # close once outbuf is sent
        self.overflow = False    # it read too little of what we sent: to be dropped
        self.last_heard = time.monotonic()

    def queue(self, message):
        """Never blocks, never grows past MAX_OUTPUT: a client that does not
        read is dropped (after the slice; a listener must not drop)."""
        if self.overflow:
            return
        self.outbuf += protocol.encode(message)
        if len(self.outbuf) > MAX_OUTPUT:
            self.overflow = True
            self.outbuf.clear()

    def idle_since(self):
        """When it was last heard from, if it holds its slot for nothing: it
        streams nothing (or its stream has ended); else None."""
        return self.last_heard if self.closing or not self.streaming() else None

    def streaming(self):
        return self.console is not None or self.watch is not None


class Dmesg:
    """The hypervisor's console log, as `xl dmesg` shows it."""

    def __init__(self):
        self.lines = collections.deque(maxlen=DMESG_LINES)
        self.t0 = time.monotonic()
        self.partial = {}  # domid -> unfinished console_io line

    def log(self, text):
        stamp = time.monotonic() - self.t0
        for line in str(text).splitlines() or [""]:
            self.lines.append(f"(XEN) [{stamp:12.6f}] {line}")

    def guest(self, domain, data):
        """console_io output: Xen puts it in its own log, prefixed (dN)."""
        text = self.partial.pop(domain.domid, "") + data.decode("utf-8", errors="replace")
        *lines, rest = text.split("\n")
        for line in lines:
            self.lines.append(f"(d{domain.domid}) {line}")
        if rest:
            self.partial[domain.domid] = rest[-1024:]


class AuditLog:
    """The MSM's audit sink: one JSON object per line in path (mode 0600),
    flushed each time; past MAX_AUDIT_BYTES the file becomes path.1 (the one
    before is dropped), so a guest retrying a refused operation cannot fill
    the host's disk."""

    def __init__(self, path, limit=MAX_AUDIT_BYTES):
        self.path = path
        self.limit = limit
        self.sink = None
        self.open()

    def open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.sink = JsonLinesAudit(open(fd, "a", encoding="utf-8"))

    def __call__(self, record):
        self.sink(record)
        if os.fstat(self.sink.file.fileno()).st_size >= self.limit:
            self.sink.file.close()
            os.replace(self.path, self.path + ".1")
            self.open()

    def close(self):
        self.sink.file.close()


# -- requests ---------------------------------------------------------------------

# op -> {argument: type}; any other argument, or one of the wrong type, is refused.
SCHEMAS = {
    "ping": {}, "info": {}, "stop": {},
    "list": {"domain": str},
    "vcpu_list": {"domain": str},
    "create": {"cfg": str, "overrides": list, "paused": bool, "cwd": str, "console": bool},
    "pause": {"domain": str}, "unpause": {"domain": str},
    "destroy": {"domain": str}, "shutdown": {"domain": str}, "reboot": {"domain": str},
    "dmesg": {"clear": bool},
    "console": {"domain": str},
    "input": {"data": str},
    # XenStore, as domain 0; values are base64
    "xenstore_read": {"path": str},
    "xenstore_write": {"path": str, "value": str},
    "xenstore_ls": {"path": str, "values": bool, "offset": int},
    "xenstore_rm": {"path": str},
    "xenstore_watch": {"path": str},
}
# op -> the arguments it cannot do without
REQUIRED = {op: ("domain",) for op in ("pause", "unpause", "destroy", "shutdown", "reboot",
                                       "console")}
REQUIRED.update({op: ("path",) for op in ("xenstore_read", "xenstore_ls", "xenstore_rm",
                                          "xenstore_watch")})
REQUIRED["xenstore_write"] = ("path", "value")


def check_request(message):
    """The op and its arguments, or RequestError naming what is wrong."""
    op = message.get("op")
    if not isinstance(op, str) or op not in SCHEMAS:
        raise RequestError(f"unknown operation {str(op)[:40]!r}")
    args = {k: v for k, v in message.items() if k != "op"}
    check_args(op, args, SCHEMAS[op])
    for name in REQUIRED.get(op, ()):
        if name not in args:
            raise RequestError(f"{op}: a{'n' if name[0] in 'aeiou' else ''} {name} is required")
    return op, args


def check_args(op, args, schema):
    for name, value in args.items():
        if name not in schema:
            raise RequestError(f"{op}: unknown argument {name[:40]!r}")
        if not isinstance(value, schema[name]) or (schema[name] is int and type(value) is bool):
            raise RequestError(f"{op}: {name} must be {schema[name].__name__}")
    if not all(isinstance(o, str) for o in args.get("overrides", [])):
        raise RequestError(f"{op}: overrides must be strings")


class Daemon:
    def __init__(self, folder, host=None, policy=None, console_log=None):
        """policy: a compiled Policy (or a path), or None; used when the
        daemon makes its own Host, which then audits to audit.log.
        console_log: a folder for xenconsoled's guest-NAME.log files, or None."""
        self.folder = folder
        self.path = protocol.socket_path(folder)
        self.audit = None
        if host is None:
            self.audit = AuditLog(os.path.join(folder, protocol.AUDIT_NAME))
            host = Host(policy=policy, audit=self.audit)
        self.host = host
        self.machine = self.host.machine
        self.dmesg = Dmesg()
        self.started = {}                        # domid -> monotonic creation time
        self.known = {}                          # domid -> Domain, as last seen
        self.cpu_ns = collections.Counter()      # (domid, vcpu_id) -> ns on the engine
        self.pending_input = {}                  # domid -> bytes not yet in in[]
        self.clients = {}
        self.client_timeout = client_timeout()
        self.selector = selectors.DefaultSelector()
        self.listener = None
        self.xenstored = None                    # xenstored's socket, once listening
        self.busy = False
        self.stopping = False
        self.t0 = time.monotonic()
        self.machine.console_listeners.append(self.on_console)
        self.machine.shutdown_listeners.append(self.on_shutdown)
        self.console_logs = ConsoleLogs(console_log).listen(self.machine) if console_log else None
        self._time_slices()

    def _time_slices(self):
        """Wrap the scheduler's run_slice (on this instance only): per-vcpu
        time for `xl list`/`vcpu-list`, and a fault in one domain's slice
        crashes that domain instead of the daemon."""
        scheduler = self.machine.scheduler
        inner = scheduler.run_slice

        def run_slice(vcpu):
            start = time.thread_time_ns()
            try:
                inner(vcpu)
            except Exception as e:  # noqa: BLE001 - any failure is the domain's
                self.contain(vcpu.domain, e)
            finally:
                self.cpu_ns[(vcpu.domain.domid, vcpu.vcpu_id)] += time.thread_time_ns() - start
        scheduler.run_slice = run_slice

    def contain(self, domain, error):
        self.dmesg.log(f"d{domain.domid} ({domain.name}): engine error: {error!r}")
        traceback.print_exc()
        domain.crash(f"domain {domain.name} (d{domain.domid}) crashed: "
                     f"internal error while it ran: {error!r}")
        self.machine.after_slice()

    # -- the socket ------------------------------------------------------------

    def listen(self):
        sock = protocol.listening_socket(self.path)
        self.selector.register(sock, selectors.EVENT_READ)
        self.listener = sock
        self.xenstored = XenstoredSocket(self.host.xenstore, self.folder, self.selector,
                                         self.client_timeout)

    def accept(self):
        protocol.accept_waiting(self.listener, MAX_CLIENTS, self.admit)

    def admit(self, sock):
        if not protocol.admissible(sock, self.make_room):
            return
        client = Client(sock)
        self.clients[sock] = client
        self.selector.register(sock, selectors.EVENT_READ, client)

    def make_room(self):
        """A slot for a new client: idle clients cannot lock the toolstack
        out, so when all are taken the longest idle one goes.  False only
        when every client streams."""
        if len(self.clients) < MAX_CLIENTS:
            return True
        idle = [c for c in self.clients.values() if c.idle_since() is not None]
        if not idle:
            return False
        self.drop(min(idle, key=Client.idle_since))
        return True

    def drop_idle(self):
        """Clients silent past the timeout with nothing streaming (a request
        half sent, or none at all) are dropped."""
        limit = time.monotonic() - self.client_timeout
        for client in list(self.clients.values()):
            since = client.idle_since()
            if since is not None and since < limit:
                self.drop(client)

    def drop(self, client):
        self.clients.pop(client.sock, None)
        self.unwatch(client)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def readable(self, client):
        try:
            data = client.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(client)  # gone, perhaps killed mid-console: nothing else to undo
            return
        client.last_heard = time.monotonic()
        if client.closing:
            return  # read and discarded, so the close is not a reset that loses our reply
        client.inbuf += data
        while b"\n" in client.inbuf and not client.closing:
            line, client.inbuf = client.inbuf.split(b"\n", 1)
            self.serve_line(client, line)
        if len(client.inbuf) >= MAX_LINE and not client.closing:
            client.queue({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
            client.inbuf, client.closing = b"", True

    def serve_line(self, client, line):
        try:
            op, args = check_request(protocol.decode(line))
            reply = getattr(self, "op_" + op)(client, **args)
        except (ValueError, RequestError, UserInputError) as e:
            reply = {"ok": False, "error": str(e)}
        except MemoryError as e:
            reply = {"ok": False, "error": f"out of memory: {e}"}
        except Exception as e:  # noqa: BLE001 - a bug must not end the daemon
            traceback.print_exc()
            reply = {"ok": False, "error": f"internal error: {e!r}"}
        if reply is not None:
            self.reply(client, reply)

    @staticmethod
    def reply(client, reply):
        try:
            client.queue(reply)
        except ToolstackError as e:  # a reply over MAX_LINE: say so, never die
            client.queue({"ok": False, "error": f"the reply is too long to send: {e}"})

    def flush(self, client):
        if client.overflow:
            self.drop(client)  # a console nobody reads must not eat the host
            return
        sent = protocol.send_some(client.sock, client.outbuf)
        if sent is None:
            self.drop(client)
            return
        del client.outbuf[:sent]
        if client.closing and not client.outbuf:
            self.half_close(client)
        else:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
            self.selector.modify(client.sock, events, client)

    def half_close(self, client):
        """All said: end our direction; the client's EOF then drops it."""
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(client)
            return
        self.selector.modify(client.sock, selectors.EVENT_READ, client)

    # -- the loop ------------------------------------------------------------

    def serve_forever(self):
        self.dmesg.log(f"pyxenon host daemon started (pid {os.getpid()}), "
                       f"{self.machine.nr_frames // PAGES_PER_MIB} MiB machine memory")
        self.dmesg.log(f"policy: {policy_text(self.host.policy)}")
        if self.console_logs is not None:
            self.dmesg.log(f"console logs: {self.console_logs.folder}/guest-NAME.log")
        while not self.stopping:
            self.poll(0 if self.busy else IDLE_WAIT)
            self.run_domains()
            self.after_run()
        self.stop_domains()
        self.close()

    def poll(self, timeout):
        for key, mask in self.selector.select(timeout):
            if key.fileobj is self.listener:
                self.accept()
            elif self.xenstored is not None and self.xenstored.owns(key):
                self.xenstored.ready(key, mask)
                self.busy = True  # a guest may be watching
            elif key.fileobj in self.clients:
                self.readable(key.data)

    def run_domains(self):
        if not any(d.state == RUNNING for d in self.machine.domains.values()):
            self.busy = False
            return
        try:
            outcome = self.host.run(timeout=RUN_SLICE)
        except Exception as e:  # noqa: BLE001 - logged; the domains' slices are guarded
            self.dmesg.log(f"scheduler error: {e!r}")
            traceback.print_exc()
            outcome = "blocked"
        self.busy = outcome == "timeout"

    def after_run(self):
        self.notice_domains()
        self.feed_consoles()
        self.end_consoles()
        for client in list(self.clients.values()):
            if client.outbuf or client.overflow:
                self.flush(client)
        self.drop_idle()
        if self.xenstored is not None:
            self.xenstored.flush()

    def notice_domains(self):
        """Log domains that appeared (restarts) or went away, however they did."""
        live = dict(self.machine.domains)
        for domid, domain in self.known.items():
            if domid not in live:
                self.dmesg.log(f"d{domid} ({domain.name}) destroyed")
                self.started.pop(domid, None)
                self.pending_input.pop(domid, None)
        # Host keeps every domain it made; a long-lived daemon keeps the live ones.
        self.host.domains[:] = [d for d in self.host.domains if d.state != DEAD]
        for domid, domain in live.items():
            if domid not in self.known:
                self.dmesg.log(f"d{domid} ({domain.name}) created, "
                               f"{domain.nr_pages // PAGES_PER_MIB} MiB")
                self.started.setdefault(domid, time.monotonic())
        self.known = live

    def feed_consoles(self):
        for domid, data in list(self.pending_input.items()):
            domain = self.machine.domains.get(domid)
            if domain is None or domain.state in (SHUTDOWN, DEAD):
                del self.pending_input[domid]
                continue
            n = domain.console.feed(data)
            if n:
                self.busy = True  # the guest has input to read
            self.pending_input[domid] = data[n:]
            if not self.pending_input[domid]:
                del self.pending_input[domid]

    def end_consoles(self):
        for client in list(self.clients.values()):
            domain = client.console
            if domain is not None and domain.state in (SHUTDOWN, DEAD) and not client.closing:
                client.queue({"end": domain.shutdown_reason or "destroyed"})
                client.closing = True

    # -- notifications from the machine --------------------------------------------

    def on_console(self, domain, data, source):
        """Runs inside a slice: only queue, never fail.  As on Xen, a
        domain's console shows only its ring (xenconsoled); its console_io
        writes go to the hypervisor's log alone (guest_console_write)."""
        try:
            if source != "ring":
                self.dmesg.guest(domain, data)
                return
            for client in self.clients.values():
                if client.console is domain and not client.closing:
                    queue_output(client, data)
        except Exception:  # noqa: BLE001 - a listener must not break the slice
            traceback.print_exc()

    def on_watch(self, client, path):
        """A XenStore watch fired (perhaps inside a slice): only queue, never fail."""
        try:
            if client.sock in self.clients and not client.closing:
                client.queue({"watch": str(path)})
        except Exception:  # noqa: BLE001 - a listener must not break the slice
            traceback.print_exc()

    def on_shutdown(self, domain):
        self.dmesg.log(f"d{domain.domid} ({domain.name}) shut down: {domain.shutdown_reason}")
        if domain.crash_report:
            self.dmesg.log(domain.crash_report)

    # -- finding domains -------------------------------------------------------

    def find(self, which):
        """A live domain by id or name; 0 and "Domain-0" are the host itself."""
        if which in ("0", "Domain-0"):
            return None
        if which.isdigit():
            domain = self.machine.domains.get(int(which))
        else:
            domain = next((d for d in self.machine.domains.values() if d.name == which), None)
        if domain is None:
            raise RequestError(f"{which[:64]} is an invalid domain identifier")
        return domain

    def guest(self, which, op):
        """Like find, for operations Domain-0 does not allow."""
        domain = self.find(which)
        if domain is None:
            raise RequestError(f"{op}: not allowed on Domain-0 (the host itself)")
        return domain

    # -- operations ------------------------------------------------------------

    def op_ping(self, client):
        policy = self.host.policy
        logs = self.console_logs.folder if self.console_logs is not None else None
        return {"ok": True, "pid": os.getpid(), "policy": policy.source if policy else None,
                "console_log": logs, "xenstored": self.xenstored.path if self.xenstored else None}

    def op_create(self, client, cfg, overrides=(), paused=False, cwd="/", console=False):
        """console: attach this connection before the domain first runs,
        so not a byte of its output is missed (`create -c`)."""
        config = load_config(cfg, overrides, cwd)
        if config.name == "Domain-0" or any(d.name == config.name
                                            for d in self.machine.domains.values()):
            raise RequestError(f"domain with name {config.name!r} already exists")
        domain = self.host.create_from_config(config, paused=paused)
        self.started[domain.domid] = time.monotonic()
        self.notice_domains()
        self.dmesg.log(f"d{domain.domid} ({domain.name}) from {cfg}"
                       + (", paused" if paused else ""))
        self.busy = True
        if console:
            return self.attach(client, domain)
        return {"ok": True, "domid": domain.domid, "name": domain.name}

    def op_list(self, client, domain=None):
        if domain is not None:
            found = self.find(domain)
            rows = [self.host_row() if found is None else self.domain_row(found)]
        else:
            rows = [self.host_row()] + [self.domain_row(d) for _, d in
                                        sorted(self.machine.domains.items())]
        return {"ok": True, "domains": rows}

    def op_vcpu_list(self, client, domain=None):
        rows = self.op_list(client, domain)["domains"]
        return {"ok": True, "vcpus": [v for row in rows for v in row["vcpu_info"]]}

    def op_pause(self, client, domain):
        self.guest(domain, "pause").pause()
        return {"ok": True}

    def op_unpause(self, client, domain):
        self.guest(domain, "unpause").unpause()
        self.busy = True
        return {"ok": True}

    def op_destroy(self, client, domain):
        target = self.guest(domain, "destroy")
        self.machine.destroy_domain(target)
        self.after_run()
        return {"ok": True}

    def op_shutdown(self, client, domain):
        return self.shut(self.guest(domain, "shutdown"), 0)

    def op_reboot(self, client, domain):
        return self.shut(self.guest(domain, "reboot"), 1)

    def shut(self, domain, code):
        """As if the guest had called SCHEDOP_shutdown (a PV guest with no
        xenstore cannot be asked politely), then the cfg's on_* action."""
        domain.shutdown(code)
        self.machine.after_slice()
        self.after_run()
        return {"ok": True}

    def op_info(self, client):
        return {"ok": True, "info": host_info(self.machine, self.host.policy)}

    def op_dmesg(self, client, clear=False):
        """The newest lines that fit in one reply (a note says how many did not)."""
        lines = list(self.dmesg.lines)
        if clear:
            self.dmesg.lines.clear()
        shown = fit(reversed(lines))[::-1]
        if len(shown) < len(lines):
            shown.insert(0, f"(XEN) [{len(lines) - len(shown)} older lines not shown]")
        return {"ok": True, "lines": shown}

    def op_console(self, client, domain):
        return self.attach(client, self.guest(domain, "console"))

    def attach(self, client, target):
        """Stream target's console to client: the ok reply, the backlog, then
        output as it comes (on_console) until the domain stops (end_consoles)."""
        if client.streaming():
            raise RequestError("console: this connection already streams")
        client.queue({"ok": True, "domid": target.domid, "name": target.name})
        client.console = target
        queue_output(client, bytes(target.console_log[-CONSOLE_BACKLOG:]))
        return None

    def op_input(self, client, data):
        if client.console is None:
            raise RequestError("input: attach a console first")
        try:
            raw = protocol.unb64(data)
        except ValueError:
            raise RequestError("input: data is not base64") from None
        domid = client.console.domid
        queued = self.pending_input.get(domid, b"") + raw
        self.pending_input[domid] = queued[:MAX_INPUT_QUEUE]
        return None  # streaming: no reply, as a terminal gives none

    def op_stop(self, client):
        self.stopping = True
        return {"ok": True}

    # -- XenStore, as domain 0 ---------------------------------------------------

    def store(self, op, path, *args):
        """host.xenstore.<op>(path, *args); a XenStoreError as a one-line refusal."""
        try:
            return getattr(self.host.xenstore, op)(path, *args)
        except XenStoreError as e:
            raise RequestError(xenstore_error(op, path, e)) from None

    def op_xenstore_read(self, client, path):
        return {"ok": True, "value": b64(self.store("read", path))}

    def op_xenstore_write(self, client, path, value):
        try:
            raw = protocol.unb64(value)
        except ValueError:
            raise RequestError("xenstore_write: value is not base64") from None
        self.store("write", path, raw)
        self.busy = True  # a guest may be watching
        return {"ok": True}

    def op_xenstore_rm(self, client, path):
        self.store("rm", path)
        self.busy = True
        return {"ok": True}

    def op_xenstore_ls(self, client, path, values=False, offset=0):
        """path's children from offset on, as many as fit in one reply: entries
        [[name, base64 value or null]], and next, the offset to ask for next
        (null when this is the last of them)."""
        if offset < 0:
            raise RequestError("xenstore_ls: offset must not be negative")
        names = self.store("ls", path)[offset:]
        entries = fit([name, b64(self.store("read", child(path, name))) if values else None]
                      for name in names)
        more = len(entries) < len(names)
        return {"ok": True, "entries": entries, "next": offset + len(entries) if more else None}

    def op_xenstore_watch(self, client, path):
        """Stream path's watch events to this connection: the ok reply, the
        event every watch fires when set, then each change until the daemon
        stops (or the client goes)."""
        if client.streaming():
            raise RequestError("xenstore_watch: this connection already streams")
        early = []  # the watch fires once while it is being set: after the reply

        def fired(changed):
            if client.watch is None:
                early.append(changed)
            else:
                self.on_watch(client, changed)
        client.watch = self.store("watch", path, fired)
        client.queue({"ok": True})
        for changed in early:
            self.on_watch(client, changed)
        return None

    def unwatch(self, client):
        if client.watch is not None:
            try:
                self.host.xenstore.unwatch(client.watch)
            except XenStoreError:
                pass
            client.watch = None

    # -- rows for list ---------------------------------------------------------

    def host_row(self):
        """Domain-0: the host process itself, the way xl shows dom0."""
        import resource

        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        cpu = time.process_time()
        return {"domid": 0, "name": "Domain-0", "mem_mib": rss_mib, "maxmem_mib": rss_mib,
                "vcpus": 1, "state": "r-----", "cpu_time": cpu,
                "uptime": time.monotonic() - self.t0, "shutdown_code": None,
                "uuid": "00000000-0000-0000-0000-000000000000", "ssid_label": None,
                "config": {"c_info": {"type": "pv", "name": "Domain-0"}},
                "vcpu_info": [{"name": "Domain-0", "domid": 0, "vcpu": 0, "state": "r--",
                               "cpu_time": cpu}]}

    def domain_row(self, domain):
        vcpus = [self.vcpu_row(domain, v) for v in domain.vcpus]
        return {"domid": domain.domid, "name": domain.name,
                "mem_mib": domain.nr_pages // PAGES_PER_MIB,
                "maxmem_mib": getattr(domain.config, "maxmem_mib", None),
                "vcpus": len(domain.vcpus), "state": state_letters(domain),
                "cpu_time": sum(v["cpu_time"] for v in vcpus),
                "uptime": time.monotonic() - self.started.get(domain.domid, self.t0),
                "shutdown_code": domain.shutdown_code, "uuid": uuid_text(domain.handle),
                "ssid_label": domain.label, "config": config_dict(domain),
                "vcpu_info": vcpus}

    def vcpu_row(self, domain, vcpu):
        running = domain.state == RUNNING and vcpu.runnable
        blocked = domain.state == RUNNING and not vcpu.runnable
        state = ("r" if running else "-") + ("b" if blocked else "-") + \
                ("p" if domain.state == PAUSED else "-")
        return {"name": domain.name, "domid": domain.domid, "vcpu": vcpu.vcpu_id,
                "state": state, "cpu_time": self.cpu_ns[(domain.domid, vcpu.vcpu_id)] / 1e9}

    # -- stopping ------------------------------------------------------------

    def stop_domains(self):
        """`daemon stop`: power every domain off, then destroy what remains."""
        for domain in list(self.machine.domains.values()):
            domain.shutdown(0)
        self.machine.after_slice()
        for domain in list(self.machine.domains.values()):
            self.machine.destroy_domain(domain)
        self.after_run()

    def close(self):
        for client in list(self.clients.values()):
            if client.streaming() and not client.closing:
                client.queue({"end": "daemon stopped"})
            try:
                client.sock.setblocking(True)
                client.sock.settimeout(1.0)
                client.sock.sendall(client.outbuf)
            except OSError:
                pass
            self.drop(client)
        if self.xenstored is not None:
            self.xenstored.close()
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.host.close()
        if self.audit is not None:
            self.audit.close()
        if self.console_logs is not None:
            self.console_logs.close()


# -- helpers ----------------------------------------------------------------------

def queue_output(client, data):
    """Console bytes as {"out": ...} messages, each within MAX_LINE."""
    for start in range(0, len(data), BACKLOG_CHUNK):
        client.queue({"out": b64(data[start:start + BACKLOG_CHUNK])})


def load_config(cfg, overrides, cwd):
    """The cfg checked by xlcfg, with relative override paths taken from the
    client's folder (xlcfg resolves them against the current folder)."""
    from .xlcfg import load_cfg

    if not os.path.isabs(cfg) or not os.path.isabs(cwd):
        raise RequestError("create: cfg and cwd must be absolute paths")
    here = os.getcwd()
    try:
        os.chdir(cwd)
    except OSError as e:
        raise RequestError(f"create: folder {cwd}: {e.strerror}") from None
    try:
        return load_cfg(cfg, list(overrides))
    finally:
        os.chdir(here)


def state_letters(domain):
    """xl's six state columns: running, blocked, paused, shutdown, reason, dying."""
    runnable = any(v.runnable for v in domain.vcpus)
    running = domain.state == RUNNING and runnable
    blocked = domain.state == RUNNING and not runnable
    shut = domain.state == SHUTDOWN
    reason = REASON_LETTERS.get(domain.shutdown_reason, "?") if shut else "-"
    return "".join(["r" if running else "-", "b" if blocked else "-",
                    "p" if domain.state == PAUSED else "-", "s" if shut else "-",
                    reason, "d" if domain.state == DEAD else "-"])


def uuid_text(handle):
    h = bytes(handle).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def config_dict(domain):
    """The domain's settings as `xl list -l` shows them (libxl's grouping)."""
    config = getattr(domain, "config", None)
    return None if config is None else config_json(config)


def config_json(config):
    """A DomainConfig as libxl groups it (`xl list -l`, `xl create -n`)."""
    return {
        "c_info": {"type": "pv", "name": config.name, "ssid_label": config.seclabel},
        "b_info": {"max_vcpus": config.vcpus, "max_memkb": config.maxmem_mib * 1024,
                   "target_memkb": config.memory_mib * 1024,
                   "type.pv": {"kernel": config.kernel, "cmdline": config.cmdline,
                               "ramdisk": config.ramdisk}},
        "on_poweroff": config.on_poweroff, "on_reboot": config.on_reboot,
        "on_watchdog": config.on_watchdog, "on_crash": config.on_crash,
    }


def fit(items, size=lambda item: len(json.dumps(item))):
    """The first of items (an iterable) whose JSON sizes, a comma each, fit
    in REPLY_BUDGET bytes; at least one, so a paged reply always moves on."""
    kept, budget = [], REPLY_BUDGET
    for item in items:
        budget -= size(item) + 1
        if budget < 0 and kept:
            break
        kept.append(item)
    return kept


def child(path, name):
    return f"/{name}" if path == "/" else f"{path}/{name}"


XS_REASONS = {"EQUOTA": "node quota exceeded"}


def xenstore_error(op, path, error):
    """"xenstore read /a: No such file or directory (ENOENT)"."""
    code = getattr(errno, error.name, None)
    reason = os.strerror(code) if isinstance(code, int) else XS_REASONS.get(error.name, "failed")
    return f"xenstore {op} {path[:256]}: {reason} ({error.name})"


def policy_text(policy):
    """`xl info`'s xen_policy: the file and its size, or what having none means."""
    if policy is None:
        return "none (inter-domain paths refused)"
    labels, rules = len(policy.labels), policy.rule_count
    return (f"{policy.source} ({labels} label{'s' * (labels != 1)}, "
            f"{rules} rule{'s' * (rules != 1)})")


def host_info(machine, policy=None):
    """`xl info`'s fields, in xl's order, for this host."""
    from pyxenon.hypercalls import xen_version as ver
    from pyxenon.public import arch_x86

    uname = os.uname()
    free = sum(size for _, size in machine.free_ranges)
    extra = ver.EXTRAVERSION.decode()
    scheduler = "rr (deterministic)" if machine.scheduler.deterministic else "rr"
    return [
        ["host", uname.nodename], ["release", uname.release], ["version", uname.version],
        ["machine", uname.machine], ["nr_cpus", 1], ["max_cpu_id", 0], ["nr_nodes", 1],
        ["cores_per_socket", 1], ["threads_per_core", 1], ["virt_caps", "pv"],
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


# -- running the daemon -----------------------------------------------------------

def client_timeout():
    """$PYXENON_CLIENT_TIMEOUT (seconds), else CLIENT_TIMEOUT."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, CLIENT_TIMEOUT))
    except ValueError:
        return CLIENT_TIMEOUT
    return value if value > 0 else CLIENT_TIMEOUT


def hold_lock(folder):
    """The daemon's lock file, held; None if another daemon holds it."""
    handle = open(os.path.join(folder, protocol.LOCK_NAME), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def serve(folder, policy=None, console_log=None):
    """Run the daemon in this process until `daemon stop` or SIGTERM,
    enforcing the policy file named by policy (None: no policy), writing
    each domain's console to guest-NAME.log in the console_log folder
    (None: none).  Exit status 0; 1 if another daemon already serves the
    folder; 2 for a malformed policy or a console-log folder it cannot make."""
    protocol.ensure_runtime_dir(folder)
    lock = hold_lock(folder)
    if lock is None:
        print(f"pyxenon: a daemon already serves {folder}", file=sys.stderr)
        return 1
    try:
        daemon = Daemon(folder, policy=load(policy), console_log=console_log)
    except (UserInputError, OSError) as e:
        lock.close()
        print(f"pyxenon: {e}", file=sys.stderr)
        return 2
    except HostLimitError as e:
        lock.close()
        print(f"pyxenon: {e}", file=sys.stderr)
        return 1

    def stop(signum, frame):
        daemon.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        daemon.listen()
        daemon.serve_forever()
    finally:
        lock.close()
    return 0


def load(policy):
    """The compiled policy at path policy (made absolute: info shows where), or None."""
    if not policy:
        return None
    return protocol.check_policy(os.path.abspath(policy))
