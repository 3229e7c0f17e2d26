"""Tests for pyxenon.toolstack.xlcfg."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxenon.errors import UserInputError
from pyxenon.toolstack.xlcfg import (
    DomainConfig, load_cfg, parse_cfg, parse_number, parse_settings)

GOOD = """\
# A guest.
name = "guest1"
kernel = "vmlinuz"          # relative: next to this file
ramdisk = '/boot/initrd.img'
memory = 256
maxmem = 0x200
vcpus = 2
on_crash = "preserve"; on_reboot = 'rename-restart'
seclabel = "system_u:system_r:domU_t"
disk = [ 'phy:/dev/vg/guest1,xvda,w',
         # a comment inside a list
         "file:/tmp/x.img,xvdb,r",
       ]
vif = []
cpu_weight = 010
empty_str = ""
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "guest1.cfg"
    path.write_text(GOOD)
    return path


def error_of(text, path="t.cfg", overrides=()):
    with pytest.raises(UserInputError) as info:
        parse_cfg(text, path, overrides)
    assert "\n" not in str(info.value)
    return info.value


# ------------------------------------------------------------- good ----

def test_good_file(cfg_file):
    cfg = load_cfg(cfg_file)
    assert isinstance(cfg, DomainConfig)
    assert cfg.name == "guest1"
    assert cfg.kernel == str(cfg_file.parent / "vmlinuz")
    assert cfg.ramdisk == "/boot/initrd.img"
    assert (cfg.memory_mib, cfg.maxmem_mib, cfg.vcpus) == (256, 512, 2)
    assert cfg.on_crash == "preserve"
    assert cfg.on_reboot == "rename-restart"
    assert (cfg.on_poweroff, cfg.on_watchdog) == ("destroy", "destroy")
    assert cfg.seclabel == "system_u:system_r:domU_t"
    assert cfg.cmdline == ""
    assert cfg.path == str(cfg_file)
    assert [(d.target, d.vdev, d.devid, d.mode) for d in cfg.disks] == [
        ("/dev/vg/guest1", "xvda", 51712, "w"), ("/tmp/x.img", "xvdb", 51728, "r")]
    assert cfg.vifs == ()
    assert cfg.extra_keys == {
        "cpu_weight": 8,  # strtol(..., 0): a leading 0 is octal
        "empty_str": "",
    }
    assert cfg.where("seclabel") == (str(cfg_file), 9)
    assert cfg.where("nothing") == (str(cfg_file), None)


def test_defaults():
    cfg = parse_cfg('name="a"\nkernel="/k"', "t.cfg")
    assert (cfg.memory_mib, cfg.maxmem_mib, cfg.vcpus) == (32, 32, 1)
    assert (cfg.on_poweroff, cfg.on_reboot, cfg.on_crash,
            cfg.on_watchdog) == ("destroy", "restart", "destroy", "destroy")
    assert cfg.ramdisk is None and cfg.seclabel is None
    assert cfg.extra_keys == {}


def test_maxmem_defaults_to_memory():
    cfg = parse_cfg('name="a"\nkernel="/k"\nmemory=300', "t.cfg")
    assert cfg.maxmem_mib == 300


def test_quoted_numbers_for_number_keys():
    cfg = parse_cfg('name="a"\nkernel="/k"\nmemory="0x100"\nvcpus="3"', "x")
    assert (cfg.memory_mib, cfg.vcpus) == (256, 3)


def test_values_and_escapes():
    values = parse_settings(r'''a = "q\"uote\\ \x41\101\t"
b = 'it\'s'
c = [1, 0x10, "s"]; d = ["x",
  "y"
  ,
  "z"]
e = 0
''', "t.cfg")
    assert values == {"a": 'q"uote\\ AA\t', "b": "it's", "c": [1, 16, "s"],
                      "d": ["x", "y", "z"], "e": 0}


def test_last_line_without_newline_and_semicolons():
    values = parse_settings("a=1;;b=2;\n;c='x'", "t.cfg")
    assert values == {"a": 1, "b": 2, "c": "x"}


