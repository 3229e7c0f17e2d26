"""xl's commands, against the host daemon (or, for `create -F`, in this process).

    create [-p] [-c] [-F] [-q] CFG [KEY=VALUE...]     list [-l] [-v] [DOMAIN]
    console [-t pv] DOMAIN    pause|unpause|destroy|reboot DOMAIN
    shutdown [-w] DOMAIN      info [FIELD]     dmesg [-c]     domid NAME
    domname ID                vcpu-list [DOMAIN]              uptime [DOMAIN]
    vcpu-set DOMAIN N         vcpu-pin DOMAIN VCPU|all CPUS [CPUS]   (xl_vcpu.py)
    daemon start|stop|status|run [--policy FILE] [--console-log]
    top [-b] [-d DELAY] [-i N]   (xentop; top.py)

The same commands answer as `pyxenon COMMAND` and, through a symlink named
xl, as `xl COMMAND`.  Output follows xl's formats.  Exit status 0 on success,
1 when the operation failed (one line on stderr), 2 for a malformed command
line, cfg or policy.  Only as `pyxenon` (xl has no such commands):

    xenstore read [-R] PATH | write PATH VALUE | ls [-v] PATH | rm PATH | watch [-n N] PATH
    audit [-n N | -a]                       (own_commands.py)
    stats DOMAIN                            (top.py)
"""
import argparse
import json
import os
import selectors
import sys
import time

from pyxenon.errors import HostLimitError, UserInputError

from . import protocol, terminal, top, xl_vcpu
from .xlcfg import ignored_warning, load_cfg
from .protocol import ToolstackError, request
from .own_commands import add_audit, add_xenstore, positive

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
STOP_TIMEOUT = 15.0


class UsageError(Exception):
    """A malformed command line, reported in one line."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        # self.prog is "xl create" on a subcommand; main() adds the "xl: ".
        where = self.prog.split(" ", 1)[1:]
        raise UsageError(f"{where[0]}: {message}" if where else message)


# -- create ---------------------------------------------------------------------

def cmd_create(args):
    take_cfg_file(args)
    if args.foreground and (args.paused or args.console):
        raise UsageError("create: -F runs the domain here; it does not go with -p or -c")
    if not args.quiet:
        print(f"Parsing config from {args.cfg}", file=sys.stderr)
    config = load_cfg(args.cfg, args.overrides)  # a malformed cfg is reported here, exit 2
    warn_ignored(config, args.prog)
    if args.dry_run:
        from .xlinfo import config_json

        print(json.dumps(config_json(config), indent=4))
        return EXIT_OK
    if args.foreground:
        return create_foreground(args)
    conn = protocol.connect(start=True)
    try:
        reply = conn.request("create", cfg=os.path.abspath(args.cfg), overrides=args.overrides,
                             paused=args.paused, cwd=os.getcwd(), console=args.console)
        if args.console:
            return stream_console(conn)
        say_gdb(config, reply)
    finally:
        conn.close()
    return EXIT_OK


def say_gdb(config, reply):
    """The cfg's gdb = PORT: where its stub listens (port 0 picks one)."""
    if reply.get("gdb") is not None:
        print(f"{config.name}: stopped before its first instruction, gdb stub on "
              f"127.0.0.1:{reply['gdb']}", file=sys.stderr)


def take_cfg_file(args):
    """xl's `create -f FILE [KEY=VALUE...]`: then every operand is an override."""
    if args.cfg_file is not None:
        args.overrides = ([args.cfg] if args.cfg is not None else []) + args.overrides
        args.cfg = args.cfg_file
    if args.cfg is None:
        raise UsageError("create: a cfg file is required")


def warn_ignored(config, prog):
    warning = ignored_warning(config)
    if warning:
        print(f"{prog}: {warning}", file=sys.stderr)


