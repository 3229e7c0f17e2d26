"""The pyxenon command line.

    pyxenon run CFG [CFG...] [--policy FILE] [--audit FILE|-] [--trace] [--timeout S]
                [--deterministic] [--console-log DIR] [--stats] [--trace-file F] [--gdb PORT]
    pyxenon COMMAND ...        xl's commands against the host daemon (xl.py),
                               and pyxenon's own: xenstore, audit
    pyxenon policy check FILE [--can-flow A B] [--graph] [--dot OUT]
    pyxenon assurance [--check]     pyxenon interface [--write]     pyxenon fuzz ...
    pyxenon trace fold F [-o OUT]   a --trace-file as folded stacks (xentrace.py)
    xl COMMAND ...             xl's commands only, through a symlink named xl

`run` boots the domains the xl.cfg files describe in this process and
streams their consoles to stdout (each line prefixed by the domain's name
when there are several), and the hypervisor-log lines of their console_io
writes, "(dN) text" as `xl dmesg` shows them, under the policy file given
(without one, domains reach only their own console and XenStore, and the
run says so on stderr).  --console-log DIR also appends each console to
DIR/guest-NAME.log (xenconsoled --log=guest).  stdin goes to the first
domain's console (terminal.py: raw mode on a terminal, Ctrl-] detaches).
--audit writes each of the policy's decisions as a JSON line to FILE (- for
stderr).  --stats prints each domain's hypercall statistics to stderr at
the end; --trace-file F writes every hypercall as a JSON line (toolstack/
xentrace.py), the C fast paths on.  On a terminal, a run past a few seconds
shows a progress line on stderr.  Exit status 0 when every domain powered
off; otherwise 1, with the reason on stderr.  A malformed input gets one
line naming the file, exit 2.
"""
import argparse
import contextlib
import importlib
import os
import sys

from pyxenon.errors import HostLimitError, UserInputError

from . import xl
from .outcome import EXIT_GUEST, EXIT_OK, EXIT_USAGE, report
from .terminal import run_with_console

MAX_PARTIAL = 4096   # characters of an unfinished console line kept before it is written
NO_POLICY = "pyxenon: no policy: domains can reach only their own console and XenStore"

# Commands another module answers: name -> (module, help).  Imported only
# when used (assurance needs lizard; fuzz may not be installed).
DELEGATES = {
    "policy": ("pyxenon.toolstack.policy",
               "check a separation policy and analyse its flows (`policy check FILE`)"),
    "assurance": ("pyxenon.toolstack.assurance", "the TCB's size and complexity report"),
    "interface": ("pyxenon.toolstack.interface", "the hypercall interface table"),
    "fuzz": ("pyxenon.fuzz.cli", "fuzz the hypercall interface"),
    "trace": ("pyxenon.toolstack.xentrace",
              "a --trace-file as folded stacks for flamegraph.pl or speedscope (`trace fold F`)"),
}
OWN_HELP = {"xenstore": "read, write, list, remove and watch XenStore nodes, as domain 0",
            "audit": "print the last policy decisions the daemon logged",
            "stats": "a domain's hypercall statistics, from the daemon"}


class ConsoleWriter:
    """Whole lines to out, as Xen's two consoles show them: a domain's
    console ring output as the guest wrote it (`xl console`), prefixed by
    the domain's name when there are several; its console_io writes as the
    hypervisor's log has them (`xl dmesg`), "(dN) text", guest_printk's
    prefix, which names the domain already."""

    def __init__(self, out, prefix):
        self.out = out
        self.prefix = prefix
        self.partial = {}     # (domid, source) -> (lead, unfinished line)

    def lead(self, domain, source):
        if source != "ring":
            return f"(d{domain.domid}) "
        return f"{domain.name}: " if self.prefix else ""

    def __call__(self, domain, data, source):
        lead, rest = self.partial.pop((domain.domid, source), (self.lead(domain, source), ""))
        *lines, rest = (rest + data.decode("utf-8", errors="replace")).split("\n")
        for line in lines:
            self.write(lead + line)
        if len(rest) >= MAX_PARTIAL:     # a guest that never ends its line must not grow us
            self.write(lead + rest)
        elif rest:
            self.partial[(domain.domid, source)] = (lead, rest)

    def write(self, line):
        self.out.write(line + "\n")
        self.out.flush()

    def show_partial(self, domid):
        """Write domid's unfinished console line now (a shell's prompt ends
        in none); the line's rest follows later without its lead."""
        lead, rest = self.partial.get((domid, "ring"), ("", ""))
        if rest:
            self.out.write(lead + rest)
            self.out.flush()
            self.partial[(domid, "ring")] = ("", "")

    def flush(self):
        for lead, rest in self.partial.values():
            self.write(lead + rest)
        self.partial.clear()


