"""Seeded loop: data sessions under kill -9 of shard actors, then of the whole server.

Workers run whole sessions (create with two rating groups, updates that report
usage and ask again, release). Every request is retried with the same
invocation sequence number until it is answered, so each request has exactly
one final reply (original or replayed) whatever died in between. At the end:
every subscriber's balance == its funds - the charges of those final replies,
nothing is held, every session is released, and the offline store check
(journal prefix, sessions and their holds) passes. Issue 4: "sessions survive
restart like everything else"; DESIGN.md section 5 (a retry never changes the
outcome) applied to (session, sequence number).
"""

import asyncio
import random
import threading
import time

import grpc
import pytest
from grid_client import AsyncChargingClient, ChargingClient, GridError, RetryPolicy, pb

from fault_support import FaultServer, check_shard_stores, loop_timeout, sigkill

pytestmark = pytest.mark.slow

SHARDS = 2
SUBSCRIBERS = [f"sess-{i}" for i in range(16)]
FUNDS_MICROS = 10**9
TARIFF = "fault-sessions"
EVENTS, DATA = 7, 8
RATES = [
    # 1_001 micros per 3 events, billed per 2: cumulative rating on a hold must still add up.
    {"rating_group": EVENTS, "unit": pb.EVENTS, "price_micros": 1_001, "rate_units": 3, "increment_units": 2},
    {"rating_group": DATA, "unit": pb.BYTES, "price_micros": 1_000, "rate_units": 1_000_000, "increment_units": 1_000},
]
ANSWER_WINDOW_S = 90  # how long one request is retried before the test gives up on the grid


class SessionLoad:
    """Whole sessions from a background thread; records the final reply of every request."""

    def __init__(self, target: str, rng: random.Random, concurrency: int, max_seconds: float) -> None:
        self.target = target
        self.rng = rng
        self.concurrency = concurrency
        self.stop_at = time.monotonic() + max_seconds
        self.charged = {subscriber: 0 for subscriber in SUBSCRIBERS}
        self.requests = 0
        self.replayed = 0
        self.retries = 0
        self.sessions_released = 0
        self.failure: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-load", daemon=True)

    def start(self) -> "SessionLoad":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 180) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the session load did not finish its sessions"
        if self.failure is not None:
            raise self.failure

    def wait_for_requests(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.requests < count:
            assert time.monotonic() < deadline, f"only {self.requests} of {count} session requests answered"
            assert self.failure is None, self.failure
            time.sleep(0.05)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - surfaced by stop()
            self.failure = error

    async def _main(self) -> None:
        self._clients: dict[str, AsyncChargingClient] = {}
        try:
            await asyncio.gather(*(self._worker(index) for index in range(self.concurrency)))
        finally:
            for client in self._clients.values():
                await client.close()

    def _client(self) -> AsyncChargingClient:
        """A client of the current target (a restarted server listens on a new port)."""
        target = self.target
        if target not in self._clients:
            self._clients[target] = AsyncChargingClient(target, retry=RetryPolicy(attempts=3, timeout_s=5.0))
        return self._clients[target]

    async def _answer(self, method: str, *args):
        """The one final reply of a request: retried with the same sequence number
        (idempotent) until the grid answers."""
        deadline = time.monotonic() + ANSWER_WINDOW_S
        while True:
            try:
                reply = await getattr(self._client(), method)(*args)
            except GridError as error:
                if error.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                      grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED) \
                        or time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(0.1)
                continue
            assert reply.result == pb.SUCCESS, reply
            self.requests += 1
            self.replayed += reply.replayed
            return reply

    async def _worker(self, index: int) -> None:
        rng = random.Random(f"{self.rng.random()}/{index}")
        number = 0
        while not self._stopping.is_set() and time.monotonic() < self.stop_at:
            number += 1
            subscriber = SUBSCRIBERS[rng.randrange(len(SUBSCRIBERS))]
            session = f"w{index}-{number}"
            replies = [await self._answer("create_session", subscriber, session,
                                          [(EVENTS, 10, 0), (DATA, 5_000_000, 0)])]
            updates = rng.randint(1, 4)
            for sequence in range(1, updates + 1):
                replies.append(await self._answer(
                    "update_session", subscriber, session, sequence,
                    [(EVENTS, 10, rng.randint(0, 13)), (DATA, 5_000_000, rng.randint(0, 6_000_000))]))
            replies.append(await self._answer(
                "release_session", subscriber, session, updates + 1,
                [(EVENTS, 0, rng.randint(0, 5)), (DATA, 0, rng.randint(0, 2_000_000))]))
            assert replies[-1].session_state == pb.SESSION_STATE_RELEASED, replies[-1]
            for reply in replies:
                self.charged[subscriber] += sum(info.charged_micros for info in reply.multiple_unit_information)
            self.sessions_released += 1


def _provision(target: str) -> None:
    with ChargingClient(target, retry=RetryPolicy(attempts=8)) as client:
        assert client.put_tariff(TARIFF, RATES).result == pb.SUCCESS
        for subscriber in SUBSCRIBERS:
            client.create_account(subscriber, "EUR", TARIFF, request_id=f"open-{subscriber}")
            client.top_up(subscriber, FUNDS_MICROS, request_id=f"fund-{subscriber}")


def _audit(target: str, load: SessionLoad, seed: int) -> None:
    with ChargingClient(target, retry=RetryPolicy(attempts=8)) as client:
        for subscriber in SUBSCRIBERS:
            balance = client.balance(subscriber)
            expected = FUNDS_MICROS - load.charged[subscriber]
            assert (balance.balance_micros, balance.reserved_micros) == (expected, 0), (
                f"{subscriber}: balance {balance.balance_micros} held {balance.reserved_micros}, the replies say "
                f"{expected} and nothing held (seed {seed})")


@pytest.mark.timeout(loop_timeout(per_round_s=60))
def test_sessions_survive_shard_kills_and_a_server_kill_with_every_charge_once(tmp_path, seed, rounds, report):
    rng = random.Random(f"{seed}/sessions")
    server = FaultServer(tmp_path / "grid-data", shards=SHARDS, seed=seed)
    load = None
    kills = []
    try:
        server.start()
        _provision(server.target)
        load = SessionLoad(server.target, random.Random(f"{seed}/session-load"), concurrency=8,
                           max_seconds=30 + 20 * rounds).start()
        load.wait_for_requests(40)
        for _ in range(rounds):
            time.sleep(rng.uniform(0.1, 1.0))
            shard_id = rng.randrange(SHARDS)
            victim = server.wait_for_shard(shard_id)
            sigkill(victim)
            kills.append(shard_id)
            server.wait_for_shard(shard_id, not_pid=victim.pid)
            load.wait_for_requests(load.requests + 20, timeout_s=90)
        # The whole server, mid-session: the load's retries carry the sessions over the restart.
        server.kill()
        time.sleep(rng.uniform(0.2, 1.0))
        server.start()
        load.target = server.target
        load.stop()
        _audit(server.target, load, seed)
        assert server.terminate() == 0, f"the graceful stop failed; see {server.log_path} (seed {seed})"
        stats = check_shard_stores(server.data_dir, SHARDS, f"after session load with kills (seed {seed})")
    finally:
        if load is not None:
            load._stopping.set()
        server.kill()
    report(shard_kills=len(kills), server_kills=1, session_requests=load.requests, replayed=load.replayed,
           retries=load.retries, sessions=load.sessions_released, journal_records=stats["journal_records"], seed=seed)