def create_foreground(args):
    """The domain runs in this process, its console on stdout, until it stops."""
    from .host import Host, sized_for
    from .outcome import report

    config = load_cfg(args.cfg, args.overrides)
    with Host(memory_mib=sized_for([config])) as host:
        host.machine.console_listeners.append(write_console)
        domain = host.create_from_config(config)
        outcome = host.run()
        return report([domain], outcome)


def write_console(domain, data, source):
    """The console ring only, as `xl console` shows; console_io writes are
    the hypervisor's log (guest_console_write), not the domain's console."""
    if source != "ring":
        return
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# -- console ---------------------------------------------------------------------

def cmd_console(args):
    conn = protocol.connect(start=True)
    try:
        return stream_console(conn, args.domain)
    finally:
        conn.close()


def stream_console(conn, domain=None):
    """Attach to domain's console (None: this connection is attached already):
    its output to stdout, stdin to the guest, until the domain stops (or
    Ctrl-] on a terminal)."""
    if domain is not None:
        conn.request("console", domain=domain)
    term = terminal.Terminal(terminal.stdin_fd())
    try:
        with terminal.Signals(term):
            term.enter()
            selector = selectors.DefaultSelector()
            selector.register(conn.sock, selectors.EVENT_READ, "daemon")
            watch_stdin(selector, conn)
            return console_loop(selector, conn, term)
    except BrokenPipeError:
        return EXIT_OK  # our reader went away: detach quietly
    finally:
        term.restore()


