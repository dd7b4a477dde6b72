"""Restart and kill -9 of a real `grid serve` process (its own Ray, real RocksDB):
every acknowledged effect, hold and request id comes back (DESIGN.md invariant 4),
and GetTransaction settles every call whose reply was lost (invariant 7)."""

import asyncio
import random
import threading
import uuid

import grpc
import pytest

from grid_client import AsyncChargingClient, ChargingClient, RetryPolicy, pb
from server_process import ServerProcess

pytestmark = pytest.mark.slow

RATING_GROUP = 7
PRICE = {"rating_group": RATING_GROUP, "unit": pb.EVENTS, "price_micros": 1_000, "rate_units": 1,
         "increment_units": 1}


@pytest.fixture
def server(tmp_path):
    process = ServerProcess(tmp_path / "grid-data")
    yield process
    process.kill()


def _provision(client: ChargingClient, subscribers: list[str], funds_micros: int) -> None:
    client.put_tariff("durable", [PRICE])
    for subscriber in subscribers:
        assert client.create_account(subscriber, "EUR", "durable").result == pb.SUCCESS
        assert client.top_up(subscriber, funds_micros).result == pb.SUCCESS


def test_restart_on_the_same_data_directory_keeps_balances_holds_and_request_ids(server):
    server.start()
    with ChargingClient(server.target) as client:
        _provision(client, ["alice", "bob"], 1_000_000)
        hold = client.reserve("alice", "s1", RATING_GROUP, 100, request_id="hold-1")
        used = client.debit("bob", 30, rating_group=RATING_GROUP, request_id="sms-1")
        before = {name: client.get_account(name) for name in ("alice", "bob")}
    assert hold.result == used.result == pb.SUCCESS
    assert server.terminate() == 0  # graceful: SIGTERM finishes and exits cleanly

    server.start()
    with ChargingClient(server.target) as client:
        for name in ("alice", "bob"):
            after = client.get_account(name)
            assert after.account == before[name].account
            assert list(after.reservations) == list(before[name].reservations)
        assert client.balance("alice").reserved_micros == 100_000
        replay = client.reserve("alice", "s1", RATING_GROUP, 100, request_id="hold-1")
        assert replay.replayed and replay.reservation_id == hold.reservation_id
        assert client.get_transaction("bob", "sms-1").debit.charge_id == used.charge_id
        # The hold survived as a real hold: it can still be committed, once.
        final = client.debit("alice", 40, reservation_id=hold.reservation_id, final=True)
        assert (final.charged_micros, final.released_micros) == (40_000, 60_000)
        assert client.get_tariff("durable").plan.version == 1


async def _load(target: str, subscribers: list[str], operations: int, acknowledged: list, issued: list,
                seed: int) -> None:
    """Concurrent top-ups and direct debits; records every (request id, call) and each acknowledged reply."""
    rng = random.Random(seed)
    retry = RetryPolicy(attempts=1, timeout_s=5)
    async with AsyncChargingClient(target, retry=retry) as client:
        async def one(index: int) -> None:
            subscriber = rng.choice(subscribers)
            request_id = f"op-{index}-{uuid.uuid4().hex[:8]}"
            if rng.random() < 0.3:
                call = ("top_up", subscriber, request_id, rng.randint(1, 50) * 1_000)
            else:
                call = ("debit", subscriber, request_id, rng.randint(1, 20))
            issued.append(call)
            try:
                if call[0] == "top_up":
                    reply = await client.top_up(subscriber, call[3], request_id=request_id)
                else:
                    reply = await client.debit(subscriber, call[3], rating_group=RATING_GROUP, request_id=request_id)
            except Exception:  # noqa: BLE001 - the server is being killed: outcome unknown
                return
            acknowledged.append((call, reply))

        for start in range(0, operations, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 50, operations))))


