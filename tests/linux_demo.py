"""The Linux demo's pieces for the tests and benchmarks that boot Debian's
kernel: examples/linux's busybox initramfs and an xl.cfg for it."""
import pytest

from test_kernelimage import cache_dir
from test_linux_boot import make_initramfs


def linux_cfg(kernel, out, command, memory=256):
    """out/linux.cfg for kernel with out/initramfs.cpio.gz, whose /init
    runs command and powers off (a shell: ""); busybox-static is fetched
    once into the cache, and the caller skipped, saying so, without it."""
    tool = make_initramfs()
    ramdisk = out / "initramfs.cpio.gz"
    ramdisk.write_bytes(tool.build_initramfs(busybox()))
    return tool.write_cfg(out / "linux.cfg", kernel, ramdisk, command, memory)


def busybox():
    """busybox-static's binary, fetched once into the cache (the caller
    skipped, saying so, when it cannot be)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return make_initramfs().fetch_busybox(folder).read_bytes()
    except (SystemExit, OSError, StopIteration) as err:
        pytest.skip(f"Linux demo: busybox-static could not be fetched: {err}")


def devices_initramfs(kernel, out, scripts=()):
    """out/initramfs-devices.cpio.gz: the demo's initramfs with the kernel's
    own xen-blkfront and xen-netfront (fetched once into the cache; /init
    loads them) and scripts {name: text} at /; the caller skipped, saying
    so, without them."""
    tool = make_initramfs()
    try:
        modules = tool.fetch_modules(cache_dir(), kernel)
    except (SystemExit, OSError, StopIteration) as err:
        pytest.skip(f"Linux demo: the kernel's modules could not be fetched: {err}")
    extra = tool.module_entries(modules) + [(name, tool.S_IFREG | 0o755, text.encode())
                                            for name, text in dict(scripts).items()]
    ramdisk = out / "initramfs-devices.cpio.gz"
    ramdisk.write_bytes(tool.build_initramfs(busybox(), extra))
    return ramdisk


def boot_linux(cfg, timeout=60, **host_options):
    """Boot cfg once on a Host of its own: (domain, run outcome, and per
    vcpu (hypercalls, their digest), read before the domain went)."""
    from pyxenon import Host

    calls = []
    with Host(**host_options) as host:
        host.machine.destroy_listeners.append(lambda domain: calls.extend(
            (v.core.hypercalls, v.core.call_digest) for v in domain.vcpus))
        dom = host.create(str(cfg))
        outcome = host.run(timeout=timeout)
    return dom, outcome, calls
