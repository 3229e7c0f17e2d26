"""Separation policies: read, check and compile them; analyse their flows.

    python -m pyxenon.toolstack.policy check FILE [--can-flow A B] [--graph] [--dot OUT]

prints "FILE: ok, N labels, M rules"; ``--can-flow A B`` prints the shortest
path information can take from label A to label B ("A -[path]-> B ...") or
"no"; ``--graph`` prints the flow graph, one edge per line, then as Graphviz
DOT (``--dot OUT`` writes the DOT to OUT instead).  Exit status 0, or 2 with
one line on stderr for a malformed policy or an unknown label.

A policy says which domains may reach which, in host-independent terms:
domains carry a label (xl.cfg ``seclabel``) and the policy names labels only
-- never domain ids, frame numbers or device names -- so it means the same on
any host.  Everything it does not allow is refused (default deny).  A domain
without a label is named by no rule: it reaches only its own resources and its
host-side console and XenStore channels, which need no rule.

The file (TOML)::

    version = 1

    [labels]                      # every label, with a description
    ping = "sends requests"
    pong = "answers them"

    [[allow]]                     # one table per rule
    from = "ping"                 # the subject: the domain that acts
    to = "pong"                   # the object: the domain it acts on
    paths = ["event_channel", "grant_map"]
    access = "readwrite"          # optional: "read" (the default), "write", "readwrite"
    bidirectional = true          # optional: the same rule from "to" to "from" too

Labels match ``[a-z][a-z0-9_-]*`` (at most 64 characters) and may not look
like a domain id (``dom0``, ``d1``).  A rule from a label to itself is an
error: a domain reaches its own resources without any rule (so two domains
sharing a label stay apart; give them different labels to connect them).
Unknown keys, unknown paths and undeclared labels are errors too.

What a rule ``from = A, to = B`` allows, and where the data goes:

    event_channel  A binds to an interdomain channel toward B and sends on it:
                   a one-bit signal, A -> B.  (B's signals to A need a rule
                   from B to A, or ``bidirectional``.)  ``access`` does not
                   apply.
    grant_map      A maps a frame B granted it.  "read": read-only mappings,
                   B -> A.  "readwrite": writable ones too, A <-> B.  "write"
                   alone is refused: a writable mapping can be read as well.
    grant_copy     A copies (GNTTABOP_copy) between its memory and a frame B
                   granted it.  "read": out of B's frame, B -> A.  "write":
                   into it, A -> B.  "readwrite": both.
    xenstore       A uses B's XenStore nodes.  "read": B -> A.  "write":
                   A -> B.  "readwrite": both.
    block          A attaches a disk whose storage label is B (``to`` names a
                   label declared under ``[storage]``; a disk gets its label
                   from ``seclabel=`` in its xl.cfg disk spec).  "read": a
                   read-only disk, B -> A.  "readwrite": a writable one too.
                   Checked once per attach.  A storage label is a node of the
                   flow graph: data can flow A -> disk -> C.
    network        frames from A may reach B over a bridge, A -> B (give
                   ``bidirectional`` for replies).  ``access`` does not apply.

Storage labels are declared like domain labels, in their own table::

    [storage]
    scratch = "a scratch disk"

Compiled, a rule becomes tuples (subject, object, path, access) with access
"r" (data flows object -> subject) or "w" (subject -> object): an event
channel is "w"; "readwrite" gives both.  That set, with the id of the rule
granting each tuple (``FILE:LINE`` of its ``[[allow]]``), is the ``Policy``
the hypervisor's reference monitor (``pyxenon.hypervisor.msm``) decides by.
Information may flow along a "w" tuple from subject to object and along an
"r" tuple from object to subject; ``can_flow`` follows those edges
transitively.

Every error is one line, ``FILE:LINE: problem``.  TOML gives no positions,
so lines are found by scanning the text for the offending table or key.
"""
import argparse
import json
import re
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pyxenon.errors import UserInputError, read_user_file

try:
    import tomllib
except ImportError:  # Python 3.10: no TOML reader in the standard library
    tomllib = None

EXIT_OK, EXIT_USAGE = 0, 2

