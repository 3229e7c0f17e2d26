"""Debian's Linux reads and writes disks through its own xen-blkfront
(a module of the cloud kernel: taken from the same kernel package, put in
the initramfs, whose /init loads it) and pyxenon's block backend, booted
once: its root is an ext4 image made by `mke2fs -t ext4 -d` from the
busybox tree (/init switches to root=/dev/xvda); files it writes there
are in the image after poweroff (debugfs shows them, e2fsck finds it
clean); a raw disk is written and flushed sector by sector; a read-only
ext4 disk mounts read-only and refuses writes.  Slow (a boot): skipped
when the kernel, the module or e2fsprogs cannot be had."""
import hashlib
import shutil
import subprocess
import time

import pytest

from test_kernelimage import debian_vmlinuz  # noqa: F401  (the fixture)
from linux_demo import busybox, devices_initramfs
from test_linux_boot import make_initramfs
from pyxenon.toolstack.host import Host
from pyxenon.toolstack.policy import parse_policy
from pyxenon.toolstack.xldevices import parse_disk

MIB = 1 << 20
POLICY = """\
version = 1
[labels]
linux = "the Linux guest"
[storage]
root = "its ext4 root disk"
work = "its writable raw disk"
base = "a read-only ext4 disk"
[[allow]]
from = "linux"
to = "root"
paths = ["block"]
access = "readwrite"
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
# on the root disk (the kernel takes at most 32 words for init)
SCRIPT = b"""cat /sys/block/xvdc/size /sys/block/xvdb/ro
cat /from-host.txt
echo WRITTEN-BY-LINUX > /by-guest.txt && mkdir /guest-dir && cp /bin/busybox /guest-dir/
echo root write $?
dd if=/dev/xvdc bs=512 count=1 2>/dev/null | head -c 20; echo
echo WRITTEN-BY-LINUX | dd of=/dev/xvdc bs=512 seek=1 conv=sync 2>/dev/null
echo wrote $?
dd if=/dev/xvdc of=/dev/xvdc bs=512 count=1 conv=notrunc,fsync 2>/dev/null
echo flushed $?
echo X | dd of=/dev/xvdb bs=512 conv=sync,fsync 2>/dev/null
echo ro write $?
mount /dev/xvdb /mnt; grep xvdb /proc/mounts; cat /mnt/base.txt
touch /mnt/new; echo ro touch $?
umount /mnt
dd if=/dev/xvdc of=/dev/null bs=1M count=8
"""


def debugfs(image, command):
    return subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True,
                          timeout=60).stdout


@pytest.fixture(scope="module")
def booted(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    if shutil.which("mke2fs") is None or shutil.which("debugfs") is None:
        pytest.skip("Linux disk test: no mke2fs/debugfs (apt-get install e2fsprogs)")
    out = tmp_path_factory.mktemp("linux-blk")
    tool = make_initramfs()
    ramdisk = devices_initramfs(debian_vmlinuz, out, {})
    box = busybox()
    root, work, base = out / "root.img", out / "work.img", out / "base.img"
    tool.make_root_disk(root, box, 32, [("disk.sh", tool.S_IFREG | 0o755, SCRIPT),
                                        ("from-host.txt", tool.S_IFREG | 0o644,
                                         b"WRITTEN-BY-THE-HOST\n")])
    tool.make_ext4(base, [("base.txt", tool.S_IFREG | 0o644, b"READ-ONLY-EXT4\n")], 8)
    work.write_bytes(b"BOOTSECTOR-FROM-HOST".ljust(512, b".") + bytes(16 * MIB))
    before = hashlib.sha256(base.read_bytes()).hexdigest()
    disks = tuple(parse_disk(spec, "/") for spec in (
        f"format=raw, vdev=xvda, access=rw, seclabel=root, target={root}",
        f"format=raw, vdev=xvdb, access=r, seclabel=base, target={base}",
        f"format=raw, vdev=xvdc, access=rw, seclabel=work, target={work}"))
    start = time.monotonic()
    with Host(policy=parse_policy(POLICY, "linux.toml")) as h:
        dom = h.create(kernel=str(debian_vmlinuz), ramdisk=str(ramdisk), memory=256,
                       name="linux", seclabel="linux", disks=disks,
                       cmdline="console=hvc0 quiet root=/dev/xvda -- sh /disk.sh")
        stats = {vdev: h.devices.find(dom, devid).stats
                 for vdev, devid in (("xvda", 51712), ("xvdb", 51728), ("xvdc", 51744))}
        h.run(timeout=600)             # some 20 s on a quiet machine
    out_text = dom.console_text.replace("\r\n", "\n")
    assert dom.shutdown_reason == "poweroff", out_text[-3000:]
    print(f"\nLinux boot + disk test: {time.monotonic() - start:.1f} s, backends {stats}")
    return out_text, stats, (root, work, base), before, box


def test_linux_boots_from_an_ext4_disk_and_its_files_are_in_the_image(booted):
    out, stats, (root, _, _), _, box = booted
    assert "init: root /dev/xvda" in out and "\nWRITTEN-BY-THE-HOST\n" in out
    assert "root write 0" in out
    assert debugfs(root, "cat /by-guest.txt") == b"WRITTEN-BY-LINUX\n"
    assert debugfs(root, "cat /guest-dir/busybox") == box
    fsck = subprocess.run(["e2fsck", "-fn", str(root)], capture_output=True, timeout=60)
    assert fsck.returncode == 0, fsck.stdout[-1000:]       # unmounted cleanly at poweroff
    assert stats["xvda"]["write"] >= 1 and stats["xvda"]["error"] == 0


def test_linux_writes_and_flushes_a_raw_disk(booted):
    out, stats, (_, work, _), _, _ = booted
    assert "\n32769\n1\n" in out and "BOOTSECTOR-FROM-HOST" in out
    assert "wrote 0" in out and "flushed 0" in out
    assert work.read_bytes()[512:529] == b"WRITTEN-BY-LINUX\n"
    assert stats["xvdc"]["write"] >= 1 and stats["xvdc"]["error"] == 0


def test_a_read_only_disk_refuses_writes(booted):
    out, _, (_, _, base), before, _ = booted
    assert "ro write 1" in out and "ro touch 1" in out
    assert "/dev/xvdb /mnt ext4 ro" in out and "\nREAD-ONLY-EXT4\n" in out
    assert hashlib.sha256(base.read_bytes()).hexdigest() == before
