"""Real gdb against `pyxenon run --gdb`: held at the ELF entry, a step, a
breakpoint, on to a clean poweroff (skipped when gdb is not installed)."""
import re
import shutil
import subprocess
import sys

import pytest

from pyxenon.toolstack.elfimage import load_kernel
from test_kernelimage import debian_vmlinuz  # noqa: F401  (the session fixture)

GIVE_UP_S = 120       # a guard against a hang, not a measurement
STUB_LINE = re.compile(rb"gdb stub on 127\.0\.0\.1:(\d+)")


def start_debugged(cfg, *extra):
    """`pyxenon run --gdb 0 CFG`: the process and the port it serves."""
    run = subprocess.Popen([sys.executable, "-m", "pyxenon", "run", "--gdb", "0", *extra, str(cfg)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    for line in run.stderr:
        lines.append(line)
        found = STUB_LINE.search(line)
        if found:
            return run, int(found.group(1))
    run.wait(GIVE_UP_S)
    pytest.fail(f"no stub started: {b''.join(lines).decode(errors='replace')}")


def gdb_batch(port, elf, commands):
    argv = ["gdb", "-batch", "-nx", "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    return subprocess.run(argv + [str(elf)], capture_output=True, text=True, timeout=GIVE_UP_S)


@pytest.fixture
def gdb():
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed (apt-get install gdb)")


def test_gdb_steps_breaks_and_continues_to_poweroff(gdb, guests):
    elf = guests / "hello" / "hello.elf"
    entry = load_kernel(str(elf)).entry
    run, port = start_debugged(guests / "hello.cfg")
    try:
        out = gdb_batch(port, elf, [
            "p/x $rip", "stepi", "p/x $rip", "break guest_main", "continue",
            "p/x $rip", "p/x $pc == (long)&guest_main", "delete", "continue"])
        stdout, stderr = run.communicate(timeout=GIVE_UP_S)
    finally:
        run.kill()
    text = out.stdout
    values = re.findall(r"^\$\d+ = (0x[0-9a-f]+|\d+)$", text, re.M)
    assert values[0] == hex(entry), text + out.stderr
    assert int(values[1], 16) > entry
    assert "Breakpoint 1, " in text and "guest_main" in text
    assert values[3] == "0x1"
    assert "exited normally" in text
    assert run.returncode == 0, stderr.decode()
    assert b"Hello from pyxenon hello guest" in stdout


# -- Debian's Linux kernel ----------------------------------------------------------

def linux_symbols(vmlinuz, tmp_path):
    """An ELF of the kernel with its symbols: $PYXENON_VMLINUX_SYMBOLS, or
    made from the kernel's own kallsyms by vmlinux-to-elf (Debian's
    package carries no System.map, only a pointer to its -dbg package),
    cached beside the kernel."""
    import importlib.util
    import os

    given = os.environ.get("PYXENON_VMLINUX_SYMBOLS")
    if given:
        return given
    cached = vmlinuz.with_name(f"symbols-{vmlinuz.name}.elf")   # not vmlinuz-*: the fixture globs that
    if cached.exists():
        return str(cached)
    if importlib.util.find_spec("vmlinux_to_elf") is None:
        pytest.skip("Linux under gdb: no symbols (pip install vmlinux-to-elf, or set "
                    "PYXENON_VMLINUX_SYMBOLS to an ELF of the kernel with symbols)")
    from pyxenon.toolstack.kernelimage import unpack_kernel

    raw = tmp_path / "vmlinux"
    raw.write_bytes(unpack_kernel(str(vmlinuz), vmlinuz.read_bytes()).elf)
    subprocess.run([sys.executable, "-c", "from vmlinux_to_elf.scripts.vmlinux_to_elf "
                    "import main; main()", str(raw), str(cached)],
                   check=True, capture_output=True, timeout=600)
    return str(cached)


def test_gdb_stops_linux_at_start_kernel(gdb, debian_vmlinuz, tmp_path):  # noqa: F811
    import pathlib

    vmlinuz = pathlib.Path(debian_vmlinuz)
    symbols = linux_symbols(vmlinuz, tmp_path)
    cfg = tmp_path / "linux.cfg"
    cfg.write_text(f'name = "linux"\nkernel = "{vmlinuz}"\nmemory = 256\n'
                   'cmdline = "console=hvc0"\n')
    run, port = start_debugged(cfg)
    try:
        out = gdb_batch(port, symbols, ["p $pc == (long)&startup_xen", "break start_kernel",
                                        "continue", "p $pc == (long)&start_kernel", "bt 2",
                                        "kill"])
        run.communicate(timeout=GIVE_UP_S)
    finally:
        run.kill()
    values = re.findall(r"^\$\d+ = (\d+)$", out.stdout, re.M)
    assert values == ["1", "1"], out.stdout + out.stderr
    assert "in xen_start_kernel" in out.stdout


# -- a daemon domain ------------------------------------------------------------------

def test_xl_create_gdb_holds_the_domain_for_the_stub(xl, guests):
    """`xl create CFG gdb=0`: held, shown paused, until gdb lets it go."""
    import socket

    from pyxenon.toolstack.gdbpacket import Reader, frame

    res = xl("create", str(guests / "hello.cfg"), "gdb=0")
    port = int(STUB_LINE.search(res.stderr.encode()).group(1))
    row = next(line for line in xl("list").stdout.splitlines() if line.startswith("hello"))
    assert row.split()[4][2] == "p"
    with socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S) as sock:
        reader, events = Reader(), []
        sock.sendall(frame(b"?"))
        while not any(e.kind == "packet" for e in events):
            events += reader.feed(sock.recv(4096))
        assert [e.payload for e in events if e.kind == "packet"][0].startswith(b"T05")
        sock.sendall(frame(b"D"))
        while sock.recv(4096):
            pass
    xl.wait_gone("hello")
    assert "shut down: poweroff" in xl.dmesg()
