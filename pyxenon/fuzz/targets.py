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
from .parsers.feeders import check_input
from .parsers.inputs import INPUTS
from .records import known_signatures, save_finding, slug
from .session import Session
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
    """One input: a fresh world, its decoded steps, the oracle after each."""

    def __init__(self, guests=GUESTS, plant=None, **kwargs):
        super().__init__("hypercalls", **kwargs)
        self.guests = guests
        self.plant = plant

    def __call__(self, data, provider):
        self.counts["inputs"] += 1
        session = Session(self.guests, self.plant)
        history = []
        try:
            for op in Decoder(FuzzedRandom(provider), session.world).ops():
                history.append(op)
                if self.perform(session, op, history, data):
                    break
        finally:
            session.close()
            self.write_stats()

    def perform(self, session, op, history, data):
        """Apply one op; True ends the input (a known finding broke the world)."""
        self.counts["ops"] += 1
        _, problems = session.perform(op)
        if not problems:
            return False
        kind, signature, detail = problems[0]
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
    return ParserTarget(name, **kwargs)


TARGETS = ("hypercalls",) + tuple(sorted(INPUTS))
