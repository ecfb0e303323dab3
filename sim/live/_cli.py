"""``python -m sim live`` and ``python -m sim serve``: the emulator, with and without encoders.

``live``
    starts the emulated servers and N live encoders (the production guard and httpx clients),
    runs until every job is committed or failed, and prints the report of ``run`` (same table,
    same JSON and CSV), plus the figures only a live run has: wall time, verifications per
    second, verification latency, faults injected, sockets and descriptors left open.
    ``--fail-on-violation`` with ``--expect CHAIN=safe|unsafe`` is the release gate of
    ``run`` (one implementation, :func:`sim._commandline.apply_gate`).
``serve``
    starts the emulated servers alone, prints the environment an encoder needs as one block
    a shell can source (the monitor switched on, ``GATEWAY_MONITOR_BASE_URL``,
    ``GATEWAY_URL``, ``GATEWAY_AID_BASE_URL``, the scenario's ``VERIFIER_*_S`` bounds) and the
    job ids, and serves until interrupted (or ``--duration``). ``--completed JOB=DID`` adds a
    job already completed by DID, to try ``python -m verifier check JOB --did DID`` against.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import math
import os
import secrets
import shlex
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from verifier import TIMING_VARIABLES, InvalidInputError, validate_did, validate_job_id

from .._columns import epilog
from .._commandline import (
    apply_gate,
    check_writable,
    expectations,
    gate_flags,
    output_flags,
    progress_for,
    resolve,
    scenario_flags,
    scenario_from_args,
    write,
    write_rows,
)
from .._report import (
    build_run_report,
    dumps_report,
    format_table,
    summarize_run,
)
from .._scenario_files import UsageError

if TYPE_CHECKING:  # the emulator, httpx and h11 load only for `live` and `serve`
    from ._emulator import HttpFaults
    from ._encoders import LiveResult
__all__ = ["add_parsers", "cmd_live", "cmd_serve"]

LIVE_CHAINS: Final = ("trust-gateway", "documented", "hardened")
#: ``sim serve -- COMMAND``'s exit status when the encoder exited 0 but not every job was
#: committed (stopped at ``--duration``, or jobs failed for good).
NOT_ALL_COMMITTED: Final = 1


def _seconds_pair(text: str) -> tuple[float, float]:
    try:
        at, _, down = text.partition(":")
        pair = (float(at), float(down or "2"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected AT:LENGTH in seconds, got {text!r}") from None
    if not all(math.isfinite(x) for x in pair) or pair[0] < 0 or pair[1] <= 0:
        raise argparse.ArgumentTypeError("AT must be >= 0 and LENGTH > 0 (finite seconds)")
    return pair


def _port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535: bind() raises OverflowError past that."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port must be 0-65535, got {port}")
    return port


def _seconds(*, zero: bool) -> Any:
    """An argparse type: finite seconds, > 0 (or >= 0 with ``zero``). ``float()`` accepts
    ``nan`` and ``inf``, which pass a ``<= 0`` check (NaN compares false) and then make a
    timeout meaningless: ``--duration nan`` stopped serve at once, ``--client-timeout nan``
    crashed in the clients' own check."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            bound = ">= 0" if zero else "> 0"
            raise argparse.ArgumentTypeError(f"expected finite seconds {bound}, got {text!r}")
        return value

    return parse


def _fault_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("transport faults (per request, from the seed)")
    group.add_argument("--reset-rate", type=float, default=0.0, metavar="P",
                       help="share of requests answered by a connection reset")
    group.add_argument("--rate-limit-rate", type=float, default=0.0, metavar="P",
                       help="share of requests answered 429 with Retry-After")
    group.add_argument("--retry-after", type=int, default=1, metavar="S",
                       help="the Retry-After of those 429s (default: %(default)s)")
    group.add_argument("--rate-limit-storm", type=_seconds_pair, metavar="AT:FOR",
                       help="the monitor answers every REST request 429 (with --retry-after) "
                            "from AT seconds into the run, for FOR seconds (e.g. 5:10)")
    group.add_argument("--slow-rate", type=float, default=0.0, metavar="P",
                       help="share of answers delayed by --slow-s (past the client timeout)")
    group.add_argument("--slow-s", type=_seconds(zero=True), default=3.0, metavar="S",
                       help="delay of a slow answer (default: %(default)s)")