VERSION = 1
PATHS = ("event_channel", "grant_map", "grant_copy", "xenstore", "block", "network")
ACCESS_PATHS = ("grant_map", "grant_copy", "xenstore", "block")
SIGNAL_PATHS = ("event_channel", "network")     # one way, subject -> object: "w"
ACCESS = {"read": ("r",), "write": ("w",), "readwrite": ("r", "w")}
DEFAULT_ACCESS = "read"  # fail safe: a rule grants writes only when it says so
TOP_KEYS = ("version", "labels", "storage", "allow")
RULE_KEYS = ("from", "to", "paths", "access", "bidirectional")
LABEL = re.compile(r"[a-z][a-z0-9_-]{0,63}")
DOMAIN_ID = re.compile(r"(dom|d)[0-9]+")


@dataclass(frozen=True)
class Policy:
    """A checked policy, as the toolstack hands it to the hypervisor."""

    source: str                    # the file it was read from
    labels: Mapping[str, str]      # label -> description
    allowed: frozenset             # {(subject, object, path, access)}, access "r" or "w"
    rule_of: Mapping[tuple, str]   # allowed tuple -> id of the first rule granting it
    rule_count: int
    storage: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # storage label -> description

    @property
    def nodes(self):
        """Every label a flow can pass: domain labels and storage labels."""
        return {**self.labels, **self.storage}


# ------------------------------------------------------------------ reading ----

def load_policy(path):
    """Read, check and compile the policy file at ``path``."""
    path = str(path)
    raw = read_user_file(path, "policy")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UserInputError(path, "not UTF-8 text", line=line) from None
    return parse_policy(text, path)


def parse_policy(text, path="<policy>"):
    """Check and compile policy ``text`` (read from ``path``) into a Policy."""
    source = _Source(str(path), text)
    doc = _parse_toml(source)
    _only_keys(source, doc, TOP_KEYS, ())
    _check_version(source, doc)
    labels = _read_labels(source, doc.get("labels", {}))
    storage = _read_labels(source, doc.get("storage", {}), "storage")
    for name in storage:
        if name in labels:
            raise source.error(f"label {name!r} is both a domain label and a storage label",
                               "storage", name)
    rules = doc.get("allow", [])
    if not isinstance(rules, list):
        raise source.error("write each rule as an [[allow]] table", "allow")
    rule_of = {}
    for index, rule in enumerate(rules):
        rule_id = source.rule_id(index)
        for grant in _read_rule(source, rule, index, labels, storage):
            rule_of.setdefault(grant, rule_id)
    return Policy(source=source.path, labels=MappingProxyType(labels),
                  allowed=frozenset(rule_of), rule_of=MappingProxyType(rule_of),
                  rule_count=len(rules), storage=MappingProxyType(storage))


class _Source:
    """A policy's text, and where each table and key is in it.

    Keys are found by path: ("labels", "ping"), ("allow", 0, "from"); the
    n-th ``[[allow]]`` table is ("allow", n).  The scan is line by line and
    skips multi-line strings; it only places messages, never decides.
    """

    _PART = r"""[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'"""
    _DOTTED = rf"(?:{_PART})(?:\s*\.\s*(?:{_PART}))*"
    _HEADER = re.compile(rf"\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?")
    _KEY = re.compile(rf"\s*({_DOTTED})\s*=")

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.lines = {}       # key path -> line
        self.duplicates = {}  # line -> (key path, line of its first setting)
        self._table = ()
        self._arrays = {}     # array-of-tables path -> tables seen so far
        closing = None
        for number, line in enumerate(text.splitlines(), 1):
            if closing is None:
                self._scan(line, number)
            closing = _still_open(line, closing)

    def _scan(self, line, number):
        header = self._HEADER.fullmatch(line)
        key = self._KEY.match(line)
        if header:
            self._enter(header.group(1), _key_path(header.group(2)), number)
        elif key:
            self._note(self._table + _key_path(key.group(1)), number)

    def _enter(self, bracket, path, number):
        if bracket == "[[":
            index = self._arrays.get(path, 0)
            self._arrays[path] = index + 1
            path += (index,)
        self._table = path
        self._note(path, number)

    def _note(self, path, number):
        if path in self.lines:
            self.duplicates[number] = (path, self.lines[path])
            return
        self.lines[path] = number
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], number)

    def line_of(self, *path):
        """The line of ``path``, else of its nearest enclosing table, else 1."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def error(self, problem, *path):
        return UserInputError(self.path, problem, line=self.line_of(*path))

    def rule_id(self, index):
        """FILE:LINE of the index-th rule's table (FILE:allow[N] if inline)."""
        line = self.lines.get(("allow", index))
        return f"{self.path}:{line}" if line else f"{self.path}:allow[{index + 1}]"


