"""xl.cfg's ``disk`` and ``vif`` lists: xl's device syntax, checked.

``disk = ['format=raw, vdev=xvda, access=rw, target=/path/img']`` follows
xl-disk-configuration(5) as libxlu's scanner (tools/libs/util/
libxlu_disk_l.l) reads it: comma-separated ``key=value`` parameters,
flags, and positional parameters filling, in order, target, format, vdev
and access; ``target=`` eats the rest of the spec; the deprecated prefixes
``raw:``/``qcow2:``/``vhd:`` give the format and ``file:``, ``phy:``,
``tap:``, ``aio:`` ... are dropped (so ``'file:/img,xvda,w'`` works).
A vdev is numbered as libxl__device_disk_dev_number does (xvda = 51712).

``vif = ['bridge=NAME, mac=00:16:3e:..']`` follows xl-network-
configuration(5) (xl's parse_nic_config); a vif with no mac gets one in
Xen's OUI 00:16:3e, the rest random, as libxl__device_nic_setdefault.

What pyxenon adds or refuses, each said in one line naming the cfg:

* ``seclabel=LABEL`` on a disk: its storage label for the policy's
  ``block`` path.  ``access=w!`` (or ``rw!``): writable and shared with
  other domains (xend's mode, which the block hotplug script's
  check_sharing honours); plain ``w`` refuses an image another domain has
  open, ``r`` one another domain has open writable.
* ``pcap=FILE`` on a vif: every frame on its bridge is appended to FILE.
* A relative target or pcap is taken from the cfg's folder (xl would
  prepend /dev/ to a target).
* Only raw images: qcow, qcow2, vhd and qed are refused (convert with
  ``qemu-img convert -O raw``), and so are scripts, driver domains
  (``backend=``), virtio, COLO, empty cdroms; vif ``rate``, ``ip``,
  ``script``, ``gatewaydev`` and the COLO keys are refused, not ignored.
"""
import os
import re
from dataclasses import dataclass
from typing import Optional

PREFIX_FORMATS = ("raw", "qcow", "qcow2", "vhd")
IGNORED_PREFIXES = ("tapdisk", "tap", "tap2", "aio", "ioemu", "file", "phy")
SCRIPT_PREFIXES = ("iscsi", "nbd", "enbd", "drbd")
FORMATS = ("raw", "qcow", "qcow2", "vhd", "empty", "qed")
ACCESS = {"r": "r", "ro": "r", "rw": "w", "w": "w", "": "w", "w!": "w!", "rw!": "w!"}
DISK_VALUE_KEYS = ("format", "access", "backend", "backendtype", "specification", "vdev",
                   "script", "devtype", "seclabel", "colo-host", "colo-port",
                   "colo-export", "active-disk", "hidden-disk")
DISK_FLAGS = {"cdrom": ("devtype", "cdrom"), "direct-io-safe": ("direct_io_safe", True),
              "discard": ("discard", True), "no-discard": ("discard", False),
              "trusted": ("trusted", True), "untrusted": ("trusted", False),
              "colo": ("colo", True), "no-colo": ("colo", False)}
POSITIONAL = ("target", "format", "vdev", "access")
XEN_OUI = (0x00, 0x16, 0x3E)
DEFAULT_BRIDGE = "xenbr0"           # xl-network-configuration(5)
VIF_KEYS = ("type", "mac", "bridge", "model", "vifname", "devid", "mtu", "pcap", "backend")
VIF_REFUSED = ("ip", "script", "rate", "gatewaydev", "netdev", "accel", "forwarddev")
MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class DeviceSpecError(ValueError):
    """One spec's problem; xlcfg adds the cfg file and line."""


@dataclass(frozen=True)
class DiskSpec:
    target: str
    vdev: str
    devid: int
    mode: str = "w"           # "r", "w", or "w!" (writable, shared)
    devtype: str = "disk"     # or "cdrom"
    discard: bool = True
    trusted: bool = True
    seclabel: Optional[str] = None

    @property
    def readonly(self):
        return self.mode == "r"


@dataclass(frozen=True)
class VifSpec:
    devid: int
    mac: str
    bridge: str = DEFAULT_BRIDGE
    mtu: int = 1500
    pcap: Optional[str] = None
    vifname: Optional[str] = None
    trusted: bool = True


# -------------------------------------------------------------------- disk ----

def parse_disk(spec, folder):
    """A DiskSpec from one ``disk`` list item; relative targets from folder."""
    fields = _scan_disk(spec)
    _refuse_unsupported(fields)
    return _disk_from(fields, folder)


def _scan_disk(spec):
    """libxlu_disk_l.l's rules, longest match first as flex picks them."""
    fields, pos = {"positional": [], "had_prefix": False}, 0
    while pos < len(spec):
        if spec[pos] in " \t\n":
            pos += 1
            continue
        if spec.startswith("target=", pos):
            _save(fields, "target", spec[pos + 7:].removesuffix(","))
            break
        pos = _scan_one(fields, spec, pos)
    return fields