def watch_stdin(selector, conn):
    try:
        selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    except (ValueError, OSError):
        # Not pollable (a regular file, say): give it all at once.
        data = sys.stdin.buffer.read(protocol.MAX_LINE // 2) if sys.stdin else b""
        if data:
            conn.send({"op": "input", "data": protocol.b64(data)})


def console_loop(selector, conn, term):
    if show_output(conn):  # what came with the attach reply
        return EXIT_OK
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                if not forward_input(selector, conn, term):
                    return EXIT_OK
                continue
            data = conn.sock.recv(65536)
            if not data:
                raise ToolstackError("the daemon closed the console")
            conn.feed(data)
            if show_output(conn):
                return EXIT_OK


def forward_input(selector, conn, term):
    """Send what stdin has; False when the user asked to detach."""
    data = os.read(sys.stdin.fileno(), 4096)
    if not data:
        selector.unregister(sys.stdin.fileno())  # stdin ended; the output goes on
        return True
    if term.raw and data == terminal.DETACH:
        return False   # as xl's console client: a read of Ctrl-] alone
    conn.send({"op": "input", "data": protocol.b64(data)})
    return True


def show_output(conn):
    """Write the console bytes received; True once the domain has stopped."""
    out = sys.stdout.buffer
    while True:
        message = conn.pop()
        if message is None:
            return False
        if "out" in message:
            out.write(protocol.unb64(message["out"]))
            out.flush()
        elif "end" in message:
            return True


# -- list, info and the rest --------------------------------------------------------

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
VERBOSE_HEADER = "   UUID                            Reason-Code\tSecurity Label"


def cmd_list(args):
    rows = request("list", domain=args.domain)["domains"]
    if args.long:
        print(json.dumps([{"domid": r["domid"], "config": r["config"]} for r in rows],
                         indent=4))
        return EXIT_OK
    print(LIST_HEADER + (VERBOSE_HEADER if args.verbose else ""))
    for row in rows:
        print(list_line(row, args.verbose))
    return EXIT_OK


def list_line(row, verbose):
    line = (f"{row['name']:<40} {row['domid']:5d} {row['mem_mib']:5d} {row['vcpus']:5d}     "
            f"{row['state']}  {row['cpu_time']:8.1f}")
    if verbose:
        code = row["shutdown_code"]
        line += f" {row['uuid']} {'-' if code is None else format(code, 'x'):>8}"
        line += f" {row['ssid_label'] or '-':>16}"
    return line


def cmd_uptime(args):
    rows = request("list", domain=args.domain)["domains"]
    if args.short:
        now = time.strftime("%H:%M:%S")
        for row in rows:
            print(f" {now} up {uptime_text(row['uptime'], True)}, "
                  f"{row['name']} ({row['domid']})")
        return EXIT_OK
    print(f"{'Name':<33} {'ID':>4} Uptime")
    for row in rows:
        print(f"{row['name']:<33} {row['domid']:4d} {uptime_text(row['uptime'])}")
    return EXIT_OK


def uptime_text(seconds, short=False):
    """xl's uptime forms: "[D day(s), ]HH:MM:SS", or without :SS (short)."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:2d}:{rest // 60:02d}" + ("" if short else f":{rest % 60:02d}")
    if days:
        return f"{days} day{'s' if days > 1 else ''}, {clock}"
    return clock


def cmd_info(args):
    fields = request("info")["info"]
    if args.field is None:
        for key, value in fields:
            print(f"{key:<23}: {value}")
        return EXIT_OK
    for key, value in fields:
        if key == args.field:
            print(value)
            return EXIT_OK
    raise UsageError(f"info: no field {args.field!r} (try `info` for the list)")


def cmd_dmesg(args):
    for line in request("dmesg", clear=args.clear or None)["lines"]:
        print(line)
    return EXIT_OK


def cmd_domid(args):
    print(one_row(args.name)["domid"])
    return EXIT_OK


def cmd_domname(args):
    if not args.domid.isdigit():
        raise UsageError(f"domname: {args.domid!r} is not a domain id")
    print(one_row(args.domid)["name"])
    return EXIT_OK


def one_row(domain):
    return request("list", domain=domain)["domains"][0]


def simple(op, verb=None):
    """A command that sends op for one domain (pause, unpause, destroy)."""
    def command(args):
        if verb:
            print(f"{verb} domain {one_row(args.domain)['domid']}", file=sys.stderr)
        request(op, domain=args.domain)
        return EXIT_OK
    return command


def cmd_shutdown(args):
    domid = one_row(args.domain)["domid"]
    print(f"Shutting down domain {domid}", file=sys.stderr)
    request("shutdown", domain=str(domid))
    if args.wait:
        print("Waiting for 1 domains", file=sys.stderr)
        wait_gone(domid)
    return EXIT_OK


def wait_gone(domid):
    """Until the domain is destroyed (or preserved in its shut-down state)."""
    while True:
        try:
            state = one_row(str(domid))["state"]
        except ToolstackError:
            print(f"Domain {domid} has been destroyed.", file=sys.stderr)
            return
        if state[3] == "s":
            print(f"Domain {domid} has been shut down", file=sys.stderr)
            return
        time.sleep(0.05)


# -- the daemon ---------------------------------------------------------------------

def cmd_daemon(args):
    folder = protocol.ensure_runtime_dir(protocol.runtime_dir())
    for option in ("policy", "console_log"):
        if getattr(args, option) is not None and args.action not in ("start", "run"):
            raise UsageError(f"daemon {args.action}: --{option.replace('_', '-')} "
                             "goes with start or run")
    policy = args.policy or protocol.default_policy()
    if args.action == "run":
        from .daemon import serve

        return serve(folder, policy, console_log_folder(folder, args.console_log))
    if args.action == "start":
        conn = start_daemon(folder, policy, console_log_folder(folder, args.console_log))
    else:
        conn = protocol.try_connect(protocol.socket_path(folder))
    if conn is None:
        print("pyxenon: daemon not running")
        return EXIT_OK if args.action == "stop" else EXIT_FAIL
    try:
        return DAEMON_ACTIONS[args.action](conn, folder)
    finally:
        conn.close()


def console_log_folder(folder, asked):
    """The folder for the guest-NAME.log files when `--console-log` or
    $PYXENON_CONSOLE_LOG (set, not "0") asks for them, else None."""
    from pyxenon.backends.console import LOG_ENV, log_folder

    wanted = asked or os.environ.get(LOG_ENV, "0") not in ("", "0")
    return log_folder(folder) if wanted else None


def start_daemon(folder, policy, console_log=None):
    """A connection to the daemon, started with policy (and console logs in
    the console_log folder) if none runs; one already running must enforce
    that policy (it is fixed at start)."""
    if policy:
        protocol.check_policy(policy)  # malformed: one line, exit 2, nothing started
    path = protocol.socket_path(folder)
    conn = protocol.try_connect(path)
    if conn is None:
        protocol.start_daemon(folder, policy, console_log)
        return protocol.wait_for_daemon(path)
    running = conn.request("ping")
    if policy and running.get("policy") != os.path.abspath(policy):
        conn.close()
        raise ToolstackError(f"the daemon (pid {running['pid']}) already enforces "
                             f"{running.get('policy') or 'no policy'}; "
                             "`daemon stop` it to change the policy")
    if console_log and running.get("console_log") != console_log:
        conn.close()
        raise ToolstackError(f"the daemon (pid {running['pid']}) keeps no console logs; "
                             "`daemon stop` it to start one that does")
    return conn


def daemon_status(conn, folder):
    reply = conn.request("ping")
    policy = reply.get("policy") or "none"
    logs = f", console logs {reply['console_log']}" if reply.get("console_log") else ""
    xenstored = f", xenstored {reply['xenstored']}" if reply.get("xenstored") else ""
    print(f"pyxenon: daemon running, pid {reply['pid']}, socket "
          f"{protocol.socket_path(folder)}{xenstored}, policy {policy}{logs}")
    return EXIT_OK


def daemon_stop(conn, folder):
    """Ask the daemon to stop and wait until its socket is gone."""
    pid = conn.request("ping")["pid"]
    conn.request("stop")
    deadline = time.monotonic() + STOP_TIMEOUT
    while os.path.exists(protocol.socket_path(folder)):
        if time.monotonic() > deadline:
            raise ToolstackError(f"daemon (pid {pid}) did not stop")
        time.sleep(0.05)
    print(f"pyxenon: daemon (pid {pid}) stopped")
    return EXIT_OK


DAEMON_ACTIONS = {"start": daemon_status, "status": daemon_status, "stop": daemon_stop}


# -- the command line ---------------------------------------------------------------

def add_domain_command(sub, name, func, help_text, **extra):
    p = sub.add_parser(name, help=help_text)
    p.add_argument("domain", help="domain name or id")
    p.set_defaults(func=func, **extra)
    return p


def add_create(sub):
    p = sub.add_parser("create", help="create a domain from an xl.cfg file")
    p.add_argument("-p", dest="paused", action="store_true", help="leave it paused")
    p.add_argument("-c", dest="console", action="store_true", help="attach its console")
    p.add_argument("-F", dest="foreground", action="store_true",
                   help="run it in the foreground, in this process")
    p.add_argument("-q", dest="quiet", action="store_true", help="quiet")
    p.add_argument("-n", dest="dry_run", action="store_true",
                   help="dry run: print the parsed config (JSON, as xl) and stop")
    p.add_argument("-f", "--defconfig", dest="cfg_file", metavar="FILE",
                   help="the xl.cfg file (then every operand is a KEY=VALUE)")
    p.add_argument("cfg", nargs="?", metavar="CFG", help="xl.cfg file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="cfg settings that win")
    p.set_defaults(func=cmd_create)


def add_queries(sub):
    p = sub.add_parser("list", help="list domains")
    p.add_argument("-l", "--long", action="store_true", help="each domain's settings, as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="add uuid, reason, label")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="about the host")
    p.add_argument("field", nargs="?", help="print only this field's value")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("dmesg", help="the hypervisor's log")
    p.add_argument("-c", dest="clear", action="store_true", help="clear it after printing")
    p.set_defaults(func=cmd_dmesg)
    sub.add_parser("domid", help="a domain's id").add_argument("name")
    sub.choices["domid"].set_defaults(func=cmd_domid)
    sub.add_parser("domname", help="a domain's name").add_argument("domid")
    sub.choices["domname"].set_defaults(func=cmd_domname)
    for name, func in (("vcpu-list", xl_vcpu.cmd_vcpu_list), ("uptime", cmd_uptime)):
        p = sub.add_parser(name, help=f"{name} for every domain or one")
        p.add_argument("domain", nargs="?")
        p.set_defaults(func=func)
    sub.choices["uptime"].add_argument("-s", dest="short", action="store_true",
                                       help="short form: time now, uptime without seconds")


def add_lifecycle(sub):
    p = add_domain_command(sub, "console", cmd_console, "attach to a domain's console")
    p.add_argument("-t", dest="type", choices=["pv"], default="pv", help="console type")
    add_domain_command(sub, "pause", simple("pause"), "pause a domain")
    add_domain_command(sub, "unpause", simple("unpause"), "unpause a domain")
    add_domain_command(sub, "destroy", simple("destroy"), "destroy a domain now")
    add_domain_command(sub, "reboot", simple("reboot", "Rebooting"), "reboot a domain")
    p = add_domain_command(sub, "shutdown", cmd_shutdown, "shut a domain down")
    p.add_argument("-w", dest="wait", action="store_true", help="wait until it is gone")
    p = sub.add_parser("daemon", help="the host daemon that keeps the domains")
    p.add_argument("action", choices=["start", "stop", "status", "run"])
    p.add_argument("--policy", metavar="FILE",
                   help="start: the separation policy it enforces (default: $PYXENON_POLICY)")
    p.add_argument("--console-log", action="store_true", default=None,
                   help="start: append each domain's console to log/console/guest-NAME.log "
                        "in the runtime folder, as xenconsoled --log=guest "
                        "(default: $PYXENON_CONSOLE_LOG=1)")
    p.set_defaults(func=cmd_daemon)


def parser(prog, extra=False):
    """extra: pyxenon's own commands too (xenstore, audit), not only xl's."""
    p = OneLineParser(prog=prog, description="xl's commands against the pyxenon host daemon.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_create(sub)
    add_queries(sub)
    add_lifecycle(sub)
    xl_vcpu.add_vcpu_commands(sub, positive)
    top.add_top(sub, positive)
    if extra:
        add_xenstore(sub)
        add_audit(sub)
        top.add_stats(sub)
    return p


COMMANDS = ("create", "list", "console", "pause", "unpause", "destroy", "shutdown", "reboot",
            "info", "dmesg", "domid", "domname", "vcpu-list", "vcpu-set", "vcpu-pin", "uptime",
            "daemon", "top")
PYXENON_COMMANDS = ("xenstore", "audit", "stats")   # pyxenon's, through the daemon; not xl's


def show_help(prog, extra, command=None):
    """xl's help: the command list, or one command's usage."""
    p = parser(prog, extra)
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    if command in (None, "help"):
        print(f"Usage {prog} <subcommand> [args]\n\n{prog} full list of subcommands:\n")
        for action in sub._choices_actions:
            print(f" {action.dest:<19} {action.help}")
    elif command in sub.choices:
        sub.choices[command].print_help()
    else:
        print(f'command "{command}" not implemented')


def main(argv, prog="xl", extra=False):
    if not argv or argv[0] == "help":
        show_help(prog, extra, argv[1] if len(argv) > 1 else None)
        # xl alone is a malformed command line (xl's own exit status there is 1)
        return EXIT_OK if argv else EXIT_USAGE
    try:
        args = parser(prog, extra).parse_args(argv)
        args.prog = prog
        return args.func(args)
    except (UsageError, UserInputError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ToolstackError, HostLimitError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_FAIL
    except (ConnectionError, BrokenPipeError) as e:
        print(f"{prog}: lost the connection to the daemon: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
