#!/usr/bin/env python3
"""A stand-in encoder command for ``python -m verifier run -- COMMAND`` (standard library only).

It speaks the command contract of ``verifier/_command.py`` and does no real encoding: it reads
the job (JSON on stdin; also ``SPK_JOB_ID``, ``SPK_INPUT_URI``, ``SPK_SCRATCH_DIR``), reports
each phase and its progress as JSON lines on stdout, writes a file into its scratch directory
as a real encoder would, and prints the result ``{"cid": ...}`` as its last line.

Replace it with your own program (an ffmpeg wrapper, say): keep the stdout lines, and exit 0
only when the upload is done. ``SPK_DEMO_SECONDS`` sets the whole run's length (default 3).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def say(**message: object) -> None:
    print(json.dumps(message), flush=True)  # one JSON object per line, flushed at once


def main() -> int:
    job = json.load(sys.stdin)
    seconds = float(os.environ.get("SPK_DEMO_SECONDS", "3"))
    steps = 4
    for phase in ("download", "encode", "upload"):
        say(phase=phase)
        for step in range(1, steps + 1):
            time.sleep(seconds / (3 * steps))
            pct = 100 * step / steps
            say(download_pct=pct) if phase == "download" else say(pct=pct)
    scratch = os.environ["SPK_SCRATCH_DIR"]
    with open(os.path.join(scratch, "output.m3u8"), "w", encoding="utf-8") as out:
        out.write(f"#EXTM3U\n# {job['id']} from {os.environ.get('SPK_INPUT_URI', '')}\n")
    say(cid="bafy" + hashlib.sha256(job["id"].encode()).hexdigest()[:40])
    return 0


if __name__ == "__main__":
    sys.exit(main())
