"""xenstored's socket: the daemon's XenStore through the wire protocol, as
Debian's xenstore-utils (when installed), pyxs and raw clients speak it."""
import os
import shutil
import socket
import stat
import struct
import subprocess
import time

import pytest

from pyxenon.public import io

TIMEOUT = 30
HEADER = struct.Struct("<IIII")
UTILS = ("xenstore-read", "xenstore-write", "xenstore-ls", "xenstore-rm", "xenstore-watch",
         "xenstore-chmod")
needs_utils = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in UTILS),
    reason="Debian's xenstore-utils are not installed (apt-get install xenstore-utils)")


@pytest.fixture
def xsd(xl):
    """The running daemon's xenstored socket path."""
    xl("daemon", "start")
    return str(xl.folder / "xenstored" / "socket")


def tool(xsd, *argv, check=True):
    res = subprocess.run(argv, env={**os.environ, "XENSTORED_PATH": xsd},
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert not check or res.returncode == 0, res
    return res


class Raw:
    """A wire-protocol client on a plain socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.req = 0
        self.events = []        # watch events that came while awaiting a reply

    def send(self, kind, payload, tx_id=0, length=None):
        self.req += 1
        size = len(payload) if length is None else length
        self.sock.sendall(HEADER.pack(kind, self.req, tx_id, size) + payload)

    def recv_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def message(self):
        kind, req, tx_id, size = HEADER.unpack(self.recv_exact(HEADER.size))
        return kind, req, tx_id, self.recv_exact(size)

    def event(self):
        """The next watch event's payload."""
        if self.events:
            return self.events.pop(0)
        kind, _, _, payload = self.message()
        assert kind == io.XS_WATCH_EVENT, payload
        return payload

    def ask(self, kind, *strings, tx_id=0):
        """The reply's (type, payload) to a request of NUL-ended strings."""
        self.send(kind, b"".join(s + b"\0" for s in strings), tx_id)
        while True:
            got = self.message()
            if got[0] == io.XS_WATCH_EVENT:
                self.events.append(got[3])
            else:
                assert got[1:3] == (self.req, tx_id)
                return got[0], got[3]

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def test_socket_is_private_and_status_names_it(xl, xsd):
    assert stat.S_IMODE(os.stat(xsd).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(xsd)).st_mode) == 0o700
    assert f"xenstored {xsd}," in xl("daemon", "status").stdout


def test_raw_requests_errors_and_transactions(xsd):
    c = Raw(xsd)
    c.send(io.XS_WRITE, b"/tool/a")                      # no NUL after the path
    assert c.message()[::3] == (io.XS_ERROR, b"EINVAL\0")
    c.send(io.XS_WRITE, b"/tool/a\0v1")
    assert c.message()[::3] == (io.XS_WRITE, b"OK\0")
    assert c.ask(io.XS_READ, b"/tool/a") == (io.XS_READ, b"v1")
    assert c.ask(io.XS_READ, b"/tool/none") == (io.XS_ERROR, b"ENOENT\0")
    assert c.ask(io.XS_DIRECTORY, b"/tool") == (io.XS_DIRECTORY, b"a\0")
    assert c.ask(io.XS_MKDIR, b"/tool/d") == (io.XS_MKDIR, b"OK\0")
    assert c.ask(io.XS_SET_PERMS, b"/tool/d", b"n0", b"r3") == (io.XS_SET_PERMS, b"OK\0")
    assert c.ask(io.XS_GET_PERMS, b"/tool/d") == (io.XS_GET_PERMS, b"n0\0r3\0")
    assert c.ask(io.XS_GET_DOMAIN_PATH, b"7") == (io.XS_GET_DOMAIN_PATH, b"/local/domain/7\0")
    assert c.ask(io.XS_READ, b"name") == (io.XS_ERROR, b"ENOENT\0")   # under /local/domain/0
    assert c.ask(99, b"x") == (io.XS_ERROR, b"ENOSYS\0")
    kind, txid = c.ask(io.XS_TRANSACTION_START, b"")
    tx = int(txid.rstrip(b"\0"))
    c.send(io.XS_WRITE, b"/tool/t\0in-tx", tx_id=tx)
    assert c.message()[0] == io.XS_WRITE
    assert c.ask(io.XS_READ, b"/tool/t") == (io.XS_ERROR, b"ENOENT\0")
    assert c.ask(io.XS_TRANSACTION_END, b"T", tx_id=tx) == (io.XS_TRANSACTION_END, b"OK\0")
    assert c.ask(io.XS_READ, b"/tool/t") == (io.XS_READ, b"in-tx")
    assert c.ask(io.XS_RM, b"/tool") == (io.XS_RM, b"OK\0")
    assert c.ask(io.XS_READ, b"/tool/a") == (io.XS_ERROR, b"ENOENT\0")


