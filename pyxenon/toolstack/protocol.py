"""The toolstack's wire protocol: JSON lines over a Unix socket.

Where the socket lives (a per-user runtime folder), how a message is framed
and how a client reaches the host daemon, starting it when it is not there.

Framing: every message is one JSON object on one line, UTF-8, at most
MAX_LINE bytes.  A request names its operation in "op"; a reply carries
"ok" (true, with the result's fields, or false with a one-line "error").
After a successful "console" request the connection streams: the daemon
sends {"out": BASE64} for console bytes and {"end": REASON} when the domain
stops; the client sends {"op": "input", "data": BASE64}.  After a successful
"xenstore_watch" the daemon sends {"watch": PATH} each time the watch fires
and {"end": REASON} when it stops.  Byte strings (console data, XenStore
values) travel as base64.
"""
import base64
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time

MAX_LINE = 64 * 1024         # bytes in one message, newline included
SOCKET_NAME = "xend.sock"    # named after Xen's old host daemon
LOCK_NAME = "daemon.lock"
LOG_NAME = "daemon.log"
AUDIT_NAME = "audit.log"     # the MSM's decisions, one JSON object per line
POLICY_ENV = "PYXENON_POLICY"  # the policy a daemon started on demand enforces
START_TIMEOUT = 15.0         # seconds a client waits for a new daemon to answer


class ToolstackError(Exception):
    """A failure to report to the user in one line."""


# -- the runtime folder ----------------------------------------------------------

def runtime_dir():
    """$PYXENON_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pyxenon, else /tmp/pyxenon-UID."""
    chosen = os.environ.get("PYXENON_RUNTIME_DIR")
    if chosen:
        return os.path.abspath(chosen)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "pyxenon")
    return f"/tmp/pyxenon-{os.getuid()}"


def ensure_runtime_dir(path):
    """Create the folder (mode 0700) or check that an existing one is ours:
    under /tmp anyone could have made it first and watched our socket."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as e:
        raise ToolstackError(f"runtime folder {path}: {e.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ToolstackError(f"runtime folder {path} is not a directory")
    if info.st_uid != os.getuid():
        raise ToolstackError(f"runtime folder {path} belongs to another user")
    return path


def socket_path(folder=None):
    return os.path.join(folder or runtime_dir(), SOCKET_NAME)


def default_policy():
    """$PYXENON_POLICY (a policy file), or None when unset or empty."""
    return os.environ.get(POLICY_ENV) or None


def check_policy(path):
    """Load the policy file at path, so a malformed one is reported to the
    user who named it (UserInputError, one line), not in the daemon's log."""
    from .policy import load_policy

    return load_policy(path)


# -- framing ------------------------------------------------------------------

def encode(message):
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ToolstackError(f"message too long ({len(line)} bytes, limit {MAX_LINE})")
    return line


def decode(line):
    """A message from one line; ValueError with a one-line reason if malformed."""
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("request is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"request is not JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError("request is nested too deeply") from None
    if not isinstance(message, dict):
        raise ValueError("request is not a JSON object")
    return message


def b64(data):
    return base64.b64encode(bytes(data)).decode("ascii")


def unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


# -- the client side --------------------------------------------------------------

class Connection:
    """One client connection to the daemon."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def send(self, message):
        self.sock.sendall(encode(message))

    def receive(self):
        """The next message, or None when the daemon closed the connection."""
        message = self.pop()
        while message is None:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.feed(data)
            message = self.pop()
        return message

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > 4 * MAX_LINE and b"\n" not in self.buffer:
            raise ToolstackError("the daemon sent an over-long message")

    def pop(self):
        """The next whole message already received, or None."""
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return decode(line)
        except ValueError as e:
            raise ToolstackError(f"the daemon sent garbage: {e}") from None

    def request(self, op, **args):
        """Send one request; its reply's fields, or ToolstackError with the daemon's reason."""
        self.send({"op": op, **args})
        reply = self.receive()
        if reply is None:
            raise ToolstackError("the daemon closed the connection")
        if not reply.get("ok"):
            raise ToolstackError(str(reply.get("error", "request failed")))
        return reply

    def close(self):
        self.sock.close()


def try_connect(path):
    """A Connection to the daemon at path, or None if no daemon answers there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as e:
        sock.close()
        raise ToolstackError(f"cannot reach the daemon at {path}: {e.strerror}") from None
    return Connection(sock)


def connect(start=True):
    """A Connection to this user's daemon; started first if start and none
    runs (enforcing $PYXENON_POLICY, if set)."""
    folder = ensure_runtime_dir(runtime_dir())
    path = socket_path(folder)
    conn = try_connect(path)
    if conn is None and start:
        start_daemon(folder)
        conn = wait_for_daemon(path)
    if conn is None:
        raise ToolstackError(f"no daemon running (socket {path})")
    return conn


def start_daemon(folder, policy=None, console_log=None):
    """Start `pyxenon daemon run` in its own session, detached from this
    terminal, with its output going to the runtime folder's log.  policy
    (default $PYXENON_POLICY): the policy file it enforces, checked here
    first.  console_log: the folder of its guest-NAME.log files, if any
    (started on demand, it reads $PYXENON_CONSOLE_LOG, which it inherits)."""
    policy = policy or default_policy()
    command = [sys.executable, "-m", "pyxenon", "daemon", "run"]
    if policy:
        check_policy(policy)
        command += ["--policy", os.path.abspath(policy)]  # the daemon runs in /
    if console_log:
        command += ["--console-log"]    # its folder is in the runtime folder
    env = dict(os.environ, PYXENON_RUNTIME_DIR=folder)
    env.pop(POLICY_ENV, None)
    with open(os.path.join(folder, LOG_NAME), "ab") as log:
        subprocess.Popen(command,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         cwd="/", env=env, start_new_session=True, close_fds=True)


def wait_for_daemon(path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        conn = try_connect(path)
        if conn is not None:
            return conn
        time.sleep(0.05)
    raise ToolstackError(f"the daemon did not start (see {os.path.dirname(path)}/{LOG_NAME})")


# -- the daemon's listening sockets (xend.sock, xenstored's socket) ----------------

def peer_uid(sock):
    """The uid of the process at the other end (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def listening_socket(path):
    """A non-blocking Unix socket listening at path, mode 0600 from the
    start (umask), not after; a stale socket file there is replaced (the
    caller holds the daemon's lock, so no one else serves it)."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def close_listening(selector, sock, path):
    """Undo listening_socket: stop watching it, close it, remove its file."""
    selector.unregister(sock)
    sock.close()
    try:
        os.unlink(path)
    except OSError:
        pass


def send_some(sock, data):
    """What a non-blocking send of data took (0 when the peer is slow), or
    None when the peer is gone."""
    try:
        return sock.send(data) if data else 0
    except BlockingIOError:
        return 0
    except OSError:
        return None


def accept_waiting(listener, limit, admit):
    """Every connection waiting, up to limit (a burst must not fill the
    backlog); admit(sock) decides about each."""
    for _ in range(limit):
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        admit(sock)


def admissible(sock, make_room):
    """Only our own user (or root) may connect, and only if a slot is free
    (make_room may evict the longest-idle client); the socket is then
    made non-blocking, else closed."""
    if peer_uid(sock) not in (os.getuid(), 0) or not make_room():
        sock.close()
        return False
    sock.setblocking(False)
    return True


def request(op, **args):
    """One request to the daemon (started if need be); the reply's fields."""
    conn = connect(start=True)
    try:
        return conn.request(op, **{k: v for k, v in args.items() if v is not None})
    finally:
        conn.close()
