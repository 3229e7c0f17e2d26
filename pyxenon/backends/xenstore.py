"""The XenStore service (xenstored's part): the store, its watches and
transactions, the guests' ring connections, and a host API acting as dom0.

    store = XenStore()
    store.connect(domid, page, notify)   # introduces the domain, serves its ring
    store.on_event(domid)                # the domain signalled its store port
    store.write("/local/domain/1/name", b"guest")
    handle = store.watch("@releaseDomain", lambda path: ...)
    store.release(domid)                 # @releaseDomain, removes its nodes

Guests speak io/xs_wire.h on their ring page (see xenstore_ring.py); the
semantics follow Xen's C xenstored and docs/misc/xenstore.txt:

- READ, WRITE (creates missing parents), MKDIR, RM (recursive; a missing
  node is fine if its parent exists), DIRECTORY, DIRECTORY_PART, GET_PERMS,
  SET_PERMS (also on @introduceDomain/@releaseDomain), GET_DOMAIN_PATH.
- WATCH replies OK and then fires once at once; a change fires every watch
  on the changed path or an ancestor of it (and, for RM, every watch beneath
  the removed node), if the watcher may read the node (its perms before or
  after the change).  Watches given as relative paths report relative paths.
- TRANSACTION_START/END: a private copy of the tree; END "T" fails with
  EAGAIN, applying nothing, if any node the transaction read or wrote was
  replaced meanwhile.  Its watch events fire at commit.
- Errors are XS_ERROR replies naming the errno; an unknown type is ENOSYS
  (as xenstored since 4.15), dom0-only types are EACCES from guests, an
  unknown tx_id is ENOENT.  A header whose len
  exceeds XENSTORE_PAYLOAD_MAX gets E2BIG and fails the connection
  (XENSTORE_ERROR_PROTO); nonsense ring indices fail it (XENSTORE_ERROR_RINGIDX).
  The guest may reset a failed ring with the reconnection protocol.
- Other connections as dom0 (attach: xenstored's Unix socket) speak the same
  messages through the same code, with dom0's rights: INTRODUCE, RELEASE and
  IS_DOMAIN_INTRODUCED as xenstored answers them.
"""
import re
import dataclasses
import itertools

from pyxenon.public import io
from pyxenon.public.xen import DOMID_FIRST_RESERVED, DOMID_SELF

from . import xenstore_tree as tree
from .xenstore_ring import Ring, RingError, pack_message
from .xenstore_tree import (DOM0, INTRODUCE_DOMAIN, OWNER, READ, RELEASE_DOMAIN,
                            SPECIAL_PATHS, WRITE, Access, Event, Limits, Transaction,
                            XenStoreError)

__all__ = ["XenStore", "XenStoreError", "Limits", "Watch"]

OK = b"OK\0"
NOTID, PRIV = 1, 2   # wire flags: ignores tx_id; dom0 only


class Watch:
    """One registered watch (and, for the host API, the handle unwatch takes)."""

    def __init__(self, path, token, home=None):
        self.path = path      # absolute, or a special @path
        self.token = token    # bytes
        self.home = home      # set when given relative to home: events say relative paths

    def report(self, path):
        if self.home is not None and path.startswith(self.home + "/"):
            return path[len(self.home) + 1:]
        return path

    def __repr__(self):
        return f"Watch({self.path!r}, {self.token!r})"


class _Host:
    """The host API's own client: dom0, with callbacks instead of a ring."""
    domid = DOM0

    def __init__(self):
        self.watches = []
        self.callbacks = {}     # token -> callback(path)
        self.pending = []       # (token, path) not yet delivered

    def deliver(self, path, token):
        self.pending.append((token, path))