class RunAudit:
    """Where `run` sends the reference monitor's decisions: JSON lines to a
    file or to stderr ("-"), or nowhere; refusals are counted either way."""

    def __init__(self, target):
        from .policy import JsonLinesAudit

        self.denied = 0
        self.lines = None
        try:
            if target is not None:
                self.lines = JsonLinesAudit(sys.stderr if target == "-" else target)
        except OSError as e:
            raise UserInputError(target, f"cannot write the audit log: {e.strerror}") from None

    def __call__(self, record):
        if record.get("decision") != "allow":
            self.denied += 1
        if self.lines is not None:
            self.lines(record)

    def close(self):
        if self.lines is not None:
            self.lines.close()

    def summary(self):
        """A line for stderr when refusals happened that no audit log shows."""
        if self.denied and self.lines is None:
            s = "s" if self.denied != 1 else ""
            return (f"pyxenon: the policy refused {self.denied} inter-domain operation{s} "
                    "(--audit FILE lists them)")
        return None


def cmd_run(args):
    from .host import Host, sized_for
    from .policy import load_policy
    from .xlcfg import load_cfg

    policy = load_policy(args.policy) if args.policy else None
    configs = [load_cfg(cfg) for cfg in args.cfg]
    for config in configs:
        xl.warn_ignored(config, "pyxenon")
    audit = RunAudit(args.audit)
    try:
        with Host(memory_mib=sized_for(configs), deterministic=args.deterministic,
                  policy=policy, audit=audit) as host:
            status = run_domains(host, configs, args)
    finally:
        audit.close()
    if audit.summary():
        print(audit.summary(), file=sys.stderr)
    return status


def run_domains(host, configs, args):
    writer = ConsoleWriter(sys.stdout, prefix=len(configs) > 1)
    host.machine.console_listeners.append(writer)
    logs = console_logs(host, args.console_log)
    try:
        return run_logged(host, configs, args, writer)
    finally:
        if logs is not None:
            logs.close()


def console_logs(host, choice):
    """--console-log: xenconsoled's guest-NAME.log files, or None."""
    if choice is None:
        return None
    from pyxenon.backends.console import ConsoleLogs

    folder = os.path.abspath(choice)
    try:
        return ConsoleLogs(folder).listen(host.machine)
    except OSError as e:
        raise UserInputError(folder, f"cannot write console logs: {e.strerror}") from None


def run_logged(host, configs, args, writer):
    from .observe import RunWatch

    trace = (lambda line: print(line, file=sys.stderr)) if args.trace else None
    watch = RunWatch(host.machine, sys.stderr, args.trace_file, args.stats)
    domains = []
    try:
        domains.extend(host.create_from_config(config, trace=trace) for config in configs)
        if host.policy is None:
            print(NO_POLICY, file=sys.stderr)  # once every cfg and kernel has been accepted
        outcome = run_maybe_debugged(host, domains, args, writer)
    finally:
        writer.flush()
        watch.finish(domains)
    return report(domains, outcome)


def run_maybe_debugged(host, domains, args, writer):
    """The run with the console (terminal.py), or with GDB stubs: --gdb for
    the first domain, a cfg's own `gdb = PORT` for the others."""
    if args.gdb is not None:
        domains[0].config.gdb = args.gdb
    wanted = [d for d in domains if d.config.gdb is not None]
    if not wanted:
        return run_with_console(host, domains, args.timeout, writer)
    import selectors

    from . import gdbserver

    selector = selectors.DefaultSelector()
    servers = []
    for domain in wanted:
        servers.append(gdbserver.serve(domain, domain.config.gdb, selector))
        print(f"pyxenon: domain {domain.name}: stopped before its first instruction, "
              f"gdb stub on 127.0.0.1:{servers[-1].port}", file=sys.stderr, flush=True)
    return gdbserver.run_debugged(host, servers, selector, args.timeout)


