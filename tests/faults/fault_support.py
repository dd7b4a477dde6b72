"""What the fault tests share: a `grid serve` subprocess with extra flags and
fault points, finding a shard's process, a seeded concurrent load that records
a History, provisioning, and the offline check of each shard's RocksDB.

Named fault_support (not helpers) so that it cannot collide with another test
directory's module of the same name under pytest's default import mode.
"""

import asyncio
import collections
import os
import pathlib
import random
import signal
import sys
import threading
import time

import psutil
from grid_client import AsyncChargingClient, RetryPolicy, pb

from fault_history import OK, History
from grid.domain.outcomes import JournalKind, ReservationState, Result
from grid.domain.outcomes import SessionState
from grid.domain.records import (
    Account, Charge, IdempotencyRecord, JournalRecord, Reservation, Session, ShardMeta,
)
from grid.storage.shard_store import ShardStore
from server_process import ServerProcess

RATING_GROUP = 7
# 1_001 micros per 3 events, billed per 2: charges round, holds and cumulative debits must still add up.
PRICE = {"rating_group": RATING_GROUP, "unit": pb.EVENTS, "price_micros": 1_001, "rate_units": 3,
         "increment_units": 2}
TARIFF = "faults"
FUNDS_MICROS = 400_000


# ---------------------------------------------------------------- seeds and loop sizes

def fault_rounds(default: int = 2) -> int:
    """Iterations of each fault loop: small in CI, GRID_FAULT_ROUNDS=50 for a long run."""
    return max(1, int(os.environ.get("GRID_FAULT_ROUNDS", default)))


def loop_timeout(per_round_s: float, base_s: float = 120) -> float:
    """A pytest-timeout for a loop test that grows with GRID_FAULT_ROUNDS."""
    return base_s + per_round_s * fault_rounds()


def fault_seed() -> int:
    raw = os.environ.get("GRID_FAULT_SEED_BASE")
    return int(raw) if raw else random.SystemRandom().randrange(1 << 31)


# ---------------------------------------------------------------- the server

