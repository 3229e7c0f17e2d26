"""The consoles as on Xen 4.17: the PV console ring (xenconsoled's part)
and the hypervisor's log of a domain's console_io writes kept apart, and
backends that signal a guest only when they did something for it."""
import re

from pyxenon.public import io
from pyxenon.backends.console import OUT, OUT_SIZE
from pyxenon.toolstack.host import Host
from pyxenon.backends.xenstore import XenStore

from test_xenstore import Guest


def guest_writes(dom, text):
    page, ring = dom.console.page, dom.console.ring
    for i, byte in enumerate(text):
        page[OUT + (ring.out_prod + i) % OUT_SIZE] = byte
    ring.out_prod = (ring.out_prod + len(text)) & 0xFFFFFFFF


# -- signals: only after moving out_cons (xenconsoled's buffer_append) --------

def test_a_kick_with_nothing_written_gets_no_signal(guests, host):
    dom = host.create(str(guests / "hello.cfg"))
    dom.events.clear_pending(dom.console.port)
    dom.console.drain()
    assert not dom.events.is_pending(dom.console.port)


def test_a_kick_with_output_is_answered(guests, host):
    dom = host.create(str(guests / "hello.cfg"))
    dom.events.clear_pending(dom.console.port)
    guest_writes(dom, b"x\n")
    dom.console.drain()
    assert dom.events.is_pending(dom.console.port)
    assert dom.console.ring.out_cons == dom.console.ring.out_prod


def sends_of(trace):
    """EVTCHNOP_send calls (event_channel_op, cmd 4) in trace lines."""
    return sum(1 for line in trace if re.match(r"\(d\d+\) event_channel_op\(0x4,", line))


def test_a_guest_that_kicks_on_every_wake_finishes(guests):
    """guests/consolepong answers each console event with EVTCHNOP_send; a
    backend signalling every kick kept it busy for ever (125,000 sends a
    second, measured, and never past its event loop)."""
    trace = []
    with Host(memory_mib=64) as host:
        dom = host.create(str(guests / "consolepong.cfg"), trace=trace.append,
                          overrides=['cmdline="max-wakes=100000"'])
        outcome = host.run(timeout=30)
    assert outcome != "timeout"
    assert dom.shutdown_reason == "poweroff", dom.console_text
    assert dom.console_text.endswith("\n1 wake, then quiet; ring drained\n")
    # one kick per line written and one per wake: three, whatever the host's speed
    assert sends_of(trace) == 3


def test_xenstore_answers_a_kick_only_when_it_did_something():
    """xenstored notifies only when it consumed requests or wrote replies."""
    xs = XenStore()
    guest = Guest(xs, 5)
    guest.drain_events()
    quiet = guest.notified
    xs.on_event(5)
    xs.on_event(5)
    assert guest.notified == quiet
    guest.ok(io.XS_WRITE, b"/local/domain/5/x", b"1")
    assert guest.notified > quiet


# -- the two streams: the ring on the console, console_io in the hypervisor log --

def test_console_io_is_logged_and_kept_off_the_console(guests, boot):
    """A debug build's do_console_io: the domU's write is logged, "(dN) "
    in xl dmesg, and never reaches its console (xenconsoled's ring)."""
    dom = boot(str(guests / "hello.cfg"))
    assert dom.console_text == "Hello from the pyxenon hello guest's console ring\n"
    assert dom.dmesg_text.startswith("Hello from pyxenon hello guest\nXen version 4.17\n")
    assert "console ring" not in dom.dmesg_text


def run_cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pyxenon", "run", *args],
                          capture_output=True, text=True, timeout=120)


