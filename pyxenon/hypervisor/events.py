"""Event channels: a domain's ports and the 2-level pending/mask bitmaps.

A port is free, unbound (offered to one remote domain), interdomain (joined
to a remote port), bound to a virq or to ipis of a vcpu, or bound to the
host (a backend in the toolstack: console, XenStore; to the guest it looks
like an interdomain port whose peer is domain 0).  Delivery follows Xen's
2-level ABI: set the port's bit in shared_info.evtchn_pending; unless it is
masked, set the word's bit in the vcpu's evtchn_pending_sel and its
evtchn_upcall_pending, and kick the vcpu.  A domain that switched to the
FIFO ABI (EVTCHNOP_init_control) has its ports raised, cleared, unmasked
and tested by evtchn_fifo.py instead: Xen's d->evtchn_port_ops.

Joining two domains (alloc_unbound, bind_interdomain) is an inter-domain
operation and passes the MSM reference monitor; a send travels a channel
the monitor already allowed, and the policy cannot change under it.
"""
from pyxenon._core import ffi
from pyxenon.public import errno

from .errors import HypercallError

BITS = 64
NR_PORTS = BITS * BITS      # the 2-level ABI's limit on x86_64
NR_VIRQS = 24
GLOBAL_VIRQS = {2, 3, 4, 6, 8, 9, 10, 11, 12}   # bound on vcpu 0 only
DOMID_SELF = 0x7FF0
BACKEND_DOMID = 0           # dom0: the host's backends (console, XenStore, block, network)
PAGE = 4096

FREE, RESERVED, UNBOUND, INTERDOMAIN, VIRQ, IPI, HOST = (
    "free", "reserved", "unbound", "interdomain", "virq", "ipi", "host")


class Port:
    __slots__ = ("state", "notify", "vcpu", "remote_dom", "remote_port", "virq")

    def __init__(self, state=FREE, **fields):
        self.state = state
        self.notify = None      # HOST: the backend's callback
        self.vcpu = 0           # vcpu that gets the upcall
        self.remote_dom = None  # UNBOUND: who may bind; INTERDOMAIN: the peer domain
        self.remote_port = 0
        self.virq = None
        for name, value in fields.items():
            setattr(self, name, value)


