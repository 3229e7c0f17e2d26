"""The coverage-guided campaigns (pyxenon.fuzz with atheris): the structured
decoder, a bounded smoke pass of the engine on every target, findings
saved as records the regression tests replay, the shard merge, and a
campaign on a local Ray instance.  Engine passes run as subprocesses (libFuzzer
exits its process) with budgets of a few seconds."""
import json
import pathlib
import random
import subprocess
import sys

import pytest

from pyxenon.fuzz import records, session
from pyxenon.fuzz.scale import ScaledCampaign, Totals
from pyxenon.fuzz.shard import last_status, unit_name

atheris = pytest.importorskip("atheris")

from pyxenon.fuzz.structured import Decoder, FuzzedRandom  # noqa: E402 (needs atheris's provider)
from pyxenon.fuzz.targets import TARGETS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def decoded(guests, data):
    world = session.Session(guests)
    try:
        return list(Decoder(FuzzedRandom(atheris.FuzzedDataProvider(data)), world.world).ops())
    finally:
        world.close()


def test_the_same_bytes_decode_to_the_same_ops(guests):
    data = random.Random(7).randbytes(1500)
    first = decoded(guests, data)
    assert first == decoded(guests, data)
    kinds = {op["op"] for op in first}
    assert "call" in kinds and len(first) > 10


def test_decoding_stops_with_the_bytes(guests):
    assert decoded(guests, b"") == []
    assert len(decoded(guests, b"\x01\x02")) <= 1


def engine(tmp_path, target, *extra, plant=None):
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pyxenon.fuzz.engine", f"--target={target}",
           f"--save={tmp_path / 'save'}", f"--stats={tmp_path / 'stats.json'}",
           f"--guests={ROOT / 'guests'}", f"-artifact_prefix={tmp_path}/", "-seed=3", *extra,
           str(corpus)]
    if plant:
        cmd.insert(4, f"--plant={plant}")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("target", TARGETS)
def test_engine_smoke_pass_finds_nothing(tmp_path, target):
    done = engine(tmp_path, target, "-runs=40", "-max_len=512")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DONE" in done.stderr
    counts = json.loads((tmp_path / "stats.json").read_text())
    assert counts["target"] == target or counts["target"] == f"parser:{target}"
    assert not (tmp_path / "save").exists()


PLANTED = sorted((ROOT / "tests" / "fuzz_regressions" / "planted").glob("*.json"))


@pytest.mark.parametrize("path", PLANTED, ids=[p.stem for p in PLANTED])
def test_planted_breach_is_caught_and_its_record_replays(path, guests):
    """The engine's reproducers of the isolation issue's two breaches,
    planted back: each still fails with its bug planted and passes without."""
    record = records.load_record(path)
    assert record["engine"] == "atheris" and record["ops"][-1] == record["call"]
    assert records.replay_record(record, guests)
    assert not records.replay_record(dict(record, plant=None), guests)


def test_an_engine_finding_is_saved(tmp_path, guests):
    """Given a planted breach's input, the engine stops on it at once and
    saves a record of its own that replays."""
    planted = records.load_record(PLANTED[0])
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "seed").write_bytes(bytes.fromhex(planted["input"]))
    done = engine(tmp_path, "hypercalls", "-runs=1", plant=planted["plant"])
    # atheris prints the exception on stdout, libFuzzer its report on stderr
    assert done.returncode != 0 and "FuzzFinding: invariant:" in done.stdout, done.stderr[-3000:]
    assert "Test unit written to" in done.stderr
    record = records.load_record(next((tmp_path / "save").glob("*.json")))
    assert record["input"] == planted["input"] and record["plant"] == planted["plant"]
    assert records.replay_record(record, guests)


def fake_result(units, records_, execs=10):
    return {"seed": 0, "status": {"execs": execs, "cov": 5, "ft": 7, "corpus": 1, "exec_s": 1},
            "ops": execs * 3, "inputs": execs, "elapsed": 2.0, "corpus": units,
            "findings": records_, "log_tail": ""}


def record(signature, data):
    return {"reason": f"finding: {signature}", "open": True, "seed": 0,
            "finding": {"kind": "invariant", "signature": signature, "detail": "x"},
            "call": {"op": "run", "rounds": 1}, "ops": [{"op": "run", "rounds": 1}],
            "input": data.hex()}


