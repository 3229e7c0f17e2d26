"""What a coverage-guided engine runs on each input (engine.py): the
hypercall target (a fresh world, the structured ops the bytes decode to,
the oracle after each) and the parser targets (parsers/inputs.py).

A new finding is saved as a record (records.py) holding both the engine's
bytes and the ops they decoded to, then raised as FuzzFinding so that the
engine stops, writes its crash file, and (-minimize_crash) minimises it:
each smaller input that still fails saves its smaller record over the
last, so the record left is the engine's minimum.
"""
import json
import pathlib
import tempfile
import time

from .common import GUESTS, Finding
from .parsers import gdb
from .parsers.feeders import check_input
from .parsers.inputs import INPUTS
from .records import known_signatures, save_finding, slug
from .session import Session, reproduces
from .structured import Decoder, FuzzedRandom

CARRY_ON = ("bad-result", "hypervisor-error", "callback-exception")
STATS_EVERY = 1.0      # seconds between stats files (libFuzzer exits without telling)


class FuzzFinding(Exception):
    """A new finding: the engine's crash."""


class Target:
    """Counts, known findings, and the record of a new finding."""

    def __init__(self, name, save=None, known=None, seed=0, stats=None):
        self.name = name
        self.save = pathlib.Path(save) if save else None
        self.seen = known_signatures(known or self.save)
        self.seed = seed
        self.stats_path = pathlib.Path(stats) if stats else None
        self.counts = {"target": name, "inputs": 0, "ops": 0, "known": 0, "started": time.time()}
        self.cpu_start = time.process_time()
        self.written = 0.0

    def found(self, kind, signature, detail, ops, data, op=None):
        """Save a new finding (keeping the shortest record) and raise it."""
        finding = Finding(kind, signature, detail, self.seed, op=op, ops=ops)
        if self.save:
            finding.saved = str(self.keep_shortest(finding, data))
        self.write_stats(force=True)
        raise FuzzFinding(f"{signature}: {detail.strip().splitlines()[-1][:300]}")

    def keep_shortest(self, finding, data):
        path = self.save / f"{slug(finding.signature)}.json"
        if path.exists():
            old = json.loads(path.read_text())
            if len(bytes.fromhex(old.get("input", ""))) <= len(data) and old.get("input"):
                return path
        return save_finding(self.save, finding, engine_input=data, plant=getattr(self, "plant", None))

    def write_stats(self, force=False):
        now = time.time()
        if self.stats_path and (force or now - self.written > STATS_EVERY):
            self.written = now
            self.counts["elapsed"] = now - self.counts["started"]
            self.counts["cpu"] = time.process_time() - self.cpu_start   # the machine is shared
            self.stats_path.write_text(json.dumps(self.counts) + "\n")


class HypercallTarget(Target):
    """One input: a fresh world, its decoded steps, the oracle after each.

    The world is the last input's, reset (World.reset: a fraction of a new
    Host's cost), when that input left it without a problem; else a new
    one.  A new finding on a reset world is confirmed on a new one: if it
    does not reproduce there, the reset leaked state and the finding is
    reported as reset-divergence (the harness's bug, not the hypervisor's)."""

    def __init__(self, guests=GUESTS, plant=None, reuse=True, **kwargs):
        super().__init__("hypercalls", **kwargs)
        self.guests = guests
        self.plant = plant
        self.reuse = reuse
        self.session = None       # the world left clean by the last input
        self.reused = False       # this input's world is a reset one

    def world(self):
        session, self.session = self.session, None
        self.reused = session is not None
        if session is None:
            return Session(self.guests, self.plant)
        session.reset()
        return session

    def __call__(self, data, provider):
        self.counts["inputs"] += 1
        session = self.world()
        history = []
        clean = False
        try:
            for op in Decoder(FuzzedRandom(provider), session.world).ops():
                history.append(op)
                if self.perform(session, op, history, data):
                    break
            clean = not self.dirty
        finally:
            self.dirty = False
            if clean and self.reuse:
                self.session = session
            else:
                session.close()
            self.write_stats()

    dirty = False             # the input met a problem: its world is not reused

    def perform(self, session, op, history, data):
        """Apply one op; True ends the input (a known finding broke the world)."""
        self.counts["ops"] += 1
        _, problems = session.perform(op)
        if not problems:
            return False
        self.dirty = True
        kind, signature, detail = problems[0]
        if signature not in self.seen:
            if self.reused and not reproduces(history, signature, self.guests, plant=self.plant):
                kind, signature = "reset-divergence", f"reset-divergence:{signature}"
            if signature not in self.seen:
                self.found(kind, signature, detail, list(history), data, op)
        self.counts["known"] += 1
        return kind not in CARRY_ON


class ParserTarget(Target):
    """One input: bytes made into the parser's input dict, then fed."""

    def __init__(self, name, **kwargs):
        super().__init__(f"parser:{name}", **kwargs)
        self.parser = name
        self.make = INPUTS[name]
        # one folder for the process's inputs, rewritten each time (a shard
        # points TMPDIR into its own folder, removed after it)
        self.folder = tempfile.mkdtemp(prefix="pyxenon-fuzz-parser-")

    def __call__(self, data, provider):
        self.counts["inputs"] += 1
        self.counts["ops"] += 1
        given = self.make(provider)
        _, problem = check_input(self.parser, given, self.folder)
        self.write_stats()
        if problem is None:
            return
        signature = f"parser:{self.parser}:{problem[0]}"
        if signature in self.seen:
            self.counts["known"] += 1
            return
        self.found("parser", signature, problem[1], None, data,
                   {"parser": self.parser, "input": given})


def make_target(name, guests=GUESTS, plant=None, **kwargs):
    if name == "hypercalls":
        return HypercallTarget(guests, plant, **kwargs)
    gdb.set_guests(pathlib.Path(guests))
    return ParserTarget(name, **kwargs)


TARGETS = ("hypercalls",) + tuple(sorted(INPUTS))
