"""The block backend (vbd): Linux's xen-blkback, for one guest disk.

A request is copied off the ring, checked as Linux's dispatch_rw_block_io,
xen_blkbk_parse_indirect and dispatch_discard_io check it, and only then
turned into I/O on the disk's thread (blkio.Worker):

* an unknown operation is answered BLKIF_RSP_EOPNOTSUPP (dispatch_other_io);
* no segments (except a flush), more than BLKIF_MAX_SEGMENTS_PER_REQUEST,
  or more than MAX_INDIRECT_SEGMENTS through indirect pages; a segment
  whose last_sect is past its page or before its first_sect; an indirect
  request that is neither a read nor a write; sectors past the end of the
  disk, or wrapping; any write, flush or discard on a read-only disk; a
  grant reference the guest did not grant dom0 (or granted read-only where
  the disk must write into it): BLKIF_RSP_ERROR, with no I/O done;
* a req_prod more than a ring ahead halts the ring until the frontend
  reconnects ("Frontend provided bogus ring requests", __do_block_io_op).

Data moves by grant: each granted frame is checked by the hypervisor's
grant code (grants_copy.backend_frame) when it is copied -- for a read, again
when the data comes back, so a grant ended meanwhile fails the request
rather than landing in a frame no longer the disk's.  Only the ring page is
held mapped (grants_copy.backend_map), as Linux's backend maps its ring.
"""
import struct

from pyxenon.hypervisor import grants, grants_copy
from pyxenon.public import blkif as b

from . import blkio
from .ring import BackRing, RingOverflow
from .xenbus import DeviceError, XenbusBackend

PAGE = 4096
SECTOR_SHIFT = 9
SECTORS_PER_PAGE = PAGE >> SECTOR_SHIFT
MAX_INDIRECT_SEGMENTS = 256        # Linux's blkback advertises this many
SEGS_PER_INDIRECT_FRAME = PAGE // 8
ENTRY = 112                        # sizeof(union blkif_sring_entry), x86_64
RW_HEAD = struct.Struct("<BBH4xQQ")          # operation, nr_segments, handle, id, sector
INDIRECT_HEAD = struct.Struct("<BBH4xQQH2x8I")  # ... indirect_op, nr_segments, grefs
DISCARD_HEAD = struct.Struct("<BBH4xQQQ")
SEGMENT = struct.Struct("<IBB2x")
RESPONSE = struct.Struct("<QBxh4x")
PROTOCOLS = ("x86_64-abi",)        # a PV x86_64 frontend's only ABI


class BadRequest(Exception):
    """Answer BLKIF_RSP_ERROR for this request (Linux's fail_response)."""


