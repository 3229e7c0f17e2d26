"""Tests for the separation policy: the file reader and compiler
(pyxenon.toolstack.policy), the reference monitor (pyxenon.hypervisor.msm)
and the flow analysis."""

import ast
import datetime
import io
import json
import pathlib
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxenon.errors import UserInputError
from pyxenon.hypervisor import msm as msm_module
from pyxenon.hypervisor.errors import HypercallError
from pyxenon.hypervisor.msm import Msm
from pyxenon.public import errno
from pyxenon.toolstack import policy as policy_module
from pyxenon.toolstack.policy import (
    PATHS, JsonLinesAudit, MemoryAudit, can_flow, flow_edges, format_flow,
    graph_dot, graph_text, load_policy, main, parse_policy)

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "policies" / "ping-pong.toml"
DOMAIN_PATHS = tuple(p for p in PATHS if p != "block")   # block's object is a storage label

GOOD = """\
version = 1

[labels]
ping = "sends requests"
pong = "answers them"
intruder = "should be isolated"

[[allow]]
from = "ping"
to = "pong"
paths = ["event_channel", "grant_map"]
access = "readwrite"
bidirectional = true

[[allow]]   # pong reads ping's XenStore nodes
from = "pong"
to = "ping"
paths = ["xenstore"]
"""

HEAD = 'version = 1\n[labels]\nping = "p"\npong = "q"\n'  # lines 1-4


@dataclass
class Dom:
    """What the monitor needs of a domain."""

    name: str
    domid: int
    label: Optional[str]


PING, PONG, INTRUDER = Dom("ping", 1, "ping"), Dom("pong", 2, "pong"), Dom("evil", 3, "intruder")
UNLABELLED = Dom("plain", 4, None)


def error_of(text, path="p.toml"):
    with pytest.raises(UserInputError) as caught:
        parse_policy(text, path)
    return caught.value


# ------------------------------------------------------------------ parser ----

def test_good_policy_compiles():
    policy = parse_policy(GOOD, "good.toml")
    assert policy.source == "good.toml"
    assert dict(policy.labels) == {"ping": "sends requests", "pong": "answers them",
                                   "intruder": "should be isolated"}
    assert policy.rule_count == 2
    assert policy.allowed == {
        ("ping", "pong", "event_channel", "w"), ("pong", "ping", "event_channel", "w"),
        ("ping", "pong", "grant_map", "r"), ("ping", "pong", "grant_map", "w"),
        ("pong", "ping", "grant_map", "r"), ("pong", "ping", "grant_map", "w"),
        ("pong", "ping", "xenstore", "r"),   # access defaults to read
    }
    assert policy.rule_of[("pong", "ping", "grant_map", "w")] == "good.toml:8"
    assert policy.rule_of[("pong", "ping", "xenstore", "r")] == "good.toml:15"


def test_policy_is_immutable():
    policy = parse_policy(GOOD, "good.toml")
    with pytest.raises(AttributeError):
        policy.allowed = frozenset()
    with pytest.raises(TypeError):
        policy.rule_of[("intruder", "ping", "grant_map", "r")] = "mine"
    with pytest.raises(TypeError):
        policy.labels["evil"] = "added"


def test_demo_policy_loads_and_isolates_intruder():
    policy = load_policy(DEMO)
    assert set(policy.labels) == {"ping", "pong", "intruder"}
    assert not any("intruder" in grant[:2] for grant in policy.allowed)
    assert can_flow(policy, "ping", "pong") and can_flow(policy, "pong", "ping")


def test_empty_policy_allows_nothing():
    policy = parse_policy("version = 1\n", "empty.toml")
    assert policy.allowed == frozenset() and policy.rule_count == 0


RULE = '[[allow]]\nfrom = "ping"\nto = "pong"\n'  # lines 5-7 after HEAD

