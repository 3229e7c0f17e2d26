"""The network backend (pyxenon.backends.netback) and the bridges
(netswitch): two netfront toy guests exchanging frames over one bridge,
only as the policy's network path allows; the checks on a frontend's tx
slots; pcap capture."""
import struct

import pytest

from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import MemoryAudit, parse_policy
from pyxenon.toolstack.xldevices import parse_vif

POLICY = """\
version = 1
[labels]
a = "pings"
b = "answers"
c = "alone"
[[allow]]
from = "a"
to = "b"
paths = ["network"]
bidirectional = true
"""


def guest(h, guests, name, label, cmdline, vif="bridge=lan"):
    return h.create(kernel=str(guests / "netfront" / "netfront.elf"), name=name, memory=16,
                    seclabel=label, cmdline=cmdline, vifs=(parse_vif(vif, 0, "/"),))


def console(dom):
    return dom.dmesg_text + dom.console_text


def pair(guests, labels, tmp_path=None, audit=None):
    pcap = f",pcap={tmp_path / 'lan.pcap'}" if tmp_path else ""
    with Host(memory_mib=128, policy=parse_policy(POLICY, "p.toml"), audit=audit) as h:
        pong = guest(h, guests, "pong", labels[1], "mode=pong", "bridge=lan" + pcap)
        ping = guest(h, guests, "ping", labels[0], "mode=ping count=5")
        h.run(timeout=60)
        bridge = h.devices.bridges["lan"]
        counts = bridge.forwarded, bridge.refused
    return console(ping), console(pong), counts


def test_two_guests_exchange_frames_when_the_policy_allows(guests, tmp_path):
    audit = MemoryAudit()
    ping, pong, (forwarded, refused) = pair(guests, ("a", "b"), tmp_path, audit)
    assert "netfront: 5 of 5 replies" in ping and "netfront: done, 0 failures" in ping
    assert "netfront: answered 5" in pong
    assert refused == 0
    decisions = [(r["subject"]["label"], r["object"]["label"], r["decision"])
                 for r in audit if r["operation"].startswith("network")]
    assert sorted(decisions) == [("a", "b", "allow"), ("b", "a", "allow")]
    data = (tmp_path / "lan.pcap").read_bytes()
    assert struct.unpack_from("<IHHiIII", data) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frames, pos = [], 24
    while pos < len(data):
        _, _, length, _ = struct.unpack_from("<IIII", data, pos)
        frames.append(data[pos + 16:pos + 16 + length])
        pos += 16 + length
    assert len(frames) >= forwarded >= 11 and frames[0][:6] == b"\xff" * 6
    assert frames[0][12:14] == b"\x88\xb5" and frames[0][14:20] == b"ping 0"
    pongs = [f for f in frames if f[14:18] == b"pong"]
    assert len(pongs) == 5 and pongs[0][:6] == frames[0][6:12]   # unicast to the pinger


def test_frames_are_refused_without_a_network_path(guests):
    ping, pong, (forwarded, refused) = pair(guests, ("a", "c"))
    assert "netfront: 0 of 5 replies" in ping
    assert "netfront: answered 0" in pong
    assert forwarded == 0 and refused >= 5          # every ping (and retry) refused


def test_hostile_tx_slots(guests):
    with Host(memory_mib=64, policy=parse_policy(POLICY, "p.toml")) as h:
        dom = guest(h, guests, "attacker", "a", "mode=attack")
        backend = h.devices.find(dom, 0, kind="vif")
        h.run(timeout=60)
        errors = backend.errors
    out = console(dom)
    assert "ACCEPTED" not in out, out
    assert "netfront: refused runt frame (status -1)" in out
    assert "netfront: refused frame in a page never granted (status -1)" in out
    assert "netfront: refused slot crossing its page (no answer)" in out
    assert any("cross page boundary" in e for e in errors)


def test_vif_nodes_and_features(guests):
    with Host(memory_mib=64, policy=parse_policy(POLICY, "p.toml")) as h:
        dom = guest(h, guests, "n", "a", "mode=pong", "bridge=lan,mac=00:16:3e:01:02:03")
        xs = h.xenstore
        be = "/local/domain/0/backend/vif/1/0"
        assert xs.read(be + "/mac") == b"00:16:3e:01:02:03"
        assert xs.read(be + "/feature-rx-copy") == b"1"
        assert xs.read("/local/domain/1/device/vif/0/backend") == be.encode()
        assert xs.read(be + "/state") == b"2"
        dom.shutdown(0)


