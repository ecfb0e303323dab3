"""``open_node`` and ``Node`` (:mod:`verifier._node`): what ``python -m verifier run`` builds
from the settings, in process. The end-to-end runs are in ``tests/live/test_runner.py``;
these pin what they cannot see quickly: each configuration error by the variable it names,
which clients and features each setting switches on, and a close that reaches every client
(session 39: no test of this module ran in under a minute, and a close that skipped the
clients passed them all)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from verifier import (
    ConfigurationError,
    DatabaseTier,
    EncoderIdentity,
    GatewayAidClient,
    GatewayMonitorService,
    JobPushClient,
    LegacyGatewayClient,
    Settings,
)
from verifier._loop import OFFER_SOURCES
from verifier._node import Node, open_node

KEY = base64.b64encode(b"k" * 32).decode()
DID = EncoderIdentity.from_seed(b"k" * 32).did
GATEWAY = {"ENCODER_PRIVATE_KEY": KEY, "GATEWAY_URL": "http://gateway.test/api/v0/gateway",
           "MONGODB_VERIFICATION_ENABLED": "true", "MONGODB_URI": "mongodb://db.test/jobs"}


def _node(**env: str) -> Node:
    return open_node(Settings.from_env({**GATEWAY, **env}, dotenv=None))


@pytest.mark.parametrize(("env", "variable"), [
    ({"VERIFIER_CHAIN": "documented"}, "VERIFIER_CHAIN"),
    ({"ENCODER_PRIVATE_KEY": "", "GATEWAY_URL": ""}, "ENCODER_PRIVATE_KEY"),  # no DID
    ({"ENCODER_PRIVATE_KEY": "", "ENCODER_DID": DID}, "ENCODER_PRIVATE_KEY"),
    ({"GATEWAY_URL": ""}, "GATEWAY_URL"),
])
def test_a_node_that_cannot_run_is_refused_naming_the_variable(
        env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _node(**env)
    assert info.value.variable == variable


def test_an_unsafe_chain_runs_only_when_allowed_in_so_many_words() -> None:
    node = _node(VERIFIER_CHAIN="documented", VERIFIER_ALLOW_UNSAFE_CHAIN="true")
    assert node.settings.chain == "documented"


@pytest.mark.asyncio
async def test_each_setting_switches_on_its_client_and_feature() -> None:
    plain = _node()
    try:
        assert [type(c) for c in plain.clients] == [DatabaseTier, LegacyGatewayClient]
        assert plain.push is None and plain.screen is None and plain.metrics is None
        assert plain.default_sources() == ("myjob", "getjob")
    finally:
        await plain.aclose()
    full = _node(GATEWAY_MONITOR_ENABLED="true", VERIFIER_PUSH="true",
                 VERIFIER_STATUS_CACHE_S="2", GATEWAY_AID_ENABLED="true",
                 GATEWAY_AID_BASE_URL="http://aid.test/aid/v1", VERIFIER_METRICS_PORT="9109")
    try:
        assert [type(c) for c in full.clients] == [
            DatabaseTier, GatewayMonitorService, LegacyGatewayClient, GatewayAidClient]
        assert isinstance(full.push, JobPushClient) and full.guard.push is full.push
        assert full.screen is not None and full.metrics is not None
        assert list(full.default_sources()) == sorted(full.offers, key=OFFER_SOURCES.index)
        assert len(full.offers) > len(plain.offers)  # aid's too
    finally:
        await full.aclose()


@pytest.mark.asyncio
async def test_a_node_on_gateway_aid_alone_has_no_gateway_client() -> None:
    node = _node(GATEWAY_URL="", GATEWAY_AID_ENABLED="true",
                 GATEWAY_AID_BASE_URL="http://aid.test/aid/v1")
    try:
        assert [type(c) for c in node.clients] == [DatabaseTier, GatewayAidClient]
        assert node.offers and "myjob" not in node.offers
    finally:
        await node.aclose()
    # Aid's URL alone (left in a .env) switches nothing on: GATEWAY_AID_ENABLED does.
    gateway_only = _node(GATEWAY_AID_BASE_URL="http://aid.test/aid/v1")
    try:
        assert [type(c) for c in gateway_only.clients] == [DatabaseTier, LegacyGatewayClient]
    finally:
        await gateway_only.aclose()


@pytest.mark.asyncio
async def test_a_close_reaches_the_push_and_every_client_whatever_fails() -> None:
    closed: list[str] = []

    class Closing:
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        async def aclose(self) -> None:
            closed.append(self.name)
            if self.fails:
                raise RuntimeError("close failed")

    node = Node(settings=Settings.from_env(GATEWAY, dotenv=None), guard=Any,  # type: ignore[arg-type]
                offers={}, clients=[Closing("database"), Closing("monitor", fails=True),
                                    Closing("gateway")],
                push=Closing("push", fails=True))  # type: ignore[arg-type]
    await node.aclose()
    assert closed == ["push", "gateway", "monitor", "database"]


def test_a_configuration_error_found_at_start_exits_2_naming_it(tmp_path: Path) -> None:
    """A supervisor tells "fix the settings" (2) from a job left held (1) by the exit status:
    a metrics port already taken is found only when the run starts (session 39: returning 0,
    1 or 3 there passed every test)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # The environment as it is (PYTHONPATH: the code under test, a mutant's copy too),
        # less any setting of the machine's.
        env = {**{k: v for k, v in os.environ.items()
                  if not k.startswith(("GATEWAY_", "ENCODER_", "VERIFIER_", "MONGODB_"))},
               **GATEWAY, "MONGODB_VERIFICATION_ENABLED": "false",
               "GATEWAY_MONITOR_ENABLED": "true",
               "VERIFIER_METRICS_PORT": str(taken.getsockname()[1])}
        done = subprocess.run([sys.executable, "-m", "verifier", "run", "--", "true"],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2, done.stderr
    assert "configuration error: VERIFIER_METRICS_PORT" in done.stderr, done.stderr
