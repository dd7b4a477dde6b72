"""Charging sessions over the wire (issue 4): CreateSession, UpdateSession,
ReleaseSession and GetSession through the real client, raw stubs and the Charge
stream, on real Ray shards and RocksDB.

Every scenario ends with conservation: what was topped up minus the sum of the
charged_micros the grid answered equals the balance, and nothing stays held.

- a whole data session: three rating groups (one unrated), re-grants that
  replace the remaining hold, over-usage, final units (TERMINATE, REDIRECT from
  the tariff, and a denial for money), release, an update after the release;
- a second grant in the same session and rating group replaces the remaining
  hold (v1 Reserve stays an independent hold; its session_id is a label);
- retransmissions: the same invocation_sequence_number replays, another payload
  is ALREADY_EXISTS, an older unseen number is FAILED_PRECONDITION, and
  GetTransaction(session_request_id(...)) returns the SessionResponse;
- several sessions of one subscriber updated concurrently, with duplicated and
  reordered requests, stay consistent (the sum of the holds is what is reserved);
- the Charge stream carries session requests with correlation tags;
- late usage: a session the grid never saw, and a session supervision closed
  (on a small grid with a 1 s validity), is charged late, never refused;
- a restart in the middle of a session (its own data directory and port): the
  session goes on, replays still replay, notifications kept before the restart
  are delivered, and the client's watch resumes across it.
"""

import asyncio
import collections
import dataclasses
import queue
import random
import socket
import threading
import time
import types

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import (
    DATA,
    FUNDS,
    RATES,
    SMS,
    SMS_MICROS,
    UNPRICED,
    VOICE,
    VOICE_MICROS_PER_S,
    Calls,
    ServingGrid,
    failing,
    new_id,
    open_account,
    put_plan,
    view_status,
    without_replayed,
)
from grid.config import GridConfig
from grid.domain.limits import CoreLimits
from grid.server import EmbeddedGrid
from grid_client import ChargingClient, GridError, RetryPolicy, session_request_id

pytestmark = pytest.mark.slow

TOP_UP_PAGE = "https://top-up.example.net/pay"
# The test tariff, with DATA sending the user to a top-up page when money ends its grant.
SESSION_RATES = [
    pb.RatingGroupRate(rating_group=rate.rating_group, unit=rate.unit, price_micros=rate.price_micros,
                       rate_units=rate.rate_units, increment_units=rate.increment_units,
                       **({"final_unit_action": pb.REDIRECT, "redirect_server_address": TOP_UP_PAGE}
                          if rate.rating_group == DATA else {}))
    for rate in RATES
]
# CoreLimits defaults the shared grid runs with.
DEFAULTS = CoreLimits()


def by_group(reply: pb.SessionResponse) -> dict[int, pb.MultipleUnitInformation]:
    groups = {info.rating_group: info for info in reply.multiple_unit_information}
    assert len(groups) == len(reply.multiple_unit_information), reply
    return groups


def fui(info: pb.MultipleUnitInformation):
    """(action, redirect address) of a group's final unit indication, or None."""
    if not info.HasField("final_unit_indication"):
        return None
    return (info.final_unit_indication.final_unit_action, info.final_unit_indication.redirect_server_address)


def charged(*replies: pb.SessionResponse) -> int:
    return sum(info.charged_micros for reply in replies for info in reply.multiple_unit_information)


def usage(*units) -> list[pb.MultipleUnitUsage]:
    return [pb.MultipleUnitUsage(rating_group=g, requested_units=r, used_units=u) for g, r, u in units]


def session_holds(calls: Calls, subscriber_id: str, session_id: str) -> dict[int, pb.Reservation]:
    """The session's live holds by rating group, as GetAccount lists them."""
    holds = [r for r in calls.get_account(subscriber_id).reservations if r.session_id == session_id]
    by_rating_group = {r.rating_group: r for r in holds}
    assert len(by_rating_group) == len(holds), f"two holds for one rating group: {holds}"
    return by_rating_group


@pytest.fixture
def session_plan(stubs) -> str:
    plan_id = new_id("plan-")
    reply = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=SESSION_RATES), timeout=30)
    assert (reply.result, reply.version) == (pb.SUCCESS, 1)
    return plan_id


# ---------------------------------------------------------------- a whole data session


