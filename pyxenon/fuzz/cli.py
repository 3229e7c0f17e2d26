"""The command line: python -m pyxenon.fuzz (and pyxenon fuzz)."""
import argparse
import json
import pathlib
import sys
import time

from .campaign import Campaign
from .common import GUESTS, Stats
from .parsers.campaign import ParserCampaign
from .records import load_record, replay_record


PROGRESS_EVERY = 10000    # calls between --progress lines


def parser():
    p = argparse.ArgumentParser(prog="pyxenon fuzz", description=(
        "Hostile-input campaigns: random hypercalls against three domains, "
        "and malformed inputs for every host-side parser."))
    p.add_argument("--hypercalls", type=int, default=0, metavar="N", help="hypercalls to make")
    p.add_argument("--parsers", type=int, default=0, metavar="M",
                   help="malformed inputs, spread over the parsers")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--save", metavar="DIR",
                   help="write each new finding as DIR/<signature>.json (e.g. tests/fuzz_regressions)")
    p.add_argument("--known", metavar="DIR",
                   help="findings saved in DIR are not reported again (default: the --save DIR)")
    p.add_argument("--first-epoch", type=int, default=0, metavar="E",
                   help="start at epoch E (to replay one epoch: --first-epoch E --hypercalls 2000)")
    p.add_argument("--guests", default=str(GUESTS), metavar="DIR",
                   help="folder of built guests (make -C guests)")
    p.add_argument("--replay", metavar="JSON", help="replay a saved finding and report it")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE")
    p.add_argument("--progress", action="store_true", help="a line per epoch on stderr")
    p.add_argument("--plant", choices=["type-after-validation", "no-type-change-flush"],
                   help="plant a fixed page-table bug back, to see the campaign find it")
    add_engine_options(p.add_argument_group("coverage-guided campaigns (atheris; docs/FUZZING.md)"))
    return p


def add_engine_options(g):
    g.add_argument("--atheris", action="store_true",
                   help="a coverage-guided campaign (atheris) instead of the random one")
    g.add_argument("--target", default="hypercalls",
                   help="hypercalls, or a parser: elf, xlcfg, policy, protocol, xenstore, "
                        "xenstored-socket, gdb")
    g.add_argument("--corpus", metavar="DIR",
                   help="the shared corpus (default: ~/.cache/pyxenon/fuzz-corpus/TARGET)")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="shards run at once")
    g.add_argument("--rounds", type=int, default=None, metavar="R",
                   help="rounds of shards; the corpus is merged after each (default 1, "
                        "or as many as --ops needs)")
    g.add_argument("--ops", type=int, default=0, metavar="N",
                   help="rounds until the shards have run N ops")
    g.add_argument("--baseline", type=int, default=0, metavar="N",
                   help="first run N random hypercalls per job, for their rate per core")
    g.add_argument("--max-time", type=int, default=60, metavar="S", help="seconds per shard")
    g.add_argument("--runs", type=int, default=-1, metavar="N", help="inputs per shard")
    g.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the shards on a Ray cluster (no ADDRESS: a local Ray instance)")


def main(argv=None):
    args = parser().parse_args(argv)
    guests = pathlib.Path(args.guests)
    if not (guests / "hello" / "hello.elf").is_file():
        print(f"pyxenon fuzz: no built guests in {guests} (run: make -C guests)", file=sys.stderr)
        return 2
    if args.replay:
        return replay_main(args.replay, guests)
    if args.atheris:
        from .scale import scaled_main

        return scaled_main(args, guests)
    stats, findings = Stats(), []
    if args.hypercalls:
        campaign = Campaign(args.seed, guests, args.save, args.known, stats=stats,
                            progress=progress_line if args.progress else None, plant=args.plant)
        findings += campaign.run(args.hypercalls, args.first_epoch)
    if args.parsers:
        findings += ParserCampaign(args.seed, guests, stats, args.save, args.known).run(args.parsers)
    print(summary(args.seed, stats, findings))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary_dict(args.seed, stats, findings),
                                                      indent=1) + "\n")
    return 1 if findings else 0


def replay_main(path, guests):
    record = load_record(path)
    found = replay_record(record, guests)
    state = "still reproduces" if found else "no longer reproduces"
    print(f"{path}: {record['finding']['signature']}: {state}")
    for finding in found[:1]:
        print(finding.detail)
    return 1 if found else 0


def progress_line(campaign):
    """Every PROGRESS_EVERY calls: where the campaign is, on stderr."""
    stats = campaign.stats
    if stats.calls // PROGRESS_EVERY == campaign.reported:
        return
    campaign.reported = stats.calls // PROGRESS_EVERY
    rate = stats.calls / max(time.monotonic() - campaign.started, 1e-9)
    print(f"pyxenon fuzz: seed {campaign.seed}: {stats.calls} calls, epoch {stats.epochs}, "
          f"{len(campaign.findings)} findings, {rate:.0f}/s", file=sys.stderr, flush=True)


def top(counter, n=40):
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(n))


def summary(seed, stats, findings):
    lines = [f"pyxenon fuzz: seed {seed}"]
    if stats.calls:
        lines += hypercall_lines(stats)
    if sum(stats.parser_inputs.values()):
        lines += [f"parsers: {sum(stats.parser_inputs.values())} inputs in "
                  f"{stats.parser_elapsed:.1f} s: {top(stats.parser_outcomes)}"]
    lines.append(f"findings: {len(findings)}")
    for finding in findings:
        lines += finding_lines(finding)
    if stats.duplicates:
        lines.append(f"  repeats of known findings: {top(stats.duplicates)}")
    return "\n".join(lines)


def hypercall_lines(stats):
    rate = stats.calls / stats.elapsed if stats.elapsed else 0
    lines = [f"hypercalls: {stats.calls} in {stats.elapsed:.1f} s ({rate:.0f}/s), "
             f"{stats.epochs} epochs, {stats.runs} guest runs, "
             f"{stats.recreated} domains recreated ({stats.quarantined} after a known finding)",
             f"  per hypercall: {top(stats.per_hypercall)}",
             f"  results: {stats.ok} ok; errors: {top(stats.errors)}"]
    return lines + [f"  slow: {s} s {name}{tuple(args)}" for s, name, args in stats.slow[:5]]


def finding_lines(f):
    where = f" (epoch {f.epoch}, call {f.index})" if f.epoch is not None else ""
    lines = [f"  [{f.kind}] {f.signature}{where}"]
    lines += ["      " + line for line in f.detail.strip().splitlines()[-3:]]
    if f.saved:
        lines.append(f"      saved: {f.saved}" + (f" ({len(f.ops)} ops)" if f.ops else ""))
    return lines


def summary_dict(seed, stats, findings):
    return {
        "seed": seed, "calls": stats.calls, "elapsed": stats.elapsed, "epochs": stats.epochs,
        "runs": stats.runs, "recreated": stats.recreated, "quarantined": stats.quarantined,
        "ok": stats.ok,
        "per_hypercall": dict(stats.per_hypercall), "errors": dict(stats.errors),
        "slow": stats.slow, "parser_inputs": dict(stats.parser_inputs),
        "parser_outcomes": dict(stats.parser_outcomes), "parser_elapsed": stats.parser_elapsed,
        "duplicates": dict(stats.duplicates),
        "findings": [{"kind": f.kind, "signature": f.signature, "epoch": f.epoch,
                      "index": f.index, "saved": f.saved, "detail": f.detail} for f in findings],
    }
