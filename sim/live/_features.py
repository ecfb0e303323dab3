"""What the cost features buy in a live run, measured from its history and the emulator.

* ``monitor_requests_per_job`` / ``gateway_requests_per_job``: requests each server answered,
  per job of the run (the status cache and batch screening save monitor reads);
* ``loss_detection_s``: for each work cancelled after the world took its job away (a requeue,
  or an assignment to another encoder, recorded after the work started), the seconds from that
  record to the encoder's decision to cancel (``cancel`` ``invoke``): a push makes the next
  read come at once, polling waits for the next re-check;
* ``retry_requests_per_encoder_s``: monitor requests the encoders sent while the monitor was in
  one of the world's outage windows, per encoder and second of outage (backoff spreads them);
* ``recovery_s``: after each outage window, for each encoder that had a read fail in it, the
  seconds to its first answered monitor read (what backoff costs).

Percentiles are p50 and p99 (nearest rank, as the rest of the report); ``n`` says how many
events they rest on, so a reader can tell a figure from an anecdote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from verifier import Tier

from .._history import WORLD, History
from .._metrics import percentile

__all__ = ["feature_figures", "loss_detections", "outage_figures"]


def _summary(values: list[float]) -> dict[str, Any]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)}


def loss_detections(history: History) -> list[float]:
    """Seconds from each loss to the cancel it caused (see the module docstring)."""
    out: list[float] = []
    started: dict[tuple[str, str], float] = {}
    taken: dict[str, tuple[float, str | None]] = {}  # job -> (when, new owner name or None)
    for t, process, job, op, phase, value in history.records:
        if job is None:
            continue
        if process == WORLD:
            if op == "requeue" and phase == "ok":
                taken[job] = (t, None)
            elif op == "assign" and phase == "ok":
                taken[job] = (t, value[0])
            continue
        if op == "start" and phase == "ok":
            started[(process, job)] = t
        elif op == "cancel" and phase == "invoke":
            start = started.get((process, job))
            loss = taken.get(job)
            if start is not None and loss is not None and loss[0] >= start and (
                    loss[1] != process):
                out.append(t - loss[0])
    return out


def outage_figures(history: History, windows: Iterable[tuple[float, float]], *,
                   encoders: int, until: float) -> dict[str, Any]:
    """Monitor requests per encoder-second inside the outage windows (clipped to the run),
    and the recovery after each (see the module docstring)."""
    spans = [(s, min(e, until)) for s, e in windows if s < until]
    seconds = sum(e - s for s, e in spans)
    inside = 0
    failed: dict[tuple[int, str], bool] = {}
    waiting: dict[tuple[int, str], float] = {}
    for t, process, _job, op, phase, value in history.records:
        if process == WORLD or op not in ("verify", "screen"):
            continue
        tier = value[0] if isinstance(value, tuple) and value else value
        if op == "verify" and tier != Tier.MONITOR:
            continue
        k = next((i for i, (s, e) in enumerate(spans) if s <= t < e), None)
        if phase == "invoke" and k is not None:
            inside += 1
        elif phase == "fail" and k is not None:
            failed[(k, process)] = True
        elif phase == "ok" and k is None:
            for i, (_, e) in enumerate(spans):
                if failed.get((i, process)) and (i, process) not in waiting and t >= e:
                    waiting[(i, process)] = t - e
    recovery = list(waiting.values())
    rate = inside / (encoders * seconds) if seconds > 0 and encoders else None
    return {"outage_s": seconds, "retry_requests_per_encoder_s": rate,
            "recovery_s": _summary(recovery)}


def feature_figures(history: History, requests: Mapping[str, int], *, jobs: int,
                    encoders: int, windows: Iterable[tuple[float, float]],
                    until: float) -> dict[str, Any]:
    """The report's feature figures for one live run."""
    per_job = {f"{name}_requests_per_job": (requests.get(name, 0) / jobs if jobs else None)
               for name in ("monitor", "gateway")}
    return {**per_job,
            "loss_detection_s": _summary(loss_detections(history)),
            **outage_figures(history, windows, encoders=encoders, until=until)}
