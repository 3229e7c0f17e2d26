"""The network backend (vif): Linux's xen-netback, for one guest NIC,
attached to a netswitch.Bridge.

tx (guest -> bridge), as xenvif_tx_build_gops and xenvif_count_requests
check a frontend's slots: a frame is one slot, or several chained by
NETTXF_more_data, whose first slot's size is the whole frame's; extra-info
slots are skipped (answered NETIF_RSP_NULL).  A frame shorter than an
Ethernet header is answered NETIF_RSP_ERROR; a slot crossing its page, a
later slot bigger than what is left of the frame, more than
XEN_NETBK_LEGACY_SLOTS_MAX slots, or a chain past req_prod is a fatal
error: the vif stops (xenvif_fatal_tx_err), as does a producer index a ring
ahead.  Every slot's grant is checked (grants_copy.backend_frame) as it is
copied; an unusable one fails its frame.

rx (bridge -> guest): the frontend posts granted pages on the rx ring; a
frame is copied into the next one (grant copy, as netback's rx path; the
grant checked for writing) and answered with its length.  No posted page:
the frame is dropped and counted.
"""
import struct

from pyxenon.hypervisor import grants, grants_copy
from pyxenon.public import netif as n

from .ring import BackRing, RingOverflow
from .xenbus import DeviceError, XenbusBackend

PAGE = 4096
ETH_HLEN = 14
XEN_NETBK_LEGACY_SLOTS_MAX = n.XEN_NETIF_NR_SLOTS_MIN
TX_REQ = struct.Struct("<IHHHH")       # gref, offset, flags, id, size
TX_RSP = struct.Struct("<Hh")
RX_REQ = struct.Struct("<HHI")         # id, pad, gref
RX_RSP = struct.Struct("<HHHh")        # id, offset, flags, status
EXTRA = struct.Struct("<BB")           # type, flags


class FatalTx(Exception):
    """xenvif_fatal_tx_err: the frontend broke the protocol; the vif stops."""


class BadFrame(Exception):
    """Answer every slot of the frame NETIF_RSP_ERROR (xenvif_tx_err)."""


