"""The coverage-guided engine: atheris (libFuzzer for Python and native
extensions) runs one target in this process.

    python -m pyxenon.fuzz.engine --target T [--save DIR] [--known DIR]
        [--guests DIR] [--stats FILE] [LIBFUZZER FLAGS AND CORPUS DIRS]

T is `hypercalls` (structured.py's ops on a fresh world per input, the
oracle after each) or a parser (parsers/inputs.py).  Everything else goes
to libFuzzer as it is: -runs=N, -max_total_time=S, -seed=S, -max_len=N,
-artifact_prefix=DIR/, -minimize_crash=1, corpus folders (the first is
written to; libFuzzer re-reads it every second, so processes sharing it
share what they find).  campaign runners (scale.py, `pyxenon fuzz
--atheris`) start this module; it rarely needs starting by hand.

Coverage: the hypervisor and hypercall modules (the hypercall target) or
the toolstack and backends (the parser targets) are imported under
atheris's bytecode instrumentation; the C core adds its
branches when it was built for fuzzing (PYXENON_FUZZ_BUILD=1 with clang,
docs/FUZZING.md) and libFuzzer's runtime is preloaded (LD_PRELOAD of
atheris's ubsan_with_fuzzer.so).  libFuzzer re-runs its own command line
for -minimize_crash and -fork; the command is a launcher script written
here, so it carries this module's options.
"""
import argparse
import hashlib
import os
import pathlib
import stat
import sys
import tempfile

# What each target's coverage counts: the hypercall target the hypervisor
# (building its world is the toolstack's, and instrumenting that only slows
# each input down: 266 against 386 ops/s uninstrumented, not 130); the
# parser targets the host side.
HYPERVISOR = ["pyxenon.hypervisor", "pyxenon.hypercalls", "pyxenon._core"]
HOST_SIDE = ["pyxenon.toolstack", "pyxenon.backends", "pyxenon.errors"]
EXTRA_COVERAGE = {"gdb": ["pyxenon.hypervisor.debugger"]}   # the stub's half in the hypervisor
# Imported under instrumentation before the first input: the feeders import
# these only when called.
TARGET_MODULES = ("pyxenon.toolstack.xennotes", "pyxenon.toolstack.elfimage",
                  "pyxenon.toolstack.kernelimage",
                  "pyxenon.toolstack.xlcfg", "pyxenon.toolstack.policy",
                  "pyxenon.toolstack.daemon", "pyxenon.toolstack.protocol",
                  "pyxenon.toolstack.host", "pyxenon.backends.xenstore",
                  "pyxenon.toolstack.xenstored_socket", "pyxenon.toolstack.gdbpacket",
                  "pyxenon.toolstack.gdbstub", "pyxenon.toolstack.gdbserver",
                  "pyxenon.hypervisor.debugger")
EXIT_USAGE = 2


def parser():
    p = argparse.ArgumentParser(prog="python -m pyxenon.fuzz.engine", description=(
        "One coverage-guided (atheris) fuzzing process; other arguments go to libFuzzer."))
    p.add_argument("--target", default="hypercalls")
    p.add_argument("--save", metavar="DIR", help="write new findings as DIR/<signature>.json")
    p.add_argument("--known", metavar="DIR", help="findings saved in DIR are not news")
    p.add_argument("--guests", metavar="DIR", help="folder of built guests")
    p.add_argument("--stats", metavar="FILE", help="write the shard's counts to FILE")
    p.add_argument("--seed", type=int, default=0, help="the shard's seed (kept in records)")
    p.add_argument("--plant", help="plant a fixed bug back (world.PLANTS), to show it is found")
    return p


def load_atheris():
    try:
        import atheris
    except ImportError:
        sys.exit("pyxenon fuzz: atheris is not installed (pip install 'pyxenon[fuzz]')")
    return atheris


def import_targets(atheris, target):
    """The target modules, the target's share of pyxenon instrumented for
    coverage (atheris takes whole top-level packages, less the modules
    named in exclude)."""
    import importlib

    wanted = HYPERVISOR if target == "hypercalls" else HOST_SIDE + EXTRA_COVERAGE.get(target, [])
    exclude = [name for name in pyxenon_modules()
               if not any(name == w or name.startswith(w + ".") for w in wanted)]
    with atheris.instrument_imports(include=["pyxenon"], exclude=exclude):
        from . import targets
        for name in TARGET_MODULES:
            importlib.import_module(name)
    return targets


def pyxenon_modules():
    """Every module name of the pyxenon package, from its files."""
    root = pathlib.Path(__file__).resolve().parents[1]
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def launcher(argv):
    """An executable script that runs this module with argv's options and
    the libFuzzer flags it is given (libFuzzer re-runs its argv[0]).  Named
    by its content, so the shards and their minimising runs share one."""
    text = (f"#!{sys.executable}\nimport sys\nfrom pyxenon.fuzz.engine import main\n"
            f"sys.exit(main({list(argv)!r} + sys.argv[1:]))\n")
    name = hashlib.sha1(text.encode()).hexdigest()[:16]
    path = pathlib.Path(tempfile.gettempdir()) / f"pyxenon-fuzz-{os.getuid()}-{name}.py"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR)
        partial.replace(path)        # atomic: shards may start at once
    return str(path)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, engine_args = parser().parse_known_args(argv)
    own = [f"--{name}={value}" for name, value in vars(args).items() if value is not None]
    atheris = load_atheris()
    targets = import_targets(atheris, args.target)
    if args.target not in targets.TARGETS:
        print(f"pyxenon fuzz: unknown target {args.target!r} (one of {', '.join(targets.TARGETS)})",
              file=sys.stderr)
        return EXIT_USAGE
    kwargs = {"save": args.save, "known": args.known, "seed": args.seed, "stats": args.stats,
              "plant": args.plant}
    if args.guests:
        kwargs["guests"] = pathlib.Path(args.guests)
    target = targets.make_target(args.target, **kwargs)
    provider = atheris.FuzzedDataProvider

    def one_input(data):
        target(data, provider(data))
    atheris.Setup([launcher(own)] + engine_args, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
