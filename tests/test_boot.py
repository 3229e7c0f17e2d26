"""The bundled guests boot, print and stop, through the API and the CLI."""
import subprocess
import sys

import pytest

from pyxenon.toolstack import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pyxenon", *args],
                          capture_output=True, text=True, timeout=120)


def test_hello_prints_and_powers_off(guests, boot):
    dom = boot(str(guests / "hello.cfg"))
    assert dom.shutdown_reason == "poweroff"
    assert dom.crash_report is None
    text = dom.dmesg_text                                     # console_io: the hypervisor log
    assert "Hello from pyxenon hello guest" in text
    assert dom.console_text == "Hello from the pyxenon hello guest's console ring\n"
    assert "Xen version 4.17" in text
    assert "xen-3.0-x86_64" in text                           # capabilities
    assert not dom.unsupported


def test_crash_guest_is_crashed_with_report(guests, boot):
    dom = boot(str(guests / "crash.cfg"))
    assert dom.shutdown_reason == "crash"
    report = dom.crash_report
    assert "#GP" in report and "hlt" in report
    assert "rip=" in report and "rsp=" in report


def test_two_domains_do_not_see_each_other(guests, boot, host):
    hello = host.create(str(guests / "hello.cfg"))
    crash = host.create(str(guests / "crash.cfg"))
    host.run(timeout=30)
    assert hello.shutdown_reason == "poweroff"
    assert crash.shutdown_reason == "crash"
    assert "Hello" not in crash.dmesg_text
    assert "crash guest" not in hello.dmesg_text


def test_a_reused_frame_runs_its_new_owners_code(guests, host):
    """crash gets the frames hello had (same kernel addresses, other code):
    the translations of hello's code must go with hello."""
    hello = host.create(str(guests / "hello.cfg"))
    host.run(timeout=30)
    crash = host.create(str(guests / "crash.cfg"))
    assert crash.first_mfn == hello.first_mfn
    host.run(timeout=30)
    assert hello.shutdown_reason == "poweroff"
    assert crash.shutdown_reason == "crash", crash.dmesg_text
    assert "crash guest" in crash.dmesg_text


def test_trace_reports_each_hypercall(guests, host):
    lines = []
    dom = host.create(str(guests / "hello.cfg"), trace=lines.append)
    host.run(timeout=30)
    assert dom.shutdown_reason == "poweroff"
    assert any(line.startswith(f"(d{dom.domid}) xen_version(0x0") for line in lines)
    assert lines[-1].startswith(f"(d{dom.domid}) sched_op(0x2")


def test_cli_run_hello_exits_zero(guests):
    res = run_cli("run", str(guests / "hello.cfg"))
    assert res.returncode == 0, res.stderr
    assert "Hello from pyxenon hello guest" in res.stdout
    assert "Xen version 4.17" in res.stdout
    assert "Traceback" not in res.stderr


def test_cli_run_crash_exits_nonzero_naming_instruction(guests):
    res = run_cli("run", str(guests / "crash.cfg"))
    assert res.returncode == 1
    assert "hlt" in res.stderr and "crash" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_cli_prefixes_output_with_names_when_several(guests):
    res = run_cli("run", str(guests / "hello.cfg"), str(guests / "crash.cfg"))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    # the ring's line named by run; console_io's as the hypervisor log has them, once each
    assert "hello: Hello from the pyxenon hello guest's console ring" in lines
    assert "(d1) Hello from pyxenon hello guest" in lines
    assert "(d2) crash guest: executing hlt with no trap handler" in lines
    assert len(lines) == len(set(lines))


def test_cli_trace_goes_to_stderr(guests):
    res = run_cli("run", "--trace", str(guests / "hello.cfg"))
    assert res.returncode == 0
    assert "console_io(0x0" in res.stderr


@pytest.mark.parametrize("text, problem", [
    ("name = 'x'\nkernel = \n", ":2:"),
    ("name = 'x'\n", "kernel"),
    ("name = 'x'\nkernel = 'missing.elf'\n", "missing.elf"),
])
def test_cli_bad_cfg_is_one_line(tmp_path, capsys, text, problem):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    assert cli.main(["run", str(cfg)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err and "Traceback" not in err


def test_cli_kernel_that_is_not_elf(tmp_path, capsys):
    (tmp_path / "k.elf").write_bytes(b"not an elf at all")
    (tmp_path / "k.cfg").write_text('name = "k"\nkernel = "k.elf"\n')
    assert cli.main(["run", str(tmp_path / "k.cfg")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "k.elf" in err and err.count("\n") == 1


def test_kernel_too_big_for_memory(guests, host):
    from pyxenon.errors import UserInputError

    with pytest.raises(UserInputError, match="MiB"):
        host.create(kernel=str(guests / "hello" / "hello.elf"), memory=1)
