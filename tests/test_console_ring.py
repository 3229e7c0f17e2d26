"""The PV console ring: the host drains out[], feeds in[], and never trusts
the guest's indices."""
import pytest

from pyxenon.backends.console import IN, IN_SIZE, OUT, OUT_SIZE


@pytest.fixture
def dom(guests, host):
    return host.create(str(guests / "hello.cfg"))


def guest_writes(dom, text, start=0):
    page, ring = dom.console.page, dom.console.ring
    for i, byte in enumerate(text):
        page[OUT + (start + i) % OUT_SIZE] = byte
    ring.out_prod = (start + len(text)) & 0xFFFFFFFF


def test_drain_moves_out_cons(dom):
    guest_writes(dom, b"line one\n")
    dom.console.drain()
    assert dom.console.ring.out_cons == 9
    assert dom.console_text == "line one\n"


def test_drain_across_the_wrap(dom):
    ring = dom.console.ring
    ring.out_cons = OUT_SIZE - 4
    guest_writes(dom, b"wrapped!", start=OUT_SIZE - 4)
    dom.console.drain()
    assert dom.console_text == "wrapped!"


def test_indices_wrap_at_32_bits(dom):
    ring = dom.console.ring
    ring.out_cons = 0xFFFFFFFE
    guest_writes(dom, b"abcd", start=0xFFFFFFFE)
    dom.console.drain()
    assert dom.console_text == "abcd" and ring.out_cons == 2


def test_hostile_producer_is_clamped(dom):
    ring = dom.console.ring
    ring.out_cons = 0
    ring.out_prod = 0x7FFFFFFF          # claims 2 GiB of output
    dom.console.drain()
    assert len(dom.console_log) == OUT_SIZE
    assert ring.out_cons == 0x7FFFFFFF


def test_feed_input(dom):
    assert dom.console.feed(b"ls\n") == 3
    ring = dom.console.ring
    assert ring.in_prod == 3 and bytes(dom.console.page[IN:IN + 3]) == b"ls\n"
    assert dom.events.is_pending(dom.console.port)


def test_feed_stops_when_full(dom):
    assert dom.console.feed(b"x" * (IN_SIZE + 10)) == IN_SIZE
    assert dom.console.feed(b"y") == 0
    dom.console.ring.in_cons = 5
    assert dom.console.feed(b"z" * 10) == 5
