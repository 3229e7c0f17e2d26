"""One shard of a coverage-guided campaign: an engine process (engine.py)
run on a corpus and a budget, in a folder of its own, and what it returns.

A shard takes everything it needs as data (corpus inputs, known findings)
and gives everything back as data (new corpus inputs, findings records,
counts), so it runs the same in this process's pool, in a local Ray
instance, or on another machine of a Ray cluster: nothing is shared
through the file system.  A shard that crashed on a finding is then run
again with libFuzzer's -minimize_crash, so the record it returns is the
engine's minimum.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

MINIMIZE_RUNS = 300       # inputs libFuzzer may spend minimising a crash
MINIMIZE_SECONDS = 60
GRACE = 120               # seconds past a shard's budget before it is stopped
STATUS = re.compile(rb"#(\d+)\s+(?:INITED|NEW|REDUCE|pulse|DONE)\s+cov: (\d+) ft: (\d+) "
                    rb"corp: (\d+)/\S+.*?exec/s: (\d+)")


@dataclasses.dataclass
class ShardSpec:
    target: str
    seed: int
    runs: int = -1                 # inputs (-1: until max_time)
    max_time: int = 60             # seconds
    max_len: int = 4096
    corpus: list = dataclasses.field(default_factory=list)    # inputs to start from (bytes)
    known: list = dataclasses.field(default_factory=list)     # records not to report again
    guests: str = None
    plant: str = None              # a fixed bug planted back (world.PLANTS)


def unit_name(data):
    return hashlib.sha1(data).hexdigest()


def write_folder(folder, units):
    folder.mkdir(parents=True, exist_ok=True)
    for data in units:
        (folder / unit_name(data)).write_bytes(data)


def engine_command(spec, work, extra=()):
    cmd = [sys.executable, "-m", "pyxenon.fuzz.engine", f"--target={spec.target}",
           f"--save={work / 'save'}", f"--known={work / 'known'}", f"--stats={work / 'stats.json'}",
           f"--seed={spec.seed}"]
    if spec.guests:
        cmd.append(f"--guests={spec.guests}")
    if spec.plant:
        cmd.append(f"--plant={spec.plant}")
    return cmd + [f"-seed={spec.seed}", f"-max_len={spec.max_len}", "-len_control=0",
                  "-timeout=30", "-rss_limit_mb=3072", f"-artifact_prefix={work}/"] + list(extra)


def run_engine(cmd, limit, work):
    """The engine's status lines (stderr), or what it printed before it was
    stopped.  Its temporary files (launcher, parser inputs) go to work."""
    env = dict(os.environ, TMPDIR=str(work))
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=limit, env=env)
        return done.stderr
    except subprocess.TimeoutExpired as late:
        return late.stderr or b""


def last_status(log):
    found = STATUS.findall(log)
    if not found:
        return {"execs": 0, "cov": 0, "ft": 0, "corpus": 0, "exec_s": 0}
    execs, cov, ft, corp, rate = (int(x) for x in found[-1])
    return {"execs": execs, "cov": cov, "ft": ft, "corpus": corp, "exec_s": rate}


def run_shard(spec):
    """Run one shard; a dict of what it found and did."""
    with tempfile.TemporaryDirectory(prefix="pyxenon-shard-") as folder:
        work = pathlib.Path(folder)
        write_folder(work / "corpus", spec.corpus)
        (work / "known").mkdir()
        for i, record in enumerate(spec.known):
            (work / "known" / f"{i}.json").write_text(json.dumps(record))
        budget = [f"-runs={spec.runs}", f"-max_total_time={spec.max_time}", str(work / "corpus")]
        log = run_engine(engine_command(spec, work, budget), spec.max_time + GRACE, work)
        minimize(spec, work)
        return shard_result(spec, work, log)


def minimize(spec, work):
    """libFuzzer's -minimize_crash on each crash file: every smaller input
    that still fails rewrites the shard's record (targets.py keeps the shortest)."""
    for crash in sorted(work.glob("crash-*")) + sorted(work.glob("timeout-*")):
        extra = ["-minimize_crash=1", f"-runs={MINIMIZE_RUNS}",
                 f"-max_total_time={MINIMIZE_SECONDS}", f"-exact_artifact_path={work}/min", str(crash)]
        run_engine(engine_command(spec, work, extra), MINIMIZE_SECONDS + GRACE, work)


def shard_result(spec, work, log):
    given = {unit_name(data) for data in spec.corpus}
    corpus = [p.read_bytes() for p in sorted((work / "corpus").iterdir()) if p.name not in given]
    records = [json.loads(p.read_text()) for p in sorted((work / "save").glob("*.json"))]
    stats_file = work / "stats.json"
    counts = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return {"seed": spec.seed, "status": last_status(log), "ops": counts.get("ops", 0),
            "inputs": counts.get("inputs", 0), "elapsed": counts.get("cpu", 0.0),
            "corpus": corpus, "findings": records,
            "log_tail": log[-2000:].decode("utf-8", "replace")}
