#!/usr/bin/env python3
"""Build a Linux demo for pyxenon: Debian's kernel, a busybox initramfs and
an xl.cfg.

    python3 examples/linux/make_initramfs.py OUTDIR [--command CMD] [--flavour cloud-amd64]

fetches Debian's kernel (linux-image-<flavour>) and busybox-static with
`apt-get download` (no root needed; run `apt-get update` first), writes
OUTDIR/initramfs.cpio.gz, whose /init mounts /proc, /sys and /dev and
then runs the command given after `--` on the kernel command line and
powers off, or gives a shell when there is none, and writes two cfgs
for `pyxenon run`: OUTDIR/shell.cfg (the busybox shell on the console:
type into it, `poweroff -f` to leave) and OUTDIR/linux.cfg (runs CMD,
default `cat /proc/version`, and powers off).

--devices adds the kernel's xen-blkfront and xen-netfront (from its own
package) to a second initramfs, whose /init loads them, and writes
OUTDIR/root.cfg (an ext4 root disk OUTDIR/root.img made with mke2fs -d
from the busybox tree: /init switches to root=/dev/xvda; the command
writes /hello there) and OUTDIR/net-a.cfg, net-b.cfg (two guests on
bridge lan, 10.0.0.1 and 10.0.0.2, pinging each other), for the policy
examples/linux/devices.toml.  Debian's cloud-amd64
flavour boots faster than the generic amd64 one: it carries fewer
drivers to initialise.
"""
import argparse
import gzip
import io
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

INIT = b"""#!/bin/busybox sh
echo "init: started"
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/bin
for m in /lib/modules/*.ko; do [ -e "$m" ] && insmod "$m"; done
root=
for word in $(cat /proc/cmdline); do
    case "$word" in root=*) root=${word#root=};; --) break;; esac
done
if [ -e /initramfs ] && [ -n "$root" ]; then
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b "$root" ] && break; sleep 0.2; done
    mkdir -p /newroot && mount -o rw "$root" /newroot || exec sh
    echo "init: root $root"
    umount /proc /sys /dev
    exec switch_root /newroot /init "$@"
fi
if [ $# -gt 0 ]; then
    echo "init: running: $*"
    sh -c "$*"
    echo "init: exit status $?"
    [ -e /initramfs ] || mount -o remount,ro / || sync
    poweroff -f
fi
echo "init: busybox shell (poweroff -f to leave)"
exec setsid cttyhack sh
"""

# netup ADDR: eth0 (xen-netfront's, which appears once the vif connects)
# up with ADDR/24, and lo.
NETUP = b"""#!/bin/sh
for i in $(seq 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set lo up
ip addr add "$1/24" dev eth0 && ip link set eth0 up
"""
MODULES = ("xen-blkfront", "xen-netfront")
MODULE_PATHS = {"xen-blkfront": "/drivers/block/xen-blkfront.ko",
                "xen-netfront": "/drivers/net/xen-netfront.ko"}

# newc: "070701", then 13 fields of 8 hex digits, the name (NUL-terminated),
# data; both padded to 4 bytes.
S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def cpio_entry(ino, name, mode, data=b"", rdev=(0, 0)):
    name_bytes = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_bytes), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + name_bytes
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def tree(busybox, extra=()):
    """The busybox tree: (path, mode, data) of /init, /bin/busybox, /bin/sh,
    /bin/netup, then extra's."""
    return [("bin", S_IFDIR | 0o755, b""), ("dev", S_IFDIR | 0o755, b""),
            ("proc", S_IFDIR | 0o755, b""), ("sys", S_IFDIR | 0o755, b""),
            ("mnt", S_IFDIR | 0o755, b""), ("bin/busybox", S_IFREG | 0o755, busybox),
            ("bin/sh", S_IFLNK | 0o777, b"busybox"),
            ("bin/netup", S_IFREG | 0o755, NETUP),
            ("init", S_IFREG | 0o755, INIT), *extra]


