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

Common random numbers. Named streams consumed in call order stop being common as soon as two
chains make different calls: after the first divergent request, the hardened chain and the
documented chain would face different lies. So what the world *offers* every chain (whether
the gateway hands job j's k-th assignment out twice, how long job j's work takes, when encoder
e crashes or pauses, when jobs arrive) is drawn per entity: :meth:`Streams.keyed` gives the
draws of one ``(entity, purpose)`` key, a pure function of ``(root seed, key)``, so every chain
on one seed faces the same offered load and the same offered lies, whatever it asked before.
Per-request noise (latencies, the monitor's lag, lost replies) stays on component streams:
chains that make different requests cannot share it. With a tape (or a shared ``Random``) every
key reads the one shared source, in call order, exactly as before.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["KeyedRandom", "Streams", "TapeRandom"]

_TWO_53: float = 1.0 / 9007199254740992.0


class KeyedRandom(random.Random):
    """A ``random.Random`` whose i-th ``random()`` is a hash of ``(key, i)`` (counter mode).

    Cheap to create (no Mersenne Twister state to seed: a run creates one per job and per
    hand-out), and a pure function of its key: the draws of one entity and purpose, the same in
    every chain. Every distribution the simulator uses is built on ``random()``.
    """

    def __init__(self, key: str) -> None:  # no super().__init__(): nothing to seed
        self._key = key.encode()
        self._i = 0
        self.gauss_next = None

    def seed(self, *args: object, **kwargs: object) -> None:
        """Nothing to seed: the key is the seed."""

    def random(self) -> float:
        i = self._i
        self._i = i + 1
        digest = hashlib.blake2b(self._key + i.to_bytes(4, "little"), digest_size=8).digest()
        return (int.from_bytes(digest, "little") >> 11) * _TWO_53

    def getrandbits(self, k: int) -> int:
        return int(self.random() * (1 << k))


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

    __slots__ = ("_cache", "_counts", "_shared", "seed")

    def __init__(self, seed: int, *, shared: random.Random | None = None) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError("the root seed must be an int")
        self.seed = seed
        self._shared = shared
        self._cache: dict[str, random.Random] = {}
        self._counts: dict[tuple[object, ...], int] = {}

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

    def keyed(self, *key: object) -> random.Random:
        """The draws of one entity for one purpose (``keyed("work", job_id)``): a fresh
        :class:`KeyedRandom` of ``(root seed, key)``, the same numbers in every chain and
        whatever was drawn before; with a tape or a shared ``Random``, that shared source."""
        if self._shared is not None:
            return self._shared
        return KeyedRandom(f"spk-crn:{self.seed}:" + ":".join(str(k) for k in key))

    def next_keyed(self, *key: object) -> random.Random:
        """:meth:`keyed` with the number of earlier calls for ``key`` appended: the n-th
        attempt at job j draws ``keyed("work", j, n)``, whoever makes it, in every chain."""
        if self._shared is not None:
            return self._shared
        n = self._counts[key] = self._counts.get(key, 0) + 1
        return self.keyed(*key, n)

    def count(self, *key: object) -> int:
        """How many times :meth:`next_keyed` was called for ``key`` (0 with a tape): the
        attempt number of the latest ``next_keyed("work", j)``, to key that attempt's other
        draws (its stalls) by it."""
        return self._counts.get(key, 0)
