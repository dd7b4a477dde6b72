"""The whole charging.v1 contract over real gRPC, real Ray shard actors and real
RocksDB: catalog, accounts, every charging outcome, and the money after each."""

import dataclasses

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import open_account
from e2e_support import (
    DATA,
    FUNDS,
    ODD,
    RATES,
    SMS,
    SMS_MICROS,
    UNPRICED,
    VOICE,
    VOICE_MICROS_PER_S,
    Money,
    debit_request,
    new_id,
    reserve_request,
    set_state_request,
    top_up_request,
)

pytestmark = pytest.mark.slow


def unchanged(before: Money, after: Money) -> None:
    assert after == before


# ---------------------------------------------------------------- catalog


def test_put_tariff_version_increments_only_when_the_plan_changes(stubs, calls):
    plan_id = new_id("plan-")
    first = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES))
    assert (first.result, first.version) == (pb.SUCCESS, 1)
    got = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id))
    assert got.result == pb.SUCCESS
    assert got.plan.tariff_plan_id == plan_id and got.plan.version == 1
    assert list(got.plan.rates) == RATES

    same = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES))
    assert (same.result, same.version) == (pb.SUCCESS, 1)
    assert stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id)).plan.version == 1

    dearer = [pb.RatingGroupRate() for _ in RATES]
    for copy, rate in zip(dearer, RATES):
        copy.CopyFrom(rate)
    sms = next(rate for rate in dearer if rate.rating_group == SMS)
    sms.price_micros = 2 * SMS_MICROS
    changed = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=dearer))
    assert (changed.result, changed.version) == (pb.SUCCESS, 2)
    again = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=dearer))
    assert again.version == 2
    got = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id))
    assert got.plan.version == 2 and list(got.plan.rates) == dearer

    # The new price is what a charge costs now (on whichever shard the account lives).
    subscriber = open_account(stubs, plan_id)
    sent = calls.debit(subscriber.id, 1, rating_group=SMS)
    assert (sent.result, sent.charged_micros) == (pb.SUCCESS, 2 * SMS_MICROS)


def test_get_tariff_unknown_plan(stubs):
    reply = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=new_id("nope-")))
    assert reply.result == pb.TARIFF_PLAN_UNKNOWN
    assert not reply.HasField("plan")


# ---------------------------------------------------------------- accounts


def test_create_account_and_its_denials(stubs, calls, plan_id):
    subscriber_id = new_id("sub-")
    created = calls.create_account(subscriber_id, plan_id, credit_limit_micros=5_000)
    assert (created.result, created.replayed) == (pb.SUCCESS, False)
    assert len(created.trace_id) == 32
    account = calls.get_account(subscriber_id)
    assert account.result == pb.SUCCESS
    assert account.account == pb.Account(
        subscriber_id=subscriber_id, currency="EUR", state=pb.ACTIVE, credit_limit_micros=5_000,
        tariff_plan_id=plan_id, balance_micros=0, reserved_micros=0, available_micros=5_000)
    assert list(account.reservations) == []

    again = calls.create_account(subscriber_id, plan_id, currency="USD")
    assert (again.result, again.replayed) == (pb.ACCOUNT_ALREADY_EXISTS, False)
    assert calls.get_account(subscriber_id).account.currency == "EUR"

    orphan_id = new_id("sub-")
    orphan = calls.create_account(orphan_id, new_id("no-such-plan-"))
    assert orphan.result == pb.TARIFF_PLAN_UNKNOWN
    assert calls.get_account(orphan_id).result == pb.USER_UNKNOWN
    assert calls.money(orphan_id).result == pb.USER_UNKNOWN