class _Connection:
    """A guest's ring connection: its watches and open transactions."""

    def __init__(self, domid, ring, limits):
        self.domid = domid
        self.home = tree.home_path(domid)
        self.ring = ring
        self.limits = limits
        self.watches = []
        self.transactions = {}
        self.next_txid = 1
        self.after_reply = []   # watches to fire once the WATCH reply is queued
        self.dropped_events = 0

    def deliver(self, path, token):
        body = path.encode() + b"\0" + token + b"\0"
        if len(body) > io.XENSTORE_PAYLOAD_MAX:
            return
        if self.ring.queued > self.limits.output:
            self.dropped_events += 1
            return
        self.ring.queue(pack_message(io.XS_WATCH_EVENT, 0, 0, body))

    def forget(self):
        self.watches.clear()
        self.transactions.clear()
        self.after_reply.clear()

    def transaction(self, txid):
        if txid == 0:
            return None
        if txid not in self.transactions:
            raise XenStoreError("ENOENT")
        return self.transactions[txid]

    def new_txid(self):
        while self.next_txid == 0 or self.next_txid in self.transactions:
            self.next_txid = (self.next_txid + 1) & 0xFFFFFFFF
        txid = self.next_txid
        self.next_txid = (txid + 1) & 0xFFFFFFFF
        return txid


