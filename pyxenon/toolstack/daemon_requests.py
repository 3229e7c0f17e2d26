"""The daemon's requests: each op's arguments and their types, checked
before any op runs (protocol.py carries them; daemon.py answers them)."""


class RequestError(Exception):
    """A request the daemon refuses; its text is the error reply."""


# op -> {argument: type}; any other argument, or one of the wrong type, is refused.
SCHEMAS = {
    "ping": {}, "info": {}, "stop": {},
    "list": {"domain": str},
    "vcpu_list": {"domain": str},
    "vcpu_set": {"domain": str, "count": int},
    "vcpu_pin": {"domain": str, "vcpu": str, "hard": str, "soft": str},
    "create": {"cfg": str, "overrides": list, "paused": bool, "cwd": str, "console": bool},
    "pause": {"domain": str}, "unpause": {"domain": str},
    "destroy": {"domain": str}, "shutdown": {"domain": str}, "reboot": {"domain": str},
    "dmesg": {"clear": bool},
    "console": {"domain": str},
    "stats": {"domain": str},
    "input": {"data": str},
    # XenStore, as domain 0; values are base64
    "xenstore_read": {"path": str},
    "xenstore_write": {"path": str, "value": str},
    "xenstore_ls": {"path": str, "values": bool, "offset": int},
    "xenstore_rm": {"path": str},
    "xenstore_watch": {"path": str},
}
# op -> the arguments it cannot do without
REQUIRED = {op: ("domain",) for op in ("pause", "unpause", "destroy", "shutdown", "reboot",
                                       "console", "stats")}
REQUIRED.update({op: ("path",) for op in ("xenstore_read", "xenstore_ls", "xenstore_rm",
                                          "xenstore_watch")})
REQUIRED["xenstore_write"] = ("path", "value")
REQUIRED["vcpu_set"] = ("domain", "count")
REQUIRED["vcpu_pin"] = ("domain", "vcpu", "hard")


def check_request(message):
    """The op and its arguments, or RequestError naming what is wrong."""
    op = message.get("op")
    if not isinstance(op, str) or op not in SCHEMAS:
        raise RequestError(f"unknown operation {str(op)[:40]!r}")
    args = {k: v for k, v in message.items() if k != "op"}
    check_args(op, args, SCHEMAS[op])
    for name in REQUIRED.get(op, ()):
        if name not in args:
            raise RequestError(f"{op}: a{'n' if name[0] in 'aeiou' else ''} {name} is required")
    return op, args


def check_args(op, args, schema):
    for name, value in args.items():
        if name not in schema:
            raise RequestError(f"{op}: unknown argument {name[:40]!r}")
        if not isinstance(value, schema[name]) or (schema[name] is int and type(value) is bool):
            raise RequestError(f"{op}: {name} must be {schema[name].__name__}")
    if not all(isinstance(o, str) for o in args.get("overrides", [])):
        raise RequestError(f"{op}: overrides must be strings")