def test_a_whole_data_session_from_create_to_release(client, calls, stubs, session_plan):
    subscriber = open_account(stubs, session_plan)
    session_id, owner = new_id("pdu-"), new_id("smf-")
    replies = []

    # Create: three rating groups, one of them unrated; each answered on its own.
    create = client.create_session(subscriber.id, session_id, [(VOICE, 600, 0), (DATA, 5_000_000, 0),
                                                               (UNPRICED, 10, 0)],
                                   invocation_sequence_number=1, notify_client_id=owner)
    replies.append(create)
    assert (create.result, create.session_id, create.invocation_sequence_number, create.session_state,
            create.replayed) == (pb.SUCCESS, session_id, 1, pb.SESSION_STATE_ACTIVE, False)
    tcc_s = DEFAULTS.supervision_validity_times * DEFAULTS.validity_time_s
    jitter_s = tcc_s * DEFAULTS.supervision_jitter_percent // 100
    assert tcc_s - jitter_s - 1 <= create.supervision_time_s <= tcc_s + jitter_s
    assert [info.rating_group for info in create.multiple_unit_information] == [VOICE, DATA, UNPRICED]
    voice, data, unrated = (by_group(create)[g] for g in (VOICE, DATA, UNPRICED))
    for info, units, held in ((voice, 600, 600_000), (data, 5_000_000, 5_000)):
        assert (info.result, info.granted_units, info.held_micros) == (pb.SUCCESS, units, held), info
        assert (info.validity_time_s, info.quota_holding_time_s) == (DEFAULTS.validity_time_s,
                                                                      DEFAULTS.quota_holding_time_s)
        assert info.threshold_units == units * DEFAULTS.quota_threshold_percent // 100
        assert fui(info) is None and info.reservation_id and info.charged_micros == 0
    assert (unrated.result, unrated.granted_units, unrated.held_micros, unrated.reservation_id) == (
        pb.RATING_FAILED, 0, 0, "")
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS, 605_000)
    seen = client.get_session(subscriber.id, session_id)
    assert (seen.result, seen.state, seen.last_sequence_number, seen.notify_client_id, seen.subscriber_id) == (
        pb.SUCCESS, pb.SESSION_STATE_ACTIVE, 1, owner, subscriber.id)
    assert {r.rating_group: (r.reservation_id, r.held_micros) for r in seen.reservations} == {
        VOICE: (voice.reservation_id, 600_000), DATA: (data.reservation_id, 5_000)}
    assert seen.supervision_deadline_ms - seen.updated_at_ms == pytest.approx(create.supervision_time_s * 1000,
                                                                              abs=1000)

    # Partial usage: each group's usage is charged from its hold, the rest of the
    # hold is returned and the new grant replaces it (reserved = the new grants only).
    update = client.update_session(subscriber.id, session_id, 2, [(VOICE, 600, 200), (DATA, 5_000_000, 1_234_567),
                                                                   (UNPRICED, 10, 5)])
    replies.append(update)
    voice2, data2, unrated2 = (by_group(update)[g] for g in (VOICE, DATA, UNPRICED))
    assert (voice2.result, voice2.used_units, voice2.charged_micros, voice2.released_micros, voice2.granted_units,
            voice2.held_micros, voice2.late, voice2.overage_micros) == (
        pb.SUCCESS, 200, 200_000, 400_000, 600, 600_000, False, 0)
    # 1_234_567 bytes are 1_235 started KB at 1 micro each.
    assert (data2.result, data2.charged_micros, data2.released_micros, data2.granted_units, data2.held_micros) == (
        pb.SUCCESS, 1_235, 3_765, 5_000_000, 5_000)
    assert voice2.charge_id and data2.charge_id and voice2.charge_id != data2.charge_id
    assert {voice2.reservation_id, data2.reservation_id}.isdisjoint({voice.reservation_id, data.reservation_id})
    assert (unrated2.result, unrated2.charged_micros, unrated2.charge_id) == (pb.RATING_FAILED, 0, "")
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS - 201_235, 605_000)
    assert {g: r.reservation_id for g, r in session_holds(calls, subscriber.id, session_id).items()} == {
        VOICE: voice2.reservation_id, DATA: data2.reservation_id}

    # Over-usage: 700 s used on a 600 s grant is charged in full, the part its
    # hold did not cover reported as overage. DATA, not reported, keeps its hold.
    over = client.update_session(subscriber.id, session_id, 3, [(VOICE, 600, 700)])
    replies.append(over)
    (voice3,) = over.multiple_unit_information
    assert (voice3.charged_micros, voice3.overage_micros, voice3.released_micros, voice3.held_micros) == (
        700_000, 100_000, 0, 600_000)
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS - 901_235, 605_000)
    assert session_holds(calls, subscriber.id, session_id)[DATA].reservation_id == data2.reservation_id

    # Final units, TERMINATE (the tariff's default): money cuts the grant.
    terminate = client.update_session(subscriber.id, session_id, 4, [(VOICE, 1_000_000, 0)])
    replies.append(terminate)
    (voice4,) = terminate.multiple_unit_information
    # Available at the grant: 9_098_765 balance - 5_000 DATA hold -> 9_093 whole seconds.
    assert (voice4.result, voice4.released_micros, voice4.granted_units, voice4.held_micros) == (
        pb.SUCCESS, 600_000, 9_093, 9_093_000)
    assert fui(voice4) == (pb.TERMINATE, "")
    assert voice4.threshold_units == 0, "final units are not re-asked for"
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved, money.available) == (9_098_765, 9_098_000, 765)

    # Final units, REDIRECT with the tariff's address.
    redirect = client.update_session(subscriber.id, session_id, 5, [(DATA, 10**12, 1_000_000)])
    replies.append(redirect)
    (data5,) = redirect.multiple_unit_information
    # 1_000 charged from the hold, 4_000 returned: 765 + 4_000 micros buy 4_765 KB.
    assert (data5.result, data5.charged_micros, data5.released_micros, data5.granted_units, data5.held_micros) == (
        pb.SUCCESS, 1_000, 4_000, 4_765_000, 4_765)
    assert fui(data5) == (pb.REDIRECT, TOP_UP_PAGE)
    assert data5.threshold_units == 0
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved, money.available) == (9_097_765, 9_097_765, 0)

    # No money at all: denied, and told what to do now.
    broke = client.update_session(subscriber.id, session_id, 6, [(SMS, 1, 0)])
    replies.append(broke)
    (sms6,) = broke.multiple_unit_information
    assert (broke.result, sms6.result, sms6.granted_units, sms6.reservation_id) == (
        pb.SUCCESS, pb.CREDIT_LIMIT_REACHED, 0, "")
    assert fui(sms6) == (pb.TERMINATE, "")

    # Release: the final usage is charged and every hold goes back, also DATA's,
    # which the release does not report.
    release = client.release_session(subscriber.id, session_id, 7, [(VOICE, 0, 3_000)])
    replies.append(release)
    (voice7,) = release.multiple_unit_information
    assert (release.result, release.session_state, release.supervision_time_s) == (
        pb.SUCCESS, pb.SESSION_STATE_RELEASED, 0)
    assert (voice7.charged_micros, voice7.released_micros, voice7.granted_units, voice7.reservation_id) == (
        3_000_000, 6_093_000, 0, "")
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (6_097_765, 0)
    assert session_holds(calls, subscriber.id, session_id) == {}
    closed = client.get_session(subscriber.id, session_id)
    assert (closed.state, closed.last_sequence_number, list(closed.reservations)) == (
        pb.SESSION_STATE_RELEASED, 7, [])
    assert closed.closed_at_ms >= closed.created_at_ms > 0

    # Usage reported after the release is still charged, but gets no quota.
    after = client.update_session(subscriber.id, session_id, 8, [(VOICE, 100, 10)])
    replies.append(after)
    (voice8,) = after.multiple_unit_information
    assert (voice8.result, voice8.charged_micros, voice8.late, voice8.granted_units) == (
        pb.SESSION_ALREADY_RELEASED, 10_000, True, 0)
    assert client.get_session(subscriber.id, session_id).state == pb.SESSION_STATE_RELEASED

    # Conservation.
    money = calls.money(subscriber.id)
    assert FUNDS - charged(*replies) == money.balance == 6_087_765
    assert money.reserved == 0
    assert not any(reply.replayed for reply in replies)


