"""Debian's Linux reads and writes disks through its own xen-blkfront
(a module of the cloud kernel: taken from the same kernel package, put in
the initramfs) and pyxenon's block backend.  Slow (a boot): skipped when the
kernel or the module cannot be had."""
import gzip
import io
import subprocess
import tarfile
import time

import pytest

from test_kernelimage import _apt, cache_dir, debian_vmlinuz  # noqa: F401
from test_linux_boot import make_initramfs
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy
from pyxenon.toolstack.xldevices import parse_disk

ATTEMPTS = 3                    # Linux's boot here is not yet always sure (test_linux_boot)
MIB = 1 << 20
POLICY = """\
version = 1
[labels]
linux = "the Linux guest"
[storage]
work = "its writable disk"
base = "a read-only one"
[[allow]]
from = "linux"
to = "work"
paths = ["block"]
access = "readwrite"
[[allow]]
from = "linux"
to = "base"
paths = ["block"]
"""
# run as a script: the kernel takes at most 32 words for init
SCRIPT = b"""insmod /xen-blkfront.ko; sleep 1; cat /sys/block/xvda/size /sys/block/xvdb/ro
dd if=/dev/xvda bs=512 count=1 2>/dev/null | head -c 20; echo
echo WRITTEN-BY-LINUX | dd of=/dev/xvda bs=512 seek=1 conv=sync 2>/dev/null
echo wrote $?
dd if=/dev/xvda of=/dev/xvda bs=512 count=1 conv=notrunc,fsync 2>/dev/null
echo flushed $?
echo X | dd of=/dev/xvdb bs=512 conv=sync,fsync 2>/dev/null
echo ro write $?
dd if=/dev/xvda of=/dev/null bs=1M count=8
"""


def tool():
    return make_initramfs()


@pytest.fixture(scope="module")
def blkfront_module(debian_vmlinuz):  # noqa: F811
    """xen-blkfront.ko of the cached kernel's own package, cached beside it."""
    release = debian_vmlinuz.name.removeprefix("vmlinuz-")
    cached = cache_dir() / f"xen-blkfront-{release}.ko"
    if not cached.exists():
        folder = cache_dir()
        package = f"linux-image-{release}"
        _apt(["apt-get", "download", "-q", package], cwd=folder)
        deb = next(folder.glob(f"{package}_*.deb"), None)
        if deb is None:
            pytest.skip(f"apt-get download {package} gave no .deb")
        try:
            cached.write_bytes(module_of(deb))
        finally:
            deb.unlink()
    return cached


def module_of(deb):
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                         check=True, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if member.name.endswith("/drivers/block/xen-blkfront.ko"):
                return archive.extractfile(member).read()
    pytest.skip(f"{deb.name} has no xen-blkfront.ko")


def initramfs_with(module, busybox):
    """make_initramfs's archive with /xen-blkfront.ko and /disk.sh added."""
    m = tool()
    raw = gzip.decompress(m.build_initramfs(busybox))
    end = raw.rindex(b"TRAILER!!!") - 110                # busybox itself holds the name
    extra = m.cpio_entry(90, "xen-blkfront.ko", m.S_IFREG | 0o644, module)
    extra += m.cpio_entry(91, "disk.sh", m.S_IFREG | 0o755, SCRIPT)
    return gzip.compress(raw[:end] + extra + m.cpio_entry(0, "TRAILER!!!", 0) + bytes(512),
                         mtime=0)


def test_linux_reads_and_writes_through_xen_blkfront(debian_vmlinuz, blkfront_module,  # noqa: F811
                                                     tmp_path):
    try:
        busybox = tool().fetch_busybox(cache_dir())
    except (SystemExit, OSError, StopIteration) as err:
        pytest.skip(f"busybox-static could not be fetched: {err}")
    ramdisk = tmp_path / "initrd.gz"
    ramdisk.write_bytes(initramfs_with(blkfront_module.read_bytes(), busybox.read_bytes()))
    work, base = tmp_path / "work.img", tmp_path / "base.img"
    base.write_bytes(b"READ-ONLY".ljust(MIB, b"\0"))
    for attempt in range(ATTEMPTS):
        work.write_bytes(b"BOOTSECTOR-FROM-HOST".ljust(512, b".") + bytes(16 * MIB))
        dom, stats, seconds = boot(debian_vmlinuz, ramdisk, work, base)
        if dom.shutdown_reason == "poweroff":
            break
    out = dom.console_text
    assert dom.shutdown_reason == "poweroff", out[-3000:]
    out = out.replace("\r\n", "\n")
    assert "\n32769\n1\n" in out and "BOOTSECTOR-FROM-HOST" in out
    assert "wrote 0" in out and "flushed 0" in out and "ro write 1" in out
    assert work.read_bytes()[512:529] == b"WRITTEN-BY-LINUX\n"
    assert base.read_bytes()[:9] == b"READ-ONLY"
    assert stats["write"] >= 1 and stats["error"] == 0
    start = time.monotonic()
    host_bytes = len(work.read_bytes()[:8 * MIB])
    host_seconds = time.monotonic() - start
    guest = [line for line in out.splitlines() if "copied" in line]
    print(f"\nLinux boot + disk test: {seconds:.1f} s, backend {stats}; guest dd: {guest}; "
          f"host read of the same 8 MiB: {host_bytes / MIB / max(host_seconds, 1e-9):.0f} MiB/s")


def boot(vmlinuz, ramdisk, work, base):
    disks = (parse_disk(f"format=raw, vdev=xvda, access=rw, seclabel=work, target={work}", "/"),
             parse_disk(f"format=raw, vdev=xvdb, access=r, seclabel=base, target={base}", "/"))
    start = time.monotonic()
    with Host(policy=parse_policy(POLICY, "linux.toml")) as h:
        dom = h.create(kernel=str(vmlinuz), ramdisk=str(ramdisk), memory=256, name="linux",
                       seclabel="linux", cmdline="console=hvc0 quiet -- sh /disk.sh",
                       disks=disks)
        stats = h.devices.find(dom, 51712).stats
        h.run(timeout=150)
    return dom, stats, time.monotonic() - start