# -- commands another module answers ---------------------------------------------

def delegate(name, argv):
    """`pyxenon NAME ARGS`: NAME's module's main(ARGS), its errors in one line."""
    module_name = DELEGATES[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        why = "it is not part of this installation" if e.name == module_name \
            else f"it needs the {e.name} module"
        print(f"pyxenon: {name}: not available ({why})", file=sys.stderr)
        return EXIT_GUEST
    with one_line_usage_errors():
        try:
            return module.main(argv) or EXIT_OK
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else EXIT_USAGE


@contextlib.contextmanager
def one_line_usage_errors():
    """While a delegate parses its command line, argparse's errors are one
    line ("pyxenon policy check: ...") instead of the usage and the error."""
    standard = argparse.ArgumentParser.error

    def error(parser, message):
        parser.exit(EXIT_USAGE, f"{parser.prog}: {message}\n")
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = standard


# -- the command line ---------------------------------------------------------------

class TopParser(argparse.ArgumentParser):
    """A bad command name gets one line, not the usage."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def port_number(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text[:20]!r}")
    return int(text)


def parser():
    p = TopParser(prog="pyxenon", description="A separation VMM for Xen PV guests.")
    # run's own parser stays the standard one, so `pyxenon run` behaves as before.
    sub = p.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    run = sub.add_parser("run", help="boot domains from xl.cfg files in this process")
    run.add_argument("cfg", nargs="+", help="xl.cfg file")
    run.add_argument("--policy", metavar="FILE",
                     help="enforce this separation policy (without one, domains reach only "
                          "their own console and XenStore)")
    run.add_argument("--audit", metavar="FILE",
                     help="append each policy decision to FILE as a JSON line (- for stderr)")
    run.add_argument("--trace", action="store_true",
                     help="print every hypercall to stderr (the Python path: fast paths off)")
    run.add_argument("--trace-file", metavar="FILE",
                     help="write every hypercall to FILE as a JSON line, fast paths on "
                          "(`pyxenon trace fold FILE` makes folded stacks of it)")
    run.add_argument("--stats", action="store_true",
                     help="print each domain's hypercall statistics to stderr at the end")
    run.add_argument("--console-log", metavar="DIR",
                     help="append each domain's console to DIR/guest-NAME.log, as "
                          "xenconsoled --log=guest")
    run.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    run.add_argument("--deterministic", action="store_true",
                     help="schedule by instruction count and virtual time")
    run.add_argument("--gdb", metavar="PORT", type=port_number,
                     help="stop the (first) domain before its first instruction and serve "
                          "the GDB remote protocol on 127.0.0.1:PORT (0: any free port)")
    run.set_defaults(func=cmd_run)
    # Listed for --help and the choices; main() hands them to their modules first.
    for name in xl.COMMANDS:
        sub.add_parser(name, help=f"xl's {name} (`pyxenon {name} -h`)", add_help=False)
    for name in xl.PYXENON_COMMANDS:
        sub.add_parser(name, help=OWN_HELP[name], add_help=False)
    for name, (_, help_text) in DELEGATES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def show_help(argv):
    """`pyxenon help [COMMAND]`, and `pyxenon` alone (a malformed command line)."""
    if argv[1:2] and argv[1] in xl.COMMANDS + xl.PYXENON_COMMANDS:
        return xl.main(argv[:2], prog="pyxenon", extra=True)
    parser().print_help()
    return EXIT_OK if argv else EXIT_USAGE


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
        if os.path.basename(sys.argv[0]) == "xl":
            return xl.main(argv, prog="xl")
    if not argv or argv[0] == "help":
        return show_help(argv)
    if argv[0] in xl.COMMANDS + xl.PYXENON_COMMANDS:
        return xl.main(argv, prog="pyxenon", extra=True)
    try:
        if argv[0] in DELEGATES:
            return delegate(argv[0], argv[1:])
        args = parser().parse_args(argv)
        return args.func(args)
    except UserInputError as e:
        print(f"pyxenon: {e}", file=sys.stderr)
        return EXIT_USAGE
    except HostLimitError as e:
        print(f"pyxenon: {e}", file=sys.stderr)
        return EXIT_GUEST
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
