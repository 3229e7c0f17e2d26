"""What every part of the fuzzer shares: paths, limits, findings and
counts, time limits, and what makes a result a result."""
import collections
import contextlib
import dataclasses
import os
import pathlib
import _signal
import re
import signal
import sys

from pyxenon.public import errno, xen


ROOT = pathlib.Path(__file__).resolve().parents[2]
GUESTS = ROOT / "guests"
PAGE = 4096
MASK64 = (1 << 64) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
CALL_LIMIT = 10.0         # CPU seconds one op may take: more is a hang
STALL_FACTOR = 10         # or this many times the limit in wall-clock time (an op blocked)
SLOW_CALL = 1.0           # seconds after which a call is listed as slow
HANG_REPLAY_LIMIT = 3.0   # seconds: replaying a saved hang need not wait CALL_LIMIT
PARSE_LIMIT = 5.0         # seconds one parser input may take


@dataclasses.dataclass
class Finding:
    kind: str            # hypervisor-error, bad-result, invariant, host-exception, hang, parser
    signature: str       # what makes two findings the same bug
    detail: str
    seed: int = None
    epoch: int = None
    index: int = None    # global call index (hypercall campaign)
    op: dict = None
    ops: list = None     # a replayable op sequence ending at op
    saved: str = None    # where the record was written


@dataclasses.dataclass
class Stats:
    calls: int = 0
    per_hypercall: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ok: int = 0
    runs: int = 0
    recreated: int = 0
    quarantined: int = 0
    epochs: int = 0
    slow: list = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    parser_inputs: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    parser_outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    parser_elapsed: float = 0.0
    duplicates: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class Hang(BaseException):
    """An op ran past its time limit (a BaseException, so that no handler's
    ``except Exception`` can swallow it)."""


class ParserFinding(Exception):
    """An input a parser mishandled (raised inside the parser campaign)."""


@contextlib.contextmanager
def time_limit(seconds, cpu=False):
    """Raise Hang in this (main) thread if the block runs past seconds: of
    wall-clock time, or with cpu of the process's CPU time (a parser's
    limit: on a shared machine a starved process is not a hung one, and
    libFuzzer's own timer, on SIGALRM, is left alone)."""
    which, signum = (signal.ITIMER_PROF, signal.SIGPROF) if cpu else \
        (signal.ITIMER_REAL, signal.SIGALRM)
    what = " of CPU time" if cpu else ""

    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s{what}")
    # _signal's own signal(): the signal module's wrapper converts numbers
    # and handlers to enums and back, a few percent of a campaign's time
    # (this runs twice per op)
    previous = _signal.signal(signum, expire)
    signal.setitimer(which, seconds)
    try:
        yield
    finally:
        signal.setitimer(which, 0)
        _signal.signal(signum, previous)


@contextlib.contextmanager
def unraisable_to(sink):
    """Exceptions Python could not raise (e.g. in a cffi callback) go to sink."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: sink(info)
    try:
        yield
    finally:
        sys.unraisablehook = previous


def hypercall_name(nr):
    return xen.HYPERCALL_NAMES.get(nr, f"hypercall_{nr}" if nr < 64 else "hypercall_unknown")


# Hypercalls whose result is a guest value (a register), not a count or -errno.
VALUE_RESULTS = (xen.HYPERVISOR_iret, xen.HYPERVISOR_get_debugreg)


MMU_UPDATE_PREEMPTED = 1 << 31


def continuation_echo(nr, args):
    """Xen's do_mmu_update/do_mmuext_op with a NULL handle and a count of
    exactly MMU_UPDATE_PREEMPTED return (int)foreigndom (the old_guest_table
    continuation's way back): that value, or None for any other call."""
    if nr not in (xen.HYPERVISOR_mmu_update, xen.HYPERVISOR_mmuext_op) or len(args) < 4:
        return None
    if args[0] != 0 or args[1] & 0xFFFFFFFF != MMU_UPDATE_PREEMPTED:
        return None
    return ((args[3] & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def result_problem(nr, rc, args=()):
    """Why rc is not a result of hypercall nr (None if it is one)."""
    if type(rc) is not int:
        return f"not an int ({type(rc).__name__})"
    if not INT64_MIN <= rc <= INT64_MAX:
        return "does not fit the int64 the C hook returns"
    if nr in VALUE_RESULTS or rc == continuation_echo(nr, args):
        return None
    if rc < 0 and -rc not in errno.ERRNO_NAMES:
        return "negative but not -errno"
    if rc in (-errno.EINTR, -errno.ERESTART):
        return "Xen-internal errno returned to a guest"
    return None


def error_name(rc):
    return errno.ERRNO_NAMES.get(-rc, str(rc))


def last_frame(tb_text):
    """'file.py:function: ExceptionType' from a formatted traceback."""
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', tb_text)
    lines = [line for line in tb_text.strip().splitlines() if line and not line.startswith(" ")]
    exc = lines[-1].split(":")[0] if lines else "?"
    where = f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else "?"
    return f"{where}: {exc}"
