"""A command typed into Debian Linux's busybox shell, and its answer.

Debian's cloud kernel boots under `pyxenon run` with the shell initramfs
of examples/linux/make_initramfs.py (no --command: /init gives a shell on
hvc0); the test waits for the prompt, then writes `echo $((6*7))` and
`poweroff -f` to run's stdin, the path a terminal's keystrokes take
(toolstack/terminal.py into the console ring's in[]), and reads 42 back
from the guest's shell.  Booted once for the module; skipped, saying why,
when the kernel or busybox cannot be had."""
import os
import select
import subprocess
import sys

import pytest

from test_kernelimage import debian_vmlinuz  # noqa: F401  (the session fixture)
from linux_demo import linux_cfg

RUN_TIMEOUT = 60         # pyxenon run --timeout: a boot that hangs ends (a good one: ~20 s)
PROMPT = b"# "
TYPED = b"echo $((6*7))\npoweroff -f\n"


def boot_and_type(cfg):
    """(exit status, everything run printed, its stderr) of one boot, the
    two commands typed at the first prompt; None for a boot that never gave
    one or hung."""
    proc = subprocess.Popen([sys.executable, "-m", "pyxenon", "run", "--timeout",
                             str(RUN_TIMEOUT), str(cfg)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        seen, prompted = until_prompt(proc)
        if not prompted:
            print(f"Linux shell: no prompt; the end of the output: {seen[-600:]!r}")
            return None
        proc.stdin.write(TYPED)
        proc.stdin.close()                       # the input ends; the guest runs on
        out = read_to_end(proc.stdout)
        try:
            status = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:        # silent and not ending: hung
            print(f"Linux shell: hung after the input: {out[-600:]!r}")
            return None
        return status, (seen + out).decode(errors="replace"), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def read_to_end(pipe):
    out = b""
    while True:
        ready, _, _ = select.select([pipe], [], [], RUN_TIMEOUT)
        data = os.read(pipe.fileno(), 65536) if ready else b""
        if not data:
            return out
        out += data


def until_prompt(proc):
    """The output up to the shell's first prompt, and whether it came (or
    all of it, if run ended first)."""
    seen = b""
    while b"init: busybox shell" not in seen or \
            PROMPT not in seen.split(b"init: busybox shell", 1)[1]:
        ready, _, _ = select.select([proc.stdout], [], [], RUN_TIMEOUT)
        data = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if not data:
            return seen, False
        seen += data
    return seen, True


@pytest.fixture(scope="module")
def shell(debian_vmlinuz, tmp_path_factory):  # noqa: F811
    cfg = linux_cfg(debian_vmlinuz, tmp_path_factory.mktemp("linux-shell"), "")
    return boot_and_type(cfg)


def test_a_typed_command_is_answered_and_poweroff_ends_the_run(shell):
    assert shell is not None, "the shell never gave a prompt"
    status, out, err = shell
    lines = [line.rstrip("\r") for line in out.split("\n")]
    assert "42" in lines, out[-3000:]
    # the guest's tty echoed what was typed: it came in through in[]
    assert any(line.endswith("echo $((6*7))") for line in lines), out[-3000:]
    assert status == 0, err[-2000:]
    assert "Traceback" not in err
