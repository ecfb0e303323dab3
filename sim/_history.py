"""The Jepsen-shaped history every simulation run records, and that checkers read.

One record per operation, a plain tuple for speed and memory (a run of 100,000 jobs records
millions of them)::

    (time, process, job, op, phase, value)

``time``
    simulated seconds (the world's clock, not an encoder's drifting one).
``process``
    the encoder's name (``"e17"``), or ``"world"`` for what the network itself did
    (assignments landing, requeues, commits, fault windows).
``job``
    the job id, or ``None`` (crashes, pauses, fault windows).
``op``
    encoder operations: ``claim``, ``verify``, ``start``, ``heartbeat``, ``cancel``, ``stop``,
    ``commit`` (the encoder's finish request), ``release``, ``crash``, ``pause``, ``outcome``
    (an attempt ended; value ``(code, held)``, ``held`` its report that the job may still be
    assigned to it);
    world operations: ``assign`` (an assignment write landed; value ``(owner, epoch)``),
    ``requeue`` (back to the queue; value the reason), ``commit`` (a result was committed;
    value ``(committer, epoch)``), ``fault`` (a fault window; value its kind), ``lie`` (the
    gateway double-assigned the job; value ``(kind, encoder)``).
``phase``
    ``invoke``, ``ok``, ``fail``, or ``info`` (outcome unknown: counted as "may have happened").
``value``
    a small immutable value (string, number, tuple) or ``None``.

Conventions the checkers rely on (see ``sim/_checkers.py``):

* ``start``/``ok`` opens a processing interval of (process, job); ``stop``/``ok`` closes it
  (value: ``"done"``, ``"cancelled"``); a ``crash``/``info`` of the process closes all its
  intervals (a crashed encoder has provably stopped). A ``pause`` does **not** close anything.
* a world ``lie`` on a job, or two distinct encoders answered ``claim``/``ok`` for it without
  a ``requeue``/``commit`` between them, is a double assignment (the denominator of the
  race-prevention rate: the races the world created, whatever the chain did about them).
* world ``commit`` is ground truth for S3; world ``assign`` tells which assignment is latest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, TextIO

__all__ = ["PHASES", "WORLD", "History", "Record"]

Record = tuple[float, str, str | None, str, str, Any]
WORLD: Final = "world"
PHASES: Final = ("invoke", "ok", "fail", "info")


class History:
    """An append-only list of records, ordered by time (the simulator appends in time order)."""

    __slots__ = ("records",)

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.records: list[Record] = list(records)

    def add(
        self, time: float, process: str, job: str | None, op: str, phase: str, value: Any = None
    ) -> None:
        self.records.append((time, process, job, op, phase, value))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def by_job(self) -> dict[str, list[Record]]:
        """Partition by job in one pass (records without a job, like crashes, go to ``""``)."""
        out: dict[str, list[Record]] = {}
        for record in self.records:
            out.setdefault(record[2] or "", []).append(record)
        return out

    def for_job(self, job: str) -> list[Record]:
        """The records of one job, plus the crashes and pauses of processes that touched it."""
        procs = {r[1] for r in self.records if r[2] == job}
        return [
            r for r in self.records
            if r[2] == job or (r[2] is None and (r[1] in procs or r[1] == WORLD))
        ]

    def dump(self, stream: TextIO) -> None:
        """Write as JSON lines (one record per line), the replay and debugging format."""
        for r in self.records:
            stream.write(json.dumps([round(r[0], 6), *r[1:5], _jsonable(r[5])]) + "\n")

    @staticmethod
    def format_record(r: Record) -> str:
        value = "" if r[5] is None else f" {_readable(r[5])}"
        return f"{r[0]:12.3f}  {r[1]:>6}  {r[2] or '-':>10}  {r[3]:<9} {r[4]:<6}{value}"


def _readable(value: Any) -> str:
    """Values as a person reads them: tuples as ``a, b``, enums (tiers) by their value."""
    if isinstance(value, tuple):
        return "(" + ", ".join("-" if v is None else str(v) for v in value) + ")"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
