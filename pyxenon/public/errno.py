"""Xen error numbers: errno.h.

Hypercalls fail by returning minus one of these.  The values are the x86
Linux ones, fixed by the ABI whatever the host OS is (Xen's C names carry an
``XEN_`` prefix; here they do not).  ERRNO_NAMES maps value -> name.
"""

EPERM = 1             # operation not permitted
ENOENT = 2            # no such entry
ESRCH = 3             # no such domain / vCPU / object
EINTR = 4             # interrupted (Xen-internal, never returned to a guest)
EIO = 5               # I/O error
ENXIO = 6             # no such device or address
E2BIG = 7             # argument list too long
ENOEXEC = 8           # exec format error
EBADF = 9             # bad handle
ECHILD = 10           # no child processes
EAGAIN = 11           # try again
EWOULDBLOCK = 11      # same as EAGAIN
ENOMEM = 12           # out of memory
EACCES = 13           # permission denied
EFAULT = 14           # bad guest address
EBUSY = 16            # resource busy
EEXIST = 17           # already exists
EXDEV = 18            # cross-device link
ENODEV = 19           # no such device
ENOTDIR = 20          # not a directory
EISDIR = 21           # is a directory
EINVAL = 22           # invalid argument
ENFILE = 23           # file table overflow
EMFILE = 24           # too many open files
ENOSPC = 28           # no space left
EROFS = 30            # read-only
EMLINK = 31           # too many links
EDOM = 33             # argument out of domain
ERANGE = 34           # result out of range
EDEADLK = 35          # deadlock would occur
EDEADLOCK = 35        # same as EDEADLK
ENAMETOOLONG = 36     # name too long
ENOLCK = 37           # no locks available
ENOSYS = 38           # function (hypercall or sub-op) not implemented
ENOTEMPTY = 39        # not empty
ENODATA = 61          # no data available
ETIME = 62            # timer expired / deadline already passed
EBADMSG = 74          # not a data message
EOVERFLOW = 75        # value too large for the data type
EILSEQ = 84           # illegal byte sequence
ERESTART = 85         # restart the hypercall (Xen-internal, never returned to a guest)
ENOTSOCK = 88         # not a socket
EMSGSIZE = 90         # message too large
EOPNOTSUPP = 95       # operation not supported
EADDRINUSE = 98       # address already in use
EADDRNOTAVAIL = 99    # address not available
ENOBUFS = 105         # no buffer space
EISCONN = 106         # already connected
ENOTCONN = 107        # not connected
ETIMEDOUT = 110       # timed out
ECONNREFUSED = 111    # connection refused

# value -> name; for the two aliased values the first (canonical) name wins.
ERRNO_NAMES = {}
for _name, _value in list(globals().items()):
    if _name.startswith("E") and isinstance(_value, int):
        ERRNO_NAMES.setdefault(_value, _name)
del _name, _value