def test_intruder_frontend_is_refused_and_the_backend_survives(guests):
    """mode=intrude: another domain's vif, forged ring refs and ports at
    connect, forged rx grants, tx and rx producer indices a ring ahead."""
    with Host(memory_mib=128, policy=parse_policy(POLICY, "p.toml")) as h:
        pong = guest(h, guests, "pong", "b", "mode=pong")
        dom = guest(h, guests, "intruder", "a", f"mode=intrude peer={pong.domid}")
        backend = h.devices.find(dom, 0, kind="vif")
        h.run(timeout=90)
        out, errors = console(dom), list(backend.errors)
        # the host goes on: a new pair on the same bridge is served
        after = guest(h, guests, "pong2", "b", "mode=pong")
        ping = guest(h, guests, "ping", "a", "mode=ping count=3")
        h.run(timeout=60)
    assert "ACCEPTED" not in out and "FAIL" not in out, out
    for what in ("write to another domain's vif", "ring-ref written into another domain's vif",
                 "read of another domain's backend", "write to its own backend's state",
                 "rx into a page never granted", "rx into a read-only grant"):
        assert f"netfront: refused {what} (status -1)" in out, what
    for what in ("tx-ring-ref never granted", "rx-ring-ref granted to another domain",
                 "tx-ring-ref granted read-only", "rx-ring-ref out of the table",
                 "event-channel bound to the store", "event-channel out of range"):
        assert f"netfront: refused {what} (backend closing)" in out, what
    assert "netfront: PASS pong after forged rx requests" in out
    assert "netfront: PASS pong after reconnecting" in out
    for what in ("tx producer index a ring ahead", "rx producer index a ring ahead"):
        assert f"netfront: refused {what} (no answer)" in out, what
    assert "netfront: done, 0 failures" in out
    assert any("mapping ring-ref" in e for e in errors)
    assert any("binding event-channel" in e for e in errors)
    assert sum("vif disabled" in e for e in errors) == 2 and any("rx" in e for e in errors)
    assert "netfront: 3 of 3 replies" in console(ping) and "answered 3" in console(after)


def rfc1071(data):
    """The Internet checksum, byte pair by byte pair (RFC 1071's loop)."""
    data += b"\0" * (len(data) % 2)
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_frame(proto, payload, check_at):
    segment = bytearray(payload)
    segment[check_at:check_at + 2] = b"\xab\xcd"                    # what a blank one holds
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, proto, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x00\x16\x3e\x00\x00\x02\x00\x16\x3e\x00\x00\x01\x08\x00" + header + bytes(segment)


@pytest.mark.parametrize("proto, check_at", [(6, 16), (17, 6)])
def test_a_blank_checksum_is_filled_for_a_receiver_without_offload(proto, check_at):
    from pyxenon.backends.netback import Netback
    from pyxenon.backends.netchecksum import fill_checksum
    from pyxenon.public import netif as n

    payload = bytes(range(7, 7 + 20)) + b"some data, odd length"
    frame = ipv4_frame(proto, payload, check_at)
    filled = fill_checksum(frame)
    segment = filled[34:]
    pseudo = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, proto]) + struct.pack("!H", len(segment))
    assert filled[:34 + check_at] == frame[:34 + check_at]
    assert rfc1071(pseudo + segment) == 0                # the filled checksum verifies
    assert fill_checksum(frame[:40]) is None             # total length past the frame
    assert fill_checksum(b"\xff" * 12 + b"\x86\xdd" + bytes(60)) is None     # not IPv4
    vif = Netback.__new__(Netback)
    vif.rx_csum = True
    assert vif.checksum_for_rx(frame, n.NETTXF_csum_blank) == (
        frame, n.NETRXF_csum_blank | n.NETRXF_data_validated)
    assert vif.checksum_for_rx(frame, n.NETTXF_data_validated) == (frame, n.NETRXF_data_validated)
    vif.rx_csum = False
    assert vif.checksum_for_rx(frame, n.NETTXF_csum_blank) == (filled, 0)
