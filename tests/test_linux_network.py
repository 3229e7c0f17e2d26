"""Debian's Linux on pyxenon's bridges: three busybox guests with the
kernel's own xen-netfront on bridge lan, booted once.  a and b have the
policy's network path: they ping each other and b receives a file over TCP
from a (netfront's offloaded checksums included); c has none: it reaches
nobody, and nobody reaches it.  Slow (three boots, some 40 s): skipped when
the kernel or its modules cannot be had."""
import pytest

from test_kernelimage import debian_vmlinuz  # noqa: F401  (the fixture)
from linux_demo import devices_initramfs
from test_linux_boot import make_initramfs
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy

POLICY = """\
version = 1
[labels]
a = "10.0.0.1"
b = "10.0.0.2"
c = "10.0.0.3, on the same bridge, with no path"
[[allow]]
from = "a"
to = "b"
paths = ["network"]
bidirectional = true
"""
# Each waits for its peer (one ping at a time) before the three counted.
SCRIPTS = {
    "a.sh": """netup 10.0.0.1
for i in $(seq 60); do ping -c 1 -W 1 10.0.0.2 > /dev/null && break; done
ping -c 3 -w 30 10.0.0.2
ping -c 2 -w 6 10.0.0.3
head -c 262144 /bin/busybox > /tmp/f
for i in $(seq 60); do nc 10.0.0.2 5000 < /tmp/f && break; sleep 1; done
""",
    "b.sh": """netup 10.0.0.2
for i in $(seq 60); do ping -c 1 -W 1 10.0.0.1 > /dev/null && break; done
ping -c 3 -w 30 10.0.0.1
nc -l -p 5000 > /tmp/got
head -c 262144 /bin/busybox | md5sum; md5sum /tmp/got
""",
    "c.sh": """netup 10.0.0.3
ping -c 2 -w 10 10.0.0.2
""",
}


@pytest.fixture(scope="module")
def booted(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    """(console text per guest, the bridge's forwarded and refused counts)."""
    out = tmp_path_factory.mktemp("linux-net")
    ramdisk = devices_initramfs(debian_vmlinuz, out, SCRIPTS)
    tool = make_initramfs()
    with Host(policy=parse_policy(POLICY, "net.toml")) as h:
        doms = {}
        for side in "abc":
            cfg = tool.write_cfg(out / f"{side}.cfg", debian_vmlinuz, ramdisk, f"sh /{side}.sh",
                                 memory=128, name=side, lines=(f'seclabel = "{side}"',
                                                               "vif = [ 'bridge=lan' ]"))
            doms[side] = h.create(str(cfg))
        h.run(timeout=600)             # some 60 s on a quiet machine
        bridge = h.devices.bridges["lan"]
        counts = bridge.forwarded, bridge.refused
    if any(dom.shutdown_reason != "poweroff" for dom in doms.values()):
        pytest.fail("\n".join(f"{side}: {dom.shutdown_reason}\n{dom.console_text[-1500:]}"
                              for side, dom in doms.items()))
    return {side: dom.console_text.replace("\r\n", "\n") for side, dom in doms.items()}, counts


def test_guests_with_a_network_path_ping_each_other(booted):
    out, (forwarded, _) = booted
    assert "--- 10.0.0.2 ping statistics ---\n3 packets transmitted, 3 packets received" \
        in out["a"], out["a"]
    assert "--- 10.0.0.1 ping statistics ---\n3 packets transmitted, 3 packets received" \
        in out["b"], out["b"]
    assert forwarded >= 12


def test_tcp_between_them_carries_a_file_intact(booted):
    out, _ = booted
    sums = [line.split()[0] for line in out["b"].splitlines()
            if line.endswith(("/tmp/got", "  -"))]
    assert len(sums) == 2 and sums[0] == sums[1], out["b"]


def test_a_guest_without_a_network_path_reaches_nobody(booted):
    out, (_, refused) = booted
    assert "--- 10.0.0.2 ping statistics ---\n2 packets transmitted, 0 packets received" \
        in out["c"], out["c"]
    assert "--- 10.0.0.3 ping statistics ---" in out["a"]
    assert ", 0 packets received" in out["a"].split("--- 10.0.0.3 ping statistics ---")[1]
    assert refused > 0