class Blkback(XenbusBackend):
    kind = "vbd"

    def __init__(self, xenstore, domain, spec, image, completions):
        self.spec = spec
        self.image = image
        self.readonly = spec.readonly
        self.worker = blkio.Worker(completions, f"vbd-{domain.domid}-{spec.devid}")
        self.ring = None
        self.port = None
        self.ring_handle = None
        self.generation = 0            # bumped at each disconnect: late completions drop
        self.persistent = False
        self.halted = None             # why the ring stopped, if it did
        self.stats = {"read": 0, "write": 0, "flush": 0, "discard": 0, "error": 0}
        super().__init__(xenstore, domain, spec.devid)

    def backend_nodes(self):
        """libxl__device_disk_add's backend directory."""
        spec, domid = self.spec, self.domain.domid
        return {"frontend": f"/local/domain/{domid}/device/vbd/{spec.devid}",
                "frontend-id": domid, "params": spec.target, "type": "phy",
                "online": 1, "removable": 0, "bootable": 1, "state": 1,
                "dev": spec.vdev, "mode": "r" if spec.readonly else "w",
                "device-type": spec.devtype, "discard-enable": int(spec.discard)}

    def frontend_nodes(self):
        return {"backend": f"/local/domain/0/backend/vbd/{self.domain.domid}/{self.spec.devid}",
                "backend-id": 0, "state": 1, "virtual-device": self.spec.devid,
                "device-type": self.spec.devtype, "trusted": int(self.spec.trusted)}

    # -- XenStore: the keys of io/blkif.h ----------------------------------------------

    def features(self):
        """xen_blkbk_probe's nodes: no multi-page rings, no queues but one."""
        return {"feature-max-indirect-segments": MAX_INDIRECT_SEGMENTS}

    def connected(self):
        """connect() in xen-blkback/xenbus.c."""
        info = (b.VDISK_READONLY if self.readonly else 0) | (
            b.VDISK_CDROM if self.spec.devtype == "cdrom" else 0)
        nodes = {"feature-flush-cache": 1, "feature-barrier": 0,
                 "feature-persistent": int(self.persistent),
                 "sectors": self.image.sectors, "info": info,
                 "sector-size": blkio.SECTOR, "physical-sector-size": blkio.SECTOR}
        if self.spec.discard and not self.readonly:
            nodes.update({"feature-discard": 1, "discard-granularity": PAGE,
                          "discard-alignment": 0, "discard-secure": 0})
        return nodes

    def connect(self):
        """connect_ring: the frontend's keys, then its ring and channel."""
        if self.frontend_number("ring-page-order", default=0) != 0:
            raise DeviceError("EINVAL", "ring-page-order: only one-page rings are offered")
        if self.frontend_number("multi-queue-num-queues", default=1) != 1:
            raise DeviceError("ENOSYS", "multi-queue-num-queues: one queue is offered")
        protocol = self.read_frontend("protocol", "x86_64-abi")
        if protocol not in PROTOCOLS:
            raise DeviceError("ENOSYS", f"unknown fe protocol {protocol[:32]!r}")
        self.persistent = self.frontend_number("feature-persistent", default=0) == 1
        ref, port = self.frontend_number("ring-ref"), self.frontend_number("event-channel")
        self._map_ring(ref, port)

    def _map_ring(self, ref, port):
        try:
            self.ring_handle, mfn = grants_copy.backend_map(self.domain, ref)
        except grants.GrantError as err:
            raise DeviceError("EINVAL", f"mapping ring-ref {ref} port {port} "
                              f"(grant status {err.status})") from None
        mem = self.domain.machine.mem
        self.ring = BackRing(mem[mfn * PAGE:(mfn + 1) * PAGE], ENTRY)
        self.bind_port(port, self.kick)

    def disconnect(self):
        """xen_blkif_disconnect: the ring unmapped, the channel closed;
        I/O in flight finishes but is not answered."""
        self.generation += 1
        self.close_port()
        if self.ring_handle is not None:
            grants_copy.backend_unmap(self.domain.machine, self.ring_handle)
            self.ring_handle = None
        self.ring, self.halted = None, None

    def remove(self):
        super().remove()
        self.worker.stop(then=self.image.close)

    # -- the ring ------------------------------------------------------------------------

    def kick(self):
        """The frontend notified (do_block_io_op)."""
        ring = self.ring
        if ring is None or self.halted:
            return
        more = True
        while more:
            try:
                rp = ring.producer()
            except RingOverflow as err:
                self.halted = f"Frontend provided bogus ring requests ({err}): halted"
                self.errors.append(self.halted)
                return
            raw = ring.take(rp)
            while raw is not None:
                self.dispatch(raw)
                raw = ring.take(rp)
            more = ring.final_check()

    def respond(self, req_id, operation, status):
        """make_response."""
        if status != b.BLKIF_RSP_OKAY:
            self.stats["error"] += 1
        self.ring.respond(RESPONSE.pack(req_id, operation, status))
        if self.ring.push():
            self.domain.events.notify_backend_port(self.port, self.kick)

    def dispatch(self, raw):
        operation = raw[0]
        if operation in (b.BLKIF_OP_READ, b.BLKIF_OP_WRITE, b.BLKIF_OP_WRITE_BARRIER,
                         b.BLKIF_OP_FLUSH_DISKCACHE, b.BLKIF_OP_INDIRECT):
            self.dispatch_rw(raw)
        elif operation == b.BLKIF_OP_DISCARD:
            self.dispatch_discard(raw)
        else:
            self.respond(RW_HEAD.unpack_from(raw)[3], operation, b.BLKIF_RSP_EOPNOTSUPP)

    # -- read, write, flush ----------------------------------------------------------------

    def dispatch_rw(self, raw):
        """dispatch_rw_block_io."""
        req = parse_rw(raw, self.domain)
        try:
            segments = req.segments()
            self.translate(req.operation, req.sector, sum(n for _, _, n in segments))
            if req.operation == b.BLKIF_OP_READ:
                self.start_read(req, segments)
            else:
                self.start_write(req, segments)
        except BadRequest:
            self.respond(req.id, req.operation, b.BLKIF_RSP_ERROR)

    def translate(self, operation, sector, count):
        """xen_vbd_translate: writes need a writable disk; a range (none for
        an empty flush) must lie inside it, without a 64-bit wrap."""
        if operation != b.BLKIF_OP_READ and self.readonly:
            raise BadRequest("write to a read-only disk")
        end = sector + count
        if count and (end >= 1 << 64 or end > self.image.sectors):
            raise BadRequest("sectors out of range")

    def frame(self, ref, write):
        """A segment's frame, checked as blkback's grant map checks it
        (a whole-page grant: no sub-page or transitive one)."""
        try:
            return grants_copy.backend_frame(self.domain, ref, write, mapped=True)
        except grants.GrantError:
            raise BadRequest(f"grant {ref} not usable") from None

    def start_read(self, req, segments):
        for ref, _, _ in segments:                   # xen_blkbk_map before any I/O
            self.frame(ref, write=True)
        total = sum(n for _, _, n in segments) << SECTOR_SHIFT
        offset = req.sector << SECTOR_SHIFT
        gen = self.generation
        self.stats["read"] += 1
        self.worker.submit(lambda: self.image.read(offset, total),
                           lambda result: self.finish_read(gen, req, segments, result))

    def finish_read(self, gen, req, segments, result):
        if gen != self.generation:
            return
        status = b.BLKIF_RSP_ERROR if blkio.failed(result) else b.BLKIF_RSP_OKAY
        if status == b.BLKIF_RSP_OKAY:
            try:
                self.scatter(segments, result)
            except BadRequest:
                status = b.BLKIF_RSP_ERROR
        self.respond(req.id, req.operation, status)
        self.kick()

    def scatter(self, segments, data):
        """Copy what the disk gave into the granted frames, each checked again."""
        machine = self.domain.machine
        pos = 0
        for ref, first, count in segments:
            mfn = self.frame(ref, write=True)
            start, length = mfn * PAGE + (first << SECTOR_SHIFT), count << SECTOR_SHIFT
            machine.mem[start:start + length] = data[pos:pos + length]
            grants.lib.xc_frame_written(machine.core, mfn)
            pos += length

    def gather(self, segments):
        mem = self.domain.machine.mem
        pieces = []
        for ref, first, count in segments:
            start = self.frame(ref, write=False) * PAGE + (first << SECTOR_SHIFT)
            pieces.append(bytes(mem[start:start + (count << SECTOR_SHIFT)]))
        return b"".join(pieces)

    def start_write(self, req, segments):
        """A write; a flush (or barrier) is fsync first (REQ_PREFLUSH), then
        its data if it has any."""
        data, offset = self.gather(segments), req.sector << SECTOR_SHIFT
        flush = req.operation in (b.BLKIF_OP_FLUSH_DISKCACHE, b.BLKIF_OP_WRITE_BARRIER)
        self.stats["flush" if flush else "write"] += 1
        image = self.image

        def job():
            if flush:
                image.flush()
            if data:
                image.write(offset, data)
        gen = self.generation
        self.worker.submit(job, lambda result: self.finish(gen, req.id, req.operation, result))

    def finish(self, gen, req_id, operation, result):
        if gen != self.generation:
            return
        status = b.BLKIF_RSP_OKAY
        if blkio.not_supported(result):
            status = b.BLKIF_RSP_EOPNOTSUPP
        elif blkio.failed(result):
            status = b.BLKIF_RSP_ERROR
        self.respond(req_id, operation, status)
        self.kick()

    # -- discard ---------------------------------------------------------------------------

    def dispatch_discard(self, raw):
        """dispatch_discard_io."""
        _, _, _, req_id, sector, count = DISCARD_HEAD.unpack_from(raw)
        try:
            self.translate(b.BLKIF_OP_DISCARD, sector, count)
        except BadRequest:
            self.respond(req_id, b.BLKIF_OP_DISCARD, b.BLKIF_RSP_ERROR)
            return
        if not self.spec.discard:
            self.respond(req_id, b.BLKIF_OP_DISCARD, b.BLKIF_RSP_EOPNOTSUPP)
            return
        self.stats["discard"] += 1
        image, gen = self.image, self.generation
        self.worker.submit(
            lambda: image.discard(sector << SECTOR_SHIFT, count << SECTOR_SHIFT),
            lambda result: self.finish(gen, req_id, b.BLKIF_OP_DISCARD, result))