def test_watch_events_on_the_socket_and_from_another_client(xsd):
    watcher, writer = Raw(xsd), Raw(xsd)
    assert watcher.ask(io.XS_WATCH, b"/tool", b"tok") == (io.XS_WATCH, b"OK\0")
    assert watcher.event() == b"/tool\0tok\0"  # fires at once
    writer.ask(io.XS_WRITE, b"/tool/x")
    assert watcher.event() == b"/tool/x\0tok\0"
    assert watcher.ask(io.XS_UNWATCH, b"/tool", b"tok") == (io.XS_UNWATCH, b"OK\0")
    assert watcher.ask(io.XS_UNWATCH, b"/tool", b"tok") == (io.XS_ERROR, b"ENOENT\0")


def test_oversized_message_closes_only_that_connection(xsd):
    """xenstored's handle_input: len > XENSTORE_PAYLOAD_MAX is a protocol
    error, and ignore_connection frees a socket connection (no reply)."""
    other, bad = Raw(xsd), Raw(xsd)
    assert other.ask(io.XS_WATCH, b"/tool", b"w")[0] == io.XS_WATCH
    bad.send(io.XS_WRITE, b"/tool/big\0", length=io.XENSTORE_PAYLOAD_MAX + 1)
    assert bad.closed()
    assert other.ask(io.XS_WRITE, b"/tool/still") == (io.XS_WRITE, b"OK\0")
    events = [other.event() for _ in range(2)]
    assert events == [b"/tool\0w\0", b"/tool/still\0w\0"]


def test_a_client_that_reads_nothing_blocks_no_one(xsd):
    """It floods requests whose replies it never reads: the daemon stops
    reading from it, and serves everyone else meanwhile."""
    hog, other = Raw(xsd), Raw(xsd)
    assert hog.ask(io.XS_WRITE, b"/tool/v", b"x" * 4000)[0] == io.XS_WRITE
    hog.sock.setblocking(False)
    request = HEADER.pack(io.XS_READ, 1, 0, 8) + b"/tool/v\0"
    for _ in range(20000):
        try:
            hog.sock.send(request)
        except BlockingIOError:
            break
    assert other.ask(io.XS_READ, b"/tool/v")[0] == io.XS_READ
    hog.sock.close()
    assert other.ask(io.XS_DIRECTORY, b"/tool") == (io.XS_DIRECTORY, b"v\0")


def test_a_half_sent_request_times_out_but_an_idle_watcher_stays(xl):
    xl.env["PYXENON_CLIENT_TIMEOUT"] = "0.5"
    xl("daemon", "start")
    path = str(xl.folder / "xenstored" / "socket")
    watcher, half = Raw(path), Raw(path)
    assert watcher.ask(io.XS_WATCH, b"/tool", b"w")[0] == io.XS_WATCH
    half.sock.sendall(HEADER.pack(io.XS_READ, 1, 0, 10) + b"/to")
    assert half.closed()
    time.sleep(1)
    assert Raw(path).ask(io.XS_WRITE, b"/tool/x")[0] == io.XS_WRITE
    assert [watcher.event(), watcher.event()] == [b"/tool\0w\0", b"/tool/x\0w\0"]


