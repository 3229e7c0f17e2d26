"""The host daemon under a policy: given when it starts (`daemon start
--policy`, $PYXENON_POLICY), shown by `info`, every decision written to
audit.log and read back by `pyxenon audit`; and the new requests' checks.

Two kinds of daemon: a real one (a process, started by the commands) and
one in this test's process, served between the steps of the test, so that
host-level calls can make two domains bind an event channel while the
commands talk to it over its socket.
"""
import json
import os
import pathlib
import socket
import struct
import subprocess
import time

import pytest

from pyxenon.public import event_channel as ev, xen
from pyxenon.hypervisor.guestmem import copy_from_guest, copy_to_guest
from pyxenon.toolstack import daemon as xend
from pyxenon.toolstack import protocol
from pyxenon.toolstack.host import Host
from test_toolstack_daemon import TIMEOUT, make_script, tool_env

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "policies" / "ping-pong.toml"
SELF = 0x7FF0


def info_fields(xl):
    return {k.strip(): v for k, v in (line.split(" : ", 1)
                                      for line in xl("info").stdout.splitlines())}


# -- a real daemon, with and without a policy -------------------------------------------

def test_daemon_start_with_policy_and_info_shows_it(xl):
    res = xl("daemon", "start", "--policy", str(DEMO))
    assert res.stdout.endswith(f", policy {DEMO}\n")
    assert info_fields(xl)["xen_policy"] == f"{DEMO} (3 labels, 3 rules)"
    assert xl("info", "xen_policy").stdout == f"{DEMO} (3 labels, 3 rules)\n"
    assert f"policy: {DEMO} (3 labels, 3 rules)" in xl.dmesg()
    assert (xl.folder / "audit.log").exists()
    assert oct((xl.folder / "audit.log").stat().st_mode & 0o777) == "0o600"


def test_daemon_without_policy_says_what_that_means(xl):
    xl("daemon", "start")
    assert xl("info", "xen_policy").stdout == "none (inter-domain paths refused)\n"
    assert xl("daemon", "status").stdout.endswith(", policy none\n")


