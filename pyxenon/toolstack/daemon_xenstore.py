"""The daemon's XenStore requests, as domain 0 through the store's host API
(`pyxenon xenstore ...`): a part of the Daemon class, kept here by concern."""
import errno
import json
import os

from pyxenon.backends.xenstore import XenStoreError

from . import protocol
from .daemon_requests import RequestError
from .protocol import MAX_LINE, b64

REPLY_BUDGET = MAX_LINE - 4096   # bytes of list items in one reply (the rest: framing)


class XenStoreOps:
    """The xenstore_* ops; the Daemon supplies host, busy and on_watch."""

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