def test_get_account_lists_active_reservations(calls, subscriber):
    voice = calls.reserve(subscriber.id, 60, VOICE, session_id="call-1")
    data = calls.reserve(subscriber.id, 2_000_000, DATA, session_id="download-1")
    assert voice.result == data.result == pb.SUCCESS
    reply = calls.get_account(subscriber.id)
    held = voice.held_micros + data.held_micros
    assert held == 60 * VOICE_MICROS_PER_S + 2_000
    assert (reply.account.balance_micros, reply.account.reserved_micros, reply.account.available_micros) == (
        FUNDS, held, FUNDS - held)
    by_id = {r.reservation_id: r for r in reply.reservations}
    assert set(by_id) == {voice.reservation_id, data.reservation_id}
    for grant, session_id, rating_group in ((voice, "call-1", VOICE), (data, "download-1", DATA)):
        view = by_id[grant.reservation_id]
        assert (view.session_id, view.rating_group, view.granted_units, view.used_units, view.held_micros,
                view.state) == (session_id, rating_group, grant.granted_units, 0, grant.held_micros,
                                pb.RESERVATION_ACTIVE)
        assert view.expires_at_ms - view.granted_at_ms == (300 + 30) * 1000  # default validity + grace

    calls.debit(subscriber.id, 10, reservation_id=voice.reservation_id)
    partly = {r.reservation_id: r for r in calls.get_account(subscriber.id).reservations}
    assert partly[voice.reservation_id].used_units == 10
    assert partly[voice.reservation_id].held_micros == 50 * VOICE_MICROS_PER_S

    calls.debit(subscriber.id, 20, reservation_id=voice.reservation_id, final=True)
    calls.release(subscriber.id, data.reservation_id)
    after = calls.get_account(subscriber.id)
    assert list(after.reservations) == []
    assert after.account.reserved_micros == 0
    assert after.account.balance_micros == FUNDS - 30 * VOICE_MICROS_PER_S


def test_suspended_account_is_denied_service(calls, subscriber):
    suspended = calls.set_state(subscriber.id, pb.SUSPENDED)
    assert suspended.result == pb.SUCCESS
    assert calls.get_account(subscriber.id).account.state == pb.SUSPENDED
    before = calls.money(subscriber.id)

    denied = calls.reserve(subscriber.id, 60)
    assert denied.result == pb.END_USER_SERVICE_DENIED
    assert (denied.reservation_id, denied.granted_units, denied.held_micros) == ("", 0, 0)
    direct = calls.debit(subscriber.id, 1, rating_group=SMS)
    assert (direct.result, direct.charged_micros, direct.charge_id) == (pb.END_USER_SERVICE_DENIED, 0, "")
    unchanged(before, calls.money(subscriber.id))
    assert list(calls.get_account(subscriber.id).reservations) == []

    assert calls.set_state(subscriber.id, pb.ACTIVE).result == pb.SUCCESS
    assert calls.reserve(subscriber.id, 60).result == pb.SUCCESS


def test_closed_is_final(calls, subscriber):
    assert calls.set_state(subscriber.id, pb.CLOSED).result == pb.SUCCESS
    assert calls.set_state(subscriber.id, pb.ACTIVE).result == pb.END_USER_SERVICE_DENIED
    assert calls.get_account(subscriber.id).account.state == pb.CLOSED
    before = calls.money(subscriber.id)
    assert calls.top_up(subscriber.id, 1_000).result == pb.END_USER_SERVICE_DENIED
    assert calls.reserve(subscriber.id, 1).result == pb.END_USER_SERVICE_DENIED
    unchanged(before, calls.money(subscriber.id))


# ---------------------------------------------------------------- money


def test_top_up_and_get_balance(calls, new_subscriber):
    subscriber = new_subscriber(funds=0, credit_limit_micros=7_000)
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, 0, 0, 7_000, "EUR", 7_000)
    first = calls.top_up(subscriber.id, 1_500_000)
    assert (first.result, first.balance_micros, first.replayed) == (pb.SUCCESS, 1_500_000, False)
    second = calls.top_up(subscriber.id, 250)
    assert second.balance_micros == 1_500_250
    hold = calls.reserve(subscriber.id, 100)
    assert hold.held_micros == 100 * VOICE_MICROS_PER_S
    assert calls.money(subscriber.id) == Money(
        pb.SUCCESS, 1_500_250, 100_000, 1_500_250 - 100_000 + 7_000, "EUR", 7_000)


