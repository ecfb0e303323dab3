"""What a tier's job record becomes: ``parse_job`` keeps what the work needs, refuses what it
cannot trust at its exact limits, and names the tier that answered.

Written from a mutation run of ``verifier/_models.py`` (session 37): dropping the parsed
``metadata`` or ``storageMetadata`` (the command's job document is built from them: the video's
owner and permlink, where to upload) passed every tier test, as did refusing a record with
exactly the allowed number of unknown fields, or a malformed field's message naming the
default label instead of the tier.
"""

from __future__ import annotations

import pytest

from verifier import MalformedAnswer, parse_job

from .monitor_support import JOB, job_doc


@pytest.mark.parametrize("tier", ["monitor", "gateway", "database", "aid"])
def test_a_record_keeps_the_fields_the_command_is_given(tier: str) -> None:
    record = job_doc()
    job = parse_job(record, tier=tier)
    assert dict(job.metadata) == record["metadata"]
    assert dict(job.storage_metadata) == record["storageMetadata"]
    assert dict(job.input) == record["input"]
    assert (job.id, job.status, job.synthetic) == (JOB, "assigned", False)


def test_absent_or_null_objects_are_empty_not_missing() -> None:
    job = parse_job(job_doc(metadata=None, storageMetadata=None, input=None), tier="monitor")
    assert (job.metadata, job.storage_metadata, job.input) == ({}, {}, {})


def _with_unknown_fields(count: int) -> dict[str, object]:
    return {**job_doc(), **{f"extra_{i}": i for i in range(count)}}


def test_unknown_fields_are_kept_up_to_the_limit_and_refused_past_it() -> None:
    # The limit is 256 (a record of a few dozen legacy fields is normal; thousands are a
    # hostile or broken answer, kept in memory with every observation).
    assert len(parse_job(_with_unknown_fields(256), tier="monitor").extra) == 256
    with pytest.raises(MalformedAnswer, match=r"^monitor: job has 257 unknown fields; refusing"):
        parse_job(_with_unknown_fields(257), tier="monitor")


@pytest.mark.parametrize(("changes", "says"), [
    ({"status": 5}, "field 'status' should be a string, got int"),
    ({"metadata": ["a"]}, "field 'metadata' should be an object, got list"),
    ({"progress": {"pct": "12"}}, "progress.pct should be a number, got str"),
])
@pytest.mark.parametrize("tier", ["monitor", "database"])
def test_a_malformed_field_is_reported_as_the_answering_tiers(
    changes: dict[str, object], says: str, tier: str
) -> None:
    """The field checks raise under a generic label; the message is re-labelled with the tier
    that answered, once, and nothing of the message is lost."""
    with pytest.raises(MalformedAnswer) as info:
        parse_job(job_doc(**changes), tier=tier)
    assert str(info.value) == f"{tier}: {says}"
    assert info.value.tier == tier
