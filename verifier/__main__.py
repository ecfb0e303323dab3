"""``python -m verifier``: see :mod:`verifier._cli` for the commands and exit status."""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
