"""A clean stop and a restart on the same data directory: acknowledged effects,
holds, charges, tariffs and idempotency records are all still there."""

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import (
    FUNDS,
    RATES,
    SMS,
    SMS_MICROS,
    VOICE,
    ServingGrid,
    debit_request,
    open_account,
    put_plan,
    reserve_request,
    top_up_request,
    without_replayed,
)

pytestmark = pytest.mark.slow


def test_everything_acknowledged_survives_a_restart(embedded, tmp_path):
    first = ServingGrid(tmp_path / "grid", shards=2)
    try:
        calls = first.calls
        plan_id = put_plan(calls.stubs)
        subscribers = [open_account(calls.stubs, plan_id) for _ in range(4)]  # both shards, most likely
        top_ups, holds, charges = {}, {}, {}
        for subscriber in subscribers:
            request = top_up_request(subscriber.id, 777)
            top_ups[subscriber.id] = (request, calls.stubs.charging.TopUp(request))
            request = reserve_request(subscriber.id, 100, VOICE)
            holds[subscriber.id] = (request, calls.stubs.charging.Reserve(request))
            request = debit_request(subscriber.id, 1, rating_group=SMS)
            charges[subscriber.id] = (request, calls.stubs.charging.Debit(request))
        accounts = {s.id: calls.get_account(s.id) for s in subscribers}
        money = {s.id: calls.money(s.id) for s in subscribers}
    finally:
        first.stop()

    second = ServingGrid(tmp_path / "grid", shards=2)
    try:
        calls = second.calls
        assert calls.stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES)).version == 1
        for subscriber in subscribers:
            assert calls.get_account(subscriber.id) == accounts[subscriber.id]
            assert calls.money(subscriber.id) == money[subscriber.id]
            assert money[subscriber.id].balance == FUNDS + 777 - SMS_MICROS
            for request, reply, method in (
                (*top_ups[subscriber.id], calls.stubs.charging.TopUp),
                (*holds[subscriber.id], calls.stubs.charging.Reserve),
                (*charges[subscriber.id], calls.stubs.charging.Debit),
            ):
                again = method(request)
                assert again.replayed and without_replayed(again) == reply
                recorded = calls.transaction(subscriber.id, request.request_id)
                assert getattr(recorded, recorded.WhichOneof("reply")) == reply
            assert calls.money(subscriber.id) == money[subscriber.id]
            # The hold and the charge are live objects after the restart.
            hold = holds[subscriber.id][1]
            final = calls.debit(subscriber.id, 40, reservation_id=hold.reservation_id, final=True)
            assert (final.result, final.released_micros) == (pb.SUCCESS, 60_000)
            refund = calls.refund(subscriber.id, charges[subscriber.id][1].charge_id, SMS_MICROS)
            assert (refund.result, refund.refundable_micros) == (pb.SUCCESS, 0)
            assert calls.money(subscriber.id).balance == FUNDS + 777 - 40_000
    finally:
        second.stop()
