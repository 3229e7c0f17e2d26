"""The GDB remote protocol target (pyxenon/fuzz/parsers/gdb.py): a
client's bytes to the stub serving a held domain; what it counts as a
finding, shown by planting each kind of bug."""
import pytest

from pyxenon.fuzz.parsers import campaign as parser_campaign, gdb
from pyxenon.fuzz.parsers.feeders import check_input
from pyxenon.fuzz.parsers.inputs import gdb_seeds
from pyxenon.toolstack import gdbstub
from pyxenon.toolstack.gdbpacket import MAX_PACKET, frame


@pytest.fixture(autouse=True)
def built_guests(guests):
    gdb.set_guests(guests)


def given(*packets, rounds=0, lead=b"+"):
    return {"chunks": [[(lead + b"".join(frame(p) for p in packets)).hex(), rounds]]}


def outcome(tmp_path, data):
    return check_input("gdb", data, str(tmp_path))


def test_a_debugging_session_is_served(tmp_path, guests):
    for seed in gdb_seeds(guests):
        assert outcome(tmp_path, {"chunks": [[seed[:-1].hex(), gdb.MAX_ROUNDS]]}) == ("served", None)


def test_garbage_and_an_overlong_packet_are_refused_not_found(tmp_path):
    noise = b"$" + b"A" * (3 * MAX_PACKET) + b"#00" + b"\x03-+}*#$#zz"
    assert outcome(tmp_path, {"chunks": [[noise.hex(), 1], ["", 0]]}) == ("served", None)
    assert outcome(tmp_path, given(b"D"))[0] == "hung up"


def test_a_handler_that_raises_is_a_finding_with_its_traceback(tmp_path, monkeypatch):
    def read_registers(self, payload):
        raise KeyError("planted")
    monkeypatch.setitem(gdbstub.SINGLE, b"g", read_registers)
    result, problem = outcome(tmp_path, given(b"?", b"g"))
    assert result == "finding" and "KeyError" in problem[0], problem


def test_a_reply_past_packetsize_is_a_finding(tmp_path, monkeypatch):
    monkeypatch.setattr(gdbstub, "TARGET_XML", b"x" * (2 * MAX_PACKET))
    monkeypatch.setattr(gdbstub, "MAX_MEMORY", 2 * MAX_PACKET)
    result, problem = outcome(tmp_path, given(b"qXfer:features:read:target.xml:0,8000"))
    assert result == "finding" and "reply" in problem[0], problem


def test_a_refused_write_that_wrote_is_a_finding(tmp_path, monkeypatch):
    from pyxenon.hypervisor import debugger

    real = debugger.Debugger.write_memory

    def write_memory(self, va, data, vcpu_id=0):
        real(self, va, data[:1], vcpu_id)
        raise debugger.DebugError("planted")
    monkeypatch.setattr(debugger.Debugger, "write_memory", write_memory)
    entry = gdb.addresses()[0]
    result, problem = outcome(tmp_path, given(b"M%x,2:cccc" % entry))
    assert result == "finding" and "refused b'M' write changed memory" in problem[0], problem


def test_a_debugger_write_that_breaks_the_rules_is_a_finding(tmp_path, monkeypatch):
    """A stub writing into a page table behind the hypervisor's back: the
    whole-state checker sees the table change its entries' frames."""
    from pyxenon.hypervisor import debugger

    def write_memory(self, va, data, vcpu_id=0):
        mfn = self.domain.pt_frames[-1]
        self.machine.mem[mfn * 4096:mfn * 4096 + 8] = (0x67 | 1 << 12).to_bytes(8, "little")
    monkeypatch.setattr(debugger.Debugger, "write_memory", write_memory)
    result, problem = outcome(tmp_path, given(b"M0,1:00"))
    assert result == "finding" and "hypervisor's rules" in problem[0], problem


def test_the_random_campaign_feeds_the_stub(guests):
    campaign = parser_campaign.ParserCampaign(4, guests)
    campaign.makers = {"gdb": campaign.gdb_input}
    assert campaign.run(150) == []
    outcomes = campaign.stats.parser_outcomes
    assert outcomes["gdb served"] and outcomes["gdb hung up"], outcomes
