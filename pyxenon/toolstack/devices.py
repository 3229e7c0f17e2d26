"""Attaching a domain's disks to the block backend (libxl's disk add), each
attach first decided by the reference monitor, and its vifs to the network
backend and the bridge they name.

A disk is a path of the policy: from the domain's label to the disk's
storage label (its ``seclabel=`` in the disk spec), path ``block``, access
"r" for a read-only disk and "rw" for a writable one.  The check is made
once, when the disk is attached, and audited; refused, the domain is not
created.  As every path, it is refused when no policy is loaded.

A vif always attaches (a NIC alone on a bridge harms no one); which of the
bridge's other ports its frames may reach is the policy's ``network`` path
from its label to theirs, asked once per pair when its frontend connects
(netswitch.Bridge caches the answers and counts the frames).
"""
from pyxenon.backends.blkback import Blkback
from pyxenon.backends.blkio import Image, ImageError, Openings
from pyxenon.backends.netback import Netback
from pyxenon.backends.netswitch import Bridge
from pyxenon.errors import UserInputError
from pyxenon.hypervisor.errors import HypercallError


class Storage:
    """The object of a block check: a disk image by its storage label."""

    domid = None

    def __init__(self, spec):
        self.name = spec.target
        self.label = spec.seclabel


class Devices:
    """The backends of a host's domains."""

    def __init__(self, machine, xenstore):
        self.machine = machine
        self.xenstore = xenstore
        self.openings = Openings()
        self.disks = {}             # domid -> [Blkback]
        self.vifs = {}              # domid -> [Netback]
        self.bridges = {}           # bridge name -> netswitch.Bridge

    def attach(self, domain, config):
        for spec in config.disks:
            self.attach_disk(domain, spec, config.path)
        for spec in config.vifs:
            self.attach_vif(domain, spec, config.path)

    def attach_vif(self, domain, spec, cfg_path):
        bridge = self.bridges.get(spec.bridge)
        if bridge is None:
            bridge = self.bridges[spec.bridge] = Bridge(spec.bridge, self._may_send)
        if spec.pcap:
            try:
                bridge.capture(spec.pcap)
            except (OSError, ValueError) as err:
                raise UserInputError(cfg_path, f"vif {spec.devid}: pcap: "
                                     f"{getattr(err, 'strerror', None) or err}") from None
        backend = Netback(self.xenstore, domain, spec, bridge, self.machine.completions)
        self.vifs.setdefault(domain.domid, []).append(backend)
        backend.start()
        return backend

    def _may_send(self, sender, receiver):
        try:
            self.machine.msm.check(sender.domain, receiver.domain, "network", "w",
                                   f"bridge {sender.bridge.name}")
        except HypercallError:
            return False
        return True

    def attach_disk(self, domain, spec, cfg_path):
        access = "r" if spec.readonly else "rw"
        try:
            self.machine.msm.check(domain, Storage(spec), "block", access, "attach")
        except HypercallError:
            raise UserInputError(cfg_path, f"disk {spec.vdev}: refused by the policy "
                                 f"(label {domain.label!r} to storage label "
                                 f"{spec.seclabel!r}, block {access})") from None
        try:
            image = Image(spec.target, writable=not spec.readonly)
        except ImageError as err:
            raise UserInputError(cfg_path, f"disk {spec.vdev}: {err}") from None
        try:
            self.openings.claim(image, domain.domid, spec.devid, spec.mode)
        except ImageError as err:
            image.close()
            raise UserInputError(cfg_path, f"disk {spec.vdev}: {err}") from None
        backend = Blkback(self.xenstore, domain, spec, image, self.machine.completions)
        self.disks.setdefault(domain.domid, []).append(backend)
        backend.start()
        return backend

    def detach(self, domain):
        """The domain is going: its backends disconnect before its grants go."""
        for backend in self.disks.pop(domain.domid, []):
            self.openings.release(backend.image, domain.domid, backend.devid)
            backend.remove()
        for backend in self.vifs.pop(domain.domid, []):
            backend.remove()

    def close(self):
        for bridge in self.bridges.values():
            bridge.close()

    def find(self, domain, devid, kind="vbd"):
        for backend in (self.disks if kind == "vbd" else self.vifs).get(domain.domid, []):
            if backend.devid == devid:
                return backend
        return None
