"""Shared-ring device protocols: io/console.h, io/xs_wire.h, io/ring.h.

Both rings here are single pages shared between a guest and its backend
(pointed at by start_info.console.domU.mfn and start_info.store_mfn).  Each
direction is a byte ring with free-running 32-bit producer/consumer indexes:
bytes live at ring[MASK(idx)], the writer advances prod, the reader advances
cons, and prod - cons is the fill level.  After moving an index the side
notifies the other through the ring's event channel.
"""

import ctypes

from . import errno as _xen_errno


# Index type of the generic request/response rings (io/ring.h).
RING_IDX = ctypes.c_uint32


# ---------------------------------------------------------------------------
# PV console ring (io/console.h).  "in" carries bytes to the guest, "out"
# bytes from it.  (The field "in" is a Python keyword: use getattr.)
# ---------------------------------------------------------------------------

XENCONS_RING_IDX = ctypes.c_uint32


class xencons_interface(ctypes.LittleEndianStructure):
    _fields_ = [
        ("in", ctypes.c_char * 1024),     # backend -> guest bytes (keyboard input)
        ("out", ctypes.c_char * 2048),    # guest -> backend bytes (console output)
        ("in_cons", XENCONS_RING_IDX),    # guest has read "in" up to here
        ("in_prod", XENCONS_RING_IDX),    # backend has written "in" up to here
        ("out_cons", XENCONS_RING_IDX),   # backend has read "out" up to here
        ("out_prod", XENCONS_RING_IDX),   # guest has written "out" up to here
    ]


def MASK_XENCONS_IDX(idx, ring_size):
    """Offset in a console ring of ring_size bytes (1024 for in, 2048 for out)."""
    return idx & (ring_size - 1)


# ---------------------------------------------------------------------------
# Xenstore ring (io/xs_wire.h).  Messages are an xsd_sockmsg header followed
# by len payload bytes (usually NUL-separated strings).
# ---------------------------------------------------------------------------

XENSTORE_RING_SIZE = 1024
XENSTORE_RING_IDX = ctypes.c_uint32


def MASK_XENSTORE_IDX(idx):
    """Offset in a xenstore ring of the byte at index idx."""
    return idx & (XENSTORE_RING_SIZE - 1)


class xenstore_domain_interface(ctypes.LittleEndianStructure):
    _fields_ = [
        ("req", ctypes.c_char * XENSTORE_RING_SIZE),  # guest -> xenstored requests
        ("rsp", ctypes.c_char * XENSTORE_RING_SIZE),  # xenstored -> guest replies and
                                                      # watch events
        ("req_cons", XENSTORE_RING_IDX),    # xenstored has read req up to here
        ("req_prod", XENSTORE_RING_IDX),    # guest has written req up to here
        ("rsp_cons", XENSTORE_RING_IDX),    # guest has read rsp up to here
        ("rsp_prod", XENSTORE_RING_IDX),    # xenstored has written rsp up to here
        ("server_features", ctypes.c_uint32),  # XENSTORE_SERVER_FEATURE_* the server offers
        ("connection", ctypes.c_uint32),    # XENSTORE_CONNECTED / XENSTORE_RECONNECT
        ("error", ctypes.c_uint32),         # XENSTORE_ERROR_* set by the server
    ]


XENSTORE_PAYLOAD_MAX = 4096   # hard limit on xsd_sockmsg.len
XENSTORE_ABS_PATH_MAX = 3072  # longest absolute path accepted
XENSTORE_REL_PATH_MAX = 2048  # longest relative path accepted

# xenstore_domain_interface.server_features
XENSTORE_SERVER_FEATURE_RECONNECTION = 1  # ring can be reset via "connection"
XENSTORE_SERVER_FEATURE_ERROR = 2         # the "error" field is used
# xenstore_domain_interface.connection
XENSTORE_CONNECTED = 0   # normal operation
XENSTORE_RECONNECT = 1   # guest asked for a ring reset, in progress
# xenstore_domain_interface.error
XENSTORE_ERROR_NONE = 0     # no error
XENSTORE_ERROR_COMM = 1     # communication problem
XENSTORE_ERROR_RINGIDX = 2  # bad ring index
XENSTORE_ERROR_PROTO = 3    # protocol violation (e.g. payload too long)


