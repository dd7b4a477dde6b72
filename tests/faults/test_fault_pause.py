"""Pause: SIGSTOP the shard that owns a hold past the hold's validity + grace,
then SIGCONT it. The hold expires exactly once (one EXPIRE in the journal, its
money returned, the balance untouched), a Release answers RESERVATION_EXPIRED,
and usage reported for it is charged once as a late debit, whether it was sent
while the shard was stopped or after (DESIGN.md section 4; invariant 5)."""

import asyncio
import random

import pytest
from grid_client import AsyncChargingClient, RetryPolicy, pb

from fault_history import OK, History, check_history, without_replayed
from fault_support import (
    RATING_GROUP,
    FaultServer,
    check_shard_stores,
    loop_timeout,
    provision,
    shard_of,
)
from grid.domain.outcomes import JournalKind
from grid.storage.shard_store import ShardStore

pytestmark = pytest.mark.slow

SHARDS = 2
VALIDITY_S, GRACE_S, SWEEP_S = 1, 1, 0.2
PATIENT = RetryPolicy(attempts=1, timeout_s=20)


async def _pause_round(target, server, history, subscriber, rng, debit_while_stopped, seed) -> dict:
    where = f"({subscriber}, debit {'while stopped' if debit_while_stopped else 'after SIGCONT'}, seed {seed})"
    async with AsyncChargingClient(target) as client, AsyncChargingClient(target, retry=PATIENT) as patient:
        before = await client.balance(subscriber)
        hold = await history.call(client, "reserve", subscriber, session_id="paused", rating_group=RATING_GROUP,
                                  requested_units=60)
        assert hold.outcome == OK and hold.reply.result == pb.SUCCESS, hold.describe() + where
        reservation_id, held = hold.reply.reservation_id, hold.reply.held_micros
        assert (await client.balance(subscriber)).reserved_micros == before.reserved_micros + held, where

        shard = server.wait_for_shard(shard_of(subscriber, SHARDS))
        pause_s = rng.uniform(VALIDITY_S + GRACE_S + 1.5, VALIDITY_S + GRACE_S + 2.5)
        shard.suspend()  # SIGSTOP
        try:
            debit = None
            if debit_while_stopped:
                await asyncio.sleep(0.5)
                debit = asyncio.get_running_loop().create_task(history.call(
                    patient, "debit", subscriber, reservation_id=reservation_id, used_units=30, final=True))
                await asyncio.sleep(pause_s - 0.5)
            else:
                await asyncio.sleep(pause_s)
        finally:
            shard.resume()  # SIGCONT

        if debit is None:
            # The hold expired; its money is back and the balance did not move.
            after_expiry = await client.balance(subscriber)
            assert (after_expiry.balance_micros, after_expiry.reserved_micros) == (
                before.balance_micros, before.reserved_micros), f"expiry moved money {after_expiry} {where}"
            debit = asyncio.get_running_loop().create_task(history.call(
                patient, "debit", subscriber, reservation_id=reservation_id, used_units=30, final=True))
        late = await debit
        assert late.outcome == OK, late.describe() + where
        assert late.reply.result == pb.SUCCESS and late.reply.late and not late.reply.replayed, (
            f"usage on the expired hold must be charged once as late: {late.describe()} {where}")
        assert late.reply.released_micros == 0, late.describe() + where
        charged = late.reply.charged_micros
        assert charged > 0, where

        release = await history.call(client, "release", subscriber, reservation_id=reservation_id)
        assert release.outcome == OK and release.reply.result == pb.RESERVATION_EXPIRED, release.describe() + where
        account = await client.get_account(subscriber)
        assert list(account.reservations) == [], f"an expired hold is still listed: {account} {where}"
        assert account.account.reserved_micros == before.reserved_micros, where
        assert account.account.balance_micros == before.balance_micros - charged, (
            f"the balance moved by {before.balance_micros - account.account.balance_micros}, the late debit "
            f"charged {charged} {where}")

        again = await patient.debit(subscriber, 30, reservation_id=reservation_id, final=True,
                                    request_id=late.request_id)
        assert again.replayed and without_replayed(again) == without_replayed(late.reply), (
            f"retry of the late debit: {again} {where}")
        assert (await client.balance(subscriber)).balance_micros == before.balance_micros - charged, where
    return {"reservation_id": reservation_id, "shard": shard_of(subscriber, SHARDS)}


@pytest.mark.timeout(loop_timeout(per_round_s=20))
def test_sigstop_past_a_holds_validity_expires_it_once_and_charges_late_usage_once(tmp_path, seed, rounds, report):
    rng = random.Random(f"{seed}/pause")
    history = History(seed, label="p")
    subscribers = [f"p{i}" for i in range(rounds)]
    server = FaultServer(tmp_path / "grid-data", shards=SHARDS, serve_args=[
        "--validity-time-s", str(VALIDITY_S), "--expiry-grace-s", str(GRACE_S), "--sweep-interval-s", str(SWEEP_S)], seed=seed)
    paused = []
    try:
        server.start()
        provision(server.target, history, subscribers)
        for number, subscriber in enumerate(subscribers):
            paused.append(asyncio.run(_pause_round(server.target, server, history, subscriber, rng,
                                                   debit_while_stopped=number % 2 == 0, seed=seed)))
        asyncio.run(check_history(server.target, history, subscribers, context="(pause)", expiry_possible=True))
        assert server.terminate() == 0, f"the graceful stop failed; see {server.log_path} (seed {seed})"
        check_shard_stores(server.data_dir, SHARDS, f"after the graceful stop (seed {seed})")
    finally:
        server.kill()
    journals = {}
    for shard_id in range(SHARDS):
        store = ShardStore(server.data_dir / f"shard-{shard_id}", shard_id)
        try:
            journals[shard_id] = store.journal()
        finally:
            store.close()
    for hold in paused:
        expiries = [r for r in journals[hold["shard"]]
                    if r.kind == JournalKind.EXPIRE and r.reference_id == hold["reservation_id"]]
        assert len(expiries) == 1, (f"{len(expiries)} EXPIRE records for {hold['reservation_id']} (one wanted): "
                                    f"{expiries} (seed {seed})")
        assert expiries[0].amount_micros > 0, (expiries, seed)  # it returned the held money
        assert expiries[0].balance_after_micros == expiries[0].balance_before_micros, (expiries, seed)
    counts = history.counts()
    report(pauses=len(paused), kills=0, restarts=0, ops=counts["total"], ok=counts["ok"], unknown=counts["unknown"],
           failed=counts["fail"], seed=seed)