def test_a_new_grant_in_the_same_session_replaces_the_remaining_hold(client, calls, subscriber):
    """DESIGN.md section 4 / TS 32.299 6.3.8: a new grant in a session update
    replaces what is left of the group's hold; it is not added to it. (v1
    Reserve stays an independent hold: its session_id is only a label.)"""
    session_id = new_id("session-")
    first = client.create_session(subscriber.id, session_id, [(VOICE, 6_000, 0)], invocation_sequence_number=1)
    (grant,) = first.multiple_unit_information
    assert (grant.granted_units, grant.held_micros) == (6_000, 6_000_000)
    # 1_000 s used, 5_000_000 still held; 6_000 s asked for again. Were the old hold
    # kept next to the new one, the money would buy only 4_000 s.
    update = client.update_session(subscriber.id, session_id, 2, [(VOICE, 6_000, 1_000)])
    (regrant,) = update.multiple_unit_information
    assert (regrant.result, regrant.granted_units, regrant.held_micros) == (pb.SUCCESS, 6_000, 6_000_000)
    assert (regrant.charged_micros, regrant.released_micros) == (1_000_000, 5_000_000)
    holds = session_holds(calls, subscriber.id, session_id)
    assert [h.reservation_id for h in holds.values()] == [regrant.reservation_id] != [grant.reservation_id]
    money = calls.money(subscriber.id)
    assert money.reserved == regrant.held_micros
    assert money.balance == FUNDS - 1_000_000
    # The replaced hold is gone: a v1 debit naming it is charged late, not against a hold.
    late = calls.debit(subscriber.id, 10, reservation_id=grant.reservation_id)
    assert (late.result, late.late, late.charged_micros) == (pb.SUCCESS, True, 10_000)
    assert calls.money(subscriber.id).reserved == regrant.held_micros


# ---------------------------------------------------------------- retransmissions