def test_reserve_grants_min_of_requested_and_affordable(calls, subscriber):
    small = calls.reserve(subscriber.id, 600)
    assert (small.result, small.granted_units, small.held_micros, small.final_unit_indication) == (
        pb.SUCCESS, 600, 600_000, False)
    assert small.validity_time_s == 300 and small.reservation_id and not small.replayed

    # The money left buys 9_400 s: the grant is cut, and says so.
    greedy = calls.reserve(subscriber.id, 20_000)
    assert (greedy.result, greedy.granted_units, greedy.held_micros, greedy.final_unit_indication) == (
        pb.SUCCESS, 9_400, 9_400_000, True)
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, FUNDS, FUNDS, 0, "EUR", 0)

    request = reserve_request(subscriber.id, 1)
    broke = calls.stubs.charging.Reserve(request)
    assert broke.result == pb.CREDIT_LIMIT_REACHED
    assert (broke.reservation_id, broke.granted_units, broke.held_micros) == ("", 0, 0)
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, FUNDS, FUNDS, 0, "EUR", 0)
    recorded = calls.transaction(subscriber.id, request.request_id)
    assert recorded.found and recorded.reserve.result == pb.CREDIT_LIMIT_REACHED


def test_final_unit_indication_when_the_grant_is_the_last_the_balance_allows(calls, new_subscriber):
    subscriber = new_subscriber(funds=60 * VOICE_MICROS_PER_S)
    exact = calls.reserve(subscriber.id, 60)
    assert (exact.granted_units, exact.final_unit_indication) == (60, True)
    roomy = calls.reserve(new_subscriber().id, 60)
    assert (roomy.granted_units, roomy.final_unit_indication) == (60, False)


def test_debit_partial_then_final_releases_the_rest(calls, subscriber):
    hold = calls.reserve(subscriber.id, 600)
    partial = calls.debit(subscriber.id, 100, reservation_id=hold.reservation_id)
    assert (partial.result, partial.charged_micros, partial.released_micros, partial.overage, partial.late) == (
        pb.SUCCESS, 100_000, 0, False, False)
    assert partial.charge_id
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, FUNDS - 100_000, 500_000, FUNDS - 600_000, "EUR", 0)

    final = calls.debit(subscriber.id, 200, reservation_id=hold.reservation_id, final=True)
    assert (final.result, final.charged_micros, final.released_micros, final.overage) == (
        pb.SUCCESS, 200_000, 300_000, False)
    assert final.charge_id != partial.charge_id
    settled = Money(pb.SUCCESS, FUNDS - 300_000, 0, FUNDS - 300_000, "EUR", 0)
    assert calls.money(subscriber.id) == settled

    late = calls.debit(subscriber.id, 5, reservation_id=hold.reservation_id)
    assert (late.result, late.charged_micros, late.charge_id) == (pb.RESERVATION_ALREADY_RESOLVED, 0, "")
    assert calls.release(subscriber.id, hold.reservation_id).result == pb.RESERVATION_ALREADY_RESOLVED
    assert calls.money(subscriber.id) == settled


def test_debit_over_the_hold_is_charged_not_clamped(calls, new_subscriber):
    subscriber = new_subscriber(funds=100 * VOICE_MICROS_PER_S)
    hold = calls.reserve(subscriber.id, 60)
    assert hold.held_micros == 60_000
    over = calls.debit(subscriber.id, 150, reservation_id=hold.reservation_id, final=True)
    assert (over.result, over.charged_micros, over.overage, over.overage_micros, over.released_micros) == (
        pb.SUCCESS, 150_000, True, 90_000, 0)
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, -50_000, 0, -50_000, "EUR", 0)
    # Below the floor nothing more is granted or charged directly.
    assert calls.reserve(subscriber.id, 1).result == pb.CREDIT_LIMIT_REACHED
    assert calls.debit(subscriber.id, 1, rating_group=SMS).result == pb.CREDIT_LIMIT_REACHED
    assert calls.money(subscriber.id).balance == -50_000


