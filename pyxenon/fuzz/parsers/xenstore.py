"""The XenStore parser target: requests on a guest's ring page served by
XenStore.on_event, and the host API."""
import struct

from pyxenon.public import io

from ..common import PAGE, ParserFinding


class XenStoreTarget:
    """A fresh XenStore serving one guest's ring page (a bytearray), with a
    second guest's node to reach for."""

    def __init__(self):
        from pyxenon.backends.xenstore import XenStore

        self.store = XenStore()
        self.page = bytearray(PAGE)
        self.poked = False
        self.store.connect(1, self.page, lambda: None)
        self.store.introduce(2)
        self.store.write("/local/domain/2/data/x", b"v")
        self.store.set_perms("/local/domain/2/data", [(2, "r")])

    def index(self, field):
        return struct.unpack_from("<I", self.page, getattr(io.xenstore_domain_interface, field).offset)[0]

    def set_index(self, field, value):
        struct.pack_into("<I", self.page, getattr(io.xenstore_domain_interface, field).offset,
                         value & 0xFFFFFFFF)

    def ring_round(self, round_):
        """Requests into req[], maybe a broken index, the event, then the
        guest reads all, half or none of the replies."""
        data = bytes.fromhex(round_["data"])[:1024]
        prod = self.index("req_prod")
        for i, byte in enumerate(data):
            self.page[(prod + i) % 1024] = byte
        self.set_index("req_prod", prod + len(data))
        if round_["poke"]:
            self.set_index(*round_["poke"])
            self.poked = True
        self.store.on_event(1)
        if not self.poked:      # a guest that scribbled on the indices gets what it asked for
            self.check_ring()
        pending = (self.index("rsp_prod") - self.index("rsp_cons")) & 0xFFFFFFFF
        if pending <= 1024:
            share = (pending, pending // 2, 0)[round_["consume"] % 3]
            self.set_index("rsp_cons", self.index("rsp_cons") + share)

    def check_ring(self):
        used = (self.index("rsp_prod") - self.index("rsp_cons")) & 0xFFFFFFFF
        if used > 1024 and self.index("error") == 0:
            raise ParserFinding(f"xenstore ring: {used} reply bytes outstanding in a 1024-byte ring")

    def host_call(self, name, path, arg):
        """The host API (dom0): refusals are XenStoreError or ValueError."""
        from pyxenon.backends.xenstore import XenStoreError

        try:
            HOST_CALLS[name](self.store, path, arg)
        except (XenStoreError, ValueError):
            return "refused"
        return "accepted"


HOST_CALLS = {
    "read": lambda store, path, arg: store.read(path),
    "write": lambda store, path, arg: store.write(path, bytes.fromhex(arg)),
    "mkdir": lambda store, path, arg: store.mkdir(path),
    "ls": lambda store, path, arg: store.ls(path),
    "rm": lambda store, path, arg: store.rm(path),
    "get_perms": lambda store, path, arg: store.get_perms(path),
    "set_perms": lambda store, path, arg: store.set_perms(path, [tuple(arg)]),
    "watch": lambda store, path, arg: store.unwatch(store.watch(path, lambda p: None)),
    "introduce": lambda store, path, arg: store.introduce(arg),
    "release": lambda store, path, arg: store.release(arg),
}


# A reply or event is at most a header and XENSTORE_PAYLOAD_MAX bytes.
MESSAGE_MAX = 16 + 4096


def feed_socket(given, folder):
    """xenstored's socket: the client's bytes arrive in arbitrary chunks on
    a dom0 connection (xenstored_socket.SocketRing), served after each; the
    client reads its replies now and then.  Nothing may escape serve, no
    complete request may wait unserved unless replies are backed up, and
    what waits to be sent stays within the connection's output limit."""
    from pyxenon.backends.xenstore import XenStore
    from pyxenon.toolstack.xenstored_socket import MAX_OUTPUT, SocketRing

    store, ring = XenStore(), SocketRing()
    conn = store.attach(ring)
    for chunk, take in given["chunks"]:
        ring.inbuf += bytes.fromhex(chunk)
        store.serve(conn)
        check_socket(ring, MAX_OUTPUT)
        if take:
            ring.take()
    return "failed" if ring.failed else "served"


def check_socket(ring, limit):
    if ring.queued > limit + 2 * MESSAGE_MAX:
        raise ParserFinding(f"xenstored socket: {ring.queued} reply bytes held (limit {limit})")
    if not ring.failed and not ring.backlog() and len(ring.inbuf) > MESSAGE_MAX:
        raise ParserFinding(f"xenstored socket: {len(ring.inbuf)} request bytes left unserved")
