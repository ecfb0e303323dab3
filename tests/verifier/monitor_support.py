"""Shared by the monitor test files: constants, a realistic job record, the mocked client."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ABSENT", "BASE", "JOB", "ME", "OTHER", "job_doc", "ok"]

BASE = "https://monitor.test/api"
JOB = "2f42577d-9c93-4a62-9ae2-d1270b5bc4f3"
ME = "did:key:z6Mkq65oNPyW3Gq187UHrvzWVZTmLhYk4wgFsBGD9HQpXSGp"
OTHER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
ABSENT = object()


def job_doc(**changes: Any) -> dict[str, Any]:
    """A realistic monitor ``data`` record; ``field=ABSENT`` removes a field."""
    doc: dict[str, Any] = {
        "_id": "65f0c0ffee0000000000abcd",
        "id": JOB,
        "status": "assigned",
        "created_at": "2026-01-02T03:04:05.000Z",
        "assigned_to": ME,
        "assigned_date": "2026-01-02T03:05:00.000Z",
        "last_pinged": "2026-01-02T03:06:00.000Z",
        "metadata": {"video_owner": "alice", "video_permlink": "abc123"},
        "storageMetadata": {"app": "3speak", "key": "k", "type": "video"},
        "input": {"uri": "ipfs://bafy", "size": 1234},
        "result": None,
        "progress": {"pct": 12.5, "download_pct": 100},
        "attempt_count": 0,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ABSENT}


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data})