class FaultServer(ServerProcess):
    """ServerProcess with extra `grid serve` flags (validity, grace, sweep) and an
    environment that may arm fault points (GRID_FAULTS, GRID_FAULT_SEED)."""

    def __init__(self, data_dir: pathlib.Path, shards: int = 2, env: dict | None = None,
                 serve_args: list[str] | None = None, seed: int | None = None) -> None:
        super().__init__(data_dir, shards=shards, env=env)
        self.seed = seed
        self.serve_args = list(serve_args or [])
        self.starts = 0

    def start(self) -> "FaultServer":
        self._launch(["--shards", str(self.shards), *self.serve_args], failure_context=f" (seed {self.seed})")
        self.starts += 1
        return self

    def shard_processes(self) -> dict[int, psutil.Process]:
        """shard id -> the process holding that shard's RocksDB lock (its actor)."""
        found = {}
        for proc in self._session_processes():
            try:
                if "ShardActor" not in " ".join(proc.cmdline()):
                    continue
                for opened in proc.open_files():
                    path = pathlib.Path(opened.path)
                    if path.name == "LOCK" and path.parent.name == "db" and path.parent.parent.name.startswith("shard-"):
                        found[int(path.parent.parent.name.split("-", 1)[1])] = proc
            except psutil.Error:
                continue
        return found

    def wait_for_shard(self, shard_id: int, not_pid: int | None = None, timeout_s: float = 90) -> psutil.Process:
        """The shard's (new) process once it has opened its store again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.shard_processes().get(shard_id)
            if proc is not None and proc.pid != not_pid:
                return proc
            time.sleep(0.1)
        raise AssertionError(f"shard {shard_id} did not come back within {timeout_s}s; see {self.log_path} "
                             f"(seed {self.seed})")


def shard_of(subscriber: str, shards: int = 2) -> int:
    from grid.config import GridConfig
    from grid.domain.operations import DEFAULT_TENANT
    from grid.routing import ShardMap

    return ShardMap.even(GridConfig().slots, shards).shard_for(DEFAULT_TENANT, subscriber)


# ---------------------------------------------------------------- provisioning

def provision(target: str, history: History, subscribers: list[str], funds_micros: int = FUNDS_MICROS,
              deadline_s: float = 120) -> None:
    """Tariff, accounts and their first top-up; the top-ups go into the history.
    Fault points may strike here too: every step is retried until it is settled."""

    async def main():
        async with AsyncChargingClient(target) as client:
            give_up = time.monotonic() + deadline_s
            while True:
                try:
                    await client.put_tariff(TARIFF, [PRICE])
                    break
                except Exception:  # noqa: BLE001 - a shard died under a fault point; the put is idempotent
                    if time.monotonic() > give_up:
                        raise
                    await asyncio.sleep(0.2)

            async def account(subscriber):
                for kind, payload in (("create_account", {"currency": "EUR", "tariff_plan_id": TARIFF}),
                                      ("top_up", {"amount_micros": funds_micros})):
                    op = history.invoke(kind, subscriber, payload)
                    while True:
                        await history.perform(client, op)
                        if op.outcome == OK:
                            assert op.reply.result == pb.SUCCESS, (op.describe(), history.seed)
                            break
                        assert time.monotonic() < give_up, f"provisioning never settled: {op.describe()} (seed {history.seed})"
                        await asyncio.sleep(0.2)  # same request id: exactly once whatever happened

            await asyncio.gather(*(account(s) for s in subscribers))

    asyncio.run(main())


# ---------------------------------------------------------------- load

class Load:
    """A seeded, bounded, concurrent mix of top-ups, reserves, partial and final
    debits, direct debits, releases and refunds, recorded in a History.

    Runs on its own thread and event loop; stops after max_ops operations, after
    max_seconds, or when stop() is called (in-flight calls finish first)."""

    MIX = (("top_up", 10), ("reserve", 20), ("debit_partial", 15), ("debit_final", 12), ("debit_direct", 20),
           ("release", 8), ("refund", 10), ("debit_over", 2))

    def __init__(self, target: str, history: History, subscribers: list[str], rng: random.Random, *,
                 concurrency: int = 12, max_ops: int = 3000, max_seconds: float = 60,
                 retry: RetryPolicy = RetryPolicy(), pace_s: float = 0.0) -> None:
        self.target = target
        self.history = history
        self.subscribers = subscribers
        self.rng = rng
        self.concurrency = concurrency
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.retry = retry
        self.pace_s = pace_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.issued = 0
        self.error: BaseException | None = None
        # What the load knows from ok replies: active holds and charges, per subscriber.
        self._holds: dict[str, dict[str, dict]] = collections.defaultdict(dict)
        self._charges: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)

    def inherit(self, previous: "Load") -> None:
        """Go on with the holds and charges an earlier load (before a crash) knew of."""
        self._holds, self._charges = previous._holds, previous._charges

    def start(self) -> "Load":
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error

    def request_stop(self) -> None:
        """No new operations; those in flight go on."""
        self._stop.set()

    def stop(self, timeout_s: float = 120) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), f"the load did not stop within {timeout_s}s (seed {self.history.seed})"
        if self.error is not None:
            raise AssertionError(f"the load crashed (seed {self.history.seed}): {self.error!r}") from self.error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for_acks(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.history.ok_count() < count and time.monotonic() < deadline and self.running:
            time.sleep(0.02)

    async def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        async with AsyncChargingClient(self.target, retry=self.retry) as client:
            async def worker():
                while not self._stop.is_set() and self.issued < self.max_ops and time.monotonic() < deadline:
                    self.issued += 1
                    await self._one(client)
                    if self.pace_s:
                        await asyncio.sleep(self.pace_s)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    def _pick(self) -> str:
        kinds, weights = zip(*self.MIX)
        return self.rng.choices(kinds, weights)[0]

    async def _one(self, client) -> None:
        rng = self.rng
        subscriber = rng.choice(self.subscribers)
        kind = self._pick()
        holds = self._holds[subscriber]
        if kind in ("debit_partial", "debit_final", "release", "debit_over") and not holds:
            kind = "reserve"
        if kind == "refund" and not self._charges[subscriber]:
            kind = "debit_direct"
        if kind == "top_up":
            await self.history.call(client, "top_up", subscriber, amount_micros=rng.randint(1, 40) * 1_000)
        elif kind == "reserve":
            op = await self.history.call(client, "reserve", subscriber, session_id=f"s{rng.randrange(1 << 20)}",
                                         rating_group=RATING_GROUP, requested_units=rng.randint(1, 60))
            if op.outcome == OK and op.reply.result == pb.SUCCESS:
                holds[op.reply.reservation_id] = {"granted": op.reply.granted_units, "used": 0}
        elif kind == "debit_direct":
            op = await self.history.call(client, "debit", subscriber, used_units=rng.randint(1, 20),
                                         rating_group=RATING_GROUP)
            self._note_charge(op)
        elif kind == "refund":
            charge_id, charged = rng.choice(self._charges[subscriber])
            await self.history.call(client, "refund", subscriber, charge_id=charge_id,
                                    amount_micros=rng.randint(1, charged))
        else:
            reservation_id = rng.choice(sorted(holds))
            hold = holds[reservation_id]
            left = max(0, hold["granted"] - hold["used"])
            if kind == "release":
                del holds[reservation_id]
                await self.history.call(client, "release", subscriber, reservation_id=reservation_id)
                return
            if kind == "debit_partial":
                used, final = rng.randint(0, max(0, left // 2)), False
                hold["used"] += used
            elif kind == "debit_final":
                used, final = rng.randint(0, left), True
                del holds[reservation_id]
            else:  # usage beyond the grant: charged, never clamped (overage)
                used, final = left + rng.randint(1, 5), True
                del holds[reservation_id]
            op = await self.history.call(client, "debit", subscriber, reservation_id=reservation_id,
                                         used_units=used, final=final)
            self._note_charge(op)

    def _note_charge(self, op) -> None:
        if op.outcome == OK and op.reply.result == pb.SUCCESS and op.reply.charged_micros > 0:
            self._charges[op.subscriber].append((op.reply.charge_id, op.reply.charged_micros))


# ---------------------------------------------------------------- offline store check

# EXPIRE and TARIFF have no request of their own; POLICY_STATUS rides with the charge's.
NO_IDEMPOTENCY_KINDS = (JournalKind.EXPIRE, JournalKind.TARIFF, JournalKind.POLICY_STATUS)


def _object_number(object_id: str) -> int:
    return int(object_id.rsplit("-", 1)[1])


def check_shard_stores(data_dir: pathlib.Path, shards: int, context: str) -> dict:
    """Open each shard's RocksDB offline (the server must be stopped) and check that
    its state is a prefix of its journal with no torn batch:

    - journal sequences are 1..N with no gap, and meta.next_journal_sequence == N + 1;
    - per account, the journal chains (each record's balance/reserved before == the
      previous record's after), each effect moves the balance by its amount, and the
      last record's after == the account's balance_micros and reserved_micros;
    - reserved_micros == the sum held by the account's ACTIVE reservations;
    - every idempotency record has exactly one journal record (EXPIRE aside) with the
      reply's result (a session request: at least one, and exactly one when it was
      refused as a whole), and every journal record with a request id (EXPIRE and
      TARIFF aside) has an idempotency record;
    - every session's holds are reservations of that session, and an ACTIVE
      reservation of a session that is no longer active is a leak;
    - every charge's refunded_micros == its SUCCESS refunds in the journal, and each
      SUCCESS debit names a stored charge of its amount;
    - every reservation and charge id was issued below meta.next_object_id."""
    problems: list[str] = []
    stats = {"journal_records": 0, "accounts": 0, "idempotency_records": 0, "epochs": {}}
    for shard_id in range(shards):
        where = f"shard {shard_id}:"
        store = ShardStore(data_dir / f"shard-{shard_id}", shard_id)
        try:
            records = list(store.load_records())
            journal = store.journal()
        finally:
            store.close()
        by_type = collections.defaultdict(list)
        for record in records:
            by_type[type(record)].append(record)
        metas = by_type[ShardMeta]
        if len(metas) != 1:
            problems.append(f"{where} {len(metas)} meta records")
            continue
        meta = metas[0]
        stats["epochs"][shard_id] = meta.epoch
        stats["journal_records"] += len(journal)
        sequences = [record.sequence for record in journal]
        if sequences != list(range(1, len(journal) + 1)):
            gaps = [s for i, s in enumerate(sequences, 1) if s != i][:5]
            problems.append(f"{where} journal sequences are not 1..{len(journal)} (first off: {gaps})")
        last = sequences[-1] if sequences else 0
        if meta.next_journal_sequence - 1 != last:
            problems.append(f"{where} meta.next_journal_sequence {meta.next_journal_sequence} but the last journal "
                            f"record is {last}")

        accounts = {record.key: record for record in by_type[Account]}
        stats["accounts"] += len(accounts)
        chains: dict[tuple, list[JournalRecord]] = collections.defaultdict(list)
        for record in journal:
            if record.tenant or record.subscriber_id:
                chains[(record.tenant, record.subscriber_id)].append(record)
        for key, account in accounts.items():
            chain = chains.get(key, [])
            if not chain:
                problems.append(f"{where} account {key} has no journal record")
                continue
            previous_balance = previous_reserved = 0
            for record in chain:
                if (record.balance_before_micros, record.reserved_before_micros) != (previous_balance,
                                                                                      previous_reserved):
                    problems.append(f"{where} {key} journal #{record.sequence} ({record.kind.name}) starts from "
                                    f"{record.balance_before_micros}/{record.reserved_before_micros}, the record "
                                    f"before ended at {previous_balance}/{previous_reserved}")
                moved = record.balance_after_micros - record.balance_before_micros
                if record.result == Result.SUCCESS:
                    wanted = {JournalKind.TOP_UP: record.amount_micros, JournalKind.REFUND: record.amount_micros,
                              JournalKind.DEBIT: -record.amount_micros}.get(record.kind, 0)
                    if moved != wanted:
                        problems.append(f"{where} {key} journal #{record.sequence} {record.kind.name} moved the "
                                        f"balance by {moved}, its amount says {wanted}")
                elif moved != 0 or record.reserved_after_micros != record.reserved_before_micros:
                    problems.append(f"{where} {key} journal #{record.sequence}: a denial ({record.result.name}) "
                                    "moved money")
                previous_balance, previous_reserved = record.balance_after_micros, record.reserved_after_micros
            if (previous_balance, previous_reserved) != (account.balance_micros, account.reserved_micros):
                problems.append(f"{where} {key} is {account.balance_micros}/{account.reserved_micros} "
                                f"(balance/reserved) but its last journal record #{chain[-1].sequence} "
                                f"({chain[-1].kind.name}) ends at {previous_balance}/{previous_reserved}: torn batch")

        held = collections.Counter()
        for reservation in by_type[Reservation]:
            if reservation.state == ReservationState.ACTIVE:
                held[reservation.account_key] += reservation.held_micros
            elif reservation.held_micros != 0:
                problems.append(f"{where} resolved reservation {reservation.reservation_id} still holds "
                                f"{reservation.held_micros}")
            if _object_number(reservation.reservation_id) >= meta.next_object_id:
                problems.append(f"{where} reservation {reservation.reservation_id} at or past meta.next_object_id "
                                f"{meta.next_object_id}")
        for key, account in accounts.items():
            if account.reserved_micros != held[key]:
                problems.append(f"{where} {key} reserved_micros {account.reserved_micros} but its active "
                                f"reservations hold {held[key]}")

        idempotency = {(r.tenant, r.subscriber_id, r.request_id): r for r in by_type[IdempotencyRecord]}
        stats["idempotency_records"] += len(idempotency)
        journaled = collections.defaultdict(list)
        for record in journal:
            if record.request_id and record.kind not in NO_IDEMPOTENCY_KINDS:
                journaled[(record.tenant, record.subscriber_id, record.request_id)].append(record)
        for key in journaled.keys() - idempotency.keys():
            problems.append(f"{where} journal records {[r.sequence for r in journaled[key]]} for request {key} have "
                            "no idempotency record")
        for key, record in idempotency.items():
            entries = journaled.get(key, [])
            if key[2].startswith("session/"):  # one record per effect of the request's rating groups
                if not entries or (record.reply.result != Result.SUCCESS and len(entries) != 1):
                    problems.append(f"{where} session request {key} has journal records "
                                    f"{[r.sequence for r in entries]} for a {Result(record.reply.result).name}")
                continue
            if len(entries) != 1:
                problems.append(f"{where} request {key} has {len(entries)} journal records "
                                f"{[r.sequence for r in entries]} (exactly one wanted)")
            elif entries[0].result != record.reply.result:
                problems.append(f"{where} request {key}: reply says {Result(record.reply.result).name}, journal "
                                f"#{entries[0].sequence} says {entries[0].result.name}")

        reservations = {r.reservation_id: r for r in by_type[Reservation]}
        sessions = {session.key: session for session in by_type[Session]}
        for key, session in sessions.items():
            for _, reservation_id in session.holds:
                reservation = reservations.get(reservation_id)
                if reservation is not None and reservation.session_id != session.session_id:
                    problems.append(f"{where} session {key} lists hold {reservation_id} of session "
                                    f"{reservation.session_id}")
        for reservation in reservations.values():
            session = sessions.get((reservation.tenant, reservation.subscriber_id, reservation.session_id))
            if (reservation.state == ReservationState.ACTIVE and reservation.request_id.startswith("session/")
                    and (session is None or session.state != SessionState.SESSION_STATE_ACTIVE)):
                problems.append(f"{where} hold {reservation.reservation_id} is active but its session "
                                f"{reservation.session_id} is not")

        charges = {charge.charge_id: charge for charge in by_type[Charge]}
        refunds = collections.Counter()
        for record in journal:
            if record.result != Result.SUCCESS:
                continue
            if record.kind == JournalKind.REFUND:
                refunds[record.reference_id] += record.amount_micros
            elif record.kind == JournalKind.DEBIT:
                charge = charges.get(record.reference_id)
                if charge is None or charge.amount_micros != record.amount_micros:
                    problems.append(f"{where} journal #{record.sequence} debit {record.reference_id} of "
                                    f"{record.amount_micros} has no stored charge of that amount")
        for charge_id, charge in charges.items():
            if charge.refunded_micros != refunds[charge_id] or not 0 <= charge.refunded_micros <= charge.amount_micros:
                problems.append(f"{where} charge {charge_id}: refunded {charge.refunded_micros} of "
                                f"{charge.amount_micros}, the journal refunds {refunds[charge_id]}")
            if _object_number(charge_id) >= meta.next_object_id:
                problems.append(f"{where} charge {charge_id} at or past meta.next_object_id {meta.next_object_id}")
    assert not problems, (f"offline store check failed ({len(problems)} problems) {context}\n  "
                          + "\n  ".join(problems[:40]))
    return stats


# ---------------------------------------------------------------- signals

def sigkill(proc: psutil.Process) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass

