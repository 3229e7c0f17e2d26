"""A session: one world and its oracle, ops applied and checked; replay
of an op sequence on a fresh world, and shrinking one to what reproduces."""
import time
import traceback

from .common import (CALL_LIMIT, GUESTS, STALL_FACTOR, Finding, Hang, hypercall_name, last_frame,
                     time_limit, unraisable_to)
from .ops import destroy_op, op_name
from .oracle import Invariants
from .world import World


SHRINK_TRIALS = 150       # replays spent shrinking one finding
SHRINK_SECONDS = 120      # and at most this long


class Session:
    """A World plus its Invariants: perform(op) applies one op and returns
    (result, problems), problems being (kind, signature, detail)."""

    def __init__(self, guests=GUESTS, plant=None):
        self.world = World(guests, plant)
        self.invariants = Invariants(self.world)
        self.invariants.check()

    def close(self):
        self.world.close()

    def reset(self):
        """The fresh world's state again (World.reset), checked as a new one is."""
        self.world.reset()
        self.invariants = Invariants(self.world)
        self.invariants.check()

    def perform(self, op, limit=None):
        world = self.world
        limit = limit or CALL_LIMIT
        del world.bad_results[:], world.unraisable[:]
        try:
            # CPU time, so that a starved process on a loaded machine is no
            # hang (a 1M-call campaign at a load of 11 reported a 0.8 CPU-s
            # guest run as one); wall-clock time, many times more, so that
            # an op blocked without using the CPU still is
            with unraisable_to(world.unraisable.append), time_limit(limit * STALL_FACTOR), \
                    time_limit(limit, cpu=True):
                result = world.apply(op)
                world.refresh()
        except Hang as hang:
            return None, [("hang", f"hang:{op_name(op)}", f"{op_name(op)}: {hang}")]
        except Exception:
            text = traceback.format_exc()
            return None, [("host-exception", f"host-exception:{last_frame(text)}", text)]
        problems = self.problems(op)
        world.trim_logs()
        return result, problems

    def quarantine_ops(self):
        """Ops destroying the domains whose checks failed (their slots get
        new ones), so a campaign can go on past a known finding."""
        failing = self.invariants.failing
        return [destroy_op(slot) for slot, dom in enumerate(self.world.slots)
                if dom is not None and dom.domid in failing]

    def problems(self, op):
        world = self.world
        # A Hang raised inside a handler is swallowed by the C-to-Python
        # callback (it cannot unwind through C): it arrives as unraisable.
        found = [("hang", f"hang:{op_name(op)}", f"{op_name(op)}: {info.exc_value}")
                 for info in world.unraisable if info.exc_type is Hang]
        found += [("hypervisor-error", f"hypervisor-error:{last_frame(report)}", report)
                  for report in world.crash_problems()]
        found += [("bad-result", f"bad-result:{hypercall_name(nr)}:{problem}", text)
                  for text, nr, problem in world.bad_results]
        found += [("callback-exception", f"unraisable:{info.exc_type.__name__}:{op_name(op)}",
                   f"{info.err_msg}: {info.exc_type.__name__}: {info.exc_value}")
                  for info in world.unraisable if info.exc_type is not Hang]
        found += [("invariant", f"invariant:{rule}", text)
                  for rule, text in self.invariants.check(op)]
        return found


def replay(ops, guests=GUESTS, limit=None, plant=None):
    """Apply ops to a fresh world; every problem found, as Findings."""
    session = Session(guests, plant)
    found = []
    try:
        for op in ops:
            _, problems = session.perform(op, limit)
            found += [Finding(kind, sig, detail, op=op) for kind, sig, detail in problems]
            if any(kind == "hang" for kind, _, _ in problems):
                break
    finally:
        session.close()
    return found


def reproduces(ops, signature, guests, limit=None, plant=None):
    return any(f.signature == signature for f in replay(ops, guests, limit, plant))


def shrink(ops, signature, guests, budget=SHRINK_TRIALS, limit=None, plant=None):
    """A shorter op sequence that still ends in the same finding: the
    shortest suffix that does, then ddmin over everything but its last op."""
    trials = [0]
    deadline = time.monotonic() + SHRINK_SECONDS

    def test(candidate):
        trials[0] += 1
        return (trials[0] <= budget and time.monotonic() < deadline
                and reproduces(candidate, signature, guests, limit, plant))

    n = 1
    while n < len(ops) and not test(ops[-n:]):
        n *= 2
    ops = ops[-n:] if n < len(ops) else ops
    head, last = ops[:-1], ops[-1:]
    chunks = 2
    while len(head) >= 1 and trials[0] < budget and time.monotonic() < deadline:
        size = max(1, len(head) // chunks)
        for start in range(0, len(head), size):
            rest = head[:start] + head[start + size:]
            if test(rest + last):
                head, chunks = rest, max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(len(head), chunks * 2)
    return head + last