def test_shards_share_a_deduplicated_corpus_and_findings(tmp_path):
    campaign = ScaledCampaign("hypercalls", tmp_path / "corpus", tmp_path / "save")
    campaign.corpus.mkdir()
    campaign.merge(fake_result([b"a", b"b"], [record("invariant:x", b"long input")]))
    campaign.merge(fake_result([b"b", b"c"], [record("invariant:x", b"short"),
                                              record("invariant:y", b"z")]))
    assert sorted(p.name for p in campaign.corpus.iterdir()) == sorted(
        unit_name(u) for u in (b"a", b"b", b"c"))
    kept = campaign.totals.findings
    assert set(kept) == {"invariant:x", "invariant:y"}
    assert bytes.fromhex(kept["invariant:x"]["input"]) == b"short"
    assert len(list((tmp_path / "save").glob("*.json"))) == 2
    assert campaign.totals.execs == 20 and campaign.totals.inputs == 20
    assert "per core 5.0 inputs/s 15 ops/s" in campaign.totals.line(3) and "findings 2" in campaign.totals.line(3)


def test_status_lines_are_read():
    log = (b"#2\tINITED cov: 10 ft: 12 corp: 1/1b exec/s: 0 rss: 65Mb\n"
           b"#64\tpulse  cov: 30 ft: 40 corp: 20/1089b lim: 4096 exec/s: 16 rss: 75Mb\n")
    assert last_status(log) == {"execs": 64, "cov": 30, "ft": 40, "corpus": 20, "exec_s": 16}
    assert last_status(b"")["execs"] == 0
    assert Totals().line(0).startswith("pyxenon fuzz: 0 shards")


def test_jobs_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-m", "pyxenon.fuzz", "--atheris", "--ray", "--jobs", "1", "--runs", "20",
         "--max-time", "20", "--target", "protocol", "--corpus", str(tmp_path / "corpus"),
         "--guests", str(ROOT / "guests")], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    assert "pyxenon fuzz: 1 shards" in done.stdout and "findings 0" in done.stdout
    assert any((tmp_path / "corpus").iterdir())


class FakePool:
    """Shards that each report 10 inputs and 30 ops, and random shards."""

    jobs = 2

    def __init__(self):
        self.rounds = 0

    def map(self, specs, job=None):
        if job is not None:
            return [{"calls": 100, "cpu": 0.5, "findings": []} for _ in specs]
        self.rounds += 1
        return [fake_result([bytes([self.rounds, i])], []) for i, _ in enumerate(specs)]


def test_an_ops_budget_runs_rounds_until_it_is_spent_then_reports(tmp_path):
    import argparse

    from pyxenon.fuzz.report import final_report, measure_baseline

    campaign = ScaledCampaign("hypercalls", tmp_path / "corpus", progress=lambda line: None)
    campaign.corpus.mkdir()
    pool = FakePool()
    totals = campaign.run(pool, 1 << 62, 1, ops=150)
    assert pool.rounds == 3 and totals.ops == 180      # 60 ops a round: 3 rounds reach 150
    assert campaign.run(FakePool(), 2, 1, ops=10 ** 9) and campaign.totals.shards == 10
    args = argparse.Namespace(seed=1, baseline=100, json=str(tmp_path / "report.json"))
    baseline = measure_baseline(FakePool(), args, tmp_path)
    assert baseline["calls"] == 200 and baseline["rate"] == 200
    report = final_report(args, campaign, baseline)
    assert "300 ops" in report and "per core: 15 ops/s, 5.0 execs/s" in report
    assert "the random campaign, same run: 200 ops/s per core" in report
    assert "findings: 0" in report
    assert json.loads((tmp_path / "report.json").read_text())["ops"] == 300


def test_an_ops_budget_shortens_the_last_rounds_to_what_it_still_needs(tmp_path):
    campaign = ScaledCampaign("hypercalls", tmp_path / "corpus", progress=lambda line: None)
    assert campaign.round_time(1800, 10 ** 7, 2) == 1800      # no rate seen yet
    campaign.totals.ops, campaign.totals.cpu_seconds = 6_000_000, 4000.0   # 1,500 ops/shard-s
    assert campaign.round_time(1800, 10 ** 7, 2) == 1467      # 4 M owed over 2 shards, +10 %
    assert campaign.round_time(1800, 6_010_000, 2) == 60      # never below a minute
    assert campaign.round_time(1800, 0, 2) == 1800            # no budget: the whole round