def test_later_setting_wins_and_append():
    values = parse_settings('a = 1\na = 2\ns = "x"\ns += "y"\n'
                            'l = ["a"]\nl += ["b"]\nn += "new"', "t.cfg")
    assert values == {"a": 2, "s": "xy", "l": ["a", "b"], "n": "new"}


@pytest.mark.parametrize("settings_text, expected", [
    ('cmdline="console=hvc0"\nroot="/dev/xvda"\nextra="ro"', "console=hvc0"),
    ('root="/dev/xvda1"\nextra="ro quiet"', "root=/dev/xvda1 ro quiet"),
    ('root="/dev/xvda1"', "root=/dev/xvda1"),
    ('extra="console=hvc0"', "console=hvc0"),
    ("", ""),
])
def test_command_line_rule(settings_text, expected):
    cfg = parse_cfg('name="a"\nkernel="/k"\n' + settings_text, "t.cfg")
    assert cfg.cmdline == expected


def test_overrides(cfg_file):
    cfg = load_cfg(cfg_file, overrides=["memory=1024", 'name="other"',
                                        'extra="quiet"', "disk += ['x,,xvdc']",
                                        "maxmem=2048"])
    assert (cfg.memory_mib, cfg.maxmem_mib) == (1024, 2048)
    assert cfg.name == "other"
    assert cfg.cmdline == "quiet"
    assert cfg.disks[-1].target == os.path.join(os.getcwd(), "x")
    assert cfg.where("name") == ("command line", 2)


def test_override_error_names_command_line(cfg_file):
    with pytest.raises(UserInputError) as info:
        load_cfg(cfg_file, overrides=["vcpus=2", "memory 5"])
    assert str(info.value) == ("command line:2: expected '=' after memory, "
                               "found '5'")


def test_relative_paths(tmp_path):
    sub = tmp_path / "vms"
    sub.mkdir()
    path = sub / "a.cfg"
    path.write_text('name="a"\nkernel="../k/vmlinuz"\nramdisk="initrd"\n')
    cfg = load_cfg(path)
    assert cfg.kernel == str(tmp_path / "k" / "vmlinuz")
    assert cfg.ramdisk == str(sub / "initrd")