def test_kill_9_under_load_loses_no_acknowledged_operation(server):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    subscribers = [f"sub-{i}" for i in range(20)]
    funds = 200_000
    server.start()
    with ChargingClient(server.target) as client:
        _provision(client, subscribers, funds)

    acknowledged: list = []
    issued: list = []
    loader = threading.Thread(target=lambda: asyncio.run(
        _load(server.target, subscribers, 3_000, acknowledged, issued, seed)))
    loader.start()
    # Kill -9 (the server and all its Ray processes) in the middle of the load.
    while len(acknowledged) < 300 and loader.is_alive():
        threading.Event().wait(0.01)
    server.kill()
    loader.join(timeout=120)
    assert not loader.is_alive()
    assert len(acknowledged) >= 300, "the load must have been acknowledged in part before the kill"

    server.start()
    with ChargingClient(server.target) as client:
        # Every acknowledged operation is there, with exactly the reply that was acknowledged.
        for (kind, subscriber, request_id, _), reply in acknowledged:
            found = client.get_transaction(subscriber, request_id)
            assert found.found, f"acknowledged {kind} {request_id} lost (seed {seed})"
            assert getattr(found, kind) == reply
        # Every issued operation is settled: applied exactly as GetTransaction says, or not at all.
        expected = {subscriber: funds for subscriber in subscribers}
        for kind, subscriber, request_id, amount in issued:
            found = client.get_transaction(subscriber, request_id)
            if not found.found:
                continue
            if kind == "top_up" and found.top_up.result == pb.SUCCESS:
                expected[subscriber] += amount
            elif kind == "debit" and found.debit.result == pb.SUCCESS:
                expected[subscriber] -= found.debit.charged_micros
        # Conservation: the balances are the fold of exactly the applied operations.
        for subscriber in subscribers:
            balance = client.balance(subscriber)
            assert balance.balance_micros == expected[subscriber], f"{subscriber} (seed {seed})"
            assert balance.available_micros >= 0
        # A retry of an acknowledged operation with the same id is a replay, not a second charge.
        (kind, subscriber, request_id, amount), reply = acknowledged[0]
        before = client.balance(subscriber).balance_micros
        if kind == "top_up":
            again = client.top_up(subscriber, amount, request_id=request_id)
        else:
            again = client.debit(subscriber, amount, rating_group=RATING_GROUP, request_id=request_id)
        assert again.replayed and client.balance(subscriber).balance_micros == before


def test_a_shard_refuses_to_start_empty_where_its_data_was(server, tmp_path):
    import shutil

    server.start()
    with ChargingClient(server.target) as client:
        _provision(client, ["carol"], 5_000)
    assert server.terminate() == 0
    shutil.rmtree(server.data_dir / "shard-1" / "db")
    with pytest.raises(RuntimeError, match="refusing to start empty"):
        server.start()


def test_a_data_directory_keeps_its_shape(server):
    server.start()
    assert server.terminate() == 0
    server.shards = 3
    with pytest.raises(RuntimeError, match="created with shards=2"):
        server.start()


def test_sigterm_finishes_calls_in_flight(server):
    """Graceful shutdown: every call the server took is answered and applied; every
    call it refused (CANCELLED or UNAVAILABLE while closing) was not applied."""
    server.start()
    with ChargingClient(server.target) as client:
        _provision(client, ["dave"], 10_000_000)
    answered: dict[str, object] = {}
    refused: dict[str, object] = {}

    async def burst() -> None:
        async with AsyncChargingClient(server.target, retry=RetryPolicy(attempts=1)) as client:
            async def one(i):
                request_id = f"b{i}"
                try:
                    answered[request_id] = await client.debit("dave", 1, rating_group=RATING_GROUP,
                                                              request_id=request_id)
                except Exception as error:  # noqa: BLE001
                    refused[request_id] = error
            await asyncio.gather(*(one(i) for i in range(400)))

    thread = threading.Thread(target=lambda: asyncio.run(burst()))
    thread.start()
    while len(answered) < 20 and thread.is_alive():  # SIGTERM lands while calls are in flight
        threading.Event().wait(0.005)
    assert server.terminate() == 0
    thread.join(timeout=60)
    print(f"{len(answered)} answered, {len(refused)} refused: {sorted({str(e.code) for e in refused.values()})}")
    assert len(answered) >= 20
    for error in refused.values():
        assert error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), error
    server.start()
    with ChargingClient(server.target) as client:
        for request_id, reply in answered.items():
            assert reply.result == pb.SUCCESS
            assert client.get_transaction("dave", request_id).debit == reply
        for request_id in refused:
            assert not client.get_transaction("dave", request_id).found, f"{request_id} refused yet applied"
        assert client.balance("dave").balance_micros == 10_000_000 - len(answered) * 1_000


