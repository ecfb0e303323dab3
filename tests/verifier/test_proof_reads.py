"""Adversarial review, session 45: a community node's first gateway ping must be
proven before the lease runs out whenever the model's consistency checks say it can be.

Both worlds are inside the timing model (``TimingModel.problems()`` empty; every reply within
1.5 x a 0.9 s gateway and a 0.05 s monitor, as ``Scenario.latency_problems`` counts them):
Δ 5, G 2, P 2, ε 1, C 3, T 30 (lease budget 24 s), settle 12 s, proof wait 9 s."""

from __future__ import annotations

import pytest

from conformance.worlds import BASE, World, race
from verifier import Policy, TimingModel
from verifier.protocol import (
    Answer,
    Claim,
    Done,
    Heartbeat,
    Observe,
    OutcomeKind,
    OwnershipProtocol,
    Sleep,
    StartWork,
    Woke,
)

from .test_protocol import COMMUNITY, ME, world

TIGHT = TimingModel(monitor_lag=5, write_delay=2, pause=2, clock_drift=1, recheck_interval=2,
                    cancel_latency=3, reassign_timeout=30, confirm_timeout=0.5,
                    retry_interval=1)


def _drive(timing: TimingModel, *, claim_s: float, ping_s: list[float], read_s: float = 0.05,
           work_s: float = 60.0) -> object:
    """A community node: the claim answered after ``claim_s``, the i-th ping after
    ``ping_s[i]`` (the last repeated), every read after ``read_s``, the rest at once."""
    protocol = OwnershipProtocol("j1", me=ME, policy=Policy.hardened(timing), tiers=COMMUNITY)
    respond = world(work_ends_at=work_s)
    now, pings = 0.0, 0
    step = protocol.start(now)
    for _ in range(5000):
        if isinstance(step.action, Done):
            return protocol.outcome
        answer: Answer = respond(step.action, now)
        if isinstance(step.action, Sleep) and isinstance(answer, Woke):
            now = max(now, step.action.until)
        elif isinstance(step.action, Heartbeat):
            now += ping_s[min(pings, len(ping_s) - 1)]
            pings += 1
        elif isinstance(step.action, Observe):
            now += read_s
        elif isinstance(step.action, Claim):
            now += claim_s
        elif not isinstance(step.action, (StartWork, Sleep)):
            now += 0.1
        step = protocol.handle(answer, now)
    raise AssertionError("protocol did not finish")


@pytest.mark.parametrize("ping_s", [0.96, 0.97, 0.99])
def test_a_re_check_just_before_a_ping_is_provable_does_not_postpone_its_proof(ping_s):
    """R = 2 s, pings answered in ``ping_s``: the first ping (decided at the work's start)
    is provable 9 s later, and the regular re-check comes 0.03 s before that instant. It
    proved nothing, and the next read was put a retry interval (1 s) later, behind the next
    ping, whose reply took the rest of the lease: LEASE_EXPIRED on healthy work, with 1.65 s
    of the lease left at the instant the ping became provable."""
    assert not TIGHT.problems()
    outcome = _drive(TIGHT, claim_s=1.3, ping_s=[ping_s])
    assert outcome.kind is OutcomeKind.PROCESSED, outcome


def test_a_provable_ping_s_read_goes_before_the_next_ping():
    """R = 1 s, pings answered in 0.9 s, the ninth (decided 22.1 s) in 1.2 s. The first
    ping (decided 13.1 s) is provable from 22.1 s, and the lease ends at 24.05 s. The read
    that can prove it is due at 22.1 s, with the ninth ping; the ping went first (the last
    request was a read), its answer came at 23.3 s, the two-request streak then forced a
    wait, and that wait cleared ``pinged_last``: the tenth ping, due again, went before the
    read as well, and the lease ran out while the read that would have proven the first
    ping had been due for 2 s. Session 44's ``read_first`` is undone by its own streak
    wait (and by any report delivered at a wait)."""
    timing = TimingModel(monitor_lag=5, write_delay=2, pause=2, clock_drift=1,
                         recheck_interval=1, cancel_latency=3, reassign_timeout=30,
                         confirm_timeout=0.5, retry_interval=1)
    assert not timing.problems()
    outcome = _drive(timing, claim_s=1.0,
                     ping_s=[0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 1.2])
    assert outcome.kind is OutcomeKind.PROCESSED, outcome


#: Worlds of the fast-poll family drawn by the review's search (one encoder, a community node,
#: the gateway at 0.9 s, the monitor at 0.05 s, R = 2 s or 1 s), each inside the model, where
#: the hardened chain cancelled its own healthy work (LEASE_EXPIRED, "no ping proven since
#: the claim") and L1 failed. Given as their differences from ``BASE``.
_FAST = {"encoders": 1, "late_write_rate": 1.0, "reject_counts_attempt": 0.0,
         "reassign_timeout": 30.0, "reassign_scan_interval": 0.0, "gateway_latency": 0.9,
         "monitor_latency": 0.05, "aid_pending_only": 0.0, "poll_interval": 1.0,
         "download_mean_s": 60.0, "encode_mean_s": 120.0, "edge_rate": 0.9,
         "confirm_timeout": 0.03125, "faults_until": 0.0}


@pytest.mark.parametrize(("changes", "tape", "seed"), [
    # the re-check just before the proof's instant (first test above)
    ({"recheck_interval": 2.0, "gateway_outage_mean_s": 90.0, "await_pause_rate": 0.3},
     (0.5348940886525748,), 5),
    ({"recheck_interval": 2.0, "gateway_outage_mean_s": 90.0, "await_pause_rate": 0.3,
      "database_latency": 1.0},
     (0.8863366716505704, 0.39363458270903534, 5e-324, 0.5339389639552876,
      0.4090347333564924, 0.43683470305749245, 0.8859780218282435, 0.24918145715111398),
     56123),
    # the proof read behind ping after ping (second test above)
    ({"recheck_interval": 1.0, "database_latency": 1.0}, (), 50),
])
def test_the_review_s_fast_poll_worlds_commit_on_time(changes, tape, seed):
    w = World(BASE.replace(**{**_FAST, **changes}), tape, seed, "fast-poll")
    assert w.scenario.inside_model(), w.scenario.outside_model()
    result = race(w, "hardened")
    assert not result.violated("S1", "S2", "S3", "lease", "L1"), result.explain("L1")
    codes = [r[5][0] for r in result.result.history if r[3] == "outcome"]
    assert "LEASE_EXPIRED" not in codes, codes


def test_a_read_due_at_its_ping_s_provable_instant_goes_before_a_ping_due_with_it():
    """The second world with its tenth ping slow (2.5 s): at 22.1 s the read that can prove
    the first ping falls due together with that ping. Sent first, the ping's reply came after
    the lease's end (24.05 s), the proof still unread (LEASE_EXPIRED); the read goes first, at
    its provable instant itself, not only after it (mutation testing, session 45)."""
    timing = TimingModel(monitor_lag=5, write_delay=2, pause=2, clock_drift=1,
                         recheck_interval=1, cancel_latency=3, reassign_timeout=30,
                         confirm_timeout=0.5, retry_interval=1)
    outcome = _drive(timing, claim_s=1.0,
                     ping_s=[0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 2.5, 0.9])
    assert outcome.kind is OutcomeKind.PROCESSED, outcome
