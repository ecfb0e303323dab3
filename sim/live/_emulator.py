"""Emulated 3Speak services on loopback: Gateway Monitor, legacy gateway, Gateway Aid.

Three HTTP servers (one port each, so one can be stopped and restarted alone) answer the
routes of ``docs/contract.md`` from one shared job store: the simulator's
:class:`~sim._world.World`, run in real time by :class:`~sim.live._world.LiveWorld`. Every
answer about a job comes from the world's own service operations (``gw_accept``,
``monitor_read``, ``aid_claim``, ...), the same code the simulator and the conformance suites
exercise; this module only translates HTTP to those operations and their answers back to the
contract's bodies, quirks included:

* the monitor's 404/500 bodies, its records with MongoDB's ``_id``, its synthetic stand-in job
  (HTTP 200, built field by field from the gateway's status answer as the real server does: the
  gateway's id, status and owner, blank video fields, no ``_id``), omitted empty dates,
  ``progress`` as a bare number for finished jobs, legacy extra fields, ``/health`` always 200,
  ``{"error": "Route not found"}`` for unknown routes, and its wait (the scenario's
  ``gateway_timeout``) for a silent gateway's overlay on assigned and running jobs;
  ``/jobs/available`` listing ``unassigned`` jobs only; ``/jobs/{id}/status`` proxying the
  world's gateway (its lie, its outages, a gateway request counted), never the job's state;
  routing, percent-decoding and ``express.json()`` body reading as the real server's
  Express 4 app does them (shared with Gateway Aid), malformed escapes its error 500;
* the legacy gateway's JWS bodies, verified against the ``did:key`` in the ``kid`` (a bad or
  missing signature is 401 and touches nothing), the generic 500 of a refused accept or
  finish, pings from non-owners answered OK, ``jobstatus`` nested as ``{job, rank}``;
* Gateway Aid's ``X-Encoder-DID`` identity (approved DIDs only: 403
  ``ENCODER_NOT_AUTHORIZED``), 409 ``JOB_ALREADY_ASSIGNED``, ``is_owned_by_requester``.

On top of the world's faults (outage windows, lag, double hand-outs, lost replies) the
servers inject transport faults the simulator cannot express (:class:`HttpFaults`): slow
answers past the client's timeout, 429 with ``Retry-After``, connection resets; and the
monitor can be stopped and restarted mid-run (:meth:`Emulator.stop_monitor`).

A slow answer to a write is slow *after* the write happened, as on a real overloaded server:
the client times out, and the write has landed anyway (the "outcome unknown" the protocol
must handle). A reset likewise may come after the write.

The monitor also serves our optional push extension (``docs/push.md``; the real monitor has
no push): ``GET /api/ws/jobs`` upgrades to a WebSocket on which a client subscribes to job ids
and is sent each subscribed job's state after every write to it. One world watcher fans the
writes out; it only appends to each connection's bounded queue (the world never waits for a
socket), and a connection whose queue overflows is closed with 1013. The transport faults of
:class:`HttpFaults` do not apply to the upgrade or the frames.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from verifier import InvalidInputError, validate_job_id, verify_jws
from verifier.protocol import Observed, TierFailed, WriteAnswered, WriteOutcome

from .._world import ANONYMOUS, CLAIMABLE_STATUSES, Job
from ._http_server import RESET, HttpServer, Request, Response, Upgrade, WebSocket
from ._world import LiveWorld

__all__ = ["Emulator", "HttpFaults", "iso", "object_id"]

#: Where the emulator's dates start: fixed, so bodies do not depend on the wall clock.
_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
_GATEWAY: Final = "/api/v0/gateway/"
_AID: Final = "/aid/v1/"
_BATCH_LIMIT: Final = 50
_PAGE_LIMIT: Final = 100
_ROUTE_NOT_FOUND: Final = Response.json(404, {"error": "Route not found"})
_INTERNAL: Final = Response.json(500, {"error": "Internal server error"})
_UNAVAILABLE: Final = Response.json(503, {"status": "error", "message": "Service Unavailable"})
#: The push extension (docs/push.md): its route and limits.
_PUSH_PATH: Final = "/api/ws/jobs"
_PUSH_IDS_PER_MESSAGE: Final = 50
_PUSH_SUBSCRIPTIONS: Final = 1000
#: Subscriptions held by all connections together. Per connection, 1,000 ids of up to 256
#: characters cost ~0.7 MB here; with nothing bounding the sum, one client opening thousands
#: of connections drove the emulator to gigabytes (review: +200 MB for 300 connections).
#: Ample for any run: an encoder subscribes to the few jobs it holds.
_PUSH_TOTAL_SUBSCRIPTIONS: Final = 100_000
#: Room for a full resubscription's current states and the writes that land meanwhile (equal
#: to the subscription limit, one push after a full resubscription overflowed: session 21).
_PUSH_QUEUE: Final = _PUSH_SUBSCRIPTIONS + 64
_PUSH_BAD_MESSAGE: Final = 'expected {"subscribe": [ids]} or {"unsubscribe": [ids]}'
_UPGRADE_REQUIRED: Final = Response.json(426, {"error": "Upgrade required"},
                                         headers=[("upgrade", "websocket")])


def object_id(job_id: str) -> str:
    """The job document's MongoDB ``_id`` as the monitor serialises it: 24 hex digits (fixed per
    job, so bodies are reproducible)."""
    return hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:24]


def iso(t: float) -> str:
    """World time as the servers' ISO dates (milliseconds, ``Z``)."""
    stamp = _EPOCH + timedelta(seconds=max(t, 0.0))
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class HttpFaults:
    """Transport faults, each a probability per request (drawn from the run's seed).

    ``slow_s`` should exceed the clients' timeout to be a fault; ``retry_after_s`` is sent as
    ``Retry-After`` with every 429. ``rate_limit_storm`` = (at, for): a window, in seconds
    of the run, in which the monitor answers *every* REST request 429 (a storm, as a monitor
    shedding load would; its WebSocket stays up).
    """

    reset_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    slow_rate: float = 0.0
    slow_s: float = 0.0
    rate_limit_storm: tuple[float, float] | None = None

    def problems(self) -> list[str]:
        out = [f"{name} must be in [0, 1]" for name in ("reset_rate", "rate_limit_rate",
                                                        "slow_rate")
               if not 0.0 <= getattr(self, name) <= 1.0]
        if self.reset_rate + self.rate_limit_rate + self.slow_rate > 1.0:
            out.append("the fault rates add up to more than 1")
        if self.slow_s < 0 or self.retry_after_s < 0:
            out.append("slow_s and retry_after_s must not be negative")
        storm = self.rate_limit_storm
        if storm is not None and not (math.isfinite(storm[0]) and math.isfinite(storm[1])
                                      and storm[0] >= 0 and storm[1] > 0):
            out.append("rate_limit_storm must be (at >= 0, for > 0) seconds")
        return out

    def storm_window(self) -> tuple[float, float] | None:
        """The storm as ``(start, end)`` in seconds of the run, or ``None``."""
        if self.rate_limit_storm is None:
            return None
        at, length = self.rate_limit_storm
        return (at, at + length)


