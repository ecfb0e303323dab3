"""The monitor's synthetic stand-in never confirms ownership, whatever fields it carries.

When the job is missing from its database (or the database is down), the real monitor answers
HTTP 200 with a job it builds from the legacy gateway's status answer (``docs/contract.md``,
"Synthetic stand-in jobs"): the gateway's id, status and owner, ``created_at`` = now, blank
video fields, and no ``_id``. Its owner is the gateway's belief, the very lie the verifier is
there to catch, so the client must recognise the stand-in by its fingerprint and the protocol
must never answer "mine" on it. A real record (a MongoDB document, so with ``_id``) still
confirms; a record without ``_id`` fails closed.

The answers go through the production client (respx) and the parsed observation drives the pure
protocol, so the whole path from the body to the decision is under test.
"""

from __future__ import annotations

from typing import Any

import pytest
import respx

from tests.sim.protocols import StandInTrustingProtocol
from verifier import (
    GatewayMonitorService,
    Observation,
    OutcomeKind,
    OwnershipProtocol,
    Policy,
    Tier,
    TierSet,
    TimingModel,
    parse_job,
)
from verifier._models import _MONITOR_TIER
from verifier.protocol import (
    Action,
    Answer,
    CancelWork,
    Claim,
    Done,
    Finish,
    Heartbeat,
    Observe,
    Observed,
    Outcome,
    Release,
    Sleep,
    StartWork,
    Woke,
    WorkEnded,
    WorkStarted,
    WorkStopped,
    WriteAnswered,
    WriteOutcome,
)

from .monitor_support import ABSENT, JOB, ME, OTHER, job_doc, ok

COMMUNITY = TierSet(monitor=True, gateway=True)
HARDENED = Policy.hardened(TimingModel())


def stand_in(**changes: Any) -> dict[str, Any]:
    """The real server's stand-in, field by field, naming us (``field=ABSENT`` drops one)."""
    doc: dict[str, Any] = {
        "id": JOB,
        "status": "assigned",
        "created_at": "2026-05-09T07:35:25.000Z",
        "metadata": {"video_owner": "", "video_permlink": ""},
        "storageMetadata": {"app": "", "key": "", "type": ""},
        "input": {"uri": "", "size": 0},
        "assigned_to": ME,
        "progress": 10,
        "owner": "",
        "permlink": "",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ABSENT}


async def observe(monitor: GatewayMonitorService, router: respx.Router,
                  record: dict[str, Any]) -> Observation:
    router.get(f"/jobs/{JOB}").mock(return_value=ok(record))
    return await monitor.observe(JOB)


# --------------------------------------------------------------------------- the protocol


def decide(observation: Observation, protocol_class: type[OwnershipProtocol] = OwnershipProtocol
           ) -> tuple[Outcome, list[Action], list[str]]:
    """Run the hardened protocol for a community node whose every verifying read of the
    monitor answers ``observation`` (the pre-claim check sees the job queued and unowned)."""
    protocol = protocol_class(JOB, me=ME, policy=HARDENED, tiers=COMMUNITY)
    queued = parse_job(job_doc(status="queued", assigned_to=None), tier=_MONITOR_TIER)
    now, started = 0.0, None
    taken: list[Action] = []
    codes: list[str] = []
    step = protocol.start(now)
    for _ in range(1000):
        codes += [d.code for d in step.decisions]
        action = step.action
        taken.append(action)
        if isinstance(action, Done):
            assert protocol.outcome is not None
            return protocol.outcome, taken, codes
        answer: Answer
        if isinstance(action, Observe):
            job = queued if action.purpose == "pre-claim" else observation.job
            answer = Observed(Observation(action.tier, job))
        elif isinstance(action, Claim | Heartbeat | Finish | Release):
            answer = WriteAnswered(WriteOutcome.OK)
        elif isinstance(action, StartWork):
            started, answer = now, WorkStarted()
        elif isinstance(action, CancelWork):
            answer = WorkStopped()
        else:
            assert isinstance(action, Sleep), action
            done = started is not None and started + 20 <= action.until
            answer = WorkEnded(True) if done else Woke()
            now = max(now, action.until)
        now += 0.1
        step = protocol.handle(answer, now)
    raise AssertionError("the protocol did not finish")


def started_work(taken: list[Action]) -> bool:
    return any(isinstance(a, StartWork) for a in taken)


@pytest.mark.asyncio
@pytest.mark.parametrize("owner", [ME, "did:" + ME[len("did:key:"):], "did" + ME[len("did:key:"):]])
@pytest.mark.parametrize("status", ["assigned", "running"])
async def test_a_stand_in_naming_us_is_synthetic_and_the_protocol_never_answers_mine(
    monitor: GatewayMonitorService, router: respx.Router, owner: str, status: str
) -> None:
    seen = await observe(monitor, router, stand_in(assigned_to=owner, status=status))
    job = seen.job
    assert job is not None and job.synthetic
    assert (job.id, job.status, job.assigned_to) == (JOB, status, owner)
    result = await monitor.verify_job_ownership(JOB, ME)
    assert not result.is_owned and not result.is_safe_to_process
    outcome, taken, codes = decide(seen)
    assert outcome.kind is not OutcomeKind.PROCESSED and outcome.code == "UNCONFIRMED"
    assert not started_work(taken) and "MONITOR_CONFIRMED" not in codes


