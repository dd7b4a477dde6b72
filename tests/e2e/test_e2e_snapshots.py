"""Snapshots over the AdminService: taken while serving, listed, restored into a
fresh data directory from which a second grid serves exactly the snapshot's
balances, holds and request ids (issue: crash-proof)."""

import asyncio
import threading
import uuid

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import ServingGrid
from grid_client import AsyncChargingClient, ChargingClient, RetryPolicy

pytestmark = pytest.mark.slow

RATE = {"rating_group": 9, "unit": pb.EVENTS, "price_micros": 1_000, "rate_units": 1, "increment_units": 1}


@pytest.fixture(scope="module")
def snapshot_grid(tmp_path_factory):
    """A grid of its own (joins the session's Ray): its snapshots are this module's alone."""
    grid = ServingGrid(tmp_path_factory.mktemp("snapshot-source"), snapshot_retention_count=3)
    try:
        yield grid
    finally:
        grid.stop()


def _state(client: ChargingClient, subscribers: list[str]) -> dict:
    return {s: (client.get_account(s).account, list(client.get_account(s).reservations)) for s in subscribers}


def test_a_restored_snapshot_serves_exactly_the_state_it_was_taken_at(snapshot_grid, tmp_path):
    subscribers = [f"snap-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    with ChargingClient(snapshot_grid.target) as client:
        client.put_tariff("snap-plan", [RATE])
        for subscriber in subscribers:
            client.create_account(subscriber, "EUR", "snap-plan")
            client.top_up(subscriber, 100_000, request_id=f"fund-{subscriber}")
            client.reserve(subscriber, "s", 9, 10, request_id=f"hold-{subscriber}")
        before = _state(client, subscribers)
        snapshot = client.create_snapshot("before the debits")
        assert [p.shard_id for p in snapshot.shards] == [0, 1]
        assert snapshot.label == "before the debits"
        for subscriber in subscribers:  # after the snapshot: must not be in the restored grid
            client.debit(subscriber, 7, rating_group=9, request_id=f"late-{subscriber}")
        listed = [s.snapshot_id for s in client.list_snapshots().snapshots]
        assert snapshot.snapshot_id in listed
        target = tmp_path / "restored"
        restored = client.restore_snapshot(snapshot.snapshot_id, str(target))
        assert restored.snapshot.snapshot_id == snapshot.snapshot_id
        with pytest.raises(Exception, match="not empty"):
            client.restore_snapshot(snapshot.snapshot_id, str(target))
        with pytest.raises(Exception, match="NOT_FOUND"):
            client.restore_snapshot("20000101T000000000Z", str(tmp_path / "other"))

    copy = ServingGrid(target)
    try:
        with ChargingClient(copy.target) as client:
            assert _state(client, subscribers) == before
            for subscriber in subscribers:
                assert client.get_transaction(subscriber, f"hold-{subscriber}").found
                assert not client.get_transaction(subscriber, f"late-{subscriber}").found
                replay = client.top_up(subscriber, 100_000, request_id=f"fund-{subscriber}")
                assert replay.replayed and replay.balance_micros == 100_000
            assert client.get_tariff("snap-plan").plan.version == 1
    finally:
        copy.stop()


def test_a_snapshot_taken_under_load_is_a_consistent_prefix(snapshot_grid, tmp_path):
    """While calls keep coming, every shard is checkpointed between two batches: the
    restored grid holds, per subscriber, exactly the operations it says it applied."""
    subscribers = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(8)]
    with ChargingClient(snapshot_grid.target) as client:
        client.put_tariff("snap-plan", [RATE])
        for subscriber in subscribers:
            client.create_account(subscriber, "EUR", "snap-plan")
            client.top_up(subscriber, 10_000_000, request_id=f"fund-{subscriber}")
    issued: list[tuple[str, str]] = []
    acknowledged_before_snapshot: list[tuple[str, str]] = []
    stop = threading.Event()
    snapshot_started = threading.Event()

    async def load() -> None:
        async with AsyncChargingClient(snapshot_grid.target, retry=RetryPolicy(attempts=1)) as client:
            async def worker(index: int) -> None:
                n = 0
                while not stop.is_set() and n < 2_000:
                    n += 1
                    subscriber = subscribers[(index + n) % len(subscribers)]
                    request_id = f"d-{index}-{n}"
                    issued.append((subscriber, request_id))
                    try:
                        await client.debit(subscriber, 1, rating_group=9, request_id=request_id)
                    except grpc.RpcError:
                        continue
                    if not snapshot_started.is_set():
                        acknowledged_before_snapshot.append((subscriber, request_id))
            await asyncio.gather(*(worker(i) for i in range(16)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    try:
        while len(acknowledged_before_snapshot) < 200 and thread.is_alive():
            threading.Event().wait(0.01)
        with ChargingClient(snapshot_grid.target) as client:
            snapshot_started.set()
            snapshot = client.create_snapshot("under load")
            threading.Event().wait(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    target = tmp_path / "restored"
    with ChargingClient(snapshot_grid.target) as client:
        client.restore_snapshot(snapshot.snapshot_id, str(target))
    copy = ServingGrid(target)
    try:
        with ChargingClient(copy.target) as client:
            for subscriber, request_id in acknowledged_before_snapshot:
                assert client.get_transaction(subscriber, request_id).found, request_id
            applied = {s: 0 for s in subscribers}
            for subscriber, request_id in issued:
                if client.get_transaction(subscriber, request_id).found:
                    applied[subscriber] += 1
            for subscriber in subscribers:
                assert client.balance(subscriber).balance_micros == 10_000_000 - applied[subscriber] * 1_000
    finally:
        copy.stop()


def test_only_the_newest_snapshots_are_kept(snapshot_grid):
    with ChargingClient(snapshot_grid.target) as client:
        taken = [client.create_snapshot(f"n{i}").snapshot_id for i in range(4)]
        listed = [s.snapshot_id for s in client.list_snapshots().snapshots]
    assert listed == taken[-3:]  # snapshot_retention_count=3
