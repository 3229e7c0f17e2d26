"""Debian's Linux using pyxenon's backends, beside the host doing the same
in the same run, with the same busybox tools:

- disk: `dd` of DISK_MIB through xen-blkfront to and from /dev/xvda (a raw
  image; conv=fsync on writing, the guest's page cache dropped before
  reading), beside the host's `busybox dd` on the same image (fsync; the
  file dropped from the host's cache before reading);
- network, between two guests on one bridge: `wget` of a file of NET_MIB
  from `httpd` on b, beside the same busybox `wget` from `httpd` over the
  host's loopback (busybox `nc` copies in 1 KiB writes, so Nagle's rule
  and delayed ACKs would make it measure them); `ping`'s average round
  trip (PINGS at 0.2 s), beside `busybox ping 127.0.0.1`.

The guests time themselves with /proc/uptime (10 ms steps; the operations
take seconds).  One boot of the pair per round; a smoke pass by default.
Never asserted: the figures go to RESULTS (seconds per MiB, seconds per
round trip)."""
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_kernelimage import debian_vmlinuz  # noqa: E402,F401  (the fixture)
from linux_demo import busybox, devices_initramfs  # noqa: E402
from test_linux_boot import make_initramfs  # noqa: E402
from pyxenon.toolstack.host import Host  # noqa: E402
from pyxenon.toolstack.policy import parse_policy  # noqa: E402

MIB = 1 << 20
DISK_MIB, NET_MIB, PINGS = 16, 2, 10
POLICY = """\
version = 1
[labels]
a = "dd on its disk; sends to b"
b = "receives"
[storage]
bench = "the benchmark's disk"
[[allow]]
from = "a"
to = "bench"
paths = ["block"]
access = "readwrite"
[[allow]]
from = "a"
to = "b"
paths = ["network"]
bidirectional = true
"""
MARK = "mark() { echo \"mark $1 $(cut -d' ' -f1 /proc/uptime)\"; }\n"
SCRIPTS = {
    "a.sh": MARK + f"""netup 10.0.0.1
for i in $(seq 60); do ping -c 1 -W 1 10.0.0.2 > /dev/null && break; done
mark write0; dd if=/dev/zero of=/dev/xvda bs=1M count={DISK_MIB} conv=fsync; mark write1
echo 3 > /proc/sys/vm/drop_caches
mark read0; dd if=/dev/xvda of=/dev/null bs=1M count={DISK_MIB}; mark read1
ping -c {PINGS} -i 0.2 10.0.0.2
mark net0; wget -q -O /dev/null http://10.0.0.2/f; mark net1
for i in $(seq 100); do echo done | nc 10.0.0.2 5001 && break; sleep 0.1; done
""",
    "b.sh": f"""mkdir /www; head -c {NET_MIB * MIB} /dev/zero > /www/f; httpd -p 80 -h /www
netup 10.0.0.2
nc -l -p 5001
""",
}


def guest_figures(kernel, out):
    """{case: seconds per MiB or per round trip} of one boot of the pair."""
    image = out / "bench.img"
    image.write_bytes(bytes(DISK_MIB * MIB))
    ramdisk = devices_initramfs(kernel, out, SCRIPTS)
    tool = make_initramfs()
    disk = f"disk = [ 'format=raw, vdev=xvda, access=rw, seclabel=bench, target={image}' ]"
    with Host(policy=parse_policy(POLICY, "bench.toml")) as h:
        doms = [h.create(str(tool.write_cfg(
            out / f"{side}.cfg", kernel, ramdisk, f"sh /{side}.sh", memory=128, name=side,
            lines=(f'seclabel = "{side}"', "vif = [ 'bridge=lan' ]") + extra)))
            for side, extra in (("a", (disk,)), ("b", ()))]
        h.run(timeout=600)             # some 60 s on a quiet machine
    text = doms[0].console_text.replace("\r\n", "\n")
    marks = {m[0]: float(m[1]) for m in re.findall(r"^mark (\w+) ([0-9.]+)$", text, re.M)}
    rtt = re.search(r"round-trip min/avg/max = [0-9.]+/([0-9.]+)/", text)
    if len(marks) != 6 or rtt is None:
        pytest.fail("the guests did not finish:\n" + "\n".join(
            f"{d.name}: {d.shutdown_reason}\n{d.console_text[-1500:]}" for d in doms))
    span = {what: marks[what + "1"] - marks[what + "0"] for what in ("write", "read", "net")}
    return {"linux_disk_write_per_mib": span["write"] / DISK_MIB,
            "linux_disk_read_per_mib": span["read"] / DISK_MIB,
            "linux_net_http_per_mib": span["net"] / NET_MIB,
            "linux_net_ping_rtt": float(rtt.group(1)) / 1000}


