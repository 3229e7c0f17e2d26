"""The daemon's request handling and xl's formats, in this process (no socket
server): a Daemon over a small Host, fed requests as lines."""
import json
import socket
import time

import pytest

from pyxenon.toolstack import daemon as xend
from pyxenon.toolstack import protocol, xl
from pyxenon.toolstack.host import Host


@pytest.fixture
def served(tmp_path):
    """A Daemon (not listening) and a connected client socket pair."""
    host = Host(memory_mib=256)
    d = xend.Daemon(str(tmp_path), host=host)
    ours, theirs = socket.socketpair()
    client = xend.Client(ours)
    d.clients[ours] = client
    d.selector.register(ours, 1, client)
    yield d, client, theirs
    theirs.close()
    d.close()


def ask(served, **message):
    d, client, _ = served
    d.serve_line(client, json.dumps(message).encode())
    replies = [json.loads(line) for line in bytes(client.outbuf).splitlines()]
    client.outbuf.clear()
    return replies


def test_requests_are_checked():
    with pytest.raises(xend.RequestError, match="unknown operation"):
        xend.check_request({"op": "format_disk"})
    with pytest.raises(xend.RequestError, match="domain must be str"):
        xend.check_request({"op": "pause", "domain": 1})
    with pytest.raises(xend.RequestError, match="a domain is required"):
        xend.check_request({"op": "destroy"})
    with pytest.raises(xend.RequestError, match="overrides must be strings"):
        xend.check_request({"op": "create", "cfg": "/x", "overrides": [{}]})
    assert xend.check_request({"op": "list"}) == ("list", {})


def test_decode_refuses_non_objects():
    for line in (b"\xff", b"nope", b"[]", b"1"):
        with pytest.raises(ValueError):
            protocol.decode(line)


def test_console_input_lands_in_the_ring(served, guests):
    d, client, _ = served
    [reply] = ask(served, op="create", cfg=str(guests / "hello.cfg"), paused=True, cwd="/")
    domain = d.machine.domains[reply["domid"]]
    [attached] = ask(served, op="console", domain="hello")
    assert attached == {"ok": True, "domid": domain.domid, "name": "hello"}
    assert ask(served, op="input", data=protocol.b64(b"ls\n")) == []   # streaming: no reply
    d.after_run()
    assert domain.console.ring.in_prod == 3


def test_console_ends_with_the_domain(served, guests):
    d, client, _ = served
    ask(served, op="create", cfg=str(guests / "hello.cfg"), paused=True, cwd="/")
    ask(served, op="console", domain="1")
    ask(served, op="unpause", domain="hello")
    deadline = time.monotonic() + 30
    while d.machine.domains and time.monotonic() < deadline:
        d.run_domains()
    d.end_consoles()
    messages = [json.loads(line) for line in bytes(client.outbuf).splitlines()]
    text = b"".join(protocol.unb64(m["out"]) for m in messages if "out" in m)
    assert text == b"Hello from the pyxenon hello guest's console ring\n"   # the ring alone
    assert "(d1) Hello from pyxenon hello guest" in d.dmesg.lines             # console_io
    assert messages[-1] == {"end": "poweroff"}


def test_override_paths_resolve_in_the_clients_folder(served, guests):
    replies = ask(served, op="create", cfg=str(guests / "hello.cfg"), paused=True,
                  overrides=['kernel="hello/hello.elf"', 'name="h2"'], cwd=str(guests))
    assert replies[0]["ok"], replies


def test_state_letters_and_list_line():
    row = {"name": "hello", "domid": 3, "mem_mib": 16, "vcpus": 1, "state": "--p---",
           "cpu_time": 1.25, "shutdown_code": None, "uuid": "0" * 8, "ssid_label": None}
    assert xl.list_line(row, verbose=False) == \
        "hello                                        3    16     1     --p---       1.2"


def test_uptime_text():
    assert xl.uptime_text(59) == " 0:00:59"
    assert xl.uptime_text(3 * 3600 + 61) == " 3:01:01"
    assert xl.uptime_text(86400 + 5) == "1 day,  0:00:05"
    assert xl.uptime_text(2 * 86400) == "2 days,  0:00:00"
