"""Ambiguity: a reply held after the commit (GRID_FAULTS=delay_after_commit_ms)
outlives the caller's deadline although the effect happened. GetTransaction
tells the truth, a retry with the same request id returns the original reply
marked replayed, and the balance moved once (DESIGN.md section 5, invariant 7).
A client with more attempts gets the original reply transparently."""

import asyncio

import pytest
from grid_client import ChargingClient, OutcomeUnknown, RetryPolicy, pb

from fault_history import History, check_history, without_replayed
from fault_support import RATING_GROUP, FaultServer, provision

pytestmark = pytest.mark.slow

DELAY_MS = 1500
# 1_001 micros per 3 events billed per 2: 10 events -> ceil(10/2)*2 = 10 -> 10 * 1_001 / 3 rounded up.
TEN_EVENTS_MICROS = -(-10 * 1_001 // 3)


def test_a_deadline_that_expires_after_the_commit_is_settled_by_get_transaction(tmp_path, seed, report):
    history = History(seed, label="d")
    server = FaultServer(tmp_path / "grid-data", env={"GRID_FAULTS": f"delay_after_commit_ms={DELAY_MS}",
                                                     "GRID_FAULT_SEED": str(seed)}, seed=seed)
    subscriber = "amb"
    where = f"(seed {seed})"
    try:
        server.start()
        provision(server.target, history, [subscriber])
        patient = ChargingClient(server.target, retry=RetryPolicy(attempts=1, timeout_s=10))
        before = patient.balance(subscriber).balance_micros

        # One attempt of 0.5 s: the deadline passes while the shard holds the committed reply.
        # The client then asks GetTransaction with the same 0.5 s, queued behind that batch:
        # it cannot know, so it must say so (OutcomeUnknown), never "did not take effect".
        with ChargingClient(server.target, retry=RetryPolicy(attempts=1, timeout_s=0.5)) as impatient:
            op = history.invoke("debit", subscriber, {"used_units": 10, "rating_group": RATING_GROUP})
            with pytest.raises(OutcomeUnknown) as unknown:
                impatient.debit(subscriber, 10, rating_group=RATING_GROUP, request_id=op.request_id)
            history.complete(op, "unknown", error=repr(unknown.value))
        assert unknown.value.code.name == "DEADLINE_EXCEEDED", (unknown.value, where)

        found = patient.get_transaction(subscriber, op.request_id)
        assert found.found and found.WhichOneof("reply") == "debit", (found, where)
        assert found.debit.result == pb.SUCCESS and found.debit.charged_micros == TEN_EVENTS_MICROS, (found, where)
        assert not found.debit.replayed, (found, where)
        assert patient.balance(subscriber).balance_micros == before - TEN_EVENTS_MICROS, where

        again = patient.debit(subscriber, 10, rating_group=RATING_GROUP, request_id=op.request_id)
        assert again.replayed and without_replayed(again) == found.debit, (again, found, where)
        assert patient.balance(subscriber).balance_micros == before - TEN_EVENTS_MICROS, f"charged twice {where}"

        # The default client waits long enough: the original reply, first time.
        with ChargingClient(server.target) as default:
            plain = asyncio.run(_record(history, server.target, subscriber, RetryPolicy()))
            assert plain.reply.result == pb.SUCCESS and not plain.reply.replayed, (plain.describe(), where)
            assert default.get_transaction(subscriber, plain.request_id).debit == plain.reply, where
        # More attempts than one, each shorter than the delay: the first times out after the
        # commit, a later one is answered from the idempotency record with the original reply.
        retrying = asyncio.run(_record(history, server.target, subscriber, RetryPolicy(attempts=6, timeout_s=0.5)))
        assert retrying.outcome == "ok", (retrying.describe(), where)
        recorded = patient.get_transaction(subscriber, retrying.request_id).debit
        assert without_replayed(retrying.reply) == recorded and recorded.charged_micros == TEN_EVENTS_MICROS, (
            retrying.describe(), recorded, where)
        assert patient.balance(subscriber).balance_micros == before - 3 * TEN_EVENTS_MICROS, where
        patient.close()

        checker = asyncio.run(check_history(server.target, history, [subscriber], context="(ambiguity)"))
    finally:
        server.kill()
    counts = history.counts()
    report(kills=0, restarts=0, ops=counts["total"], ok=counts["ok"], unknown=counts["unknown"],
           failed=counts["fail"], retries_replayed=checker.retries["replayed"], seed=seed)


async def _record(history: History, target: str, subscriber: str, retry: RetryPolicy):
    from grid_client import AsyncChargingClient

    async with AsyncChargingClient(target, retry=retry) as client:
        return await history.call(client, "debit", subscriber, used_units=10, rating_group=RATING_GROUP)
