"""A scaled campaign's final report, and the random campaign's rate
measured in the same run beside it (`pyxenon fuzz --atheris --baseline N`)."""
import json
import pathlib
import time


def baseline_shard(spec):
    """A random campaign of spec["calls"] hypercalls in a process of its own
    (a pool or Ray task): its rate per CPU-second."""
    from .campaign import Campaign
    from .common import Stats

    stats = Stats()
    started = time.process_time()
    found = Campaign(spec["seed"], spec["guests"], stats=stats, shrink_budget=0).run(spec["calls"])
    cpu = time.process_time() - started
    return {"calls": stats.calls, "cpu": cpu, "findings": [f.signature for f in found]}


def measure_baseline(pool, args, guests):
    """One random shard per job, at once, as the campaign's shards will run."""
    specs = [{"seed": args.seed * 1000 + 999 - j, "guests": str(guests), "calls": args.baseline}
             for j in range(pool.jobs)]
    results = pool.map(specs, baseline_shard)
    calls, cpu = sum(r["calls"] for r in results), sum(r["cpu"] for r in results)
    line = (f"pyxenon fuzz: the random campaign in this run: {calls} hypercalls in {cpu:.1f} "
            f"CPU-s, {calls / max(cpu, 1e-9):.0f} ops/s per core")
    print(line, flush=True)
    return {"calls": calls, "cpu": cpu, "rate": calls / max(cpu, 1e-9),
            "findings": sorted({f for r in results for f in r["findings"]})}


def final_report(args, campaign, baseline):
    """The report's lines; with --json the same as a JSON file."""
    totals = campaign.totals
    wall = time.monotonic() - totals.started
    cpu = totals.cpu_seconds or float("inf")
    corpus = len(list(campaign.corpus.glob("*")))
    numbers = {"target": campaign.target, "ops": totals.ops, "inputs": totals.inputs,
               "execs": totals.execs, "shards": totals.shards, "wall_s": round(wall, 1),
               "cpu_s": round(totals.cpu_seconds, 1), "ops_per_core_s": round(totals.ops / cpu, 1),
               "execs_per_core_s": round(totals.inputs / cpu, 1), "cov": totals.coverage,
               "ft": totals.features, "corpus": corpus, "findings": sorted(totals.findings),
               "baseline": baseline}
    lines = [f"pyxenon fuzz: report: target {campaign.target}, {totals.ops} ops, "
             f"{totals.inputs} inputs ({totals.execs} libFuzzer execs) in {totals.shards} shards, "
             f"{wall:.0f} s wall, {totals.cpu_seconds:.0f} CPU-s",
             f"  per core: {numbers['ops_per_core_s']:.0f} ops/s, "
             f"{numbers['execs_per_core_s']:.1f} execs/s"]
    if baseline:
        lines.append(f"  the random campaign, same run: {baseline['rate']:.0f} ops/s per core "
                     f"({baseline['calls']} hypercalls, findings {len(baseline['findings'])})")
    lines.append(f"  coverage: cov {totals.coverage} ft {totals.features}, corpus {corpus}")
    lines.append(f"  findings: {len(totals.findings)}")
    lines += [f"  [{r['finding']['kind']}] {signature}: {len(r.get('ops') or [])} ops, "
              f"{len(r.get('input', '')) // 2} input bytes"
              for signature, r in sorted(totals.findings.items())]
    if getattr(args, "json", None):
        pathlib.Path(args.json).write_text(json.dumps(numbers, indent=1) + "\n")
    return "\n".join(lines)
