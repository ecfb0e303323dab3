"""The cost features in the simulator: each switch changes what the SimPy driver does, the
same seed replays, and what a feature must never do is visible in the history."""

from __future__ import annotations

import pytest

from sim import History, Scenario, check_claim_evidence, check_fresh_reads, run_once

SMALL = Scenario(encoders=6, jobs=30, lie_rate=0.2, download_mean_s=5, encode_mean_s=40,
                 upload_mean_s=5)
ALL_ON = {"status_cache_s": 30.0, "batch_screen": 1.0, "backoff": 1.0, "push_rate": 1.0}


def _ops(result, op: str, phase: str) -> int:
    return sum(1 for r in result.history.records if r[3] == op and r[4] == phase)


def test_every_feature_off_is_the_default_and_draws_nothing_new():
    sc = Scenario()
    assert (sc.status_cache_s, sc.batch_screen, sc.backoff, sc.push_rate) == (0, 0, 0, 0)
    plain = run_once(SMALL, "hardened", 3)
    assert _ops(plain, "cached", "ok") == 0 and _ops(plain, "screen", "invoke") == 0


def test_the_same_seed_with_every_feature_on_replays_exactly():
    sc = SMALL.replace(**ALL_ON)
    first, second = run_once(sc, "hardened", 5), run_once(sc, "hardened", 5)
    assert first.history.records == second.history.records
    assert _ops(first, "cached", "ok") > 0 and _ops(first, "screen", "ok") > 0


def test_screened_answers_replace_pre_claim_reads_and_never_a_deciding_one():
    sc = SMALL.replace(status_cache_s=30.0, batch_screen=1.0, infra_fraction=0.0)
    result = run_once(sc, "hardened", 7)
    cached = [r for r in result.history.records if r[3] == "cached"]
    assert cached and {r[5][-1] for r in cached} == {"pre-claim"}
    assert check_fresh_reads(result.history).ok
    assert check_claim_evidence(result.history).ok
    for name in ("S1", "S2", "S3"):
        assert result.checks[name].ok


def test_the_simulated_encoder_keeps_a_read_s_answer_and_forgets_it_on_its_own_writes():
    """The simulator's half of the guard's cache rules (mutation testing, session 41: a
    driver that kept no read's answer, or whose finish forgot nothing, passed every suite):
    a monitor read's answer is kept for the pre-claim checks to come; a claim, a finish and a
    release change what the tiers say, so each forgets it; a ping does not."""
    from verifier import Tier
    from verifier.protocol import Claim, Finish, Heartbeat, Observe, Release

    sc = SMALL.replace(status_cache_s=30.0, batch_screen=1.0, infra_fraction=0.0, encoders=1,
                       jobs=1, max_time=30.0)
    seen: list[tuple[str, bool]] = []

    def probe(env, world, encoders, history):
        encoder = encoders[0]
        read = Observe(tier=Tier.MONITOR, purpose="pre-claim", max_age=30.0)
        writes = [("ping", Heartbeat(Tier.GATEWAY, None)), ("claim", Claim(Tier.GATEWAY)),
                  ("finish", Finish(Tier.GATEWAY, None)),
                  ("release", Release(Tier.GATEWAY, None, "test"))]

        world.add_job("other", queued=False)  # a job of the test's own, offered to nobody

        def steps():
            for name, write in writes:
                yield from encoder._io("other", read)
                seen.append(("read", encoder._cached("other", read) is not None))
                yield from encoder._io("other", write)
                seen.append((name, encoder._cached("other", read) is not None))

        env.process(steps())

    run_once(sc, "hardened", 1, on_start=probe)
    assert seen == [("read", True), ("ping", True), ("read", True), ("claim", False),
                    ("read", True), ("finish", False), ("read", True), ("release", False)]