def _scan_one(fields, spec, pos):
    prefix = re.match(r"([a-z][a-z0-9]*):([a-z0-9]?)", spec[pos:])
    if prefix and (prefix[1] in PREFIX_FORMATS + IGNORED_PREFIXES + SCRIPT_PREFIXES
                   or not prefix[2]):
        _prefix(fields, prefix[1])
        return pos + len(prefix[1]) + 1
    end = spec.find(",", pos)
    item, nxt = (spec[pos:], len(spec)) if end < 0 else (spec[pos:end], end + 1)
    _item(fields, item)
    return nxt


def _prefix(fields, name):
    if name in PREFIX_FORMATS:
        _save(fields, "format", name)
    elif name in SCRIPT_PREFIXES:
        raise DeviceSpecError(f"the {name}: prefix needs a block script, which pyxenon "
                              "does not run")
    elif name not in IGNORED_PREFIXES:
        raise DeviceSpecError(f"unknown deprecated disk prefix {name + ':'!r}")
    fields["had_prefix"] = True


def _item(fields, item):
    key, eq, value = item.partition("=")
    if item in DISK_FLAGS:
        name, flag = DISK_FLAGS[item]
        fields[name] = flag
    elif eq and key in DISK_VALUE_KEYS:
        _save(fields, key, value)
    elif eq and re.fullmatch(r"[a-z][-a-z0-9]*", key):
        raise DeviceSpecError(f"unknown parameter {key!r}")
    elif eq:
        raise DeviceSpecError(f"bad disk syntax at {item!r}")
    else:
        _positional(fields, item)


def _positional(fields, item):
    """The next unset of target, format, vdev, access (format is skipped
    after a deprecated prefix, and ``vdev:devtype`` is xend's form)."""
    for name in POSITIONAL:
        if name == "format" and fields["had_prefix"]:
            continue
        if name not in fields:
            if name == "vdev" and ":" in item:
                item, _, devtype = item.rpartition(":")
                _save(fields, "devtype", devtype)
            _save(fields, name, item)
            return
    raise DeviceSpecError(f"too many positional parameters at {item!r}")


def _save(fields, key, value):
    if key in fields and fields[key] and fields[key] != value:
        raise DeviceSpecError(f"{key} specified twice ({fields[key]!r} and {value!r})")
    fields[key] = value


def _refuse_unsupported(fields):
    fmt = fields.get("format") or "raw"
    if fmt not in FORMATS:
        raise DeviceSpecError(f"unknown value for format: {fmt!r}")
    if fmt != "raw" and fmt != "empty":
        raise DeviceSpecError(f"format {fmt} is not supported: pyxenon serves raw images "
                              f"(convert with qemu-img convert -O raw)")
    for key, why in (("script", "block scripts are not run"),
                     ("backend", "driver domains are not supported: dom0 serves every disk"),
                     ("colo", "COLO is not supported"),
                     ("colo-host", "COLO is not supported")):
        if fields.get(key):
            raise DeviceSpecError(f"{key}: {why}")
    if fields.get("backendtype", "phy") not in ("", "phy", "qdisk"):
        raise DeviceSpecError(f"backendtype {fields['backendtype']!r} is not supported "
                              "(pyxenon's blkback serves phy and qdisk disks)")
    if fields.get("specification", "xen") not in ("", "xen"):
        raise DeviceSpecError("specification=virtio is not supported (Xen PV block only)")


def _vdev_and_type(fields):
    vdev = fields.get("vdev", "")
    if not vdev:
        raise DeviceSpecError("missing vdev specification")
    devtype = fields.get("devtype") or "disk"
    if devtype not in ("disk", "cdrom"):
        raise DeviceSpecError(f"unknown value for devtype: {devtype!r}")
    return vdev, vdev_number(vdev), devtype


def _disk_from(fields, folder):
    vdev, devid, devtype = _vdev_and_type(fields)
    target = fields.get("target", "")
    if not target or fields.get("format") == "empty":
        raise DeviceSpecError("no target: empty drives are not supported")
    access = fields.get("access") or ("r" if devtype == "cdrom" else "w")
    if access not in ACCESS:
        raise DeviceSpecError(f"unknown value for access: {access!r} (r, ro, rw, w, w!)")
    label = fields.get("seclabel")
    if label is not None and not label:
        raise DeviceSpecError("seclabel must not be empty")
    return DiskSpec(target=os.path.normpath(os.path.join(folder, target)), vdev=vdev,
                    devid=devid, mode=ACCESS[access], devtype=devtype,
                    discard=fields.get("discard", True), trusted=fields.get("trusted", True),
                    seclabel=label)