def test_direct_debit_and_credit_limit_reached(calls, new_subscriber):
    subscriber = new_subscriber(funds=SMS_MICROS + SMS_MICROS // 2)
    sms = calls.debit(subscriber.id, 1, rating_group=SMS)
    assert (sms.result, sms.charged_micros, sms.late, sms.overage, sms.released_micros) == (
        pb.SUCCESS, SMS_MICROS, False, False, 0)
    assert sms.charge_id
    denied = calls.debit(subscriber.id, 1, rating_group=SMS)
    assert (denied.result, denied.charged_micros, denied.charge_id) == (pb.CREDIT_LIMIT_REACHED, 0, "")
    assert calls.money(subscriber.id).balance == SMS_MICROS // 2

    postpaid = new_subscriber(funds=0, credit_limit_micros=2 * SMS_MICROS + 1)
    for _ in range(2):
        assert calls.debit(postpaid.id, 1, rating_group=SMS).result == pb.SUCCESS
    assert calls.debit(postpaid.id, 1, rating_group=SMS).result == pb.CREDIT_LIMIT_REACHED
    assert calls.money(postpaid.id) == Money(pb.SUCCESS, -2 * SMS_MICROS, 0, 1, "EUR", 2 * SMS_MICROS + 1)


def test_cost_is_rounded_once_up_with_its_residue(calls, subscriber):
    # 10 s at 1 micro per 3 s: exactly 3.333... micros, charged 4, residue 0.666... micros.
    odd = calls.debit(subscriber.id, 10, rating_group=ODD)
    assert (odd.charged_micros, odd.rounding_residue_picos) == (4, 666_666)
    exact = calls.debit(subscriber.id, 9, rating_group=ODD)
    assert (exact.charged_micros, exact.rounding_residue_picos) == (3, 0)
    assert calls.money(subscriber.id).balance == FUNDS - 7


def test_rating_failed_charges_nothing(calls, subscriber):
    before = calls.money(subscriber.id)
    reserve = calls.reserve(subscriber.id, 60, UNPRICED)
    assert (reserve.result, reserve.reservation_id, reserve.held_micros) == (pb.RATING_FAILED, "", 0)
    request = debit_request(subscriber.id, 1, rating_group=UNPRICED)
    direct = calls.stubs.charging.Debit(request)
    assert (direct.result, direct.charged_micros, direct.charge_id) == (pb.RATING_FAILED, 0, "")
    unchanged(before, calls.money(subscriber.id))
    recorded = calls.transaction(subscriber.id, request.request_id)
    assert recorded.found and recorded.debit.result == pb.RATING_FAILED


def test_release_returns_the_hold(calls, subscriber, new_subscriber):
    hold = calls.reserve(subscriber.id, 1_000)
    released = calls.release(subscriber.id, hold.reservation_id)
    assert (released.result, released.released_micros) == (pb.SUCCESS, 1_000_000)
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, FUNDS, 0, FUNDS, "EUR", 0)
    assert calls.release(subscriber.id, hold.reservation_id).result == pb.RESERVATION_ALREADY_RESOLVED
    assert calls.release(subscriber.id, "R0-999999999").result == pb.RESERVATION_NOT_FOUND
    assert calls.debit(subscriber.id, 1, reservation_id="R0-999999999").result == pb.RESERVATION_NOT_FOUND

    # Another subscriber's hold is not found through this subscriber, and stays held.
    other = new_subscriber()
    theirs = calls.reserve(other.id, 100)
    assert calls.release(subscriber.id, theirs.reservation_id).result == pb.RESERVATION_NOT_FOUND
    assert calls.debit(subscriber.id, 1, reservation_id=theirs.reservation_id).result == pb.RESERVATION_NOT_FOUND
    assert calls.money(other.id).reserved == 100_000
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, FUNDS, 0, FUNDS, "EUR", 0)


def test_refund_is_bounded_by_the_charge(calls, subscriber, new_subscriber):
    sms = calls.debit(subscriber.id, 1, rating_group=SMS)
    part = calls.refund(subscriber.id, sms.charge_id, 30_000)
    assert (part.result, part.refunded_micros, part.refundable_micros) == (pb.SUCCESS, 30_000, 70_000)
    assert calls.money(subscriber.id).balance == FUNDS - 70_000

    too_much = calls.refund(subscriber.id, sms.charge_id, 70_001)
    assert (too_much.result, too_much.refunded_micros, too_much.refundable_micros) == (
        pb.REFUND_EXCEEDS_CHARGE, 0, 70_000)
    assert calls.money(subscriber.id).balance == FUNDS - 70_000

    rest = calls.refund(subscriber.id, sms.charge_id, 70_000)
    assert (rest.result, rest.refundable_micros) == (pb.SUCCESS, 0)
    assert calls.refund(subscriber.id, sms.charge_id, 1).result == pb.REFUND_EXCEEDS_CHARGE
    assert calls.money(subscriber.id).balance == FUNDS

    assert calls.refund(subscriber.id, "C0-999999999", 1).result == pb.CHARGE_NOT_FOUND
    other = new_subscriber()
    theirs = calls.debit(other.id, 1, rating_group=SMS)
    assert calls.refund(subscriber.id, theirs.charge_id, 1).result == pb.CHARGE_NOT_FOUND
    assert calls.money(subscriber.id).balance == FUNDS
    assert calls.money(other.id).balance == FUNDS - SMS_MICROS


