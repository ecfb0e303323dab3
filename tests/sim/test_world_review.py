"""An adversarial review of the world against the contract and the live emulator (2026-12-05).

* The monitor asks the legacy gateway before it answers about a held job (the overlay) or a
  job its database view lacks (the stand-in): a silent gateway is waited for, about its
  timeout, and a client whose timeout is shorter gets no answer (docs/contract.md, "Overlay
  wait"). The simulated monitor answered at once; the live emulator waited.
* ``batch-status`` during a gateway outage answers ``{}`` only after asking the gateway five
  ids at a time, each round waiting out its timeout (50 ids took about 100 s). The simulated
  monitor answered ``{}`` at once; the live emulator waited.
* Gateway Aid is served by the monitor's server: a monitor outage takes it down. The world
  kept aid up through monitor outages (and down only through the gateway's).
"""

from __future__ import annotations

from typing import Any

import pytest
import simpy

from sim import History, Scenario, Streams
from sim._world import ANONYMOUS, World
from verifier.protocol import Observed, TierFailed, WriteOutcome

ALICE, BOB = "did:key:alice", "did:key:bob"
ALWAYS: list[tuple[float, float]] = [(0.0, 1e9)]


def _world(**changes: Any) -> World:
    scenario = Scenario(**{
        "monitor_error_rate": 0.0, "monitor_synthetic_rate": 0.0, "lie_rate": 0.0,
        "monitor_lag_mean": 0.0, "monitor_latency": 0.0, "gateway_timeout": 4.0,
        "client_timeout": 10.0, **changes})
    env = simpy.Environment()
    world = World(env, scenario, Streams.from_seed(1), History())
    for job_id in "abcdefghijklm":
        world.add_job(job_id)
    world.db_claim(ALICE, "a", True)
    env.run(until=1.0)
    return world


def test_a_held_job_read_during_a_gateway_outage_waits_for_the_overlay() -> None:
    world = _world()
    world.gateway_down = ALWAYS
    read, delay = world.monitor_read("a")
    assert isinstance(read, Observed) and read.observation.owner == ALICE
    assert delay == pytest.approx(4.0)  # the gateway's timeout, then the stored record
    read, delay = world.monitor_read("b")  # not held: no overlay, no wait
    assert isinstance(read, Observed) and read.observation.status == "queued"
    assert delay == 0.0


def test_the_overlay_wait_outlasting_the_client_is_no_answer() -> None:
    world = _world(gateway_timeout=10.0, client_timeout=5.0)
    world.gateway_down = ALWAYS
    read, delay = world.monitor_read("a")
    assert isinstance(read, TierFailed) and delay == 5.0  # the client gave up first


def test_no_wait_while_the_gateway_answers() -> None:
    world = _world()
    read, delay = world.monitor_read("a")
    assert isinstance(read, Observed) and delay == 0.0


def test_a_job_the_lagging_view_lacks_is_a_500_after_the_wait_when_the_gateway_is_down() -> None:
    # Contract: a job missing from the database with the gateway unreachable is 500, never
    # "not found"; the server asked the (silent) gateway for a stand-in first.
    world = _world(monitor_lag_mean=1e6, monitor_lag=1e6)  # every read lags past creation
    world.gateway_down = ALWAYS
    read, delay = world.monitor_read("b")
    assert isinstance(read, TierFailed) and delay == pytest.approx(4.0)


def test_a_stand_in_during_a_gateway_outage_is_a_500_after_the_wait() -> None:
    world = _world(monitor_synthetic_rate=1.0)
    world.gateway_down = ALWAYS
    read, delay = world.monitor_read("a")
    assert isinstance(read, TierFailed) and delay == pytest.approx(4.0)


@pytest.mark.parametrize(("ids", "rounds"), [(1, 1), (5, 1), (6, 2), (11, 3)])
def test_a_batch_during_a_gateway_outage_waits_five_ids_a_round(ids: int, rounds: int) -> None:
    world = _world(gateway_timeout=3.0)
    world.gateway_down = ALWAYS
    answer, delay = world.monitor_batch(list("abcdefghijklm")[:ids])
    if rounds * 3.0 <= 10.0:
        assert answer == {} and delay == pytest.approx(rounds * 3.0)
    else:
        assert answer is None and delay == 10.0  # the client's timeout came first


def test_a_batch_answers_at_once_while_the_gateway_answers() -> None:
    world = _world(gateway_timeout=3.0)
    answer, delay = world.monitor_batch(["a", "b"])
    assert answer == {"a": "assigned", "b": "queued"} and delay == 0.0


def test_aid_is_down_with_the_monitor_it_is_served_by() -> None:
    world = _world(aid_latency=0.0)
    world.aid_claim(BOB, "b")
    world.monitor_down = ALWAYS
    for answer, _ in (world.aid_claim(BOB, "c"), world.aid_heartbeat(BOB, "b", (5.0, 5.0)),
                      world.aid_finish(BOB, "b")):
        assert answer.outcome is WriteOutcome.UNKNOWN
    assert world.jobs["c"].owner is None and "b" not in world.committed


