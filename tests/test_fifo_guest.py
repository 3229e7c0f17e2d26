"""guests/fifo: FIFO event channels set up and used from inside a guest --
the queues read as Linux's events_fifo.c reads them, and Xen 4.17's answers
to hostile arguments (event_fifo.c) -- beside a well-behaved domain."""
import re

ATTEMPTS = 24
AS_XEN = (": refused as Xen does", ": allowed as Xen does")


def test_fifo_guest_gets_xens_answers(guests, host):
    hello = host.create(str(guests / "hello.cfg"))
    dom = host.create(str(guests / "fifo.cfg"))     # hello's frames (and Xen's) lie below its own
    assert host.machine.core.frames[dom.first_mfn - 1].owner != dom.domid
    host.run(timeout=60)
    assert dom.shutdown_reason == "poweroff", dom.crash_report or dom.dmesg_text
    lines = [line for line in dom.dmesg_text.splitlines() if re.match(r"fifo: \[", line)]
    assert len(lines) == ATTEMPTS, dom.dmesg_text
    assert [line for line in lines if not line.endswith(AS_XEN)] == []
    assert f"fifo: {ATTEMPTS}/{ATTEMPTS} attempts refused" in dom.dmesg_text
    assert dom.events.fifo is not None and len(dom.events.fifo.pages) == 128
    assert hello.shutdown_reason == "poweroff" and "Hello from pyxenon" in hello.dmesg_text
