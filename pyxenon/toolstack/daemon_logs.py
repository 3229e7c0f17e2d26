"""The daemon's two logs: the hypervisor's console log (`xl dmesg`) and
the reference monitor's audit log (audit.log, rotated so it stays bounded)."""
import collections
import os
import time

from .policy import JsonLinesAudit

DMESG_LINES = 10000
MAX_AUDIT_BYTES = 16 << 20       # audit.log is rotated to audit.log.1 past this size


class Dmesg:
    """The hypervisor's console log, as `xl dmesg` shows it."""

    def __init__(self):
        self.lines = collections.deque(maxlen=DMESG_LINES)
        self.t0 = time.monotonic()
        self.partial = {}  # domid -> unfinished console_io line

    def log(self, text):
        stamp = time.monotonic() - self.t0
        for line in str(text).splitlines() or [""]:
            self.lines.append(f"(XEN) [{stamp:12.6f}] {line}")

    def guest(self, domain, data):
        """console_io output: Xen puts it in its own log, prefixed (dN)."""
        text = self.partial.pop(domain.domid, "") + data.decode("utf-8", errors="replace")
        *lines, rest = text.split("\n")
        for line in lines:
            self.lines.append(f"(d{domain.domid}) {line}")
        if rest:
            self.partial[domain.domid] = rest[-1024:]


class AuditLog:
    """The MSM's audit sink: one JSON object per line in path (mode 0600),
    flushed each time; past MAX_AUDIT_BYTES the file becomes path.1 (the one
    before is dropped), so a guest retrying a refused operation cannot fill
    the host's disk."""

    def __init__(self, path, limit=MAX_AUDIT_BYTES):
        self.path = path
        self.limit = limit
        self.sink = None
        self.open()

    def open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.sink = JsonLinesAudit(open(fd, "a", encoding="utf-8"))

    def __call__(self, record):
        self.sink(record)
        if os.fstat(self.sink.file.fileno()).st_size >= self.limit:
            self.sink.file.close()
            os.replace(self.path, self.path + ".1")
            self.open()

    def close(self):
        self.sink.file.close()