def test_relative_policy_path_is_made_absolute(xl):
    res = subprocess.run([xl.program, "daemon", "start", "--policy",
                          "examples/policies/ping-pong.toml"], cwd=ROOT, env=xl.env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert xl("info", "xen_policy").stdout.startswith(f"{DEMO} (")


def test_policy_is_fixed_at_start(xl, tmp_path):
    xl("daemon", "start", "--policy", str(DEMO))
    xl("daemon", "start", "--policy", str(DEMO))          # the same: fine
    xl("daemon", "start")                                 # no wish: fine
    other = tmp_path / "other.toml"
    other.write_text(DEMO.read_text())
    res = xl("daemon", "start", "--policy", str(other), check=False)
    assert res.returncode == 1
    pid = xl("daemon", "status").stdout.split()[4].rstrip(",")
    assert res.stderr == (f"pyxenon: the daemon (pid {pid}) already enforces {DEMO}; "
                          "`daemon stop` it to change the policy\n")


def test_malformed_policy_starts_nothing(xl, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n\n[labels]\nping = "a"\n[[allow]]\nfrom = "ping"\nto = "pong"\n'
                   'paths = ["event_channel"]\n')
    res = xl("daemon", "start", "--policy", str(bad), check=False)
    assert res.returncode == 2
    assert res.stderr == f"pyxenon: {bad}:7: undeclared label 'pong' (declare it under [labels])\n"
    assert not (xl.folder / "xend.sock").exists()
    res = xl("daemon", "start", "--policy", str(tmp_path / "missing.toml"), check=False)
    assert res.returncode == 2 and "missing.toml: cannot read policy" in res.stderr


def test_policy_option_only_with_start_or_run(xl):
    res = xl("daemon", "status", "--policy", str(DEMO), check=False)
    assert res.returncode == 2
    assert res.stderr == "pyxenon: daemon status: --policy goes with start or run\n"


def test_on_demand_start_uses_the_environment(xl, guests):
    xl.env["PYXENON_POLICY"] = str(DEMO)
    xl("create", "-q", "-p", str(guests / "hello.cfg"))   # starts the daemon
    assert xl("info", "xen_policy").stdout == f"{DEMO} (3 labels, 3 rules)\n"
    xl("daemon", "stop")
    xl.env["PYXENON_POLICY"] = str(ROOT / "no-such-policy.toml")
    res = xl("list", check=False)
    assert res.returncode == 2 and "no-such-policy.toml: cannot read policy" in res.stderr
    assert not (xl.folder / "xend.sock").exists()


def test_daemon_run_refuses_a_bad_policy(xl, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 2\n")
    res = xl("daemon", "run", "--policy", str(bad), check=False)
    assert res.returncode == 2
    assert res.stderr == f"pyxenon: {bad}:1: unsupported policy version 2 " \
                         "(this pyxenon reads version 1)\n"


def test_audit_without_a_log(xl):
    res = xl("audit", check=False)
    assert res.returncode == 1
    assert res.stderr == (f"pyxenon: no audit log at {xl.folder}/audit.log "
                          "(the daemon writes it while it runs)\n")


@pytest.mark.parametrize("args", [("-n", "0"), ("-n", "x"), ("-n", "-3"), ("-n", "2", "-a"),
                                  ("extra",)])
def test_audit_usage_errors(xl, args):
    res = xl("audit", *args, check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr


# -- a daemon in this process, served while commands run ------------------------------

class Served:
    """A Daemon listening in folder, served whenever a command waits on it."""

    def __init__(self, folder, program, policy):
        os.makedirs(folder, mode=0o700)
        self.daemon = xend.Daemon(str(folder), policy=policy)
        self.daemon.listen()
        self.folder = folder
        self.program = program
        self.env = tool_env(folder)

    def __call__(self, *args, check=True):
        """Run `pyxenon ARGS`, serving the daemon until it exits."""
        proc = subprocess.Popen([self.program, *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:
            assert time.monotonic() < deadline, args
            self.step()
        out, err = proc.communicate()
        assert "Traceback" not in err, err
        if check:
            assert proc.returncode == 0, (args, out, err)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def step(self):
        self.daemon.poll(0.01)
        self.daemon.run_domains()
        self.daemon.after_run()

    def create(self, name, guests):
        reply = self.daemon.op_create(None, cfg=str(guests / "hello.cfg"), paused=True,
                                      overrides=[f'name="{name}"', f'seclabel="{name}"'])
        return self.daemon.machine.domains[reply["domid"]]

    def audit_records(self):
        text = (self.folder / "audit.log").read_text()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def served(tmp_path, guests):
    s = Served(tmp_path / "run", make_script(tmp_path / "bin"), str(DEMO))
    yield s
    s.daemon.stop_domains()
    s.daemon.close()


def evtchn(hypercall, dom, cmd, fmt, *fields):
    """An event_channel_op from dom, its struct on dom's stack: (rc, struct out)."""
    va = dom.layout.stack + 4096
    copy_to_guest(dom.vcpus[0], va, struct.pack(fmt, *fields))
    rc = hypercall(dom, xen.HYPERVISOR_event_channel_op, cmd, va)
    return rc, struct.unpack(fmt, copy_from_guest(dom.vcpus[0], va, struct.calcsize(fmt)))


def test_binding_domains_fill_the_audit_log(served, guests, hypercall):
    ping, pong, intruder = (served.create(n, guests) for n in ("ping", "pong", "intruder"))
    rc, (_, _, port) = evtchn(hypercall, ping, ev.EVTCHNOP_alloc_unbound, "<HHI", SELF,
                              pong.domid, 0)
    assert rc == 0
    rc, _ = evtchn(hypercall, pong, ev.EVTCHNOP_bind_interdomain, "<HxxII", ping.domid, port, 0)
    assert rc == 0
    rc, _ = evtchn(hypercall, intruder, ev.EVTCHNOP_alloc_unbound, "<HHI", SELF, ping.domid, 0)
    assert rc == -13                                       # EACCES: no rule names intruder
    records = served.audit_records()
    assert [(r["operation"], r["subject"]["name"], r["object"]["name"], r["decision"])
            for r in records] == [
        ("event_channel:alloc_unbound", "ping", "pong", "allow"),
        ("event_channel:bind_interdomain", "pong", "ping", "allow"),
        ("event_channel:alloc_unbound", "intruder", "ping", "deny")]
    assert records[2]["rule"] == "default deny"
    # `pyxenon audit` prints the last lines as they are in the file
    lines = (served.folder / "audit.log").read_text().splitlines()
    assert served("audit").stdout.splitlines() == lines
    assert served("audit", "-n", "1").stdout == lines[-1] + "\n"
    assert served("info", "xen_policy").stdout == f"{DEMO} (3 labels, 3 rules)\n"
    assert not served.daemon.machine.audit_log             # to the file, not kept in memory


def test_audit_log_rotates(tmp_path):
    log = xend.AuditLog(str(tmp_path / "audit.log"), limit=400)
    for n in range(10):
        log({"n": n, "pad": "x" * 50})
    log.close()
    old = (tmp_path / "audit.log.1").read_text().splitlines()
    new = (tmp_path / "audit.log").read_text().splitlines()
    assert 0 < (tmp_path / "audit.log").stat().st_size < 400
    assert [json.loads(line)["n"] for line in old + new][-len(old + new):] == \
        list(range(10 - len(old + new), 10))


def test_audit_reads_the_rotated_file_first(xl, tmp_path):
    xl.folder.mkdir(mode=0o700)
    (xl.folder / "audit.log.1").write_text('{"n": 1}\n{"n": 2}\n')
    (xl.folder / "audit.log").write_text('{"n": 3}\n')
    assert xl("audit", "-a").stdout == '{"n": 1}\n{"n": 2}\n{"n": 3}\n'
    assert xl("audit", "-n", "2").stdout == '{"n": 2}\n{"n": 3}\n'


# -- the requests -----------------------------------------------------------------

@pytest.mark.parametrize("message, error", [
    ({"op": "xenstore_read"}, "xenstore_read: a path is required"),
    ({"op": "xenstore_write", "path": "/a"}, "xenstore_write: a value is required"),
    ({"op": "xenstore_write", "value": "AA=="}, "xenstore_write: a path is required"),
    ({"op": "xenstore_read", "path": 7}, "xenstore_read: path must be str"),
    ({"op": "xenstore_ls", "path": "/", "offset": "1"}, "xenstore_ls: offset must be int"),
    ({"op": "xenstore_ls", "path": "/", "offset": True}, "xenstore_ls: offset must be int"),
    ({"op": "xenstore_ls", "path": "/", "values": 1}, "xenstore_ls: values must be bool"),
    ({"op": "xenstore_watch", "path": "/", "token": "x"}, "xenstore_watch: unknown argument"),
    ({"op": "xenstore_mkdir", "path": "/"}, "unknown operation"),
])
def test_new_requests_are_checked(message, error):
    with pytest.raises(xend.RequestError, match=error):
        xend.check_request(message)


@pytest.fixture
def inproc(tmp_path):
    """A Daemon over a small Host (no socket server) and one client."""
    d = xend.Daemon(str(tmp_path), host=Host(memory_mib=256))
    ours, theirs = socket.socketpair()
    client = xend.Client(ours)
    d.clients[ours] = client
    d.selector.register(ours, 1, client)
    yield d, client
    theirs.close()
    d.close()


def ask(inproc, **message):
    d, client = inproc
    d.serve_line(client, json.dumps(message).encode())
    replies = [json.loads(line) for line in bytes(client.outbuf).splitlines()]
    client.outbuf.clear()
    return replies


def test_xenstore_requests_in_process(inproc):
    value = protocol.b64(b"v\x00\xff")
    assert ask(inproc, op="xenstore_write", path="/t/a", value=value) == [{"ok": True}]
    assert ask(inproc, op="xenstore_read", path="/t/a") == [{"ok": True, "value": value}]
    assert ask(inproc, op="xenstore_write", path="/t/b", value="not base64!") == \
        [{"ok": False, "error": "xenstore_write: value is not base64"}]
    assert ask(inproc, op="xenstore_ls", path="/t", offset=-1)[0]["ok"] is False
    assert ask(inproc, op="xenstore_rm", path="/t") == [{"ok": True}]
    assert ask(inproc, op="xenstore_read", path="/t/a") == \
        [{"ok": False, "error": "xenstore read /t/a: No such file or directory (ENOENT)"}]
    assert ask(inproc, op="xenstore_read", path="a b")[0]["error"].endswith("(EINVAL)")


def test_long_listing_comes_in_pages(inproc):
    d, _ = inproc
    for n in range(300):
        d.host.xenstore.write(f"/big/node{n:03d}", b"x" * 1000)
    seen, offset, pages = [], 0, 0
    while offset is not None:
        [reply] = ask(inproc, op="xenstore_ls", path="/big", values=True, offset=offset)
        assert reply["ok"] and len(json.dumps(reply)) < protocol.MAX_LINE
        seen += reply["entries"]
        offset, pages = reply["next"], pages + 1
    assert pages > 1
    assert [name for name, _ in seen] == [f"node{n:03d}" for n in range(300)]
    assert all(protocol.unb64(v) == b"x" * 1000 for _, v in seen)
    [names] = ask(inproc, op="xenstore_ls", path="/big")
    assert names["next"] is None and names["entries"][0] == ["node000", None]


def test_watch_streams_until_the_client_goes(inproc):
    d, client = inproc
    assert ask(inproc, op="xenstore_watch", path="/w") == [{"ok": True}, {"watch": "/w"}]
    d.host.xenstore.write("/w/x", b"1")
    assert [json.loads(line) for line in bytes(client.outbuf).splitlines()] == \
        [{"watch": "/w/x"}]
    client.outbuf.clear()
    assert ask(inproc, op="xenstore_watch", path="/v") == \
        [{"ok": False, "error": "xenstore_watch: this connection already streams"}]
    d.drop(client)
    assert d.host.xenstore.host.watches == []              # unwatched when dropped
    d.host.xenstore.write("/w/y", b"2")                    # and nothing breaks


def test_dmesg_reply_always_fits(inproc):
    d, _ = inproc
    for n in range(5000):
        d.dmesg.log(f"line {n} " + "y" * 100)
    [reply] = ask(inproc, op="dmesg")
    assert reply["ok"]
    assert reply["lines"][0].endswith("older lines not shown]")
    assert reply["lines"][-1].endswith("line 4999 " + "y" * 100)


def test_a_reply_too_long_is_an_error_not_a_crash(inproc):
    d, client = inproc
    d.reply(client, {"ok": True, "blob": "z" * protocol.MAX_LINE})
    [reply] = [json.loads(line) for line in bytes(client.outbuf).splitlines()]
    assert reply["ok"] is False and "too long" in reply["error"]


def test_console_backlog_in_pieces(inproc, guests):
    d, client = inproc
    [made] = ask(inproc, op="create", cfg=str(guests / "hello.cfg"), paused=True, cwd="/")
    domain = d.machine.domains[made["domid"]]
    domain.console_log += b"0123456789" * 10000
    replies = ask(inproc, op="console", domain="hello")
    assert replies[0]["ok"]
    backlog = b"".join(protocol.unb64(r["out"]) for r in replies[1:])
    assert backlog == bytes(domain.console_log[-xend.CONSOLE_BACKLOG:])