def test_the_simulated_encoder_outdates_its_cached_answers_when_the_monitor_fails():
    """The simulator's half of ``StatusCache.failed`` (found live, session 15: an answer from
    before a monitor outage let a pre-claim check pass in it). The simulated loop screens the
    one offered job right before its attempt, and the claim forgets the entry, so its runs
    never serve an answer across a failure; the driver must still keep the shared rule, as
    the guard does: a failed batch or read outdates the monitor's older answers once its
    failure is known."""
    from verifier import Tier
    from verifier.protocol import Observe, screened

    sc = SMALL.replace(status_cache_s=30.0, batch_screen=1.0, infra_fraction=0.0, encoders=1,
                       jobs=1, max_time=30.0)
    seen: list[tuple[str, bool]] = []

    def probe(env, world, encoders, history):
        encoder = encoders[0]
        cache = encoder.cache
        entry = screened(Tier.MONITOR, ["j"], {"j": "queued"})["j"]
        read = Observe(tier=Tier.MONITOR, purpose="pre-claim", max_age=30.0)

        def steps():
            for failing in ("screen", "read"):
                cache.put(entry, "j", decided=encoder.local())
                seen.append((failing + " before", encoder._cached("j", read) is not None))
                world.monitor_down = [(env.now, env.now + 1.0)]  # the monitor is down now
                if failing == "screen":
                    yield from encoder._screen(["other"])
                else:
                    reading = env.process(encoder._io("other", read))
                    yield env.timeout(0)  # sent, its answer still to come
                    assert not reading.triggered
                    seen.append(("read sent", encoder._cached("j", read) is not None))
                    yield reading
                seen.append((failing + " after", encoder._cached("j", read) is not None))
                world.monitor_down = []
                yield env.timeout(1.0)

        env.process(steps())

    run_once(sc, "hardened", 1, on_start=probe)
    # The failure outdates them when it is known, as the guard marks it, not when the read
    # is sent (adversarial review, session 36: the simulator marked seconds early).
    assert seen == [("screen before", True), ("screen after", False),
                    ("read before", True), ("read sent", True), ("read after", False)]


def test_pushes_find_a_lost_job_sooner_than_polling_in_simulated_time():
    """Outside the model (acknowledged pings dropped), jobs are taken from working encoders;
    with pushes the owner reads at once instead of at its next re-check."""
    from sim.live._features import loss_detections

    sc = SMALL.replace(ping_drop_rate=1.0, infra_fraction=0.0, aid_fraction=0.0,
                       monitor_lag_mean=0.05, reassign_scan_interval=0.0)
    polled = loss_detections(run_once(sc, "hardened", 11).history)
    pushed = loss_detections(run_once(sc.replace(push_rate=1.0, push_latency=0.05),
                                      "hardened", 11).history)
    assert len(polled) >= 5 and len(pushed) >= 5
    assert sorted(pushed)[len(pushed) // 2] * 2 < sorted(polled)[len(polled) // 2]


def _failed_verify_reads(result) -> int:
    """Confirming reads that failed (the verify loop's, where retries happen)."""
    purpose: dict[tuple[str, str], str] = {}
    failed = 0
    for _, process, job, op, phase, value in result.history.records:
        if op != "verify":
            continue
        if phase == "invoke":
            purpose[(process, job)] = value[1]
        elif purpose.pop((process, job), None) == "verify" and phase == "fail":
            failed += 1
    return failed


def test_backoff_spreads_the_verify_retries_of_an_outage():
    sc = SMALL.replace(infra_fraction=0.0, monitor_outages_per_hour=30.0,
                       monitor_outage_mean_s=300.0, monitor_error_rate=0.3)
    fixed = run_once(sc, "hardened", 13)
    spread = run_once(sc.replace(backoff=1.0), "hardened", 13)
    assert _failed_verify_reads(spread) * 1.5 < _failed_verify_reads(fixed), (
        _failed_verify_reads(spread), _failed_verify_reads(fixed))
    for result in (fixed, spread):
        assert all(result.checks[name].ok for name in ("S1", "S2", "S3"))


def _history(*records: tuple) -> History:
    return History((*r, None) if len(r) == 5 else r for r in records)


@pytest.mark.parametrize("end", [(1, "e1", None, "crash", "info"),
                                 (1, "e1", None, "shutdown", "info")], ids=["crash", "restart"])
def test_what_a_process_read_before_it_ended_is_no_evidence_for_its_successor(end: tuple) -> None:
    """Found by a review (2026-12-03): a crash or a restart empties the cache (a new process),
    but both lemmas judged a cached answer or a read from before it as if it were fresh, so a
    driver that kept its cache through a crash passed them (10, 8 and 7 stale answers on three
    seeds of a mutant, none flagged)."""
    read = [(0, "e1", "j", "verify", "invoke", "monitor"),
            (0.1, "e1", "j", "verify", "ok", ("monitor", None, "queued"))]
    stale = _history(*read, end,
                     (60, "e1", "j", "cached", "ok", ("monitor", None, "queued", 0.0,
                                                      "pre-claim")),
                     (60, "e1", "j", "claim", "invoke", "gateway"))
    assert check_fresh_reads(stale).violations == 1
    assert check_claim_evidence(stale).violations == 1
    # The successor reads for itself: evidence again, and a cache entry of its own is fresh.
    fresh = _history(*read, end,
                     (59, "e1", "j", "verify", "invoke", "monitor"),
                     (59.1, "e1", "j", "verify", "ok", ("monitor", None, "queued")),
                     (60, "e1", "j", "cached", "ok", ("monitor", None, "queued", 59.0,
                                                      "pre-claim")),
                     (60, "e1", "j", "claim", "invoke", "gateway"))
    assert check_fresh_reads(fresh).ok and check_claim_evidence(fresh).ok
