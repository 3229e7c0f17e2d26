"""xl's disk and vif syntax (pyxenon.toolstack.xldevices), as xl-disk-
configuration(5) and xl-network-configuration(5) define it."""
import pytest

from pyxenon.errors import UserInputError
from pyxenon.toolstack import xldevices
from pyxenon.toolstack.xlcfg import parse_cfg


def disk(spec):
    return xldevices.parse_disk(spec, "/cfgdir")


# The equivalent forms of xl-disk-configuration(5)'s examples.
@pytest.mark.parametrize("spec", [
    "/dev/vg/guest-volume,,hda",
    "/dev/vg/guest-volume,raw,hda,rw",
    "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
    "raw:/dev/vg/guest-volume,hda,w",
])
def test_equivalent_disk_forms(spec):
    d = disk(spec)
    assert (d.target, d.vdev, d.devid, d.mode, d.devtype) == (
        "/dev/vg/guest-volume", "hda", 3 << 8, "w", "disk")


@pytest.mark.parametrize("spec", [
    "/root/image.iso,,hdc,cdrom",
    "/root/image.iso,,hdc,,cdrom",
    "/root/image.iso,raw,hdc,devtype=cdrom",
    "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
    "raw:/root/image.iso,hdc:cdrom,ro",
])
def test_equivalent_cdrom_forms(spec):
    d = disk(spec)
    assert (d.target, d.vdev, d.mode, d.devtype) == ("/root/image.iso", "hdc", "r", "cdrom")


def test_positional_file_and_phy_forms():
    d = disk("file:/srv/img,xvda,w")
    assert (d.target, d.devid, d.readonly) == ("/srv/img", 51712, False)
    d = disk("phy:/dev/sdb,xvdb,r")
    assert (d.target, d.devid, d.readonly) == ("/dev/sdb", 51728, True)


def test_target_eats_the_rest_and_relative_targets_are_from_the_cfg_folder():
    assert disk("vdev=xvda, target=/a,b c").target == "/a,b c"
    assert disk("img/root.raw,,xvda").target == "/cfgdir/img/root.raw"


def test_pyxenon_keys_seclabel_and_shared_access():
    d = disk("/x,,xvdb,w!,seclabel=secret,no-discard")
    assert (d.mode, d.seclabel, d.discard) == ("w!", "secret", False)


@pytest.mark.parametrize("vdev, number", [
    ("xvda", 202 << 8), ("xvda1", 202 << 8 | 1), ("xvdp15", 202 << 8 | 15 << 4 | 15),
    ("xvdq", 1 << 28 | 16 << 8), ("xvdaa", 1 << 28 | 26 << 8), ("d0p0", 202 << 8),
    ("hdb", 3 << 8 | 1 << 6), ("hdc", 22 << 8), ("sdb2", 8 << 8 | 1 << 4 | 2), ("51712", 51712),
])
def test_vdev_numbers_are_libxls(vdev, number):
    assert xldevices.vdev_number(vdev) == number


@pytest.mark.parametrize("spec, problem", [
    ("qcow2:/x,xvda,w", "format qcow2 is not supported"),
    ("/x,qcow2,xvda", "format qcow2 is not supported"),
    ("/x,ext4,xvda", "unknown value for format"),
    ("foo=bar,/x,xvda", "unknown parameter 'foo'"),
    ("/x,,xvda,w,extra", "too many positional parameters"),
    ("/x", "missing vdev"),
    ("foo:/x,xvda", "unknown deprecated disk prefix"),
    ("/x,,xvda,rwx", "unknown value for access"),
    ("/x,,vda", "invalid vdev"),
    ("/x,,xvdA", "invalid vdev"),
    ("/x,,xvda,script=block-iscsi", "block scripts are not run"),
    ("/x,,xvda,backend=driverdom", "driver domains"),
    ("vdev=xvda,vdev=xvdb,target=/x", "vdev specified twice"),
    (",,xvda", "empty drives"),
    ("nbd:host:1234,xvda", "block script"),
])
def test_bad_disk_specs(spec, problem):
    with pytest.raises(ValueError, match=problem):
        disk(spec)


def test_vif_syntax_and_generated_macs():
    v = xldevices.parse_vif("bridge=lan, mac=00:16:3E:74:3d:76,pcap=lan.pcap", 2, "/cfgdir")
    assert (v.devid, v.bridge, v.mac, v.pcap) == (2, "lan", "00:16:3e:74:3d:76",
                                                  "/cfgdir/lan.pcap")
    v = xldevices.parse_vif("", 0, "/cfgdir", random_bytes=lambda n: b"\xff\x01\x02")
    assert (v.bridge, v.mac) == ("xenbr0", "00:16:3e:7f:01:02")   # r[0] & 0x7f
    assert xldevices.parse_vif("devid=7,mtu=9000,untrusted", 0, "/").devid == 7


@pytest.mark.parametrize("spec, problem", [
    ("mac=00:16:3e:00:00", "invalid mac"), ("mac=01:00:5e:00:00:01", "multicast"),
    ("ip=10.0.0.1", "not supported"), ("rate=10Mb/s", "not supported"),
    ("bogus", "unrecognized argument"), ("bridge=a/b", "invalid bridge"),
    ("mtu=lots", "invalid vif mtu"), ("type=ne2k", "invalid vif type"),
])
def test_bad_vif_specs(spec, problem):
    with pytest.raises(ValueError, match=problem):
        xldevices.parse_vif(spec, 0, "/")


def cfg_error(text):
    with pytest.raises(UserInputError) as info:
        parse_cfg('name="a"\nkernel="/k"\n' + text, "/etc/g.cfg")
    return str(info.value)


def test_cfg_errors_are_one_line_naming_file_line_and_spec():
    message = cfg_error("disk = ['/x,,xvda', 'qcow2:/y,xvdb']\n")
    assert message.startswith("/etc/g.cfg:3: disk 'qcow2:/y,xvdb': format qcow2")
    assert "\n" not in message
    assert cfg_error("vif = [1]\n") == "/etc/g.cfg:3: vif must be a list of quoted strings"
    assert "disk 51712 given twice (as xvda" in cfg_error("disk = ['/x,,xvda', '/y,,51712']\n")


def test_cfg_keeps_devices_in_order():
    cfg = parse_cfg('name="a"\nkernel="/k"\ndisk=["/a,,xvda","/b,,xvdb,r"]\n'
                    'vif=["bridge=lan","bridge=dmz"]\n', "/etc/g.cfg")
    assert [d.vdev for d in cfg.disks] == ["xvda", "xvdb"]
    assert [(v.devid, v.bridge) for v in cfg.vifs] == [(0, "lan"), (1, "dmz")]
    assert "disk" not in cfg.extra_keys and "vif" not in cfg.extra_keys
