"""xl's commands against the host daemon: life cycle, formats, and a daemon
that keeps serving whatever clients and guests do.

Every test has its own runtime folder (PYXENON_RUNTIME_DIR) and so its own
daemon, stopped at the end.
"""
import json
import os
import pathlib
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TIMEOUT = 60
# What pip writes as the pyxenon console script; made per test so the tests
# do not depend on the venv's bin/ (and argv[0] is ours to name).
SCRIPT = f"""#!{sys.executable}
import sys
from pyxenon.toolstack.cli import main
sys.exit(main())
"""


def make_script(folder):
    folder.mkdir(exist_ok=True)
    path = folder / "pyxenon"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return str(path)


def tool_env(folder):
    """The environment the tests' commands run in: a runtime folder of their
    own, and no policy inherited from whoever runs the tests."""
    env = dict(os.environ, PYXENON_RUNTIME_DIR=str(folder))
    env.pop("PYXENON_POLICY", None)
    return env


class XL:
    """Runs commands as `pyxenon ...` (or through a symlink named xl)."""

    def __init__(self, folder, program):
        self.folder = folder
        self.program = program
        self.env = tool_env(folder)

    def __call__(self, *args, check=True):
        res = subprocess.run([self.program, *args], capture_output=True, text=True,
                             env=self.env, timeout=TIMEOUT)
        assert "Traceback" not in res.stderr, res.stderr
        if check:
            assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    def popen(self, *args, **kw):
        return subprocess.Popen([self.program, *args], env=self.env, **kw)

    def names(self):
        return [line.split()[0] for line in self("list").stdout.splitlines()[1:]]

    def wait_gone(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while name in self.names():
            assert time.monotonic() < deadline, f"{name} still listed"
            time.sleep(0.1)

    def dmesg(self):
        return self("dmesg").stdout

    def send_raw(self, payload):
        """payload straight to the daemon's socket; what it answers."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.folder / "xend.sock"))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return b"".join(iter(lambda: s.recv(65536), b""))


def cfg(guests, name):
    return str(guests / f"{name}.cfg")


# -- the done-when scenarios ---------------------------------------------------------

@pytest.mark.parametrize("program", ["pyxenon", "xl"])
def test_console_shell_script(xl, guests, tmp_path, program):
    """tests/test_xl_console.sh, as pyxenon and through a symlink named xl."""
    path = xl.program
    if program == "xl":
        path = str(tmp_path / "bin" / "xl")
        os.symlink(xl.program, path)
    res = subprocess.run(["bash", str(HERE / "test_xl_console.sh"), path, str(guests)],
                         capture_output=True, text=True, env=xl.env, timeout=TIMEOUT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")


def test_three_domains_list_info_dmesg(xl, guests):
    for name in ("alpha", "beta", "gamma"):
        xl("create", "-q", "-p", cfg(guests, "hello"), f'name="{name}"', "memory=8")
    listing = xl("list").stdout.splitlines()
    assert listing[0] == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    assert re.match(r"Domain-0 +0 +\d+ +1 +r----- +\d+\.\d$", listing[1])
    assert re.match(r"alpha +1 +8 +1 +--p--- +0\.0$", listing[2])
    assert [line.split()[0] for line in listing[2:]] == ["alpha", "beta", "gamma"]
    long = json.loads(xl("list", "-l").stdout)
    assert [d["domid"] for d in long] == [0, 1, 2, 3]
    assert long[2]["config"]["c_info"]["name"] == "beta"
    assert long[2]["config"]["b_info"]["target_memkb"] == 8 * 1024
    info = dict(line.split(" : ", 1) for line in xl("info").stdout.splitlines()
                if " : " in line)
    fields = {k.strip(): v for k, v in info.items()}
    assert fields["virt_caps"] == "pv gnttab-v1"     # xl 4.17 lists the grant ABIs too
    assert fields["xen_caps"] == "xen-3.0-x86_64"
    assert fields["xen_version"] == "4.17-pyxenon"
    assert (fields["xen_major"], fields["xen_minor"]) == ("4", "17")
    # the low 1 MiB is Xen's; each domain also has its shared_info and grant frames
    assert int(fields["free_memory"]) == int(fields["total_memory"]) - 3 * 8 - 2
    assert xl("info", "nr_cpus").stdout == "1\n"
    for name in ("alpha", "beta", "gamma"):
        xl("unpause", name)
    for name in ("alpha", "beta", "gamma"):
        xl.wait_gone(name)
    log = xl.dmesg()
    for domid, name in enumerate(("alpha", "beta", "gamma"), start=1):
        assert f"d{domid} ({name}) created" in log
        assert f"d{domid} ({name}) shut down: poweroff" in log
        assert f"d{domid} ({name}) destroyed" in log
        assert f"(d{domid}) Hello from pyxenon hello guest" in log


def test_killed_console_client_leaves_domain_alone(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    console = xl.popen("console", "hello", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(0.5)
    console.send_signal(signal.SIGKILL)
    console.wait(timeout=TIMEOUT)
    assert "hello" in xl.names()
    xl("unpause", "hello")
    xl.wait_gone("hello")
    assert "d1 (hello) shut down: poweroff" in xl.dmesg()


def test_garbage_gets_error_replies(xl, guests):
    xl("daemon", "start")
    for payload in (b"garbage\n", b"\xff\xfe\n", b"[1]\n", b'{"op": "nope"}\n',
                    b'{"op": "list", "domain": 5}\n', b'{"op": "list", "x": 1}\n',
                    b'{"op": "create", "cfg": "relative.cfg"}\n', b'{"op": "pause"}\n',
                    b'{"op": "input", "data": "AA=="}\n', b"x" * 100_000, b"{" * 5000 + b"\n"):
        reply = json.loads(xl.send_raw(payload).splitlines()[0])
        assert reply["ok"] is False and reply["error"], payload[:40]
    xl.send_raw(b"")                      # connect and hang up
    assert xl.names() == ["Domain-0"]     # still serving


def test_crashing_guest_leaves_daemon_and_others(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    xl("create", "-q", cfg(guests, "crash"))
    xl.wait_gone("crash")
    log = xl.dmesg()
    assert "d2 (crash) shut down: crash" in log
    assert "#GP" in log and "hlt" in log
    assert "hello" in xl.names()
    xl("unpause", "hello")
    xl.wait_gone("hello")
    assert "d1 (hello) shut down: poweroff" in xl.dmesg()


def test_runaway_domain_does_not_starve_requests(xl, guests):
    xl("create", "-q", cfg(guests, "nullcall"), 'cmdline="loops=1000000000"')
    start = time.monotonic()
    for _ in range(5):
        assert "nullcall" in xl.names()
    assert time.monotonic() - start < 20
    assert re.search(r"nullcall +1 +16 +1 +r-----", xl("list").stdout)
    xl("destroy", "nullcall")
    assert xl.names() == ["Domain-0"]


# -- each command ---------------------------------------------------------------------

def test_pause_unpause_destroy_domid_domname(xl, guests):
    xl("create", "-q", cfg(guests, "nullcall"), 'cmdline="loops=1000000000"')
    assert xl("domid", "nullcall").stdout == "1\n"
    assert xl("domname", "1").stdout == "nullcall\n"
    assert xl("domid", "Domain-0").stdout == "0\n"
    xl("pause", "1")
    assert "--p---" in xl("list", "nullcall").stdout
    assert "--p" in xl("vcpu-list", "nullcall").stdout
    xl("unpause", "nullcall")
    assert "r-----" in xl("list", "1").stdout
    uptime = xl("uptime").stdout.splitlines()
    assert uptime[0].split() == ["Name", "ID", "Uptime"]
    assert re.match(r"nullcall +1 +\d+:\d\d:\d\d$", uptime[2])
    xl("destroy", "nullcall")
    assert "d1 (nullcall) destroyed" in xl.dmesg()


def test_shutdown_wait_and_reboot(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    res = xl("shutdown", "-w", "hello")
    assert "Shutting down domain 1" in res.stderr and "destroyed" in res.stderr
    assert xl.names() == ["Domain-0"]
    xl("create", "-q", "-p", cfg(guests, "hello"))
    xl("reboot", "hello")                 # on_reboot = restart: a new domain, running
    log = xl.dmesg()
    assert "d2 (hello) shut down: reboot" in log
    assert "d3 (hello) created" in log
    xl.wait_gone("hello")


def test_create_console_flag_streams_to_shutdown(xl, guests):
    res = xl("create", "-c", cfg(guests, "hello"))
    assert "Parsing config from" in res.stderr
    assert res.stdout == "Hello from the pyxenon hello guest's console ring\n"  # no console_io
    assert xl.names() == ["Domain-0"]


def test_console_input_reaches_the_ring(xl, guests):
    """Bytes on the console client's stdin land in the guest's in[] ring."""
    xl("create", "-q", "-p", cfg(guests, "hello"))
    console = xl.popen("console", "hello", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    console.stdin.write(b"typed\n")
    console.stdin.flush()
    time.sleep(0.5)
    xl("unpause", "hello")
    out, _ = console.communicate(timeout=TIMEOUT)
    assert console.returncode == 0
    assert b"Hello from the pyxenon hello guest's console ring" in out


def test_several_consoles_at_once(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    consoles = [xl.popen("console", "hello", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
                for _ in range(3)]
    time.sleep(0.5)
    xl("unpause", "hello")
    for console in consoles:
        out, _ = console.communicate(timeout=TIMEOUT)
        assert out == b"Hello from the pyxenon hello guest's console ring\n"


def test_create_foreground_runs_here(xl, guests):
    res = xl("create", "-F", cfg(guests, "hello"))
    assert res.stdout == "Hello from the pyxenon hello guest's console ring\n"
    assert not (xl.folder / "xend.sock").exists()   # no daemon was needed


def test_duplicate_name_refused(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    res = xl("create", "-q", "-p", cfg(guests, "hello"), check=False)
    assert res.returncode == 1
    assert res.stderr == "pyxenon: domain with name 'hello' already exists\n"


def test_daemon_stop_ends_consoles_and_domains(xl, guests):
    xl("create", "-q", "-p", cfg(guests, "hello"))
    console = xl.popen("console", "hello", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    time.sleep(0.5)
    assert "stopped" in xl("daemon", "stop").stdout
    console.communicate(timeout=TIMEOUT)
    assert console.returncode == 0
    assert not (xl.folder / "xend.sock").exists()
    res = xl("daemon", "status", check=False)
    assert res.returncode == 1 and "not running" in res.stdout


def test_socket_and_folder_are_private(xl):
    xl("daemon", "start")
    assert stat.S_IMODE(os.stat(xl.folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(xl.folder / "xend.sock").st_mode) == 0o600
    assert "daemon running" in xl("daemon", "status").stdout


@pytest.mark.parametrize("args", [
    ("create",), ("create", "-q", "/no/such.cfg"), ("list", "-z"), ("info", "no_such_field"),
    ("pause", "nosuch"), ("pause", "0"), ("domname", "abc"), ("console", "-t", "serial", "x"),
    ("create", "-F", "-p", "x.cfg"), ("daemon", "bogus"), ("bogus",),
])
def test_malformed_input_gets_one_line(xl, guests, args):
    res = xl(*args, check=False)
    assert res.returncode in (1, 2)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_xl_symlink_gives_the_same_answers(xl, guests, tmp_path):
    link = tmp_path / "bin" / "xl"
    os.symlink(xl.program, link)
    as_xl = XL(xl.folder, str(link))
    xl("create", "-q", "-p", cfg(guests, "hello"))
    assert as_xl("list", "hello").stdout == xl("list", "hello").stdout
    assert as_xl("domid", "hello").stdout == "1\n"
    assert as_xl("info", "xen_caps").stdout == xl("info", "xen_caps").stdout
    res = as_xl("run", str(cfg(guests, "hello")), check=False)   # xl has no run
    assert res.returncode == 2 and res.stderr.startswith("xl: ")


def test_xl_symlink_same_answers_under_a_policy(xl, guests, tmp_path):
    """A daemon started with a policy: xl (a symlink) sees what pyxenon sees."""
    policy = HERE.parent / "examples" / "policies" / "ping-pong.toml"
    link = tmp_path / "bin" / "xl"
    os.symlink(xl.program, link)
    as_xl = XL(xl.folder, str(link))
    res = as_xl("daemon", "start", "--policy", str(policy))
    assert res.stdout.endswith(f"policy {policy}\n")
    xl("create", "-q", "-p", cfg(guests, "hello"), 'seclabel="ping"')
    assert as_xl("info").stdout == xl("info").stdout
    assert as_xl("info", "xen_policy").stdout == f"{policy} (3 labels, 3 rules)\n"
    assert as_xl("list", "-v", "hello").stdout == xl("list", "-v", "hello").stdout
    assert as_xl("list", "-v", "hello").stdout.rstrip().endswith("ping")
    assert as_xl("daemon", "status").stdout == xl("daemon", "status").stdout
    assert as_xl("dmesg").stdout.splitlines()[:2] == xl("dmesg").stdout.splitlines()[:2]


def test_vcpu_list_set_and_pin(xl, guests):
    """Every vcpu listed (one down shows '-' and --p); vcpu-set writes the
    cpu/N/availability nodes a PV guest watches; vcpu-pin records an
    affinity on the one host cpu and refuses another cpu."""
    xl("create", "-q", cfg(guests, "nullcall"), 'cmdline="loops=1000000000"', "vcpus=2",
       "maxvcpus=3")
    rows = xl("vcpu-list", "nullcall").stdout.splitlines()[1:]
    assert [r.split()[2:5] for r in rows][2] == ["2", "-", "--p"]
    assert [r.split()[2] for r in rows] == ["0", "1", "2"]
    xl("vcpu-set", "nullcall", "3")
    assert xl("xenstore", "read", "/local/domain/1/cpu/2/availability").stdout == "online\n"
    xl("vcpu-set", "nullcall", "1")
    assert xl("xenstore", "read", "/local/domain/1/cpu/1/availability").stdout == "offline\n"
    bad = xl("vcpu-set", "nullcall", "4", check=False)
    assert bad.returncode == 1 and "however maxcpus is 3" in bad.stderr
    xl("vcpu-pin", "nullcall", "1", "0")
    assert xl("vcpu-list", "nullcall").stdout.splitlines()[2].endswith("0 / all")
    bad = xl("vcpu-pin", "nullcall", "all", "1", check=False)
    assert bad.returncode == 1 and "not a host cpu" in bad.stderr
    xl("destroy", "nullcall")
