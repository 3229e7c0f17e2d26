"""A client of the daemon's socket: what it sent, what waits to be sent to
it, and what it streams (a console or a XenStore watch)."""
import time

from . import protocol

MAX_OUTPUT = 1 << 20      # bytes queued for a client that does not read: past it, dropped


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
