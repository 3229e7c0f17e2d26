"""A user's file is read only if it is a regular file within its size cap:
a FIFO, /dev/zero, a directory or an oversized file named as a kernel,
ramdisk, xl.cfg or policy gets one line naming it, exit 2 -- never a hang,
an endless read or a traceback, from `pyxenon run` or from the daemon."""
import json
import os
import subprocess
import sys

import pytest

from pyxenon.errors import UserInputError, read_user_file

TIMEOUT = 60
PROBLEMS = {
    "fifo": "a FIFO, not a regular file",
    "zero": "a character device, not a regular file",
    "dir": "a directory, not a regular file",
    "big": "too large: over",
}


@pytest.fixture
def bad(tmp_path):
    """name -> path of each kind of file that must be refused."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    with open(tmp_path / "big", "wb") as f:
        f.truncate(64 << 20)           # sparse: larger than the domain and any cfg
    return {"fifo": tmp_path / "fifo", "zero": "/dev/zero", "dir": tmp_path / "dir",
            "big": tmp_path / "big"}


def cfg_naming(tmp_path, guests, role, path):
    kernel = path if role == "kernel" else guests / "hello" / "hello.elf"
    text = f'name = "t"\nkernel = "{kernel}"\nmemory = 16\n'
    if role == "ramdisk":
        text += f'ramdisk = "{path}"\n'
    cfg = tmp_path / f"{role}.cfg"
    cfg.write_text(text)
    return cfg


def pyxenon(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pyxenon", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)


def assert_one_line(res, path, what, problem):
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("pyxenon") and f": {path}: " in lines[0], lines
    assert what in lines[0] and problem in lines[0], lines


@pytest.mark.parametrize("kind", PROBLEMS)
@pytest.mark.parametrize("role", ["kernel", "ramdisk"])
def test_run_refuses_a_bad_kernel_or_ramdisk(tmp_path, guests, bad, kind, role):
    cfg = cfg_naming(tmp_path, guests, role, bad[kind])
    assert_one_line(pyxenon("run", cfg), bad[kind], role, PROBLEMS[kind])


@pytest.mark.parametrize("kind", PROBLEMS)
def test_run_refuses_a_bad_cfg(bad, kind):
    assert_one_line(pyxenon("run", bad[kind]), bad[kind], "config", PROBLEMS[kind])


@pytest.mark.parametrize("kind", PROBLEMS)
def test_run_refuses_a_bad_policy(guests, bad, kind):
    res = pyxenon("run", "--policy", bad[kind], guests / "hello.cfg")
    assert_one_line(res, bad[kind], "policy", PROBLEMS[kind])


@pytest.mark.parametrize("kind", PROBLEMS)
def test_policy_check_refuses(bad, kind):
    assert_one_line(pyxenon("policy", "check", bad[kind]), bad[kind], "policy", PROBLEMS[kind])


@pytest.mark.parametrize("kind", PROBLEMS)
def test_daemon_create_answers_an_error(xl, tmp_path, guests, bad, kind):
    """The daemon reads the cfg and the files it names itself: each gets an
    error reply, and the daemon goes on serving."""
    xl("daemon", "start")
    for cfg in (bad[kind], cfg_naming(tmp_path, guests, "kernel", bad[kind]),
                cfg_naming(tmp_path, guests, "ramdisk", bad[kind])):
        request = {"op": "create", "cfg": str(cfg), "cwd": str(tmp_path)}
        reply = json.loads(xl.send_raw(json.dumps(request).encode() + b"\n").splitlines()[0])
        assert reply["ok"] is False and PROBLEMS[kind] in reply["error"], reply
    res = xl("create", cfg_naming(tmp_path, guests, "kernel", bad[kind]), check=False)
    assert res.returncode == 1 and PROBLEMS[kind] in res.stderr, res
    assert xl.names() == ["Domain-0"]


def test_a_file_at_its_cap_is_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert read_user_file(path, "thing", limit=1000) == b"x" * 1000
    with pytest.raises(UserInputError, match=r"thing too large: over 999 bytes \(the cap\)"):
        read_user_file(path, "thing", limit=999, limit_is="the cap")
