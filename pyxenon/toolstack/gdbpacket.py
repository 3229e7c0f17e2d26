"""The GDB remote serial protocol's framing (gdb manual, "Overview" of the
remote protocol): ``$payload#cs`` with cs the payload's byte sum mod 256 in
two hex digits, ``+``/``-`` acknowledgements, and the interrupt byte 0x03
outside packets.  Binary data escapes ``$ # } *`` as ``}`` then the byte
xor 0x20.

Everything here is pure (no sockets), so the stub's hostile-input rules are
tested without gdb: a bad checksum or an overlong packet is a ``bad`` event
(the stub answers ``-``), bytes outside a packet are dropped, and no input
makes the buffer grow past MAX_PACKET.
"""
from collections import namedtuple

MAX_PACKET = 0x4000          # the PacketSize we announce: the longest payload accepted
INTERRUPT = 0x03
ESCAPED = b"$#}*"

Event = namedtuple("Event", "kind payload", defaults=(b"",))
# kinds: "ack", "nak", "interrupt", "packet" (payload: the raw body), "bad" (payload: why)


class PacketError(ValueError):
    """A malformed packet body (the stub's E NN reply)."""


def checksum(data):
    return sum(data) & 0xFF


def escape(data):
    out = bytearray()
    for b in data:
        if b in ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data):
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise PacketError("escape at the end of the data")
            b = nxt ^ 0x20
        out.append(b)
    return bytes(out)


def frame(payload):
    """One packet as sent: the payload escaped, its checksum after."""
    body = escape(payload)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


class Reader:
    """Turns what a client sends, in pieces of any size, into Events."""

    def __init__(self, limit=MAX_PACKET):
        self.limit = limit
        self.body = None         # a packet's bytes so far (None: between packets)
        self.tail = b""          # checksum digits so far

    def feed(self, data):
        events = []
        for b in data:
            event = self._byte(b)
            if event is not None:
                events.append(event)
        return events

    def _byte(self, b):
        if self.body is None:
            return self._between(b)
        if self.tail or b == 0x23:            # '#': the checksum follows
            return self._checksum_digit(b)
        if b == 0x24:                         # '$' inside a packet: the client restarted
            self.body = bytearray()
            return Event("bad", b"packet restarted")
        self.body.append(b)
        if len(self.body) > 2 * self.limit:   # escapes can double a payload's length
            self.body = None
            return Event("bad", b"packet too long")
        return None

    def _between(self, b):
        if b == 0x24:
            self.body = bytearray()
            return None
        kind = {0x2B: "ack", 0x2D: "nak", INTERRUPT: "interrupt"}.get(b)
        return Event(kind) if kind else None  # any other byte is line noise

    def _checksum_digit(self, b):
        if b == 0x23 and not self.tail:
            self.tail = b"#"
            return None
        self.tail += bytes((b,))
        if len(self.tail) < 3:
            return None
        body, digits = bytes(self.body), self.tail[1:]
        self.body, self.tail = None, b""
        try:
            good = int(digits, 16) == checksum(body)
        except ValueError:
            good = False
        return Event("packet", body) if good else Event("bad", b"checksum")


# -- the fields inside packets ------------------------------------------------------

def hex_int(text, limit=(1 << 64) - 1):
    """A hex number (bytes or str), at most limit, or PacketError."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("ascii", errors="replace")
    if not text or len(text) > 16 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise PacketError(f"not a hex number: {text[:20]!r}")
    value = int(text, 16)
    if value > limit:
        raise PacketError(f"{text} is out of range")
    return value


def hex_bytes(text):
    """Bytes from pairs of hex digits, or PacketError."""
    try:
        if len(text) % 2:
            raise ValueError
        return bytes.fromhex(text.decode("ascii") if isinstance(text, (bytes, bytearray))
                             else text)
    except (ValueError, UnicodeDecodeError):
        raise PacketError("malformed hex data") from None


def split_fields(text, sep, count):
    """text split at sep into exactly count fields, or PacketError."""
    fields = text.split(sep, count - 1)
    if len(fields) != count:
        raise PacketError("missing field")
    return fields
