"""The simulator's encoders run the shipped encoder loop's decisions (``verifier.PollSchedule``).

``tests/verifier/test_polling.py`` tests the decisions on their own; these check that the
SimPy driver performs them: every poll is one the schedule asked for, a job given up on waits
out its cool-down, an attempt given up on a tier's trouble is followed by the back-off, a 429's
``Retry-After`` (a poll's, or a tier's during an attempt) holds the next poll, and a restarted
process starts a new schedule.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conformance.families import FAMILIES
from conformance.worlds import BASE, World, race
from verifier import MAX_RETRY_AFTER_S, IdleUntil, LoopPolicy, PollSchedule, PollSource


class Recording(PollSchedule):
    """The shipped schedule, noting what it decided and was told, per instance."""

    made: list[Recording] = []

    def __init__(self, policy: LoopPolicy, rng: Any) -> None:
        super().__init__(policy, rng)
        self.steps: list[tuple[float, Any]] = []
        self.ends: list[tuple[float, str, bool, str]] = []
        #: (now, Retry-After) told by a failed poll, and by a job's end.
        self.poll_hints: list[tuple[float, float | None]] = []
        self.end_hints: list[tuple[float, float | None]] = []
        Recording.made.append(self)

    def poll_failed(self, source: str, now: float, *, retry_after: float | None = None) -> None:
        self.poll_hints.append((now, retry_after))
        super().poll_failed(source, now, retry_after=retry_after)

    def next(self, now: float) -> Any:
        step = super().next(now)
        self.steps.append((now, step))
        return step

    def ended(self, job_id: str, now: float, *, processed: bool, code: str,
              retry_after: float | None = None) -> None:
        self.ends.append((now, job_id, processed, code))
        self.end_hints.append((now, retry_after))
        super().ended(job_id, now, processed=processed, code=code, retry_after=retry_after)


def recorded(world: World) -> tuple[Any, list[Recording]]:
    Recording.made = []
    run = race(world, "hardened", schedule=Recording)
    return run, list(Recording.made)


def test_every_poll_of_the_gateway_is_one_the_schedule_asked_for() -> None:
    world = World(BASE.replace(encoders=2, jobs=3), seed=4)
    run, schedules = recorded(world)
    polls = sum(isinstance(step, PollSource) for s in schedules for _, step in s.steps)
    assert polls > 0
    # gw_poll is the only gateway call besides the protocol's own (claims, reads, pings,
    # finishes: each recorded with an invoke); the world counts them all.
    protocol_calls = sum(1 for r in run.result.history
                         if r[4] == "invoke" and r[5] == "gateway")
    assert run.result.calls["gateway"] == polls + protocol_calls
    assert all(run.checks[p].ok for p in ("S1", "S2", "S3", "L1"))


def test_a_job_given_up_on_is_not_tried_again_before_its_cool_down_ends() -> None:
    sc = BASE.replace(**{**FAMILIES["cool-down"]})
    for seed in range(40):
        run, schedules = recorded(World(sc, seed=seed, family="cool-down"))
        starts = [(r[0], r[1]) for r in run.result.history
                  if r[3] == "claim" and r[4] == "invoke"]
        gave_up = [(t, job) for s in schedules for t, job, done, _ in s.ends if not done]
        if not gave_up:
            continue
        # One encoder: its next claim of the job comes a cool-down (120 s, on its clock, so at
        # least 120 / (1 + ε/T) s of simulated time) after it gave the job up.
        t, _ = gave_up[0]
        later = [c for c, _ in starts if c > t]
        assert later and later[0] >= t + 120.0 / (1 + sc.clock_drift / sc.reassign_timeout)
        assert run.checks["L1"].ok
        return
    raise AssertionError("no world gave a job up: the test reaches nothing")


def test_an_attempt_given_up_on_a_tiers_trouble_is_followed_by_the_back_off() -> None:
    sc = BASE.replace(**FAMILIES["back-off-cap"])
    troubled = 0
    for seed in range(10):
        _, schedules = recorded(World(sc, seed=seed, family="back-off-cap"))
        for schedule in schedules:
            for t, _, _, code in schedule.ends:
                if code not in ("VERIFICATION_FAILED", "PRE_CLAIM_FAILED", "UNCONFIRMED",
                                "CLAIM_UNKNOWN", "LEASE_EXPIRED", "FINISH_UNKNOWN"):
                    continue
                troubled += 1
                after = [step for now, step in schedule.steps if now >= t]
                assert after and isinstance(after[0], IdleUntil), (seed, code, after[:1])
                assert after[0].until > t
    assert troubled > 0


def test_a_restarted_process_starts_a_new_schedule() -> None:
    sc = BASE.replace(**FAMILIES["crash-liveness"])
    for seed in range(20):
        run, schedules = recorded(World(sc, seed=seed, family="crash-liveness"))
        crashes = sum(1 for r in run.result.history if r[3] == "crash")
        if crashes:
            assert len(schedules) == sc.encoders + crashes
            return
    raise AssertionError("no world crashed: the test reaches nothing")


def _next_poll(schedule: Recording, after: float) -> float | None:
    return next((now for now, step in schedule.steps
                 if now > after and isinstance(step, PollSource)), None)


def test_a_rate_limited_poll_holds_its_source_for_the_retry_after() -> None:
    """The throttle-short family: 30% of the requests to the gateway and the monitor answered
    429 until the faults stop, with Retry-After up to 5 s. Each 429 to a poll is reported to
    the schedule with its hint (never more than the world's bound), and the encoder's next
    poll comes no sooner than the hint says, on its own clock."""
    sc = BASE.replace(**FAMILIES["throttle-short"])
    told = 0
    for seed in range(6):
        run, schedules = recorded(World(sc, seed=seed, family="throttle-short"))
        assert all(run.checks[p].ok for p in ("S1", "S2", "S3", "L1")), seed
        for schedule in schedules:
            for t, hint in schedule.poll_hints:
                assert hint is not None and 0 <= hint <= sc.retry_after_max
                told += 1
                later = _next_poll(schedule, t)
                if later is not None:
                    assert later >= t + hint - 1e-9, (seed, t, hint, later)
    assert told > 0, "no poll was rate limited: the test reaches nothing"


def test_a_retry_after_a_tier_gave_during_an_attempt_holds_the_next_poll() -> None:
    """A read or a write answered 429 during an attempt: the protocol keeps the latest hint
    (``Outcome.retry_until``), the driver hands what is left of it to the schedule when the
    attempt ends, and the next poll waits for it (at most ``MAX_RETRY_AFTER_S``)."""
    sc = BASE.replace(**FAMILIES["throttle-short"])
    held, codes = 0, set()
    for seed in range(12):
        _, schedules = recorded(World(sc, seed=seed, family="throttle-short"))
        for schedule in schedules:
            for t, left in schedule.end_hints:
                if left is None:
                    continue
                assert 0 < left <= sc.retry_after_max + 1e-9
                held += 1
                codes.add(next(code for t_end, _, _, code in schedule.ends if t_end == t))
                later = _next_poll(schedule, t)
                if later is not None:
                    assert later >= t + min(left, MAX_RETRY_AFTER_S) - 1e-9, (seed, t, left)
    assert held > 0, "no attempt ended under a Retry-After: the test reaches nothing"
    # Held after more than one kind of ending (the 429s come all through the faults).
    assert len(codes) >= 2, codes


# ---- several slots (``concurrency``): each attempt in a process of its own, one node's body


SLOTS = BASE.replace(**FAMILIES["slots"])


def _most_at_once(history: Any) -> int:
    working: set[tuple[str, str]] = set()
    most = 0
    for _, process, job, op, phase, _ in history:
        if op == "crash":
            working = {w for w in working if w[0] != process}
        elif op == "start" and phase == "ok":
            working.add((process, job))
            most = max(most, sum(1 for w in working if w[0] == process))
        elif op == "stop" and phase == "ok":
            working.discard((process, job))
    return most


def _started_again(run: Any) -> list[str]:
    """S2's examples of a node starting a job it was still working on (two slots at once)."""
    return [e for e in run.checks["S2"].examples if "started it again" in e]


@pytest.mark.parametrize("concurrency", [2, 3])
def test_slots_run_attempts_at_once_and_never_one_job_twice(concurrency: int) -> None:
    """Two slots, the smallest number that takes the slots' own processes (with the family's
    three only, a driver that ran two slots one after the other passed: session 43), and
    three."""
    # myJob offers a node the jobs it holds, too.
    sc = SLOTS.replace(held_reoffer_rate=1.0, concurrency=concurrency)
    most = 0
    for seed in range(6):
        run = race(World(sc, seed=seed, family="slots"), "hardened")
        assert all(run.checks[p].ok for p in ("S1", "S2", "S3", "L1")), seed
        most = max(most, _most_at_once(run.result.history))
    assert most == sc.concurrency


def test_the_schedule_alone_keeps_a_node_from_running_one_job_twice() -> None:
    """The documented chain's claims are never refused, so only the loop's schedule (a job
    running here is not chosen again) keeps a node's free slot off a job another slot runs;
    S2 counts such a start. Without that rule the chain made 21 such starts in 40 `slots`
    worlds (session 31)."""
    sc = SLOTS.replace(held_reoffer_rate=1.0)
    for seed in range(6):
        run = race(World(sc, seed=seed, family="slots"), "documented")
        assert _started_again(run) == [], (seed, _started_again(run))


def test_a_pause_freezes_every_slot_of_the_node() -> None:
    """A pause taken by any process of a node (an attempt at an await point, the loop) stops
    them all: the node records nothing while it lasts, no request, no start, no stop."""
    paused = 0
    for seed in range(8):
        history = race(World(SLOTS, seed=seed, family="slots"), "hardened").result.history
        pauses = [(r[0], r[0] + r[5], r[1]) for r in history
                  if r[3] == "pause" and r[4] == "invoke"]
        for start, end, node in pauses:
            inside = [r for r in history if r[1] == node and start < r[0] < end - 1e-9
                      and r[3] != "pause"]
            assert inside == [], (seed, start, end, inside[:3])
            paused += 1
    assert paused > 0


def test_a_crash_ends_every_slot_of_the_node() -> None:
    """A crash kills every attempt of the node: nothing of it is recorded until it is back
    (restart_delay later), and each job it worked on is stopped by the crash."""
    crashed = 0
    for seed in range(10):
        history = race(World(SLOTS, seed=seed, family="slots"), "hardened").result.history
        for t, node in [(r[0], r[1]) for r in history if r[3] == "crash"]:
            after = [r for r in history if r[1] == node and t < r[0] < t + SLOTS.restart_delay]
            assert after == [], (seed, t, after[:3])
            crashed += 1
    assert crashed > 0


# ---- found by an adversarial review of the slots (session 30); each failed before its fix


def test_a_wait_ending_as_another_slots_pause_begins_is_not_stretched_by_it() -> None:
    """Two slots cancel at once; one stops exactly C later and pauses at its await point then
    (exactly C after the last pause): the other's wind-down, due at that very instant, was
    stretched by the whole pause, and the lease failed (96 of 100 seeds)."""
    sc = BASE.replace(**{**FAMILIES["lease"], "concurrency": 2, "jobs": 4})
    for seed in range(8):
        run = race(World(sc, seed=seed, family="lease"), "hardened")
        assert all(run.checks[p].ok for p in ("S1", "S2", "S3", "lease")), (seed, run.explain(
            "lease"))


def _pauses(history: Any) -> dict[str, list[tuple[float, float]]]:
    pauses: dict[str, list[tuple[float, float]]] = {}
    for r in history:
        if r[3] == "pause" and r[4] == "invoke":
            pauses.setdefault(r[1], []).append((r[0], r[0] + r[5]))
    return pauses


def test_no_pause_starts_on_top_of_another_or_within_c_of_its_end() -> None:
    """Without split pauses, a node's pauses are C apart at least: two slots took a pause at
    the same instant (a freeze of P counted twice), or one at the very end of another (2P in a
    row), where the model allows P in any window of P + C."""
    pairs = 0
    late = BASE.replace(**{**FAMILIES["late-finish-P"], "concurrency": 2})
    # Before the fix: slots seed 3 (two pauses at 0.022), late-finish-P seeds 30, 70 and 92.
    for sc, family, seeds in ((SLOTS.replace(concurrency=2), "slots", range(6)),
                              (late, "late-finish-P", (30, 70, 92))):
        assert sc.pause_split_rate == 0
        for seed in seeds:
            history = race(World(sc, seed=seed, family=family), "hardened").result.history
            for node, spans in _pauses(history).items():
                for (_, end), (start, _) in itertools.pairwise(spans):
                    # (a pause's record rounds its length to the millisecond)
                    assert start >= end + sc.cancel_latency - 1e-3, (family, seed, node, start)
                    pairs += 1
    assert pairs > 0


def test_work_that_ended_before_a_pause_is_not_recorded_inside_it() -> None:
    """A report or the work's end already due when a pause began happened before it: moved by
    the pause, the work's end was recorded inside it (34 of 100 late-finish-P worlds, with one
    slot)."""
    sc = BASE.replace(**FAMILIES["late-finish-P"])
    seen = 0
    for seed in range(30):
        history = race(World(sc, seed=seed, family="late-finish-P"), "hardened").result.history
        spans = _pauses(history)
        for r in history:
            if r[3] == "stop" and r[4] == "ok":
                for start, end in spans.get(r[1], ()):
                    assert not start < r[0] < end - 1e-3, (seed, r, start, end)
                seen += 1
    assert seen > 0


def test_a_wait_woken_short_of_its_end_waits_on() -> None:
    """A wait woken at a pause instant that had moved meanwhile (here the float clock landing
    a step short of it) returned early: a node shut down for a 30 s restart acted 22 s later
    (a world the general generator drew)."""
    kw = {"encoders": 3, "lie_rate": 0.5, "late_write_rate": 0.5, "late_finish_rate": 1.0,
          "reply_loss_rate": 0.3, "ping_loss_rate": 1.0, "held_reoffer_rate": 1.0,
          "gateway_outages_per_hour": 6.0, "monitor_lag": 1.0, "monitor_synthetic_rate": 0.3,
          "monitor_error_rate": 0.3, "monitor_outages_per_hour": 6.0, "database_latency": 1.0,
          "late_lost_write_rate": 1.0, "aid_fraction": 0.5, "throttle_rate": 0.3,
          "retry_after_max": 120.0, "crashes_per_hour": 10.0, "shutdowns_per_hour": 120.0,
          "pauses_per_hour": 600.0, "pause_max": 0.5, "edge_rate": 0.5, "recheck_interval": 3.0,
          "status_cache_s": 5.0, "batch_screen": 1.0, "backoff": 1.0, "push_rate": 0.5,
          "push_latency": 0.0}
    sc = BASE.replace(**kw)
    world = World(sc, tape=(0.5264700528008408, 0.3910838939497319, 0.3910838939497319),
                  seed=9)
    history = race(world, "hardened").result.history
    downs = [(r[0], r[1]) for r in history if r[3] in ("shutdown", "crash")]
    assert downs
    for t, node in downs:
        acted = [r for r in history if r[1] == node and t < r[0] < t + sc.restart_delay - 1e-9
                 and r[3] not in ("pause", "crash", "shutdown")]
        assert acted == [], (t, node, acted[:2])


def test_a_shutdown_due_while_the_loop_idles_ends_the_idle_wait(monkeypatch: Any) -> None:
    """As the production loop's idle wait, which a stop ends at once: a shutdown that falls
    due while the encoder idles (here for up to 15 minutes between polls) takes the node
    down then, not when the wait would have ended."""
    import sim._encoder as encoder_module
    from sim import Scenario, run_once

    due: list[float] = []
    original = encoder_module.Encoder._next

    def next_(self: Any, per_hour: float, kind: str, *args: Any, **kwargs: Any) -> float:
        at = original(self, per_hour, kind, *args, **kwargs)
        if kind == "shutdown":
            due.append(at)
        return at

    monkeypatch.setattr(encoder_module.Encoder, "_next", next_)
    # One job every 20 minutes or so, polls up to 15 minutes apart: the encoder mostly idles.
    sc = Scenario(encoders=1, jobs=6, arrival_per_hour=3.0, poll_interval=600.0,
                  shutdowns_per_hour=6.0, faults_until=1e5, download_mean_s=3.0,
                  encode_mean_s=10.0, upload_mean_s=3.0)
    records = list(run_once(sc, "hardened", 3).history)
    # When the encoder was in an attempt: from its first request for a job to the outcome.
    spans, first = [], {}
    for t, node, job, op, _, _ in records:
        if node != "e0" or job is None:
            continue
        first.setdefault(job, t)
        if op == "outcome":
            spans.append((first.pop(job), t))
    downs = [r[0] for r in records if r[3] == "shutdown"]
    idle_due = [d for d in due if d < max(downs, default=0.0)
                and not any(a - 1.0 <= d <= b for a, b in spans)]
    assert idle_due, "no shutdown fell due while the encoder idled: the test reaches nothing"
    for d in idle_due:
        handled = min(t for t in downs if t >= d)
        assert handled - d < 1.0, (d, handled)
