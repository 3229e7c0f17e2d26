"""The GDB stub against a client written here (no gdb needed): a domain
held at its entry, registers, memory through its page tables, breakpoints,
watchpoints, steps, Ctrl-C, detach and kill, and what bad packets get."""
import selectors
import socket
import time

import pytest

from pyxenon.toolstack.gdbpacket import Reader, checksum
from pyxenon.toolstack import gdbserver, gdbstub
from pyxenon.toolstack.elfimage import load_kernel

GIVE_UP_S = 30        # a guard against a hang, not a measurement


def frame(payload):
    """A packet as gdb sends it: escaping binary data is the sender's job."""
    return b"$" + payload + b"#%02x" % checksum(payload)


class Client:
    """A raw protocol client; each request pumps the host until a reply."""

    def __init__(self, host, domain):
        self.host = host
        self.selector = selectors.DefaultSelector()
        self.server = gdbserver.serve(domain, 0, self.selector, log=lambda text: None)
        self.sock = socket.create_connection(("127.0.0.1", self.server.port))
        self.sock.setblocking(False)
        self.reader = Reader()
        self.raw = bytearray()
        self.pump_until(lambda: self.server.client is not None)

    def pump_until(self, done):
        end = time.monotonic() + GIVE_UP_S
        while not done():
            assert time.monotonic() < end, "no progress"
            gdbserver.debug_round(self.host, self.selector)
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            self.raw += data
            self.events = getattr(self, "events", []) + self.reader.feed(data)
            if not data:
                return

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        self.pump_until(lambda: any(e.kind == "packet" for e in getattr(self, "events", [])))
        i = next(i for i, e in enumerate(self.events) if e.kind == "packet")
        event, self.events = self.events[i], self.events[i + 1:]
        return event.payload

    def request(self, payload):
        self.send(frame(payload))
        return self.reply()

    def close(self):
        self.sock.close()
        self.server.close()


@pytest.fixture
def hello(guests):
    from pyxenon import Host

    with Host(memory_mib=256) as host:
        domain = host.create(str(guests / "hello.cfg"))
        client = Client(host, domain)
        yield client, domain
        client.close()


def symbols(guests):
    import subprocess

    out = subprocess.run(["nm", str(guests / "hello" / "hello.elf")], capture_output=True,
                         text=True, check=True).stdout
    return {name: int(addr, 16) for addr, _, name in (line.split() for line in out.splitlines())}


def rip_of(g_reply):
    return int.from_bytes(bytes.fromhex(g_reply[16 * 16:17 * 16].decode()), "little")


def test_held_at_the_entry_with_the_registers_gdb_expects(hello, guests):
    client, domain = hello
    entry = load_kernel(str(guests / "hello" / "hello.elf")).entry
    assert b"PacketSize=4000" in client.request(b"qSupported:swbreak+;hwbreak+")
    assert client.request(b"?").startswith(b"T05thread:1;")
    regs = client.request(b"g")
    assert rip_of(regs) == entry
    assert regs.count(b"x") == 2 * (8 * 10 + 8 * 4 + 16 * 16 + 4)   # x87 and SSE unavailable
    assert client.request(b"p10") == entry.to_bytes(8, "little").hex().encode()
    assert client.request(b"qfThreadInfo") == b"m1"
    assert client.request(b"qsThreadInfo") == b"l"
    assert client.request(b"qC") == b"QC1"
    assert client.request(b"Hg1") == b"OK"
    assert client.request(b"T5") == b"E03"
    assert domain.state == "running" and domain.debug_paused


def test_target_description_is_served_in_pieces(hello):
    client, _ = hello
    xml, offset = b"", 0
    while True:
        part = client.request(b"qXfer:features:read:target.xml:%x,100" % offset)
        xml += part[1:]
        offset += len(part) - 1
        if part[:1] == b"l":
            break
        assert part[:1] == b"m"
    assert b"org.gnu.gdb.i386.core" in xml and b'name="fs_base"' in xml
    assert client.request(b"qXfer:features:read:other.xml:0,100") == b"E22"