def module_entries(modules):
    """/lib/modules/NAME.ko entries (which /init loads) for {name: bytes}."""
    return [("lib", S_IFDIR | 0o755, b""), ("lib/modules", S_IFDIR | 0o755, b"")] + \
        [(f"lib/modules/{name}.ko", S_IFREG | 0o644, data) for name, data in modules.items()]


def build_initramfs(busybox, extra=()):
    """The gzip'd newc archive of tree(busybox, extra), /initramfs (which
    lets /init switch to a root= disk) and /dev/console."""
    entries = tree(busybox, extra) + [("initramfs", S_IFREG | 0o644, b"")]
    archive = b"".join(cpio_entry(i + 1, *e) for i, e in enumerate(entries))
    # the kernel opens /dev/console for init before devtmpfs is mounted
    archive += cpio_entry(len(entries) + 1, "dev/console", S_IFCHR | 0o600, rdev=(5, 1))
    archive += cpio_entry(0, "TRAILER!!!", 0)
    return gzip.compress(archive + b"\0" * (-len(archive) % 512), mtime=0)


def make_root_disk(path, busybox, size_mib=64, extra=()):
    """An ext4 image of the busybox tree and extra (mke2fs -d, e2fsprogs)."""
    return make_ext4(path, tree(busybox, extra), size_mib)


def make_ext4(path, entries, size_mib):
    """An ext4 image holding entries (path, mode, data), made by mke2fs -d."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for name, mode, data in entries:
            target = root / name
            if mode & S_IFDIR == S_IFDIR:
                target.mkdir(exist_ok=True)
            elif mode & S_IFLNK == S_IFLNK:
                target.symlink_to(data.decode())
            else:
                target.write_bytes(data)
                target.chmod(mode & 0o777)
        try:
            res = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", tmp, str(path),
                                  f"{size_mib}M"], capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise SystemExit("make_initramfs: mke2fs not found (apt-get install e2fsprogs)")
    if res.returncode != 0:
        raise SystemExit(f"make_initramfs: mke2fs {path}: {res.stderr.strip()[-200:]}")
    return path


def apt(argv, cwd):
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"make_initramfs: {' '.join(argv)}: {last}")
    return res.stdout


def deb_member(deb, wanted):
    """(name, bytes) of the first file of a .deb whose path wanted(path) accepts."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                         check=True, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if member.isfile() and wanted(member.name):
                return pathlib.PurePath(member.name).name, archive.extractfile(member).read()
    raise SystemExit(f"make_initramfs: {deb.name} has no such file")


def download(package, folder):
    apt(["apt-get", "download", "-q", package], folder)
    return next(pathlib.Path(folder).glob(f"{package}_*.deb"))


def fetch_busybox(cache):
    """busybox-static's /bin/busybox, fetched once into cache."""
    cached = cache / "busybox"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            _, data = deb_member(download("busybox-static", tmp), lambda p: p.endswith("bin/busybox"))
        cached.write_bytes(data)
    return cached


def fetch_kernel(cache, flavour):
    """Debian's /boot/vmlinuz-* of linux-image-<flavour>, fetched once into cache."""
    # vmlinuz-6.1.0-NN-amd64, not vmlinuz-6.1.0-NN-cloud-amd64, for amd64
    shipped = re.compile(r"vmlinuz-[0-9.]+-[0-9]+-" + re.escape(flavour))
    cached = sorted(p for p in cache.glob("vmlinuz-*") if shipped.fullmatch(p.name))
    if cached:
        return cached[-1]
    meta = f"linux-image-{flavour}"
    depends = [line.split(":", 1)[1].strip() for line in apt(["apt-cache", "depends", meta], cache)
               .splitlines() if line.strip().startswith("Depends: linux-image-")]
    if not depends:
        raise SystemExit(f"make_initramfs: apt-cache names no kernel for {meta} (apt-get update?)")
    with tempfile.TemporaryDirectory() as tmp:
        name, data = deb_member(download(depends[0], tmp), lambda p: "/boot/vmlinuz-" in p)
    (cache / name).write_bytes(data)
    return cache / name


