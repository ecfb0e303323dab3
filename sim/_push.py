"""The monitor's push channel, simulated: job changes pushed to the encoders subscribed to them.

The real monitor has no push; ours is an optional extension (``docs/push.md``), emulated over
WebSocket by ``sim live``. Here it is the same contract under simulated time: when a job is
written (assigned, requeued, committed), each encoder subscribed to it gets a
:class:`verifier.protocol.Hinted` after up to ``push_latency`` (exactly that at the edge),
or never (a push is lost with probability ``1 - push_rate``). What the encoder does with it is
the protocol's decision (re-read sooner; never proof). Randomness comes from the run's own
``push`` stream, so runs without pushes draw nothing and keep their sequences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import simpy

from verifier.protocol import Hinted

from ._rng import Streams
from ._scenario import Scenario

__all__ = ["PushChannel"]

Deliver = Callable[[str, Hinted], None]


def _deliver(deliver: Deliver, job_id: str, hint: Hinted, _event: Any) -> None:
    deliver(job_id, hint)


class PushChannel:
    """Subscriptions by job, fed by the world's write hook (``World.watchers``)."""

    def __init__(self, env: simpy.Environment, watchers: list[Callable[[Any], None]],
                 scenario: Scenario, streams: Streams) -> None:
        self.env = env
        self.sc = scenario
        self.rng = streams.stream("push")
        #: job id -> subscriber name -> its delivery callback (names keep the order stable).
        self.subscribers: dict[str, dict[str, Deliver]] = {}
        watchers.append(self._changed)

    def subscribe(self, job_id: str, name: str, deliver: Deliver) -> None:
        self.subscribers.setdefault(job_id, {})[name] = deliver

    def unsubscribe(self, job_id: str, name: str) -> None:
        subs = self.subscribers.get(job_id)
        if subs is not None:
            subs.pop(name, None)
            if not subs:
                del self.subscribers[job_id]

    def _changed(self, job: Any) -> None:
        subs = self.subscribers.get(job.id)
        if not subs:
            return
        sc, rng = self.sc, self.rng
        hint = Hinted(job.owner, job.status)
        for name in sorted(subs):
            if rng.random() >= sc.push_rate:
                continue  # lost: polling must carry on alone
            edge = sc.edge_rate > 0 and rng.random() < sc.edge_rate
            delay = sc.push_latency if edge else rng.random() * sc.push_latency
            self.env.timeout(delay).callbacks.append(
                functools.partial(_deliver, subs[name], job.id, hint))