def test_every_gateway_give_back_counts_an_attempt_and_the_fifth_fails_the_job() -> None:
    """The contract: fail, reject or reassignment sends a job back to the queue with
    ``attempt_count + 1``, and the fifth attempt marks it ``failed``. Until session 32 the
    simulated ``rejectJob`` counted nothing, so a chain's give-backs never brought a job nearer
    the rule. A database release counts only as failed, as ``verifier``'s own does."""
    world = _world()
    job = world.jobs["c"]
    for attempt in range(1, 6):
        world.env.run(until=world.env.now + 10.0)  # past the gateway's double hand-out window
        world.gw_accept(BOB, "c")
        world.env.run(until=world.env.now + 1.0)  # the accept's write lands
        assert job.owner == BOB, attempt
        answer, _ = world.gw_release(BOB, "c", failed=False)
        assert answer.outcome is WriteOutcome.OK
        assert job.attempts == attempt
    assert job.status == "failed"
    world.db_release(ALICE, "a", world.jobs["a"].token, False)
    assert world.jobs["a"].attempts == 0 and world.jobs["a"].status == "queued"


def test_get_job_hands_out_the_oldest_queued_job_a_requeued_one_included() -> None:
    """``getJob`` returns the oldest queued job to every caller (the contract): a job back in
    the queue goes before younger ones, not to the back (a review of the world, session 32)."""
    scenario = Scenario(assignment="getjob", lie_rate=0.0, monitor_error_rate=0.0,
                        monitor_synthetic_rate=0.0)
    env = simpy.Environment()
    world = World(env, scenario, Streams.from_seed(1), History())
    for job_id in ("old", "mid", "new"):
        world.add_job(job_id)
        env.run(until=env.now + 1.0)
    assert world.gw_poll(BOB)[0] == "old"
    world.gw_accept(BOB, "old")
    env.run(until=env.now + 10.0)
    assert world.jobs["old"].owner == BOB and world.gw_poll(ALICE)[0] == "mid"
    world.gw_release(BOB, "old", failed=False)
    assert world.gw_poll(ALICE)[0] == "old"


def _accepted_by_alice(*, lie_rate: float, seed: int) -> World:
    """A ``getJob`` world whose one job ``j`` ALICE polled and accepted, half a second ago:
    her write has landed, and the G window in which a double hand-out's accept may miss it
    is still open."""
    scenario = Scenario(assignment="getjob", lie_rate=lie_rate, write_delay=2.0,
                        late_write_rate=0.0, reply_loss_rate=0.0, monitor_error_rate=0.0,
                        monitor_synthetic_rate=0.0)
    env = simpy.Environment()
    world = World(env, scenario, Streams.from_seed(seed), History())
    world.add_job("j")
    assert world.gw_poll(ALICE)[0] == "j"
    world.gw_accept(ALICE, "j")
    env.run(until=env.now + 0.5)
    assert world.jobs["j"].owner == ALICE
    return world


def test_a_double_hand_out_to_an_anonymous_poller_is_taken_up_by_its_next_accept() -> None:
    """``getJob`` is not signed: the live emulator's poller without ``X-Encoder-DID`` (the
    production gateway client) is "anonymous". The double hand-out it is offered is taken up
    by the next accept of the job from anyone but its owner (judged on a read up to G old);
    it was kept for "anonymous", whose accept never comes, so no such client met the lie (a
    review of the world against the contract, session 32)."""
    world = _accepted_by_alice(lie_rate=1.0, seed=1)
    env = world.env
    assert world.gw_poll(ANONYMOUS)[0] == "j"  # the double hand-out
    answer, _ = world.gw_accept(BOB, "j")  # the anonymous poller's accept, signed as BOB
    assert answer.outcome is WriteOutcome.OK
    # One hand-out, one lie: a third accept is checked against the job as it is (mutation
    # testing of the world, session 35: a lie never used up survived the suites).
    answer, _ = world.gw_accept("did:key:carol", "j")
    assert answer.outcome is not WriteOutcome.OK
    env.run(until=env.now + 3.0)
    assert world.jobs["j"].owner == BOB  # the last writer owns it: a double assignment


def test_without_a_double_hand_out_an_accept_of_a_held_job_is_refused() -> None:
    """The same moment without the lie: nobody was handed the job twice, so another encoder's
    accept inside the G window is checked against the job as it is, and refused (mutation
    testing of the world, session 35: every accept taken for the anonymous poller's lie
    survived the suites, a harsher world than the contract's)."""
    for seed in range(10):
        world = _accepted_by_alice(lie_rate=0.0, seed=seed)
        answer, _ = world.gw_accept(BOB, "j")
        assert answer.outcome is not WriteOutcome.OK, seed
        world.env.run(until=world.env.now + 3.0)
        assert world.jobs["j"].owner == ALICE