def test_retransmissions_replay_conflicts_fail_and_older_numbers_are_refused(client, calls, stubs, subscriber):
    session_id = new_id("gy-")
    create_request = pb.CreateSessionRequest(session_id=session_id, subscriber_id=subscriber.id,
                                             invocation_sequence_number=1, multiple_unit_usage=usage((VOICE, 100, 0)))
    create = stubs.charging.CreateSession(create_request, timeout=30)
    update_request = pb.UpdateSessionRequest(session_id=session_id, subscriber_id=subscriber.id,
                                             invocation_sequence_number=2,
                                             multiple_unit_usage=usage((VOICE, 100, 30)))
    update = stubs.charging.UpdateSession(update_request, timeout=30)
    assert (update.replayed, by_group(update)[VOICE].charged_micros) == (False, 30_000)
    before = calls.money(subscriber.id)
    assert (before.balance, before.reserved) == (FUNDS - 30_000, 100_000)

    # The lost reply's retransmission: the original answer, no second effect.
    again = stubs.charging.UpdateSession(update_request, timeout=30)
    assert again.replayed and without_replayed(again) == update
    created_again = stubs.charging.CreateSession(create_request, timeout=30)
    assert created_again.replayed and without_replayed(created_again) == create
    assert calls.money(subscriber.id) == before

    # The same number with another payload.
    conflicting = pb.UpdateSessionRequest()
    conflicting.CopyFrom(update_request)
    conflicting.multiple_unit_usage[0].used_units = 31
    error = failing(stubs.charging.UpdateSession, conflicting, timeout=30)
    assert (error.code, error.info.reason, error.info.domain, error.info_field) == (
        grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED", "charging.grid", "multiple_unit_usage")
    as_create = pb.CreateSessionRequest(session_id=session_id, subscriber_id=subscriber.id,
                                        invocation_sequence_number=2, multiple_unit_usage=usage((VOICE, 100, 30)))
    error = failing(stubs.charging.CreateSession, as_create, timeout=30)
    assert (error.code, error.info_field) == (grpc.StatusCode.ALREADY_EXISTS, "operation")
    assert calls.money(subscriber.id) == before

    # Jump ahead to 5; then 4, never seen but older than the last applied, is refused.
    jump = client.update_session(subscriber.id, session_id, 5, [(VOICE, 100, 10)])
    assert by_group(jump)[VOICE].charged_micros == 10_000
    after_jump = calls.money(subscriber.id)
    for number in (4, 3):
        stale = pb.UpdateSessionRequest(session_id=session_id, subscriber_id=subscriber.id,
                                        invocation_sequence_number=number,
                                        multiple_unit_usage=usage((VOICE, 100, 50)))
        error = failing(stubs.charging.UpdateSession, stale, timeout=30)
        assert (error.code, error.info.reason, error.info_field) == (
            grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION", "invocation_sequence_number"), error
        assert not calls.transaction(subscriber.id, session_request_id(session_id, number)).found
    stale_release = pb.ReleaseSessionRequest(session_id=session_id, subscriber_id=subscriber.id,
                                             invocation_sequence_number=4)
    error = failing(stubs.charging.ReleaseSession, stale_release, timeout=30)
    assert (error.code, error.info_field) == (grpc.StatusCode.FAILED_PRECONDITION, "invocation_sequence_number")
    # The client passes it on as an error naming the field, without retrying.
    with pytest.raises(GridError) as raised:
        client.update_session(subscriber.id, session_id, 4, [(VOICE, 100, 50)])
    assert (raised.value.code, raised.value.field) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                       "invocation_sequence_number")
    assert calls.money(subscriber.id) == after_jump
    assert client.get_session(subscriber.id, session_id).last_sequence_number == 5

    # An old number that was applied still replays (a late retransmission).
    late_again = stubs.charging.UpdateSession(update_request, timeout=30)
    assert late_again.replayed and without_replayed(late_again) == update
    assert client.update_session(subscriber.id, session_id, 5, [(VOICE, 100, 10)]).replayed

    # GetTransaction resolves a session request by its request id.
    for number, original in ((1, create), (2, update), (5, jump)):
        recorded = calls.transaction(subscriber.id, session_request_id(session_id, number))
        assert recorded.found and recorded.WhichOneof("reply") == "session"
        assert recorded.session == original
    assert calls.money(subscriber.id) == after_jump
    assert after_jump.balance == FUNDS - charged(update, jump)


def test_get_transaction_resolves_a_session_request_with_a_longest_session_id(client, calls, subscriber):
    session_id = new_id("s-").ljust(DEFAULTS.id_length_max, "x")
    create = client.create_session(subscriber.id, session_id, [(VOICE, 10, 0)], invocation_sequence_number=1)
    assert create.result == pb.SUCCESS  # the session_id is valid
    try:
        recorded = calls.transaction(subscriber.id, session_request_id(session_id, 1))
    except grpc.RpcError as error:
        raise AssertionError(f"GetTransaction refused the session's request id: {error.details()}") from None
    assert recorded.found and recorded.session == create


# ---------------------------------------------------------------- concurrency


def test_concurrent_sessions_of_one_subscriber_stay_consistent(async_client, calls, client, new_subscriber):
    """Six sessions driven at once; every update also sent twice at once (a
    retransmission racing its original) and the last two sent reordered. The
    outcome of each request is recorded; at the end the balance is what the
    applied usage costs and the sessions' holds add up to what is reserved."""
    subscriber = new_subscriber(funds=100_000_000)
    sessions = [new_id(f"s{index}-") for index in range(6)]
    applied: dict[tuple[str, int], pb.SessionResponse] = {}  # (session, number) -> original reply
    used: dict[tuple[str, int], tuple[int, int]] = {}  # (session, number) -> (voice s, sms) reported
    refused: list[tuple[str, int]] = []

    def keep(session_id, number, reply, units):
        assert reply.result == pb.SUCCESS, reply
        original = applied.setdefault((session_id, number), without_replayed(reply))
        assert without_replayed(reply) == original, "a replay differs from its original"
        used[(session_id, number)] = units

    async def drive(session_id: str, seed: int):
        client_ = async_client.client
        rng = random.Random(seed)
        created = await client_.create_session(subscriber.id, session_id, [(VOICE, 100, 0), (SMS, 2, 0)],
                                               invocation_sequence_number=1)
        keep(session_id, 1, created, (0, 0))
        number = 1
        for _ in range(4):
            number += 1
            units = (rng.randint(0, 100), rng.randint(0, 2))
            request = [(VOICE, 100, units[0]), (SMS, 2, units[1])]
            twins = await asyncio.gather(client_.update_session(subscriber.id, session_id, number, request),
                                         client_.update_session(subscriber.id, session_id, number, request))
            assert sorted(reply.replayed for reply in twins) == [False, True], twins
            for reply in twins:
                keep(session_id, number, reply, units)
        # Reordered: n+2 sent before n+1, concurrently. Whichever arrives second after a
        # higher number is refused with no effect; both orders are correct.
        plan = {number + 1: (rng.randint(0, 100), 1), number + 2: (rng.randint(0, 100), 2)}

        async def send(n):
            units = plan[n]
            try:
                reply = await client_.update_session(subscriber.id, session_id, n,
                                                     [(VOICE, 100, units[0]), (SMS, 2, units[1])])
            except GridError as error:
                assert (error.code, error.field) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                     "invocation_sequence_number"), error
                refused.append((session_id, n))
            else:
                keep(session_id, n, reply, units)

        await asyncio.gather(send(number + 2), send(number + 1))

    async def storm():
        await asyncio.gather(*(drive(session_id, seed) for seed, session_id in enumerate(sessions)))

    async_client.run(storm(), timeout_s=60)

    # Resolve: whatever was refused left no record; whatever was applied has one.
    for session_id, number in refused:
        assert not calls.transaction(subscriber.id, session_request_id(session_id, number)).found
    for (session_id, number), reply in applied.items():
        assert calls.transaction(subscriber.id, session_request_id(session_id, number)).session == reply
    assert len(applied) + len(refused) == len(sessions) * 7

    # The model: each applied report costs its usage (all within the grants).
    expected_charges = sum(voice * VOICE_MICROS_PER_S + sms * SMS_MICROS for voice, sms in used.values())
    assert charged(*applied.values()) == expected_charges
    money = calls.money(subscriber.id)
    assert money.balance == 100_000_000 - expected_charges

    def held_by_sessions():
        total = 0
        for session_id in sessions:
            seen = client.get_session(subscriber.id, session_id)
            last = max(n for s, n in applied if s == session_id)
            assert (seen.state, seen.last_sequence_number) == (pb.SESSION_STATE_ACTIVE, last)
            assert sorted(r.rating_group for r in seen.reservations) == [VOICE, SMS]
            # The live holds are exactly the last applied request's grants.
            latest = by_group(applied[(session_id, last)])
            assert {r.reservation_id for r in seen.reservations} == {
                latest[VOICE].reservation_id, latest[SMS].reservation_id}
            total += sum(r.held_micros for r in seen.reservations)
        return total

    assert held_by_sessions() == money.reserved == len(sessions) * (100 * VOICE_MICROS_PER_S + 2 * SMS_MICROS)
    assert len(calls.get_account(subscriber.id).reservations) == 2 * len(sessions)

    # Release them all at once; nothing stays held, money is conserved.
    async def release_all():
        return await asyncio.gather(*(
            async_client.client.release_session(subscriber.id, session_id,
                                                max(n for s, n in applied if s == session_id) + 1,
                                                [(VOICE, 0, 1)])
            for session_id in sessions))

    releases = async_client.run(release_all())
    assert all(r.session_state == pb.SESSION_STATE_RELEASED for r in releases)
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (
        100_000_000 - expected_charges - len(sessions) * VOICE_MICROS_PER_S, 0)
    assert money.balance == 100_000_000 - charged(*applied.values(), *releases)


