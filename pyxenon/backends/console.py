"""The console backend (xenconsoled's part): drains a domain's console ring.

The guest writes into out[] and advances out_prod, then signals the console
port; the backend copies out what lies between out_cons and out_prod, moves
out_cons on, and signals back so a guest waiting for room can continue --
only then: a signal with nothing to take gets no answer (xenconsoled's
buffer_append, tools/console/daemon/io.c).
Host input goes the other way through in[].  Every index in the ring page
is guest-written and so untrusted: a producer more than a ring ahead is
clamped to the last ring's worth of bytes.
"""
import os
import sys

from pyxenon.public import io

RING = io.xencons_interface
OUT, OUT_SIZE = RING.out.offset, RING.out.size
IN, IN_SIZE = getattr(RING, "in").offset, getattr(RING, "in").size
MASK32 = 0xFFFFFFFF
LOG_LIMIT = 16 << 20         # bytes of a guest-NAME.log before it becomes guest-NAME.log.1
LOG_ENV = "PYXENON_CONSOLE_LOG"
BROKEN = -1                  # a log that could not be written: not tried again


def ring_read(page, base, size, cons, n):
    """n bytes of a ring of size bytes at page[base:], from index cons."""
    start = cons % size
    first = min(n, size - start)
    return bytes(page[base + start:base + start + first]) + bytes(page[base:base + n - first])


def ring_write(page, base, size, prod, data):
    start = prod % size
    first = min(len(data), size - start)
    page[base + start:base + start + first] = data[:first]
    page[base:base + len(data) - first] = data[first:]


class ConsoleBackend:
    def __init__(self, domain, pfn):
        self.domain = domain
        self.page = domain.page(pfn)
        self.ring = RING.from_buffer(self.page)
        self.port = domain.events.alloc_host(self.drain)

    def drain(self):
        """The guest signalled: take what it wrote.  As xenconsoled's
        buffer_append, signal back only when out_cons moved: a frontend
        whose event handler kicks the backend in turn would otherwise be
        woken by every kick of its own, for ever."""
        ring = self.ring
        cons, prod = ring.out_cons, ring.out_prod
        n = (prod - cons) & MASK32
        if not n:
            return
        if n > OUT_SIZE:
            cons, n = (prod - OUT_SIZE) & MASK32, OUT_SIZE
        self.domain.emit(ring_read(self.page, OUT, OUT_SIZE, cons, n), source="ring")
        ring.out_cons = prod
        self.domain.events.set_pending(self.port)

    def feed(self, data):
        """Host input for the guest: as much as fits in in[]; returns the count."""
        ring = self.ring
        used = (ring.in_prod - ring.in_cons) & MASK32
        n = max(0, min(IN_SIZE - used, len(data)))
        if n:
            ring_write(self.page, IN, IN_SIZE, ring.in_prod, bytes(data[:n]))
            ring.in_prod = (ring.in_prod + n) & MASK32
            self.domain.events.set_pending(self.port)
        return n


class ConsoleLogs:
    """xenconsoled's --log=guest: each domain's console ring output appended
    to FOLDER/guest-NAME.log as it is taken (create_console_log and
    buffer_append in tools/console/daemon/io.c: O_APPEND, mode 0644).  Its
    console_io writes are the hypervisor's log, not its console, and are
    not written here.  A machine console listener; a file past LOG_LIMIT
    becomes guest-NAME.log.1 (xenconsoled leaves that to logrotate), so a
    guest that prints for ever cannot fill the host's disk."""

    def __init__(self, folder, limit=LOG_LIMIT):
        self.folder = folder
        self.limit = limit
        self.files = {}        # domid -> (name, fd or BROKEN)
        os.makedirs(folder, mode=0o755, exist_ok=True)

    def listen(self, machine):
        machine.console_listeners.append(self)
        machine.destroy_listeners.append(self.close_domain)
        return self

    def path(self, name):
        # a cfg's name is the user's, but "/" must not lead out of the folder
        return os.path.join(self.folder, f"guest-{name.replace('/', '_')}.log")

    def __call__(self, domain, data, source):
        """Runs inside a slice: a write that fails costs that domain its
        log (said once, as xenconsoled's dolog), never the slice."""
        if source != "ring" or not data:
            return
        try:
            fd = self.fd(domain)
            if fd != BROKEN:
                os.write(fd, data)
                if os.fstat(fd).st_size >= self.limit:
                    self.rotate(domain)
        except (OSError, ValueError) as e:    # ValueError: a NUL in the name
            self.close_domain(domain)
            self.files[domain.domid] = (domain.name, BROKEN)
            print(f"pyxenon: console log of {domain.name}: {getattr(e, 'strerror', e)}",
                  file=sys.stderr)

    def fd(self, domain):
        entry = self.files.get(domain.domid)
        if entry is None or entry[0] != domain.name:
            self.close_domain(domain)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            entry = (domain.name, os.open(self.path(domain.name), flags, 0o644))
            self.files[domain.domid] = entry
        return entry[1]

    def rotate(self, domain):
        self.close_domain(domain)
        path = self.path(domain.name)
        os.replace(path, path + ".1")

    def close_domain(self, domain):
        """Its domain went away (machine destroy listener), or its file broke."""
        entry = self.files.pop(domain.domid, None)
        if entry is not None and entry[1] != BROKEN:
            os.close(entry[1])

    def close(self):
        for _, fd in self.files.values():
            if fd != BROKEN:
                os.close(fd)
        self.files.clear()


def log_folder(runtime):
    """Where the daemon keeps the guest-NAME.log files: log/console in its
    runtime folder, as xenconsoled's /var/log/xen/console."""
    return os.path.join(runtime, "log", "console")
