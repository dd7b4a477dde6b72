"""Concurrent calls on one balance: the shard applies them one at a time, so
exactly what the money covers is granted, never more (DESIGN.md invariant 2)."""

import asyncio
import collections

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import SMS, SMS_MICROS, VOICE, VOICE_MICROS_PER_S, Money

pytestmark = pytest.mark.slow

CALLS = 200
GRANTS = 50
GRANT_UNITS = 10
GRANT_MICROS = GRANT_UNITS * VOICE_MICROS_PER_S


def test_200_concurrent_reserves_against_50_grants_worth(async_client, calls, new_subscriber):
    subscriber = new_subscriber(funds=GRANTS * GRANT_MICROS)

    async def storm():
        client = async_client.client
        return await asyncio.gather(*(
            client.reserve(subscriber.id, f"session-{index}", VOICE, GRANT_UNITS) for index in range(CALLS)))

    replies = async_client.run(storm())

    outcomes = collections.Counter(pb.Result.Name(reply.result) for reply in replies)
    assert outcomes == {"SUCCESS": GRANTS, "CREDIT_LIMIT_REACHED": CALLS - GRANTS}
    granted = [reply for reply in replies if reply.result == pb.SUCCESS]
    assert all((r.granted_units, r.held_micros) == (GRANT_UNITS, GRANT_MICROS) for r in granted)
    assert len({r.reservation_id for r in granted}) == GRANTS
    assert sum(r.final_unit_indication for r in granted) == 1, "only the last grant is the last one"
    denied = [reply for reply in replies if reply.result != pb.SUCCESS]
    assert all((r.granted_units, r.held_micros, r.reservation_id) == (0, 0, "") for r in denied)
    assert not any(reply.replayed for reply in replies), "the client gave each call its own request id"
    assert calls.money(subscriber.id) == Money(
        pb.SUCCESS, GRANTS * GRANT_MICROS, GRANTS * GRANT_MICROS, 0, "EUR", 0)
    listed = calls.get_account(subscriber.id).reservations
    assert sorted(r.reservation_id for r in listed) == sorted(r.reservation_id for r in granted)


def test_concurrent_direct_debits_on_two_subscribers_never_overspend(async_client, calls, new_subscriber):
    one, two = new_subscriber(funds=30 * SMS_MICROS), new_subscriber(funds=20 * SMS_MICROS + 1)

    async def storm():
        client = async_client.client
        return await asyncio.gather(*(
            client.debit(subscriber.id, 1, rating_group=SMS) for _ in range(60) for subscriber in (one, two)))

    replies = async_client.run(storm())
    outcomes = collections.Counter(pb.Result.Name(reply.result) for reply in replies)
    assert outcomes == {"SUCCESS": 50, "CREDIT_LIMIT_REACHED": 70}
    assert len({reply.charge_id for reply in replies if reply.charge_id}) == 50
    assert calls.money(one.id).balance == 0
    assert calls.money(two.id).balance == 1