def test_relative_override_uses_current_folder(cfg_file, tmp_path,
                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_cfg(cfg_file, overrides=['kernel="other/k"'])
    assert cfg.kernel == os.path.join(str(tmp_path), "other", "k")


# ---------------------------------------------------------------- errors ----

BASE = 'name = "a"\nkernel = "/k"\n'


@pytest.mark.parametrize("text, line, problem", [
    (BASE + 'cmdline = "abc\n', 3, "unterminated string"),
    (BASE + "cmdline = 'abc", 3, "unterminated string"),
    (BASE + 'x = "a\\qb"', 3, "invalid escape '\\q' in quoted string"),
    (BASE + "memory = 12abc", 3, "bad number '12abc'"),
    (BASE + "memory = 09", 3, "bad number '09'"),
    (BASE + "memory = 0x", 3, "bad number '0x'"),
    (BASE + "memory = 99999999999999999999", 3, "number 99999999999999999999 "
     "is too large"),
    (BASE + "memory 512", 3, "expected '=' after memory, found '512'"),
    (BASE + "memory\n", 3, "expected '=' after memory, found end of line"),
    (BASE + "memory =\n", 3, "expected a value for memory, found end of line"),
    (BASE + "memory = 1 2", 3, "unexpected '2' after the value of memory"),
    (BASE + "= 5", 3, "expected a setting name, found '='"),
    (BASE + "\n\nx = [1,\n 2", 6, "list opened on line 5 is never closed"),
    (BASE + "x = [1 2]", 3, "expected ',' or ']' in list, found '2'"),
    (BASE + "x = [[1]]", 3, "expected a string or number in list, found '['"),
    (BASE + "x = 5 + 3", 3, "unexpected character '+' (xl.cfg is not Python)"),
    (BASE + "x = $", 3, "unexpected character '$'"),
    (BASE + 'on_crash = "explode"', 3, "unknown on_crash action 'explode'"),
    (BASE + "on_reboot = 1", 3, "on_reboot must be a quoted string"),
    (BASE + "name = 5", 3, "name must be a quoted string"),
    (BASE + 'name = ""', 3, "name must not be empty"),
    (BASE + "memory = 0", 3, "memory must be at least 1, not 0"),
    (BASE + "vcpus = [1]", 3, "vcpus must be a single number, not a list"),
    (BASE + 'vcpus = "two"', 3, "vcpus must be a number, not 'two'"),
    (BASE + "memory = 512\nmaxmem = 256", 4,
     "maxmem (256 MiB) is less than memory (512 MiB)"),
    (BASE + 'type = "hvm"', 3,
     'type "hvm" is not supported: pyxenon runs PV guests'),
    (BASE + 'type = "pvh"', 3,
     'type "pvh" is not supported: pyxenon runs PV guests'),
    (BASE + 'builder = "hvm"', 3,
     'builder "hvm" is not supported: pyxenon runs PV guests'),
    (BASE + 'type = "xyz"', 3, 'unknown type "xyz"'),
    (BASE + 'x = "a"\nx += 1', 4, "x: can't use += with numbers"),
    (BASE + 'x = "a"\nx += ["b"]', 4,
     "x: can't add [list] to \"string\" or vice versa"),
])
def test_errors_with_line(text, line, problem):
    err = error_of(text)
    assert err.line == line
    assert err.path == "t.cfg"
    assert problem in err.problem
    assert str(err).startswith(f"t.cfg:{line}: ")


@pytest.mark.parametrize("text, problem", [
    ('kernel = "/k"', 'required setting "name" is missing'),
    ('name = "a"', 'required setting "kernel" is missing'),
])
def test_missing_required(text, problem):
    err = error_of(text)
    assert err.line is None
    assert str(err) == f"t.cfg: {problem}"


def test_type_pv_is_fine():
    assert parse_cfg(BASE + 'type = "pv"\nbuilder="generic"', "t").name == "a"


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError) as info:
        load_cfg(tmp_path / "none.cfg")
    assert str(info.value).startswith(str(tmp_path / "none.cfg") + ": ")


def test_directory(tmp_path):
    with pytest.raises(UserInputError):
        load_cfg(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.cfg"
    path.write_bytes(b'name = "a"\nkernel = "\xff"\n')
    with pytest.raises(UserInputError) as info:
        load_cfg(path)
    assert info.value.line == 2


def test_parse_number():
    assert parse_number("0") == 0
    assert parse_number("0x1F") == 31
    assert parse_number("0X1f") == 31
    assert parse_number("017") == 15
    assert parse_number("512") == 512
    for bad in ("", "08", "1e3", "0x", "-1", "1.5"):
        with pytest.raises(ValueError):
            parse_number(bad)


# --------------------------------------------------------------- fuzzing ----

CFG_CHARS = st.sampled_from(list('abnmekrl_019x=+[],;#"\'\\ \t\n\r$.') +
                            ["name", "kernel", "memory", "vcpus", "on_crash",
                             '"destroy"', "0x", "type", '"hvm"', "+="])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.lists(CFG_CHARS, max_size=60).map("".join)))
def test_fuzz_only_user_errors(text):
    for source in (text, BASE + text):
        try:
            parse_cfg(source, "f.cfg")
        except UserInputError as err:
            assert str(err).startswith(("f.cfg", "command line"))
            assert "\n" not in str(err.problem)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(CFG_CHARS, max_size=12).map("".join), max_size=4))
def test_fuzz_overrides(overrides):
    try:
        parse_cfg(BASE, "f.cfg", overrides)
    except UserInputError as err:
        assert str(err).startswith("command line")