# ---------------------------------------------------------------- the Charge stream


def _tagged(tag: int, **operation) -> pb.ChargeRequest:
    return pb.ChargeRequest(correlation_tag=tag, **operation)


def test_the_charge_stream_carries_a_session_with_correlation_tags(calls, stubs, subscriber):
    """Create, update and release on one stream, each request built from the reply before."""
    session_id = new_id("stream-")
    outbox: queue.Queue = queue.Queue()

    def requests():
        while (message := outbox.get(timeout=30)) is not None:
            yield message

    responses = stubs.charging.Charge(requests(), timeout=60)
    try:
        outbox.put(_tagged(41, create_session=pb.CreateSessionRequest(
            session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=1,
            multiple_unit_usage=usage((VOICE, 300, 0), (SMS, 3, 0)))))
        created = next(responses)
        assert (created.correlation_tag, created.WhichOneof("reply")) == (41, "session")
        assert {g: i.granted_units for g, i in by_group(created.session).items()} == {VOICE: 300, SMS: 3}
        outbox.put(_tagged(42, update_session=pb.UpdateSessionRequest(
            session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=2,
            multiple_unit_usage=usage((VOICE, 300, 120), (SMS, 3, 1)))))
        updated = next(responses)
        assert (updated.correlation_tag, updated.WhichOneof("reply")) == (42, "session")
        assert {g: (i.charged_micros, i.released_micros) for g, i in by_group(updated.session).items()} == {
            VOICE: (120_000, 180_000), SMS: (SMS_MICROS, 2 * SMS_MICROS)}
        outbox.put(_tagged(43, release_session=pb.ReleaseSessionRequest(
            session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=3,
            multiple_unit_usage=usage((VOICE, 0, 60)))))
        released = next(responses)
        assert (released.correlation_tag, released.session.session_state) == (43, pb.SESSION_STATE_RELEASED)
        assert by_group(released.session)[VOICE].released_micros == 240_000
    finally:
        outbox.put(None)
    assert list(responses) == []
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS - 180_000 - SMS_MICROS, 0)
    assert money.balance == FUNDS - charged(created.session, updated.session, released.session)
    # The stream's session requests are ordinary transactions.
    assert calls.transaction(subscriber.id, session_request_id(session_id, 2)).session == updated.session