def _key_path(dotted):
    return tuple(_unquote(part) for part in re.findall(_Source._PART, dotted))


def _unquote(part):
    """A bare or quoted TOML key as its name (escapes decoded when possible)."""
    if part[0] not in "\"'":
        return part
    if part[0] == '"' and "\\" in part and tomllib is not None:
        try:
            return tomllib.loads(f"k = {part}")["k"]
        except tomllib.TOMLDecodeError:
            pass
    return part[1:-1]


def _still_open(line, closing):
    """The multi-line string delimiter open after ``line``, or None."""
    for delimiter in ('"""', "'''"):
        if closing in (None, delimiter) and line.count(delimiter) % 2:
            return None if closing else delimiter
    return closing


_TOML_POSITION = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)")


def _parse_toml(source):
    if tomllib is None:
        raise UserInputError(source.path, "reading a policy needs Python 3.11 or later (tomllib)")
    try:
        return tomllib.loads(source.text)
    except tomllib.TOMLDecodeError as err:
        raise _toml_error(source, str(err)) from None


def _toml_error(source, message):
    """tomllib's "... (at line N, column M)" as FILE:N: problem."""
    found = _TOML_POSITION.fullmatch(message)
    if not found:
        return UserInputError(source.path, f"invalid TOML: {message}")
    problem, line, column = found.groups()
    line = int(line) if line else max(len(source.text.splitlines()), 1)
    if line in source.duplicates:
        return _duplicate_error(source, line)
    where = f" (column {column})" if column else " (at end of file)"
    return UserInputError(source.path, f"invalid TOML: {problem}{where}", line=line)


def _duplicate_error(source, line):
    path, first = source.duplicates[line]
    if len(path) == 2 and path[0] == "labels":
        what = f"label {path[1]!r}"
    else:
        what = f"key {'.'.join(map(str, path))!r}"
    return UserInputError(source.path, f"duplicate {what} (first at line {first})", line=line)


# ----------------------------------------------------------------- checking ----

def _only_keys(source, table, known, at):
    for key in table:
        if key not in known:
            raise source.error(f"unknown key {key!r} (expected {', '.join(known)})", *at, key)


def _check_version(source, doc):
    if "version" not in doc:
        raise source.error(f"missing 'version = {VERSION}'")
    version = doc["version"]
    if type(version) is not int or version != VERSION:
        raise source.error(f"unsupported policy version {version!r} "
                           f"(this pyxenon reads version {VERSION})", "version")


def _read_labels(source, table, key="labels"):
    if not isinstance(table, dict):
        raise source.error(f'[{key}] must be a table of label = "description"', key)
    for name, description in table.items():
        _check_label(source, name, key)
        if not isinstance(description, str):
            raise source.error(f"label {name!r}: the description must be a string",
                               key, name)
    return dict(table)


def _check_label(source, name, key="labels"):
    if not LABEL.fullmatch(name):
        raise source.error(f"bad label {name!r}: a label is [a-z][a-z0-9_-]*, "
                           "at most 64 characters", key, name)
    if DOMAIN_ID.fullmatch(name):
        raise source.error(f"label {name!r} looks like a domain id: labels name roles, "
                           "not domains", key, name)


