"""Errors the host reports to a user: one line, naming the file and the problem."""
import os
import stat

CONFIG_LIMIT = 1 << 20     # an xl.cfg or a policy: no real one comes near this
KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"))


class UserInputError(Exception):
    """A malformed input supplied by the user (ELF, xl.cfg, policy).

    ``str()`` gives the whole one-line message: ``FILE[:LINE]: problem``.
    """

    def __init__(self, path, problem, line=None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


class HostLimitError(Exception):
    """The host cannot give a run what it needs (address space for the
    machine): a host resource problem, not bad input; one line, exit 1."""


def read_user_file(path, what, limit=CONFIG_LIMIT, limit_is=None):
    """The bytes of a user's regular file of at most limit bytes, or
    UserInputError "cannot read <what>: reason".  As xl's loader, only a
    regular file is read, and never more than the limit: opened without
    blocking (a FIFO with no writer would wedge us; /dev/zero never ends)
    and checked before a byte is read.  limit_is names the limit
    ("the domain's memory") in the message."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise unreadable(path, what, err) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserInputError(path, f"cannot read {what}: {kind(info.st_mode)}, "
                                       "not a regular file")
        data = b"" if info.st_size > limit else read_at_most(fd, path, what, limit + 1)
    finally:
        os.close(fd)
    if max(info.st_size, len(data)) > limit:
        raise UserInputError(path, f"{what} too large: over {size_text(limit)}"
                                   + (f" ({limit_is})" if limit_is else ""))
    return data


def read_at_most(fd, path, what, size):
    chunks, left = [], size
    try:
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:
        raise unreadable(path, what, err) from None
    return b"".join(chunks)


def unreadable(path, what, err):
    return UserInputError(path, f"cannot read {what}: {err.strerror or type(err).__name__}")


def kind(mode):
    return next((name for test, name in KINDS if test(mode)), "a special file")


def size_text(n):
    """1048576 -> "1 MiB"; 1000 -> "1000 bytes"."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"
