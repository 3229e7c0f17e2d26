"""The separation demo (README "Separation demo", guests/README.md): ping and
pong connect the way split drivers do -- XenStore, an interdomain event
channel, a granted page -- under examples/policies/ping-pong.toml, while
intruder tries every path the policy does not name.

One run of the three is shared by the tests of this module (it takes a few
seconds); each test reads a different part of the outcome.  A failing
assertion shows the consoles.
"""
import pathlib
import re

import pytest

from pyxenon.toolstack.host import Host

ROOT = pathlib.Path(__file__).resolve().parent.parent

POLICY = ROOT / "examples" / "policies" / "ping-pong.toml"
TIMEOUT = 60            # the run takes ~3 s; a hang must not hold the suite long

ROUND_TRIPS = re.compile(r"^ping: (\d+) round trips in (\d+) us, (\d+) per second$",
                         re.MULTILINE)
OFFER = re.compile(r"^ping: offered port (\d+), grant refs (\d+) \(ring\) and (\d+) "
                   r"\(bulletin", re.MULTILINE)
TARGETS = re.compile(r"^intruder: I am d(\d+); going after ping \(d(\d+): port (\d+), "
                     r"refs (\d+) and (\d+)\) and pong \(d(\d+)\)$", re.MULTILINE)
ATTEMPT = re.compile(r"^intruder: \[\s*(\d+)\] (.*): (-?\d+) (\S+): (.*)$", re.MULTILINE)
SUMMARY = re.compile(r"^intruder: (\d+)/(\d+) attempts refused$", re.MULTILINE)


def story(*doms):
    return "\n".join(f"--- {d.name} ({d.shutdown_reason})\n{d.dmesg_text}"
                     f"{d.crash_report or ''}" for d in doms)


def run_three(policy):
    host = Host(memory_mib=1024, policy=policy)
    doms = [host.create(str(ROOT / "guests" / f"{name}.cfg"))
            for name in ("ping", "pong", "intruder")]
    outcome = host.run(timeout=TIMEOUT)
    return host, doms, outcome


@pytest.fixture(scope="module")
def demo():
    import subprocess

    subprocess.run(["make", "-s", "-C", str(ROOT / "guests")], check=True)
    host, doms, outcome = run_three(POLICY)
    yield host, doms, outcome
    host.close()


def test_every_domain_powers_off(demo):
    host, doms, outcome = demo
    assert outcome != "timeout", story(*doms)
    for dom in doms:
        assert dom.shutdown_reason == "poweroff", story(*doms)
        assert dom.crash_report is None, story(*doms)


def test_ping_and_pong_exchange_round_trips(demo):
    _, (ping, pong, _), _ = demo
    m = ROUND_TRIPS.search(ping.dmesg_text)
    assert m and int(m.group(1)) == 50000, story(ping, pong)
    assert int(m.group(3)) > 0, story(ping)
    assert "pong: answered 50000 pings; unmapped the ring: 0 GNTST_okay" in pong.dmesg_text, \
        story(pong)
    assert "pong: I am d2; found ping at d1" in pong.dmesg_text, story(pong)
    assert 'bulletin says "hello from ping, read-only"' in pong.dmesg_text, story(pong)
    assert "ping: done" in ping.dmesg_text, story(ping)
    assert "no connection" not in ping.dmesg_text + pong.dmesg_text, story(ping, pong)


def test_ping_ends_the_ring_grant_only_after_pong_unmapped(demo):
    _, (ping, pong, _), _ = demo
    text = ping.dmesg_text
    assert "ping: pong unmapped the ring; ended grant ref 8: 0 OK" in text, story(ping)
    # pong's unmap came first (its console line is printed after its last send)
    assert "unmapped the ring: 0 GNTST_okay" in pong.dmesg_text, story(pong)


def test_mapping_after_revocation_is_refused(demo):
    """ping revokes the read-only bulletin grant (pong had mapped and unmapped
    it); pong's second map of the same ref fails as on Xen: the entry no
    longer says permit_access, GNTST_general_error."""
    _, (ping, pong, _), _ = demo
    assert "ping: revoked grant ref 9 (bulletin): 0 OK" in ping.dmesg_text, story(ping)
    assert "pong: mapping revoked grant ref 9: -1 GNTST_general_error: refused" \
        in pong.dmesg_text, story(pong)
    assert "ping: pong mapping the revoked grant got -1 GNTST_general_error" \
        in ping.dmesg_text, story(ping)