# ---------------------------------------------------------------- GetTransaction


def _mutations(calls, subscriber):
    """Each mutating RPC once on a fresh subscriber: (request_id, the oneof field, reply)."""
    hold = calls.reserve(subscriber.id, 100, request_id="t-reserve")
    debit = calls.debit(subscriber.id, 10, reservation_id=hold.reservation_id, request_id="t-debit")
    release = calls.release(subscriber.id, hold.reservation_id, request_id="t-release")
    refund = calls.refund(subscriber.id, debit.charge_id, 1, request_id="t-refund")
    top_up = calls.top_up(subscriber.id, 5, request_id="t-top-up")
    state = calls.set_state(subscriber.id, pb.ACTIVE, request_id="t-state")
    return [("t-reserve", "reserve", hold), ("t-debit", "debit", debit), ("t-release", "release", release),
            ("t-refund", "refund", refund), ("t-top-up", "top_up", top_up), ("t-state", "set_account_state", state)]


def test_get_transaction_returns_the_original_reply_in_its_field(calls, plan_id, new_subscriber):
    subscriber_id = new_id("sub-")
    created = calls.create_account(subscriber_id, plan_id, request_id="t-create")
    recorded = calls.transaction(subscriber_id, "t-create")
    assert recorded.found and recorded.WhichOneof("reply") == "create_account"
    assert recorded.create_account == created

    calls.top_up(subscriber_id, FUNDS)
    subscriber = dataclasses.replace(new_subscriber(), id=subscriber_id)
    for request_id, field, reply in _mutations(calls, subscriber):
        assert reply.result == pb.SUCCESS, (field, reply)
        recorded = calls.transaction(subscriber.id, request_id)
        assert recorded.found, request_id
        assert recorded.WhichOneof("reply") == field
        assert getattr(recorded, field) == reply

    missing = calls.transaction(subscriber.id, new_id("never-"))
    assert not missing.found and missing.WhichOneof("reply") is None
    # Request ids are per subscriber: another subscriber's "t-debit" is not this one's.
    assert not calls.transaction(new_subscriber().id, "t-debit").found


# ---------------------------------------------------------------- unknown subscriber


@pytest.mark.parametrize("call", [
    lambda c, s: c.reserve(s, 1),
    lambda c, s: c.debit(s, 1, rating_group=SMS),
    lambda c, s: c.debit(s, 1, reservation_id="R0-1"),
    lambda c, s: c.release(s, "R0-1"),
    lambda c, s: c.refund(s, "C0-1", 1),
    lambda c, s: c.top_up(s, 1),
    lambda c, s: c.set_state(s, pb.SUSPENDED),
    lambda c, s: c.get_account(s),
    lambda c, s: c.stubs.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=s)),
], ids=["reserve", "direct-debit", "debit", "release", "refund", "top-up", "set-state", "get-account",
        "get-balance"])
def test_user_unknown(calls, call):
    ghost = new_id("ghost-")
    assert call(calls, ghost).result == pb.USER_UNKNOWN
    assert calls.get_account(ghost).result == pb.USER_UNKNOWN


def test_denied_top_up_and_state_change_are_recorded(calls):
    ghost = new_id("ghost-")
    top_up = top_up_request(ghost, 1)
    assert calls.stubs.charging.TopUp(top_up).result == pb.USER_UNKNOWN
    state = set_state_request(ghost, pb.SUSPENDED)
    assert calls.stubs.account.SetAccountState(state).result == pb.USER_UNKNOWN
    assert calls.transaction(ghost, top_up.request_id).top_up.result == pb.USER_UNKNOWN
    assert calls.transaction(ghost, state.request_id).set_account_state.result == pb.USER_UNKNOWN


# ---------------------------------------------------------------- limits as outcomes


