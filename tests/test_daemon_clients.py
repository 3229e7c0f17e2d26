"""Clients cannot lock the toolstack out of the daemon: idle connections
(a request half sent, or nothing) time out, the longest idle one makes room
when every slot is taken, and a client that does not read what it is sent
is dropped once that passes a bound, never growing the daemon or blocking it."""
import json
import socket

import pytest

from pyxenon import Host
from pyxenon.toolstack import daemon as xend
from pyxenon.toolstack import protocol

TIMEOUT = 60


def connect(xl, payload=b""):
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(xl.folder / "xend.sock"))      # blocking: waits for room in the backlog
    s.settimeout(TIMEOUT)
    if payload:
        s.sendall(payload)
    return s


def closed_by_daemon(s):
    """True once the daemon has closed s (EOF); the socket timeout fails it."""
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_idle_connections_do_not_exhaust_the_slots(xl):
    """More idle and half-line connections than there are slots, none
    timing out (the timeout is an hour): a fresh `list` is still served."""
    xl.env[xend.TIMEOUT_ENV] = "3600"
    xl("daemon", "start")
    idle = [connect(xl, b'{"op": "li' if n % 2 else b"") for n in range(xend.MAX_CLIENTS + 20)]
    try:
        assert xl.names() == ["Domain-0"]
        assert xl("list").returncode == 0
        assert closed_by_daemon(idle[0])          # the longest idle made room
    finally:
        for s in idle:
            s.close()


def test_idle_connections_time_out_but_streams_stay(xl):
    xl.env[xend.TIMEOUT_ENV] = "0.5"
    xl("daemon", "start")
    watch = connect(xl, b'{"op": "xenstore_watch", "path": "/tool"}\n')
    lines = watch.makefile("rb")
    assert json.loads(lines.readline()) == {"ok": True}
    assert json.loads(lines.readline()) == {"watch": "/tool"}
    half, silent = connect(xl, b'{"op": "list"'), connect(xl)
    assert closed_by_daemon(half) and closed_by_daemon(silent)
    xl("xenstore", "write", "/tool/x", "1")          # the watch outlived them
    assert json.loads(lines.readline()) == {"watch": "/tool/x"}
    for s in (watch, half, silent):
        s.close()


@pytest.fixture
def daemon(tmp_path):
    d = xend.Daemon(str(tmp_path), host=Host(memory_mib=256))
    yield d
    d.close()


def test_a_console_nobody_reads_is_dropped_not_grown(daemon, guests):
    ours, theirs = socket.socketpair()
    client = xend.Client(ours)
    daemon.clients[ours] = client
    daemon.selector.register(ours, 1, client)
    made = daemon.op_create(None, cfg=str(guests / "hello.cfg"), paused=True)
    client.console = daemon.machine.domains[made["domid"]]
    for _ in range(64):                               # 4 MiB, base64: 5.3 MiB
        daemon.on_console(client.console, b"x" * 65536, "ring")
        assert len(client.outbuf) <= xend.MAX_OUTPUT
    assert client.overflow
    daemon.after_run()
    assert ours not in daemon.clients
    theirs.settimeout(TIMEOUT)
    received = b"".join(iter(lambda: theirs.recv(65536), b""))
    assert len(received) <= xend.MAX_OUTPUT
    theirs.close()


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(xend.TIMEOUT_ENV, "2.5")
    assert xend.client_timeout() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(xend.TIMEOUT_ENV, bad)
        assert xend.client_timeout() == xend.CLIENT_TIMEOUT
    assert protocol.MAX_LINE < xend.MAX_OUTPUT
