"""Replays and mismatched replays, for every mutating RPC (DESIGN.md section 5).

Same request_id and payload: the original reply marked replayed, no second
effect. Same request_id, another payload: ALREADY_EXISTS whose ErrorInfo
names the differing field, and nothing changes.
"""

import dataclasses
from typing import Callable

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import (
    DATA,
    FUNDS,
    SMS,
    VOICE,
    create_account_request,
    debit_request,
    failing,
    new_id,
    put_plan,
    refund_request,
    release_request,
    reserve_request,
    set_state_request,
    top_up_request,
    without_replayed,
)

pytestmark = pytest.mark.slow


def _changed(request, **fields):
    copy = type(request)()
    copy.CopyFrom(request)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


@dataclasses.dataclass(frozen=True)
class Kind:
    """One mutating RPC: how to set it up, its request, and payload variants."""

    name: str
    method: Callable  # (stubs) -> the stub's method
    # (calls, subscriber, plan_id) -> the original request (request_id "idem-1")
    request: Callable
    # (calls, subscriber, plan_id, request) -> {field: request differing only in that field}
    variants: Callable


def _reserve(calls, subscriber, plan_id):
    return reserve_request(subscriber.id, 100, VOICE, session_id="s-1", request_id="idem-1")


def _debit_on_hold(calls, subscriber, plan_id):
    hold = calls.reserve(subscriber.id, 100)
    return debit_request(subscriber.id, 40, reservation_id=hold.reservation_id, request_id="idem-1")


def _debit_on_hold_variants(calls, subscriber, plan_id, request):
    other = calls.reserve(subscriber.id, 100)
    return {
        "used_units": _changed(request, used_units=41),
        "final": _changed(request, final=True),
        "reservation_id": _changed(request, reservation_id=other.reservation_id),
        "rating_group": _changed(request, rating_group=VOICE),
    }


def _release(calls, subscriber, plan_id):
    hold = calls.reserve(subscriber.id, 100)
    return release_request(subscriber.id, hold.reservation_id, request_id="idem-1")


def _refund(calls, subscriber, plan_id):
    charge = calls.debit(subscriber.id, 3, rating_group=SMS)
    return refund_request(subscriber.id, charge.charge_id, 1_000, request_id="idem-1")


def _refund_variants(calls, subscriber, plan_id, request):
    other = calls.debit(subscriber.id, 1, rating_group=SMS)
    return {
        "amount_micros": _changed(request, amount_micros=1_001),
        "charge_id": _changed(request, charge_id=other.charge_id),
    }


KINDS = [
    Kind("top_up", lambda s: s.charging.TopUp,
         lambda c, sub, plan: top_up_request(sub.id, 1_234, request_id="idem-1"),
         lambda c, sub, plan, r: {"amount_micros": _changed(r, amount_micros=1_235)}),
    Kind("reserve", lambda s: s.charging.Reserve, _reserve,
         lambda c, sub, plan, r: {
             "session_id": _changed(r, session_id="s-2"),
             "rating_group": _changed(r, rating_group=DATA),
             "requested_units": _changed(r, requested_units=101),
         }),
    Kind("debit", lambda s: s.charging.Debit, _debit_on_hold, _debit_on_hold_variants),
    Kind("direct_debit", lambda s: s.charging.Debit,
         lambda c, sub, plan: debit_request(sub.id, 2, rating_group=SMS, request_id="idem-1"),
         lambda c, sub, plan, r: {
             "used_units": _changed(r, used_units=3),
             "rating_group": _changed(r, rating_group=VOICE),
         }),
    Kind("release", lambda s: s.charging.Release, _release,
         lambda c, sub, plan, r: {
             "reservation_id": _changed(r, reservation_id=c.reserve(sub.id, 100).reservation_id)}),
    Kind("refund", lambda s: s.charging.Refund, _refund, _refund_variants),
    Kind("create_account", lambda s: s.account.CreateAccount,
         lambda c, sub, plan: create_account_request(new_id("sub-"), plan, request_id="idem-1"),
         lambda c, sub, plan, r: {
             "currency": _changed(r, currency="USD"),
             "credit_limit_micros": _changed(r, credit_limit_micros=1),
             "tariff_plan_id": _changed(r, tariff_plan_id=put_plan(c.stubs)),
         }),
    Kind("set_account_state", lambda s: s.account.SetAccountState,
         lambda c, sub, plan: set_state_request(sub.id, pb.SUSPENDED, request_id="idem-1"),
         lambda c, sub, plan, r: {"state": _changed(r, state=pb.CLOSED)}),
]


