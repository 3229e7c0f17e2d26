"""Read xl.cfg domain configuration files (see ``man xl.cfg``).

The syntax is that of xl's own parser (libxlu_cfg_l.l, libxlu_cfg_y.y):

* ``KEY = VALUE`` or ``KEY += VALUE``, ended by a newline or ``;``.  The
  last statement of a file needs no newline.  ``#`` starts a comment.
* A VALUE is a string in ``"..."`` or ``'...'`` (backslash escapes ``\\"``
  ``\\'`` ``\\\\`` ``\\a \\b \\f \\n \\r \\t \\v``, ``\\xHH`` and ``\\OOO``
  octal), a number (as C's strtol(..., 0): ``0x`` hex, a leading ``0`` is
  octal, else decimal), or a list ``[ item, item, ]`` of strings and
  numbers which may span lines and hold comments.
* A key set twice takes the later value (xl's rule).  ``+=`` appends to an
  earlier string or list of the same key.  ``overrides`` (``KEY=VALUE``
  strings, as given to ``xl create cfg KEY=VALUE ...``) are parsed after the
  file with the same syntax, so they win; their errors name the source
  "command line" and the override's position as the line, as xl does.

Known keys are checked; every other key is kept in ``extra_keys``.  Like xl,
a number key also takes a quoted number (``memory = "512"``); string keys
need a quoted string.  Departures from xl, all documented here: relative
``kernel`` and ``ramdisk`` paths are taken from the cfg file's folder (from
the current folder for overrides); ``kernel`` is required (no bootloaders);
a malformed number is an error wherever it appears; ``\\r`` counts as white
space.  Defaults follow xl/libxl: memory 32 MiB, maxmem = memory, 1 vcpu,
on_poweroff/on_crash/on_watchdog "destroy", on_reboot "restart".
"""

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Optional

from pyxenon.errors import UserInputError, read_user_file

from . import xldevices

OVERRIDE_SOURCE = "command line"
DEFAULT_MEMORY_MIB = 32  # libxl's default max_memkb
LONG_MAX = (1 << 63) - 1  # xl reads numbers with strtol()

ACTIONS = ("destroy", "restart", "rename-restart", "preserve",
           "coredump-destroy", "coredump-restart", "soft-reset")
ACTION_DEFAULTS = {"on_poweroff": "destroy", "on_reboot": "restart",
                   "on_crash": "destroy", "on_watchdog": "destroy"}
UNSUPPORTED_TYPES = ("pvh", "hvm")


@dataclass
class DomainConfig:
    """A domain's settings, checked.  Sizes are in MiB."""

    name: str
    kernel: str
    ramdisk: Optional[str] = None
    cmdline: str = ""
    memory_mib: int = DEFAULT_MEMORY_MIB
    maxmem_mib: Optional[int] = None  # None: the same as memory_mib
    vcpus: int = 1                    # online at start (xl's avail_vcpus)
    max_vcpus: Optional[int] = None   # maxvcpus; None: the same as vcpus
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    on_watchdog: str = "destroy"
    seclabel: Optional[str] = None
    # xl's parse_config_data: the cfg's uuid, else libxl_uuid_generate's random one
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    gdb: Optional[int] = None  # pyxenon's own: serve a GDB stub on this port (0: any)
    disks: tuple = ()              # xldevices.DiskSpec, in the cfg's order
    vifs: tuple = ()               # xldevices.VifSpec
    path: str = ""
    extra_keys: dict = field(default_factory=dict)
    # key -> (source, line) of the setting that won, for later messages.
    origins: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.maxmem_mib is None:
            self.maxmem_mib = self.memory_mib

    def where(self, key):
        """(path, line) to pass to UserInputError about setting ``key``."""
        return self.origins.get(key, (self.path, None))


def ignored_warning(config):
    """One line naming the cfg's keys pyxenon does not implement, or None."""
    keys = list(config.extra_keys)
    if not keys:
        return None
    return (f"warning: {config.path}: settings pyxenon does not implement, ignored: "
            + ", ".join(keys))


def load_cfg(path, overrides=()):
    """Read and check the xl.cfg file at ``path``, then apply overrides."""
    path = str(path)
    raw = read_user_file(path, "config")
    return parse_cfg(_decode(raw, path), path, overrides)


def parse_cfg(text, path, overrides=()):
    """Parse xl.cfg ``text`` (read from ``path``) into a DomainConfig."""
    path = str(path)
    settings = {}
    _apply(settings, text, path)
    _apply(settings, "\n".join(overrides), OVERRIDE_SOURCE)
    return _build(settings, path)


