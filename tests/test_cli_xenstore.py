"""`pyxenon xenstore read|write|ls|rm|watch` against a live daemon's XenStore
(acting as domain 0), each in its own runtime folder."""
import os
import subprocess
import time

import pytest

from test_toolstack_daemon import TIMEOUT, XL


def failure(res, status=1):
    assert res.returncode == status, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("pyxenon: "), res.stderr
    return res.stderr


def test_write_read_ls_rm_round_trip(xl):
    xl("xenstore", "write", "/tool/demo/greeting", "hello world")
    xl("xenstore", "write", "/tool/demo/empty", "")
    assert xl("xenstore", "read", "/tool/demo/greeting").stdout == "hello world\n"
    assert xl("xenstore", "read", "/tool/demo/empty").stdout == "\n"
    assert xl("xenstore", "ls", "/tool/demo").stdout == "greeting\nempty\n"
    assert xl("xenstore", "ls", "-v", "/tool/demo").stdout == \
        'greeting = "hello world"\nempty = ""\n'
    assert xl("xenstore", "ls", "/tool").stdout == "demo\n"
    xl("xenstore", "rm", "/tool/demo/greeting")
    assert xl("xenstore", "ls", "/tool/demo").stdout == "empty\n"
    xl("xenstore", "rm", "/tool")
    assert "tool" not in xl("xenstore", "ls", "/").stdout.split()


def test_values_are_bytes(xl):
    xl("xenstore", "write", "/v", "tab\there\\")
    assert xl("xenstore", "read", "/v").stdout == "tab\\there\\\\\n"     # escaped, as xenstore-read
    raw = subprocess.run([xl.program, "xenstore", "read", "-R", "/v"], env=xl.env,
                         capture_output=True, timeout=TIMEOUT)
    assert raw.stdout == b"tab\there\\"


def test_relative_paths_are_dom0s_home(xl):
    xl("xenstore", "write", "mine", "0")
    assert xl("xenstore", "read", "/local/domain/0/mine").stdout == "0\n"


def test_a_domains_nodes_are_there(xl, guests):
    xl("create", "-q", "-p", str(guests / "hello.cfg"))
    assert xl("xenstore", "read", "/local/domain/1/name").stdout == "hello\n"
    assert "console" in xl("xenstore", "ls", "/local/domain/1").stdout.split()
    assert 'type = "xenconsoled"' in xl("xenstore", "ls", "-v", "/local/domain/1/console").stdout


@pytest.mark.parametrize("args, needle", [
    (("read", "/no/such/node"), "xenstore read /no/such/node: No such file or directory (ENOENT)"),
    (("ls", "/no/such"), "xenstore ls /no/such: No such file or directory (ENOENT)"),
    (("rm", "/no/such/parent"), "(ENOENT)"),
    (("read", "bad path!"), "xenstore read bad path!: Invalid argument (EINVAL)"),
    (("write", "/trailing/", "x"), "(EINVAL)"),
    (("watch", "/a b"), "(EINVAL)"),
])
def test_failures_are_one_line_exit_1(xl, args, needle):
    assert needle in failure(xl("xenstore", *args, check=False))


def test_value_too_big(xl):
    err = failure(xl("xenstore", "write", "/big", "x" * 5000, check=False))
    assert "(E2BIG)" in err


@pytest.mark.parametrize("args", [("xenstore",), ("xenstore", "read"),
                                  ("xenstore", "write", "/a"), ("xenstore", "cat", "/a"),
                                  ("xenstore", "read", "/a", "extra"),
                                  ("xenstore", "watch", "-n", "0", "/a")])
def test_usage_errors_exit_2(xl, args):
    failure(xl(*args, check=False), status=2)


def test_watch_prints_each_change(xl):
    xl("daemon", "start")
    watch = xl.popen("xenstore", "watch", "-n", "4", "/tool", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)   # the watch is set (its first event is at once)
    xl("xenstore", "write", "/tool/a", "1")
    xl("xenstore", "write", "/tool/b/c", "2")
    xl("xenstore", "write", "/elsewhere", "3")   # not under /tool: no event
    xl("xenstore", "rm", "/tool")
    out, err = watch.communicate(timeout=TIMEOUT)
    assert watch.returncode == 0, err
    assert out == "/tool\n/tool/a\n/tool/b/c\n/tool\n"


def test_watch_ends_when_the_daemon_stops(xl):
    xl("daemon", "start")
    watch = xl.popen("xenstore", "watch", "@introduceDomain", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    xl("daemon", "stop")
    out, err = watch.communicate(timeout=TIMEOUT)
    assert watch.returncode == 0 and err == ""
    assert out == "@introduceDomain\n"


def test_watch_sees_domains_come_and_go(xl, guests):
    xl("daemon", "start")
    watch = xl.popen("xenstore", "watch", "-n", "3", "@releaseDomain", stdout=subprocess.PIPE,
                     text=True)
    time.sleep(1.0)
    xl("create", "-q", "-p", str(guests / "hello.cfg"))
    xl("destroy", "hello")
    xl("create", "-q", "-p", str(guests / "hello.cfg"), 'name="again"')
    xl("destroy", "again")
    out, _ = watch.communicate(timeout=TIMEOUT)
    assert out == "@releaseDomain\n" * 3


def test_watch_survives_a_reader_that_goes_away(xl):
    xl("xenstore", "write", "/w", "x")
    pipeline = subprocess.Popen(f"'{xl.program}' xenstore watch /w | head -1; "
                                "echo status ${PIPESTATUS[0]}", shell=True, executable="bash",
                                env=xl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    time.sleep(1.5)                   # head has its line and is gone
    xl("xenstore", "write", "/w", "y")   # the next event finds the pipe closed
    out, err = pipeline.communicate(timeout=TIMEOUT)
    assert out == "/w\nstatus 0\n"
    assert err == ""


def test_killed_watcher_is_forgotten(xl):
    xl("daemon", "start")
    watch = xl.popen("xenstore", "watch", "/k", stdout=subprocess.PIPE)
    time.sleep(1.0)
    watch.kill()
    watch.wait(timeout=TIMEOUT)
    xl("xenstore", "write", "/k/x", "1")          # its connection is gone: nothing breaks
    assert xl("xenstore", "read", "/k/x").stdout == "1\n"


def test_xl_has_no_xenstore_or_audit(xl, tmp_path):
    link = tmp_path / "bin" / "xl"
    os.symlink(xl.program, link)
    as_xl = XL(xl.folder, str(link))
    for args in (("xenstore", "ls", "/"), ("audit",), ("policy", "check", "x.toml")):
        res = as_xl(*args, check=False)
        assert res.returncode == 2
        assert res.stderr.startswith("xl: argument command: invalid choice:"), res.stderr
        assert res.stderr.count("\n") == 1