def test_memory_through_the_guest_tables(hello, guests):
    client, domain = hello
    entry = load_kernel(str(guests / "hello" / "hello.elf")).entry
    code = bytes.fromhex(client.request(b"m%x,8" % entry).decode())
    assert len(code) == 8
    assert client.request(b"m0,4") == b"E14"                      # nothing mapped at 0
    assert client.request(b"mffff800000000000,4") == b"E14"       # Xen's range
    assert client.request(b"mffffffffffffffff,10") == b"E14"      # past 2**64
    assert client.request(b"mzz,4") == b"E22"
    assert client.request(b"m%x" % entry) == b"E22"
    buf = symbols(guests)["printk_buf"]
    assert client.request(b"M%x,2:4142" % buf) == b"OK"
    assert client.request(b"m%x,2" % buf) == b"4142"
    assert client.request(b"X%x,2:}\x03}\x04" % buf) == b"OK"     # escaped '#' and '$'
    assert client.request(b"m%x,2" % buf) == b"2324"
    assert client.request(b"M%x,3:4142" % buf) == b"E22"         # length and data differ
    pt = domain.layout.pt_base
    assert client.request(b"M%x,1:00" % pt) == b"E14"            # a page table in use


def test_a_read_across_into_unmapped_memory_is_partial(hello, guests):
    client, domain = hello
    page = load_kernel(str(guests / "hello" / "hello.elf")).entry & ~0xFFF
    while client.request(b"m%x,1" % page) != b"E14":   # the end of what the builder mapped
        page += 0x1000
    assert len(client.request(b"m%x,20" % (page - 8))) == 2 * 8


def test_step_breakpoint_and_continue_to_poweroff(hello, guests):
    client, domain = hello
    client.request(b"qSupported:swbreak+;hwbreak+")
    entry = rip_of(client.request(b"g"))
    client.send(frame(b"s"))
    assert client.reply().startswith(b"T05")
    assert rip_of(client.request(b"g")) != entry
    main = symbols(guests)["guest_main"]
    assert client.request(b"Z0,%x,1" % main) == b"OK"
    client.send(frame(b"c"))
    assert client.reply() == b"T05thread:1;swbreak:;"
    assert rip_of(client.request(b"g")) == main
    # continuing from the breakpoint passes it (it stays set)
    printk = symbols(guests)["printk"]
    assert client.request(b"Z1,%x,1" % printk) == b"OK"
    client.send(frame(b"vCont;c"))
    assert client.reply() == b"T05thread:1;hwbreak:;"
    assert client.request(b"z0,%x,1" % main) == b"OK"
    assert client.request(b"z1,%x,1" % printk) == b"OK"
    client.send(frame(b"c"))
    assert client.reply() == b"W00"
    assert domain.shutdown_reason == "poweroff"


def test_write_watchpoint_stops_after_the_store(hello, guests):
    client, domain = hello
    buf = symbols(guests)["printk_buf"]
    assert client.request(b"Z2,%x,8" % buf) == b"OK"
    client.send(frame(b"c"))
    assert client.reply() == b"T05thread:1;watch:%x;" % buf
    assert client.request(b"m%x,1" % buf) != b"00"       # the store is done
    assert client.request(b"z2,%x,8" % buf) == b"OK"
    assert domain.debugger.boundary is None              # no hook left behind
    assert client.request(b"Z2,0,8") == b"E22"           # nothing mapped there
    assert client.request(b"Z2,%x,0" % buf) == b"E22"


def test_bad_packets_get_the_protocol_replies(hello):
    client, _ = hello
    client.send(b"$g#00")
    client.pump_until(lambda: b"-" in client.raw)
    client.raw.clear()
    assert client.request(b"qNothingLikeThis") == b""
    assert client.request(b"Z9,0,1") == b"E22"
    assert client.request(b"Z0,8000000000000000,1") == b"E22"   # not canonical
    assert client.request(b"P10=00") == b"E22"                  # rip is 8 bytes
    assert client.request(b"P30=00000000") == b"E22"            # x87: not held
    assert client.request(b"P12=2b000000") in (b"OK", b"E22")   # cs: only its own value
    assert client.request(b"Hgfff") == b"E03"
    client.send(b"\x00garbage" * 100000)
    assert client.request(b"?").startswith(b"T05")
    # a '-' from the client resends the last reply
    client.send(b"-")
    assert client.reply().startswith(b"T05")


