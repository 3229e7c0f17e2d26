"""The random hypercall campaign: N hypercalls from a seed, epoch by
epoch, each epoch on a fresh world with its own Random."""
import pathlib
import random
import time

from .common import GUESTS, HANG_REPLAY_LIMIT, SLOW_CALL, VALUE_RESULTS, Finding, Stats, error_name, hypercall_name
from .generator import Generator
from .records import known_signatures, save_finding
from .session import SHRINK_TRIALS, Session, shrink


EPOCH_CALLS = 2000        # hypercalls per fresh Host


# Findings after which the world is still consistent: the epoch goes on.
CARRY_ON = ("bad-result", "hypervisor-error", "callback-exception")


class Campaign:
    """N hypercalls from seed, epoch by epoch."""

    def __init__(self, seed, guests=GUESTS, save=None, known=None, shrink_budget=SHRINK_TRIALS,
                 progress=None, stats=None, plant=None):
        """save: folder for new findings; known: folder of findings not to
        report again (default: save)."""
        self.seed = seed
        self.guests = pathlib.Path(guests)
        self.save = pathlib.Path(save) if save else None
        self.shrink_budget = shrink_budget
        self.progress = progress
        self.plant = plant        # a fixed bug planted back (world.PLANTS)
        self.stats = stats or Stats()
        self.findings = []
        self.seen = known_signatures(known or self.save)
        self.reported = 0

    def run(self, calls, first_epoch=0):
        start = self.started = time.monotonic()
        epoch = first_epoch
        while self.stats.calls < calls:
            self.run_epoch(epoch, min(EPOCH_CALLS, calls - self.stats.calls))
            epoch += 1
            if self.progress:
                self.progress(self)
        self.stats.elapsed += time.monotonic() - start
        return self.findings

    def run_epoch(self, epoch, calls):
        rng = random.Random(self.seed * 1_000_003 + epoch)
        session = Session(self.guests, self.plant)
        history = []
        done = 0
        try:
            ops = Generator(rng, session.world).ops()
            while done < calls:
                op = next(ops)
                history.append(op)
                index = epoch * EPOCH_CALLS + done
                done += op["op"] == "call"
                if self.perform(session, op, epoch, index, history):
                    break
        finally:
            self.stats.epochs += 1
            self.stats.recreated += session.world.recreated
            self.stats.calls += done
            session.close()

    def perform(self, session, op, epoch, index, history):
        """Apply one op, count it, record findings; True ends the epoch."""
        began = time.monotonic()
        result, problems = session.perform(op)
        self.count(op, result, time.monotonic() - began)
        if problems and problems[0][1] in self.seen:
            self.stats.duplicates[problems[0][1]] += 1
            if problems[0][0] == "invariant":
                return not self.quarantine(session, history)
        elif problems:      # the first problem is the cause; the rest may follow from it
            self.record(problems[0], epoch, index, op, list(history))
        return any(kind not in CARRY_ON for kind, _, _ in problems)

    def quarantine(self, session, history):
        """A known invariant broke: destroy the domains it broke in and go
        on, if that leaves a world with no problems."""
        ops = session.quarantine_ops()
        problems = []
        for op in ops:
            history.append(op)
            problems += session.perform(op)[1]
        self.stats.quarantined += len(ops)
        return bool(ops) and not problems

    def count(self, op, result, seconds):
        stats = self.stats
        if op["op"] == "run":
            stats.runs += 1
            return
        if op["op"] != "call":
            return
        name = hypercall_name(op["nr"])
        stats.per_hypercall[name] += 1
        if type(result) is int and result < 0 and op["nr"] not in VALUE_RESULTS:
            stats.errors[error_name(result)] += 1
        else:
            stats.ok += 1
        if seconds > SLOW_CALL:
            stats.slow.append((round(seconds, 2), name, op["args"]))

    def record(self, problem, epoch, index, op, history):
        kind, signature, detail = problem
        self.seen.add(signature)
        finding = Finding(kind, signature, detail, self.seed, epoch, index, op)
        if kind == "hang":      # each replay costs its limit: try a few suffixes only
            finding.ops = shrink(history, signature, self.guests, 3, HANG_REPLAY_LIMIT, self.plant)
        else:
            finding.ops = shrink(history, signature, self.guests, self.shrink_budget,
                                 plant=self.plant)
        if self.save:
            finding.saved = str(save_finding(self.save, finding, plant=self.plant))
        self.findings.append(finding)
