"""The random campaign's source of ops: mostly single calls from the
family generators, some recipes, now and then a run of the guests."""
from .families import GENERATORS, UNKNOWN_WEIGHT, gen_unknown
from .ops import run_op
from .recipes import LONG_BATCH_CHANCE, RECIPE_CHANCE, RECIPES, recipe_long_batch
from .values import Maker
from .world import SLOTS


RUN_EVERY = 250           # about this many calls between engine runs


class Generator:
    """The campaign's source of ops: mostly single calls, some recipes,
    now and then a run of the guests."""

    def __init__(self, rng, world):
        self.maker = Maker(rng, world)
        self.rng = rng
        nrs = list(GENERATORS) + [None]
        self.nrs = nrs
        self.weights = [GENERATORS[n][0] for n in nrs[:-1]] + [UNKNOWN_WEIGHT]
        self.until_run = rng.randrange(RUN_EVERY)

    def ops(self):
        """Yield ops forever (each is applied before the next is drawn)."""
        while True:
            self.until_run -= 1
            if self.until_run <= 0:
                self.until_run = self.rng.randrange(RUN_EVERY // 2, RUN_EVERY * 3 // 2)
                yield run_op(self.rng.randrange(1, 6))
            slot = self.rng.randrange(len(SLOTS))
            roll = self.rng.random()
            if roll < LONG_BATCH_CHANCE:
                yield from recipe_long_batch(self.maker, slot)
            elif roll < RECIPE_CHANCE:
                yield from self.rng.choice(RECIPES)(self.maker, slot)
            else:
                yield self.one_call(slot)

    def one_call(self, slot):
        dom = self.maker.world.domain(slot)
        nr = self.rng.choices(self.nrs, self.weights)[0]
        generator = gen_unknown if nr is None else GENERATORS[nr][1]
        return generator(self.maker, dom, slot)