class Netback(XenbusBackend):
    kind = "vif"

    def __init__(self, xenstore, domain, spec, bridge):
        super().__init__(xenstore, domain, spec.devid)
        self.spec = spec
        self.bridge = bridge
        self.tx = self.rx = None
        self.port = None
        self.handles = []
        self.generation = 0
        self.disabled = None
        self.stats = {"tx": 0, "rx": 0, "rx_dropped": 0, "tx_error": 0}

    def backend_nodes(self):
        """libxl__device_nic_add's backend directory."""
        spec, domid = self.spec, self.domain.domid
        return {"frontend": f"/local/domain/{domid}/device/vif/{spec.devid}",
                "frontend-id": domid, "online": 1, "state": 1, "handle": spec.devid,
                "mac": spec.mac, "bridge": spec.bridge, "mtu": spec.mtu, "type": "vif",
                "script": "", "hotplug-status": "connected"}

    def frontend_nodes(self):
        return {"backend": f"/local/domain/0/backend/vif/{self.domain.domid}/{self.spec.devid}",
                "backend-id": 0, "state": 1, "handle": self.spec.devid, "mac": self.spec.mac,
                "trusted": int(self.spec.trusted)}

    def features(self):
        """netback_probe's nodes: copying rx, scatter-gather tx, one queue."""
        return {"feature-sg": 1, "feature-rx-copy": 1, "feature-rx-flip": 0}

    # -- connecting ----------------------------------------------------------------------

    def connect(self):
        """connect_data_rings and read_xenbus_vif_flags."""
        if self.frontend_number("multi-queue-num-queues", default=1) != 1:
            raise DeviceError("ENOSYS", "multi-queue-num-queues: one queue is offered")
        if self.frontend_number("request-rx-copy", default=0) != 1:
            raise DeviceError("EOPNOTSUPP", f"{self.fe}/request-rx-copy: only copying "
                              "receivers are served")
        if self.frontend_number("feature-rx-notify", default=0) != 1:
            raise DeviceError("EINVAL", "feature-rx-notify is mandatory")
        tx_ref, rx_ref = self.frontend_number("tx-ring-ref"), self.frontend_number("rx-ring-ref")
        port = self.frontend_number("event-channel")
        self.tx = self._map(tx_ref, TX_REQ.size)
        self.rx = self._map(rx_ref, RX_REQ.size)
        self.bind_port(port, self.kick)
        self.bridge.attach(self)

    def _map(self, ref, entry):
        try:
            handle, mfn = grants_copy.backend_map(self.domain, ref)
        except grants.GrantError as err:
            raise DeviceError("EINVAL", f"mapping ring-ref {ref} (grant status "
                              f"{err.status})") from None
        self.handles.append(handle)
        mem = self.domain.machine.mem
        return BackRing(mem[mfn * PAGE:(mfn + 1) * PAGE], entry)

    def disconnect(self):
        self.generation += 1
        self.bridge.detach(self)
        self.close_port()
        for handle in self.handles:
            grants_copy.backend_unmap(self.domain.machine, handle)
        self.handles, self.tx, self.rx, self.disabled = [], None, None, None

    def notify(self, ring):
        if ring.push():
            self.domain.events.notify_backend_port(self.port, self.kick)

    def fatal_tx(self, why):
        self.disabled = f"fatal tx error: {why}: vif disabled"
        self.errors.append(self.disabled)

    # -- tx: the guest sends ----------------------------------------------------------

    def kick(self):
        if self.tx is None or self.disabled:
            return
        try:
            more = True
            while more:
                rp = self.tx.producer()
                raw = self.tx.take(rp)
                while raw is not None and not self.disabled:
                    self.transmit_one(raw, rp)
                    raw = self.tx.take(rp)
                more = not self.disabled and self.tx.final_check()
        except (RingOverflow, FatalTx) as err:
            self.fatal_tx(str(err))
        if self.tx is not None:
            self.notify(self.tx)

    def transmit_one(self, raw, rp):
        first = TX_REQ.unpack(raw)
        slots = [first]
        if first[2] & n.NETTXF_extra_info:
            self.skip_extras(rp)
        slots += self.chain(first, rp)
        try:
            frame = self.gather(slots)
        except BadFrame:
            self.stats["tx_error"] += 1
            self.respond_tx(slots, n.NETIF_RSP_ERROR)
            return
        self.respond_tx(slots, n.NETIF_RSP_OKAY)
        self.stats["tx"] += 1
        self.bridge.transmit(self, frame)

    def skip_extras(self, rp):
        """xenvif_get_extras: each extra slot answered NETIF_RSP_NULL."""
        for _ in range(XEN_NETBK_LEGACY_SLOTS_MAX):
            raw = self.tx.take(rp)
            if raw is None:
                raise FatalTx("missing extra info")
            _, flags = EXTRA.unpack_from(raw)
            self.tx.respond(TX_RSP.pack(0, n.NETIF_RSP_NULL))
            if not flags & n.XEN_NETIF_EXTRA_FLAG_MORE:
                return
        raise FatalTx("too many extra info slots")

    def chain(self, first, rp):
        """xenvif_count_requests: the slots after the first, checked."""
        slots, left, flags = [], first[4], first[2]
        while flags & n.NETTXF_more_data:
            if len(slots) + 1 >= XEN_NETBK_LEGACY_SLOTS_MAX:
                raise FatalTx(f"malicious frontend using {len(slots) + 2} slots")
            raw = self.tx.take(rp)
            if raw is None:
                raise FatalTx("asked for more slots than were sent")
            slot = TX_REQ.unpack(raw)
            if slot[4] > left:
                raise FatalTx("packet is bigger than frame")
            left -= slot[4]
            slots.append(slot)
            flags = slot[2]
        return slots

    def gather(self, slots):
        """The frame's bytes: the first slot holds size minus the others'."""
        sizes = [slots[0][4] - sum(s[4] for s in slots[1:])] + [s[4] for s in slots[1:]]
        if slots[0][4] < ETH_HLEN:
            raise BadFrame("runt")
        mem, pieces = self.domain.machine.mem, []
        for (gref, offset, _, _, _), size in zip(slots, sizes):
            if offset + size > PAGE:
                raise FatalTx(f"cross page boundary, txreq.offset: {offset}, size: {size}")
            try:
                mfn = grants_copy.backend_frame(self.domain, gref, False, offset, size)
            except grants.GrantError:
                raise BadFrame(f"grant {gref}") from None
            start = mfn * PAGE + offset
            pieces.append(bytes(mem[start:start + size]))
        return b"".join(pieces)

    def respond_tx(self, slots, status):
        for slot in slots:
            self.tx.respond(TX_RSP.pack(slot[3], status))

    # -- rx: the bridge delivers --------------------------------------------------------

    def receive(self, frame):
        """A frame for this guest: into its next posted rx page, or dropped."""
        if self.rx is None or self.disabled or len(frame) > min(PAGE, self.spec.mtu + 18):
            self.stats["rx_dropped"] += 1
            return
        try:
            raw = self.rx.take(self.rx.producer())
        except RingOverflow as err:
            self.fatal_tx(f"rx {err}")
            return
        if raw is None:
            self.stats["rx_dropped"] += 1
            return
        req_id, _, gref = RX_REQ.unpack(raw)
        self.rx.respond(RX_RSP.pack(req_id, 0, 0, self.copy_in(gref, frame)))
        self.stats["rx"] += 1
        self.notify(self.rx)

    def copy_in(self, gref, frame):
        try:
            mfn = grants_copy.backend_frame(self.domain, gref, True, 0, len(frame))
        except grants.GrantError:
            return n.NETIF_RSP_ERROR
        machine = self.domain.machine
        machine.mem[mfn * PAGE:mfn * PAGE + len(frame)] = frame
        grants.lib.xc_frame_written(machine.core, mfn)
        return len(frame)