def test_many_session_requests_in_flight_on_one_stream(calls, stubs, new_subscriber):
    """Creates for many sessions, a duplicate, a conflict and a malformed release,
    shuffled: every tag answered once, errors as statuses inside the reply."""
    subscribers = [new_subscriber() for _ in range(3)]
    rng = random.Random(11)
    messages, expected = [], {}
    creates = {}
    tag = 500
    for subscriber in subscribers:
        for _ in range(4):
            request = pb.CreateSessionRequest(session_id=new_id("m-"), subscriber_id=subscriber.id,
                                              invocation_sequence_number=1,
                                              multiple_unit_usage=usage((VOICE, 50, 0), (DATA, 1_000_000, 0)))
            messages.append(_tagged(tag, create_session=request))
            creates[tag] = request
            expected[tag] = "session"
            tag += 3
    duplicated = next(iter(creates.values()))
    messages.append(_tagged(tag, create_session=duplicated))
    expected[tag] = "session"
    duplicate_tag = tag
    tag += 3
    malformed = pb.ReleaseSessionRequest(session_id=duplicated.session_id, subscriber_id=duplicated.subscriber_id,
                                         invocation_sequence_number=9,
                                         multiple_unit_usage=usage((VOICE, 0, 1), (SMS, 5, 0)))
    messages.append(_tagged(tag, release_session=malformed))
    expected[tag] = "error"
    malformed_tag = tag
    rng.shuffle(messages)

    replies = collections.defaultdict(list)
    for response in stubs.charging.Charge(iter(messages), timeout=60):
        replies[response.correlation_tag].append(response)

    assert set(replies) == set(expected) and all(len(r) == 1 for r in replies.values())
    for tag_, (reply,) in replies.items():
        assert reply.WhichOneof("reply") == expected[tag_], reply
    error = view_status(replies[malformed_tag][0].error)
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "multiple_unit_usage[1].requested_units")
    duplicate_pair = [replies[t][0].session for t in creates if creates[t] is duplicated] + [
        replies[duplicate_tag][0].session]
    assert sorted(r.replayed for r in duplicate_pair) == [False, True]
    assert without_replayed(duplicate_pair[0]) == without_replayed(duplicate_pair[1])
    for tag_, request in creates.items():
        reply = replies[tag_][0].session
        assert (reply.session_id, reply.result) == (request.session_id, pb.SUCCESS)
    for subscriber in subscribers:
        money = calls.money(subscriber.id)
        assert (money.balance, money.reserved) == (FUNDS, 4 * (50 * VOICE_MICROS_PER_S + 1_000))
        holds = [r for r in calls.get_account(subscriber.id).reservations]
        assert len(holds) == 8, "the duplicate made no second hold"


# ---------------------------------------------------------------- late usage


def test_usage_for_a_session_the_grid_never_saw_is_charged_late(client, calls, new_subscriber):
    subscriber = new_subscriber()
    # An update arriving after a failover: accepted, its usage charged late.
    adopted = new_id("failover-")
    update = client.update_session(subscriber.id, adopted, 17, [(VOICE, 0, 50)])
    (voice,) = update.multiple_unit_information
    assert (update.result, voice.result, voice.late, voice.charged_micros, voice.reservation_id) == (
        pb.SUCCESS, pb.SUCCESS, True, 50_000, "")
    assert client.get_session(subscriber.id, adopted).last_sequence_number == 17
    # A release for a session never seen: charged late, and the session is released.
    unknown = new_id("failover-")
    release = client.release_session(subscriber.id, unknown, 3, [(SMS, 0, 2), (VOICE, 0, 5)])
    assert (release.result, release.session_state) == (pb.SUCCESS, pb.SESSION_STATE_RELEASED)
    assert {g: (i.late, i.charged_micros) for g, i in by_group(release).items()} == {
        SMS: (True, 2 * SMS_MICROS), VOICE: (True, 5_000)}
    assert client.get_session(subscriber.id, unknown).state == pb.SESSION_STATE_RELEASED
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS - charged(update, release), 0)
    assert money.balance == FUNDS - 255_000

    # Late usage is charged whatever the balance: the service was consumed.
    poor = new_subscriber(funds=30_000)
    beyond = client.release_session(poor.id, new_id("failover-"), 1, [(VOICE, 0, 50)])
    (voice,) = beyond.multiple_unit_information
    assert (voice.late, voice.charged_micros, voice.overage_micros) == (True, 50_000, 20_000)
    assert calls.money(poor.id).balance == -20_000


SUPERVISED_VALIDITY_S = 1
# The holds would live 1 s + 8 s grace: supervision (2 x validity +- 10%) comes
# long before, so money back before then is supervision's doing.
SUPERVISED_GRACE_S = 8


@pytest.fixture(scope="module")
def supervised_grid(embedded, tmp_path_factory) -> ServingGrid:
    """One shard, 1 s validity, swept every 0.1 s. `embedded` first: it joins the session's Ray."""
    grid = ServingGrid(tmp_path_factory.mktemp("grid-e2e-supervision"), shards=1,
                       limits=CoreLimits(validity_time_s=SUPERVISED_VALIDITY_S, expiry_grace_s=SUPERVISED_GRACE_S),
                       sweep_interval_s=0.1)
    try:
        yield grid
    finally:
        grid.stop()