def test_no_ack_mode_stops_the_plus_signs(hello):
    client, _ = hello
    assert client.request(b"QStartNoAckMode") == b"OK"
    client.raw.clear()
    client.request(b"?")
    assert not client.raw.startswith(b"+")


def test_registers_written_keep_the_hypervisor_rules(hello):
    client, domain = hello
    assert client.request(b"P0=efbeadde00000000") == b"OK"
    assert domain.vcpus[0].regs()["rax"] == 0xDEADBEEF
    assert client.request(b"P11=ff3f0000") == b"OK"   # eflags: IOPL, NT asked for
    rflags = domain.vcpus[0].regs()["rflags"]
    assert rflags & 0x200 and not rflags & 0x3000 and not rflags & 0x4000


def test_ctrl_c_interrupts_a_running_guest_and_detach_lets_it_run(guests):
    from pyxenon import Host

    with Host(memory_mib=256) as host:
        domain = host.create(str(guests / "nullcall.cfg"), overrides=['cmdline="loops=1000000000"'])
        client = Client(host, domain)
        client.send(frame(b"c"))
        for _ in range(5):
            gdbserver.debug_round(host, client.selector)
        client.send(b"\x03")
        assert client.reply() == b"T02thread:1;"
        assert domain.debug_paused
        assert client.request(b"D") == b"OK"
        client.pump_until(lambda: client.server.client is None)
        assert not domain.debug_paused and domain.debugger is not None
        client.close()


def test_a_client_that_vanishes_releases_the_domain(guests):
    from pyxenon import Host

    with Host(memory_mib=256) as host:
        domain = host.create(str(guests / "hello.cfg"))
        client = Client(host, domain)
        client.request(b"Z0,%x,1" % symbols(guests)["guest_main"])
        client.sock.close()
        end = time.monotonic() + GIVE_UP_S
        while domain.state == "running" and time.monotonic() < end:
            gdbserver.debug_round(host, client.selector)
        assert domain.shutdown_reason == "poweroff"
        client.server.close()


def test_kill_ends_the_domain(hello):
    client, domain = hello
    client.send(frame(b"k"))
    client.pump_until(lambda: client.server.client is None)
    assert domain.state == "dead"
    assert "killed by the debugger" in domain.crash_report


def test_a_second_client_waits_its_turn(hello):
    client, _ = hello
    other = socket.create_connection(("127.0.0.1", client.server.port))
    other.settimeout(GIVE_UP_S)
    client.pump_until(lambda: True)
    gdbserver.debug_round(client.host, client.selector)
    assert other.recv(1) == b""           # closed at once
    other.close()
    assert client.request(b"?").startswith(b"T05")


def test_a_failing_handler_costs_one_error_reply(hello, monkeypatch):
    client, _ = hello

    def broken(self, payload):
        raise RuntimeError("a bug")
    monkeypatch.setitem(gdbstub.SINGLE, b"g", broken)
    assert client.request(b"g") == b"E22"
    assert client.request(b"?").startswith(b"T05")


def test_code_written_by_the_debugger_runs(hello, guests):
    """A write to code already translated drops the translation: with a
    watchpoint left set, no hook comes or goes to flush it instead."""
    client, domain = hello
    sym = symbols(guests)
    assert client.request(b"Z2,%x,1" % sym["printk_buf"]) == b"OK"
    client.send(frame(b"c"))
    assert client.reply().startswith(b"T05")          # inside the first printk
    assert client.request(b"M%x,1:c3" % sym["printk"]) == b"OK"   # printk: ret
    for _ in range(200):          # the first message's stores hit the watchpoint
        client.send(frame(b"c"))
        reply = client.reply()
        if reply == b"W00":
            break
    assert reply == b"W00"
    assert "Hello from pyxenon hello guest" in domain.dmesg_text
    assert "Xen version" not in domain.dmesg_text
    from pyxenon.hypervisor import debugreg      # the guest's own %dr0-7: untouched
    assert domain.vcpus == [] or domain.vcpus[0].debugreg == debugreg.reset_values()