@pytest.mark.asyncio
async def test_a_real_record_with__id_still_confirms(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    seen = await observe(monitor, router, job_doc())
    assert seen.job is not None and not seen.job.synthetic
    assert (await monitor.verify_job_ownership(JOB, ME)).is_safe_to_process
    outcome, taken, codes = decide(seen)
    assert outcome.kind is OutcomeKind.PROCESSED and started_work(taken)
    assert "MONITOR_CONFIRMED" in codes


@pytest.mark.asyncio
@pytest.mark.parametrize("missing", [ABSENT, None, ""], ids=["absent", "null", "empty"])
async def test_a_record_without__id_fails_closed(
    monitor: GatewayMonitorService, router: respx.Router, missing: Any
) -> None:
    """Everything else real (video fields, dates, our DID, a processable status): no ``_id``
    is the stand-in's fingerprint, and a wrong "stand-in" only delays."""
    seen = await observe(monitor, router, job_doc(_id=missing))
    assert seen.job is not None and seen.job.synthetic
    assert not (await monitor.verify_job_ownership(JOB, ME)).is_owned
    outcome, taken, _ = decide(seen)
    assert outcome.code == "UNCONFIRMED" and not started_work(taken)


@pytest.mark.asyncio
@pytest.mark.parametrize("changes", [
    {"metadata": {"video_owner": "", "video_permlink": ""}, "input": {"uri": "", "size": 0}},
    {"metadata": {}, "input": {"size": 0}},
    {"owner": ""},
    {"permlink": None},
    {"owner": "alice", "permlink": ""},
], ids=["blank-video-fields", "empty-objects", "blank-owner", "null-permlink", "one-blank"])
async def test_the_stand_ins_blank_signature_fails_closed_even_with__id(
    monitor: GatewayMonitorService, router: respx.Router, changes: dict[str, Any]
) -> None:
    seen = await observe(monitor, router, job_doc(**changes))
    assert seen.job is not None and seen.job.synthetic
    assert not (await monitor.verify_job_ownership(JOB, ME)).is_safe_to_process


@pytest.mark.asyncio
@pytest.mark.parametrize("changes", [
    {"owner": "alice", "permlink": "abc123"},
    {"input": {"uri": "", "size": 0}},  # one blank object is not the signature: all three are
    {"metadata": {"video_owner": "", "video_permlink": "abc"}, "input": {"uri": ""}},
    {"_id": {"$oid": "65f0c0ffee0000000000abcd"}},
    {"_id": JOB},
], ids=["legacy-fields", "blank-input-only", "permlink-set", "extended-json-_id", "string-_id"])
async def test_real_records_are_not_taken_for_stand_ins(
    monitor: GatewayMonitorService, router: respx.Router, changes: dict[str, Any]
) -> None:
    seen = await observe(monitor, router, job_doc(**changes))
    assert seen.job is not None and not seen.job.synthetic
    assert (await monitor.verify_job_ownership(JOB, ME)).is_safe_to_process


@pytest.mark.asyncio
@pytest.mark.parametrize("owner", [OTHER, None, ABSENT], ids=["other", "null", "absent"])
async def test_a_stand_in_naming_another_or_nobody_proves_nothing_either(
    monitor: GatewayMonitorService, router: respx.Router, owner: Any
) -> None:
    seen = await observe(monitor, router, stand_in(assigned_to=owner))
    assert seen.job is not None and seen.job.synthetic
    assert not (await monitor.verify_job_ownership(JOB, ME)).is_owned


@pytest.mark.asyncio
async def test_the_stand_in_trusting_canary_confirms_where_the_shipped_protocol_does_not(
    monitor: GatewayMonitorService, router: respx.Router
) -> None:
    """The canary of ``tests/sim/protocols.py`` is caught here: same answer, opposite decision."""
    seen = await observe(monitor, router, stand_in())
    outcome, taken, codes = decide(seen, StandInTrustingProtocol)
    assert outcome.kind is OutcomeKind.PROCESSED and "MONITOR_CONFIRMED" in codes
    assert started_work(taken)
    outcome, taken, _ = decide(seen)
    assert outcome.code == "UNCONFIRMED" and not started_work(taken)


def test_the__id_rule_is_the_monitors_only() -> None:
    """The database tier is the ground truth and never answers a stand-in; the gateway and aid
    answer in their own shapes. Without ``_id`` their records are still records."""
    assert Tier.MONITOR.value == _MONITOR_TIER
    record = {"id": JOB, "status": "assigned", "assigned_to": ME}
    for tier in ("job", Tier.DATABASE.value, Tier.GATEWAY.value, Tier.AID.value):
        assert not parse_job(record, tier=tier).synthetic, tier
    assert parse_job(record, tier=Tier.MONITOR.value).synthetic
    # ... and a nested {job, rank} answer is judged by the job inside it.
    nested = {"job": {**record, "_id": "65f0c0ffee0000000000abcd"}, "rank": 0}
    assert not parse_job(nested, tier=Tier.MONITOR.value).synthetic


@pytest.mark.parametrize("field", ["input", "owner", "permlink"])
def test_a_stand_in_wrapping_a_real_looking_job_is_still_the_stand_in(field: str) -> None:
    """The stand-in with a ``job`` object inside (its own ``_id``, our DID, ``running``) was
    read through that object and confirmed ownership (helper-130's review, session 44). A
    wrapper with any of the stand-in's empty fields is the stand-in, whatever it wraps."""
    inner = {"id": JOB, "_id": "65f0c0ffee0000000000abcd", "status": "running",
             "assigned_to": ME}
    outer = {k: v for k, v in stand_in().items() if k not in ("id", "status")}
    if field != "input":  # only one of the empty signatures
        outer = {k: v for k, v in outer.items() if k not in ("input", "owner", "permlink")}
        outer[field] = ""
    else:
        outer = {k: v for k, v in outer.items() if k not in ("owner", "permlink")}
    job = parse_job({**outer, "job": inner}, tier=Tier.MONITOR.value)
    assert job.synthetic and job.assigned_to == ME
    outcome, taken, _ = decide(Observation(Tier.MONITOR, job))
    assert not started_work(taken), outcome
