"""``python -m sim`` and the ``spk-sim`` console script: see :mod:`sim._cli`."""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
