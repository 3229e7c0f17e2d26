"""The GDB remote protocol's framing and the stub's replies, without gdb:
checksums, escapes, acknowledgements, and what bad packets get."""
import pytest

from pyxenon.toolstack.gdbpacket import (MAX_PACKET, PacketError, Reader, checksum, escape,
                                         frame, hex_bytes, hex_int, unescape)


def kinds(events):
    return [(e.kind, e.payload) for e in events]


def test_checksum_is_the_byte_sum_mod_256():
    assert checksum(b"OK") == 0x9A
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"


def test_escapes_round_trip_and_cover_the_framing_bytes():
    data = bytes(range(256))
    escaped = escape(data)
    for b in b"$#*":
        assert bytes((b,)) not in escaped
    assert unescape(escaped) == data
    assert escape(b"}") == b"}]"


def test_trailing_escape_is_malformed():
    with pytest.raises(PacketError):
        unescape(b"ab}")


def test_reader_splits_packets_acks_and_interrupts_in_any_pieces():
    stream = b"+$g#67-\x03$m0,4#fd"
    for size in (1, 3, len(stream)):
        reader = Reader()
        events = []
        for i in range(0, len(stream), size):
            events += reader.feed(stream[i:i + size])
        assert kinds(events) == [("ack", b""), ("packet", b"g"), ("nak", b""),
                                 ("interrupt", b""), ("packet", b"m0,4")]


@pytest.mark.parametrize("wire", [b"$g#00", b"$g#zz", b"$g#6"])
def test_a_bad_checksum_is_a_bad_event(wire):
    events = kinds(Reader().feed(wire + b"$g#67"))
    if wire.endswith(b"#6"):      # the next '$' is the second checksum digit: bad
        assert events[0][0] == "bad"
    else:
        assert events == [("bad", b"checksum"), ("packet", b"g")]


def test_noise_between_packets_is_dropped():
    assert kinds(Reader().feed(b"hello\x00\xff$?#3f")) == [("packet", b"?")]


def test_a_packet_restarted_mid_way_is_reported_and_the_new_one_read():
    assert kinds(Reader().feed(b"$abc$?#3f")) == [("bad", b"packet restarted"), ("packet", b"?")]


def test_an_endless_packet_stops_growing_the_buffer():
    reader = Reader()
    events = reader.feed(b"$" + b"a" * (3 * MAX_PACKET))
    assert ("bad", b"packet too long") in kinds(events)
    assert reader.body is None or len(reader.body) <= 2 * MAX_PACKET
    assert kinds(reader.feed(b"$?#3f")) == [("packet", b"?")]


def test_hex_fields():
    assert hex_int(b"ffffffff80001000") == 0xFFFFFFFF80001000
    assert hex_bytes(b"0aff") == b"\x0a\xff"
    for bad in (b"", b"xyz", b"1" * 17, b"-1"):
        with pytest.raises(PacketError):
            hex_int(bad)
    with pytest.raises(PacketError):
        hex_int(b"100", limit=0xFF)
    for bad in (b"abc", b"zz"):
        with pytest.raises(PacketError):
            hex_bytes(bad)
