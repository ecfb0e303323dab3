"""``python -m verifier run -- COMMAND``: an encoder node, from the settings to a running loop.

:func:`open_node` builds what the settings describe (the tier clients, the guard, the offer
sources) and :func:`run_node` runs :class:`~verifier.EncoderLoop` with a
:class:`~verifier.CommandWork` until SIGINT, SIGTERM or SIGHUP, which start the graceful
shutdown: no new job, running commands stopped through their guards (SIGTERM, then SIGKILL
within the cancel latency), every held job released, fenced. A second signal only logs what
the shutdown still waits for (``LOOP_STILL_STOPPING``): giving up on it would leave jobs held
until the gateway's timeout, and the stop is bounded anyway, by C and three releases within
the clients' timeouts, each a bound on the whole exchange (``TierHttp(hard_deadline=True)``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Final

from ._aid import GatewayAidClient
from ._command import CommandWork, drain_relayed_stderr
from ._database import DatabaseTier
from ._errors import ConfigurationError
from ._gateway import LegacyGatewayClient
from ._guard import OwnershipGuard
from ._http import proxy_for
from ._log_sink import queued_logging
from ._loop import OFFER_SOURCES, EncoderLoop, LoopPolicy, offer_sources
from ._metrics import GuardMetrics, start_metrics_server
from ._monitor import GatewayMonitorService
from ._push import JobPushClient
from ._settings import DEFAULT_CHAIN, Settings

__all__ = ["Node", "add_run_parser", "cmd_run", "open_node"]

_LOGGER: Final = logging.getLogger("verifier.run")


@dataclass
class Node:
    """An encoder node's clients, guard and offer sources, built from :class:`Settings`."""

    settings: Settings
    guard: OwnershipGuard
    offers: dict[str, Any]
    clients: list[Any] = field(default_factory=list)
    metrics: GuardMetrics | None = None
    #: The monitor's push client (``VERIFIER_PUSH``), started by :func:`run_node`.
    push: JobPushClient | None = None
    #: Batch screening of offered jobs (the monitor's ``batch-status``), with a cache.
    screen: Any = None

    def default_sources(self) -> tuple[str, ...]:
        """Every source the node has, in :data:`~verifier._loop.OFFER_SOURCES` order."""
        return tuple(s for s in OFFER_SOURCES if s in self.offers)

    async def aclose(self) -> None:
        if self.push is not None:
            with contextlib.suppress(Exception):
                await self.push.aclose()
        for client in reversed(self.clients):
            with contextlib.suppress(Exception):
                await client.aclose()


def open_node(settings: Settings, *, logger: logging.Logger | None = None) -> Node:
    """The tier clients the settings enable, and a guard over them.

    The legacy gateway needs the node's key (it signs every write and ``myJob``); without
    ``GATEWAY_URL`` and without Gateway Aid no job can ever be offered: both are configuration
    errors, named."""
    if settings.chain != DEFAULT_CHAIN and not settings.allow_unsafe_chain:
        # One warning line at start was all that stood between a typo'd or left-over
        # VERIFIER_CHAIN and a node processing jobs twice (an adversarial review, 2026-12-05).
        raise ConfigurationError("VERIFIER_CHAIN", f"{settings.chain!r} does not keep two "
                                 "encoders from processing one job; run it only to measure, "
                                 "with VERIFIER_ALLOW_UNSAFE_CHAIN=true")
    identity = settings.identity()
    did = settings.encoder_did
    if did is None:
        raise ConfigurationError("ENCODER_PRIVATE_KEY", "is required to run an encoder (its "
                                 "DID is the owner the gateway records)")
    if settings.gateway_url is not None and identity is None:
        raise ConfigurationError("ENCODER_PRIVATE_KEY", "is required with GATEWAY_URL: the "
                                 "gateway accepts only signed requests")
    if settings.gateway_url is None and not settings.aid_enabled:
        raise ConfigurationError("GATEWAY_URL", "is required (or GATEWAY_AID_ENABLED=true): "
                                 "nothing else offers jobs")
    clients: list[Any] = []
    gateway = aid = monitor = push = None
    if settings.mongodb_enabled:
        database = DatabaseTier(uri=settings.mongodb_uri, database=settings.database_name,
                                encoder_did=did)
        database.check_options()  # what the driver refuses, refused before any job is claimed
        clients.append(database)
    if settings.monitor_enabled:
        monitor = GatewayMonitorService(settings.monitor_base_url, enabled=True)
        clients.append(monitor)
        if settings.push:
            push = JobPushClient(settings.monitor_base_url, logger=logger)
    if settings.gateway_url is not None and identity is not None:
        gateway = LegacyGatewayClient(settings.gateway_url, identity)
        clients.append(gateway)
    if settings.aid_enabled and settings.aid_base_url is not None:
        aid = GatewayAidClient(settings.aid_base_url, did)
        clients.append(aid)
    metrics = None
    if settings.metrics_port is not None:
        try:
            metrics = GuardMetrics()
        except ImportError:
            raise ConfigurationError(
                "VERIFIER_METRICS_PORT", "needs prometheus-client: pip install "
                "'spk-ownership[metrics]' (or unset it)") from None
    guard = OwnershipGuard(did=did, clients=clients, policy=settings.policy(), logger=logger,
                           metrics=metrics, push=push)
    screen = monitor.batch_status if monitor is not None and guard.cache is not None else None
    return Node(settings, guard, offer_sources(gateway=gateway, aid=aid), clients, metrics,
                push, screen)