def vdev_number(vdev):
    """libxl__device_disk_dev_number: xvdX (202<<8, or 1<<28 past xvdp
    or partition 15), dNpM, a plain number, hdX (3<<8, 22<<8), sdX (8<<8)."""
    numbered = re.fullmatch(r"d(\d+)p(\d+)", vdev)
    if numbered and int(numbered[1]) < 1 << 20 and int(numbered[2]) < 256:
        return _xvd(int(numbered[1]), int(numbered[2]))
    found = _letters(vdev, "xvd", (1 << 20) - 1, 255)
    if found:
        return _xvd(*found)
    if re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", vdev) and int(vdev, 0) <= 0x7FFFFFFF:
        return int(vdev, 0)
    found = _letters(vdev, "hd", 3, 63)
    if found:
        disk, part = found
        return (3 if disk < 2 else 22) << 8 | (disk & 1) << 6 | part
    found = _letters(vdev, "sd", 15, 15)
    if found:
        return 8 << 8 | found[0] << 4 | found[1]
    raise DeviceSpecError(f"invalid vdev {vdev!r} (use xvdX, hdX, sdX or dNpM)")


def _xvd(disk, part):
    if disk <= 15 and part <= 15:
        return 202 << 8 | disk << 4 | part
    return 1 << 28 | disk << 8 | part


def _letters(vdev, kind, max_index, max_part):
    """device_virtdisk_matches: the drive letters in base 26, a partition."""
    found = re.fullmatch(kind + r"([a-z]+)([1-9][0-9]*)?", vdev)
    if not found:
        return None
    index = -1
    for letter in found[1]:
        index = (index + 1) * 26 + ord(letter) - ord("a")
        if index > max_index:
            return None
    part = int(found[2]) if found[2] else 0
    return (index, part) if part <= max_part else None


# --------------------------------------------------------------------- vif ----

def parse_vif(spec, index, folder, random_bytes=os.urandom):
    """A VifSpec from one ``vif`` list item (devid: its index, or devid=)."""
    values = {}
    for token in filter(None, (t.strip(" ") for t in spec.split(","))):
        key, eq, value = token.partition("=")
        if token in ("trusted", "untrusted"):
            values["trusted"] = token == "trusted"
        elif eq and key in VIF_REFUSED:
            raise DeviceSpecError(f"vif {key}= is not supported by pyxenon's netback")
        elif eq and key in VIF_KEYS:
            values[key] = value
        else:
            raise DeviceSpecError(f"unrecognized argument {token!r}")
    return _vif_from(values, index, folder, random_bytes)


def _vif_from(values, index, folder, random_bytes):
    if values.get("type", "vif") not in ("vif", "ioemu"):
        raise DeviceSpecError(f"invalid vif type {values['type']!r}")
    if values.get("backend"):
        raise DeviceSpecError("driver domains are not supported: dom0 serves every vif")
    bridge = values.get("bridge", DEFAULT_BRIDGE)
    if not NAME.fullmatch(bridge):
        raise DeviceSpecError(f"invalid bridge name {bridge!r}")
    pcap = values.get("pcap")
    return VifSpec(devid=_vif_number(values, "devid", index, 0xFFFF),
                   mac=_mac(values.get("mac"), random_bytes), bridge=bridge,
                   mtu=_vif_number(values, "mtu", 1500, 65535),
                   pcap=os.path.normpath(os.path.join(folder, pcap)) if pcap else None,
                   vifname=values.get("vifname"), trusted=values.get("trusted", True))


def _vif_number(values, key, default, limit):
    text = values.get(key)
    if text is None:
        return default
    if not text.isdigit() or int(text) > limit:
        raise DeviceSpecError(f"invalid vif {key} {text!r} (0 to {limit})")
    return int(text)


def _mac(text, random_bytes):
    if text is None:
        r = random_bytes(3)     # libxl__device_nic_setdefault: Xen's OUI, r[0] & 0x7f
        return format_mac(XEN_OUI + (r[0] & 0x7F, r[1], r[2]))
    if not MAC.fullmatch(text):
        raise DeviceSpecError(f"invalid mac {text!r} (six hex pairs: 00:16:3e:xx:xx:xx)")
    if int(text[:2], 16) & 1:
        raise DeviceSpecError(f"mac {text} is a multicast address")
    return text.lower()


def format_mac(octets):
    return ":".join(f"{b:02x}" for b in octets)


# --------------------------------------------------------------- the lists ----

def check_unique(disks, vifs):
    """Two devices of one kind with the same number would be one node in
    XenStore: refuse, as libxl does (ERROR_DEVICE_EXISTS)."""
    for kind, items, name in (("disk", disks, "vdev"), ("vif", vifs, "devid")):
        seen = {}
        for item in items:
            if item.devid in seen:
                raise DeviceSpecError(f"{kind} {getattr(item, name)} given twice (as "
                                      f"{getattr(seen[item.devid], name)}: device {item.devid})")
            seen[item.devid] = item