class xsd_sockmsg(ctypes.LittleEndianStructure):
    _fields_ = [
        ("type", ctypes.c_uint32),    # XS_* message type
        ("req_id", ctypes.c_uint32),  # request id, echoed in the reply
        ("tx_id", ctypes.c_uint32),   # transaction id, 0 if none
        ("len", ctypes.c_uint32),     # payload bytes following the header
    ]


# xsd_sockmsg.type (enum xsd_sockmsg_type)
XS_CONTROL = 0               # control/debug commands
XS_DEBUG = XS_CONTROL        # old name of XS_CONTROL
XS_DIRECTORY = 1             # list children of a node
XS_READ = 2                  # read a node
XS_GET_PERMS = 3             # read a node's permissions
XS_WATCH = 4                 # watch a path (payload: path, token)
XS_UNWATCH = 5               # remove a watch
XS_TRANSACTION_START = 6     # begin a transaction (reply: its id)
XS_TRANSACTION_END = 7       # commit ("T") or abort ("F") a transaction
XS_INTRODUCE = 8             # tell xenstored about a new domain (privileged)
XS_RELEASE = 9               # forget a domain (privileged)
XS_GET_DOMAIN_PATH = 10      # home path of a domain (/local/domain/<id>)
XS_WRITE = 11                # write a node
XS_MKDIR = 12                # create a node
XS_RM = 13                   # remove a node and its children
XS_SET_PERMS = 14            # set a node's permissions
XS_WATCH_EVENT = 15          # server -> guest: a watch fired (payload: path, token)
XS_ERROR = 16                # reply carrying an error name such as "ENOENT"
XS_IS_DOMAIN_INTRODUCED = 17 # ask whether a domain is introduced
XS_RESUME = 18               # domain resumed (privileged)
XS_SET_TARGET = 19           # give a domain rights over another (privileged)
# 20 was XS_RESTRICT (removed).
XS_RESET_WATCHES = 21        # drop all of the caller's watches
XS_DIRECTORY_PART = 22       # list children, in chunks
XS_TYPE_COUNT = 23           # number of message types
XS_INVALID = 0xFFFF          # never a valid type

# message type -> name, e.g. 2 -> "XS_READ".
XS_NAMES = dict(sorted(
    (value, name)
    for name, value in globals().items()
    if name.startswith("XS_") and name not in ("XS_DEBUG", "XS_TYPE_COUNT")
))

# Watch event payload: index of each NUL-separated string.
XS_WATCH_PATH = 0   # the path that changed
XS_WATCH_TOKEN = 1  # the token given to XS_WATCH

# Old-protocol write modes (strings).
XS_WRITE_NONE = "NONE"
XS_WRITE_CREATE = "CREATE"
XS_WRITE_CREATE_EXCL = "CREATE|EXCL"


# Errors travel as names in XS_ERROR replies.  Xen's table, in Xen's order
# (new names are only ever appended), as (errno, name) pairs; the numbers are
# the Xen/x86-Linux errno values.
xsd_errors = tuple(
    (getattr(_xen_errno, name), name)
    for name in (
        "EINVAL",
        "EACCES",
        "EEXIST",
        "EISDIR",
        "ENOENT",
        "ENOMEM",
        "ENOSPC",
        "EIO",
        "ENOTEMPTY",
        "ENOSYS",
        "EROFS",
        "EBUSY",
        "EAGAIN",
        "EISCONN",
        "E2BIG",
        "EPERM",
    )
)
# name -> number, e.g. "ENOENT" -> 2.
XSD_ERRNO = {name: number for number, name in xsd_errors}
