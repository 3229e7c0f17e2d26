"""io/blkif.h: the PV block protocol (x86_64 layouts), and io/ring.h's
shared ring as blkif uses it.

A frontend puts blkif_request records (or the discard and indirect forms,
which share their slot) on a one-page ring, advances req_prod and
notifies; the backend answers each with a blkif_response in the same
slots.  Data moves through the grant references the segments name.
"""
import ctypes

from .io import RING_IDX

# blkif.h #defines these two (macros, not typedefs)
_blkif_vdev_t = ctypes.c_uint16
_blkif_sector_t = ctypes.c_uint64
grant_ref_t = ctypes.c_uint32

BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_WRITE_BARRIER = 2
BLKIF_OP_FLUSH_DISKCACHE = 3
BLKIF_OP_RESERVED_1 = 4
BLKIF_OP_DISCARD = 5
BLKIF_OP_INDIRECT = 6

BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8
BLKIF_DISCARD_SECURE = 1 << 0

BLKIF_RSP_EOPNOTSUPP = -2
BLKIF_RSP_ERROR = -1
BLKIF_RSP_OKAY = 0

VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4


class blkif_request_segment(ctypes.LittleEndianStructure):
    _fields_ = [
        ("gref", grant_ref_t),           # the I/O buffer's frame
        ("first_sect", ctypes.c_uint8),  # first 512-byte sector in it (inclusive)
        ("last_sect", ctypes.c_uint8),   # last one (inclusive)
    ]


class blkif_request(ctypes.LittleEndianStructure):
    _fields_ = [
        ("operation", ctypes.c_uint8),
        ("nr_segments", ctypes.c_uint8),
        ("handle", _blkif_vdev_t),
        ("id", ctypes.c_uint64),         # the guest's, echoed in the response
        ("sector_number", _blkif_sector_t),
        ("seg", blkif_request_segment * BLKIF_MAX_SEGMENTS_PER_REQUEST),
    ]


class blkif_request_discard(ctypes.LittleEndianStructure):
    _fields_ = [
        ("operation", ctypes.c_uint8),
        ("flag", ctypes.c_uint8),        # BLKIF_DISCARD_SECURE or zero
        ("handle", _blkif_vdev_t),
        ("id", ctypes.c_uint64),
        ("sector_number", _blkif_sector_t),
        ("nr_sectors", ctypes.c_uint64),
    ]


class blkif_request_indirect(ctypes.LittleEndianStructure):
    _fields_ = [
        ("operation", ctypes.c_uint8),   # BLKIF_OP_INDIRECT
        ("indirect_op", ctypes.c_uint8),  # BLKIF_OP_READ or BLKIF_OP_WRITE
        ("nr_segments", ctypes.c_uint16),
        ("id", ctypes.c_uint64),
        ("sector_number", _blkif_sector_t),
        ("handle", _blkif_vdev_t),
        # frames of blkif_request_segment arrays, 512 to a page
        ("indirect_grefs", grant_ref_t * BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
    ]


class blkif_response(ctypes.LittleEndianStructure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("operation", ctypes.c_uint8),
        ("status", ctypes.c_int16),      # BLKIF_RSP_*
    ]


class blkif_sring_entry(ctypes.Union):
    _fields_ = [("req", blkif_request), ("rsp", blkif_response)]


class blkif_sring_pvt_netif(ctypes.LittleEndianStructure):
    _fields_ = [("smartpoll_active", ctypes.c_uint8)]


class blkif_sring_pvt_tapif_user(ctypes.LittleEndianStructure):
    _fields_ = [("msg", ctypes.c_uint8)]


class blkif_sring_pvt(ctypes.Union):
    _fields_ = [("netif", blkif_sring_pvt_netif), ("tapif_user", blkif_sring_pvt_tapif_user),
                ("pvt_pad", ctypes.c_uint8 * 4)]


class blkif_sring(ctypes.LittleEndianStructure):
    """The ring page's head; ring[] runs on to the end of the page."""
    _fields_ = [
        ("req_prod", RING_IDX), ("req_event", RING_IDX),
        ("rsp_prod", RING_IDX), ("rsp_event", RING_IDX),
        ("pvt", blkif_sring_pvt),
        ("__pad", ctypes.c_uint8 * 44),
        ("ring", blkif_sring_entry * 1),
    ]


def ring_size(entry_type, page=4096):
    """io/ring.h's __RING_SIZE: the power of two of entries that fit after
    the 64-byte head of a page."""
    fit = (page - blkif_sring.ring.offset) // ctypes.sizeof(entry_type)
    return 1 << (fit.bit_length() - 1)