def parse_settings(text, source):
    """Parse ``text`` into {key: value} without checking known keys.

    Values are str, int, or lists of those.
    """
    settings = {}
    _apply(settings, text, str(source))
    return {key: setting.value for key, setting in settings.items()}


def _decode(raw, path):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UserInputError(path, "not UTF-8 text", line=line) from None


# ---------------------------------------------------------------- lexer ----

@dataclass(frozen=True)
class _Token:
    kind: str  # ident, number, string, newline, eof, or the punctuation
    text: str
    value: object
    line: int

    def describe(self):
        names = {"newline": "end of line", "eof": "end of file"}
        return names.get(self.kind) or repr(self.text)


_TOKEN_RE = re.compile(r"""
      (?P<space>[ \t\r]+)
    | (?P<comment>\#[^\n]*)
    | (?P<newline>\n)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>[0-9][0-9A-Za-z_]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<quote>["'])
    | (?P<punct>\+=|[=,;\[\]])
""", re.VERBOSE)

_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_NUMBER_BASES = {"0x": 16, "0X": 16}

_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.DOTALL)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def parse_number(text):
    """Parse an integer as strtol(text, NULL, 0); ValueError if bad."""
    if not _NUMBER_RE.fullmatch(text):
        raise ValueError(f"bad number {text!r}")
    base = _NUMBER_BASES.get(text[:2], 8 if text[0] == "0" else 10)
    value = int(text, base)
    if value > LONG_MAX:
        raise ValueError(f"number {text} is too large")
    return value


def _unescape_one(match):
    code = match.group(1)
    if code[0] == "x" and len(code) == 3:
        return chr(int(code[1:], 16))
    if code[0] in "01234567":
        return chr(int(code, 8))
    if code in _ESCAPES:
        return _ESCAPES[code]
    raise ValueError(f"invalid escape '\\{code}' in quoted string")


def _unquote(text):
    return _ESCAPE_RE.sub(_unescape_one, text[1:-1])


_VALUE_OF = {
    "number": parse_number,
    "string": _unquote,
}

_LEX_PROBLEMS = {
    "quote": "unterminated string",
}


def _lex_problem(kind, text):
    if kind in _LEX_PROBLEMS:
        return _LEX_PROBLEMS[kind]
    hint = " (xl.cfg is not Python)" if text in "+-.():" else ""
    return f"unexpected character {text!r}{hint}"


def _tokenize(text, source):
    """Return the list of tokens of text, ending with an eof token."""
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        kind = match.lastgroup if match else "bad"
        piece = match.group() if match else text[pos]
        if kind in ("bad", "quote"):
            raise UserInputError(source, _lex_problem(kind, piece), line=line)
        if kind not in ("space", "comment"):
            tokens.append(_make_token(kind, piece, line, source))
        pos += len(piece)
        line += piece.count("\n")
    tokens.append(_Token("eof", "", None, line))
    return tokens


def _make_token(kind, text, line, source):
    if kind == "punct":
        return _Token(text, text, None, line)
    try:
        value = _VALUE_OF.get(kind, str)(text)
    except ValueError as err:
        raise UserInputError(source, str(err), line=line) from None
    return _Token(kind, text, value, line)


# --------------------------------------------------------------- parser ----

_ATOMS = ("string", "number")
_STATEMENT_ENDS = ("newline", ";")


@dataclass(frozen=True)
class _Statement:
    key: str
    op: str
    value: object
    line: int