def _faults(args: argparse.Namespace) -> HttpFaults:
    from ._emulator import HttpFaults

    faults = HttpFaults(reset_rate=args.reset_rate, rate_limit_rate=args.rate_limit_rate,
                        retry_after_s=args.retry_after, slow_rate=args.slow_rate,
                        slow_s=args.slow_s, rate_limit_storm=args.rate_limit_storm)
    problems = faults.problems()
    if problems:
        raise UsageError("transport faults: " + "; ".join(problems))
    return faults


def add_parsers(sub: Any) -> None:
    live = sub.add_parser(
        "live", help="the production guard and clients against emulated servers, over HTTP",
        description="Serve the emulated monitor, gateway and aid on loopback and run live "
                    "encoders (the production OwnershipGuard with real httpx clients) "
                    "against them; check and report the history like `run`.",
        epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    # Without --chain: the three headline chains (each live run takes real seconds; the
    # ablations are one --chain away).
    scenario_flags(live, many_chains=True, chains_default=", ".join(LIVE_CHAINS))
    live.set_defaults(scenario="live", default_chains=list(LIVE_CHAINS))
    live.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here")
    live.add_argument("--csv", type=Path, metavar="PATH",
                      help="write one CSV row per chain here")
    live.add_argument("--monitor-restart", type=_seconds_pair, metavar="AT:DOWN_FOR",
                      help="stop the monitor AT seconds into the run, restart it DOWN_FOR "
                           "seconds later (e.g. 3:2)")
    live.add_argument("--client-timeout", type=_seconds(zero=False), default=2.0, metavar="S",
                      help="every HTTP client's timeout (default: %(default)s)")
    live.add_argument("--processes", type=int, default=1, metavar="N",
                      help="processes running encoders, the emulator's included (default: "
                           "%(default)s; 2 uses both cores of a 2-core machine for 200 "
                           "encoders)")
    live.add_argument("--verbose", action="store_true",
                      help="log every guard decision to stderr")
    live.add_argument("--dashboard", type=Path, metavar="PATH",
                      help="write a self-contained HTML dashboard here: verification success "
                      "per tier over the run, conflicts prevented, latency percentiles (the "
                      "figures of the JSON report's 'dashboard' section)")
    live.add_argument("--metrics-port", type=int, metavar="PORT",
                      help="serve the encoders' Prometheus metrics on 127.0.0.1:PORT during "
                      "each chain's run: those of the emulator's process only (with "
                      "--processes N, not the other processes' encoders), a fresh registry "
                      "per chain with no chain label (run one chain to watch it), and "
                      "served only while the run lasts (the JSON report has the totals)")
    features = live.add_argument_group(
        "cost features (all on by default; docs/enhancements.md): switch one off to measure "
        "what it buys on the same seed")
    features.add_argument("--no-cache", action="store_true",
                          help="no status cache: every pre-claim check reads its tier")
    features.add_argument("--no-batch", action="store_true",
                          help="no batch screening of several offered jobs")
    features.add_argument("--no-push", action="store_true",
                          help="no push subscription (WebSocket): losses are found by polling")
    features.add_argument("--no-backoff", action="store_true",
                          help="retries wait a fixed retry_interval, not a jittered backoff")
    gate_flags(live)
    _fault_flags(live)
    output_flags(live)

    serve = sub.add_parser(
        "serve", help="serve the emulated monitor, gateway and aid on loopback",
        description="Serve the emulated services over the scenario's jobs until interrupted.")
    serve.add_argument("--scenario", default="live", metavar="NAME|PATH",
                       help="scenario (default: %(default)s)")
    serve.add_argument("--seed", type=int, default=1, metavar="N")
    serve.add_argument("--jobs", type=int, metavar="N", help="override: jobs")
    serve.add_argument("--lie-rate", type=float, metavar="P", help="override: lie_rate")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    for name in ("monitor", "gateway", "aid"):
        serve.add_argument(f"--{name}-port", type=_port, default=0, metavar="PORT",
                           help=f"{name} port (default: a free one)")
    serve.add_argument("--completed", action="append", default=[], metavar="JOB=DID",
                       help="add a job already completed by DID (repeatable)")
    serve.add_argument("--assigned", action="append", default=[], metavar="JOB=DID",
                       help="add a job pre-assigned to DID: the gateway offers it to that "
                       "encoder alone (myJob) until it is held (repeatable)")
    serve.add_argument("--duration", type=_seconds(zero=True), metavar="S",
                       help="stop after S seconds (default: until interrupted)")
    serve.add_argument("--metrics-port", type=int, metavar="PORT",
                       help="with -- COMMAND: the encoder serves its Prometheus metrics on "
                       "127.0.0.1:PORT (VERIFIER_METRICS_PORT in its environment)")
    _fault_flags(serve)
    serve.add_argument(
        "encoder_command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]",
        help="run COMMAND (an encoder: python -m verifier run -- ...) with the block's "
        "variables in its environment (and a throwaway ENCODER_PRIVATE_KEY when none is set); "
        "once every job is done, stop it with SIGTERM and exit with its status")


# --------------------------------------------------------------------------- live


def _live_line(live: LiveResult) -> str:
    d = live.to_dict()
    p50, p99 = d["verify_latency_p50_ms"], d["verify_latency_p99_ms"]
    lat = "-" if p50 is None else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    faults = ", ".join(f"{k} {v}" for k, v in d["injected_faults"].items() if v) or "none"
    loss = d["loss_detection_s"]
    detect = "-" if loss["p50"] is None else (
        f"p50 {loss['p50']:.2f} s, p99 {loss['p99']:.2f} s (n={loss['n']})")
    rate = d["retry_requests_per_encoder_s"]
    outage = "no monitor outage" if rate is None else (
        f"{rate:.2f} monitor requests/encoder/s during {d['outage_s']:.0f} s of outage")
    return (f"wall {d['wall_s']:.1f} s; {d['verifications']} verifications "
            f"({d['verifications_per_s']:.0f}/s), latency {lat}; transport faults: {faults}; "
            f"bad signatures refused {d['bad_signatures']}; server connections left open "
            f"{d['open_connections_end']}; features {','.join(d['features']) or 'none'}: "
            f"{d['monitor_requests_per_job']:.2f} monitor and "
            f"{d['gateway_requests_per_job']:.2f} gateway requests/job, loss detection "
            f"{detect}, {outage}")


def _check_listenable(flag: str, host: str, port: int) -> None:
    """Refuse a port nothing can listen on now, before any run starts (a busy port used to
    end ``sim live`` with a traceback once the emulator was up: operator review, session 15).
    Bound as the exporter binds (address reuse on), then closed at once."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            raise UsageError(f"{flag}: cannot listen on {host}:{port}: "
                             f"{exc.strerror or exc}") from None


def cmd_live(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    from ._encoders import LiveOptions, run_live

    plan = resolve(args)
    expected = expectations(args, plan)
    check_writable(args.json, args.csv, args.dashboard)
    if args.metrics_port is not None:
        if not 0 < args.metrics_port < 65536:
            raise UsageError("--metrics-port must be a port number 1-65535")
        _check_listenable("--metrics-port", "127.0.0.1", args.metrics_port)
    if args.client_timeout <= 0:
        raise UsageError("--client-timeout must be positive")
    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    options = LiveOptions(faults=_faults(args), monitor_restart=args.monitor_restart,
                          client_timeout=args.client_timeout, verbose=args.verbose,
                          processes=args.processes, metrics_port=args.metrics_port,
                          features=frozenset(
                              f for f in ("cache", "batch", "push", "backoff")
                              if not getattr(args, f"no_{f}")))
    if args.verbose:
        import logging
        logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f %(message)s")
    seed = plan.seeds[0]
    progress = progress_for(args, len(plan.chains), err)
    runs: dict[str, Any] = {}
    lives: dict[str, LiveResult] = {}
    for index, chain in enumerate(plan.chains):
        def tick(t: float, finished: int, jobs: int, index: int = index,
                 chain: str = chain) -> None:
            progress.update(index + finished / max(jobs, 1),
                            f"{chain} live: {finished}/{jobs} jobs, {t:.0f} s")

        result = asyncio.run(run_live(plan.scenario, chain, seed, options=options,
                                      progress=tick))
        lives[chain] = result
        summary = summarize_run(result.run)
        summary.entry["live"] = result.to_dict()
        runs[chain] = [summary]
        progress.finished(index + 1, f"{chain} live: done")
    progress.close()
    report = build_run_report(scenario=plan.scenario, ref=plan.ref, overrides=plan.overrides,
                              seeds=[seed], runs=runs, command=command)
    # Real time is not replayable: point at the command instead of a `replay` line.
    report["replay"] = None
    report["rerun"] = command
    report["faults"] = {**dataclasses.asdict(options.faults),
                        "monitor_restart": list(args.monitor_restart or []) or None}
    for chain in report["chains"]:
        report["chains"][chain]["replay"] = None
        report["chains"][chain]["dashboard"] = lives[chain].dashboard
    written: list[str] = []
    if args.dashboard is not None:
        from ._dashboard import render_dashboard

        write(args.dashboard, render_dashboard(report))
        written.append(str(args.dashboard))
    if args.json is not None:
        write(args.json, dumps_report(report))
        written.append(str(args.json))
    if args.csv is not None:
        rows = []
        for chain in plan.chains:
            entry = runs[chain][0].entry
            row = {"chain": chain, **entry, **entry["live"]}
            for key in ("violations", "outcomes", "live", "injected_faults", "requests",
                        "verify_latency_by_tier_ms", "features"):
                row.pop(key, None)
            for key in ("loss_detection_s", "recovery_s"):
                figures = row.pop(key)
                row.update({f"{key}_{k}": v for k, v in figures.items()})
            rows.append(row)
        write_rows(args.csv, rows)
        written.append(str(args.csv))
    if not args.quiet:
        sc = plan.scenario
        lines = [
            f"live: scenario {sc.name}: {sc.encoders} encoders, {sc.jobs} jobs, lie_rate "
            f"{sc.lie_rate:g}, over HTTP on loopback; seed {seed}",
            "",
            format_table([(chain, report["chains"][chain]) for chain in plan.chains]),
            "",
            *(f"{chain}: {_live_line(lives[chain])}" for chain in plan.chains),
            *(f"warning: {p}" for p in report["timing_problems"]),
            f"seed: {seed} (a live run is real time: the seed fixes the world, keys and work, "
            "not the interleaving; it is not replayable byte for byte)",
            f"rerun: {command}",
            *(f"wrote {path}" for path in written),
        ]
        out.write("\n".join(lines) + "\n")

    def reproduce(chain: str, seed: int, job: str | None) -> str:
        # Real time is not replayable: the command to run again, and the job to look at.
        return f"rerun: {command}" + (f" (first offending job: {job})" if job else "")

    return apply_gate(expected, runs, command="live", reproduce=reproduce, out=out, err=err,
                      quiet=args.quiet)


# --------------------------------------------------------------------------- serve


def _job_dids(flag: str, texts: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for text in texts:
        job, sep, did = text.partition("=")
        if not sep:
            raise UsageError(f"{flag}: expected JOB=DID, got {text!r}")
        try:
            pairs.append((validate_job_id(job), validate_did(did)))
        except InvalidInputError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return pairs


async def _serve(args: argparse.Namespace, out: TextIO) -> int:
    if args.seed < 0:  # as `run` and `replay` refuse it: a seed is a non-negative integer
        raise UsageError(f"--seed: must be >= 0, got {args.seed}")
    scenario, _ = scenario_from_args(args)
    completed = _job_dids("--completed", args.completed)
    assigned = _job_dids("--assigned", args.assigned)
    command = list(args.encoder_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.encoder_command and not command:
        raise UsageError("--: give the encoder's command after it")
    if args.metrics_port is not None and (not command or not 0 < args.metrics_port < 65536):
        raise UsageError("--metrics-port: a port number 1-65535, with -- COMMAND (the encoder "
                         "serves the metrics)")
    from ._emulator import Emulator
    from ._world import LiveWorld

    live = LiveWorld(scenario, args.seed)
    emulator = Emulator(live, faults=_faults(args), host=args.host, ports={
        "monitor": args.monitor_port, "gateway": args.gateway_port, "aid": args.aid_port})
    try:
        await emulator.start()
    except OSError as exc:
        await emulator.stop()
        raise UsageError(f"cannot listen on {args.host}: {exc.strerror or exc}") from None
    try:
        for flag, pairs, add in (("--completed", completed, live.add_completed),
                                 ("--assigned", assigned, live.add_assigned)):
            for job, did in pairs:
                try:
                    add(job, did)
                except ValueError as exc:
                    raise UsageError(f"{flag}: {exc}") from None
        out.write(_environment_block(scenario, args.seed, emulator, list(live.job_ids),
                                     completed, assigned, encoder=bool(command)))
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if command:
            return await _serve_encoder(command, args, emulator, live, stop, out)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        await emulator.stop()
    return 0


async def _serve_encoder(command: list[str], args: argparse.Namespace, emulator: Any,
                         live: Any, stop: asyncio.Event, out: TextIO) -> int:
    """Run the encoder's command against the servers; stop it (SIGTERM: its graceful
    shutdown) once every job is done, at ``--duration``, or on our own SIGINT/SIGTERM, and
    return its exit status."""
    env = {**os.environ, **_variables(emulator, live.scenario)}
    # The emulator has no database. The encoder reads the `.env` of its directory for what
    # its environment leaves unset, and a production `.env` there switched the database tier
    # on against a server it could not reach, forever (found by an operator review, session
    # 14): set here, the environment wins.
    env.update(MONGODB_VERIFICATION_ENABLED="false", MONGODB_URI="")
    if args.metrics_port is not None:
        env["VERIFIER_METRICS_PORT"] = str(args.metrics_port)
        # Loopback, as said below and in --help: an address left in the environment or the
        # directory's .env (0.0.0.0 from a production block) served on every interface, and
        # the URL printed was not the one served (review).
        env["VERIFIER_METRICS_ADDR"] = "127.0.0.1"
        out.write(f"# encoder metrics: http://127.0.0.1:{args.metrics_port}/metrics\n")
        out.flush()
    if not env.get("ENCODER_PRIVATE_KEY"):
        # A throwaway identity for this run, never printed (it is a credential, if a toy one).
        env["ENCODER_PRIVATE_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=env)
    except OSError as exc:
        raise UsageError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())

    async def all_done() -> None:
        while not live.call(lambda: live.done):  # noqa: ASYNC110 (the world has no event loop hook)
            await asyncio.sleep(0.2)

    finished = asyncio.ensure_future(all_done())
    waits = {exited, stopping, finished}
    try:
        await asyncio.wait(waits, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopping, finished):
            task.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        status = await exited
    world = live.world
    committed = len(world.committed)
    out.write(f"# served: {world.finished} of {len(world.jobs)} jobs done ({committed} "
              f"committed, {world.finished - committed} failed for good); encoder exited "
              f"with status {status}\n")
    out.flush()
    if status != 0:
        return status if status >= 0 else 128 - status
    # The encoder's clean exit is not the run's success: it also exits 0 when it was stopped
    # at --duration with jobs left, or when its command failed every job for good. A CI job
    # that smoke-tests an encoder with `sim serve` must see that (an operator review found
    # serve answering 0 with nothing committed).
    return 0 if committed == len(world.jobs) else NOT_ALL_COMMITTED


def _variables(emulator: Any, scenario: Any) -> dict[str, str]:
    """What an encoder needs to work against the emulator as is: the monitor switched on, the
    three URLs, and the timing model of the *scenario* (its T is seconds, not the production
    minutes: an encoder told the production bounds would see its job requeued before its
    lease ends)."""
    timing = scenario.timing_model()
    return {
        "GATEWAY_MONITOR_ENABLED": "true",
        "GATEWAY_MONITOR_BASE_URL": emulator.monitor_url,
        "GATEWAY_URL": emulator.gateway_url,
        "GATEWAY_AID_BASE_URL": emulator.aid_url,
        **{variable: f"{getattr(timing, field):g}"
           for field, variable in TIMING_VARIABLES.items()},
    }


def _environment_block(scenario: Any, seed: int, emulator: Any, jobs: list[str],
                       completed: list[tuple[str, str]], assigned: list[tuple[str, str]],
                       *, encoder: bool = False) -> str:
    """:func:`_variables` as one block a shell can source (``eval "$(...)"`` or copy), then
    the jobs served."""
    lines = [f"# sim serve: scenario {scenario.name} ({scenario.jobs} jobs), seed {seed}; "
             "source this block to point an encoder here"]
    lines += [f"export {name}={shlex.quote(value)}"
              for name, value in _variables(emulator, scenario).items()]
    shown = " ".join(jobs[:10]) + (f" (and {len(jobs) - 10} more)" if len(jobs) > 10 else "")
    lines.append(f"# jobs: {shown or '(none yet)'}")
    lines += [f"# completed: {job} by {did}" for job, did in completed]
    lines += [f"# assigned: {job} to {did} (offered by myJob to that encoder only)"
              for job, did in assigned]
    lines.append("# running the encoder; it is stopped (SIGTERM) once every job is done"
                 if encoder else "# stop with Ctrl-C")
    return "\n".join(lines) + "\n"


def cmd_serve(args: argparse.Namespace, command: str, out: TextIO, err: TextIO) -> int:
    return asyncio.run(_serve(args, out))