def fetch_modules(cache, kernel, names=MODULES):
    """{name: bytes} of the kernel's own modules (its package's
    drivers/.../NAME.ko), each fetched once into cache as NAME-RELEASE.ko."""
    release = pathlib.Path(kernel).name.removeprefix("vmlinuz-")
    cached = {name: cache / f"{name}-{release}.ko" for name in names}
    missing = [name for name in names if not cached[name].exists()]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            deb = download(f"linux-image-{release}", tmp)
            for name in missing:
                _, data = deb_member(deb, lambda p, n=name: p.endswith(MODULE_PATHS[n]))
                cached[name].write_bytes(data)
    return {name: path.read_bytes() for name, path in cached.items()}


def write_cfg(path, kernel, ramdisk, command, memory=256, name="linux", lines=(), root=None):
    """An xl.cfg booting kernel and ramdisk with command; lines: more of
    its lines (disk, vif, seclabel); root: the root= device."""
    extra = "console=hvc0 quiet" + (f" root={root}" if root else "") + \
        (f" -- {command}" if command else "")
    path.write_text(f'name = "{name}"\ntype = "pv"\nkernel = "{kernel}"\n'
                    f'ramdisk = "{ramdisk}"\nmemory = {memory}\nextra = "{extra}"\n' +
                    "".join(line + "\n" for line in lines))
    return path


def write_device_demo(out, kernel, busybox, modules):
    """The devices demo's cfgs (see the module's doc): its own initramfs
    with the modules, root.img and its cfg, and the two network guests'."""
    ramdisk = out / "initramfs-devices.cpio.gz"
    ramdisk.write_bytes(build_initramfs(busybox, module_entries(modules)))
    make_root_disk(out / "root.img", busybox)
    cfgs = [write_cfg(out / "root.cfg", kernel, ramdisk,
                      "echo written by the guest > /hello; cat /proc/mounts", name="linux-root",
                      root="/dev/xvda", lines=('seclabel = "linux-a"', "disk = [ 'format=raw, "
                                               "vdev=xvda, access=rw, seclabel=root, "
                                               f"target={out / 'root.img'}' ]"))]
    for me, peer, side in (("10.0.0.1", "10.0.0.2", "a"), ("10.0.0.2", "10.0.0.1", "b")):
        cfgs.append(write_cfg(out / f"net-{side}.cfg", kernel, ramdisk,
                              f"netup {me}; ping -c 3 -w 30 {peer}", memory=128,
                              name=f"linux-{side}", lines=(f'seclabel = "linux-{side}"',
                                                           "vif = [ 'bridge=lan' ]")))
    return cfgs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=pathlib.Path)
    parser.add_argument("--command", default="cat /proc/version",
                        help="what linux.cfg runs before it powers off (default: %(default)s)")
    parser.add_argument("--flavour", default="cloud-amd64", help="Debian kernel flavour")
    parser.add_argument("--kernel", type=pathlib.Path, help="use this kernel instead of fetching")
    parser.add_argument("--devices", action="store_true",
                        help="also the disk and network demo: root.cfg, net-a.cfg, net-b.cfg")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    cache = args.outdir.resolve()
    kernel = args.kernel.resolve() if args.kernel else fetch_kernel(cache, args.flavour)
    ramdisk = cache / "initramfs.cpio.gz"
    ramdisk.write_bytes(build_initramfs(fetch_busybox(cache).read_bytes()))
    shell = write_cfg(cache / "shell.cfg", kernel, ramdisk, "")
    command = write_cfg(cache / "linux.cfg", kernel, ramdisk, args.command)
    print(f"wrote {shell}: pyxenon run {shell}   (a busybox shell; poweroff -f to leave)")
    print(f"wrote {command}: pyxenon run {command}   (runs {args.command!r}, powers off)")
    if args.devices:
        root, net_a, net_b = write_device_demo(cache, kernel, fetch_busybox(cache).read_bytes(),
                                               fetch_modules(cache, kernel))
        policy = pathlib.Path(__file__).resolve().parent / "devices.toml"
        print(f"wrote {root}: pyxenon run --policy {policy} {root}   (an ext4 root disk)")
        print(f"wrote {net_a}, {net_b}: pyxenon run --policy {policy} {net_a} {net_b}"
              "   (ping each other over bridge lan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