class _Parser:
    """Recursive descent over xl's grammar (libxlu_cfg_y.y)."""

    def __init__(self, tokens, source):
        self.tokens = tokens
        self.pos = 0
        self.source = source

    def peek(self):
        return self.tokens[self.pos]

    def take(self):
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, token, problem):
        return UserInputError(self.source, problem, line=token.line)

    def statements(self):
        while self.peek().kind != "eof":
            token = self.take()
            if token.kind in _STATEMENT_ENDS:
                continue
            if token.kind != "ident":
                raise self.error(token, "expected a setting name, found "
                                 + token.describe())
            yield self.assignment(token)

    def assignment(self, key):
        op = self.take()
        if op.kind not in ("=", "+="):
            raise self.error(op, f"expected '=' after {key.text}, found "
                             + op.describe())
        value = self.value(key)
        end = self.peek()
        if end.kind not in _STATEMENT_ENDS + ("eof",):
            raise self.error(end, f"unexpected {end.describe()} after the "
                             f"value of {key.text}")
        return _Statement(key.text, op.kind, value, key.line)

    def value(self, key):
        token = self.take()
        if token.kind == "[":
            return self.list_items(token)
        if token.kind not in _ATOMS:
            raise self.error(token, f"expected a value for {key.text}, found "
                             + token.describe())
        return token.value

    def skip_newlines(self):
        while self.peek().kind == "newline":
            self.pos += 1

    def list_items(self, opening):
        items = []
        self.skip_newlines()
        while self.peek().kind != "]":
            items.append(self.list_item(opening))
            self.skip_newlines()
            if self.peek().kind == ",":
                self.take()
                self.skip_newlines()
            elif self.peek().kind != "]":
                raise self.list_error(self.peek(), opening, "',' or ']'")
        self.take()
        return items

    def list_item(self, opening):
        token = self.take()
        if token.kind not in _ATOMS:
            raise self.list_error(token, opening, "a string or number")
        return token.value

    def list_error(self, token, opening, wanted):
        if token.kind == "eof":
            return self.error(token, f"list opened on line {opening.line} "
                              "is never closed")
        return self.error(token, f"expected {wanted} in list, found "
                          + token.describe())


# ------------------------------------------------------------- settings ----

@dataclass(frozen=True)
class _Setting:
    value: object
    source: str
    line: int


def _append(old, new):
    """xl's += : join two strings or two lists."""
    if isinstance(old, int) or isinstance(new, int):
        raise ValueError("can't use += with numbers")
    if type(old) is not type(new):
        raise ValueError("can't add [list] to \"string\" or vice versa")
    return old + new


def _apply(settings, text, source):
    for stmt in _Parser(_tokenize(text, source), source).statements():
        value = stmt.value
        if stmt.op == "+=" and stmt.key in settings:
            try:
                value = _append(settings[stmt.key].value, value)
            except ValueError as err:
                raise UserInputError(source, f"{stmt.key}: {err}",
                                     line=stmt.line) from None
        settings[stmt.key] = _Setting(value, source, stmt.line)


# ------------------------------------------------------------ known keys ----

def _string(key, value):
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a quoted string")
    return value


def _nonempty_string(key, value):
    if not _string(key, value):
        raise ValueError(f"{key} must not be empty")
    return value


