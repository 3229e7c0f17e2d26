"""xenstored's Unix socket: the daemon's XenStore for xenstore-utils, pyxs, libxenstore.

The socket is <runtime dir>/xenstored/socket (mode 0600, in a folder of mode
0700).  Each connection is dom0 and speaks io/xs_wire.h exactly as a guest's
ring does: the XenStore service parses and answers its messages through the
same code (XenStore.attach/serve), so this module only moves bytes.

Nothing a client does may stall the daemon or the other clients: sockets are
non-blocking; a connection reads no more requests while MAX_OUTPUT of its
replies wait (the kernel's socket buffer then pushes back on the client), and
watch events past the store's output limit are dropped; a message whose
header says more than XENSTORE_PAYLOAD_MAX bytes closes the connection with
no reply, as xenstored's ignore_connection does for a socket.  Idle
connections stay (xenstore-watch is idle by design), except that one which
sat on a half-sent request or on unread replies past the client timeout is
dropped, and when MAX_CONNECTIONS are open the longest idle one makes room.
"""
import collections
import os
import selectors
import time


from . import protocol
from pyxenon.backends.xenstore_ring import take_message

DIR_NAME = "xenstored"
SOCKET_NAME = "socket"
MAX_CONNECTIONS = 128
MAX_OUTPUT = 256 * 1024      # bytes of replies waiting before its requests wait too
RECV_SIZE = 16 * 1024


def socket_path(folder):
    return os.path.join(folder, DIR_NAME, SOCKET_NAME)


class SocketRing:
    """The Ring interface XenStore's connections use, over a socket's buffers:
    requests come from inbuf, replies and events go to out."""

    def __init__(self):
        self.inbuf = bytearray()
        self.out = collections.deque()
        self.queued = 0
        self.failed = False
        self.active = False

    def read_message(self):
        return take_message(self.inbuf, lambda wanted: None)   # all read already

    def queue(self, message):
        if not self.failed:
            self.out.append(message)
            self.queued += len(message)

    def flush(self):
        """The server sends: nothing to do at the store's pace."""

    def backlog(self):
        return self.queued >= MAX_OUTPUT

    def kick(self):
        self.active = False

    def fail(self, code):
        """The store gave up on the connection: the server closes it."""
        self.failed = True
        self.out.clear()
        self.queued = 0

    def reconnect_requested(self):
        return False

    def take(self):
        data = b"".join(self.out)
        self.out.clear()
        self.queued = 0
        return data


class Client:
    def __init__(self, sock, conn, ring):
        self.sock = sock
        self.conn = conn          # the store's handle
        self.ring = ring
        self.unsent = bytearray()
        self.last_heard = time.monotonic()

    def pending(self):
        """Holding the daemon's memory for something unfinished."""
        return bool(self.ring.inbuf or self.unsent or self.ring.out)


class XenstoredSocket:
    """Serves the socket; the daemon's loop calls owns/readable from its
    select and flush after each slice."""

    def __init__(self, store, folder, selector, timeout):
        self.store = store
        self.path = socket_path(folder)
        self.selector = selector
        self.timeout = timeout
        self.clients = {}
        self.listener = self._listen()

    def _listen(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(self.path), 0o700)
        sock = protocol.listening_socket(self.path)
        self.selector.register(sock, selectors.EVENT_READ, self)
        return sock

    def owns(self, key):
        return key.data is self or isinstance(key.data, Client)

    def ready(self, key, mask):
        if key.fileobj is self.listener:
            self.accept()
        elif mask & selectors.EVENT_READ:
            self.readable(key.data)
        else:
            self.send(key.data)

    def accept(self):
        protocol.accept_waiting(self.listener, MAX_CONNECTIONS, self.admit)

    def admit(self, sock):
        if not protocol.admissible(sock, self.make_room):
            return
        ring = SocketRing()
        client = Client(sock, self.store.attach(ring), ring)
        self.clients[sock] = client
        self.selector.register(sock, selectors.EVENT_READ, client)

    def make_room(self):
        if len(self.clients) < MAX_CONNECTIONS:
            return True
        self.drop(min(self.clients.values(), key=lambda c: c.last_heard))
        return True

    def readable(self, client):
        try:
            data = client.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return
        client.last_heard = time.monotonic()
        client.ring.inbuf += data
        self.store.serve(client.conn)
        self.send(client)

    def send(self, client):
        """Write what waits; read requests again once the replies are out."""
        if client.sock not in self.clients:
            return
        if client.ring.failed:
            self.drop(client)
            return
        if not client.unsent:
            # Taken only once the last is out, so the store's output limit
            # (events dropped past it) bounds what a client that reads nothing holds.
            client.unsent += client.ring.take()
        sent = protocol.send_some(client.sock, client.unsent)
        if sent is None:
            self.drop(client)
            return
        del client.unsent[:sent]
        if sent:
            client.last_heard = time.monotonic()
        if not client.unsent and client.ring.inbuf:
            self.store.serve(client.conn)   # requests left waiting on the backlog
        self.watch_for(client)

    def watch_for(self, client):
        """Reading while the client keeps up, writing while it does not."""
        behind = client.unsent or client.ring.out
        events = selectors.EVENT_WRITE if behind else selectors.EVENT_READ
        self.selector.modify(client.sock, events, client)

    def flush(self):
        """After a slice: send watch events the guests' changes fired; drop
        connections stuck past the timeout."""
        limit = time.monotonic() - self.timeout
        for client in list(self.clients.values()):
            if client.ring.out or client.ring.failed:
                self.send(client)
            if client.sock in self.clients and client.pending() and client.last_heard < limit:
                self.drop(client)

    def drop(self, client):
        self.clients.pop(client.sock, None)
        self.store.detach(client.conn)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def close(self):
        for client in list(self.clients.values()):
            self.drop(client)
        protocol.close_listening(self.selector, self.listener, self.path)
