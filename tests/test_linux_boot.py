"""Debian's stock cloud kernel, as shipped, boots under pyxenon with a
busybox initramfs (examples/linux/make_initramfs.py) to its /init.

Booted once for the module; skipped, saying why, when the kernel or
busybox-static cannot be fetched with apt-get download."""
import importlib.util
import pathlib

import pytest

from test_kernelimage import cache_dir, debian_vmlinuz  # noqa: F401  (the session fixture)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOT_TIMEOUT = 60        # a good boot takes ~5 s; once (no second try)


def make_initramfs():
    spec = importlib.util.spec_from_file_location(
        "make_initramfs", ROOT / "examples" / "linux" / "make_initramfs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def linux(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    from linux_demo import boot_linux, linux_cfg   # (linux_demo imports this module)

    cfg = linux_cfg(debian_vmlinuz, tmp_path_factory.mktemp("linux"), "echo hello from linux")
    dom, outcome, _ = boot_linux(cfg, timeout=BOOT_TIMEOUT)
    return dom, outcome


def test_initramfs_is_newc_with_init():
    tool = make_initramfs()
    import gzip

    archive = gzip.decompress(tool.build_initramfs(b"\x7fELF busybox"))
    assert archive.startswith(b"070701") and b"TRAILER!!!" in archive
    assert b"init\0" in archive and b"#!/bin/busybox sh" in archive
    assert b"dev/console\0" in archive


def test_linux_boots_to_init(linux):
    dom, _ = linux
    assert "init: started" in dom.console_text, dom.console_text[-3000:]


def test_linux_runs_the_command_and_powers_off(linux):
    """The command forks (the shell's child: fork's page-table copy, exec),
    prints, and busybox's poweroff ends the domain cleanly."""
    dom, outcome = linux
    assert "init: running: echo hello from linux" in dom.console_text
    assert "\nhello from linux" in dom.console_text, dom.console_text[-3000:]
    assert "init: exit status 0" in dom.console_text
    assert dom.shutdown_reason == "poweroff" and dom.crash_report is None


def test_linux_takes_the_fifo_event_path(linux):
    """Linux's events_fifo.c: init_control succeeded, so every event of the
    boot went through the FIFO queues (its event array pages are held)."""
    dom, _ = linux
    assert dom.events.fifo is not None and dom.events.fifo.pages
    assert any(f.control_block is not None for f in dom.events.fifo.vcpus.values())