def host_figures(box, out):
    """The same operations on the host, with the same busybox."""
    image = out / "bench.img"
    start = time.perf_counter()
    subprocess.run([box, "dd", "if=/dev/zero", f"of={image}", "bs=1M", f"count={DISK_MIB}",
                    "conv=fsync,notrunc"], check=True, capture_output=True)
    write = time.perf_counter() - start
    with open(image, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    start = time.perf_counter()
    subprocess.run([box, "dd", f"if={image}", "of=/dev/null", "bs=1M"], check=True,
                   capture_output=True)
    read = time.perf_counter() - start
    figures = {"host_disk_write_per_mib": write / DISK_MIB, "host_disk_read_per_mib": read / DISK_MIB,
               "host_loopback_http_per_mib": loopback_http(box, out) / NET_MIB}
    ping = subprocess.run([box, "ping", "-c", str(PINGS), "-i", "0.2", "127.0.0.1"],
                          capture_output=True, text=True)
    rtt = re.search(r"round-trip min/avg/max = [0-9.]+/([0-9.]+)/", ping.stdout)
    if rtt:
        figures["host_loopback_ping_rtt"] = float(rtt.group(1)) / 1000
    else:
        print(f"host ping 127.0.0.1 failed (no baseline for the round trip): {ping.stderr}")
    return figures


def loopback_http(box, out):
    """Seconds for busybox wget to fetch NET_MIB from busybox httpd over
    127.0.0.1."""
    www = out / "www"
    www.mkdir(exist_ok=True)
    (www / "f").write_bytes(bytes(NET_MIB * MIB))
    port = 20000 + os.getpid() % 20000
    server = subprocess.Popen([box, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(www)])
    try:
        for _ in range(100):
            start = time.perf_counter()
            if subprocess.run([box, "wget", "-q", "-O", "/dev/null",
                               f"http://127.0.0.1:{port}/f"], capture_output=True).returncode == 0:
                return time.perf_counter() - start
            time.sleep(0.05)
        pytest.fail("busybox httpd on the host's loopback never answered")
    finally:
        server.kill()
        server.wait()


def test_linux_disk_and_network_beside_the_host(debian_vmlinuz, benchmark, results,  # noqa: F811
                                                tmp_path):
    box = tmp_path / "busybox"
    box.write_bytes(busybox())
    box.chmod(0o755)
    runs = []

    def one_round():
        runs.append({**guest_figures(debian_vmlinuz, tmp_path), **host_figures(str(box), tmp_path)})
    benchmark.pedantic(one_round, rounds=1 if benchmark.disabled else 3, iterations=1)
    for case in runs[0]:
        results[case] = min(run[case] for run in runs if case in run)
    for what in ("disk_write", "disk_read", "net_http"):
        guest = results[f"linux_{what}_per_mib"]
        host = results[f"host_{'loopback_http' if what == 'net_http' else what}_per_mib"]
        print(f"{what}: Linux guest {1 / guest:.2f} MiB/s, host {1 / host:.1f} MiB/s")
    print(f"ping: guests {results['linux_net_ping_rtt'] * 1e3:.2f} ms, "
          f"host loopback {results.get('host_loopback_ping_rtt', float('nan')) * 1e3:.3f} ms")