def _one_arg(payload):
    """The payload's only string: exactly one NUL, at the end (Xen's onearg)."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XenStoreError("EINVAL")
    return payload[:-1]


def _strings(payload, least):
    """The NUL-terminated strings of payload (bytes after the last NUL are ignored)."""
    strings = payload.split(b"\0")[:-1]
    if len(strings) < least:
        raise XenStoreError("EINVAL")
    return strings


def _number(raw, limit):
    if not raw.isdigit() or len(raw) > 10 or int(raw) > limit:
        raise XenStoreError("EINVAL")
    return int(raw)


def _check_domid(domid):
    if not isinstance(domid, int) or not DOM0 < domid < DOMID_FIRST_RESERVED:
        raise ValueError(f"not a guest domain id: {domid!r}")


class XenStore:
    def __init__(self, limits=None, gate=None):
        """gate(caller, owner, need) -> bool decides access to another
        guest's nodes beyond Xen's permissions (the MSM's xenstore path)."""
        self.gate = gate
        self.limits = limits or Limits()
        self.tree = tree.Tree()
        self.clock = itertools.count(1)
        self.special = {path: ((DOM0, "n"),) for path in SPECIAL_PATHS}
        self.introduced = set()
        self.connections = {}
        self.attached = []      # dom0's connections other than the host API (sockets)
        self.mapper = None      # mapper(domid) -> (page, notify) or None: for INTRODUCE
        self.host = _Host()
        self._tokens = itertools.count(1)
        self._delivering = False

    # -- domains --------------------------------------------------------------

    def introduce(self, domid):
        """Create /local/domain/<domid>, owned by the domain and hidden from
        others (perms n<domid>), and fire @introduceDomain.  Idempotent."""
        _check_domid(domid)
        if domid in self.introduced:
            return
        self.introduced.add(domid)
        home = tree.home_path(domid)
        acc = self._access(DOM0, None)
        tree.mkdir(acc, home)
        tree.set_perms(acc, home, ((domid, "n"),))
        self._emit(acc.events)
        self._fire(Event(INTRODUCE_DOMAIN, (self.special[INTRODUCE_DOMAIN],)))
        self._pump()

    def release(self, domid):
        """Forget a domain: drop its connection, remove its home and every node
        it owns, drop it from other nodes' permissions, fire @releaseDomain."""
        _check_domid(domid)
        self.disconnect(domid)
        if domid not in self.introduced:
            return
        self.introduced.discard(domid)
        acc = self._access(DOM0, None)
        owned = [path for path, node in self.tree.nodes.items()
                 if node.owner == domid and path != "/"]
        for path in sorted(owned + [tree.home_path(domid)], key=len):
            if path in self.tree.nodes:
                tree.rm(acc, path)
        self._forget_in_perms(domid)
        self._emit(acc.events)
        self._fire(Event(RELEASE_DOMAIN, (self.special[RELEASE_DOMAIN],)))
        self._pump()

    def _forget_in_perms(self, domid):
        """Drop domid's entries from every permission list (a node it still
        owns, which can only be the root, passes to dom0)."""
        for path, node in list(self.tree.nodes.items()):
            kept = _without(node.perms, domid)
            if kept != node.perms:
                self.tree.put(path, dataclasses.replace(node, perms=kept, gen=next(self.clock)))
        for path, perms in self.special.items():
            self.special[path] = _without(perms, domid)

    def is_introduced(self, domid):
        return domid in self.introduced

    def connect(self, domid, page, notify):
        """Serve a domain's ring: page is a writable memoryview of its xenstore
        page, notify() signals its store event channel.  Introduces the domain
        if needed; a new connection replaces an old one."""
        _check_domid(domid)
        ring = Ring(page, notify)
        self.introduce(domid)
        self.disconnect(domid)
        self.connections[domid] = _Connection(domid, ring, self.limits)

    def disconnect(self, domid):
        """Stop serving a domain's ring; drops its watches and transactions."""
        conn = self.connections.pop(domid, None)
        if conn is not None:
            conn.forget()

    def on_event(self, domid):
        """The domain signalled: serve the requests in its ring, write what
        replies fit, and notify it if any index moved."""
        conn = self.connections.get(domid)
        if conn is None:
            return
        if conn.ring.reconnect_requested():
            conn.forget()
            conn.ring.reset()
        elif not conn.ring.failed:
            self._serve(conn)
        self._pump()

    # -- dom0's other connections (xenstored's socket) ----------------------

    def attach(self, ring):
        """A dom0 connection speaking the wire protocol through ring (any
        object with the Ring's interface); returns the handle serve and
        detach take."""
        conn = _Connection(DOM0, ring, self.limits)
        self.attached.append(conn)
        return conn

    def serve(self, conn):
        """conn's ring has new input: serve it, as on_event does for a guest."""
        if not conn.ring.failed:
            self._serve(conn)
        self._pump()

    def detach(self, conn):
        if conn in self.attached:
            self.attached.remove(conn)
        conn.forget()

    # -- the host API (dom0) --------------------------------------------------

    def read(self, path):
        return self._host_op(tree.read, path)

    def write(self, path, value):
        if isinstance(value, str):
            value = value.encode()
        self._host_op(tree.write, path, bytes(memoryview(value)))

    def mkdir(self, path):
        self._host_op(tree.mkdir, path)

    def ls(self, path):
        return list(self._host_op(tree.directory, path))

    def rm(self, path):
        self._host_op(tree.rm, path)

    def get_perms(self, path):
        """The node's permissions as [(domid, letter), ...], owner first."""
        if str(path).startswith("@"):
            return list(self._special_perms(DOM0, path, READ))
        return list(self._host_op(tree.get_perms, path))

    def set_perms(self, path, perms):
        perms = tree.check_perms(perms)
        if str(path).startswith("@"):
            self._set_special_perms(DOM0, path, perms)
        else:
            self._host_op(tree.set_perms, path, perms)

    def watch(self, path, callback):
        """Call callback(path) now, and on every change at or below path (or
        for @introduceDomain / @releaseDomain).  Returns the handle unwatch takes."""
        home = tree.home_path(DOM0)
        where, relative = tree.watch_path(path, home)
        handle = Watch(where, b"host%d" % next(self._tokens), home if relative else None)
        self.host.watches.append(handle)
        self.host.callbacks[handle.token] = callback
        self.host.deliver(handle.report(where), handle.token)
        self._pump()
        return handle

    def unwatch(self, handle):
        if handle not in self.host.watches:
            raise XenStoreError("ENOENT", getattr(handle, "path", None))
        self.host.watches.remove(handle)
        del self.host.callbacks[handle.token]

    def _host_op(self, op, path, *args):
        acc = self._access(DOM0, None)
        result = op(acc, tree.resolve(path, acc.home), *args)
        self._emit(acc.events)
        self._pump()
        return result

    # -- shared machinery -----------------------------------------------------

    def _access(self, domid, tx):
        return Access(self.tree if tx is None else tx.tree, domid, self.limits, self.clock, tx,
                      self.gate)

    def _emit(self, events):
        for event in events:
            self._fire(event)

    def _fire(self, event):
        for client in [self.host, *self.connections.values(), *self.attached]:
            for watch in list(client.watches):
                self._maybe_deliver(client, watch, event)

    @staticmethod
    def _maybe_deliver(client, watch, event):
        match = event.match(watch.path)
        if match is None:
            return
        path, perms_list = match
        if any(tree.can_read(client.domid, perms) for perms in perms_list):
            client.deliver(watch.report(path), watch.token)

    def _pump(self):
        """Push queued output to the rings that have some (or news to
        signal), then run the host's callbacks."""
        for conn in [*self.connections.values(), *self.attached]:
            if conn.ring.out or conn.ring.active:
                self._push(conn)
        self._run_callbacks()

    def _push(self, conn):
        try:
            conn.ring.flush()
        except RingError as err:
            self._fail(conn, err.code)
        conn.ring.kick()

    def _run_callbacks(self):
        if self._delivering:
            return                      # a callback changed the store: the outer loop delivers
        self._delivering = True
        try:
            while self.host.pending:
                token, path = self.host.pending.pop(0)
                callback = self.host.callbacks.get(token)
                if callback is not None:
                    callback(path)
        finally:
            self._delivering = False

    def _fail(self, conn, code):
        conn.forget()
        conn.ring.fail(code)

    def _special_perms(self, domid, path, need):
        name = path.decode("ascii", "replace") if isinstance(path, bytes) else path
        if name not in self.special:
            raise XenStoreError("EINVAL", name)
        if tree.permission(domid, self.special[name]) & need != need:
            raise XenStoreError("EACCES", name)
        return self.special[name]

    def _set_special_perms(self, domid, path, perms):
        name = path.decode("ascii", "replace") if isinstance(path, bytes) else path
        if domid != DOM0 and len(perms) > self.limits.perms:
            raise XenStoreError("ENOSPC", name)
        self._special_perms(domid, name, WRITE | OWNER)
        self.special[name] = perms

    # -- the wire -------------------------------------------------------------

    def _serve(self, conn):
        try:
            conn.ring.flush()
            while not conn.ring.backlog():
                message = conn.ring.read_message()
                if message is None:
                    return
                self._process(conn, *message)
                conn.ring.flush()
        except RingError as err:
            self._fail(conn, err.code)

    def _process(self, conn, header, payload):
        if payload is None:
            conn.ring.queue(pack_message(io.XS_ERROR, header.req_id, header.tx_id, b"E2BIG\0"))
            conn.ring.flush()
            raise RingError(io.XENSTORE_ERROR_PROTO)
        try:
            kind, body = self._dispatch(conn, header, payload)
        except XenStoreError as err:
            kind, body = io.XS_ERROR, err.name.encode() + b"\0"
        if len(body) > io.XENSTORE_PAYLOAD_MAX:
            kind, body = io.XS_ERROR, b"E2BIG\0"
        conn.ring.queue(pack_message(kind, header.req_id, header.tx_id, body))
        for watch in conn.after_reply:
            conn.deliver(watch.report(watch.path), watch.token)
        conn.after_reply.clear()

    def _dispatch(self, conn, header, payload):
        name, flags = _WIRE.get(header.type, (None, 0))
        if flags & PRIV and conn.domid != DOM0:
            raise XenStoreError("EACCES")
        if name is None:
            raise XenStoreError("ENOSYS")
        tx = None if flags & NOTID else conn.transaction(header.tx_id)
        return header.type, getattr(self, name)(conn, tx, payload)

    def _guest_op(self, conn, tx, op, raw_path, *args):
        acc = self._access(conn.domid, tx)
        result = op(acc, tree.resolve(raw_path, conn.home), *args)
        if tx is None:
            self._emit(acc.events)
        else:
            tx.events.extend(acc.events)
        return result

    def _wire_read(self, conn, tx, payload):
        return self._guest_op(conn, tx, tree.read, _one_arg(payload))

    def _wire_directory(self, conn, tx, payload):
        children = self._guest_op(conn, tx, tree.directory, _one_arg(payload))
        return b"".join(name.encode() + b"\0" for name in children)

    def _wire_directory_part(self, conn, tx, payload):
        path, offset = _strings(payload, 2)[:2]
        return self._guest_op(conn, tx, tree.directory_part, path,
                              _number(offset, 0xFFFFFFFF))

    def _wire_write(self, conn, tx, payload):
        path, nul, value = payload.partition(b"\0")
        if not nul:
            raise XenStoreError("EINVAL")
        self._guest_op(conn, tx, tree.write, path, value)
        return OK

    def _wire_mkdir(self, conn, tx, payload):
        self._guest_op(conn, tx, tree.mkdir, _one_arg(payload))
        return OK

    def _wire_rm(self, conn, tx, payload):
        self._guest_op(conn, tx, tree.rm, _one_arg(payload))
        return OK

    def _wire_get_perms(self, conn, tx, payload):
        path = _one_arg(payload)
        if path.startswith(b"@"):
            return tree.format_perms(self._special_perms(conn.domid, path, READ))
        return tree.format_perms(self._guest_op(conn, tx, tree.get_perms, path))

    def _wire_set_perms(self, conn, tx, payload):
        strings = _strings(payload, 2)
        perms = tree.parse_perms(strings[1:])
        if strings[0].startswith(b"@"):
            self._set_special_perms(conn.domid, strings[0], perms)
        else:
            self._guest_op(conn, tx, tree.set_perms, strings[0], perms)
        return OK

    def _wire_get_domain_path(self, conn, tx, payload):
        domid = _number(_one_arg(payload), tree.DOMID_LIMIT)
        return tree.home_path(domid).encode() + b"\0"

    def _wire_watch(self, conn, tx, payload):
        raw_path, token = _strings(payload, 2)[:2]
        path, relative = tree.watch_path(raw_path, conn.home)
        if any(w.path == path and w.token == token for w in conn.watches):
            raise XenStoreError("EEXIST", path)
        if len(conn.watches) >= self.limits.watches:
            raise XenStoreError("E2BIG", path)
        watch = Watch(path, token, conn.home if relative else None)
        conn.watches.append(watch)
        conn.after_reply.append(watch)
        return OK

    def _wire_unwatch(self, conn, tx, payload):
        raw_path, token = _strings(payload, 2)[:2]
        path = tree.watch_path(raw_path, conn.home)[0]
        for watch in conn.watches:
            if watch.path == path and watch.token == token:
                conn.watches.remove(watch)
                return OK
        raise XenStoreError("ENOENT", path)

    def _wire_reset_watches(self, conn, tx, payload):
        conn.forget()
        return OK

    def _wire_transaction_start(self, conn, tx, payload):
        if tx is not None:
            raise XenStoreError("EBUSY")
        if len(conn.transactions) >= self.limits.transactions:
            raise XenStoreError("ENOSPC")
        txid = conn.new_txid()
        conn.transactions[txid] = Transaction(txid, self.tree)
        return b"%d\0" % txid

    def _wire_transaction_end(self, conn, tx, payload):
        commit = _one_arg(payload)
        if commit not in (b"T", b"F"):
            raise XenStoreError("EINVAL")
        if tx is None:
            raise XenStoreError("ENOENT")
        del conn.transactions[tx.id]
        if commit == b"T":
            self._commit(tx)
        return OK

    def _wire_introduce(self, conn, tx, payload):
        """domid, gfn, port.  A domain already introduced gets its connection
        reset (xenstored's domain_conn_reset: watches, transactions and ring
        indices dropped; the host keeps its own store event channel); one
        not introduced is connected if the host has it (mapper)."""
        strings = _strings(payload, 3)
        domid, port = _atoi(strings[0]), _atoi(strings[2])
        if port <= 0 or domid >= DOMID_FIRST_RESERVED:
            raise XenStoreError("EINVAL")
        if domid == DOM0:
            return OK           # xenstored's master domain: always introduced
        known = self.connections.get(domid)
        if known is not None:
            known.forget()
            known.ring.reset()
            return OK
        mapped = self.mapper(domid) if self.mapper is not None else None
        if mapped is None:
            raise XenStoreError("EINVAL")   # xenstored: mapping the domain's page fails
        self.connect(domid, *mapped)
        return OK

    def _wire_release(self, conn, tx, payload):
        domid = _atoi(_one_arg(payload))
        if domid == DOM0:
            raise XenStoreError("EINVAL")
        if domid not in self.introduced:
            raise XenStoreError("ENOENT")
        if domid not in self.connections:
            raise XenStoreError("EINVAL")
        self.release(domid)
        return OK

    def _wire_is_domain_introduced(self, conn, tx, payload):
        domid = _atoi(_one_arg(payload))
        known = domid in (DOM0, DOMID_SELF) or domid in self.introduced
        return b"T\0" if known else b"F\0"

    def _commit(self, tx):
        if tx.conflicts(self.tree):
            raise XenStoreError("EAGAIN")
        tx.apply(self.tree)
        self._emit(tx.events)


def _atoi(raw):
    """C's atoi, as xenstored reads domids and ports: leading digits, else 0."""
    match = re.match(rb"\s*([+-]?\d+)", raw)
    return int(match.group(1)) if match else 0


def _without(perms, domid):
    """perms less the entries naming domid; dom0 takes over if domid owned them."""
    owner = perms[0] if perms[0][0] != domid else (DOM0, perms[0][1])
    return (owner,) + tuple(entry for entry in perms[1:] if entry[0] != domid)


_WIRE = {
    io.XS_DIRECTORY: ("_wire_directory", 0),
    io.XS_READ: ("_wire_read", 0),
    io.XS_GET_PERMS: ("_wire_get_perms", 0),
    io.XS_WATCH: ("_wire_watch", NOTID),
    io.XS_UNWATCH: ("_wire_unwatch", NOTID),
    io.XS_TRANSACTION_START: ("_wire_transaction_start", 0),
    io.XS_TRANSACTION_END: ("_wire_transaction_end", 0),
    io.XS_GET_DOMAIN_PATH: ("_wire_get_domain_path", 0),
    io.XS_WRITE: ("_wire_write", 0),
    io.XS_MKDIR: ("_wire_mkdir", 0),
    io.XS_RM: ("_wire_rm", 0),
    io.XS_SET_PERMS: ("_wire_set_perms", 0),
    io.XS_RESET_WATCHES: ("_wire_reset_watches", 0),
    io.XS_DIRECTORY_PART: ("_wire_directory_part", 0),
    # dom0's requests: guests get EACCES; the rest (None) are ENOSYS for dom0 too.
    io.XS_CONTROL: (None, PRIV),
    io.XS_INTRODUCE: ("_wire_introduce", PRIV),
    io.XS_RELEASE: ("_wire_release", PRIV),
    io.XS_IS_DOMAIN_INTRODUCED: ("_wire_is_domain_introduced", PRIV),
    io.XS_RESUME: (None, PRIV),
    io.XS_SET_TARGET: (None, PRIV),
}