def _positive_int(key, value):
    if isinstance(value, list):
        raise ValueError(f"{key} must be a single number, not a list")
    if isinstance(value, str):
        try:
            value = parse_number(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, not {value!r}") \
                from None
    if value < 1:
        raise ValueError(f"{key} must be at least 1, not {value}")
    return value


def _port(key, value):
    """A TCP port, 0 meaning any free one."""
    if value in (0, "0"):
        return 0
    value = _positive_int(key, value)
    if value > 65535:
        raise ValueError(f"{key} must be a TCP port (0 to 65535), not {value}")
    return value


def _action(key, value):
    if _string(key, value) not in ACTIONS:
        raise ValueError(f"unknown {key} action {value!r} (use one of "
                         + ", ".join(ACTIONS) + ")")
    return value


UUID_FORM = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _uuid(key, value):
    """libxl_uuid_from_string's one form: 8-4-4-4-12 hex digits."""
    if not UUID_FORM.fullmatch(_string(key, value)):
        raise ValueError(f"{key} {value!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return value.lower()


def _guest_type(key, value):
    if _string(key, value) in UNSUPPORTED_TYPES:
        raise ValueError(f'{key} "{value}" is not supported: pyxenon runs '
                         "PV guests")
    if value != "pv":
        raise ValueError(f'unknown {key} "{value}" (xl knows "pv", "pvh" '
                         'and "hvm")')
    return value


def _builder(key, value):
    if _string(key, value) == "hvm":
        return _guest_type(key, value)
    return value  # "generic" and others mean PV, as in xl


def _string_list(key, value):
    if isinstance(value, str):
        value = [value]           # xl takes a lone string as a one-item list
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of quoted strings")
    return value


CONVERTERS = {
    "name": _nonempty_string,
    "type": _guest_type,
    "builder": _builder,
    "kernel": _nonempty_string,
    "ramdisk": _nonempty_string,
    "cmdline": _string,
    "root": _string,
    "extra": _string,
    "memory": _positive_int,
    "maxmem": _positive_int,
    "vcpus": _positive_int,
    "maxvcpus": _positive_int,
    "on_poweroff": _action,
    "on_reboot": _action,
    "on_crash": _action,
    "on_watchdog": _action,
    "seclabel": _string,
    "uuid": _uuid,
    "gdb": _port,
    "disk": _string_list,
    "vif": _string_list,
}

REQUIRED = ("name", "kernel")


def _convert_known(settings):
    values = {}
    for key, convert in CONVERTERS.items():
        if key not in settings:
            continue
        setting = settings[key]
        try:
            values[key] = convert(key, setting.value)
        except ValueError as err:
            raise UserInputError(setting.source, str(err),
                                 line=setting.line) from None
    return values


def _check_required(values, path):
    for key in REQUIRED:
        if key not in values:
            raise UserInputError(path, f'required setting "{key}" is missing')


def command_line(values):
    """xl's kernel command line: cmdline if set, else root= and extra."""
    if "cmdline" in values:
        return values["cmdline"]
    parts = [f"root={values['root']}"] if "root" in values else []
    parts += [values["extra"]] if "extra" in values else []
    return " ".join(parts)


def _base_folder(setting, path):
    if setting.source == OVERRIDE_SOURCE:
        return os.getcwd()
    return os.path.dirname(os.path.abspath(path))


def _resolve_file(values, settings, key, path):
    if key not in values:
        return None
    folder = _base_folder(settings[key], path)
    return os.path.normpath(os.path.join(folder, values[key]))


MAX_VCPUS = 32   # XEN_LEGACY_MAX_VCPUS: each vcpu has its vcpu_info slot in shared_info


def _vcpus(values, settings):
    """vcpus (online at start) and maxvcpus, as xl reads them; libxl
    refuses fewer maximum vcpus than available ones."""
    vcpus = values.get("vcpus", 1)
    most = values.get("maxvcpus", vcpus)
    key = "maxvcpus" if "maxvcpus" in values else "vcpus"
    if most < vcpus:
        setting = settings["maxvcpus"]
        raise UserInputError(setting.source, f"maxvcpus ({most}) is less than vcpus ({vcpus})",
                             line=setting.line)
    if most > MAX_VCPUS:
        setting = settings[key]
        raise UserInputError(setting.source, f"{key} ({most}) is more than pyxenon's "
                             f"{MAX_VCPUS}", line=setting.line)
    return vcpus, most


def _memory(values, settings):
    memory = values.get("memory", DEFAULT_MEMORY_MIB)
    maxmem = values.get("maxmem", memory)
    if maxmem < memory:
        setting = settings["maxmem"]
        raise UserInputError(setting.source, f"maxmem ({maxmem} MiB) is less "
                             f"than memory ({memory} MiB)", line=setting.line)
    return memory, maxmem


def _devices(values, settings, path):
    """The disk and vif lists, each spec checked (xldevices)."""
    found = {}
    for key, parse in (("disk", lambda spec, i, folder: xldevices.parse_disk(spec, folder)),
                       ("vif", xldevices.parse_vif)):
        if key not in values:
            found[key] = ()
            continue
        setting = settings[key]
        found[key] = tuple(_device(parse, key, spec, index, setting, path)
                           for index, spec in enumerate(values[key]))
    try:
        xldevices.check_unique(found["disk"], found["vif"])
    except ValueError as err:
        raise UserInputError(path, str(err)) from None
    return found["disk"], found["vif"]


def _device(parse, key, spec, index, setting, path):
    try:
        return parse(spec, index, _base_folder(setting, path))
    except ValueError as err:
        raise UserInputError(setting.source, f"{key} {spec!r}: {err}",
                             line=setting.line) from None


def _build(settings, path):
    values = _convert_known(settings)
    disks, vifs = _devices(values, settings, path)
    _check_required(values, path)
    memory, maxmem = _memory(values, settings)
    vcpus, max_vcpus = _vcpus(values, settings)
    actions = {key: values.get(key, default)
               for key, default in ACTION_DEFAULTS.items()}
    return DomainConfig(
        name=values["name"],
        kernel=_resolve_file(values, settings, "kernel", path),
        ramdisk=_resolve_file(values, settings, "ramdisk", path),
        cmdline=command_line(values),
        memory_mib=memory, maxmem_mib=maxmem,
        vcpus=vcpus, max_vcpus=max_vcpus,
        seclabel=values.get("seclabel"),
        **({"uuid": values["uuid"]} if "uuid" in values else {}),
        gdb=values.get("gdb"),
        disks=disks, vifs=vifs,
        path=path,
        extra_keys={key: s.value for key, s in settings.items()
                    if key not in CONVERTERS},
        origins={key: (s.source, s.line) for key, s in settings.items()},
        **actions)
