"""End-to-end fixtures: one real grid (Ray shard actors, RocksDB, grpc.aio) for
the whole test session, the real client (sync and asyncio) and raw generated
stubs pointed at it, and a fresh tariff plan + funded account per test.

Ray starts once per session (a few seconds); tests never start Ray themselves.
Every test works on its own uuid-named subscribers and plans, so tests do not
interfere on the shared grid.
"""

import asyncio
import types

import grpc
import pytest
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import FUNDS, Calls, ServingGrid, Subscriber, open_account, put_plan
from grid.config import GridConfig
from grid.server import EmbeddedGrid
from grid_client import AsyncChargingClient, ChargingClient


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """The session's grid: 2 shards, an ephemeral port, data in a temporary directory."""
    grid = EmbeddedGrid(GridConfig(plaintext=True, data_dir=tmp_path_factory.mktemp("grid-e2e"), port=0, shards=2))
    grid.start()
    try:
        yield grid
    finally:
        grid.stop()


@pytest.fixture(scope="session")
def client(embedded):
    with ChargingClient(embedded.target) as charging_client:
        yield charging_client


class AsyncHarness:
    """An AsyncChargingClient living on its own event loop (no pytest-asyncio here):
    `run(coroutine)` runs a coroutine on that loop and returns its result."""

    def __init__(self, target: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: AsyncChargingClient = self.run(self._make(target))

    @staticmethod
    async def _make(target: str) -> AsyncChargingClient:
        return AsyncChargingClient(target)

    def run(self, coroutine, timeout_s: float = 120):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout_s))

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.close()


@pytest.fixture(scope="session")
def async_client(embedded):
    harness = AsyncHarness(embedded.target)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="session")
def stubs(embedded):
    """Raw generated stubs over one plain channel: charging, account, catalog."""
    channel = grpc.insecure_channel(embedded.target)
    try:
        yield types.SimpleNamespace(
            channel=channel,
            charging=pb_grpc.ChargingServiceStub(channel),
            account=pb_grpc.AccountServiceStub(channel),
            catalog=pb_grpc.CatalogServiceStub(channel),
        )
    finally:
        channel.close()


@pytest.fixture
def plan_id(stubs) -> str:
    """A uniquely named tariff plan with RATES, version 1."""
    return put_plan(stubs)


@pytest.fixture
def subscriber(stubs, plan_id) -> Subscriber:
    """A new account on this test's plan, topped up with FUNDS."""
    return open_account(stubs, plan_id)


@pytest.fixture
def new_subscriber(stubs, plan_id):
    """A factory of more accounts on this test's plan: new_subscriber(funds=..., credit_limit_micros=...)."""
    def make(funds: int = FUNDS, credit_limit_micros: int = 0) -> Subscriber:
        return open_account(stubs, plan_id, funds, credit_limit_micros)
    return make


@pytest.fixture(scope="session")
def calls(stubs) -> Calls:
    return Calls(stubs)


@pytest.fixture(scope="module")
def small_grid(embedded, tmp_path_factory) -> ServingGrid:
    """A second grid for the module that asks for it: 1 shard, a tiny queue (8 operations, batches of 2,
    one in flight) so that load is shed, and a 2 s shard retry window so that a crashing shard
    gives up quickly. `embedded` first: Ray is already up, so this grid joins it."""
    grid = ServingGrid(tmp_path_factory.mktemp("grid-e2e-small"), shards=1, queue_operations_max=8,
                       batch_operations_max=2, batches_in_flight_max=1, shard_retry_window_s=2.0)
    try:
        yield grid
    finally:
        grid.stop()