def _read_rule(source, rule, index, labels, storage):
    """The (subject, object, path, access) tuples one [[allow]] table grants."""
    at = ("allow", index)
    if not isinstance(rule, dict):
        raise source.error("write each rule as an [[allow]] table", *at)
    _only_keys(source, rule, RULE_KEYS, at)
    for key in ("from", "to", "paths"):
        if key not in rule:
            raise source.error(f"rule has no {key!r}", *at)
    subject = _rule_label(source, rule, "from", labels, at)
    paths = _rule_paths(source, rule["paths"], at)
    obj = _rule_object(source, rule, paths, labels, storage, at)
    if subject == obj:
        raise source.error(f"rule from {subject!r} to itself: a domain reaches its own "
                           "resources without a rule", *at, "to")
    access = _rule_access(source, rule, paths, at)
    pairs = [(subject, obj)]
    if _rule_flag(source, rule, "bidirectional", at):
        if obj in storage:
            raise source.error("a block rule cannot be bidirectional: a disk does not act",
                               *at, "bidirectional")
        pairs.append((obj, subject))
    return [(s, o, path, one) for s, o in pairs for path in paths for one in _accesses(path, access)]


def _accesses(path, access):
    """An event channel only signals, and a network path only carries
    frames, subject -> object: "w"."""
    return ("w",) if path in SIGNAL_PATHS else ACCESS[access]


def _rule_object(source, rule, paths, labels, storage, at):
    """'to' is a storage label for a block rule, a domain label otherwise."""
    if "block" in paths and len(paths) > 1:
        raise source.error("a block rule names only the block path (its 'to' is a "
                           "storage label)", *at, "paths")
    if paths == ["block"]:
        if rule["to"] not in storage:
            raise source.error(f"block rule: 'to' must be a storage label declared under "
                               f"[storage], not {rule['to']!r}", *at, "to")
        return rule["to"]
    return _rule_label(source, rule, "to", labels, at)


def _rule_label(source, rule, key, labels, at):
    value = rule[key]
    if not isinstance(value, str):
        raise source.error(f"{key!r} must be a label name in quotes, not {value!r} "
                           "(a policy names labels, never domains)", *at, key)
    if value not in labels:
        raise source.error(f"undeclared label {value!r} (declare it under [labels])", *at, key)
    return value


def _rule_paths(source, paths, at):
    if not isinstance(paths, list) or not paths:
        raise source.error(f"'paths' must be a non-empty list of: {', '.join(PATHS)}",
                           *at, "paths")
    for path in paths:
        if path not in PATHS:
            raise source.error(f"unknown path {path!r} (paths are {', '.join(PATHS)})",
                               *at, "paths")
        if paths.count(path) > 1:
            raise source.error(f"path {path!r} listed twice", *at, "paths")
    return paths


def _rule_access(source, rule, paths, at):
    if "access" not in rule:
        return DEFAULT_ACCESS
    access = rule["access"]
    if not isinstance(access, str) or access not in ACCESS:
        raise source.error(f"unknown access {access!r} (read, write or readwrite)",
                           *at, "access")
    if not any(path in ACCESS_PATHS for path in paths):
        raise source.error("'access' applies to grant_map, grant_copy, xenstore and block "
                           "only: an event channel or a network path just carries from -> to",
                           *at, "access")
    if access == "write" and "grant_map" in paths:
        raise source.error("grant_map cannot be write-only (a writable mapping can be "
                           "read too): say \"readwrite\"", *at, "access")
    return access


def _rule_flag(source, rule, key, at):
    value = rule.get(key, False)
    if type(value) is not bool:
        raise source.error(f"{key!r} must be true or false, not {value!r}", *at, key)
    return value


# ----------------------------------------------------------------- analysis ----

def flow_edges(policy):
    """Sorted (source, path, destination) label triples information can cross."""
    edges = set()
    for subject, obj, path, access in policy.allowed:
        edges.add((subject, path, obj) if access == "w" else (obj, path, subject))
    return sorted(edges)


def can_flow(policy, source, target):
    """The shortest list of (label, path, label) hops by which information can
    flow from label ``source`` to label ``target``, or None if it cannot.

    [] when source == target (nothing to cross).  Labels must be declared.
    """
    for label in (source, target):
        if label not in policy.nodes:
            raise ValueError(f"unknown label {label!r}")
    following = {}  # label -> the edges leaving it
    for edge in flow_edges(policy):
        following.setdefault(edge[0], []).append(edge)
    came_from = {source: None}  # label -> the hop that first reached it
    queue = deque([source])
    while queue and target not in came_from:
        for hop in following.get(queue.popleft(), ()):
            if hop[2] not in came_from:
                came_from[hop[2]] = hop
                queue.append(hop[2])
    return _hops_to(came_from, target)


