"""Coverage-guided campaigns at scale: shards (shard.py) with their own
seeds, in rounds, over this machine's cores or a Ray cluster.

    pyxenon fuzz --atheris --jobs N [--rounds R] [--max-time S] ...
    pyxenon fuzz --atheris --ray [ADDRESS] --jobs N ...

Each round runs N shards at once, every one starting from the shared
corpus; after the round their new inputs join the corpus (named by their
SHA-1, so the corpus is deduplicated) and their findings join the findings
store (by signature, the shortest input kept), and a progress line is
printed.  The scheduling is the engine's pool's: concurrent.futures on one
machine, Ray (which schedules, retries a lost shard and collects the
results) across machines -- `ray start --head` on one, `ray start
--address HEAD:6379` on the others, then `--ray HEAD:6379` here; `--ray`
without an address starts a local Ray instance.
"""
import concurrent.futures
import dataclasses
import itertools
import json
import pathlib
import time

from .records import load_record, slug
from .shard import ShardSpec, run_shard, unit_name, write_folder

RAY_RETRIES = 2
ROUND_MIN_S = 60     # a shorter round spends most of its time replaying the corpus


@dataclasses.dataclass
class Totals:
    shards: int = 0
    execs: int = 0       # libFuzzer's count, the corpus's replays included
    inputs: int = 0      # the target's, as of its last stats file
    ops: int = 0
    cpu_seconds: float = 0.0
    coverage: int = 0
    features: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    findings: dict = dataclasses.field(default_factory=dict)   # signature -> record

    def add(self, result):
        status = result["status"]
        self.shards += 1
        self.execs += status["execs"]
        self.inputs += result["inputs"]
        self.ops += result["ops"]
        self.cpu_seconds += result["elapsed"]
        self.coverage = max(self.coverage, status["cov"])
        self.features = max(self.features, status["ft"])

    def line(self, corpus):
        wall = time.monotonic() - self.started
        seconds = self.cpu_seconds or float("inf")
        return (f"pyxenon fuzz: {self.shards} shards, {self.execs} inputs ({self.ops} ops) in "
                f"{wall:.0f} s, per core {self.inputs / seconds:.1f} inputs/s "
                f"{self.ops / seconds:.0f} ops/s, cov {self.coverage} "
                f"ft {self.features}, corpus {corpus}, findings {len(self.findings)}")


class Pool:
    """Runs shards: a process pool here, or Ray tasks."""

    def __init__(self, jobs, ray_address=None, use_ray=False):
        self.jobs = jobs
        self.ray = None
        if use_ray:
            import ray

            ray.init(address=ray_address or None, include_dashboard=False,
                     log_to_driver=False, **({} if ray_address else {"num_cpus": jobs}))
            self.ray = ray
            self.task = ray.remote(max_retries=RAY_RETRIES, num_cpus=1)(run_shard)

    def map(self, specs, job=run_shard):
        """job(spec) for each spec, at most jobs at once; the results in order."""
        if self.ray is not None:
            task = self.task if job is run_shard else self.ray.remote(
                max_retries=RAY_RETRIES, num_cpus=1)(job)
            return self.ray.get([task.remote(spec) for spec in specs])
        with concurrent.futures.ProcessPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(job, specs))

    def close(self):
        if self.ray is not None:
            self.ray.shutdown()


class ScaledCampaign:
    """Rounds of shards over a shared corpus folder and findings store."""

    def __init__(self, target, corpus, save=None, known=(), guests=None, progress=print,
                 plant=None):
        self.target = target
        self.corpus = pathlib.Path(corpus)
        self.save = pathlib.Path(save) if save else None
        self.known = list(known)
        self.guests = str(guests) if guests else None
        self.progress = progress
        self.plant = plant
        self.totals = Totals()

    def run(self, pool, rounds, max_time, runs=-1, seed=0, max_len=4096, ops=0):
        """rounds of pool.jobs shards; with ops, rounds until the shards
        have run that many ops (rounds, if given, still bounds them)."""
        for number in itertools.count():
            if number >= rounds or (ops and self.totals.ops >= ops):
                break
            units = [p.read_bytes() for p in sorted(self.corpus.glob("*")) if p.is_file()]
            seconds = self.round_time(max_time, ops, pool.jobs)
            specs = [ShardSpec(self.target, seed * 1000 + number * pool.jobs + j, runs, seconds,
                               max_len, units, self.known + list(self.totals.findings.values()),
                               self.guests, self.plant) for j in range(pool.jobs)]
            for result in pool.map(specs):
                self.merge(result)
            self.progress(self.totals.line(len(list(self.corpus.glob("*")))))
        return self.totals

    def round_time(self, max_time, ops, jobs):
        """With an op budget, a round runs only as long as the ops still
        owed take at the rate seen so far (and a tenth more), so the
        campaign ends near its budget instead of a whole round past it."""
        if not ops or not self.totals.ops or not self.totals.cpu_seconds:
            return max_time
        rate = self.totals.ops / self.totals.cpu_seconds       # per shard-second
        owed = (ops - self.totals.ops) / (rate * jobs)
        return max(ROUND_MIN_S, min(max_time, int(owed * 1.1) + 1))

    def merge(self, result):
        self.totals.add(result)
        write_folder(self.corpus, [u for u in result["corpus"]
                                   if not (self.corpus / unit_name(u)).exists()])
        for record in result["findings"]:
            self.keep(record)

    def keep(self, record):
        """Findings by signature; of two, the one with the shorter input."""
        signature = record["finding"]["signature"]
        old = self.totals.findings.get(signature)
        if old is not None and len(old.get("input", "")) <= len(record.get("input", "")):
            return
        self.totals.findings[signature] = record
        if self.save:
            self.save.mkdir(parents=True, exist_ok=True)
            (self.save / f"{slug(signature)}.json").write_text(json.dumps(record, indent=1) + "\n")


CORPUS_HOME = pathlib.Path.home() / ".cache" / "pyxenon" / "fuzz-corpus"


def scaled_main(args, guests):
    """`pyxenon fuzz --atheris ...`: rounds of shards, a progress line per
    round, then the report (report.py); exit 1 if anything new was found."""
    from .report import final_report, measure_baseline
    from .targets import TARGETS

    if args.target not in TARGETS:
        print(f"pyxenon fuzz: unknown target {args.target!r} (one of {', '.join(TARGETS)})")
        return 2
    campaign = ScaledCampaign(args.target, prepared_corpus(args, guests), args.save,
                              known_records(args.known or args.save), guests, plant=args.plant,
                              progress=lambda line: print(line, flush=True))
    pool = Pool(max(1, args.jobs), args.ray, args.ray is not None)
    try:
        baseline = measure_baseline(pool, args, guests) if args.baseline else None
        rounds = args.rounds if args.rounds is not None else (1 << 62 if args.ops else 1)
        totals = campaign.run(pool, rounds, args.max_time, args.runs, args.seed, ops=args.ops)
    finally:
        pool.close()
    print(final_report(args, campaign, baseline))
    return 1 if totals.findings else 0


def prepared_corpus(args, guests):
    """The corpus folder; an empty one gets the target's seed inputs."""
    from .common import ROOT
    from .parsers.inputs import seed_inputs

    corpus = pathlib.Path(args.corpus) if args.corpus else CORPUS_HOME / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        write_folder(corpus, seed_inputs(args.target, guests, ROOT / "examples"))
    return corpus


def known_records(folder):
    """The open findings saved in folder: not news."""
    if not folder:
        return []
    records = [load_record(p) for p in sorted(pathlib.Path(folder).glob("*.json"))]
    return [r for r in records if r.get("open", True)]
