"""Interactive consoles (toolstack/terminal.py): what is typed reaches the
guest's console ring, as xenconsoled's handle_tty_read puts it there.

guests/consoleecho answers each byte of its console input (letters
upper-cased, control bytes as ^X, Ctrl-D powers it off), so every test
sees its input come back from the guest itself.  The pty tests drive
`pyxenon run` and `xl console` on a real terminal: raw mode while the
console is attached, restored on every way out, Ctrl-] detaching."""
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from test_toolstack_daemon import TIMEOUT

RAW_OFF = termios.ICANON | termios.ECHO | termios.ISIG   # local modes raw mode clears


def run_argv(guests):
    return [sys.executable, "-m", "pyxenon", "run", str(guests / "consoleecho.cfg")]


# -- the ring's input side, hostile indexes ---------------------------------------

@pytest.fixture
def echo(guests):
    from pyxenon import Host

    with Host() as host:
        yield host, host.create(str(guests / "consoleecho.cfg"))


def test_host_api_input_reaches_the_guest(echo):
    host, dom = echo
    assert host.run(timeout=TIMEOUT) == "blocked"           # waiting for input
    assert dom.console.feed(b"ab\x03\r\x04") == 5
    host.run(timeout=TIMEOUT)
    assert dom.console_text == "consoleecho: ready\nAB^C\n\nconsoleecho: bye\n"
    assert dom.shutdown_reason == "poweroff"


@pytest.mark.parametrize("cons, prod", [(0, 2048), (5, 4), (0xFFFFFFFF, 1024)])
def test_a_broken_input_ring_gets_nothing(echo, cons, prod):
    """Both indexes are the guest's: a producer more than a ring ahead of
    in_cons (ring_free_bytes: "ring is screwed") gets no byte."""
    _, dom = echo
    ring = dom.console.ring
    ring.in_cons, ring.in_prod = cons, prod
    assert dom.console.room() == 0 and dom.console.feed(b"x") == 0
    assert (ring.in_cons, ring.in_prod) == (cons, prod)


def test_input_wraps_around_the_ring(echo):
    from pyxenon.backends.console import IN_SIZE

    _, dom = echo
    ring = dom.console.ring
    ring.in_cons = ring.in_prod = 0xFFFFFFFF - 1               # two bytes before the wrap
    assert dom.console.room() == IN_SIZE
    assert dom.console.feed(b"abcd") == 4 and ring.in_prod == 2
    assert dom.console.room() == IN_SIZE - 4


# -- piped stdin ---------------------------------------------------------------------