ERRORS = [
    # (text, line, part of the problem)
    ("colour = 3\n" + HEAD, 1, "unknown key 'colour'"),
    (HEAD + "[rules]\nx = 1\n", 5, "unknown key 'rules'"),
    (HEAD + RULE + 'paths = ["event_channel"]\nvia = "net"\n', 9, "unknown key 'via'"),
    (HEAD + RULE + 'paths = ["usb"]\n', 8, "unknown path 'usb'"),
    (HEAD + RULE + 'paths = ["block"]\n', 7, "'to' must be a storage label"),
    (HEAD + RULE + 'paths = []\n', 8, "non-empty list"),
    (HEAD + RULE + 'paths = "xenstore"\n', 8, "non-empty list"),
    (HEAD + RULE + 'paths = ["xenstore", "xenstore"]\n', 8, "listed twice"),
    (HEAD + '[[allow]]\nfrom = "ping"\nto = "pang"\npaths = ["xenstore"]\n', 7,
     "undeclared label 'pang'"),
    (HEAD + '[[allow]]\nfrom = "ping"\nto = "ping"\npaths = ["xenstore"]\n', 7,
     "own resources without a rule"),
    (HEAD + 'pong = "again"\n', 5, "duplicate label 'pong' (first at line 4)"),
    ('[labels]\nping = "p"\n', 1, "missing 'version = 1'"),
    ('version = 2\n', 1, "unsupported policy version 2"),
    ('\nversion = "1"\n', 2, "unsupported policy version '1'"),
    ('version = true\n', 1, "unsupported policy version True"),
    (HEAD + RULE + 'paths = ["xenstore"]\naccess = "all"\n', 9, "unknown access 'all'"),
    (HEAD + RULE + 'paths = ["event_channel"]\naccess = "read"\n', 9,
     "'access' applies to grant_map, grant_copy, xenstore and block only"),
    (HEAD + RULE + 'paths = ["grant_map"]\naccess = "write"\n', 9, "cannot be write-only"),
    (HEAD + RULE + 'paths = ["xenstore"]\nbidirectional = "yes"\n', 9,
     "'bidirectional' must be true or false"),
    (HEAD + '\n[[allow]]\nfrom = "ping"\npaths = ["xenstore"]\n', 6, "rule has no 'to'"),
    (HEAD + '[allow]\nfrom = "ping"\n', 5, "[[allow]] table"),
    ('version = 1\nlabels = 3\n', 2, "[labels] must be a table"),
    (HEAD + 'intruder = 3\n', 5, "label 'intruder': the description must be a string"),
    (HEAD + '[labels.evil]\nx = 1\n', 5, "label 'evil': the description must be a string"),
    # Rules in inline tables: placed at the `allow` key.
    ('version = 1\nallow = [{from = "ping", to = "pong", paths = ["dma"]}]\n' + HEAD[12:], 2,
     "unknown path 'dma'"),
]


@pytest.mark.parametrize("text, line, problem", ERRORS)
def test_errors_name_file_and_line(text, line, problem):
    err = error_of(text)
    assert (err.path, err.line) == ("p.toml", line), str(err)
    assert problem in err.problem
    assert str(err).startswith(f"p.toml:{line}: ")
    assert "\n" not in str(err)


def test_second_rule_errors_point_into_the_second_rule():
    text = HEAD + RULE + 'paths = ["xenstore"]\n\n[[allow]]\nfrom = "pong"\nto = "ping"\n' \
        'paths = ["grant_copy"]\naccess = "readonly"\n'
    assert error_of(text).line == 14


def test_multiline_strings_do_not_confuse_line_numbers():
    text = ('version = 1\n[labels]\nping = """\n[[allow]]\nfrom = "x"\n"""\npong = "q"\n'
            + RULE + 'paths = ["wire"]\n')
    assert error_of(text).line == 11


TOML_SYNTAX = [
    (HEAD + "[[allow]\n", 5),
    (HEAD + 'other = "unterminated\n', 5),
    ('version = 1\n[labels]\nping = \n', 3),
    ('version = 1\nx = "open', 2),   # tomllib: "(at end of document)"
]


@pytest.mark.parametrize("text, line", TOML_SYNTAX)
def test_toml_syntax_errors_become_file_line(text, line):
    err = error_of(text)
    assert err.line == line
    assert err.problem.startswith("invalid TOML: ")
    assert "(at line" not in str(err) and "\n" not in str(err)


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(UserInputError, match="cannot read policy"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'version = 1\n[labels]\nping = "\xff"\n')
    with pytest.raises(UserInputError) as caught:
        load_policy(bad)
    assert caught.value.line == 3 and "UTF-8" in caught.value.problem


# ----------------------------------------------------------- hostile input ----

@pytest.mark.parametrize("label", [
    "0", "7", "0x1f", "-1", "Ping", "ping pong", "ping\\n", "p\\u0131ng", "pіng",
    "a" * 65, "", "_x", "ping.pong", "ping:pong"])
