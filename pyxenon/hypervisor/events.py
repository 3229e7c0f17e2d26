"""Event channels: a domain's ports and the 2-level pending/mask bitmaps.

A port is bound to one of: nothing (free), the host (a backend in the
toolstack, such as the console or XenStore), or, once the separation work
lands, another domain's port, a virq or an ipi.  Delivery follows Xen's
2-level ABI: set the port's bit in shared_info.evtchn_pending; unless it is
masked, set the word's bit in the vcpu's evtchn_pending_sel and its
evtchn_upcall_pending, and wake the vcpu.
"""
from pyxenon.public import errno

from .errors import HypercallError

BITS = 64
NR_PORTS = BITS * BITS  # the 2-level ABI's limit on x86_64

FREE, HOST = "free", "host"


class Port:
    __slots__ = ("state", "notify", "vcpu")

    def __init__(self, state=FREE, notify=None):
        self.state = state
        self.notify = notify  # host-side callback for HOST ports
        self.vcpu = 0         # vcpu that gets the upcall


class EventChannels:
    def __init__(self, domain, max_ports=1024):
        self.domain = domain
        self.max_ports = min(max_ports, NR_PORTS)
        self.ports = [Port("reserved")]  # port 0 is never valid

    def alloc_host(self, notify):
        """A port whose other end is a host backend; notify() runs on send."""
        port = self._free_port()
        self.ports[port] = Port(HOST, notify)
        return port

    def _free_port(self):
        for port, p in enumerate(self.ports):
            if p.state == FREE:
                return port
        if len(self.ports) >= self.max_ports:
            raise HypercallError(errno.ENOSPC)
        self.ports.append(Port())
        return len(self.ports) - 1

    def lookup(self, port):
        if not 0 < port < len(self.ports) or self.ports[port].state == FREE:
            raise HypercallError(errno.EINVAL)
        return self.ports[port]

    def send(self, port):
        """EVTCHNOP_send from this domain's guest."""
        p = self.lookup(port)
        if p.state == HOST:
            p.notify()
            return 0
        raise HypercallError(errno.EINVAL)

    def set_pending(self, port):
        """Raise port towards the guest (Xen's evtchn_set_pending)."""
        shared = self.domain.shared_info
        word, bit = divmod(port, BITS)
        mask = 1 << bit
        if shared.evtchn_pending[word] & mask:
            return
        shared.evtchn_pending[word] |= mask
        if shared.evtchn_mask[word] & mask:
            return
        vcpu = self.domain.vcpus[self.ports[port].vcpu]
        info = self.domain.vcpu_info(vcpu.vcpu_id)
        info.evtchn_pending_sel |= 1 << word
        info.evtchn_upcall_pending = 1
        self.domain.kick(vcpu, port)

    def is_pending(self, port):
        word, bit = divmod(port, BITS)
        return bool(self.domain.shared_info.evtchn_pending[word] >> bit & 1)
