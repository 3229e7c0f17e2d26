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

By concern: daemon_requests.py checks each request, daemon_clients.py is a
client's buffers, daemon_xenstore.py answers the xenstore_* ops,
daemon_logs.py keeps dmesg and the audit log, xlinfo.py makes list's rows
and info's fields; this module is the loop, the sockets and the domains.
"""
import collections
import fcntl
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from pyxenon.backends.console import ConsoleLogs, DeadConsoles
from pyxenon.errors import HostLimitError, UserInputError
from pyxenon.hypervisor.domain import DEAD, RUNNING

from . import gdbserver, protocol, xenperf, xlinfo
from .daemon_clients import MAX_OUTPUT, Client  # noqa: F401 - MAX_OUTPUT: the tests'
from .daemon_consoles import CONSOLE_BACKLOG, ConsoleOps
from .daemon_vcpus import VcpuOps
from .daemon_logs import AuditLog, Dmesg
from .daemon_requests import RequestError, check_request
from .daemon_xenstore import XenStoreOps, fit
from .host import Host
from .protocol import MAX_LINE, ToolstackError
from .xenstored_socket import XenstoredSocket

RUN_SLICE = 0.05          # seconds of guest time between looks at the sockets
IDLE_WAIT = 0.5           # select timeout when no domain can run
MAX_CLIENTS = 256         # past this, the longest idle client makes room for a new one
CLIENT_TIMEOUT = 10.0     # seconds a client that streams nothing may send nothing
TIMEOUT_ENV = "PYXENON_CLIENT_TIMEOUT"
PAGES_PER_MIB = xlinfo.PAGES_PER_MIB


class Daemon(XenStoreOps, ConsoleOps, VcpuOps):
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
        self.affinity = {}                       # (domid, vcpu_id) -> (hard, soft): vcpu-pin
        self.pending_input = {}                  # domid -> bytes not yet in in[]
        self.clients = {}
        self.client_timeout = client_timeout()
        self.selector = selectors.DefaultSelector()
        self.listener = None
        self.xenstored = None                    # xenstored's socket, once listening
        self.gdb = gdbserver.Stubs(self.selector, self.dmesg.log)   # cfg's gdb = PORT
        self.busy = False
        self.stopping = False
        self.t0 = time.monotonic()
        self.machine.console_listeners.append(self.on_console)
        self.machine.shutdown_listeners.append(self.on_shutdown)
        self.console_logs = ConsoleLogs(console_log).listen(self.machine) if console_log else None
        self.dead_consoles = DeadConsoles(CONSOLE_BACKLOG).listen(self.machine)
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
        self.dmesg.log(f"policy: {xlinfo.policy_text(self.host.policy)}")
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
            elif self.gdb.owns(key):
                self.gdb.ready(key, mask)
                self.busy = True  # gdb may have let its domain go on
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
        self.gdb.reap(live)
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

    # -- notifications from the machine --------------------------------------------

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
        gdb = self.debug(domain, config.gdb)
        self.started[domain.domid] = time.monotonic()
        self.notice_domains()
        self.dmesg.log(f"d{domain.domid} ({domain.name}) from {cfg}"
                       + (", paused" if paused else ""))
        self.busy = True
        if console:
            return self.attach(client, domain)
        return {"ok": True, "domid": domain.domid, "name": domain.name, "gdb": gdb}

    def debug(self, domain, port):
        """The cfg's gdb = PORT: a stub holding the new domain; its port."""
        if port is None:
            return None
        try:
            return self.gdb.start(domain, port)
        except UserInputError as e:
            self.machine.destroy_domain(domain)
            raise RequestError(str(e)) from None

    def op_list(self, client, domain=None):
        if domain is not None:
            found = self.find(domain)
            rows = [self.host_row() if found is None else self.domain_row(found)]
        else:
            rows = [self.host_row()] + [self.domain_row(d) for _, d in
                                        sorted(self.machine.domains.items())]
        return {"ok": True, "domains": rows}

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

    def op_stats(self, client, domain):
        """A domain's hypercall statistics (toolstack/xenperf.py)."""
        target = self.guest(domain, "stats")
        return {"ok": True, "domid": target.domid, "name": target.name,
                "stats": xenperf.snapshot(target.perfc)}

    def op_info(self, client):
        return {"ok": True, "info": xlinfo.host_info(self.machine, self.host.policy)}

    def op_dmesg(self, client, clear=False):
        """The newest lines that fit in one reply (a note says how many did not)."""
        lines = list(self.dmesg.lines)
        if clear:
            self.dmesg.lines.clear()
        shown = fit(reversed(lines))[::-1]
        if len(shown) < len(lines):
            shown.insert(0, f"(XEN) [{len(lines) - len(shown)} older lines not shown]")
        return {"ok": True, "lines": shown}

    def op_stop(self, client):
        self.stopping = True
        return {"ok": True}

    # -- rows for list ---------------------------------------------------------

    def host_row(self):
        return xlinfo.host_row(self.t0)

    def domain_row(self, domain):
        return xlinfo.domain_row(domain, self.cpu_ns, self.started.get(domain.domid, self.t0))

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
        self.gdb.close()
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
            protocol.close_listening(self.selector, self.listener, self.path)
        self.host.close()
        if self.audit is not None:
            self.audit.close()
        if self.console_logs is not None:
            self.console_logs.close()


# -- helpers ----------------------------------------------------------------------

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
