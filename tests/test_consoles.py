"""The consoles as on Xen 4.17: the PV console ring (xenconsoled's part)
and the hypervisor's log of a domain's console_io writes kept apart, and
backends that signal a guest only when they did something for it."""
import re

from pyxenon.public import io
from pyxenon.toolstack.console import OUT, OUT_SIZE
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.xenstore import XenStore

from test_xenstore import Guest


def guest_writes(dom, text):
    page, ring = dom.console.page, dom.console.ring
    for i, byte in enumerate(text):
        page[OUT + (ring.out_prod + i) % OUT_SIZE] = byte
    ring.out_prod = (ring.out_prod + len(text)) & 0xFFFFFFFF


# -- signals: only after moving out_cons (xenconsoled's buffer_append) --------

def test_a_kick_with_nothing_written_gets_no_signal(guests, host):
    dom = host.create(str(guests / "hello.cfg"))
    dom.events.clear_pending(dom.console.port)
    dom.console.drain()
    assert not dom.events.is_pending(dom.console.port)


def test_a_kick_with_output_is_answered(guests, host):
    dom = host.create(str(guests / "hello.cfg"))
    dom.events.clear_pending(dom.console.port)
    guest_writes(dom, b"x\n")
    dom.console.drain()
    assert dom.events.is_pending(dom.console.port)
    assert dom.console.ring.out_cons == dom.console.ring.out_prod


def sends_of(trace):
    """EVTCHNOP_send calls (event_channel_op, cmd 4) in trace lines."""
    return sum(1 for line in trace if re.match(r"\(d\d+\) event_channel_op\(0x4,", line))


def test_a_guest_that_kicks_on_every_wake_finishes(guests):
    """guests/consolepong answers each console event with EVTCHNOP_send; a
    backend signalling every kick kept it busy for ever (125,000 sends a
    second, measured, and never past its event loop)."""
    trace = []
    with Host(memory_mib=64) as host:
        dom = host.create(str(guests / "consolepong.cfg"), trace=trace.append,
                          overrides=['cmdline="max-wakes=100000"'])
        outcome = host.run(timeout=30)
    assert outcome != "timeout"
    assert dom.shutdown_reason == "poweroff", dom.console_text
    assert dom.console_text.endswith("\n1 wake, then quiet; ring drained\n")
    # one kick per line written and one per wake: three, whatever the host's speed
    assert sends_of(trace) == 3


def test_xenstore_answers_a_kick_only_when_it_did_something():
    """xenstored notifies only when it consumed requests or wrote replies."""
    xs = XenStore()
    guest = Guest(xs, 5)
    guest.drain_events()
    quiet = guest.notified
    xs.on_event(5)
    xs.on_event(5)
    assert guest.notified == quiet
    guest.ok(io.XS_WRITE, b"/local/domain/5/x", b"1")
    assert guest.notified > quiet
