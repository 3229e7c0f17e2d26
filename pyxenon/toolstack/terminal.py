"""Interactive consoles: the user's terminal in raw mode while a console is
attached, and the host's input for a domain's PV console ring.

`xl console` (and `xl create -c`) talk to the daemon; `pyxenon run` feeds
the ring itself, between scheduler slices.  Both follow Xen's console
client (tools/console/client/main.c): stdin in raw mode for the console's
lifetime (init_term, cfmakeraw), restored on the way out, also on SIGTERM
(restore_term, its sighandler); a read of the single byte Ctrl-] (0x1d,
ESCAPE_CHARACTER) detaches.  In raw mode Ctrl-C is a byte for the guest,
as there.  Output processing stays on (cfmakeraw clears OPOST too), so a
guest that ends its lines with "\\n" alone does not staircase.
"""
import os
import select
import signal
import sys
import time

DETACH = b"\x1d"          # Ctrl-], xl console's ESCAPE_CHARACTER
READ_SIZE = 4096          # bytes read from stdin at a time
MAX_PENDING = 64 * 1024   # host input queued for a full ring; stdin is not read past it
INPUT_SLICE = 0.02        # seconds of guest time between looks at stdin
HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
DETACHED = ("pyxenon: console detached: the domains run on without console input "
            "(Ctrl-C ends the run)")


def stdin_fd(stream=None):
    """The file descriptor of stream (default sys.stdin), or None when
    there is none to read (closed, replaced by one without a descriptor,
    or a terminal of which this process is in the background)."""
    stream = sys.stdin if stream is None else stream
    try:
        fd = stream.fileno() if stream is not None else None
    except (OSError, ValueError):
        return None
    return fd if fd is None or not background(fd) else None


def background(fd):
    """Whether fd is a terminal this process does not have in the
    foreground (`pyxenon run ... &`): reading it, or changing its mode,
    would stop the process (SIGTTIN, SIGTTOU), so it is not touched."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False


class Terminal:
    """A terminal fd in raw mode between enter() and restore(); anything
    else is left alone.  restore() may be called more than once (from a
    signal handler, then on the way out)."""

    def __init__(self, fd):
        self.fd = fd if fd is not None and os.isatty(fd) else None
        self.saved = None

    @property
    def raw(self):
        return self.saved is not None

    def enter(self):
        if self.fd is None:
            return self
        import termios
        import tty

        try:
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
            mode = termios.tcgetattr(self.fd)
            mode[1] = self.saved[1]            # output processing as it was
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        except termios.error:
            self.saved = None                  # not ours to change (a background job)
        return self

    def restore(self):
        if self.saved is None:
            return
        import termios

        saved, self.saved = self.saved, None
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        except termios.error:
            pass                               # the terminal went away (SIGHUP)


class Signals:
    """SIGTERM, SIGHUP and SIGINT while a console is attached: the terminal
    is restored at once.  SIGTERM and SIGHUP then take their default
    action (the process ends by the signal, as it would without a
    console, even with the engine stuck in a slice).  SIGINT becomes
    KeyboardInterrupt -- raised from the handler only when safe() says so
    (never inside the engine, whose callbacks would swallow it), else by
    check() once the slice is over; a second one while that waits ends the
    process as SIGINT's default action does."""

    def __init__(self, terminal, safe=lambda: True):
        self.terminal = terminal
        self.safe = safe
        self.caught = False
        self.previous = {}

    def __enter__(self):
        for signum in HANDLED:
            try:
                self.previous[signum] = signal.signal(signum, self.handler)
            except ValueError:                 # not the main thread: leave them
                break
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def handler(self, signum, frame):
        self.terminal.restore()
        if signum != signal.SIGINT or self.caught:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.caught = True
        if self.safe():
            self.check()

    def check(self):
        if self.caught:
            self.caught = False
            raise KeyboardInterrupt


class ConsoleInput:
    """Host input for one domain's console ring, as xenconsoled's
    handle_tty_read: bytes read from fd go into in[] no faster than
    ring_free_bytes allows, the rest queued (at most MAX_PENDING; past
    that stdin is not read until the guest takes some).  EOF ends the
    input, never the run; on a raw terminal a read of Ctrl-] alone detaches."""

    def __init__(self, fd, terminal):
        self.fd = fd
        self.terminal = terminal
        self.pending = bytearray()
        self.open = fd is not None
        self.detached = False

    def poll(self, timeout=0.0):
        """Read what stdin has (waiting up to timeout seconds for it)."""
        if not self.open or len(self.pending) >= MAX_PENDING:
            if timeout:
                time.sleep(timeout)
            return
        data = self.read(timeout)
        if data is None:
            return
        if not data or (self.terminal.raw and data == DETACH):
            self.open = False
            self.detached = bool(data)
            return
        self.pending += data

    def read(self, timeout):
        """stdin's bytes, b"" at its end, None when it has none yet."""
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            return os.read(self.fd, READ_SIZE) if ready else None
        except BlockingIOError:
            return None
        except OSError:            # EIO from a hung-up terminal, EBADF: as EOF
            return b""

    def feed(self, console):
        """Put what fits into console's in[] (a ConsoleBackend, or None
        when the domain has gone: its input is dropped)."""
        if console is None:
            self.pending.clear()
        elif self.pending:
            del self.pending[:console.feed(self.pending)]

    def could_wake(self, console):
        """Whether input may still reach a guest blocked on its console."""
        return console is not None and console.room() > 0 and bool(self.open or self.pending)


# -- pyxenon run -------------------------------------------------------------

def run_with_console(host, domains, timeout, writer, stream=None):
    """host.run(timeout), with stdin (stream) typed into the console of the
    first domain (and of its restarts); the other domains get none.  On a
    terminal: raw mode, the prompt shown as it comes, Ctrl-] detaches (the
    run goes on without input and the terminal is itself again).  Without
    a readable stdin, the plain run."""
    fd = stdin_fd(stream)
    if fd is None or not domains:
        return host.run(timeout=timeout)
    terminal = Terminal(fd)
    source = ConsoleInput(fd, terminal)
    config = domains[0].config
    try:
        with Signals(terminal, safe=lambda: not host.machine.in_engine) as signals:
            terminal.enter()
            return input_loop(host, lambda: console_of(host, config), source, signals, writer,
                              timeout)
    finally:
        terminal.restore()


def console_of(host, config):
    """The console backend of the live domain made from config, or None."""
    for domain in host.machine.domains.values():
        if domain.config is config:
            return domain.console
    return None


def input_loop(host, target, source, signals, writer, timeout=None):
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        source.poll()
        note_detach(source)
        console = target()
        source.feed(console)
        outcome = host.run(timeout=slice_until(end))
        signals.check()
        if console is not None:
            writer.show_partial(console.domain.domid)
        if outcome == "idle" or (end is not None and time.monotonic() >= end):
            return outcome
        if outcome == "blocked":
            if not source.could_wake(target()):
                return outcome
            source.poll(slice_until(end))      # the guests wait for a keystroke


def note_detach(source):
    if source.detached:
        source.detached = False
        source.terminal.restore()
        print(DETACHED, file=sys.stderr, flush=True)


def slice_until(end):
    if end is None:
        return INPUT_SLICE
    return max(0.0, min(INPUT_SLICE, end - time.monotonic()))
