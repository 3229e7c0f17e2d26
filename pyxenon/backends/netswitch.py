"""A virtual switch per bridge name: the vifs whose xl.cfg names the same
``bridge=`` are ports of one learning switch inside the host (no host
networking).  A frame's source MAC is learnt for its port; a frame to a
learnt unicast MAC goes to that port only, any other (broadcast,
multicast, unknown) to every other port.

Which ports may send to which is the policy's ``network`` path, decided by
the reference monitor once per pair when a port joins (audited there) and
cached; per-frame decisions are only counted (``forwarded``, ``refused``).
A bridge may capture every frame it carries to a pcap file (libpcap's
format, link type Ethernet), up to PCAP_LIMIT bytes.
"""
import os
import struct
import sys
import time

MAX_MACS = 1024                  # learnt addresses per bridge, so a guest cannot grow the table
PCAP_LIMIT = 64 << 20
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
ETH_HLEN = 14


class Bridge:
    def __init__(self, name, allowed):
        """allowed(sender_port, receiver_port) -> bool: the policy's say, asked
        once per pair."""
        self.name = name
        self.allowed = allowed
        self.ports = []
        self.may = {}              # (from port, to port) -> bool
        self.macs = {}             # learnt MAC -> port
        self.forwarded = 0
        self.refused = 0
        self.pcap = None
        self.pcap_path = None
        self.pcap_bytes = 0

    def attach(self, port):
        for other in self.ports:
            self.may[(port, other)] = self.allowed(port, other)
            self.may[(other, port)] = self.allowed(other, port)
        self.ports.append(port)

    def detach(self, port):
        if port in self.ports:
            self.ports.remove(port)
        self.may = {pair: ok for pair, ok in self.may.items() if port not in pair}
        self.macs = {mac: p for mac, p in self.macs.items() if p is not port}

    def capture(self, path):
        """Capture to path (opened on the first call; a second path is refused)."""
        if self.pcap_path is not None:
            if os.path.abspath(path) != self.pcap_path:
                raise ValueError(f"bridge {self.name} already captures to {self.pcap_path}")
            return
        self.pcap_path = os.path.abspath(path)
        self.pcap = open(path, "wb")
        self.pcap.write(PCAP_HEADER)
        self.pcap.flush()

    def transmit(self, port, frame, flags=0):
        """A frame port sent (at least an Ethernet header), with its
        NETTXF_csum_blank/data_validated flags (its checksum's state)."""
        self.record(frame)
        src, dst = frame[6:12], frame[0:6]
        if not src[0] & 1 and (src in self.macs or len(self.macs) < MAX_MACS):
            self.macs[src] = port
        target = self.macs.get(dst) if not dst[0] & 1 else None
        for other in [target] if target is not None else self.ports:
            if other is port or other is None:
                continue
            if self.may.get((port, other)):
                self.forwarded += 1
                other.receive(frame, flags)
            else:
                self.refused += 1

    def record(self, frame):
        if self.pcap is None or self.pcap_bytes > PCAP_LIMIT:
            return
        now = time.time()
        self.pcap.write(struct.pack("<IIII", int(now), int(now % 1 * 1e6), len(frame),
                                    len(frame)) + frame)
        self.pcap.flush()
        self.pcap_bytes += 16 + len(frame)
        if self.pcap_bytes > PCAP_LIMIT:
            print(f"pyxenon: bridge {self.name}: capture {self.pcap_path} stopped at "
                  f"{PCAP_LIMIT >> 20} MiB", file=sys.stderr)

    def close(self):
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None