def test_labels_must_be_lowercase_names(label):
    err = error_of(f'version = 1\n[labels]\n"{label}" = "x"\n')
    assert err.line == 3
    assert "bad label" in err.problem


@pytest.mark.parametrize("label", ["dom0", "dom12", "d1", "d0"])
def test_labels_may_not_be_domain_ids(label):
    err = error_of(f'version = 1\n[labels]\n{label} = "x"\n')
    assert err.line == 3 and "looks like a domain id" in err.problem


@pytest.mark.parametrize("value", ["0", "1.5", "[\"ping\"]", "{ id = 3 }", "true"])
def test_rules_name_labels_not_numbers(value):
    err = error_of(HEAD + f'[[allow]]\nfrom = {value}\nto = "pong"\npaths = ["xenstore"]\n')
    assert err.line == 6 and "must be a label name in quotes" in err.problem


def test_unhashable_values_are_errors_not_crashes():
    assert "unknown access" in error_of(
        HEAD + RULE + 'paths = ["xenstore"]\naccess = ["read"]\n').problem
    assert "unknown path" in error_of(HEAD + RULE + 'paths = [["xenstore"]]\n').problem


def test_labels_may_look_like_words_with_digits():
    policy = parse_policy('version = 1\n[labels]\ndomain-a = "x"\nweb_2 = "y"\nd = "z"\n', "p")
    assert set(policy.labels) == {"domain-a", "web_2", "d"}


# ----------------------------------------------------------------- monitor ----

@pytest.fixture
def good():
    return parse_policy(GOOD, "good.toml")


def test_monitor_allows_and_audits(good):
    audit = MemoryAudit()
    Msm(good, audit).check(PING, PONG, "event_channel", "w", op="bind_interdomain")
    [record] = audit
    assert record["decision"] == "allow"
    assert record["rule"] == "good.toml:8"
    assert record["operation"] == "event_channel:bind_interdomain"
    assert record["access"] == "w"
    assert record["subject"] == {"name": "ping", "domid": 1, "label": "ping"}
    assert record["object"] == {"name": "pong", "domid": 2, "label": "pong"}
    when = datetime.datetime.fromisoformat(record["time"])
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - when).total_seconds() < 60


def test_monitor_denies_with_eacces_and_audits(good):
    audit = MemoryAudit()
    with pytest.raises(HypercallError) as caught:
        Msm(good, audit).check(INTRUDER, PING, "grant_map", "r", op="map_grant_ref")
    assert caught.value.errno == errno.EACCES == 13
    [record] = audit
    assert record["decision"] == "deny" and record["rule"] == "default deny"
    assert record["subject"]["label"] == "intruder"
    assert record["operation"] == "grant_map:map_grant_ref"


def decision(policy, subject, obj, path, access="rw"):
    try:
        Msm(policy, MemoryAudit()).check(subject, obj, path, access)
    except HypercallError:
        return "deny"
    return "allow"


def test_direction_matters(good):
    assert decision(good, PONG, PING, "xenstore", "r") == "allow"
    assert decision(good, PING, PONG, "xenstore", "r") == "deny"


def test_access_matters(good):
    assert decision(good, PONG, PING, "xenstore", "w") == "deny"   # read-only rule
    assert decision(good, PONG, PING, "xenstore", "rw") == "deny"
    assert decision(good, PING, PONG, "grant_map", "rw") == "allow"
    assert decision(good, PING, PONG, "event_channel", "w") == "allow"
    assert decision(good, PING, PONG, "event_channel", "rw") == "deny"  # a signal has no read
    for access in ("", "x", "wr", "read", None):
        assert decision(good, PING, PONG, "grant_map", access) == "deny"
    assert decision(good, PING, PONG, "grant_copy", "r") == "deny"
    assert decision(good, PING, PONG, "no_such_path", "r") == "deny"


def test_rw_names_both_granting_rules():
    policy = parse_policy(HEAD + RULE + 'paths = ["xenstore"]\n\n[[allow]]\nfrom = "ping"\n'
                          'to = "pong"\npaths = ["xenstore"]\naccess = "write"\n', "two.toml")
    audit = MemoryAudit()
    Msm(policy, audit).check(PING, PONG, "xenstore", "rw")
    assert audit[0]["rule"] == "two.toml:10 two.toml:5"