def test_gateway_aid_claims_only_its_own_pending_jobs() -> None:
    """The contract's ``claim-job`` matches ``status: pending`` and no ``assigned_to``: the
    gateway's ``queued`` jobs are refused (409). The world claimed any claimable job until
    session 32 (``aid_pending_only`` = 0 keeps that, for the edge families)."""
    for pending_only, claimed in ((1.0, False), (0.0, True)):
        world = _world(aid_pending_only=pending_only)
        answer, _ = world.aid_claim(BOB, "c")  # a queued job of the gateway's
        assert (answer.outcome is WriteOutcome.OK) is claimed, pending_only
    world = _world()  # the contract's rule is the default (mutation testing, session 35)
    assert world.aid_claim(BOB, "c")[0].outcome is not WriteOutcome.OK
    world.jobs["d"].status = "pending"
    assert world.aid_claim(BOB, "d")[0].outcome is WriteOutcome.OK


def test_a_gateway_job_runs_from_its_first_ping_with_progress_above_1() -> None:
    """The contract's lifecycle: ``assigned`` → ``running`` on the first ping with progress
    > 1. The world set ``running`` on the owner's first ping, a download's at 0% included
    (noticed in session 32, fixed in session 34). A database heartbeat still sets it at once,
    as the deployed encoder's "ensure running" does."""
    world = _world(late_write_rate=0.0, ping_loss_rate=0.0, ping_drop_rate=0.0,
                   reply_loss_rate=0.0)
    world.gw_accept(BOB, "c")
    world.env.run(until=world.env.now + 10.0)  # the accept's write lands
    job = world.jobs["c"]
    assert (job.owner, job.status) == (BOB, "assigned")
    for progress, status in (((0.0, 40.0), "assigned"), ((1.0, 100.0), "assigned"),
                             ((1.5, 100.0), "running"), ((3.0, 100.0), "running")):
        world.gw_ping(BOB, "c", progress)
        assert job.status == status, progress
    world.gw_ping(ALICE, "c", (50.0, 100.0))  # not the owner's ping: changes nothing
    assert job.owner == BOB


def test_connections_wait_only_while_the_faults_last_and_at_the_rate_drawn() -> None:
    """``World.connect_delay``: a gateway request waits for its connection with probability
    ``rate`` while the faults last, and never after them (L1 judges a world from when its
    faults stopped), nor at rate 0; at an edge it waits exactly the time left. (Mutation
    testing of the world, session 35: a delay drawn after the faults survived the suites.)"""
    world = _world(faults_until=5.0, connect_delay_max=3.0, edge_rate=0.0)
    assert world.env.now < world.horizon
    during = [world.connect_delay(None, 1.0) for _ in range(50)]
    assert all(0.0 <= d <= 3.0 for d in during) and max(during) > 0.0
    assert {world.connect_delay(None, 0.0) for _ in range(50)} == {0.0}
    edgy = _world(faults_until=5.0, connect_delay_max=3.0, edge_rate=1.0)
    assert edgy.connect_delay(2.5, 1.0) == 2.5
    world.env.run(until=5.0)
    assert {world.connect_delay(None, 1.0) for _ in range(50)} == {0.0}


@pytest.mark.parametrize("scan", [0.0, 0.5], ids=["exact", "scan"])
@pytest.mark.parametrize(("t", "n", "reason"), [(3.0, 30.0, "no ping for T"),
                                                (30.0, 3.0, "no progress for N")])
def test_a_requeue_by_timeout_counts_an_attempt(scan: float, t: float, n: float,
                                                reason: str) -> None:
    """The gateway requeues a job whose owner stopped pinging (T) or whose progress stopped
    (N), and each such requeue is an attempt towards its fifth-attempt rule, whether the
    world arms the timeout per ping or scans for it (mutation testing of the world, session
    35: uncounted timeouts, and a scan that never requeued for progress, survived)."""
    world = _world(reassign_timeout=t, progress_timeout=n, reassign_scan_interval=scan)
    job = world.jobs["a"]
    assert job.owner == ALICE and job.attempts == 0
    world.env.run(until=1.0 + min(t, n) + 1.0)
    requeues = [r[5] for r in world.history.records if r[2] == "a" and r[3] == "requeue"]
    assert requeues == [reason]
    assert job.attempts == 1 and job.status == "queued" and job.owner is None


def test_a_job_is_queued_once_however_often_it_comes_back() -> None:
    """A job sent back to the queue while still in it (a give-back of a job the gateway has
    already requeued) is offered once, not twice (mutation testing of the world, session 35:
    a queue that forgot which jobs it held survived the suites)."""
    world = _world(assignment="getjob")
    before = list(world.queue)
    assert "b" in before
    world._enqueue("b")
    world._enqueue("b")
    assert list(world.queue) == before
