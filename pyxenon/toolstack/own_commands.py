"""pyxenon's own commands through the daemon (xl has no such): the XenStore
as domain 0, and the audit log.

    xenstore read [-R] PATH | write PATH VALUE | ls [-v] PATH | rm PATH | watch [-n N] PATH
    audit [-n N | -a]

xl.py registers them for `pyxenon COMMAND` only, and reports their errors.
"""
import argparse
import collections
import os
import sys

from . import protocol
from .protocol import ToolstackError, request

EXIT_OK = 0


def cmd_xenstore(args):
    return XENSTORE_ACTIONS[args.action](args)


def xenstore_read(args):
    value = protocol.unb64(request("xenstore_read", path=args.path)["value"])
    if args.raw:
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        print(printable(value))
    return EXIT_OK


def xenstore_write(args):
    request("xenstore_write", path=args.path, value=protocol.b64(os.fsencode(args.value)))
    return EXIT_OK


def xenstore_rm(args):
    request("xenstore_rm", path=args.path)
    return EXIT_OK


def xenstore_ls(args):
    """The children, one per line (-v: name = "value"), asked for a page at a time."""
    offset = 0
    while offset is not None:
        reply = request("xenstore_ls", path=args.path, values=args.verbose or None,
                        offset=offset or None)
        for name, value in reply["entries"]:
            print(name if value is None else f'{name} = "{printable(protocol.unb64(value))}"')
        offset = reply.get("next")
    return EXIT_OK


def xenstore_watch(args):
    """Each path the watch reports, as it fires (once at once, as XenStore
    does), until the daemon stops, -n N events, or Ctrl-C."""
    conn = protocol.connect(start=True)
    try:
        conn.request("xenstore_watch", path=args.path)
        return watch_loop(conn, args.count)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK  # our reader went away (`| head -1`)
    finally:
        conn.close()


def watch_loop(conn, count):
    seen = 0
    while count is None or seen < count:
        message = conn.receive()
        if message is None:
            raise ToolstackError("the daemon closed the connection")
        if "end" in message:
            return EXIT_OK
        if "watch" in message:
            print(message["watch"], flush=True)
            seen += 1
    return EXIT_OK


ESCAPES = {0x5C: "\\\\", 0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n",
           0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v"}


def printable(value):
    """A XenStore value as xenstore-read shows it: printable ASCII as is,
    backslash and the rest escaped (\\n, \\ooo)."""
    return "".join(ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}")
                   for b in value)


XENSTORE_ACTIONS = {"read": xenstore_read, "write": xenstore_write, "ls": xenstore_ls,
                    "rm": xenstore_rm, "watch": xenstore_watch}


def cmd_audit(args):
    """The last lines of the daemon's audit log (audit.log.1 first, if rotated)."""
    folder = protocol.ensure_runtime_dir(protocol.runtime_dir())
    path = os.path.join(folder, protocol.AUDIT_NAME)
    files = [name for name in (path + ".1", path) if os.path.exists(name)]
    if not files:
        raise ToolstackError(f"no audit log at {path} (the daemon writes it while it runs)")
    last = collections.deque(maxlen=None if args.all else args.lines)
    for name in files:
        try:
            with open(name, encoding="utf-8", errors="replace") as log:
                last.extend(line.rstrip("\n") for line in log)
        except OSError as e:
            raise ToolstackError(f"cannot read {name}: {e.strerror}") from None
    for line in last:
        print(line)
    return EXIT_OK


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return int(text)


def add_xenstore(sub):
    p = sub.add_parser("xenstore", help="read and change the XenStore, as domain 0")
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    read = actions.add_parser("read", help="print a node's value")
    read.add_argument("-R", dest="raw", action="store_true", help="the bytes, unescaped")
    actions.add_parser("write", help="set a node's value (made if missing)")
    ls = actions.add_parser("ls", help="a node's children, one per line")
    ls.add_argument("-v", dest="verbose", action="store_true", help='name = "value"')
    actions.add_parser("rm", help="remove a node and everything under it")
    watch = actions.add_parser("watch", help="print each path changed at or below PATH")
    watch.add_argument("-n", dest="count", type=positive, help="stop after N events")
    for name, action in actions.choices.items():
        action.add_argument("path", metavar="PATH")
        if name == "write":
            action.add_argument("value", metavar="VALUE")
    p.set_defaults(func=cmd_xenstore)


def add_audit(sub):
    p = sub.add_parser("audit", help="the policy decisions the daemon logged (JSON lines)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-n", dest="lines", type=positive, default=10,
                       help="the last N lines (default 10)")
    which.add_argument("-a", "--all", action="store_true", help="every line")
    p.set_defaults(func=cmd_audit)