#: Signals a terminal sends to freeze a process that reads or writes it in the background.
_TERMINAL_STOPS: Final = (signal.SIGTTIN, signal.SIGTTOU)


def _refuse_freeze() -> None:
    _LOGGER.warning("FREEZE_REFUSED: SIGTSTP (^Z) ignored: frozen, the runner could not "
                    "re-check the jobs its commands go on encoding; stop it with ^C or SIGTERM")


async def run_node(node: Node, work: CommandWork, policy: LoopPolicy) -> int:
    """Run the loop until SIGINT/SIGTERM/SIGHUP; 0 once every job has been given back or
    finished, 1 if a job could not be given back (it may stay held until T)."""
    loop = asyncio.get_running_loop()
    encoder = EncoderLoop(node.guard, work, offers=node.offers, policy=policy,
                          metrics=node.metrics, screen=node.screen)
    if node.push is not None:
        await node.push.start()  # connects in the background; polling goes on without it
    settings = node.settings
    if node.metrics is not None and settings.metrics_port is not None:
        try:
            # Names VERIFIER_METRICS_ADDR or _PORT by the failure, and logs the URL served.
            start_metrics_server(node.metrics, settings.metrics_port, settings.metrics_addr,
                                 logger=_LOGGER)
        except ConfigurationError:
            await node.aclose()
            raise
    # SIGHUP too: a closed terminal or a supervisor's hang-up is a request to stop, not a
    # reason to die with jobs held.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        loop.add_signal_handler(sig, encoder.stop)
    # ^Z would freeze the runner alone: each command runs in a session of its own (so that a
    # terminal's ^C belongs to the runner) and would encode on with nobody pinging or
    # re-checking its job, past the gateway's reassignment (adversarial review, session 36:
    # two encoders encoded one job for 7-10 s). The runner refuses to be frozen by its
    # terminal; ^C stops it gracefully. (SIGSTOP cannot be refused: a freeze longer than P is
    # outside the timing model, docs/safety-model.md.) A background read or write of the
    # terminal (SIGTTIN, SIGTTOU) would freeze it too: ignored, the write goes through.
    loop.add_signal_handler(signal.SIGTSTP, _refuse_freeze)
    terminal = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _TERMINAL_STOPS}
    try:
        _LOGGER.info("RUN_STARTED: encoder %s polling %s with up to %d job(s) at once",
                     node.guard.did, ", ".join(policy.sources), policy.concurrency)
        # What the run is actually using (secrets redacted): a value left over from another
        # shell (a sourced emulator block, say) must be visible, not silently in force.
        _LOGGER.info("SETTINGS: %s", " ".join(
            f"{k}={v}" for k, v in _with_proxies(settings).items()))
        if settings.chain != DEFAULT_CHAIN:
            _LOGGER.warning("CHAIN_NOT_HARDENED: VERIFIER_CHAIN=%s does not keep two encoders "
                            "from processing one job (docs/safety-model.md)", settings.chain)
        outcomes = await encoder.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        loop.remove_signal_handler(signal.SIGTSTP)
        for sig, handler in terminal.items():
            signal.signal(sig, handler)
        await node.aclose()
    # The commands' last stderr lines first (a killed command's last words come late), so that
    # RUN_STOPPED is the runner's last word (operator review, session 20). Every job has ended:
    # nothing is left on the event loop for this wait to hold up.
    await asyncio.to_thread(drain_relayed_stderr)
    _LOGGER.info("RUN_STOPPED: %s", ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
                 or "no job")
    return 1 if encoder.held else 0