class EventChannels:
    def __init__(self, domain, max_ports=1024):
        self.domain = domain
        self.limit = max_ports         # the domain's max_evtchn_port + 1
        self.max_ports = min(max_ports, NR_PORTS)
        self.fifo = None               # evtchn_fifo.FifoPorts once the guest switched
        self.ports = [Port(RESERVED)]  # port 0 is never valid
        self.virqs = {}                # (virq, vcpu) -> port
        self.links = None              # the C fast path's view (see sync_link)

    # -- allocation ----------------------------------------------------------

    def _free_port(self):
        for port, p in enumerate(self.ports):
            if p.state == FREE and not (self.fifo and self.fifo.is_busy(port)):
                return port
        if len(self.ports) >= self.max_ports:
            raise HypercallError(errno.ENOSPC)
        self.ports.append(Port())
        return len(self.ports) - 1

    def _new(self, state, **fields):
        port = self._free_port()
        self.ports[port] = Port(state, **fields)
        if self.fifo:
            self.fifo.init_port(port)   # evtchn_port_init()
        return port

    def lookup(self, port):
        if not 0 < port < len(self.ports) or self.ports[port].state in (FREE, RESERVED):
            raise HypercallError(errno.EINVAL)
        return self.ports[port]

    def check_vcpu(self, vcpu_id):
        if not 0 <= vcpu_id < len(self.domain.vcpus):
            raise HypercallError(errno.ENOENT)

    # -- the operations --------------------------------------------------------------

    def alloc_host(self, notify):
        """A port whose other end is a host backend; notify() runs on send."""
        return self._new(HOST, notify=notify, remote_dom=0)

    def alloc_unbound(self, remote_domid):
        """evtchn_alloc_unbound does not look the remote domain up (its bind
        does): one not yet created gets a port too.  A live guest is the
        reference monitor's object now."""
        if remote_domid == DOMID_SELF:
            remote_domid = self.domain.domid
        if remote_domid == BACKEND_DOMID:
            # Offered to dom0, whose backends run on the host: a frontend's
            # channel.  No rule is asked for: the device's own path (block,
            # network) was checked when the host attached it, and only a
            # backend serving this domain can bind the port (bind_backend).
            return self._new(UNBOUND, remote_dom=BACKEND_DOMID)
        remote = self.domain.machine.domains.get(remote_domid)
        if remote is not None:
            self.domain.machine.msm.check(self.domain, remote, "event_channel", "w",
                                          "alloc_unbound")
        return self._new(UNBOUND, remote_dom=remote_domid)

    def bind_interdomain(self, remote_domid, remote_port):
        remote = self.domain.machine.find_domain(remote_domid, self.domain)
        theirs = remote.events.lookup(remote_port)
        if theirs.state != UNBOUND or theirs.remote_dom != self.domain.domid:
            raise HypercallError(errno.EINVAL)
        self.domain.machine.msm.check(self.domain, remote, "event_channel", "w",
                                      "bind_interdomain")
        port = self._new(INTERDOMAIN, remote_dom=remote.domid, remote_port=remote_port)
        theirs.state, theirs.remote_port = INTERDOMAIN, port
        self.sync_link(port)
        remote.events.sync_link(remote_port)
        self.set_pending(port)          # Xen raises the new local port once
        return port

    def bind_backend(self, port, notify):
        """A host backend binds the port a frontend offered to dom0 (its
        bind_interdomain): notify() runs on the guest's sends.  The port
        number is the guest's, from XenStore, and so untrusted: -EINVAL
        unless it is unbound and offered to dom0 (Xen's checks)."""
        p = self.lookup(port) if isinstance(port, int) else None
        if p is None or p.state != UNBOUND or p.remote_dom != BACKEND_DOMID:
            raise HypercallError(errno.EINVAL)
        p.state, p.notify = HOST, notify
        self.set_pending(port)          # Xen raises the new local port once
        return port

    def notify_backend_port(self, port, notify):
        """Raise port for the backend whose callback is notify, if the
        guest has not closed or rebound it meanwhile."""
        p = self.ports[port] if 0 < port < len(self.ports) else None
        if p is not None and p.state == HOST and p.notify == notify:
            self.set_pending(port)

    def bind_virq(self, virq, vcpu_id):
        if not 0 <= virq < NR_VIRQS or (virq in GLOBAL_VIRQS and vcpu_id != 0):
            raise HypercallError(errno.EINVAL)
        self.check_vcpu(vcpu_id)
        if (virq, vcpu_id) in self.virqs:
            raise HypercallError(errno.EEXIST)
        port = self._new(VIRQ, virq=virq, vcpu=vcpu_id)
        self.virqs[(virq, vcpu_id)] = port
        return port

    def bind_ipi(self, vcpu_id):
        self.check_vcpu(vcpu_id)
        return self._new(IPI, vcpu=vcpu_id)

    def close(self, port):
        p = self.lookup(port)
        if p.state == INTERDOMAIN:
            self._unbind_peer(p)
        if p.state == VIRQ:
            self.virqs.pop((p.virq, p.vcpu), None)
        self.ports[port] = Port()
        self.sync_link(port)
        self.clear_pending(port)

    def _unbind_peer(self, p):
        """The peer's port goes back to unbound, offered to us again."""
        peer = self.domain.machine.domains.get(p.remote_dom)
        if peer is not None and p.remote_port < len(peer.events.ports):
            theirs = peer.events.ports[p.remote_port]
            if theirs.state == INTERDOMAIN and theirs.remote_dom == self.domain.domid:
                theirs.state, theirs.remote_port = UNBOUND, 0
                peer.events.sync_link(p.remote_port)

    def close_all(self):
        """EVTCHNOP_reset, or the domain going away."""
        for port in range(1, len(self.ports)):
            if self.ports[port].state not in (FREE, RESERVED, HOST):
                self.close(port)

    def send(self, port):
        """EVTCHNOP_send from this domain's guest."""
        p = self.lookup(port)
        if p.state == HOST:
            p.notify()
        elif p.state == INTERDOMAIN:
            peer = self.domain.machine.domains.get(p.remote_dom)
            if peer is not None:
                peer.events.set_pending(p.remote_port)
        elif p.state == IPI:
            self.set_pending(port)
        elif p.state != UNBOUND:           # a send on an unbound port is dropped
            raise HypercallError(errno.EINVAL)
        return 0

    def bind_vcpu(self, port, vcpu_id):
        p = self.lookup(port)
        self.check_vcpu(vcpu_id)
        if p.state == IPI or (p.state == VIRQ and p.virq not in GLOBAL_VIRQS):
            raise HypercallError(errno.EINVAL)
        p.vcpu = vcpu_id
        peer = self.domain.machine.domains.get(p.remote_dom) if p.state == INTERDOMAIN else None
        if peer is not None:
            peer.events.sync_link(p.remote_port)   # sends from the peer now notify vcpu_id

    def raise_virq(self, virq, vcpu_id=0):
        port = self.virqs.get((virq, vcpu_id))
        if port is not None:
            self.set_pending(port)

    # -- the C fast path's view ------------------------------------------------------

    def _link_target(self, port):
        """(vcpu, shared_info address, port) a send on port reaches, when it is
        a plain interdomain channel to a one-vcpu domain; else None."""
        p = self.ports[port] if port < len(self.ports) else None
        peer = self.domain.machine.domains.get(p.remote_dom) if p and p.state == INTERDOMAIN else None
        if peer is None or peer.shared_info is None or len(peer.vcpus) != 1:
            return None
        theirs = peer.events.ports[p.remote_port]
        return peer.vcpus[theirs.vcpu].core, peer.shared_info_mfn * PAGE, p.remote_port

    def sync_link(self, port):
        """Tell _core/events.c where a send on port lands (after any change)."""
        target = self._link_target(port)
        if target is None and self.links is None:
            return
        if self.links is None:
            self.links = ffi.new("struct xc_link[]", self.max_ports)
            for vcpu in self.domain.vcpus:
                vcpu.core.links, vcpu.core.nr_links = self.links, self.max_ports
        link = self.links[port]
        link.peer, link.peer_shared_ma, link.peer_port = target or (ffi.NULL, 0, 0)

    # -- the bitmaps -----------------------------------------------------------------

    def set_port_ops(self, fifo):
        """Switch to FIFO (a FifoPorts) or back to 2-level (None), as Xen's
        d->evtchn_port_ops; max_evtchns() follows, bounded by the domain's
        limit.  The C fast paths know 2-level only: they decline for a
        domain on FIFO (xc_vcpu.evtchn_fifo)."""
        self.fifo = fifo
        self.max_ports = min(self.limit, fifo.nr_channels if fifo else NR_PORTS)
        for vcpu in self.domain.vcpus:
            vcpu.core.evtchn_fifo = fifo is not None

    def set_pending(self, port):
        """Raise port towards the guest (Xen's evtchn_set_pending)."""
        shared = self.domain.shared_info
        if shared is None:
            return
        if self.fifo:
            return self.fifo.set_pending(port)
        word, bit = divmod(port, BITS)
        mask = 1 << bit
        if shared.evtchn_pending[word] & mask:
            return
        shared.evtchn_pending[word] |= mask
        if not shared.evtchn_mask[word] & mask:
            self.mark_upcall(port, word)
        else:
            self.wake_pollers(port)   # a poll waits on the port, masked or not

    def wake_pollers(self, port):
        for vcpu in self.domain.vcpus:
            if vcpu.poll_ports is not None and port in vcpu.poll_ports:
                self.domain.kick(vcpu, port)

    def mark_upcall(self, port, word):
        vcpu = self.domain.vcpus[self.ports[port].vcpu if port < len(self.ports) else 0]
        info = self.domain.vcpu_info(vcpu.vcpu_id)
        info.evtchn_pending_sel |= 1 << word
        info.evtchn_upcall_pending = 1
        self.domain.kick(vcpu, port)

    def unmask(self, port):
        """Clear the mask; a port pending meanwhile notifies now."""
        if not 0 < port < self.max_ports:
            raise HypercallError(errno.EINVAL)
        if self.fifo:
            if port < len(self.ports) and self.ports[port].state not in (FREE, RESERVED):
                self.fifo.unmask(port)  # evtchn_port_unmask(): usable ports only
            return
        shared = self.domain.shared_info
        word, bit = divmod(port, BITS)
        shared.evtchn_mask[word] &= ~(1 << bit)
        if shared.evtchn_pending[word] >> bit & 1:
            self.mark_upcall(port, word)

    def clear_pending(self, port):
        if self.fifo:
            return self.fifo.clear_pending(port)
        if self.domain.shared_info is not None and port < NR_PORTS:
            word, bit = divmod(port, BITS)
            self.domain.shared_info.evtchn_pending[word] &= ~(1 << bit)

    def is_pending(self, port):
        if self.fifo:
            return self.fifo.is_pending(port)
        word, bit = divmod(port, BITS)
        return bool(self.domain.shared_info.evtchn_pending[word] >> bit & 1)