def test_balance_limit_exceeded_changes_nothing(calls, new_subscriber):
    subscriber = new_subscriber(funds=0)
    balance_max, top_up_max = 10**17, 10**15  # CoreLimits defaults
    for _ in range(balance_max // top_up_max):
        assert calls.top_up(subscriber.id, top_up_max).result == pb.SUCCESS
    over = calls.top_up(subscriber.id, 1)
    assert (over.result, over.balance_micros) == (pb.BALANCE_LIMIT_EXCEEDED, balance_max)
    assert calls.money(subscriber.id).balance == balance_max


def test_too_many_reservations(calls, subscriber):
    # 1_000 holds (CoreLimits default) in one Charge stream, then one more.
    messages = []
    for tag in range(1_000):
        message = pb.ChargeRequest(correlation_tag=tag)
        message.reserve.CopyFrom(reserve_request(subscriber.id, 1))
        messages.append(message)
    replies = list(calls.stubs.charging.Charge(iter(messages), timeout=60))
    assert len(replies) == 1_000 and all(r.reserve.result == pb.SUCCESS for r in replies)
    one_more = calls.reserve(subscriber.id, 1)
    assert (one_more.result, one_more.held_micros) == (pb.TOO_MANY_RESERVATIONS, 0)
    assert calls.money(subscriber.id).reserved == 1_000 * VOICE_MICROS_PER_S
    assert len(calls.get_account(subscriber.id).reservations) == 1_000
    # Releasing one makes room for one.
    calls.release(subscriber.id, replies[0].reserve.reservation_id)
    assert calls.reserve(subscriber.id, 1).result == pb.SUCCESS


# ---------------------------------------------------------------- trace ids


def test_a_client_traceparent_is_continued_and_returned(calls, subscriber):
    trace_id = new_id()  # 32 hex digits
    metadata = (("traceparent", f"00-{trace_id}-{'ab' * 8}-01"),)
    reply = calls.stubs.charging.TopUp(top_up_request(subscriber.id, 1), metadata=metadata)
    assert reply.trace_id == trace_id
    untraced = calls.top_up(subscriber.id, 1)
    assert len(untraced.trace_id) == 32 and untraced.trace_id not in (trace_id, "0" * 32)


# ---------------------------------------------------------------- identifiers at the edge


@pytest.mark.parametrize("make_id", [
    lambda: ("s" * 96 + new_id())[:128],  # exactly id_length_max
    lambda: f"José ☎ 電話 {new_id()}",  # printable non-ASCII, inner spaces
], ids=["128-chars", "unicode"])
def test_identifiers_at_the_edge_of_valid_work_end_to_end(calls, plan_id, make_id):
    subscriber_id, request_id, session_id = make_id(), make_id(), make_id()
    assert len(subscriber_id) <= 128
    assert calls.create_account(subscriber_id, plan_id, request_id=request_id).result == pb.SUCCESS
    assert calls.top_up(subscriber_id, FUNDS).result == pb.SUCCESS
    hold = calls.reserve(subscriber_id, 10, session_id=session_id, request_id=make_id())
    assert hold.result == pb.SUCCESS
    assert calls.get_account(subscriber_id).reservations[0].session_id == session_id
    assert calls.transaction(subscriber_id, request_id).create_account.result == pb.SUCCESS
    assert calls.money(subscriber_id).reserved == 10 * VOICE_MICROS_PER_S


def test_usage_within_the_grant_reported_in_pieces_costs_what_the_grant_was_priced_at(calls, stubs):
    plan_id = new_id("plan-")
    per_minute = pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, price_micros=20_000, rate_units=60,
                                    increment_units=60)  # 0.02 a minute, per started minute (grid demo)
    assert stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=[per_minute])).version == 1
    subscriber = open_account(stubs, plan_id, funds=200_000)  # exactly 10 minutes, prepaid
    hold = calls.reserve(subscriber.id, 600, VOICE)
    assert (hold.granted_units, hold.held_micros) == (600, 200_000)
    charged, overage = 0, False
    for report in range(20):  # 10 minutes of talk, reported every 30 s
        used = calls.debit(subscriber.id, 30, reservation_id=hold.reservation_id, final=report == 19)
        assert used.result == pb.SUCCESS
        charged += used.charged_micros
        overage |= used.overage
    assert charged == 200_000, "a 10 minute call billed per started minute costs 10 minutes"
    assert calls.money(subscriber.id) == Money(pb.SUCCESS, 0, 0, 0, "EUR", 0), "prepaid: never below zero"
    assert not overage, "600 s used of 600 s granted: no usage beyond the grant, no charge beyond the hold"