def test_intruder_attacks_the_numbers_ping_really_uses(demo):
    _, (ping, pong, intruder), _ = demo
    offer = OFFER.search(ping.dmesg_text)
    targets = TARGETS.search(intruder.dmesg_text)
    assert offer and targets, story(ping, intruder)
    me, ping_id, port, ring_ref, bulletin_ref, pong_id = targets.groups()
    assert (me, ping_id, pong_id) == (str(intruder.domid), str(ping.domid), str(pong.domid))
    assert (port, ring_ref, bulletin_ref) == offer.groups()


def test_intruder_is_refused_every_time(demo):
    _, (_, _, intruder), _ = demo
    text = intruder.dmesg_text
    attempts = ATTEMPT.findall(text)
    assert len(attempts) >= 40, story(intruder)
    assert "NOT REFUSED" not in text, story(intruder)
    summary = SUMMARY.search(text)
    assert summary, story(intruder)
    assert summary.group(1) == summary.group(2) == str(len(attempts)), story(intruder)
    for number, what, rc, name, verdict in attempts:
        assert int(rc) < 0 and verdict.startswith("refused"), (what, story(intruder))


def test_intruder_attacked_while_ping_was_alive(demo):
    """ping still existed when intruder went for its port (a dead domain
    would answer ESRCH), and had offered it first (the audit order)."""
    host, (_, _, intruder), _ = demo
    assert re.search(r"\] bind ping's port \d+ \(offered to pong, not to it\): "
                     r"-22 EINVAL: refused as Xen does$", intruder.dmesg_text,
                     re.MULTILINE), story(intruder)


def records(host, **match):
    def ok(rec):
        return all(
            (rec["subject"]["label"] if k == "subject" else
             rec["object"]["label"] if k == "object" else
             rec["operation"].split(":")[0] if k == "path" else rec[k]) == v
            for k, v in match.items())
    return [rec for rec in host.machine.audit_log if ok(rec)]


@pytest.mark.parametrize("subject,obj,path", [
    ("ping", "pong", "event_channel"),      # alloc_unbound for pong
    ("pong", "ping", "event_channel"),      # bind_interdomain
    ("pong", "ping", "grant_map"),          # the ring (rw) and the bulletin (r)
    ("pong", "ping", "xenstore"),           # ping's name and data/ nodes
])
def test_audit_allows_the_policy_paths(demo, subject, obj, path):
    host, doms, _ = demo
    found = records(host, subject=subject, object=obj, path=path, decision="allow")
    assert found, host.machine.audit_log
    assert all(rec["rule"].startswith(str(POLICY)) for rec in found)


def test_audit_denies_intruder_and_never_allows_it(demo):
    host, _, _ = demo
    denied = records(host, subject="intruder", decision="deny")
    paths = {(rec["object"]["label"], rec["operation"]) for rec in denied}
    assert ("ping", "event_channel:alloc_unbound") in paths, denied
    assert ("pong", "event_channel:alloc_unbound") in paths, denied
    assert ("ping", "xenstore:xenstore") in paths, denied
    assert all(rec["rule"] == "default deny" for rec in denied)
    assert not records(host, subject="intruder", decision="allow")
    assert not [rec for rec in host.machine.audit_log
                if rec["object"]["label"] == "intruder" and rec["decision"] == "allow"]


def test_intruder_attacked_after_ping_offered(demo):
    """The attempts are on a live, offered port: ping's alloc_unbound comes
    before intruder's first refusal in the log."""
    host, _, _ = demo
    log = host.machine.audit_log
    first_offer = next(i for i, r in enumerate(log)
                       if r["operation"] == "event_channel:alloc_unbound"
                       and r["subject"]["label"] == "ping")
    first_intruder = next(i for i, r in enumerate(log) if r["subject"]["label"] == "intruder")
    assert first_offer < first_intruder


def test_intruder_grant_refusals_are_xens(demo):
    host, (_, _, intruder), _ = demo
    assert "0 of the refusals differ from Xen's" in intruder.dmesg_text, story(intruder)
    assert records(host, subject="intruder", path="grant_map", decision="deny")
    assert records(host, subject="intruder", path="grant_copy", decision="deny")


def test_without_a_policy_ping_and_pong_cannot_connect():
    host, doms, outcome = run_three(None)
    try:
        ping, pong, intruder = doms
        assert outcome != "timeout", story(*doms)
        for dom in doms:
            assert dom.shutdown_reason == "poweroff", story(*doms)
        assert "ping: no connection to pong: EVTCHNOP_alloc_unbound: -13 EACCES" \
            in ping.dmesg_text, story(ping)
        assert "pong: no connection to ping:" in pong.dmesg_text, story(pong)
        assert "round trips" not in ping.dmesg_text
        assert all(rec["decision"] == "deny" and rec["rule"] == "no policy"
                   for rec in host.machine.audit_log)
    finally:
        host.close()
