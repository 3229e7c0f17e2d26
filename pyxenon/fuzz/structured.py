"""Structured operations decoded from a coverage-guided engine's bytes.

FuzzedRandom gives the family generators, the recipes and the value
makers (values.py) the face of a random.Random whose every decision is
read from the engine's bytes (atheris's FuzzedDataProvider), so a mutation
of the bytes is a mutation of the decisions: which step, which slot, which
frame pool (own, another domain's, page tables, Xen's pages, free), which
grant reference or port (owned or not), which structure field.  Decoder
turns them into ops, one step at a time, each step looking at the world
the previous ones left (as a guest reads its results):

    call      a hypercall of any family (families/), arguments from the pools
    store     a guest memory write into a frame (refused unless the guest
              could write it: its own plain page, e.g. its grant table)
    type      a type change: pin or unpin at any level, a new base pointer
    recipe    a short sequence toward a deep state (recipes.py): a grant
              entry written and mapped, a port pair joined, a new L1...
    destroy   the toolstack destroys a slot's domain (it is created again)
    run       the guests run scheduler rounds (the engine path)
    touch     the guest accesses an address (what the TLB keeps)

The ops are the random campaign's own (ops.py), so a finding is saved and
replayed with or without the engine.
"""
import struct

from pyxenon.public import xen

from .families import GENERATORS, UNKNOWN_WEIGHT, gen_unknown
from .ops import destroy_op, run_op, store_op, touch_op
from .recipes import RECIPES
from .values import Maker
from .world import SLOTS

MAX_STEPS = 200       # steps per input: a fresh world costs about as much as 30 steps


class FuzzedRandom:
    """random.Random's methods the fuzzer uses, read from a provider with
    atheris.FuzzedDataProvider's interface."""

    def __init__(self, provider):
        self.provider = provider

    def exhausted(self):
        return self.provider.remaining_bytes() == 0

    def random(self):
        return self.provider.ConsumeIntInRange(0, 0xFFFF) / 0x10000

    def randrange(self, start, stop=None):
        if stop is None:
            start, stop = 0, start
        if stop <= start:
            raise ValueError(f"empty range for randrange({start}, {stop})")
        return self.provider.ConsumeIntInRange(start, stop - 1)

    def choice(self, seq):
        return seq[self.randrange(len(seq))]

    def getrandbits(self, k):
        return self.provider.ConsumeUInt((k + 7) // 8) & ((1 << k) - 1)

    def choices(self, population, weights):
        """One element, weighted (random.choices with k=1)."""
        pick = self.randrange(sum(weights))
        for item, weight in zip(population, weights):
            if pick < weight:
                return [item]
            pick -= weight
        return [population[-1]]


TYPE_CMDS = (xen.MMUEXT_PIN_L1_TABLE, xen.MMUEXT_PIN_L2_TABLE, xen.MMUEXT_PIN_L3_TABLE,
             xen.MMUEXT_PIN_L4_TABLE, xen.MMUEXT_UNPIN_TABLE, xen.MMUEXT_NEW_BASEPTR,
             xen.MMUEXT_NEW_USER_BASEPTR)


class Decoder:
    """Ops from a FuzzedRandom, until its bytes or MAX_STEPS run out."""

    def __init__(self, rng, world):
        self.rng = rng
        self.world = world
        self.maker = Maker(rng, world)
        self.nrs = list(GENERATORS) + [None]
        self.weights = [GENERATORS[n][0] for n in self.nrs[:-1]] + [UNKNOWN_WEIGHT]

    def ops(self, steps=MAX_STEPS):
        for _ in range(steps):
            if self.rng.exhausted():
                return
            step = self.rng.choices(STEP_NAMES, STEP_WEIGHTS)[0]
            slot = self.rng.randrange(len(SLOTS))
            if self.world.domain(slot) is not None or step in ("destroy", "run"):
                yield from STEPS[step](self, slot)

    def call(self, slot):
        nr = self.rng.choices(self.nrs, self.weights)[0]
        generator = gen_unknown if nr is None else GENERATORS[nr][1]
        yield generator(self.maker, self.world.domain(slot), slot)

    def store(self, slot):
        """A write by the guest: a PTE-like word, or bytes, into a frame
        from the pools (its grant table's entries among them)."""
        m, dom = self.maker, self.world.domain(slot)
        if m.chance(0.3):
            frame, offset = dom.grant_table.first_mfn, m.ref(dom) % 512 * 8
        else:
            frame, offset = m.mfn(dom), m.rng.randrange(512) * 8
        data = struct.pack("<Q", m.pte(dom) & (1 << 64) - 1) if m.chance(0.6) else \
            m.random_bytes(m.rng.choice((1, 8, 16, 64)))
        yield store_op(slot, frame, offset, data)

    def type_change(self, slot):
        m, dom = self.maker, self.world.domain(slot)
        ext = struct.pack("<IxxxxQQ", m.rng.choice(TYPE_CMDS), m.mfn(dom) & (1 << 64) - 1, 0)
        yield m.buffer_call(dom, slot, xen.HYPERVISOR_mmuext_op, (), data=ext,
                            tail=(1, 0, xen.DOMID_SELF))

    def recipe(self, slot):
        yield from self.rng.choice(RECIPES)(self.maker, slot)

    def destroy(self, slot):
        yield destroy_op(slot)

    def run(self, slot):
        yield run_op(self.rng.randrange(1, 4))

    def touch(self, slot):
        m = self.maker
        yield touch_op(slot, m.va(self.world.domain(slot)), m.chance(0.5))


STEPS = {"call": Decoder.call, "store": Decoder.store, "type": Decoder.type_change,
         "recipe": Decoder.recipe, "destroy": Decoder.destroy, "run": Decoder.run,
         "touch": Decoder.touch}
STEP_NAMES = tuple(STEPS)
STEP_WEIGHTS = (48, 6, 6, 8, 1, 1, 3)
