"""All randomness of a run, split from one root seed into named streams.

Why named streams: a change in how one component draws (say, the monitor's lag) must not
reshuffle every other draw of the run, or comparing two chains "in the same world" would
compare different worlds. Each stream is a ``random.Random`` seeded from the root seed and the
stream's name through SHA-512 (``random.Random`` seeds strings that way), so streams are
independent of ``PYTHONHASHSEED``, of dict order and of the wall clock.

The conformance suites replace the root with a Hypothesis-controlled *tape*
(:meth:`Streams.from_tape`): a finite list of numbers in [0, 1) that every stream reads in
turn, then a neutral default. Hypothesis shrinks the tape (shorter, smaller values), so a failing
schedule shrinks to a readable one, and the tape is saved so ``sim replay --tape`` reproduces it.
"""

from __future__ import annotations

import random

__all__ = ["Streams", "TapeRandom"]


class TapeRandom(random.Random):
    """A ``random.Random`` whose ``random()`` reads a finite tape, then continues from ``seed``.

    Every distribution the simulator uses (uniform, expovariate, lognormvariate) is built on
    ``random()``, so the tape drives them all; ``getrandbits`` is derived from it too. After
    the tape, draws come from a generator seeded with ``seed`` (the tape is the part a search
    shrinks; the seed keeps late choices varied), or are ``default`` when ``seed`` is None.
    """

    def __init__(self, tape: list[float], default: float = 0.5, seed: int | None = None) -> None:
        super().__init__(0)
        self._after = None if seed is None else random.Random(f"spk-tape:{seed}")
        for value in tape:
            if not 0.0 <= value < 1.0:
                raise ValueError(f"tape values must be in [0, 1), got {value!r}")
        self.tape = list(tape)
        self.position = 0
        self.default = default

    def random(self) -> float:
        if self.position < len(self.tape):
            value = self.tape[self.position]
            self.position += 1
            return value
        if self._after is not None:
            return self._after.random()
        return self.default

    def getrandbits(self, k: int) -> int:
        return int(self.random() * (1 << k))


class Streams:
    """A factory of named ``random.Random`` streams derived from one root."""

    __slots__ = ("_cache", "_shared", "seed")

    def __init__(self, seed: int, *, shared: random.Random | None = None) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError("the root seed must be an int")
        self.seed = seed
        self._shared = shared
        self._cache: dict[str, random.Random] = {}

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        return cls(seed)

    @classmethod
    def from_random(cls, rng: random.Random) -> Streams:
        """Every stream is ``rng`` itself (for Hypothesis' shrinkable ``st.randoms()``)."""
        return cls(0, shared=rng)

    @classmethod
    def from_tape(cls, tape: list[float], seed: int | None = None) -> Streams:
        """Every stream reads one shared tape (see :class:`TapeRandom`)."""
        return cls(seed or 0, shared=TapeRandom(tape, seed=seed))

    def stream(self, name: str) -> random.Random:
        if self._shared is not None:
            return self._shared
        rng = self._cache.get(name)
        if rng is None:
            rng = random.Random(f"spk-sim:{self.seed}:{name}")
            self._cache[name] = rng
        return rng