def test_run_names_each_line_once(guests):
    """Ring lines carry run's name prefix, log lines Xen's "(dN) " only."""
    res = run_cli(str(guests / "hello.cfg"), str(guests / "consolepong.cfg"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "consolepong: 1 wake, then quiet; ring drained" in lines
    assert "hello: Hello from the pyxenon hello guest's console ring" in lines
    assert "(d1) Xen version 4.17" in lines
    assert all(re.match(r"(hello|consolepong): |\(d[12]\) ", line) for line in lines), lines
    assert not [line for line in lines if re.match(r"(\w+): \1: |\(d\d\) hello: ", line)]


# -- xenconsoled --log=guest ---------------------------------------------------------

def test_run_writes_each_console_to_its_log(guests, tmp_path):
    logs = tmp_path / "console"
    res = run_cli("--console-log", str(logs), str(guests / "hello.cfg"),
                  str(guests / "consolepong.cfg"))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["guest-consolepong.log", "guest-hello.log"]
    assert (logs / "guest-hello.log").read_text() == \
        "Hello from the pyxenon hello guest's console ring\n"     # no console_io, no prefix
    assert (logs / "guest-consolepong.log").read_text().endswith("ring drained\n")
    assert (logs / "guest-hello.log").stat().st_mode & 0o777 == 0o644


def test_a_second_run_appends(guests, tmp_path):
    for _ in range(2):
        assert run_cli("--console-log", str(tmp_path), str(guests / "hello.cfg")).returncode == 0
    assert (tmp_path / "guest-hello.log").read_text().count("console ring\n") == 2


def test_a_console_log_folder_that_cannot_be_made_is_one_line(guests, tmp_path):
    (tmp_path / "file").write_text("")
    res = run_cli("--console-log", str(tmp_path / "file" / "logs"), str(guests / "hello.cfg"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "cannot write console logs" in res.stderr


class Named:
    def __init__(self, domid, name):
        self.domid, self.name = domid, name


def test_a_log_past_its_limit_starts_again(tmp_path):
    from pyxenon.backends.console import ConsoleLogs

    logs = ConsoleLogs(str(tmp_path), limit=100)
    dom = Named(1, "../evil/name")
    for _ in range(3):
        logs(dom, b"x" * 60, "ring")
    logs(dom, b"not a console line", "hypervisor")
    logs.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["guest-.._evil_name.log", "guest-.._evil_name.log.1"]
    assert (tmp_path / "guest-.._evil_name.log.1").read_bytes() == b"x" * 120
    assert (tmp_path / "guest-.._evil_name.log").read_bytes() == b"x" * 60


def test_a_daemon_without_logs_is_not_taken_for_one_with_them(xl):
    xl("daemon", "start")
    res = xl("daemon", "start", "--console-log", check=False)
    assert res.returncode == 1 and "keeps no console logs" in res.stderr


def test_the_daemon_logs_consoles_when_started_so(xl, guests):
    xl("daemon", "start", "--console-log")
    assert xl("daemon", "status").stdout.rstrip().endswith(
        f"console logs {xl.folder / 'log' / 'console'}")
    xl("create", "-q", str(guests / "hello.cfg"))
    xl.wait_gone("hello")
    log = xl.folder / "log" / "console" / "guest-hello.log"
    assert log.read_text() == "Hello from the pyxenon hello guest's console ring\n"
    assert "(d1) Hello from pyxenon hello guest" in xl.dmesg()


def test_the_daemon_started_on_demand_logs_consoles_with_the_variable(xl, guests):
    xl.env["PYXENON_CONSOLE_LOG"] = "1"
    xl("create", "-q", str(guests / "consolepong.cfg"))
    xl.wait_gone("consolepong")
    log = xl.folder / "log" / "console" / "guest-consolepong.log"
    assert log.read_text().endswith("\n1 wake, then quiet; ring drained\n")


def test_without_the_option_the_daemon_writes_no_console_logs(xl, guests):
    xl.env.pop("PYXENON_CONSOLE_LOG", None)
    xl("create", "-q", str(guests / "hello.cfg"))
    xl.wait_gone("hello")
    assert not (xl.folder / "log").exists()


def test_the_demo_transcript_names_each_line_once(guests):
    """examples/demo/transcript.txt (and the README's excerpt of it) is what
    run prints: the demo guests use console_io, so every line is a log
    line, (dN) then the guest's own name, and the name is dN's."""
    names = {"1": "ping", "2": "pong", "3": "intruder"}
    transcript = (guests.parent / "examples" / "demo" / "transcript.txt").read_text()
    readme = (guests.parent / "README.md").read_text()
    for line in transcript.splitlines():
        m = re.match(r"\(d(\d)\) (\w+): ", line)
        assert m and names[m.group(1)] == m.group(2), line
        assert not line[m.end():].startswith(f"{m.group(2)}: "), line
    excerpt = [line[4:] for line in readme.splitlines() if re.match(r"    \(d\d\) ", line)]
    assert len(excerpt) > 20 and not [line for line in excerpt if re.match(
        r"\(d\d\) (ping|pong|intruder): \1: ", line)]


def test_a_log_that_cannot_be_opened_is_given_up_once(tmp_path, capsys):
    """A symlink planted where the log goes is not followed (O_NOFOLLOW);
    the run goes on, and the failure is said once, not per write."""
    from pyxenon.backends.console import ConsoleLogs

    (tmp_path / "guest-victim.log").symlink_to(tmp_path / "elsewhere")
    logs = ConsoleLogs(str(tmp_path))
    for _ in range(3):
        logs(Named(1, "victim"), b"line\n", "ring")
    logs.close()
    assert not (tmp_path / "elsewhere").exists()
    assert capsys.readouterr().err.count("console log of victim") == 1
