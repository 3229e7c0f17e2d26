"""The engine's TLB grows to hold a large working set (machine.c,
model_tlb_resize): a domain walking 8 MiB a page at a time, never flushing,
ends with the modelled TLB big enough for its 2048 pages, and the guest's
data is right (every word it touched was added to once per pass)."""
import pathlib

from pyxenon.toolstack.host import Host

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"


def walk(stride, passes, mib=8):
    with Host(memory_mib=128) as host:
        dom = host.create(str(GUESTS / "memwalk.cfg"),
                          overrides=[f'extra="mib={mib} stride={stride} passes={passes}"'])
        host.run(timeout=60)
        return dom.shutdown_reason, host.machine.core.tlb_size


def test_page_strided_walk_grows_the_tlb():
    reason, size = walk(4096, 200)
    assert reason == "poweroff"
    assert size >= 2048


def test_small_working_set_leaves_the_tlb_small():
    reason, size = walk(4096, 200, mib=2)     # 512 pages: fits 1024 entries
    assert reason == "poweroff"
    assert size <= 1024


def test_bad_arguments_crash_the_guest_with_a_reason():
    reason, _ = walk(4095, 1)
    assert reason == "crash"
