"""The xl a Xen user expects, the rest of it: `list -l` (uuid, disks,
nics), `info`'s fields, `top` (xentop, batch mode), and `pyxenon stats`."""
import json
import os
import re
import uuid

from pyxenon.toolstack.xlcfg import parse_cfg
from pyxenon.toolstack.xlinfo import config_json

from test_toolstack_daemon import cfg

CFG_UUID = "5b7e6a2c-0d4e-4f3a-9c1b-2a3b4c5d6e7f"
INFO_KEYS = ["host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
             "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps",
             "total_memory", "free_memory", "sharing_freed_memory", "sharing_used_memory",
             "outstanding_claims", "free_cpus", "xen_major", "xen_minor", "xen_extra",
             "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params",
             "xen_changeset", "xen_commandline", "xen_policy", "cc_compiler", "cc_compile_by",
             "cc_compile_domain", "cc_compile_date", "build_id", "xend_config_format"]


def test_uuid_from_the_cfg_or_random(tmp_path):
    text = 'name = "a"\nkernel = "k"\n'
    one, two = (parse_cfg(text, tmp_path / "a.cfg") for _ in range(2))
    assert one.uuid != two.uuid and uuid.UUID(one.uuid).version == 4
    given = parse_cfg(text + f'uuid = "{CFG_UUID.upper()}"\n', tmp_path / "a.cfg")
    assert given.uuid == CFG_UUID


def test_bad_uuid_is_one_line(tmp_path):
    import pytest
    from pyxenon.errors import UserInputError

    with pytest.raises(UserInputError, match=r"a\.cfg:3: uuid '\{x\}' is not a UUID"):
        parse_cfg('name = "a"\nkernel = "k"\nuuid = "{x}"\n', tmp_path / "a.cfg")


def test_disks_and_nics_in_libxl_shape(tmp_path):
    config = parse_cfg('name = "a"\nkernel = "k"\n'
                       'disk = ["file:/img/a.img,xvda,w", "format=raw, vdev=xvdb, access=ro, '
                       'target=/img/b.img"]\n'
                       'vif = ["mac=00:16:3e:00:00:01,bridge=xenbr0", "type=vif"]\n',
                       tmp_path / "a.cfg")
    shown = config_json(config)
    assert shown["disks"][0] == {"backend_domid": 0, "pdev_path": "/img/a.img", "vdev": "xvda",
                                 "backend": "qdisk", "format": "raw", "readwrite": 1,
                                 "is_cdrom": 0}
    assert (shown["disks"][1]["pdev_path"], shown["disks"][1]["readwrite"]) == ("/img/b.img", 0)
    assert shown["nics"][0] == {"backend_domid": 0, "devid": 0, "mac": "00:16:3e:00:00:01",
                                "bridge": "xenbr0", "mtu": 1500}
    assert shown["nics"][1]["devid"] == 1 and shown["nics"][1]["mac"].startswith("00:16:3e:")


def test_list_long_info_top_and_stats(xl, guests, tmp_path):
    spec = tmp_path / "n.cfg"
    spec.write_text(f'name = "n"\nkernel = "{guests}/nullcall/nullcall.elf"\nmemory = 16\n'
                    f'cmdline = "loops=2000000000"\nuuid = "{CFG_UUID}"\n'
                    'vif = ["bridge=br0"]\n')
    made = xl("create", str(spec))
    assert "ignored" not in made.stderr
    xl("create", cfg(guests, "hello"), 'on_poweroff="preserve"')
    long = {d["config"]["c_info"]["name"]: d for d in json.loads(xl("list", "-l").stdout)}
    assert long["n"]["config"]["c_info"]["uuid"] == CFG_UUID
    assert long["n"]["config"]["disks"] == []
    nic = long["n"]["config"]["nics"][0]
    assert (nic["devid"], nic["bridge"], nic["mac"][:9]) == (0, "br0", "00:16:3e:")
    hello_uuid = long["hello"]["config"]["c_info"]["uuid"]
    assert uuid.UUID(hello_uuid) and hello_uuid != CFG_UUID
    assert CFG_UUID in xl("list", "-v", "n").stdout          # the domain's handle, as xl -v shows

    info = xl("info").stdout.splitlines()
    assert [line.split(":", 1)[0].rstrip() for line in info] == INFO_KEYS
    assert all(line[23:25] == ": " for line in info)          # "key" padded to 23, as xl
    fields = {line[:23].rstrip(): line[25:] for line in info}
    assert re.fullmatch(r"\d+\.\d{3}", fields["cpu_mhz"])
    assert re.fullmatch(r"([0-9a-f]{8}:){7}[0-9a-f]{8}", fields["hw_caps"])

    top = xl("top", "-b", "-i", "2", "-d", "0.5").stdout.splitlines()
    headers = [i for i, line in enumerate(top) if line.lstrip().startswith("NAME")]
    assert len(headers) == 2 and top[0].split()[-3:] == ["HCALLS/s", "EVENTS/s", "SSID"]
    second = {line.split()[0]: line.split() for line in top[headers[1] + 1:]}
    assert set(second) == {"Domain-0", "n", "hello"}
    assert second["n"][1] == "-----r" and int(second["n"][-3]) > 0    # it is calling
    assert second["hello"][1] == "-s----" and second["hello"][-3] == "0"
    assert (second["n"][9], second["n"][10]) == ("1", "0")            # NETS, VBDS from the cfg

    stats = xl("stats", "n").stdout.splitlines()
    assert re.match(r"domain n \(d1\): \d+ hypercalls \(\d+ in C, 0 in Python\)", stats[0])
    assert stats[2].split()[0] == "xen_version"
    refused = xl("stats", "Domain-0", check=False)
    assert refused.returncode == 1 and "not allowed on Domain-0" in refused.stderr
    xl("destroy", "n")


def test_xl_top_through_the_symlink(xl, guests, tmp_path):
    link = tmp_path / "bin" / "xl"
    os.symlink(xl.program, link)
    res = xl.__class__(xl.folder, str(link))("top", "-b", "-i", "1")
    assert res.stdout.splitlines()[1].split()[0] == "Domain-0"
    assert xl.__class__(xl.folder, str(link))("stats", "1", check=False).returncode == 2


def test_xentop_state_letters_and_summary():
    from pyxenon.toolstack import top

    assert top.xentop_state("r-----") == "-----r"
    assert top.xentop_state("---sc-") == "-s-c--"
    assert top.xentop_state("-b---d") == "d-b---"
    sampler = top.Sampler.__new__(top.Sampler)
    sampler.info = {"total_memory": "64", "free_memory": "16", "xen_version": "4.17-pyxenon",
                    "nr_cpus": "1", "cpu_mhz": "2592.887"}
    rows = [top.HEADER, "  Domain-0 -----r 1", "         a -----r 1", "         b -s-c-- 0"]
    head = top.summary(sampler, rows)
    assert head[0].startswith("xentop - ") and head[0].endswith("   Xen 4.17-pyxenon")
    assert head[1] == ("3 domains: 2 running, 0 blocked, 0 paused, 0 crashed, 0 dying, "
                       "1 shutdown ")     # as xentop, a domain counts once: shutdown first
    assert head[2] == "Mem: 65536k total, 49152k used, 16384k free    CPUs: 1 @ 2592MHz"