def test_piped_input_reaches_the_guest(guests):
    res = subprocess.run(run_argv(guests), input=b"hello\x03\x04", capture_output=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"consoleecho: ready\nHELLO^C\nconsoleecho: bye\n"


def test_piped_input_ending_does_not_hang(guests):
    """EOF ends the input, not the guest: it waits on, blocked, and the run
    ends saying so (exit 1), as a run of a guest that waits on nothing does."""
    res = subprocess.run(run_argv(guests), input=b"hi\n", capture_output=True,
                         timeout=TIMEOUT)
    assert res.returncode == 1
    assert res.stdout == b"consoleecho: ready\nHI\n"
    assert b"domain consoleecho: still running (blocked)" in res.stderr


def test_ctrl_c_on_a_piped_run_ends_it(guests):
    """Not a terminal: SIGINT is Ctrl-C's, and ends the run (exit 130)
    once the slice it came in has ended, without a traceback."""
    proc = subprocess.Popen(run_argv(guests), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"consoleecho: ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 130
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_no_stdin_at_all(guests):
    res = subprocess.run(run_argv(guests), stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=TIMEOUT)
    assert res.returncode == 1 and res.stdout == b"consoleecho: ready\n"


# -- a real terminal -------------------------------------------------------------------

# Runs argv (sys.argv[1:]) as a background job of the pty on stdin: this
# launcher takes the pty as its controlling terminal, so its own group is
# the foreground one, and starts argv in a process group of its own.
BACKGROUND_JOB = """
import fcntl, os, sys, termios
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execv(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class Pty:
    """A program on the slave side of a pty (stdin and stdout), stderr piped."""

    def __init__(self, argv, env=None, foreground=True):
        self.master, self.slave = pty.openpty()
        self.original = termios.tcgetattr(self.slave)
        if not foreground:
            argv = [sys.executable, "-c", BACKGROUND_JOB, *argv]
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=subprocess.PIPE, env=env,
                                     start_new_session=foreground)
        self.seen = b""

    def mode(self):
        return termios.tcgetattr(self.slave)

    def is_raw(self):
        return not self.mode()[3] & RAW_OFF

    def type(self, data):
        os.write(self.master, data)

    def read_until(self, text):
        """The terminal's output up to text (a hang guard, not a timing check)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in self.seen:
            assert time.monotonic() < deadline, self.seen
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                self.seen += os.read(self.master, 4096)
        return self.seen

    def wait(self):
        rc = self.proc.wait(timeout=TIMEOUT)
        self.stderr = self.proc.stderr.read().decode()
        return rc

    def stderr_until(self, text):
        got = b""
        while text.encode() not in got:
            line = self.proc.stderr.readline()
            assert line, got
            got += line
        return got.decode()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


def test_a_run_in_the_background_leaves_the_terminal_alone(guests):
    """`pyxenon run ... &` from a shell: its stdin is a terminal of another
    process group, which it must neither read nor put in raw mode (either
    would stop it); it runs as without input."""
    term = Pty(run_argv(guests), foreground=False)
    try:
        term.read_until(b"consoleecho: ready")
        assert term.mode() == term.original
        assert term.wait() == 1 and "still running (blocked)" in term.stderr
    finally:
        term.close()


@pytest.fixture
def terminal_run(guests):
    term = Pty(run_argv(guests))
    yield term
    term.close()


def test_run_on_a_terminal_is_raw_and_restored_at_the_end(terminal_run):
    """Raw mode: Ctrl-C is a byte for the guest (it answers ^C), no signal;
    the guest's poweroff ends the run, exit 0, the terminal as it was."""
    t = terminal_run
    t.read_until(b"consoleecho: ready")
    assert t.is_raw()
    t.type(b"ab\x03")
    t.read_until(b"AB^C")
    assert t.proc.poll() is None              # Ctrl-C did not end pyxenon
    t.type(b"\x04")
    assert t.wait() == 0, t.stderr
    assert t.read_until(b"consoleecho: bye")
    assert t.mode() == t.original


def test_run_detach_then_sigterm(guests, tmp_path):
    """Ctrl-] detaches: the terminal is itself again at once, the guest (one
    that wakes every 10 ms) runs on without input; SIGTERM then ends the
    run, by the signal."""
    cfg = tmp_path / "ticking.cfg"
    cfg.write_text((guests / "consoleecho.cfg").read_text().replace(
        '"consoleecho/', f'"{guests}/consoleecho/') + 'extra = "tick-ms=10"\n')
    t = Pty(run_argv(guests)[:-1] + [str(cfg)])
    try:
        detach_then_sigterm(t)
    finally:
        t.close()


def detach_then_sigterm(t):
    t.read_until(b"consoleecho: ready")
    t.type(b"x")
    t.read_until(b"X")
    t.type(b"\x1d")
    assert "console detached" in t.stderr_until("console detached")
    assert t.mode() == t.original and t.proc.poll() is None
    t.proc.send_signal(signal.SIGTERM)
    assert t.wait() == -signal.SIGTERM
    assert "Traceback" not in t.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_run_killed_in_raw_mode_restores_the_terminal(terminal_run, signum):
    t = terminal_run
    t.read_until(b"consoleecho: ready")
    assert t.is_raw()
    t.proc.send_signal(signum)
    assert t.wait() == -signum                # the signal's own end, the terminal restored
    assert t.mode() == t.original
    assert "Traceback" not in t.stderr


def test_xl_console_on_a_terminal_detaches_and_the_domain_runs_on(xl, guests):
    xl("create", "-q", str(guests / "consoleecho.cfg"))
    t = Pty([xl.program, "console", "consoleecho"], env=xl.env)
    try:
        t.read_until(b"consoleecho: ready")   # the backlog, sent on attach
        assert t.is_raw()
        t.type(b"hi")
        t.read_until(b"HI")
        t.type(b"\x1d")
        assert t.wait() == 0, t.stderr
        assert t.mode() == t.original
    finally:
        t.close()
    assert "consoleecho" in xl.names()        # detached, not destroyed
    # piped, not a terminal: the bytes go through, Ctrl-] among them
    res = subprocess.run([xl.program, "console", "consoleecho"], input=b"\x1d\x04",
                         capture_output=True, env=xl.env, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.endswith(b"HI^]\nconsoleecho: bye\n"), res.stdout
    xl.wait_gone("consoleecho")


def test_xl_console_sigterm_restores_the_terminal(xl, guests):
    xl("create", "-q", str(guests / "consoleecho.cfg"))
    t = Pty([xl.program, "console", "consoleecho"], env=xl.env)
    try:
        t.read_until(b"consoleecho: ready")
        assert t.is_raw()
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == -signal.SIGTERM
        assert t.mode() == t.original
    finally:
        t.close()
    assert "consoleecho" in xl.names()