class Request:
    """A private copy of one read/write/flush request, direct or indirect."""

    def __init__(self, operation, req_id, sector, nseg, seg_source):
        self.operation, self.id, self.sector = operation, req_id, sector
        self.nseg = nseg
        self.seg_source = seg_source       # () -> [(gref, first_sect, last_sect)]
        self.flush = operation in (b.BLKIF_OP_FLUSH_DISKCACHE, b.BLKIF_OP_WRITE_BARRIER)

    def segments(self):
        """[(gref, first_sect, nsec)], checked (the segment loop of
        dispatch_rw_block_io and xen_blkbk_parse_indirect)."""
        if self.nseg == 0 and not self.flush:
            raise BadRequest("no segments")
        result = []
        for gref, first, last in self.seg_source():
            if last >= SECTORS_PER_PAGE or last < first:
                raise BadRequest("bad segment")
            result.append((gref, first, last - first + 1))
        return result


def parse_rw(raw, domain):
    operation, nseg, _, req_id, sector = RW_HEAD.unpack_from(raw)
    if operation != b.BLKIF_OP_INDIRECT:
        limit = b.BLKIF_MAX_SEGMENTS_PER_REQUEST
        source = lambda: [SEGMENT.unpack_from(raw, 24 + 8 * i) for i in range(nseg)]
        return _checked(Request(operation, req_id, sector, nseg, source), limit)
    _, indirect_op, nseg, req_id, sector, _, *refs = INDIRECT_HEAD.unpack_from(raw)
    req = Request(indirect_op, req_id, sector, nseg, lambda: indirect_segments(domain, refs, nseg))
    if indirect_op not in (b.BLKIF_OP_READ, b.BLKIF_OP_WRITE):
        req.nseg = -1                                  # "Invalid indirect operation"
    return _checked(req, MAX_INDIRECT_SEGMENTS)


def _checked(req, limit):
    if not 0 <= req.nseg <= limit:
        bad = req.seg_source
        req.seg_source = lambda: _refuse(bad)
    return req


def _refuse(_source):
    raise BadRequest("bad number of segments")


def indirect_segments(domain, refs, nseg):
    """The segments of an indirect request, copied out of its indirect
    pages (granted to dom0, read-only is enough)."""
    mem = domain.machine.mem
    pages = -(-nseg // SEGS_PER_INDIRECT_FRAME)
    found = []
    for page in range(pages):
        try:
            mfn = grants_copy.backend_frame(domain, refs[page], write=False, mapped=True)
        except grants.GrantError:
            raise BadRequest(f"indirect grant {refs[page]} not usable") from None
        count = min(SEGS_PER_INDIRECT_FRAME, nseg - page * SEGS_PER_INDIRECT_FRAME)
        frame = bytes(mem[mfn * PAGE:mfn * PAGE + count * 8])
        found += [SEGMENT.unpack_from(frame, 8 * i) for i in range(count)]
    return found
