"""pyxenon's own commands that need no daemon: `run` under a policy with its
audit, and the commands other modules answer (policy, assurance, interface,
fuzz), each with its failures in one line."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from pyxenon.toolstack import cli
from pyxenon.toolstack.host import Host

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "policies" / "ping-pong.toml"
BAD_POLICY = 'version = 1\n[labels]\nping = "a"\nPong = "b"\n'   # line 4: bad label


def run(capsys, *argv):
    """cli.main in this process: (status, stdout, stderr)."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def one_line(err):
    return err.count("\n") == 1 and err.endswith("\n")


@pytest.fixture
def bad_policy(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_POLICY)
    return path


# -- pyxenon --help ---------------------------------------------------------------

def test_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for name in ("run", "create", "daemon", "xenstore", "audit", "policy", "assurance",
                 "interface", "fuzz"):
        assert f"\n    {name} " in out, name


def test_run_help_names_policy_and_audit(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--policy FILE" in out and "--audit FILE" in out


# -- pyxenon policy ---------------------------------------------------------------

def test_policy_check_ok(capsys):
    status, out, _ = run(capsys, "policy", "check", str(DEMO))
    assert status == 0
    assert out == f"{DEMO}: ok, 3 labels, 3 rules\n"


def test_policy_can_flow_and_graph(capsys):
    status, out, _ = run(capsys, "policy", "check", str(DEMO), "--can-flow", "ping", "pong",
                         "--graph")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "ping -[event_channel]-> pong"
    assert "pong -[grant_map]-> ping" in lines
    assert "# isolated: intruder" in lines
    assert "digraph policy {" in lines


def test_policy_no_flow_and_dot_file(capsys, tmp_path):
    dot = tmp_path / "flows.dot"
    status, out, _ = run(capsys, "policy", "check", str(DEMO), "--can-flow", "intruder",
                         "ping", "--dot", str(dot))
    assert status == 0 and out == "no\n"
    assert dot.read_text().startswith("digraph policy {")


@pytest.mark.parametrize("argv, needle", [
    (["policy", "check", "/no/such/policy.toml"], "/no/such/policy.toml: cannot read policy"),
    (["policy", "check", str(DEMO), "--can-flow", "ping", "nobody"], "unknown label 'nobody'"),
    (["policy"], "pyxenon policy: "),
    (["policy", "check"], "pyxenon policy check: "),
    (["policy", "verify", str(DEMO)], "invalid choice"),
    (["policy", "check", str(DEMO), "--bogus"], "unrecognized arguments"),
])
def test_policy_failures_are_one_line(capsys, argv, needle):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert one_line(err) and needle in err, err


def test_malformed_policy_names_its_line(capsys, bad_policy):
    status, _, err = run(capsys, "policy", "check", str(bad_policy))
    assert status == 2 and one_line(err)
    assert f"{bad_policy}:4: bad label 'Pong'" in err


# -- assurance, interface, fuzz ----------------------------------------------------

def test_assurance_check_is_delegated(capsys):
    status, out, _ = run(capsys, "assurance", "--check")
    assert status in (0, 1)   # over budget is assurance's verdict, not ours
    assert out.startswith("pyxenon assurance: core")


def test_interface_prints_the_table(capsys):
    status, out, _ = run(capsys, "interface")
    assert status == 0 and out.startswith("# The interface on record")


@pytest.mark.parametrize("argv", [["assurance", "--bogus"], ["interface", "--write", "x"]])
def test_delegated_usage_errors_are_one_line(capsys, argv):
    status, _, err = run(capsys, *argv)
    assert status == 2 and one_line(err) and err.startswith(f"pyxenon {argv[0]}: ")


def test_fuzz_when_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(cli.DELEGATES, "fuzz", ("pyxenon.toolstack.no_such_fuzz", "x"))
    status, _, err = run(capsys, "fuzz", "--runs", "10")
    assert status == 1 and one_line(err)
    assert err == "pyxenon: fuzz: not available (it is not part of this installation)\n"


def test_fuzz_missing_a_dependency_is_one_line(capsys, monkeypatch, tmp_path):
    (tmp_path / "fake_fuzz_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATES, "fuzz", ("fake_fuzz_mod", "x"))
    status, _, err = run(capsys, "fuzz")
    assert status == 1
    assert err == "pyxenon: fuzz: not available (it needs the no_such_dependency_xyz module)\n"


def test_fuzz_is_handed_its_arguments(capsys, monkeypatch, tmp_path):
    (tmp_path / "fake_fuzz_ok.py").write_text(
        "def main(argv):\n    print('fuzz got', argv)\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.DELEGATES, "fuzz", ("fake_fuzz_ok", "x"))
    status, out, _ = run(capsys, "fuzz", "--seed", "7")
    assert status == 3 and out == "fuzz got ['--seed', '7']\n"


def test_argparse_is_restored_after_a_delegate(capsys):
    import argparse

    standard = argparse.ArgumentParser.error
    run(capsys, "policy", "check")
    assert argparse.ArgumentParser.error is standard


# -- pyxenon run --policy --audit -----------------------------------------------------

def test_run_without_policy_says_so_once(capsys, guests):
    status, out, err = run(capsys, "run", str(guests / "hello.cfg"))
    assert status == 0 and "Hello from pyxenon hello guest" in out
    assert err == f"{cli.NO_POLICY}\n"
    assert cli.NO_POLICY == ("pyxenon: no policy: domains can reach only their own "
                             "console and XenStore")


def test_run_with_policy_is_quiet(capsys, guests, tmp_path):
    audit = tmp_path / "audit.jsonl"
    status, out, err = run(capsys, "run", str(guests / "hello.cfg"), "--policy", str(DEMO),
                           "--audit", str(audit))
    assert status == 0 and "Xen version 4.17" in out
    assert err == ""
    assert audit.read_text() == ""     # hello reaches no other domain


@pytest.mark.parametrize("make, needle", [
    (lambda tmp: tmp / "missing.toml", "missing.toml: cannot read policy"),
    (lambda tmp: (tmp / "bad.toml").write_text(BAD_POLICY) and tmp / "bad.toml",
     "bad.toml:4: bad label"),
])
def test_run_with_a_bad_policy_is_one_line(capsys, guests, tmp_path, make, needle):
    status, out, err = run(capsys, "run", str(guests / "hello.cfg"), "--policy",
                           str(make(tmp_path)))
    assert status == 2 and one_line(err) and needle in err
    assert out == ""


def test_run_audit_to_an_unwritable_place(capsys, guests, tmp_path):
    status, _, err = run(capsys, "run", str(guests / "hello.cfg"), "--policy", str(DEMO),
                         "--audit", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert status == 2 and one_line(err) and "cannot write the audit log" in err


def labelled_cfgs(guests, tmp_path):
    """Two hello domains labelled ping and pong (and an intruder)."""
    paths = []
    for name in ("ping", "pong", "intruder"):
        cfg = tmp_path / f"{name}.cfg"
        cfg.write_text(f'name = "{name}"\nkernel = "{guests}/hello/hello.elf"\nmemory = 8\n'
                       f'seclabel = "{name}"\n')
        paths.append(str(cfg))
    return paths


@pytest.fixture
def binding_run(monkeypatch):
    """Host.run first makes ping offer pong a channel and intruder try ping
    (no toy guest binds interdomain channels yet)."""
    from pyxenon.hypervisor.errors import HypercallError

    real_run = Host.run

    def run_with_binds(self, timeout=None):
        ping, pong, intruder = self.domains
        ping.events.alloc_unbound(pong.domid)
        with pytest.raises(HypercallError):
            intruder.events.alloc_unbound(ping.domid)
        return real_run(self, timeout)
    monkeypatch.setattr(Host, "run", run_with_binds)


def test_run_audit_file_gets_every_decision(capsys, guests, tmp_path, binding_run):
    audit = tmp_path / "audit.jsonl"
    status, _, err = run(capsys, "run", *labelled_cfgs(guests, tmp_path), "--policy",
                         str(DEMO), "--audit", str(audit))
    assert status == 0 and err == ""
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["subject"]["name"], r["object"]["name"], r["decision"]) for r in records] == \
        [("ping", "pong", "allow"), ("intruder", "ping", "deny")]
    assert records[0]["operation"] == "event_channel:alloc_unbound"
    assert records[0]["rule"].startswith(f"{DEMO}:")


def test_run_audit_dash_goes_to_stderr(capsys, guests, tmp_path, binding_run):
    status, out, err = run(capsys, "run", *labelled_cfgs(guests, tmp_path), "--policy",
                           str(DEMO), "--audit", "-")
    assert status == 0 and "{" not in out
    decisions = [json.loads(line)["decision"] for line in err.splitlines()]
    assert decisions == ["allow", "deny"]


def test_run_without_audit_counts_refusals(capsys, guests, tmp_path, binding_run):
    status, _, err = run(capsys, "run", *labelled_cfgs(guests, tmp_path), "--policy",
                         str(DEMO))
    assert status == 0
    assert err == ("pyxenon: the policy refused 1 inter-domain operation "
                   "(--audit FILE lists them)\n")


def test_run_without_policy_refuses_and_says_so(capsys, guests, tmp_path, monkeypatch):
    from pyxenon.hypervisor.errors import HypercallError

    real_run = Host.run

    def run_with_bind(self, timeout=None):
        with pytest.raises(HypercallError):
            self.domains[0].events.alloc_unbound(self.domains[1].domid)
        return real_run(self, timeout)
    monkeypatch.setattr(Host, "run", run_with_bind)
    status, _, err = run(capsys, "run", *labelled_cfgs(guests, tmp_path)[:2], "--audit", "-")
    assert status == 0
    lines = err.splitlines()
    assert lines[0] == cli.NO_POLICY
    assert json.loads(lines[1])["rule"] == "no policy"


def test_run_as_a_program(guests, tmp_path):
    """The console script: the notice on stderr, exit 0, no traceback."""
    res = subprocess.run([sys.executable, "-m", "pyxenon", "run", str(guests / "hello.cfg")],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYXENON_POLICY=str(DEMO)))
    assert res.returncode == 0
    assert res.stderr == f"{cli.NO_POLICY}\n"   # run takes --policy, not the daemon's variable
