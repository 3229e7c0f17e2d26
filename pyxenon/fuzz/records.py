"""Saved findings (tests/fuzz_regressions/*.json): writing, reading and
replaying them."""
import json
import pathlib
import re
import tempfile

from .common import GUESTS, HANG_REPLAY_LIMIT, Finding
from .parsers.feeders import check_input
from .session import replay


def known_signatures(folder):
    """Signatures of the open findings saved in folder (a fixed one, marked
    "open": false, is no longer known: seeing it again is news)."""
    folder = pathlib.Path(folder) if folder else None
    if not folder or not folder.is_dir():
        return set()
    records = [load_record(path) for path in sorted(folder.glob("*.json"))]
    return {r["finding"]["signature"] for r in records if r.get("open", True)}


def slug(signature):
    return re.sub(r"[^A-Za-z0-9]+", "-", signature).strip("-").lower()[:80]


def save_finding(folder, finding, engine_input=None, plant=None):
    """Write finding as folder/<signature>.json (with the coverage-guided
    engine's input, if it came from one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(finding.signature)}.json"
    record = {
        "reason": f"finding: {finding.signature}",
        "open": True,
        "seed": finding.seed, "epoch": finding.epoch, "index": finding.index,
        "finding": {"kind": finding.kind, "signature": finding.signature,
                    "detail": finding.detail},
        "call": finding.op,
        "ops": finding.ops,
    }
    if engine_input is not None:
        record["engine"], record["input"] = "atheris", bytes(engine_input).hex()
    if plant:
        record["plant"] = plant     # found with a fixed bug planted back (world.PLANTS)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load_record(path):
    return json.loads(pathlib.Path(path).read_text())


def replay_record(record, guests=GUESTS):
    """The findings a saved record still produces (with its signature)."""
    if "parser" in (record.get("call") or {}):
        return replay_parser_record(record)
    signature = record["finding"]["signature"]
    limit = HANG_REPLAY_LIMIT if record["finding"]["kind"] == "hang" else None
    found = replay(record["ops"], guests, limit, record.get("plant"))
    return [f for f in found if f.signature == signature]


def replay_parser_record(record):
    """The finding a saved parser record still produces (or None)."""
    name, given = record["call"]["parser"], record["call"]["input"]
    with tempfile.TemporaryDirectory(prefix="pyxenon-fuzz-") as folder:
        _, problem = check_input(name, given, folder)
    if problem is None or f"parser:{name}:{problem[0]}" != record["finding"]["signature"]:
        return []
    return [Finding("parser", record["finding"]["signature"], problem[1])]