def test_own_domain_needs_no_rule_and_is_not_audited(good):
    audit = MemoryAudit()
    for policy in (good, None):
        assert Msm(policy, audit).check(PING, Dom("ping", 1, "ping"), "grant_map") is None
        assert Msm(policy, audit).check(UNLABELLED, UNLABELLED, "xenstore") is None
    assert audit == []


def test_same_label_different_domains_are_separate(good):
    twin = Dom("ping2", 9, "ping")
    assert decision(good, PING, twin, "event_channel", "w") == "deny"


def test_unlabelled_domains_reach_nothing(good):
    assert decision(good, UNLABELLED, PING, "event_channel", "w") == "deny"
    assert decision(good, PING, UNLABELLED, "event_channel", "w") == "deny"


def test_no_policy_denies_everything():
    audit = MemoryAudit()
    with pytest.raises(HypercallError) as caught:
        Msm(None, audit).check(PING, PONG, "event_channel", "w", op="send")
    assert caught.value.errno == errno.EACCES
    assert audit[0]["decision"] == "deny" and audit[0]["rule"] == "no policy"


def test_failed_audit_stops_the_operation(good):
    def broken(record):
        raise OSError("disk full")
    with pytest.raises(OSError):
        Msm(good, broken).check(PING, PONG, "event_channel", "w")


def test_monitor_stays_small_and_reads_no_files():
    source = pathlib.Path(msm_module.__file__).read_text()
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"datetime", "pyxenon.public", "errors"}
    assert "open(" not in source
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    assert len(functions) <= 4


def test_json_lines_audit(tmp_path, good):
    log = tmp_path / "audit.jsonl"
    with JsonLinesAudit(log) as audit:
        monitor = Msm(good, audit)
        monitor.check(PING, PONG, "event_channel", "w", op="send")
        with pytest.raises(HypercallError):
            monitor.check(Dom("evil\nname", 5, "intruder"), PONG, "xenstore", "r", op="read")
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["decision"] for r in records] == ["allow", "deny"]
    assert records[1]["subject"]["name"] == "evil\nname"
    stream = io.StringIO()
    JsonLinesAudit(stream)({"decision": "deny"})
    assert stream.getvalue() == '{"decision": "deny"}\n'


# ---------------------------------------------------------------- analysis ----

CHAIN = """\
version = 1
[labels]
a = "first"
b = "second"
c = "third"
island = "alone"

[[allow]]          # b maps a's frame read-only: a -> b
from = "b"
to = "a"
paths = ["grant_map"]

[[allow]]          # b signals c: b -> c
from = "b"
to = "c"
paths = ["event_channel"]
"""


def test_can_flow_direct_and_transitive():
    policy = parse_policy(CHAIN, "chain.toml")
    assert can_flow(policy, "a", "b") == [("a", "grant_map", "b")]
    hops = can_flow(policy, "a", "c")
    assert hops == [("a", "grant_map", "b"), ("b", "event_channel", "c")]
    assert format_flow("a", hops) == "a -[grant_map]-> b -[event_channel]-> c"


def test_can_flow_direction_matters():
    policy = parse_policy(CHAIN, "chain.toml")
    assert can_flow(policy, "b", "a") is None   # read-only mapping
    assert can_flow(policy, "c", "b") is None   # one-way signal


def test_can_flow_no_path_and_edge_cases():
    policy = parse_policy(CHAIN, "chain.toml")
    assert can_flow(policy, "island", "a") is None
    assert can_flow(policy, "a", "island") is None
    assert can_flow(policy, "a", "a") == []
    assert format_flow("a", []) == "a"
    with pytest.raises(ValueError, match="unknown label 'zed'"):
        can_flow(policy, "a", "zed")


def test_can_flow_is_shortest():
    text = CHAIN + '\n[[allow]]\nfrom = "a"\nto = "c"\npaths = ["grant_copy"]\naccess = "write"\n'
    policy = parse_policy(text, "p")
    assert can_flow(policy, "a", "c") == [("a", "grant_copy", "c")]


def test_graph_text_and_dot():
    policy = parse_policy(CHAIN, "chain.toml")
    assert flow_edges(policy) == [("a", "grant_map", "b"), ("b", "event_channel", "c")]
    text = graph_text(policy)
    assert "a -[grant_map]-> b\nb -[event_channel]-> c\n" in text
    assert "# isolated: island" in text
    dot = graph_dot(policy)
    assert dot.startswith("digraph policy {\n") and dot.endswith("}\n")
    assert dot.count("{") == dot.count("}") == 1
    assert '    "a" -> "b" [label="grant_map"];' in dot
    assert '    "b" -> "c" [label="event_channel"];' in dot
    for label in ("a", "b", "c", "island"):
        assert f'    "{label}";' in dot
    assert len(re.findall(r"->", dot)) == 2 + 1   # two edges and the comment


