"""sim.live: the simulated world served over real HTTP, and live encoders running the real guard.

The simulator proves the protocol; live runs prove the code around it (the production
``OwnershipGuard``, its httpx pools, timeouts, JWS signatures and cancellation) under real
sockets. Nothing here is a second model of the network: the emulated servers answer from the
simulator's own ``World`` (``LiveWorld`` runs it in real time), and the history the live
encoders record is judged by the simulator's checkers.

* ``_http_server.py``  a small asyncio HTTP/1.1 server on h11 (resets, restarts, 400/413)
* ``_emulator.py``     the Gateway Monitor API, the legacy gateway and Gateway Aid, one port each
* ``_world.py``        ``LiveWorld``: the SimPy world caught up with the clock before each request
* ``_collection.py``   ``WorldCollection``: the world's jobs as a pymongo collection
* ``_encoders.py``     ``run_live``: live encoders, recorded in the simulator's history format
* ``_cli.py``          ``python -m sim live`` and ``python -m sim serve``
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._cli import add_parsers, cmd_live, cmd_serve
    from ._collection import UpdateResult, WorldCollection
    from ._emulator import Emulator, HttpFaults
    from ._encoders import LiveOptions, LiveResult, RecordingTier, open_fds, run_live
    from ._http_server import RESET, HttpServer, Request, Response
    from ._world import LiveWorld

# Loaded on first use (PEP 562): ``python -m sim run`` imports the command module of ``live``
# for its flags, and should not pay for httpx, h11 and mongomock unless a live command runs.
_WHERE = {
    "UpdateResult": "_collection", "WorldCollection": "_collection",
    "Emulator": "_emulator", "HttpFaults": "_emulator",
    "FEATURES": "_encoders", "LiveOptions": "_encoders", "LiveResult": "_encoders",
    "RecordingTier": "_encoders",
    "open_fds": "_encoders", "run_live": "_encoders",
    "RESET": "_http_server", "HttpServer": "_http_server", "Request": "_http_server",
    "Response": "_http_server",
    "LiveWorld": "_world",
    "add_parsers": "_cli", "cmd_live": "_cli", "cmd_serve": "_cli",
}

__all__ = [
    "FEATURES",
    "RESET",
    "Emulator",
    "HttpFaults",
    "HttpServer",
    "LiveOptions",
    "LiveResult",
    "LiveWorld",
    "RecordingTier",
    "Request",
    "Response",
    "UpdateResult",
    "WorldCollection",
    "add_parsers",
    "cmd_live",
    "cmd_serve",
    "open_fds",
    "run_live",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