def test_supervision_closes_a_silent_session_and_late_usage_is_still_charged(supervised_grid):
    calls = supervised_grid.calls
    charging = supervised_grid.stubs.charging
    plan_id = put_plan(calls.stubs)
    subscriber = open_account(calls.stubs, plan_id)
    quiet = new_id("quiet-")
    others = [new_id("crowd-") for _ in range(5)]
    replies = []
    for session_id in (quiet, *others):
        reply = charging.CreateSession(pb.CreateSessionRequest(
            session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=1,
            multiple_unit_usage=usage((VOICE, 100, 0))), timeout=30)
        assert (reply.result, by_group(reply)[VOICE].validity_time_s) == (pb.SUCCESS, SUPERVISED_VALIDITY_S)
        assert reply.supervision_time_s in (1, 2)
        replies.append(reply)
    created = charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=quiet), timeout=30)
    (hold,) = created.reservations
    assert 1_800 <= created.supervision_deadline_ms - created.updated_at_ms <= 2_200
    # Jitter: sessions opened together are not all closed at the same moment.
    views = [charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=s), timeout=30)
             for s in others]
    supervision_times = {v.supervision_deadline_ms - v.updated_at_ms for v in views}
    assert len(supervision_times) > 1 and all(1_800 <= t <= 2_200 for t in supervision_times), supervision_times
    assert calls.money(subscriber.id).reserved == 6 * 100 * VOICE_MICROS_PER_S

    # Wait (bounded) for supervision to close every one of them.
    give_up = time.monotonic() + 10
    while True:
        views = [charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=s), timeout=30)
                 for s in (quiet, *others)]
        if all(v.state != pb.SESSION_STATE_ACTIVE for v in views):
            break
        assert time.monotonic() < give_up, [pb.SessionState.Name(v.state) for v in views]
        time.sleep(0.1)
    money = calls.money(subscriber.id)
    read_at_ms = time.time_ns() // 1_000_000
    assert read_at_ms < hold.expires_at_ms - 1_000, "too slow to tell supervision from expiry"
    assert (money.balance, money.reserved) == (FUNDS, 0)
    for view in views:
        assert view.state == pb.SESSION_STATE_ABNORMALLY_RELEASED
        assert list(view.reservations) == []
        assert view.closed_at_ms >= view.created_at_ms + 1_800
    assert list(calls.get_account(subscriber.id).reservations) == []

    # The network function was still carrying traffic: its late report is charged.
    late = charging.UpdateSession(pb.UpdateSessionRequest(
        session_id=quiet, subscriber_id=subscriber.id, invocation_sequence_number=2,
        multiple_unit_usage=usage((VOICE, 0, 40))), timeout=30)
    (voice,) = late.multiple_unit_information
    assert (late.result, voice.result, voice.late, voice.charged_micros, voice.reservation_id) == (
        pb.SUCCESS, pb.SUCCESS, True, 40_000, "")
    # And so is the final report of another session supervision closed.
    final = charging.ReleaseSession(pb.ReleaseSessionRequest(
        session_id=others[0], subscriber_id=subscriber.id, invocation_sequence_number=2,
        multiple_unit_usage=usage((VOICE, 0, 100))), timeout=30)
    assert {g: (i.late, i.charged_micros) for g, i in by_group(final).items()} == {VOICE: (True, 100_000)}
    assert final.session_state == pb.SESSION_STATE_RELEASED
    money = calls.money(subscriber.id)
    assert (money.balance, money.reserved) == (FUNDS - charged(late, final), 0) == (FUNDS - 140_000, 0)


# ---------------------------------------------------------------- restart


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _GridOnPort:
    """An EmbeddedGrid on a fixed port (ServingGrid always takes an ephemeral one),
    so that a client's channel reaches the restarted grid at the same address."""

    def __init__(self, data_dir, port: int) -> None:
        self.grid = EmbeddedGrid(GridConfig(plaintext=True, data_dir=data_dir, port=port, shards=2, shutdown_grace_s=1.0))
        self.grid.start()
        self.channel = grpc.insecure_channel(self.grid.target)
        self.stubs = types.SimpleNamespace(
            channel=self.channel, charging=pb_grpc.ChargingServiceStub(self.channel),
            account=pb_grpc.AccountServiceStub(self.channel), catalog=pb_grpc.CatalogServiceStub(self.channel))
        self.calls = Calls(self.stubs)

    def stop(self) -> None:
        self.channel.close()
        self.grid.stop()


@dataclasses.dataclass
class _Follower:
    """The real client's watch_notifications (auto-resume) pumped into a queue by a thread."""

    client: ChargingClient
    client_id: str
    received: queue.Queue = dataclasses.field(default_factory=queue.Queue)

    def start(self) -> "_Follower":
        threading.Thread(target=self._pump, daemon=True, name=f"follow-{self.client_id}").start()
        return self

    def _pump(self) -> None:
        try:
            for notification in self.client.watch_notifications(self.client_id):
                self.received.put(notification)
        except Exception as error:  # noqa: BLE001 - handed to the test
            self.received.put(error)

    def next(self, timeout_s: float) -> pb.Notification:
        item = self.received.get(timeout=timeout_s)
        if isinstance(item, Exception):
            raise item
        return item


def _watch_once(stub, client_id: str, count: int, timeout_s: float = 10) -> list[pb.Notification]:
    """The first `count` notifications of a fresh watch from the oldest kept."""
    call = stub.WatchNotifications(pb.WatchNotificationsRequest(client_id=client_id), timeout=timeout_s)
    got = []
    try:
        for notification in call:
            got.append(notification)
            if len(got) == count:
                break
    finally:
        call.cancel()
    return got