# --------------------------------------------------------------------- CLI ----

def test_cli_check(capsys):
    assert main(["check", str(DEMO)]) == 0
    assert capsys.readouterr().out == f"{DEMO}: ok, 3 labels, 3 rules\n"


def test_cli_can_flow(capsys):
    assert main(["check", str(DEMO), "--can-flow", "ping", "pong"]) == 0
    assert capsys.readouterr().out == "ping -[event_channel]-> pong\n"
    assert main(["check", str(DEMO), "--can-flow", "intruder", "ping"]) == 0
    assert capsys.readouterr().out == "no\n"
    assert main(["check", str(DEMO), "--can-flow", "ping", "nobody"]) == 2
    assert "unknown label 'nobody'" in capsys.readouterr().err


def test_cli_graph(capsys, tmp_path):
    assert main(["check", str(DEMO), "--graph"]) == 0
    out = capsys.readouterr().out
    text, dot = out.split("\n# Graphviz DOT\n")
    assert "ping -[event_channel]-> pong" in text and "# isolated: intruder" in text
    assert dot.startswith("digraph policy {") and dot.endswith("}\n")
    target = tmp_path / "flows.dot"
    assert main(["check", str(DEMO), "--graph", "--dot", str(target)]) == 0
    assert "digraph" not in capsys.readouterr().out
    assert target.read_text() == dot


def test_cli_bad_policy_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + RULE + 'paths = ["dma"]\n')
    assert main(["check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"pyxenon policy: {bad}:8: unknown path 'dma' " \
        "(paths are event_channel, grant_map, grant_copy, xenstore, block, network)\n"


def test_cli_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["check"]) == 2


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "pyxenon.toolstack.policy", "check", str(DEMO),
                           "--can-flow", "intruder", "pong"],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "no\n", "")


def test_missing_tomllib_is_one_line(monkeypatch):
    monkeypatch.setattr(policy_module, "tomllib", None)
    err = error_of(GOOD)
    assert "Python 3.11" in str(err) and "\n" not in str(err)


# ---------------------------------------------------------------- property ----

READ, WRITE = "r", "w"
ACCESS_FLOWS = {"read": {READ}, "write": {WRITE}, "readwrite": {READ, WRITE}}
NOT_A_DOMAIN_ID = re.compile(r"(?!(dom|d)[0-9]+$)")

labels_strategy = st.lists(
    st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True).filter(NOT_A_DOMAIN_ID.match),
    min_size=2, max_size=5, unique=True)


@st.composite
def rules_strategy(draw, labels):
    rule = {}
    rule["from"], rule["to"] = draw(st.permutations(labels))[:2]
    rule["paths"] = draw(st.lists(st.sampled_from(DOMAIN_PATHS), min_size=1, unique=True))
    choices = [None]
    if set(rule["paths"]) - {"event_channel", "network"}:
        choices += ["read", "readwrite"] + ([] if "grant_map" in rule["paths"] else ["write"])
    access = draw(st.sampled_from(choices))
    if access:
        rule["access"] = access
    if draw(st.booleans()):
        rule["bidirectional"] = draw(st.booleans())
    return rule


def render(labels, rules):
    lines = ["version = 1", "[labels]"] + [f'{label} = "role {label}"' for label in labels]
    for rule in rules:
        lines.append("[[allow]]")
        for key, value in rule.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def expected_grants(rules):
    """The (subject, object, path, access) tuples the rules mean, worked out here."""
    grants = set()
    for rule in rules:
        pairs = [(rule["from"], rule["to"])]
        if rule.get("bidirectional"):
            pairs.append((rule["to"], rule["from"]))
        for subject, obj in pairs:
            for path in rule["paths"]:
                accesses = {WRITE} if path in ("event_channel", "network") \
                    else ACCESS_FLOWS[rule.get("access", "read")]
                grants |= {(subject, obj, path, access) for access in accesses}
    return grants


def expected_edges(rules):
    """Flow edges (source, path, destination) straight from the rules."""
    edges = set()
    for subject, obj, path, access in expected_grants(rules):
        edges.add((subject, path, obj) if access == WRITE else (obj, path, subject))
    return edges


