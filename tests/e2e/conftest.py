"""End-to-end fixtures: one real grid (Ray shard actors, RocksDB, grpc.aio) for
the whole test session, the real client (sync and asyncio) and raw generated
stubs pointed at it, and a fresh tariff plan + funded account per test.

Ray starts once per session (a few seconds); tests never start Ray themselves.
Every test works on its own uuid-named subscribers and plans, so tests do not
interfere on the shared grid.
"""

import asyncio
import dataclasses
import types

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import FUNDS, RATES, Calls, new_id
from grid.config import GridConfig
from grid.server import EmbeddedGrid
from grid_client import AsyncChargingClient, ChargingClient


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """The session's grid: 2 shards, an ephemeral port, data in a temporary directory."""
    grid = EmbeddedGrid(GridConfig(data_dir=tmp_path_factory.mktemp("grid-e2e"), port=0, shards=2))
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


@dataclasses.dataclass(frozen=True)
class Subscriber:
    """A funded ACTIVE account on its own tariff plan (RATES), FUNDS on it."""

    id: str
    plan_id: str
    currency: str = "EUR"


def put_plan(stubs, plan_id: str | None = None) -> str:
    plan_id = plan_id or new_id("plan-")
    reply = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES), timeout=30)
    assert reply.result == pb.SUCCESS and reply.version == 1, reply
    return plan_id


def open_account(stubs, plan_id: str, funds: int = FUNDS, credit_limit_micros: int = 0,
                 subscriber_id: str | None = None) -> Subscriber:
    subscriber_id = subscriber_id or new_id("sub-")
    created = stubs.account.CreateAccount(pb.CreateAccountRequest(
        request_id=new_id("create-"), subscriber_id=subscriber_id, currency="EUR",
        credit_limit_micros=credit_limit_micros, tariff_plan_id=plan_id), timeout=30)
    assert created.result == pb.SUCCESS, created
    if funds:
        topped = stubs.charging.TopUp(pb.TopUpRequest(
            request_id=new_id("fund-"), subscriber_id=subscriber_id, amount_micros=funds), timeout=30)
        assert topped.result == pb.SUCCESS and topped.balance_micros == funds, topped
    return Subscriber(subscriber_id, plan_id)


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
