"""All randomness of a run, split from one root seed into named streams.

Why named streams: a change in how one component draws (say, the monitor's lag) must not
reshuffle every other draw of the run, or comparing two chains "in the same world" would
compare different worlds. Each stream is a ``random.Random`` seeded from the root seed and the
stream's name through SHA-512 (``random.Random`` seeds strings that way), so streams are
independent of ``PYTHONHASHSEED``, of dict order and of the wall clock.

The conformance suites replace the root with a Hypothesis-controlled generator
(:meth:`Streams.from_random`): every stream then draws from it, so failing schedules shrink.
"""

from __future__ import annotations

import random

__all__ = ["Streams"]


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

    def stream(self, name: str) -> random.Random:
        if self._shared is not None:
            return self._shared
        rng = self._cache.get(name)
        if rng is None:
            rng = random.Random(f"spk-sim:{self.seed}:{name}")
            self._cache[name] = rng
        return rng