def distances(edges, start):
    seen = {start: 0}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for src, _, dst in edges:
            if src == here and dst not in seen:
                seen[dst] = seen[here] + 1
                queue.append(dst)
    return seen


@st.composite
def scenario(draw):
    labels = draw(labels_strategy)
    rules = draw(st.lists(rules_strategy(labels), max_size=6))
    domains = [Dom(f"dom-{label}", domid, label) for domid, label in enumerate(labels, 1)]
    domains += [Dom("twin", 50, labels[0]), Dom("plain", 51, None)]
    operations = draw(st.lists(st.tuples(
        st.sampled_from(domains), st.sampled_from(domains),
        st.sampled_from(PATHS + ("bogus",)), st.sampled_from(["r", "w", "rw", "", "x"])),
        max_size=20))
    return labels, rules, operations


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_property_monitor_and_flows_follow_the_rules(case):
    labels, rules, operations = case
    policy = parse_policy(render(labels, rules), "random.toml")
    assert policy.allowed == expected_grants(rules)
    check_monitor(policy, operations)
    check_flows(policy, labels, expected_edges(rules))


def permitted(policy, subject, obj, path, access):
    """What the compiled policy permits, decided here without the monitor."""
    needs = {"r": [READ], "w": [WRITE], "rw": [READ, WRITE]}
    if subject.domid == obj.domid:
        return True
    return access in needs and all(
        (subject.label, obj.label, path, one) in policy.allowed for one in needs[access])


def check_monitor(policy, operations):
    audit = MemoryAudit()
    monitor = Msm(policy, audit)
    for subject, obj, path, access in operations:
        try:
            monitor.check(subject, obj, path, access)
            allowed = True
        except HypercallError as err:
            assert err.errno == errno.EACCES
            allowed = False
        assert allowed == permitted(policy, subject, obj, path, access), (subject, obj, path)
    assert len(audit) == sum(s.domid != o.domid for s, o, _, _ in operations)


def check_flows(policy, labels, edges):
    for source in labels:
        reach = distances(edges, source)
        for target in set(labels) - {source}:
            hops = can_flow(policy, source, target)
            assert bool(hops) == (target in reach)
            if hops:
                assert len(hops) == reach[target]   # shortest
                assert hops[0][0] == source and hops[-1][2] == target
                assert all(hop in edges for hop in hops)
                assert all(a[2] == b[0] for a, b in zip(hops, hops[1:]))


STORAGE = """\
version = 1
[labels]
web = "serves pages"
db = "keeps records"
[storage]
webdisk = "the web server's image"
[[allow]]
from = "web"
to = "webdisk"
paths = ["block"]
access = "readwrite"
[[allow]]
from = "db"
to = "webdisk"
paths = ["block"]
[[allow]]
from = "web"
to = "db"
paths = ["network"]
bidirectional = true
"""


def test_storage_labels_and_block_and_network_paths():
    policy = parse_policy(STORAGE, "s.toml")
    assert dict(policy.storage) == {"webdisk": "the web server's image"}
    assert {t for t in policy.allowed if t[2] == "block"} == {
        ("web", "webdisk", "block", "r"), ("web", "webdisk", "block", "w"),
        ("db", "webdisk", "block", "r")}
    assert {t for t in policy.allowed if t[2] == "network"} == {
        ("web", "db", "network", "w"), ("db", "web", "network", "w")}
    # a storage label is a node: data flows web -> disk -> db
    assert can_flow(policy, "web", "webdisk") == [("web", "block", "webdisk")]
    assert ("webdisk", "block", "db") in flow_edges(policy)
    assert '"webdisk";' in graph_dot(policy)


@pytest.mark.parametrize("change, problem", [
    (('to = "webdisk"\npaths = ["block"]\naccess', 'to = "db"\npaths = ["block"]\naccess'),
     "'to' must be a storage label"),
    (('[storage]\nwebdisk', '[storage]\nweb = "x"\nwebdisk'), "both a domain label"),
    (('paths = ["network"]\nbidirectional', 'paths = ["network"]\naccess = "read"\nbidirectional'),
     "'access' applies"),
    (('paths = ["block"]\naccess = "readwrite"', 'paths = ["block", "xenstore"]'),
     "names only the block path"),
])
def test_bad_storage_rules(change, problem):
    with pytest.raises(UserInputError, match=problem):
        parse_policy(STORAGE.replace(*change), "s.toml")
