"""copy_from_guest / copy_to_guest reach exactly what the guest could."""
import pytest

from pyxenon.hypervisor.errors import GuestFault
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest

PAGE = 4096


@pytest.fixture
def vcpu(guests, host):
    return host.create(str(guests / "hello.cfg")).vcpus[0]


def test_round_trip_across_a_page_boundary(vcpu):
    va = vcpu.domain.layout.stack + 2 * PAGE - 3
    copy_to_guest(vcpu, va, b"abcdefgh")
    assert copy_from_guest(vcpu, va, 8) == b"abcdefgh"


@pytest.mark.parametrize("va", [
    0,                          # nothing mapped at 0
    0x00007FFFFFFFF000,         # top of the lower half, unmapped
    0xFFFF800000000000,         # Xen's reserved range (the m2p): not through copy
    0xFFFF82D040000000,         # hypervisor text
    0x8000000000000000,         # non-canonical
])
def test_unmapped_or_reserved_is_fault(vcpu, va):
    with pytest.raises(GuestFault):
        copy_from_guest(vcpu, va, 1)
    with pytest.raises(GuestFault):
        copy_to_guest(vcpu, va, b"x")


def test_write_to_read_only_page_table_faults(vcpu):
    lay = vcpu.domain.layout
    before = copy_from_guest(vcpu, lay.pt_base, 8)
    with pytest.raises(GuestFault):
        copy_to_guest(vcpu, lay.pt_base, b"\0" * 8)
    assert copy_from_guest(vcpu, lay.pt_base, 8) == before


def test_fault_in_second_page_is_reported(vcpu):
    end = vcpu.domain.layout.virt_end
    with pytest.raises(GuestFault) as info:
        copy_from_guest(vcpu, end - 4, 8)
    assert info.value.va == end


def test_address_wrapping_past_2_64_faults(vcpu):
    with pytest.raises(GuestFault):
        copy_from_guest(vcpu, (1 << 64) - 2, 8)


def test_walk_sets_accessed_and_dirty(vcpu, host):
    """The C walker sets Accessed on a read and Dirty on a write, as hardware does."""
    import struct

    mem = host.machine.mem
    va = vcpu.domain.layout.stack + PAGE   # a padding page nobody touched
    table = vcpu.core.cr3
    for level in (3, 2, 1, 0):             # find the L1 entry's machine address
        ma = table * PAGE + ((va >> (12 + 9 * level)) & 511) * 8
        table = struct.unpack("<Q", mem[ma:ma + 8])[0] >> 12 & ((1 << 40) - 1)

    def entry():
        return struct.unpack("<Q", mem[ma:ma + 8])[0]
    mem[ma:ma + 8] = struct.pack("<Q", entry() & ~0x60)
    copy_from_guest(vcpu, va, 1)
    assert entry() & 0x60 == 0x20          # accessed, not dirty
    copy_to_guest(vcpu, va, b"x")
    assert entry() & 0x60 == 0x60          # now dirty
