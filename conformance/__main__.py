"""``python -m conformance explore``: bounded exhaustive exploration (``conformance.explore``).

Usage::

    python -m conformance explore --chain NAME [--frame NAME ...] [--encoders N] [--jobs M]
        [--depth D] [--values 2|3] [--limit K] [--all] [--json PATH] [--expect clean|violated]

``--chain`` is a built-in chain (``hardened``, ``documented``, ``hardened-without-<step>``,
...), a misbelief canary (``believes-Δ-smaller``, ``settle-without-ε``, ...) or
``settle-from-decision`` (the old settle rule); it may be repeated. ``--frame`` picks the
worlds (default: every frame). The report prints, per frame and chain, the schedules explored,
the distinct states, the choice sites reached, the time, and for a violation its minimal
schedule, its timeline and the ``sim replay`` command that reproduces it.

Exit status: 0; 1 when ``--expect`` is given and some exploration's verdict differs from it
(``clean``: every schedule of the scope ran, none violated; an exploration stopped by
``--limit`` is not clean; ``violated``: one found), one line per mismatch on stderr; 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .explore import FRAMES, Exploration, explore, iter_lines, subject, subject_names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance")
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser("explore", help="enumerate every schedule of a small world",
                             description=__doc__.split("\n\n")[0] if __doc__ else None)
    ex.add_argument("--chain", action="append", required=True, metavar="NAME",
                    help="chain, misbelief, settle-from-decision or no-settle-after-atomic-claim "
                         "(repeatable); known: "
                         + ", ".join(subject_names()))
    ex.add_argument("--frame", action="append", choices=sorted(FRAMES), metavar="NAME",
                    help="world frame (repeatable; default: all): "
                         + "; ".join(f"{f.name}: {f.doc}" for f in FRAMES.values()))
    ex.add_argument("--encoders", type=int, default=2, help="encoders (default 2)")
    ex.add_argument("--jobs", type=int, default=1, help="jobs (default 1)")
    ex.add_argument("--depth", type=int, default=2,
                    help="most deviations from the default run per schedule (default 2)")
    ex.add_argument("--values", type=int, default=2, choices=(2, 3),
                    help="values per choice: top and bottom, or with the middle (default 2)")
    ex.add_argument("--limit", type=int, default=None,
                    help="stop after this many schedules per exploration (reported)")
    ex.add_argument("--all", action="store_true",
                    help="go on after the first violation (default: stop at the minimal one)")
    ex.add_argument("--no-prune", action="store_true", help="no state hashing")
    ex.add_argument("--json", type=Path, metavar="PATH", help="write every report as JSON")
    ex.add_argument("--expect", choices=("clean", "violated"),
                    help="exit 1 unless every exploration has this verdict")
    args = parser.parse_args(argv)
    if args.encoders < 2 or args.jobs < 1 or args.depth < 0:
        parser.error("--encoders must be at least 2, --jobs at least 1, --depth at least 0")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1 (a schedule)")
    try:
        subjects = [subject(name) for name in args.chain]
    except ValueError as exc:
        parser.error(f"--chain: {exc}")
    reports: list[Exploration] = []
    for frame in args.frame or sorted(FRAMES):
        for who in subjects:
            def progress(r: Exploration) -> None:
                print(f"  ... {r.schedules:,} schedules, {r.seconds:.0f}s", file=sys.stderr,
                      flush=True)
            report = explore(FRAMES[frame], who, encoders=args.encoders, jobs=args.jobs,
                             depth=args.depth, values=args.values, limit=args.limit,
                             stop_at_first=not args.all, prune=not args.no_prune,
                             progress=progress)
            reports.append(report)
            for line in iter_lines(report):
                print(line, flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([r.as_dict() for r in reports], indent=2,
                                        ensure_ascii=False) + "\n", encoding="utf-8")
    if args.expect is None:
        return 0
    # Clean means every schedule of the scope ran clean: an exploration stopped at --limit
    # before a violation is not (it passed "--expect clean" after 0 of its schedules, or
    # after 3 of a chain caught at depth 1: a review of the explorer, session 24).
    wrong = [r for r in reports if (r.violations and args.expect == "clean")
             or (not r.violations and (args.expect == "violated" or not r.complete))]
    for r in wrong:
        print(f"expected {args.expect}: {r.chain} in frame {r.frame!r}: {r.verdict}",
              file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
