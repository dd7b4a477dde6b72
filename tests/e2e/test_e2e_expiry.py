"""Hold expiry on a second grid whose grants live 1 s + 1 s grace, swept every 0.2 s.

It shares the session's Ray (EmbeddedGrid starts Ray only when none is running)
and has its own data directory, hence its own shard actors. The holds for all
checks are made together and the module waits for their expiry once.
"""

import dataclasses
import time

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import (
    FUNDS,
    SMS,
    VOICE_MICROS_PER_S,
    Calls,
    Money,
    ServingGrid,
    open_account,
    put_plan,
    release_request,
)
from grid.domain.limits import CoreLimits

pytestmark = pytest.mark.slow

VALIDITY_S, GRACE_S = 1, 1
LIFETIME_S = VALIDITY_S + GRACE_S


@pytest.fixture(scope="module")
def short_grid(embedded, tmp_path_factory) -> Calls:
    """`embedded` first: Ray is up, so this grid joins it and never stops it."""
    grid = ServingGrid(tmp_path_factory.mktemp("grid-e2e-expiry"), shards=2,
                       limits=CoreLimits(validity_time_s=VALIDITY_S, expiry_grace_s=GRACE_S), sweep_interval_s=0.2)
    try:
        yield grid.calls
    finally:
        grid.stop()


@dataclasses.dataclass
class Hold:
    subscriber_id: str
    grant: pb.ReserveResponse
    money_while_active: Money
    listed_while_active: list


@pytest.fixture(scope="module")
def expired(short_grid):
    """Four subscribers, each with one hold, all waited out together."""
    plan_id = put_plan(short_grid.stubs)
    holds = {}
    for name in ("balance", "debit", "release", "spend"):
        subscriber = open_account(short_grid.stubs, plan_id)
        grant = short_grid.reserve(subscriber.id, 100)
        assert grant.result == pb.SUCCESS and grant.validity_time_s == VALIDITY_S
        holds[name] = Hold(subscriber.id, grant, short_grid.money(subscriber.id),
                           list(short_grid.get_account(subscriber.id).reservations))
    time.sleep(LIFETIME_S + 0.6)
    return holds


def test_a_grant_expires_after_validity_plus_grace(expired):
    view = expired["balance"].listed_while_active[0]
    assert view.expires_at_ms - view.granted_at_ms == LIFETIME_S * 1000


def test_get_balance_stops_counting_an_expired_hold(short_grid, expired):
    hold = expired["balance"]
    assert hold.money_while_active == Money(pb.SUCCESS, FUNDS, 100 * VOICE_MICROS_PER_S,
                                            FUNDS - 100 * VOICE_MICROS_PER_S, "EUR", 0)
    assert [r.reservation_id for r in hold.listed_while_active] == [hold.grant.reservation_id]
    assert short_grid.money(hold.subscriber_id) == Money(pb.SUCCESS, FUNDS, 0, FUNDS, "EUR", 0)
    account = short_grid.get_account(hold.subscriber_id)
    assert list(account.reservations) == []
    assert (account.account.reserved_micros, account.account.available_micros) == (0, FUNDS)


def test_a_debit_after_expiry_is_charged_late(short_grid, expired):
    hold = expired["debit"]
    late = short_grid.debit(hold.subscriber_id, 30, reservation_id=hold.grant.reservation_id, final=True)
    assert (late.result, late.late, late.charged_micros, late.released_micros) == (
        pb.SUCCESS, True, 30 * VOICE_MICROS_PER_S, 0)
    assert late.charge_id
    assert short_grid.money(hold.subscriber_id) == Money(
        pb.SUCCESS, FUNDS - 30_000, 0, FUNDS - 30_000, "EUR", 0)
    # The late charge is a real charge: it can be refunded.
    assert short_grid.refund(hold.subscriber_id, late.charge_id, 30_000).result == pb.SUCCESS
    assert short_grid.money(hold.subscriber_id).balance == FUNDS


def test_release_after_expiry_is_reservation_expired(short_grid, expired):
    hold = expired["release"]
    request = release_request(hold.subscriber_id, hold.grant.reservation_id)
    reply = short_grid.stubs.charging.Release(request)
    assert (reply.result, reply.released_micros) == (pb.RESERVATION_EXPIRED, 0)
    assert short_grid.money(hold.subscriber_id) == Money(pb.SUCCESS, FUNDS, 0, FUNDS, "EUR", 0)
    again = short_grid.stubs.charging.Release(request)
    assert (again.result, again.replayed) == (pb.RESERVATION_EXPIRED, True)


def test_expired_money_is_available_again(short_grid, expired):
    hold = expired["spend"]
    sms = short_grid.debit(hold.subscriber_id, 1, rating_group=SMS)
    assert sms.result == pb.SUCCESS
    assert short_grid.money(hold.subscriber_id).available == FUNDS - sms.charged_micros
