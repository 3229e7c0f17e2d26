"""The host side of a virtual disk: its raw image, the thread that does
its I/O, and the rule on sharing one image between domains.

An image is a regular file (or a block device) read and written as raw
sectors.  Every read, write, flush and discard of a disk runs on that
disk's own thread, in the order the guest sent them, so a slow or stuck
disk holds up only its own guest; the result goes back to the engine's
thread through machine.completions, which alone touches guest memory.
A flush is fsync(): what the guest wrote before it is on the host's disk
when the flush is answered.
"""
import ctypes
import errno as host_errno
import os
import queue
import stat
import threading

SECTOR = 512
QCOW_MAGIC = b"QFI\xfb"
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x1, 0x2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class ImageError(Exception):
    """An image that cannot be served: one line, the path and the problem."""


class Image:
    """A raw image opened for one domain's disk."""

    def __init__(self, path, writable):
        self.path = path
        self.writable = writable
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOCTTY
        try:
            self.fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as err:
            raise ImageError(f"{path}: cannot open the disk image: {err.strerror}") from None
        try:
            self.key, self.size = self._check()
        except ImageError:
            os.close(self.fd)
            raise
        self.sectors = self.size // SECTOR

    def _check(self):
        info = os.fstat(self.fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISBLK(info.st_mode)):
            raise ImageError(f"{self.path}: a disk image must be a regular file or a "
                             "block device")
        os.set_blocking(self.fd, True)
        size = os.lseek(self.fd, 0, os.SEEK_END)
        if os.pread(self.fd, 4, 0) == QCOW_MAGIC:
            raise ImageError(f"{self.path}: a qcow image; pyxenon serves raw images "
                             "(qemu-img convert -O raw)")
        if size < SECTOR:
            raise ImageError(f"{self.path}: smaller than one sector ({size} bytes)")
        return (info.st_dev, info.st_ino), size

    def read(self, offset, length):
        data = os.pread(self.fd, length, offset)
        return data + bytes(length - len(data))      # a file shrunk under us reads zeros

    def write(self, offset, data):
        view = memoryview(data)
        while view:
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def flush(self):
        os.fsync(self.fd)

    def discard(self, offset, length):
        """Punch a hole (the loop driver's discard on a file)."""
        if _libc.fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           offset, length) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Openings:
    """Which domains have which image open, and how: the block hotplug
    script's check_sharing.  A writable disk needs an image no other domain
    has open; a read-only one, an image no other domain has open writable;
    mode "w!" (writable, shared) skips the check, as the script's "!"."""

    def __init__(self):
        self.users = {}           # (st_dev, st_ino) -> {(domid, devid): mode}

    def claim(self, image, domid, devid, mode):
        others = {who: m for who, m in self.users.get(image.key, {}).items()
                  if who[0] != domid}
        if mode == "w" and others:
            raise ImageError(f"{image.path}: already open in domain "
                             f"{sorted(others)[0][0]}; give access w! to share it writable")
        if mode == "r" and any(m != "r" for m in others.values()):
            raise ImageError(f"{image.path}: open writable in another domain")
        self.users.setdefault(image.key, {})[(domid, devid)] = mode

    def release(self, image, domid, devid):
        users = self.users.get(image.key, {})
        users.pop((domid, devid), None)
        if not users:
            self.users.pop(image.key, None)


class Worker:
    """One disk's I/O thread: jobs run in order; each job's result (or the
    OSError it raised) goes to its done() on the engine's thread."""

    def __init__(self, completions, name):
        self.completions = completions
        self.name = name
        self.jobs = queue.SimpleQueue()
        self.thread = None

    def submit(self, job, done):
        if self.completions.synchronous:
            done(_run(job))
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self.thread.start()
        self.completions.start()
        self.jobs.put((job, done))

    def _loop(self):
        while True:
            item = self.jobs.get()
            if item is None:
                return
            job, done = item
            result = _run(job)
            self.completions.post(lambda done=done, result=result: done(result))

    def stop(self, then=None):
        """End the thread once the jobs already queued are done; then()
        runs on the thread after the last one (to close the image)."""
        if self.thread is None:
            if then is not None:
                then()
            return
        if then is not None:
            self.jobs.put((then, lambda _result: None))
            self.completions.start()
        self.jobs.put(None)
        self.thread = None


def _run(job):
    try:
        return job()
    except OSError as err:
        return err


def failed(result):
    return isinstance(result, OSError)


def not_supported(result):
    return isinstance(result, OSError) and result.errno in (host_errno.EOPNOTSUPP,
                                                            host_errno.ENOTSUP)
