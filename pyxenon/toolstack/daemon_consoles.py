"""The daemon's consoles: streaming a domain's PV console ring to `xl
console` clients, their keystrokes back into it, and a destroyed domain's
last output for a late reader (as xenconsoled's log outlives its guest).
A mixin of toolstack/daemon.py's Daemon, as daemon_xenstore.XenStoreOps is:
it uses the daemon's clients, machine, dmesg and pending_input."""
import traceback

from pyxenon.hypervisor.domain import DEAD, SHUTDOWN

from . import protocol
from .daemon_requests import RequestError
from .protocol import b64

CONSOLE_BACKLOG = 64 * 1024
MAX_INPUT_QUEUE = 64 * 1024
BACKLOG_CHUNK = 32 * 1024        # console bytes per message (base64 grows them by 4/3)


class ConsoleOps:
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

    def op_console(self, client, domain):
        """A domain already gone (it powered off before `console` came)
        gives its last output and the end, as xenconsoled's log keeps it."""
        try:
            return self.attach(client, self.guest(domain, "console"))
        except RequestError:
            gone = self.dead_consoles.find(domain)
            if gone is None:
                raise
        if client.streaming():
            raise RequestError("console: this connection already streams")
        domid, name, output, reason = gone
        client.queue({"ok": True, "domid": domid, "name": name})
        queue_output(client, output)
        client.queue({"end": reason})
        client.closing = True
        return None

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


def queue_output(client, data):
    """Console bytes as {"out": ...} messages, each within MAX_LINE."""
    for start in range(0, len(data), BACKLOG_CHUNK):
        client.queue({"out": b64(data[start:start + BACKLOG_CHUNK])})