def test_a_session_continues_across_a_restart(embedded, tmp_path):
    data_dir, port = tmp_path / "grid", _free_port()
    owner = new_id("nf-")
    session_id = new_id("pdu-")
    first = _GridOnPort(data_dir, port)
    follower_channel = grpc.insecure_channel(first.grid.target, options=[
        ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500)])
    follower = _Follower(ChargingClient(channel=follower_channel, retry=RetryPolicy(
        attempts=100, timeout_s=5, backoff_first_s=0.05, backoff_max_s=0.3)), owner)
    try:
        try:
            calls = first.calls
            plan_id = put_plan(calls.stubs)
            subscriber = open_account(calls.stubs, plan_id)
            create_request = pb.CreateSessionRequest(
                session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=1,
                multiple_unit_usage=usage((VOICE, 300, 0), (DATA, 2_000_000, 0)), notify_client_id=owner)
            create = calls.stubs.charging.CreateSession(create_request, timeout=30)
            # Number 3, skipping 2: after the restart 2 is still older than the last applied.
            update_request = pb.UpdateSessionRequest(
                session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=3,
                multiple_unit_usage=usage((VOICE, 300, 100), (DATA, 2_000_000, 500_000)))
            update = calls.stubs.charging.UpdateSession(update_request, timeout=30)
            assert charged(update) == 100_500
            assert calls.top_up(subscriber.id, 1_000).result == pb.SUCCESS  # a re-authorisation, kept
            follower.start()
            before_restart = follower.next(timeout_s=15)
            assert (before_restart.type, before_restart.reason, before_restart.session_id) == (
                pb.REAUTHORIZATION, pb.TOP_UP, session_id)
            session_before = calls.stubs.charging.GetSession(
                pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=session_id), timeout=30)
            money_before = calls.money(subscriber.id)
            assert (money_before.balance, money_before.reserved) == (FUNDS + 1_000 - 100_500, 302_000)
        finally:
            first.stop()

        second = _GridOnPort(data_dir, port)
        try:
            calls = second.calls
            charging = calls.stubs.charging
            assert charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=session_id),
                                       timeout=30) == session_before
            assert calls.money(subscriber.id) == money_before
            # Retransmissions of requests answered before the restart still replay.
            for request, method, original in ((update_request, charging.UpdateSession, update),
                                              (create_request, charging.CreateSession, create)):
                again = method(request, timeout=30)
                assert again.replayed and without_replayed(again) == original
            assert calls.transaction(subscriber.id, session_request_id(session_id, 3)).session == update
            conflicting = pb.UpdateSessionRequest()
            conflicting.CopyFrom(update_request)
            conflicting.multiple_unit_usage[1].used_units = 500_001
            error = failing(charging.UpdateSession, conflicting, timeout=30)
            assert (error.code, error.info_field) == (grpc.StatusCode.ALREADY_EXISTS, "multiple_unit_usage")
            assert calls.money(subscriber.id) == money_before

            # A notification stored before the restart reaches a new watcher.
            (kept,) = _watch_once(charging, owner, 1)
            assert (kept.type, kept.reason, kept.session_id, kept.subscriber_id, kept.at_ms) == (
                before_restart.type, before_restart.reason, session_id, subscriber.id, before_restart.at_ms)
            # The client's watch resumed from its cursor: the next thing it yields is new.
            assert calls.top_up(subscriber.id, 2_000).result == pb.SUCCESS
            resumed = follower.next(timeout_s=30)
            assert (resumed.type, resumed.reason, resumed.session_id) == (pb.REAUTHORIZATION, pb.TOP_UP, session_id)
            assert resumed.at_ms > before_restart.at_ms and resumed.cursor != before_restart.cursor
            assert not resumed.notifications_lost
            with pytest.raises(queue.Empty):
                follower.next(timeout_s=1.0)
            money_now = calls.money(subscriber.id)
            assert (money_now.balance, money_now.reserved) == (money_before.balance + 2_000, money_before.reserved)

            # The session goes on against the holds granted before the restart.
            stale = failing(charging.UpdateSession, pb.UpdateSessionRequest(
                session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=2,
                multiple_unit_usage=usage((VOICE, 300, 1))), timeout=30)
            assert (stale.code, stale.info_field) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                      "invocation_sequence_number")
            assert calls.money(subscriber.id) == money_now
            update4 = charging.UpdateSession(pb.UpdateSessionRequest(
                session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=4,
                multiple_unit_usage=usage((VOICE, 300, 150), (DATA, 0, 700_000))), timeout=30)
            groups = by_group(update4)
            assert (groups[VOICE].late, groups[VOICE].charged_micros, groups[VOICE].released_micros) == (
                False, 150_000, 150_000)
            assert (groups[DATA].late, groups[DATA].charged_micros, groups[DATA].released_micros,
                    groups[DATA].reservation_id) == (False, 700, 1_300, "")
            release = charging.ReleaseSession(pb.ReleaseSessionRequest(
                session_id=session_id, subscriber_id=subscriber.id, invocation_sequence_number=5,
                multiple_unit_usage=usage((VOICE, 0, 300))), timeout=30)
            assert (release.session_state, by_group(release)[VOICE].charged_micros) == (
                pb.SESSION_STATE_RELEASED, 300_000)
            seen = charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber.id, session_id=session_id),
                                       timeout=30)
            assert (seen.state, seen.last_sequence_number, list(seen.reservations)) == (
                pb.SESSION_STATE_RELEASED, 5, [])
            money = calls.money(subscriber.id)
            assert money.reserved == 0
            assert money.balance == FUNDS + 1_000 + 2_000 - charged(update, update4, release)
            assert money.balance == FUNDS + 3_000 - 551_200
        finally:
            second.stop()
    finally:
        follower.client.close()
