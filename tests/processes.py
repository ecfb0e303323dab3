"""What the tests of user commands need to know about a process: is it still running?"""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie (dead, left for a container's init to reap) runs
    nothing, so it counts as stopped: ``os.kill(pid, 0)`` would say it exists."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before we opened it, or while we read
        return False
    return "\nState:\tZ" not in status
