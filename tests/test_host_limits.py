"""Under an address-space limit (ulimit -v) a run either fits -- `run`
sizes the machine from its domains -- or says in one line which limit is in
the way, exit 1: a host resource problem, never a traceback."""
import os
import resource
import subprocess
import sys

import pytest

TIMEOUT = 60
KIB = 1024


def run_limited(args, limit_kib, **env):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_kib * KIB, limit_kib * KIB))
    environment = {k: v for k, v in os.environ.items() if k != "PYXENON_MACHINE_MIB"}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "pyxenon", *map(str, args)], env=environment,
                          capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=limit)


def assert_names_the_limit(res, limit_kib):
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("pyxenon: cannot reserve ") and \
        f"ulimit -v, is {limit_kib} KiB" in lines[0], lines


def test_run_sizes_the_machine_to_fit(guests):
    res = run_limited(["run", guests / "hello.cfg"], 3_000_000)
    assert res.returncode == 0, res.stderr
    assert "(d1) Hello from pyxenon hello guest" in res.stdout.splitlines()


def test_a_machine_the_limit_cannot_hold_is_one_line(guests):
    res = run_limited(["run", guests / "hello.cfg"], 3_000_000, PYXENON_MACHINE_MIB="8192")
    assert_names_the_limit(res, 3_000_000)


def test_too_tight_a_limit_for_the_engine_is_one_line(guests):
    assert_names_the_limit(run_limited(["run", guests / "hello.cfg"], 1_000_000), 1_000_000)


@pytest.mark.parametrize("args", [["create", "-F", "-q"]])
def test_foreground_create_fits_too(guests, args):
    res = run_limited([*args, guests / "hello.cfg"], 3_000_000)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "Hello from the pyxenon hello guest's console ring\n"


def test_a_bad_machine_size_is_one_line(guests):
    res = run_limited(["run", guests / "hello.cfg"], 3_000_000, PYXENON_MACHINE_MIB="lots")
    assert res.returncode == 1 and res.stderr == \
        "pyxenon: PYXENON_MACHINE_MIB='lots': not a size in MiB\n", res