Route = Callable[[Request, list[str]], Awaitable[Response | object]]


class Emulator:
    """The three services over one :class:`LiveWorld`. ``approved``: the DIDs Gateway Aid
    serves (``None``: every ``did:key``)."""

    def __init__(self, live: LiveWorld, *, faults: HttpFaults | None = None,
                 approved: Collection[str] | None = None, host: str = "127.0.0.1",
                 ports: Mapping[str, int] | None = None) -> None:
        self.live = live
        self.world = live.world
        self.faults = faults or HttpFaults()
        problems = self.faults.problems()
        if problems:
            raise ValueError("bad HTTP faults: " + "; ".join(problems))
        self.approved = None if approved is None else frozenset(approved)
        self._rng = live.streams.stream("http.faults")
        #: Whom a proxied gateway status lie names (``/jobs/{id}/status``): a stream of its
        #: own, so the fault draws keep their sequences.
        self._lie_rng = live.streams.stream("http.status-lie")
        ports = ports or {}
        self.monitor = HttpServer(self._monitor_entry(self._service(self._monitor,
                                                                  storms=True)),
                                  name="monitor", host=host, port=ports.get("monitor", 0))
        self.gateway = HttpServer(self._service(self._gateway), name="gateway",
                                  host=host, port=ports.get("gateway", 0))
        self.aid = HttpServer(self._service(self._aid), name="aid",
                              host=host, port=ports.get("aid", 0))
        #: Injected faults by kind, and refused signatures (for reports and tests).
        self.injected: dict[str, int] = {"reset": 0, "rate_limited": 0, "slow": 0}
        self.bad_signatures = 0
        #: Push frames written to WebSocket subscribers (docs/push.md), for reports and tests.
        self.pushes_sent = 0
        #: Per-connection queue bound of the push extension (overflow: close with 1013).
        self.push_queue_limit = _PUSH_QUEUE
        #: Bound on the subscriptions of all push connections together (over it: an error).
        self.push_subscription_limit = _PUSH_TOTAL_SUBSCRIPTIONS
        self._subscription_count = 0
        self._subscribers: dict[str, set[_Subscriber]] = {}  # job id -> its subscribers
        self.world.watchers.append(self._pushed)

    # ------------------------------------------------------------------ lifecycle

    @property
    def servers(self) -> tuple[HttpServer, HttpServer, HttpServer]:
        return self.monitor, self.gateway, self.aid

    @property
    def monitor_url(self) -> str:
        """``GATEWAY_MONITOR_BASE_URL`` (with the ``/api`` prefix)."""
        return self.monitor.url + "/api"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def aid_url(self) -> str:
        return self.aid.url

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
        self.live.begin()
        self.live.start_ticker()

    async def stop(self) -> None:
        await self.live.stop_ticker()
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop_monitor(self) -> None:
        """Take the monitor's server down (connections refused, open ones cut); recorded as a
        fault. Gateway Aid goes down with it: the contract serves it from the same server
        ("`/aid/v1`, same server"), so a monitor restart is an aid restart too."""
        await self.monitor.stop()
        await self.aid.stop()
        self.live.history.add(self.live.now(), "world", None, "fault", "invoke", "monitor-stop")

    async def start_monitor(self) -> None:
        await self.monitor.start()
        await self.aid.start()
        self.live.history.add(self.live.now(), "world", None, "fault", "ok", "monitor-stop")

    # ------------------------------------------------------------------ plumbing

    def _service(self, route: Route, *,
                 storms: bool = False) -> Callable[[Request], Awaitable[Any]]:
        """``route`` behind the transport faults; ``storms``: this service (the monitor)
        answers 429 to everything inside :attr:`HttpFaults.rate_limit_storm`."""
        async def handle(request: Request) -> Any:
            if request.method == "HEAD":
                # Express answers HEAD on every GET route (same status and headers, no body;
                # the server strips the body): "Route not found" here was a server that does
                # not exist (``curl -I`` against a job said 404).
                request = dataclasses.replace(request, method="GET")
            fault = "rate_limited" if storms and self._storming() else self._fault()
            if fault == "reset":
                return RESET
            if fault == "rate_limited":
                return Response.json(429, {"success": False, "error": "Too many requests"},
                                     headers=[("retry-after", str(self.faults.retry_after_s))])
            self.live.advance()
            try:
                answer = await route(request, request.segments())
            except _BadRequest as exc:
                answer = exc.response
            if fault == "slow":
                await asyncio.sleep(self.faults.slow_s)
            return answer

        return handle

    def _storming(self) -> bool:
        window = self.faults.storm_window()
        if window is None or not window[0] <= self.live.now() < window[1]:
            return False
        self.injected["rate_limited"] += 1
        return True

    def _fault(self) -> str | None:
        f = self.faults
        if not (f.reset_rate or f.rate_limit_rate or f.slow_rate):
            return None
        x = self._rng.random()
        for kind, rate in (("reset", f.reset_rate), ("rate_limited", f.rate_limit_rate),
                           ("slow", f.slow_rate)):
            if x < rate:
                self.injected[kind] += 1
                return kind
            x -= rate
        return None

    async def _reply(self, delay: float, response: Response | object) -> Response | object:
        """Answer after the world's reply latency (the world state is already updated)."""
        if delay > 0:
            await asyncio.sleep(delay)
        return response

    def _job(self, job_id: str) -> Job | None:
        return self.world.jobs.get(job_id)

    def _document(self, job_id: str, status: str | None, owner: str | None,
                  job: Job | None, *, null_owner: bool = True,
                  stored: bool = False) -> dict[str, Any]:
        """A job as the servers show it: empty dates omitted, progress a number when done.

        ``stored``: the record as the monitor reads it from MongoDB, so with its ``_id`` (the
        monitor's stand-in has none, which is how clients tell it from a real record).
        """
        doc: dict[str, Any] = {"_id": object_id(job_id)} if stored else {}
        doc.update({"id": job_id, "status": status,
                    "created_at": iso(job.created if job else 0.0)})
        if owner is not None:
            doc["assigned_to"] = owner
            if job is not None and job.owned_at >= 0:
                doc["assigned_date"] = iso(job.owned_at)
                doc["last_pinged"] = iso(job.last_pinged)
        elif null_owner:
            doc["assigned_to"] = None
        if job is not None:
            doc["attempt_count"] = job.attempts
        doc["progress"] = 100 if status in ("complete", "completed", "uploading") else {
            "pct": 0, "download_pct": 0}
        doc["metadata"] = {"video_owner": "emulated", "video_permlink": job_id}
        doc["input"] = {"uri": f"ipfs://emulated/{job_id}", "size": 1024}
        doc["encoder_id"] = owner  # a legacy extra field the monitor overlays
        return doc

    # ------------------------------------------------------------------ push (docs/push.md)

    def _monitor_entry(self, service: Callable[[Request], Awaitable[Any]]
                       ) -> Callable[[Request], Awaitable[Any]]:
        """The monitor's handler: the push route first (no injected faults), then ``service``."""
        async def handle(request: Request) -> Any:
            if request.path == _PUSH_PATH and request.method == "GET":
                if request.headers.get("upgrade", "").lower() != "websocket":
                    return _UPGRADE_REQUIRED
                return Upgrade(self._push_session)
            return await service(request)

        return handle

    def _pushed(self, job: Job) -> None:
        """The world watcher: queue the job's new state for its subscribers. Never blocks."""
        subscribers = self._subscribers.get(job.id)
        if subscribers:
            state = (job.id, job.status, job.owner)
            for subscriber in subscribers:
                subscriber.put(state, self.push_queue_limit)

    async def _push_session(self, ws: WebSocket) -> None:
        """One subscriber connection: commands read here, frames written by a sender task
        (the only writer of data frames, so frames leave in queue order)."""
        subscriber = _Subscriber()
        sender = asyncio.create_task(self._push_sender(ws, subscriber), name="push-sender")
        try:
            while (message := await ws.receive()) is not None:
                error = self._push_command(subscriber, message)
                if error is not None:
                    subscriber.put({"error": error}, self.push_queue_limit)
        finally:
            self._unsubscribe(subscriber, subscriber.jobs)
            sender.cancel()
            await asyncio.wait([sender])
            if not sender.cancelled():
                sender.exception()  # retrieved: a peer gone mid-write is an ordinary end

    async def _push_sender(self, ws: WebSocket, subscriber: _Subscriber) -> None:
        while True:
            await subscriber.wake.wait()
            subscriber.wake.clear()
            while subscriber.queue and not subscriber.overflowed:
                item = subscriber.queue.popleft()
                if isinstance(item, tuple):
                    subscriber.seq += 1
                    job_id, status, owner = item
                    frame: dict[str, Any] = {"job": job_id, "status": status, "owner": owner,
                                             "seq": subscriber.seq}
                else:
                    frame = item
                await ws.send(json.dumps(frame, separators=(",", ":")))
                if isinstance(item, tuple):
                    self.pushes_sent += 1
            if subscriber.overflowed:
                self._unsubscribe(subscriber, subscriber.jobs)
                subscriber.queue.clear()
                await ws.close(1013, "try again later")
                return

    def _push_command(self, subscriber: _Subscriber, message: str | bytes) -> str | None:
        """Apply one client message; the error to send back, if any (the connection stays)."""
        if not isinstance(message, str):
            return "text frames only"
        try:
            body = json.loads(message)
        except (ValueError, RecursionError):  # nested past the parser's limit: not JSON
            return "not JSON"
        if not isinstance(body, dict) or len(body) != 1:
            return _PUSH_BAD_MESSAGE
        [(verb, ids)] = body.items()
        if verb not in ("subscribe", "unsubscribe") or not isinstance(ids, list):
            return _PUSH_BAD_MESSAGE
        if len(ids) > _PUSH_IDS_PER_MESSAGE:
            return f"at most {_PUSH_IDS_PER_MESSAGE} job ids per message"
        try:
            ids = list(dict.fromkeys(validate_job_id(i) for i in ids))
        except InvalidInputError as exc:
            return f"bad job id: {exc}"
        if verb == "unsubscribe":
            self._unsubscribe(subscriber, ids)
            return None
        new = [i for i in ids if i not in subscriber.jobs]
        if len(subscriber.jobs) + len(new) > _PUSH_SUBSCRIPTIONS:
            return f"at most {_PUSH_SUBSCRIPTIONS} subscriptions per connection"
        if self._subscription_count + len(new) > self.push_subscription_limit:
            return "server subscription limit reached; try again later"
        self._subscription_count += len(new)
        self.live.advance()  # the current state is the state as of now
        for job_id in new:
            subscriber.jobs.add(job_id)
            self._subscribers.setdefault(job_id, set()).add(subscriber)
        for job_id in ids:  # where the client stands: the current state of each known job
            job = self._job(job_id)
            if job is not None:
                subscriber.put((job.id, job.status, job.owner), self.push_queue_limit)
        return None

    def _unsubscribe(self, subscriber: _Subscriber, job_ids: Collection[str]) -> None:
        for job_id in list(job_ids):
            if job_id in subscriber.jobs:
                subscriber.jobs.discard(job_id)
                self._subscription_count -= 1
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[job_id]

    # ------------------------------------------------------------------ Gateway Monitor

    async def _monitor(self, request: Request, parts: list[str]) -> Response | object:
        # Routed as the real server's Express 4 app (``app.use("/api/jobs", jobsRouter)``),
        # not by ``parts``: see :func:`_express_request`.
        body = _express_request(request)
        method = request.method
        if method == "GET" and _API_HEALTH.match(request.path):
            return Response.json(200, {"status": "ok", "service": "gateway-monitor"})
        rest = _mounted(request.path, "/api/jobs")
        if rest is None:
            return _ROUTE_NOT_FOUND
        if method == "POST":
            if _express_match(rest, "/batch-status") is not None:
                return await self._batch_status(body)
            return _ROUTE_NOT_FOUND
        if method != "GET":
            return _ROUTE_NOT_FOUND
        if _express_match(rest, "/available") is not None:
            # Contract (3speak-contract.md, "Gateway Monitor API"): "`GET {base}/jobs/available`
            # (status `unassigned`, newest 10)". Only `unassigned`: the gateway's jobs wait as
            # `queued` and aid's as `pending`, so neither is ever listed here (the real list
            # is empty whenever no record uses that vocabulary).
            return self._listing(frozenset({"unassigned"}))
        if _express_match(rest, "/active") is not None:
            return self._listing(frozenset({"running"}))
        if _express_match(rest, "/completed") is not None:
            return self._completed(request)
        if (found := _express_match(rest, "/:id")) is not None:
            return await self._job_details(found[0])
        if (found := _express_match(rest, "/:id/status")) is not None:
            return await self._job_status(found[0])
        return _ROUTE_NOT_FOUND

    async def _job_details(self, job_id: str) -> Response | object:
        job = self._job(job_id)
        if job is None:
            # Missing from the database: "not found" only when the gateway says so; with the
            # gateway unreachable the real server answers 500 (contract, "Observed by running").
            if self.world.gateway_down_now():
                return Response.json(500, {"success": False,
                                           "error": "Failed to fetch job details"})
            return Response.json(404, {"success": False, "error": "Job not found"})
        read, delay = self.world.monitor_read(job_id)
        if isinstance(read, TierFailed):
            body = {"success": False, "error": "Failed to fetch job details"}
            return await self._reply(delay, Response.json(500, body))
        assert isinstance(read, Observed)
        seen = read.observation.job
        if seen is None or seen.synthetic:
            # Not in the (lagging) database, or its database view is down: the stand-in built
            # from the gateway's status answer. The world's synthetic answer carries the
            # gateway's view, lies included; a record the lagging read misses is answered with
            # the gateway's current one (and 500 when the gateway cannot be asked).
            if seen is None:  # (a down gateway: the world's read failed, after its wait)
                status, owner = job.status, job.owner
            else:
                status, owner = seen.status, seen.assigned_to
            data: dict[str, Any] = self._stand_in(job_id, status, owner)
        else:
            # (The real server first waits for the gateway's live overlay on assigned and
            # running jobs, ~10 s when the gateway is silent: the world's read includes it.)
            data = self._document(job_id, seen.status, seen.assigned_to, job,
                                  null_owner=job.epoch % 2 == 0,  # null or absent: both seen
                                  stored=True)
        return await self._reply(delay, Response.json(200, {"success": True, "data": data}))

    def _stand_in(self, job_id: str, status: str | None, owner: str | None) -> dict[str, Any]:
        """The real server's stand-in, field by field: the gateway's ``job_id``, status, owner
        (``encoder_id``) and progress, ``created_at`` = now, blank video fields, and no
        ``_id``. It can name an id, a status and an owner: only its fingerprint gives it away."""
        return {
            "id": job_id,
            "status": status,
            "created_at": iso(self.live.now()),
            "metadata": {"video_owner": "", "video_permlink": ""},
            "storageMetadata": {"app": "", "key": "", "type": ""},
            "input": {"uri": "", "size": 0},
            "assigned_to": owner,
            "progress": 0,
            "owner": "",
            "permlink": "",
        }

    async def _job_status(self, job_id: str) -> Response | object:
        """``GET /jobs/{id}/status``: the gateway's status answer, proxied.

        Contract: it "never reads the database: it proxies the gateway (500 when the gateway
        is down, 404 "Job status not found" even for existing jobs); its data uses `job_id`".
        So the answer is the world's gateway operation (``gw_status``: its latency, its
        outages, its status lie, the request counted against the gateway), not the job's
        state; an id the gateway does not know is its 404, after a gateway request too; and
        a down gateway is waited for (its timeout, as the monitor's other routes wait for a
        silent gateway) before the 500. The request names no asker (the monitor asks, not
        an encoder), so the lie names one of the encoders the gateway told about the job,
        as the stand-in of ``monitor_read`` does.
        """
        world = self.world
        world.calls["monitor"] += 1  # the client's request to the monitor
        failed = Response.json(500, {"success": False, "error": "Failed to fetch job status"})
        job = self._job(job_id)
        if job is None:  # the gateway is asked all the same, and knows nothing of it
            world.calls["gateway"] += 1
            delay = world.latency(world.sc.gateway_latency)
            if world.gateway_down_now():
                return await self._reply(delay + world.sc.gateway_timeout, failed)
            return await self._reply(delay, Response.json(
                404, {"success": False, "error": "Job status not found"}))
        read, delay = world.gw_status(_MONITOR_ASKER, job_id)
        if isinstance(read, TierFailed):
            return await self._reply(delay + world.sc.gateway_timeout, failed)
        assert isinstance(read, Observed)
        status, owner = read.observation.status, read.observation.owner
        if owner == _MONITOR_ASKER:  # the gateway's lie, told to whoever asks
            told = sorted({*job.epoch_of_did, *([job.pending] if job.pending else [])})
            if told:
                owner = told[self._lie_rng.randrange(len(told))]
            else:  # it handed the job to nobody: nobody to name
                status, owner = job.status, job.owner
        data = {"job_id": job_id, "status": status, "progress": 0,
                "encoder_id": owner, "error": None, "metadata": {}}
        return await self._reply(delay, Response.json(200, {"success": True, "data": data}))

    async def _batch_status(self, body: Any) -> Response | object:
        ids = body.get("jobIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return Response.json(400, {"success": False, "error": "jobIds must be an array"})
        if len(ids) > _BATCH_LIMIT:
            return Response.json(400, {"success": False,
                                       "error": f"at most {_BATCH_LIMIT} job ids"})
        # The world's own monitor operation, as the simulator asks it: the monitor's lagging
        # view, its outages and errors, its latency, and the request counted. Reading the
        # jobs' current state here (as this route did) gave live runs a lag-free monitor that
        # never failed, unlike every other monitor route and unlike the simulator.
        # Ids the world lacks are dropped, as the real server drops per-job errors.
        statuses, delay = self.world.monitor_batch([i for i in ids if i in self.world.jobs])
        if statuses is None:
            body = {"success": False, "error": "Failed to fetch batch status"}
            return await self._reply(delay, Response.json(500, body))
        # (With the gateway down, the world's {} comes late, five ids per gateway timeout.)
        return await self._reply(delay, Response.json(200, {"success": True, "data": statuses}))

    def _listing(self, statuses: Collection[str]) -> Response:
        newest = sorted((j for j in self.world.jobs.values() if j.status in statuses),
                        key=lambda j: (-j.created, j.id))[:10]
        data = [self._document(j.id, j.status, j.owner, j, stored=True) for j in newest]
        return Response.json(200, {"success": True, "data": data})

    def _completed(self, request: Request) -> Response:
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return Response.json(400, {"success": False, "error": "page and limit are numbers"})
        if page < 1 or not 1 <= limit <= _PAGE_LIMIT:
            return Response.json(400, {"success": False,
                                       "error": f"page >= 1 and 1 <= limit <= {_PAGE_LIMIT}"})
        done = sorted((j for j in self.world.jobs.values()
                       if j.status in ("complete", "completed")), key=lambda j: j.id)
        chunk = done[(page - 1) * limit: page * limit]
        data = [self._document(j.id, j.status, j.owner, j, stored=True) for j in chunk]
        return Response.json(200, {"success": True, "data": data, "pagination": {
            "page": page, "limit": limit, "total": len(done)}})

    # ------------------------------------------------------------------ legacy gateway

    async def _gateway(self, request: Request, parts: list[str]) -> Response | object:
        if not request.path.startswith(_GATEWAY) or len(parts) < 4:
            return _ROUTE_NOT_FOUND
        route, rest, method = parts[3], parts[4:], request.method
        if method == "GET":
            if route == "stats" and not rest:
                return self._stats()
            if route == "getJob" and not rest:
                return await self._poll(request)
            if route == "jobstatus" and len(rest) == 1:
                return await self._gw_status(request, rest[0])
            return _ROUTE_NOT_FOUND
        if method != "POST" or rest or (route not in _GATEWAY_WRITES and route != "myJob"):
            return _ROUTE_NOT_FOUND
        body = _json_body(request)
        try:
            did, payload = verify_jws(body.get("jws") if isinstance(body, dict) else None)
        except Exception as exc:  # every refusal of identity is the same 401
            self.bad_signatures += 1
            return Response.json(401, {"status": "error", "message": "Unauthorized",
                                       "error": str(exc)[:200]})
        if route == "myJob":
            return await self._offer(did, signed=True)
        if route == "heartbeat":
            return Response.json(200, {"status": "success", "message": "ok"})
        job_id = payload.get("job_id")
        if not isinstance(job_id, str) or job_id not in self.world.jobs:
            return Response.json(404, {"status": "error", "message": "Job not found"})
        world = self.world
        if route == "acceptJob":
            answer, delay = world.gw_accept(did, job_id)
        elif route == "pingJob":
            answer, delay = world.gw_ping(did, job_id, _progress(
                payload.get("progressPct"), payload.get("download_pct")))
        elif route == "finishJob":
            answer, delay = world.gw_finish(did, job_id)
        else:  # rejectJob, cancelJob, failJob
            answer, delay = world.gw_release(did, job_id, failed=route == "failJob")
        return await self._reply(delay, _gateway_answer(answer))

    def _stats(self) -> Response:
        counts: dict[str, int] = {}
        for job in self.world.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        return Response.json(200, {"status": "success", "jobs": dict(sorted(counts.items()))})

    async def _poll(self, request: Request) -> Response | object:
        """``GET getJob``: the offered job's document, or an empty 200."""
        if self.world.sc.assignment != "getjob":
            return await self._oldest_queued()
        # The poller's identity, when its HTTP client sends one: it lets the world hand a job
        # just assigned to someone else to *this* encoder (the double hand-out).
        return await self._offer(request.headers.get("x-encoder-did") or ANONYMOUS,
                                 signed=False)

    async def _oldest_queued(self) -> Response | object:
        """``GET getJob`` beside a ``myJob`` gateway: the contract's getJob, "the oldest queued
        job to **every** caller, reserves nothing", not the world's round-robin ``myJob``
        (which took the job out of the queue: each poller got another job, never a contested
        one). A job ``myJob`` offered someone stays queued (``myJob`` offers, it does not
        write), so it is handed out here too."""
        world = self.world
        if world.gateway_down_now():
            return _UNAVAILABLE
        world.calls["gateway"] += 1
        delay = world.latency(world.sc.gateway_latency)
        free = [j for j in world.jobs.values()
                if j.status in CLAIMABLE_STATUSES and j.owner is None]
        if not free:
            return await self._reply(delay, Response(200, b""))
        job = min(free, key=lambda j: (j.created, j.id))
        return await self._reply(delay, Response.json(
            200, self._document(job.id, job.status, None, job)))

    async def _offer(self, did: str, *, signed: bool) -> Response | object:
        """The job the world offers ``did``: ``getJob``'s bare document (empty 200: none), or
        (``signed``, ``POST myJob``) the 2026 gateway's ``{success: true, job: doc | null}``."""
        if self.world.gateway_down_now():
            return _UNAVAILABLE
        job_id = self.live.reserved_for(did) if did != ANONYMOUS else None
        if job_id is not None:  # pre-assigned to the caller (``sim serve --assigned``)
            delay = 0.0
        else:
            job_id, delay = self.world.gw_poll(did)
        doc = None if job_id is None else self._document(
            job_id, "queued", None, self.world.jobs[job_id])
        if signed:
            return await self._reply(delay, Response.json(200, {"success": True, "job": doc}))
        return await self._reply(delay, Response(200, b"") if doc is None
                                 else Response.json(200, doc))

    async def _gw_status(self, request: Request, job_id: str) -> Response | object:
        if job_id not in self.world.jobs:
            return Response.json(404, {"status": "error", "message": "Job not found"})
        did = request.headers.get("x-encoder-did") or ANONYMOUS
        read, delay = self.world.gw_status(did, job_id)
        if isinstance(read, TierFailed):
            return await self._reply(delay, _UNAVAILABLE)
        assert isinstance(read, Observed)
        job = self.world.jobs[job_id]
        doc = self._document(job_id, read.observation.status, read.observation.owner, job)
        return await self._reply(delay, Response.json(200, {"job": doc, "rank": 0}))

    # ------------------------------------------------------------------ Gateway Aid

    async def _aid(self, request: Request, parts: list[str]) -> Response | object:
        # The monitor's Express app (``app.use("/aid", aidRouter)``): see _express_request.
        body = _express_request(request)
        rest = _mounted(request.path, "/aid")
        method = request.method
        if rest is None:
            return _ROUTE_NOT_FOUND
        route, job_param = None, None
        if method == "GET" and _express_match(rest, "/v1/health") is not None:
            return Response.json(200, {"success": True, "status": "ok"})
        if method == "GET" and (found := _express_match(rest, "/v1/job/:id")) is not None:
            route, job_param = "job", found[0]
        elif method == "POST":
            route = next((name for name in _AID_WRITES
                          if _express_match(rest, f"/v1/{name}") is not None), None)
        if route is None:  # no route: the 404 handler, whoever asks (auth is per route)
            return _ROUTE_NOT_FOUND
        did = request.headers.get("x-encoder-did", "")
        if not did.startswith("did:key:") or (
                self.approved is not None and did not in self.approved):
            return Response.json(403, {"success": False, "error": "Encoder not authorized",
                                       "data": {"code": "ENCODER_NOT_AUTHORIZED"}})
        if self.world.aid_down_now():
            # Down for reads and listings as for writes: it is the monitor's server.
            return _UNAVAILABLE
        if job_param is not None:
            return self._aid_job(did, job_param)
        if not isinstance(body, dict):
            return Response.json(400, {"success": False, "error": "JSON object expected"})
        if route == "list-jobs":
            # The job as stored, minus what aid hides (docs/contract.md): a command started
            # from this list needs the job's input (found by an operator review, session 14:
            # aid jobs reached the command with no input at all).
            hidden = ("status", "assigned_to", "assigned_date", "last_pinged", "encoder_id")
            jobs = [{k: v for k, v in self._document(j.id, j.status, None, j).items()
                     if k not in hidden}
                    for j in self.world.jobs.values()
                    if j.status in CLAIMABLE_STATUSES and j.owner is None][:50]
            return Response.json(200, {"success": True, "jobs": jobs})
        job_id = body.get("job_id")
        if not isinstance(job_id, str) or job_id not in self.world.jobs:
            return Response.json(404, {"success": False, "error": "Job not found",
                                       "data": {"code": "JOB_NOT_FOUND"}})
        world = self.world
        if route == "claim-job":
            answer, delay = world.aid_claim(did, job_id)
            if answer.outcome is WriteOutcome.OK:
                job = world.jobs[job_id]
                return await self._reply(delay, Response.json(200, {
                    "success": True, "job_id": job_id, "assigned_to": did,
                    "assigned_at": iso(job.owned_at)}))
            code = "JOB_ALREADY_ASSIGNED"
        elif route == "update-job":
            progress = body.get("progress")
            progress = progress if isinstance(progress, dict) else {}
            answer, delay = world.aid_heartbeat(did, job_id, _progress(
                progress.get("pct"), progress.get("download_pct")))
            code = "JOB_NOT_OWNED"
        else:
            answer, delay = world.aid_finish(did, job_id)
            code = "JOB_NOT_OWNED"
        if answer.outcome is WriteOutcome.OK:
            return await self._reply(delay, Response.json(200, {"success": True,
                                                                "job_id": job_id}))
        if answer.outcome is WriteOutcome.REFUSED:
            return await self._reply(delay, Response.json(409, {
                "success": False, "error": answer.detail, "data": {"code": code}}))
        return await self._reply(delay, _UNAVAILABLE)

    def _aid_job(self, did: str, job_id: str) -> Response:
        job = self._job(job_id)
        if job is None:
            return Response.json(404, {"success": False, "error": "Job not found",
                                       "data": {"code": "JOB_NOT_FOUND"}})
        self.world.calls["aid"] += 1
        doc = self._document(job_id, job.status, job.owner, job)
        doc["is_owned_by_requester"] = job.owner == did
        return Response.json(200, {"success": True, "job": doc})


_GATEWAY_WRITES: Final = frozenset({"acceptJob", "rejectJob", "cancelJob", "failJob",
                                    "finishJob", "pingJob", "heartbeat"})
_AID_WRITES: Final = ("list-jobs", "claim-job", "update-job", "complete-job")
#: Who asks the gateway when the monitor proxies ``/jobs/{id}/status``: no encoder.
_MONITOR_ASKER: Final = "gateway-monitor"


class _Subscriber:
    """One push connection's subscriptions and its bounded outgoing queue: job states
    ``(id, status, owner)`` (numbered when sent) and error frames."""

    __slots__ = ("jobs", "overflowed", "queue", "seq", "wake")

    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.queue: deque[tuple[str, str, str | None] | dict[str, Any]] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.seq = 0

    def put(self, item: tuple[str, str, str | None] | dict[str, Any], limit: int) -> None:
        if self.overflowed:
            return
        if len(self.queue) >= limit:
            self.overflowed = True  # the sender closes with 1013; nothing more is queued
        else:
            self.queue.append(item)
        self.wake.set()


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json_body(request: Request) -> Any:
    """The body as JSON; malformed JSON is the real servers' 500 "Internal server error"."""
    try:
        return request.json()
    except ValueError:
        raise _BadRequest(_INTERNAL) from None


# ---------------------------------------------------------------------- Express 4 semantics
#
# The monitor and Gateway Aid are one Express 4 app (the aid server's server.ts:
# ``express.json()`` for every request, ``app.use("/api/jobs", jobsRouter)``,
# ``app.use("/aid", aidRouter)``, then ``app.use("*", ...)`` answering 404 "Route not found"
# and an error handler answering 500 {"error": "Internal server error"} to any error, whatever
# its status). What follows mirrors what that app does with a request, checked against
# express 4.22.3 serving that layout. The legacy gateway's framework is not known: its
# routes keep the plain segment split.

#: ``%`` not starting a two-hex-digit escape: ``decodeURIComponent`` throws on it.
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_API_HEALTH: Final = re.compile(r"^/api/health/?$", re.IGNORECASE)
_JSON_WHITESPACE: Final = " \t\n\r"
#: The charsets body-parser's JSON reader decodes (iconv-lite names); others are refused.
_JSON_CHARSETS: Final = {"utf-8": "utf-8", "utf8": "utf-8", "utf-16": "utf-16",
                         "utf-16le": "utf-16-le", "utf-16be": "utf-16-be"}


def _decode_uri_component(raw: str) -> str:
    """JavaScript's ``decodeURIComponent``: ``ValueError`` on a malformed escape (``%zz``,
    a lone ``%``) or escapes that are not UTF-8 (``%ff``); Python's ``unquote`` instead
    keeps the first and replaces the second with U+FFFD."""
    if _BAD_ESCAPE.search(raw):
        raise ValueError("malformed percent escape")
    return urllib.parse.unquote_to_bytes(raw).decode("utf-8")  # strict: UnicodeDecodeError


def _express_request(request: Request) -> Any:
    """What the monitor's app does before any route: the body as ``express.json()`` reads
    it, and the error 500 for a path with a malformed percent escape.

    Express decodes each route parameter with ``decodeURIComponent`` and passes its error
    to the error handler (500); the 404 handler's path ``"*"`` is a parameter too, so a
    malformed escape anywhere in the path is the 500, never "not found" (``/api/jobs/%ff``
    answered 404 "Job not found" here: an answer the real server never gives).

    ``express.json()`` (body-parser): a body not declared ``application/json`` is not read
    (the route sees ``{}``); an empty one is ``{}``; a declared charset other than UTF-8/16
    is refused; the text must start with ``{`` or ``[`` (strict mode); invalid UTF-8 is
    replaced, not refused. Each refusal is the error handler's 500. (Python's ``json``
    guesses UTF-16 and UTF-32 from the bytes: a UTF-16 body was read here, never there.)
    """
    try:
        _decode_uri_component(request.path)
    except ValueError:
        raise _BadRequest(_INTERNAL) from None
    media, *params = request.headers.get("content-type", "").split(";")
    if media.strip().lower() != "application/json":
        return {}
    if not request.body:
        return {}
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    codec = _JSON_CHARSETS.get(charset)
    if codec is None:  # body-parser's 415 (or an encoding iconv-lite lacks): the 500
        raise _BadRequest(_INTERNAL)
    text = request.body.decode(codec, errors="replace").removeprefix("\ufeff")
    if text.lstrip(_JSON_WHITESPACE)[:1] not in ("{", "["):
        raise _BadRequest(_INTERNAL)
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise _BadRequest(_INTERNAL) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # JSON.parse refuses NaN and Infinity


def _mounted(path: str, prefix: str) -> str | None:
    """The path ``app.use(prefix, router)`` hands its router, or ``None`` when ``prefix``
    does not match. path-to-regexp 0.1 compiles the mount to ``^prefix/?(?=/|$)`` (case
    folded), so the mount takes one slash after it: ``/api/jobs//x`` reaches the router as
    ``/x`` (served, as by the real server) while ``/api//jobs/x`` (a base URL with a
    trailing slash) matches no mount at all."""
    found = re.match(re.escape(prefix) + r"/?(?=/|$)", path, re.IGNORECASE)
    if found is None:
        return None
    rest = path[found.end():]
    return rest if rest.startswith("/") else "/" + rest


def _express_match(path: str, route: str) -> list[str] | None:
    """``route`` (``/v1/job/:id``) against a router's ``path`` as Express 4 matches it: the
    raw (still encoded) path, case folded, one optional trailing slash, each ``:param`` one
    non-empty segment; the parameters decoded (malformed ones were refused before
    routing). ``None``: no match."""
    pattern = "".join(r"/([^/]+?)" if part.startswith(":") else "/" + re.escape(part)
                      for part in route.strip("/").split("/"))
    found = re.match(f"^{pattern}/?$", path, re.IGNORECASE)
    if found is None:
        return None
    return [_decode_uri_component(value) for value in found.groups()]


def _gateway_answer(answer: WriteAnswered) -> Response | object:
    if answer.outcome is WriteOutcome.OK:
        return Response.json(200, {"status": "success", "message": "ok"})
    if answer.outcome is WriteOutcome.REFUSED:
        # The legacy gateway's generic 500 for a refused accept or finish.
        return Response.json(500, {"status": "error", "message": answer.detail,
                                   "error": answer.detail})
    if answer.detail == "timeout":
        return RESET  # the world lost this reply: the write may land, the client never knows
    return _UNAVAILABLE


def _progress(pct: Any, download_pct: Any) -> tuple[float, float] | None:
    """A ping's progress as the world stores it (``None``: the ping reported none usable).
    The no-progress reassignment rule compares these values, as the real gateway does."""
    # Non-finite values are unusable too: Node's JSON.parse refuses NaN/Infinity outright,
    # and a NaN stored here compared unequal to itself, so every ping "changed" the progress
    # and the no-progress reassignment never fired for a client sending it.
    values = [v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
              else None for v in (pct, download_pct)]
    if values[0] is None and values[1] is None:
        return None
    return (float(values[0] or 0.0), float(values[1] or 0.0))
