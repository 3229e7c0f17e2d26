"""The scheduler's run queue and deadline heap (_core/runq.c) against the
plain model they replace -- a walk of every vcpu in creation order -- and
the property they exist for: a vcpu that cannot run costs the scheduler
nothing (Xen's credit scheduler never looks at a blocked vcpu), so idle
domains beside a ping-pong do not change what a round trip asks of it."""
import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from pyxenon._core import ffi, lib
from pyxenon.hypervisor.machine import Machine
from pyxenon.toolstack.host import Host

POLICY = str(pathlib.Path(__file__).resolve().parent.parent / "examples/policies/ping-pong.toml")


class Model:
    """Raw C vcpus on a machine, and what a walk of all of them answers."""

    def __init__(self):
        self.machine = Machine(memory_mib=16)
        self.m = self.machine.core
        self.vcpus = []          # creation order
        self.handle = 0

    def add(self):
        v = lib.xc_vcpu_new(self.m, 1, 0, self.handle)
        assert v != ffi.NULL
        self.handle += 1
        self.vcpus.append(v)

    def free(self, i):
        lib.xc_vcpu_free(self.m, self.vcpus.pop(i))

    def set(self, i, **fields):
        v = self.vcpus[i]
        for name, value in fields.items():
            setattr(v, name, value)
        lib.xc_sched_update(self.m, v)

    def ready(self):
        return [v.handle for v in self.vcpus if not v.blocked and v.domain_running]

    def deadline(self, v):
        ends = [v.timer_at] if v.timer_at else []
        if v.blocked and v.domain_running and v.wake_at:
            ends.append(v.wake_at)
        return min(ends) if ends else 0

    def due(self, now):
        return [v.handle for v in self.vcpus if self.deadline(v) and self.deadline(v) <= now]

    def next_wake(self):
        ends = [self.deadline(v) for v in self.vcpus if v.domain_running and self.deadline(v)]
        return min(ends) if ends else 0

    def next_after(self, i):
        """Round robin: the first vcpu after i that can run, wrapping round to i."""
        n = len(self.vcpus)
        for k in range(1, n + 1):
            v = self.vcpus[(i + k) % n]
            if not v.blocked and v.domain_running:
                return v.handle
        return None


def c_list(fn, *args):
    out = ffi.new("uint32_t[]", 512)
    n = fn(*args, out, 512)
    return list(out[0:n])


OPS = st.one_of(
    st.tuples(st.just("add")),
    st.tuples(st.just("free"), st.integers(0, 999)),
    st.tuples(st.just("set"), st.integers(0, 999), st.sampled_from(["blocked", "domain_running"]),
              st.integers(0, 1)),
    st.tuples(st.just("set"), st.integers(0, 999), st.sampled_from(["wake_at", "timer_at"]),
              st.sampled_from([0, 5, 10, 20, (1 << 64) - 1])),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=300))
def test_run_queue_and_heap_answer_as_a_walk_of_every_vcpu(ops):
    model = Model()
    for _ in range(3):
        model.add()
    for op in ops:
        if op[0] == "add":
            model.add()
        elif not model.vcpus:
            continue
        elif op[0] == "free":
            model.free(op[1] % len(model.vcpus))
        else:
            model.set(op[1] % len(model.vcpus), **{op[2]: op[3]})
        assert c_list(lib.xc_ready, model.m) == model.ready()
        for now in (0, 5, 15, (1 << 64) - 1):
            assert bool(lib.xc_due(model.m, now)) == bool(model.due(now))
            assert c_list(lib.xc_due_list, model.m, now) == model.due(now)
        assert lib.xc_next_wake(model.m) == model.next_wake()
        for i, v in enumerate(model.vcpus):
            n = lib.xc_runq_next(model.m, v)
            assert (None if n == ffi.NULL else n.handle) == model.next_after(i)


def test_slots_are_reused_after_frees():
    """Creating and destroying vcpus for ever keeps the table at most twice
    the live vcpus (the host never grows without bound)."""
    model = Model()
    for _ in range(5000):
        model.add()
        model.set(len(model.vcpus) - 1, domain_running=1)
        if len(model.vcpus) > 10:
            model.free(0)
    assert model.m.slot_cap <= 64
    assert c_list(lib.xc_ready, model.m) == model.ready()


def pingpong_visits(rounds, idle):
    """The scheduler's visits of vcpus in a deterministic ping-pong of
    rounds round trips, beside idle domains that block at once."""
    guests = pathlib.Path(__file__).resolve().parent.parent / "guests"
    with Host(memory_mib=160 + 20 * idle, policy=POLICY, deterministic=True,
              audit=lambda record: None) as host:
        ping = host.create(str(guests / "ping.cfg"),
                           overrides=[f'extra="peer=pong peer-domid=2 rounds={rounds}"'])
        pong = host.create(str(guests / "pong.cfg"))
        for i in range(idle):
            host.create(str(guests / "nullcall.cfg"), overrides=[f'name="idle{i}"', 'cmdline="idle=1"'])
        host.run(timeout=120)
        assert ping.shutdown_reason == pong.shutdown_reason == "poweroff", ping.dmesg_text
        return host.machine.core.sched_visits, host.machine.core.slices


@pytest.mark.parametrize("few, many", [(0, 40), (70, 140)])
def test_idle_domains_cost_a_round_trip_nothing(few, many):
    """100 rounds more cost the same scheduler visits and slices beside many
    idle domains as beside few.  (The run queue's summary word is read once
    its table spans two words, past 64 vcpus: so 0 and 40 idle domains
    compare, and 70 and 140; the next step is at 4096 vcpus.)"""
    runs = {n: [pingpong_visits(r, n) for r in (100, 200)] for n in (few, many)}
    per_100 = {n: tuple(b - a for a, b in zip(*runs[n])) for n in runs}
    assert per_100[few] == per_100[many]
    assert per_100[few][1] > 0
