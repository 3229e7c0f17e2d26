"""Real gdb against `pyxenon run --gdb`: held at the ELF entry, a step, a
breakpoint, on to a clean poweroff (skipped when gdb is not installed)."""
import re
import shutil
import subprocess
import sys

import pytest

from pyxenon.toolstack.elfimage import load_kernel

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