def test_introduce_release_and_is_domain_introduced(xl, xsd, guests):
    assert xl("create", "-q", "-p", str(guests / "hello.cfg")).returncode == 0
    c = Raw(xsd)
    assert c.ask(io.XS_IS_DOMAIN_INTRODUCED, b"1") == (io.XS_IS_DOMAIN_INTRODUCED, b"T\0")
    assert c.ask(io.XS_IS_DOMAIN_INTRODUCED, b"9") == (io.XS_IS_DOMAIN_INTRODUCED, b"F\0")
    # xenstored's do_introduce of a domain it knows: the connection reset, OK
    assert c.ask(io.XS_INTRODUCE, b"1", b"0", b"1") == (io.XS_INTRODUCE, b"OK\0")
    assert c.ask(io.XS_INTRODUCE, b"1", b"0", b"0") == (io.XS_ERROR, b"EINVAL\0")  # port 0
    assert c.ask(io.XS_INTRODUCE, b"9", b"0", b"1") == (io.XS_ERROR, b"EINVAL\0")  # no d9
    assert c.ask(io.XS_WATCH, b"@releaseDomain", b"r")[0] == io.XS_WATCH
    assert c.event() == b"@releaseDomain\0r\0"
    assert c.ask(io.XS_RELEASE, b"1") == (io.XS_RELEASE, b"OK\0")
    assert c.event() == b"@releaseDomain\0r\0"
    assert c.ask(io.XS_RELEASE, b"1") == (io.XS_ERROR, b"ENOENT\0")
    assert c.ask(io.XS_RELEASE, b"0") == (io.XS_ERROR, b"EINVAL\0")
    assert c.ask(io.XS_INTRODUCE, b"1", b"0", b"1") == (io.XS_INTRODUCE, b"OK\0")
    assert c.ask(io.XS_IS_DOMAIN_INTRODUCED, b"1") == (io.XS_IS_DOMAIN_INTRODUCED, b"T\0")


# -- Debian's xenstore-utils (libxenstore) -----------------------------------------

@needs_utils
def test_xenstore_utils_read_write_ls_rm_chmod(xsd):
    tool(xsd, "xenstore-write", "/tool/a", "hello", "/tool/b/c", "deep")
    assert tool(xsd, "xenstore-read", "/tool/a").stdout == "hello\n"
    assert tool(xsd, "xenstore-ls", "/tool").stdout == 'a = "hello"\nb = ""\n c = "deep"\n'
    tool(xsd, "xenstore-chmod", "/tool/a", "n0", "r1")
    assert "(n0,r1)" in tool(xsd, "xenstore-ls", "-p", "/tool").stdout
    missing = tool(xsd, "xenstore-read", "/tool/none", check=False)
    assert missing.returncode == 1 and "couldn't read path /tool/none" in missing.stderr
    tool(xsd, "xenstore-rm", "/tool/b")
    assert tool(xsd, "xenstore-ls", "/tool").stdout == 'a = "hello"\n'


@needs_utils
def test_xenstore_watch_sees_changes_and_a_new_domain(xl, xsd, guests):
    watch = subprocess.Popen(["xenstore-watch", "-n", "3", "/tool", "@introduceDomain"],
                             env={**os.environ, "XENSTORED_PATH": xsd},
                             stdout=subprocess.PIPE, text=True)
    try:
        assert sorted([watch.stdout.readline(), watch.stdout.readline()]) == \
            ["/tool\n", "@introduceDomain\n"]           # each fires once when set
        assert xl("create", "-q", "-p", str(guests / "hello.cfg")).returncode == 0
        assert watch.stdout.readline() == "@introduceDomain\n"
        assert watch.wait(TIMEOUT) == 0
    finally:
        watch.kill()
        watch.wait()


# -- PyPI's pyxs ---------------------------------------------------------------------

def test_pyxs_reads_writes_lists_watches_and_sets_perms(xsd):
    pyxs = pytest.importorskip("pyxs", reason="pyxs is in the test extra: pip install -e '.[test]'")
    with pyxs.Client(unix_socket_path=xsd) as c:
        c.write(b"/tool/p", b"v")
        assert c.read(b"/tool/p") == b"v"
        assert c.list(b"/tool") == [b"p"]
        c.set_perms(b"/tool/p", [b"n0", b"r2"])
        assert c.get_perms(b"/tool/p") == [b"n0", b"r2"]
        assert c.get_domain_path(3) == b"/local/domain/3"
        assert c.exists(b"/tool/p") and not c.exists(b"/tool/q")
        c.transaction()
        c.write(b"/tool/t", b"1")
        assert c.commit()
        assert c.read(b"/tool/t") == b"1"
        with pytest.raises(pyxs.PyXSError):
            c.read(b"/tool/none")
        m = c.monitor()
        m.watch(b"/tool", b"tok")
        events = m.wait()
        assert next(events) == (b"/tool", b"tok")
        with pyxs.Client(unix_socket_path=xsd) as other:
            other.write(b"/tool/w", b"x")
        assert next(events) == (b"/tool/w", b"tok")
        m.unwatch(b"/tool", b"tok")
        c.delete(b"/tool")
        assert not c.exists(b"/tool")
