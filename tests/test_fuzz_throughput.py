"""What the fuzzer's speed-ups must keep: World.reset (the coverage-guided
target's reuse of its world between inputs) gives the world a fresh World
has (the same domains, frames, memory and store, and the same results for
the same ops), and the oracle's column scan still finds every grant PTE."""
import hashlib
import random

import pytest

from pyxenon._core import ffi
from pyxenon.fuzz import session as fuzz_session
from pyxenon.fuzz.world import CORE_COUNTERS
from pyxenon.hypervisor.machine import EXTRA_FRAMES

atheris = pytest.importorskip("atheris")

from pyxenon.fuzz.structured import Decoder, FuzzedRandom  # noqa: E402 (needs atheris's provider)
from pyxenon.fuzz.targets import HypercallTarget  # noqa: E402

ROW_BYTES = 20      # struct page_info


def fingerprint(world):
    """What an op can see of a world, as one digest and the parts named."""
    machine = world.machine
    digest = hashlib.sha256()
    for dom in world.slots:
        first, total = dom.first_mfn, dom.nr_pages + EXTRA_FRAMES
        digest.update(machine.mem[first * 4096:(first + total) * 4096])
        digest.update(ffi.buffer(machine.m2p + first, total * 8))
        digest.update(ffi.buffer(machine.core.frames + first, total * ROW_BYTES))
    digest.update(ffi.buffer(machine.core.frames, machine.nr_frames * ROW_BYTES))
    store = sorted((path, node.value, node.perms, node.children)
                   for path, node in world.host.xenstore.tree.nodes.items())
    return {"memory": digest.hexdigest(), "store": store,
            "domains": [(d.domid, d.name, d.first_mfn, d.nr_pages) for d in world.slots],
            "live": sorted(world.machine.domains), "now": machine.scheduler.now(),
            "core": {name: getattr(machine.core, name) for name in CORE_COUNTERS},
            "free": list(machine.free_ranges), "next_domid": machine.next_domid}


def inputs(count, size=1500):
    rng = random.Random(18)
    return [rng.randbytes(size) for _ in range(count)]


def run_input(session, data):
    """The ops the bytes decode to on this world, with each one's outcome."""
    provider = atheris.FuzzedDataProvider(data)
    out = []
    for op in Decoder(FuzzedRandom(provider), session.world).ops():
        result, problems = session.perform(op)
        out.append((op, result, [p[1] for p in problems]))
    return out


def test_a_reset_world_is_a_fresh_world(guests):
    fresh = fuzz_session.Session(guests)
    expected = fingerprint(fresh.world)
    fresh.close()
    reused = fuzz_session.Session(guests)
    try:
        for data in inputs(4):
            assert run_input(reused, data)
            reused.reset()
            assert fingerprint(reused.world) == expected
    finally:
        reused.close()


def test_the_same_bytes_give_the_same_results_on_a_reset_world(guests):
    reused = fuzz_session.Session(guests)
    try:
        for data in inputs(12):
            fresh = fuzz_session.Session(guests)
            try:
                want = run_input(fresh, data)
            finally:
                fresh.close()
            assert run_input(reused, data) == want
            reused.reset()
    finally:
        reused.close()


def test_the_target_keeps_a_clean_world_and_drops_a_broken_one(guests, monkeypatch):
    target = HypercallTarget(guests)
    data = inputs(1)[0]
    target(data, atheris.FuzzedDataProvider(data))
    kept = target.session
    assert kept is not None and not target.reused
    target(data, atheris.FuzzedDataProvider(data))
    assert target.reused and target.session is kept
    # a known problem (not news) still marks the world as not to be reused
    target.seen.add("bad-result:known")
    monkeypatch.setattr(kept, "perform", lambda op: (None, [("bad-result", "bad-result:known", "")]))
    target(data, atheris.FuzzedDataProvider(data))
    assert target.session is None and target.counts["known"] > 0
    target(data, atheris.FuzzedDataProvider(data))
    assert not target.reused and target.session is not kept
    target.session.close()


@pytest.mark.parametrize("index", [0, 1, 300, 511])
def test_a_grant_pte_with_no_mapping_is_found_anywhere_in_an_l1(guests, index):
    from pyxenon.fuzz.oracle import GRANT_PTE

    session = fuzz_session.Session(guests)
    try:
        dom = session.world.slots[0]
        l1 = next(mfn for mfn, level in session.world.tables[dom.domid] if level == 1)
        at = l1 * 4096 + index * 8
        entry = GRANT_PTE | (dom.first_mfn + 5) << 12
        session.world.machine.mem[at:at + 8] = entry.to_bytes(8, "little")
        rules = [rule for rule, _ in session.invariants.check()]
        assert "grant-pte-unknown" in rules, rules
    finally:
        session.close()


def test_a_finding_a_fresh_world_does_not_repeat_is_the_resets(guests, monkeypatch):
    """A new problem on a reset world is replayed on a fresh one; if it is
    not there, the reset leaked state: reported as reset-divergence."""
    from pyxenon.fuzz import targets

    target = HypercallTarget(guests)
    data = inputs(1)[0]
    target(data, atheris.FuzzedDataProvider(data))       # leaves a clean world to reuse
    kept = target.session
    monkeypatch.setattr(kept, "perform", lambda op: (None, [("bad-result", "bad-result:new", "x")]))
    monkeypatch.setattr(targets, "reproduces", lambda *args, **kwargs: False)
    with pytest.raises(targets.FuzzFinding, match="reset-divergence:bad-result:new"):
        target(data, atheris.FuzzedDataProvider(data))
    assert target.session is None
