"""Print benchmarks/results.json (written by a benchmark run) as a Markdown table."""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(path=HERE / "results.json"):
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as e:
        print(f"{path}: {e}: run `python -m pytest benchmarks --benchmark-enable` first", file=sys.stderr)
        return 1
    print("| case | per operation |\n| --- | --- |")
    for case, seconds in sorted(data.get("per_op_seconds", {}).items()):
        print(f"| {case} | {seconds * 1e9:,.1f} ns |")
    for case, size in sorted(data.get("bytes", {}).items()):
        print(f"| {case} | {size / 2 ** 20:.3f} MiB |")
    if data.get("ratios"):
        print("\n| ratio | value |\n| --- | --- |")
    for r in data.get("ratios", []):
        print(f"| {r['meaning']} | {r['ratio']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
