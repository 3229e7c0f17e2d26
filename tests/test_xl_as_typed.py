"""xl as a Xen user types it: create -f and -n, help, uptime -s, and the
xl.cfg keys pyxenon does not implement named in one warning line."""
import json
import os
import re

import pytest

from pyxenon.toolstack import xlcfg
from test_toolstack_daemon import XL


@pytest.fixture
def cfg(tmp_path, guests):
    path = tmp_path / "t.cfg"
    path.write_text(f'name = "t"\nkernel = "{guests}/hello/hello.elf"\nmemory = 16\n'
                    'bootloader = "pygrub"\ncpus = "0-3"\nvfb = [ "vnc=1" ]\n'
                    'usbctrl = [ "version=2" ]\n')
    return str(path)


@pytest.fixture
def as_xl(xl, tmp_path):
    link = tmp_path / "bin" / "xl"
    os.symlink(xl.program, link)
    return XL(xl.folder, str(link))


WARNING = "settings pyxenon does not implement, ignored: bootloader, cpus, vfb, usbctrl"


def test_dry_run_prints_the_parsed_config_and_starts_nothing(xl, cfg):
    res = xl("create", "-n", "-f", cfg, "vcpus=2", 'pci=["01:00.0"]')
    config = json.loads(res.stdout)
    assert config["c_info"]["name"] == "t"
    assert config["b_info"]["max_vcpus"] == 2
    assert config["b_info"]["max_memkb"] == 16384
    assert res.stderr.splitlines() == [f"Parsing config from {cfg}",
                                       f"pyxenon: warning: {cfg}: {WARNING}, pci"]
    assert not (xl.folder / "xend.sock").exists()         # no daemon was needed


def test_create_dash_f_as_xl_with_overrides(as_xl, cfg):
    res = as_xl("create", "-q", "-p", "-f", cfg, 'name="other"')
    assert res.stderr == f"xl: warning: {cfg}: {WARNING}\n"        # one line
    assert as_xl.names() == ["Domain-0", "other"]


def test_create_without_a_cfg_is_one_line(xl):
    res = xl("create", "-n", check=False)
    assert res.returncode == 2 and res.stderr == "pyxenon: create: a cfg file is required\n"


def test_a_cfg_with_only_known_keys_warns_of_nothing(xl, guests):
    res = xl("create", "-n", str(guests / "hello.cfg"))
    assert "warning" not in res.stderr


def test_ignored_warning_names_each_key_in_order():
    config = xlcfg.parse_cfg('name="a"\nkernel="k"\nvfb=["vnc=1"]\npci=[]\n', "a.cfg")
    assert xlcfg.ignored_warning(config) == \
        "warning: a.cfg: settings pyxenon does not implement, ignored: vfb, pci"


def test_xl_help_and_xl_alone_print_the_command_list(as_xl):
    res = as_xl("help")
    lines = res.stdout.splitlines()
    assert lines[0] == "Usage xl <subcommand> [args]"
    assert any(re.match(r" create +create a domain", line) for line in lines)
    assert any(line.startswith(" uptime ") for line in lines)
    alone = as_xl(check=False)
    assert alone.returncode == 2 and alone.stdout == res.stdout
    assert "-s" in as_xl("help", "uptime").stdout
    assert as_xl("help", "nope").stdout == 'command "nope" not implemented\n'


def test_pyxenon_help(xl):
    assert "run" in xl("help").stdout
    assert xl(check=False).returncode == 2
    assert "-f FILE" in xl("help", "create").stdout


def test_uptime_short_form(as_xl, cfg):
    as_xl("create", "-q", "-p", cfg)
    lines = as_xl("uptime", "-s").stdout.splitlines()
    assert [re.sub(r"\d", "N", line) for line in lines] == \
        [" NN:NN:NN up  N:NN, Domain-N (N)", " NN:NN:NN up  N:NN, t (N)"]
    assert as_xl("uptime").stdout.splitlines()[0].split() == ["Name", "ID", "Uptime"]


def test_run_warns_of_ignored_keys(xl, tmp_path, guests):
    path = tmp_path / "r.cfg"
    path.write_text((guests / "hello.cfg").read_text().replace(
        'kernel = "', f'kernel = "{guests}/') + '\npci = [ "01:00.0" ]\n')
    res = xl("run", str(path), check=False)
    assert f"pyxenon: warning: {path}: settings pyxenon does not implement, ignored: pci" \
        in res.stderr.splitlines()