def _with_proxies(settings: Settings) -> dict[str, str]:
    """:meth:`Settings.describe`, each tier URL in use followed by the proxy it goes through
    (from HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, which httpx honours): a proxy in force must be as
    visible as a setting (operator review)."""
    shown = settings.describe()
    for name, url, used in (
            ("GATEWAY_MONITOR_BASE_URL", settings.monitor_base_url, settings.monitor_enabled),
            ("GATEWAY_URL", settings.gateway_url, True),
            ("GATEWAY_AID_BASE_URL", settings.aid_base_url, settings.aid_enabled)):
        if used and url and (proxy := proxy_for(url)):
            shown[name] += f" (via proxy {proxy})"
    return shown


def _positive(kind: type[int] | type[float], least: float = 0.0, why: str = "") -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                "must be a whole number" if kind is int else "must be a number") from None
        if not value > 0 or value == float("inf"):  # "not >": NaN too
            # "finite": "inf" and "nan" parse as numbers, and "must be positive" is no answer
            # to an infinity (operator review).
            raise argparse.ArgumentTypeError(
                "must be a finite positive number" if kind is float else "must be positive")
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least:g} ({why})")
        return value

    return parse


def _non_negative_seconds(text: str) -> float:
    """A finite number of seconds, 0 allowed (``--cooldown 0``: try a job again at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 <= value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError("must be a finite number of seconds, 0 or more")
    return value


#: The least poll interval: an idle encoder polls the shared gateway after each one, and
#: 1e-6 s was accepted (750 polls in 2 s; an adversarial review, 2026-12-05). The live tests
#: poll every 0.3 s.
MIN_POLL_INTERVAL_S: Final = 0.1
_POLLS: Final = "each poll is a request to the shared gateway"


_RUN_EPILOG: Final = """\
exit status:
  0  stopped by SIGINT/SIGTERM/SIGHUP after giving back every job it held
  1  stopped, but a job could not be given back (logged: it may stay held until the gateway
     reassigns it)
  2  usage or configuration error (the message on stderr names the variable or option)