def _observe(calls, subscriber_id: str):
    """Everything a replay must not change: the money and the account."""
    return calls.money(subscriber_id), calls.get_account(subscriber_id)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_same_request_id_same_payload_replays_without_effect(calls, subscriber, plan_id, kind):
    request = kind.request(calls, subscriber, plan_id)
    call = kind.method(calls.stubs)
    original = call(request)
    assert original.result == pb.SUCCESS and not original.replayed, original
    observed = _observe(calls, request.subscriber_id)
    for _ in range(2):
        again = call(request)
        assert again.replayed
        assert without_replayed(again) == original
        assert _observe(calls, request.subscriber_id) == observed
    recorded = calls.transaction(request.subscriber_id, request.request_id)
    assert recorded.found and getattr(recorded, recorded.WhichOneof("reply")) == original


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_same_request_id_other_payload_is_already_exists_naming_the_field(calls, subscriber, plan_id, kind):
    request = kind.request(calls, subscriber, plan_id)
    call = kind.method(calls.stubs)
    original = call(request)
    assert original.result == pb.SUCCESS, original
    variants = kind.variants(calls, subscriber, plan_id, request)
    observed = _observe(calls, request.subscriber_id)
    for field, variant in variants.items():
        assert variant.request_id == request.request_id
        error = failing(call, variant)
        assert error.code == grpc.StatusCode.ALREADY_EXISTS, (field, error)
        assert error.info is not None and error.info.reason == "REQUEST_ID_REUSED"
        assert error.info.domain == "charging.grid"
        assert error.info_field == field, (field, error)
        assert field in error.message
        assert _observe(calls, request.subscriber_id) == observed, field
    # The original is still what the request id stands for.
    again = call(request)
    assert again.replayed and without_replayed(again) == original
    recorded = calls.transaction(request.subscriber_id, request.request_id)
    assert getattr(recorded, recorded.WhichOneof("reply")) == original


def test_a_request_id_reused_for_another_operation_names_the_operation(calls, subscriber):
    top_up = top_up_request(subscriber.id, 500, request_id="idem-op")
    assert calls.stubs.charging.TopUp(top_up).result == pb.SUCCESS
    before = calls.money(subscriber.id)
    error = failing(calls.stubs.charging.Reserve, reserve_request(subscriber.id, 10, request_id="idem-op"))
    assert (error.code, error.info_field) == (grpc.StatusCode.ALREADY_EXISTS, "operation")
    error = failing(calls.stubs.charging.Debit, debit_request(subscriber.id, 1, rating_group=SMS,
                                                              request_id="idem-op"))
    assert (error.code, error.info_field) == (grpc.StatusCode.ALREADY_EXISTS, "operation")
    assert calls.money(subscriber.id) == before


def test_the_same_request_id_under_another_subscriber_is_another_operation(calls, subscriber, new_subscriber):
    other = new_subscriber()
    first = calls.stubs.charging.TopUp(top_up_request(subscriber.id, 10, request_id="shared-id"))
    second = calls.stubs.charging.TopUp(top_up_request(other.id, 10, request_id="shared-id"))
    assert not first.replayed and not second.replayed
    assert calls.money(subscriber.id).balance == calls.money(other.id).balance == FUNDS + 10


def test_a_denied_reserve_retried_after_a_top_up_is_denied_again(calls, new_subscriber):
    subscriber = new_subscriber(funds=0)
    request = reserve_request(subscriber.id, 60)
    denied = calls.stubs.charging.Reserve(request)
    assert denied.result == pb.CREDIT_LIMIT_REACHED
    assert calls.top_up(subscriber.id, FUNDS).result == pb.SUCCESS
    retried = calls.stubs.charging.Reserve(request)
    assert (retried.result, retried.replayed) == (pb.CREDIT_LIMIT_REACHED, True)
    assert without_replayed(retried) == denied
    assert calls.money(subscriber.id).reserved == 0
    # A new attempt takes a new id, and gets the grant.
    assert calls.reserve(subscriber.id, 60).result == pb.SUCCESS


def test_a_replayed_debit_after_the_hold_closed_still_replays(calls, subscriber):
    hold = calls.reserve(subscriber.id, 100)
    request = debit_request(subscriber.id, 40, reservation_id=hold.reservation_id, final=True)
    original = calls.stubs.charging.Debit(request)
    assert (original.result, original.released_micros) == (pb.SUCCESS, 60_000)
    assert calls.release(subscriber.id, hold.reservation_id).result == pb.RESERVATION_ALREADY_RESOLVED
    again = calls.stubs.charging.Debit(request)
    assert again.replayed and without_replayed(again) == original
    assert calls.money(subscriber.id).balance == FUNDS - 40_000