def _hops_to(came_from, target):
    if target not in came_from:
        return None
    hops = []
    while came_from[target] is not None:
        hops.append(came_from[target])
        target = came_from[target][0]
    return hops[::-1]


def format_flow(source, hops):
    """"A -[grant_map]-> B -[event_channel]-> C" (just "A" for no hops)."""
    return source + "".join(f" -[{path}]-> {dst}" for _, path, dst in hops)


def graph_text(policy):
    """The flow graph, one edge per line, with a header and isolated labels."""
    edges = flow_edges(policy)
    lines = [f"# flow graph of {policy.source}: one edge per line, SOURCE -[PATH]-> DESTINATION"]
    lines += [f"{src} -[{path}]-> {dst}" for src, path, dst in edges]
    connected = {src for src, _, _ in edges} | {dst for _, _, dst in edges}
    isolated = sorted(set(policy.nodes) - connected)
    if isolated:
        lines.append(f"# isolated: {', '.join(isolated)}")
    return "\n".join(lines) + "\n"


def graph_dot(policy):
    """The flow graph as Graphviz DOT: every label a node, every edge labelled."""
    lines = ["digraph policy {",
             "    // an edge A -> B: information can flow from A to B over the path named"]
    lines += [f'    "{label}";' for label in sorted(policy.nodes)]
    lines += [f'    "{src}" -> "{dst}" [label="{path}"];' for src, path, dst in flow_edges(policy)]
    return "\n".join(lines + ["}"]) + "\n"


# --------------------------------------------------------------- audit sinks ----

class JsonLinesAudit:
    """An Msm audit sink writing one JSON object per line, flushed each time.

    Takes a path (opened for appending) or an open text file.  JSON escapes
    control characters, so a hostile domain name cannot break a line.
    """

    def __init__(self, path_or_file):
        self._owned = not hasattr(path_or_file, "write")
        self.file = open(path_or_file, "a", encoding="utf-8") if self._owned else path_or_file

    def __call__(self, record):
        self.file.write(json.dumps(record, sort_keys=True) + "\n")
        self.file.flush()

    def close(self):
        if self._owned:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemoryAudit(list):
    """An Msm audit sink that keeps the records in this list (for tests)."""

    def __call__(self, record):
        self.append(record)


# ------------------------------------------------------------- command line ----

def _parser():
    top = argparse.ArgumentParser(prog="pyxenon policy",
                                  description="Check a separation policy and analyse its flows.")
    commands = top.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check a policy file")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--can-flow", nargs=2, metavar=("A", "B"),
                       help="can information flow from label A to label B? print the path or 'no'")
    check.add_argument("--graph", action="store_true",
                       help="print the flow graph: one edge per line, then Graphviz DOT")
    check.add_argument("--dot", metavar="OUT", help="write the Graphviz DOT to OUT instead")
    return top


def main(argv=None):
    """``pyxenon policy check``: 0 when the policy is valid, 2 when not."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:
        return stop.code
    try:
        policy = load_policy(args.file)
        _report(policy, args)
    except UserInputError as err:
        print(f"pyxenon policy: {err}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _report(policy, args):
    if args.can_flow:
        print(_answer_flow(policy, *args.can_flow))
    if args.graph:
        print(graph_text(policy), end="")
    if args.graph and not args.dot:
        print("\n# Graphviz DOT")
        print(graph_dot(policy), end="")
    if args.dot:
        _write(args.dot, graph_dot(policy))
    if not (args.can_flow or args.graph):
        print(f"{policy.source}: ok, {_count(len(policy.labels), 'label')}, "
              f"{_count(policy.rule_count, 'rule')}")


def _answer_flow(policy, source, target):
    try:
        hops = can_flow(policy, source, target)
    except ValueError as err:
        raise UserInputError(policy.source, f"--can-flow: {err}") from None
    return "no" if hops is None else format_flow(source, hops)


def _write(path, text):
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as err:
        raise UserInputError(path, f"cannot write: {err.strerror or type(err).__name__}") from None


def _count(number, noun):
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