def test_a_shard_killed_by_itself_is_restarted_by_ray_and_calls_go_on(server):
    """kill -9 of one shard actor's process: Ray restarts it, it reloads from RocksDB,
    and the front door resends the batches it lost with the same request ids."""
    import signal as signals

    server.start()
    subscribers = [f"k{i}" for i in range(16)]
    with ChargingClient(server.target) as client:
        _provision(client, subscribers, 100_000)
        shards = [p for p in server._session_processes() if "ShardActor" in " ".join(p.cmdline())]
        assert len(shards) == 2
        shards[0].send_signal(signals.SIGKILL)
        # Calls for every subscriber, on the killed shard too, are answered (after the restart).
        for subscriber in subscribers:
            reply = client.debit(subscriber, 10, rating_group=RATING_GROUP, request_id=f"after-kill-{subscriber}")
            assert reply.result == pb.SUCCESS and reply.charged_micros == 10_000
        for subscriber in subscribers:
            assert client.balance(subscriber).balance_micros == 90_000
    restarted = [p for p in server._session_processes() if "ShardActor" in " ".join(p.cmdline())]
    assert len(restarted) == 2 and shards[0].pid not in {p.pid for p in restarted}


def test_a_flipped_byte_in_a_stored_record_is_reported_and_never_applied(server):
    """Corruption: the shard refuses to start on a record that fails its checksum,
    naming the shard and the key, rather than serving a wrong balance."""
    from grid.storage.shard_store import ShardStore

    server.start()
    with ChargingClient(server.target) as client:
        _provision(client, [f"c{i}" for i in range(8)], 5_000)
    assert server.terminate() == 0
    store = ShardStore(server.data_dir / "shard-0", 0)
    key = next(key for key in store._db.keys() if key[:1] == b"a")  # an account record
    damaged = bytearray(store._db[key])
    damaged[len(damaged) // 2] ^= 0x01
    store._db[key] = bytes(damaged)
    store.close()
    with pytest.raises(RuntimeError, match=r"CorruptRecord: shard 0 key .*checksum mismatch"):
        server.start()


def test_an_operation_that_crashes_its_shard_fails_alone(tmp_path):
    """A request that makes the core fail (a bug) kills its shard every time it is
    applied. The front door must isolate it: the other operations that shared its
    batch are applied, and only it is answered UNAVAILABLE, never applied."""
    server = ServerProcess(tmp_path / "grid-data", env={"GRID_FAULTS": "crash_on_request_id=poison-1"})
    subscribers = [f"p{i}" for i in range(12)]
    try:
        server.start()
        with ChargingClient(server.target) as client:
            _provision(client, subscribers, 1_000)
        outcomes: dict[str, object] = {}

        async def burst() -> None:
            async with AsyncChargingClient(server.target, retry=RetryPolicy(attempts=1, timeout_s=120)) as client:
                async def top_up(request_id: str, subscriber: str) -> None:
                    try:
                        outcomes[request_id] = await client.top_up(subscriber, 10, request_id=request_id)
                    except Exception as error:  # noqa: BLE001
                        outcomes[request_id] = error
                calls = [top_up(f"ok-{i}", subscribers[i % len(subscribers)]) for i in range(40)]
                calls.insert(20, top_up("poison-1", subscribers[0]))
                await asyncio.gather(*calls)

        asyncio.run(burst())
        poisoned = outcomes.pop("poison-1")
        assert getattr(poisoned, "code", None) == grpc.StatusCode.UNAVAILABLE, poisoned
        assert all(isinstance(reply, pb.TopUpResponse) and reply.result == pb.SUCCESS
                   for reply in outcomes.values()), outcomes
        with ChargingClient(server.target) as client:
            assert not client.get_transaction(subscribers[0], "poison-1").found
            for i, subscriber in enumerate(subscribers):
                credited = sum(10 for n in range(40) if n % len(subscribers) == i)
                assert client.balance(subscriber).balance_micros == 1_000 + credited
    finally:
        server.kill()
