"""Parser targets: each feeder runs one host-side parser on one input (a
JSON-able dict, so a finding can be saved and replayed) and says
"accepted" or "refused"; a mishandled input raises."""
import pathlib
import re
import traceback

from pyxenon.errors import UserInputError

from ..common import PARSE_LIMIT, Hang, ParserFinding, last_frame, time_limit
from .gdb import feed_gdb
from .xenstore import XenStoreTarget, feed_socket


def feed_elf(given, folder):
    from pyxenon.toolstack.elfimage import load_kernel

    path = write_file(folder, "kernel.elf", bytes.fromhex(given["data"]))
    return user_errors(lambda: load_kernel(path, max_bytes=16 << 20), path)


def feed_xlcfg(given, folder):
    from pyxenon.toolstack.xlcfg import load_cfg, parse_cfg

    data, overrides = bytes.fromhex(given["data"]), given["overrides"]
    if given["via"] == "file":
        path = write_file(folder, "domain.cfg", data)
        return user_errors(lambda: load_cfg(path, overrides), path)
    text = data.decode("utf-8", "replace")
    return user_errors(lambda: parse_cfg(text, "fuzz.cfg", overrides), "fuzz.cfg")


def feed_policy(given, folder):
    from pyxenon.toolstack.policy import load_policy, parse_policy

    data = bytes.fromhex(given["data"])
    if given["via"] == "file":
        path = write_file(folder, "policy.toml", data)
        return user_errors(lambda: load_policy(path), path)
    text = data.decode("utf-8", "replace")
    return user_errors(lambda: parse_policy(text, "fuzz.toml"), "fuzz.toml")


def feed_protocol(given, folder):
    """A request line through the daemon's decode and check, and a reply
    line through the client's framing."""
    from pyxenon.toolstack import daemon, protocol

    line = bytes.fromhex(given["line"])
    conn = protocol.Connection(None)
    try:
        conn.feed(line + b"\n")
        conn.pop()
    except protocol.ToolstackError:
        pass
    try:
        daemon.check_request(protocol.decode(line))
    except (ValueError, daemon.RequestError):
        return "refused"
    return "accepted"


def feed_xenstore(given, folder):
    target = XenStoreTarget()
    for round_ in given["rounds"]:
        target.ring_round(round_)
    outcomes = [target.host_call(*call) for call in given["host"]]
    return "refused" if "refused" in outcomes else "served"


FEEDERS = {"elf": feed_elf, "xlcfg": feed_xlcfg, "policy": feed_policy,
           "protocol": feed_protocol, "xenstore": feed_xenstore, "xenstored-socket": feed_socket,
           "gdb": feed_gdb}


def write_file(folder, name, data):
    path = pathlib.Path(folder) / name
    path.write_bytes(data)
    return path


def user_errors(call, path):
    """Run call(): accepted, or refused with one line naming path."""
    try:
        call()
    except UserInputError as err:
        if "\n" in str(err) or not str(err).startswith((str(path), "command line")):
            raise ParserFinding(f"UserInputError not one line naming the file: {err!r}") from None
        return "refused"
    return "accepted"


def check_input(name, given, folder):
    """(outcome, problem): problem is (what, detail) when the parser
    mishandled the input, else None."""
    try:
        with time_limit(PARSE_LIMIT, cpu=True):
            return FEEDERS[name](given, folder), None
    except Hang as hang:
        return "finding", ("hang", f"{name}: {hang}")
    except ParserFinding as finding:
        return "finding", (re.sub(r"\d+", "N", str(finding).split("\n")[0][:100]), str(finding))
    except Exception:
        text = traceback.format_exc()
        return "finding", (last_frame(text), text)
