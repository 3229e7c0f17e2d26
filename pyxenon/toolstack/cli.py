"""The pyxenon command line.

    pyxenon run CFG [CFG...] [--trace] [--timeout S] [--deterministic]
    pyxenon COMMAND ...        xl's commands against the host daemon (xl.py)
    xl COMMAND ...             the same, through a symlink named xl

boots the domains the xl.cfg files describe in this process and streams
their consoles to stdout (each line prefixed by the domain's name when there
are several).  Exit status 0 when every domain powered off; otherwise 1,
with the reason on stderr.  A malformed input gets one line naming the file.
"""
import argparse
import os
import sys

from pyxenon.errors import UserInputError

from . import xl

EXIT_OK, EXIT_GUEST, EXIT_USAGE = 0, 1, 2


class ConsoleWriter:
    """Whole lines to out, prefixed by domain name when prefix is set."""

    def __init__(self, out, prefix):
        self.out = out
        self.prefix = prefix
        self.partial = {}

    def __call__(self, domain, data, source):
        text = self.partial.pop(domain.name, "") + data.decode("utf-8", errors="replace")
        *lines, rest = text.split("\n")
        for line in lines:
            self.write(domain.name, line)
        if rest:
            self.partial[domain.name] = rest

    def write(self, name, line):
        self.out.write(f"{name}: {line}\n" if self.prefix else line + "\n")
        self.out.flush()

    def flush(self):
        for name, rest in self.partial.items():
            self.write(name, rest)
        self.partial.clear()


def cmd_run(args):
    from pyxenon.toolstack.host import Host

    with Host(deterministic=args.deterministic) as host:
        writer = ConsoleWriter(sys.stdout, prefix=len(args.cfg) > 1)
        host.machine.console_listeners.append(writer)
        trace = (lambda line: print(line, file=sys.stderr)) if args.trace else None
        domains = [host.create(cfg, trace=trace) for cfg in args.cfg]
        outcome = host.run(timeout=args.timeout)
        writer.flush()
        return report(domains, outcome)


def report(domains, outcome):
    """Exit status, with a line on stderr for each domain that did not power off."""
    status = EXIT_OK
    for dom in domains:
        if dom.crash_report:
            print(dom.crash_report, file=sys.stderr)
        if dom.shutdown_reason != "poweroff":
            why = dom.shutdown_reason or f"still running ({outcome})"
            print(f"pyxenon: domain {dom.name}: {why}", file=sys.stderr)
            status = EXIT_GUEST
    for dom in domains:
        for nr, count in sorted(dom.unsupported.items()):
            print(f"pyxenon: domain {dom.name}: unsupported hypercall {nr} called {count}x",
                  file=sys.stderr)
    return status


class TopParser(argparse.ArgumentParser):
    """A bad command name gets one line, not the usage."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def parser():
    p = TopParser(prog="pyxenon", description="A separation VMM for Xen PV guests.")
    # run's own parser stays the standard one, so `pyxenon run` behaves as before.
    sub = p.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    run = sub.add_parser("run", help="boot domains from xl.cfg files in this process")
    run.add_argument("cfg", nargs="+", help="xl.cfg file")
    run.add_argument("--trace", action="store_true", help="print every hypercall to stderr")
    run.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    run.add_argument("--deterministic", action="store_true",
                     help="schedule by instruction count and virtual time")
    run.set_defaults(func=cmd_run)
    # Listed for --help and the choices; main() hands them to xl.main first.
    for name in xl.COMMANDS:
        sub.add_parser(name, help=f"xl's {name} (`pyxenon {name} -h`)", add_help=False)
    return p


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
        if os.path.basename(sys.argv[0]) == "xl":
            return xl.main(argv, prog="xl")
    if argv and argv[0] in xl.COMMANDS:
        return xl.main(argv, prog="pyxenon")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserInputError as e:
        print(f"pyxenon: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
