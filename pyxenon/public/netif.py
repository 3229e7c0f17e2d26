"""io/netif.h: the PV network protocol's rings (x86_64 layouts).

Two rings: on tx the frontend lends the backend granted pages holding a
frame (one netif_tx_request per slot, NETTXF_more_data chaining the slots
of one frame); on rx it posts empty granted pages the backend copies
frames into (one netif_rx_response per filled slot, status = bytes).
"""
import ctypes

grant_ref_t = ctypes.c_uint32

XEN_NETIF_NR_SLOTS_MIN = 18        # slots one frame may take, at least
XEN_NETIF_MAX_TX_SIZE = 0xFFFF

_NETTXF_csum_blank = 0
NETTXF_csum_blank = 1 << _NETTXF_csum_blank
_NETTXF_data_validated = 1
NETTXF_data_validated = 1 << _NETTXF_data_validated
_NETTXF_more_data = 2
NETTXF_more_data = 1 << _NETTXF_more_data
_NETTXF_extra_info = 3
NETTXF_extra_info = 1 << _NETTXF_extra_info

_NETRXF_data_validated = 0
NETRXF_data_validated = 1 << _NETRXF_data_validated
_NETRXF_csum_blank = 1
NETRXF_csum_blank = 1 << _NETRXF_csum_blank
_NETRXF_more_data = 2
NETRXF_more_data = 1 << _NETRXF_more_data
_NETRXF_extra_info = 3
NETRXF_extra_info = 1 << _NETRXF_extra_info

_XEN_NETIF_EXTRA_FLAG_MORE = 0
XEN_NETIF_EXTRA_FLAG_MORE = 1 << _XEN_NETIF_EXTRA_FLAG_MORE

NETIF_RSP_DROPPED = -2
NETIF_RSP_ERROR = -1
NETIF_RSP_OKAY = 0
NETIF_RSP_NULL = 1                 # the response of an extra-info slot


class netif_tx_request(ctypes.LittleEndianStructure):
    _fields_ = [
        ("gref", grant_ref_t),
        ("offset", ctypes.c_uint16),   # of the data in the granted page
        ("flags", ctypes.c_uint16),    # NETTXF_*
        ("id", ctypes.c_uint16),       # echoed in the response
        ("size", ctypes.c_uint16),     # the whole frame's in the first slot
    ]


class netif_tx_response(ctypes.LittleEndianStructure):
    _fields_ = [("id", ctypes.c_uint16), ("status", ctypes.c_int16)]


class netif_rx_request(ctypes.LittleEndianStructure):
    _fields_ = [("id", ctypes.c_uint16), ("pad", ctypes.c_uint16), ("gref", grant_ref_t)]


class netif_rx_response(ctypes.LittleEndianStructure):
    _fields_ = [
        ("id", ctypes.c_uint16),
        ("offset", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),    # NETRXF_*
        ("status", ctypes.c_int16),    # bytes received, or NETIF_RSP_*
    ]