settings are read from the environment and ./.env (the environment wins): GATEWAY_URL,
ENCODER_PRIVATE_KEY, GATEWAY_MONITOR_ENABLED, GATEWAY_MONITOR_BASE_URL, VERIFIER_*_S, ...
"""


def add_run_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run an encoder: poll for jobs, guard each, run COMMAND as the work",
        description=(
            "Poll the configured sources for offered jobs and run COMMAND for each job the "
            "guard confirms is ours. The job is on COMMAND's stdin (JSON) and in SPK_JOB_ID, "
            "SPK_INPUT_URI and SPK_SCRATCH_DIR; COMMAND prints JSON lines {\"phase\": ...}, "
            "{\"pct\": ...} and, last, {\"cid\": ...}, and exits 0 on success. SIGINT, "
            "SIGTERM or SIGHUP: graceful shutdown (running commands stopped, held jobs "
            "released). Settings come from the environment and ./.env (timing defaults: "
            "docs/safety-model.md, \"The timing model\")."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--concurrency", type=_positive(int), default=1, metavar="N",
                     help="jobs processed at once (default: 1)")
    run.add_argument("--source", action="append", choices=OFFER_SOURCES, dest="sources",
                     help="where offered jobs come from, asked in the order given (default: "
                     "myjob and getjob with GATEWAY_URL, aid with GATEWAY_AID_ENABLED)")
    run.add_argument("--poll-interval", type=_positive(float, MIN_POLL_INTERVAL_S, _POLLS),
                     default=LoopPolicy.idle_s,
                     metavar="S", help="wait after a poll that offered nothing, a job given "
                     "up on a tier's trouble or failed work, or a second job in a row skipped "
                     "at once (taken, refused); doubled after each further one "
                     f"(default: {LoopPolicy.idle_s:g})")
    run.add_argument("--max-poll-interval", type=_positive(float, MIN_POLL_INTERVAL_S, _POLLS),
                     default=None, metavar="S",
                     help="longest wait between polls, jitter included; not below "
                     f"--poll-interval (default: {LoopPolicy.idle_max_s:g}, or the poll "
                     "interval if longer)")
    run.add_argument("--cooldown", type=_non_negative_seconds, default=LoopPolicy.cooldown_s,
                     metavar="S", help="how long a job that ended without being processed "
                     "(skipped, cancelled, failed) is not tried again; the time a job "
                     "skipped on a lagging read waits (default: "
                     f"{LoopPolicy.cooldown_s:g})")
    run.add_argument("--scratch", metavar="DIR",
                     help="where each job's scratch directory is made (default: the system's "
                     "temporary directory)")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="log every protocol decision (default: the loop's and the outcomes)")
    run.add_argument("work_command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]",
                     help="the work: any program; see the description")


def cmd_run(args: argparse.Namespace) -> int:
    """The ``run`` subcommand. Exit status: 0 after a graceful shutdown, 2 on a usage or
    configuration error (message on stderr, naming the variable or option)."""
    command: list[str] = list(args.work_command)
    if command[:1] == ["--"]:
        command = command[1:]
    longest = args.max_poll_interval
    if longest is not None and longest < args.poll_interval:
        # Raised silently, it ran with a longest wait the operator did not ask for
        # (adversarial review, session 36).
        print(f"python -m verifier run: error: --max-poll-interval {longest:g} is below "
              f"--poll-interval {args.poll_interval:g}: the longest wait between polls cannot "
              "be shorter than the first", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not args.verbose:
        logging.getLogger("verifier.guard").setLevel(logging.WARNING)
    # Through a queue and a thread: a stderr nobody drains must not stop the event loop, whose
    # timers keep every lease (verifier._log_sink).
    with queued_logging(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s"):
        try:
            return _run(args, command)
        finally:
            drain_relayed_stderr()  # the commands' last stderr lines, before our last word


def _run(args: argparse.Namespace, command: list[str]) -> int:
    try:
        settings = Settings.from_env()
        if settings.monitor_enabled and settings.monitor_url_defaulted:
            _LOGGER.warning("GATEWAY_MONITOR_BASE_URL is unset: verifying against the "
                            "production monitor (%s)", settings.monitor_base_url)
        work = CommandWork(command, cancel_latency=settings.timing.cancel_latency,
                           scratch_root=args.scratch)
        node = open_node(settings)
    except ConfigurationError as exc:
        print(f"python -m verifier run: error: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        idle_max = args.max_poll_interval
        if idle_max is None:
            idle_max = max(LoopPolicy.idle_max_s, args.poll_interval)
        policy = LoopPolicy(
            sources=tuple(args.sources or node.default_sources()),
            concurrency=args.concurrency, idle_s=args.poll_interval, idle_max_s=idle_max,
            cooldown_s=args.cooldown)
        if any(s not in node.offers for s in policy.sources):
            missing = [s for s in policy.sources if s not in node.offers]
            raise ValueError(f"--source {', '.join(missing)}: not configured (myjob and getjob "
                             "need GATEWAY_URL, aid needs GATEWAY_AID_ENABLED)")
    except ValueError as exc:
        asyncio.run(node.aclose())
        print(f"python -m verifier run: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_node(node, work, policy))
    except ConfigurationError as exc:
        print(f"python -m verifier run: error: configuration error: {exc}", file=sys.stderr)
        return 2

