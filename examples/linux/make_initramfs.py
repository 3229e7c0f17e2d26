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
default `cat /proc/version`, and powers off).  Debian's cloud-amd64
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
if [ $# -gt 0 ]; then
    echo "init: running: $*"
    sh -c "$*"
    echo "init: exit status $?"
    poweroff -f
fi
echo "init: busybox shell (poweroff -f to leave)"
exec setsid cttyhack sh
"""

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


def build_initramfs(busybox):
    """The gzip'd newc archive: /init, /bin/busybox, /bin/sh, /dev/console."""
    entries = [("bin", S_IFDIR | 0o755, b""), ("dev", S_IFDIR | 0o755, b""),
               ("proc", S_IFDIR | 0o755, b""), ("sys", S_IFDIR | 0o755, b""),
               ("bin/busybox", S_IFREG | 0o755, busybox),
               ("bin/sh", S_IFLNK | 0o777, b"busybox"),
               ("init", S_IFREG | 0o755, INIT)]
    archive = b"".join(cpio_entry(i + 1, *e) for i, e in enumerate(entries))
    # the kernel opens /dev/console for init before devtmpfs is mounted
    archive += cpio_entry(len(entries) + 1, "dev/console", S_IFCHR | 0o600, rdev=(5, 1))
    archive += cpio_entry(0, "TRAILER!!!", 0)
    return gzip.compress(archive + b"\0" * (-len(archive) % 512), mtime=0)


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


def write_cfg(path, kernel, ramdisk, command, memory=256):
    extra = "console=hvc0 quiet" + (f" -- {command}" if command else "")
    path.write_text(f'name = "linux"\ntype = "pv"\nkernel = "{kernel}"\n'
                    f'ramdisk = "{ramdisk}"\nmemory = {memory}\nextra = "{extra}"\n')
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=pathlib.Path)
    parser.add_argument("--command", default="cat /proc/version",
                        help="what linux.cfg runs before it powers off (default: %(default)s)")
    parser.add_argument("--flavour", default="cloud-amd64", help="Debian kernel flavour")
    parser.add_argument("--kernel", type=pathlib.Path, help="use this kernel instead of fetching")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
