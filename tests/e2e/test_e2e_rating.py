"""The extended rating engine over real gRPC, real Ray shard actors and real
RocksDB: destination prefixes, time bands in a plan's zone (and its holidays),
"60/1" interval tiers, connect fees, rounding rules, plan versions with an
effective instant, advice of charge (Quote), sessions rated as one, bad input,
and Tariff-Time-Change on a grant that may cross a band change.

Every expected amount is computed by hand in the comments next to it; the plans
are built so that the rounding rule, the tier increments, the band and the
prefix each change the answer. Every test uses its own uuid-named plans and
subscribers, so it shares the session's grid with the other e2e tests safely.

The last test holds a call across a daylight-saving jump priced at each
second's band (a bug it found: band changes were looked for only at the
bands' edge minutes).
"""

import datetime
import fractions
import time
import zoneinfo

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import FUNDS, Money, failing, new_id, open_account, without_replayed

pytestmark = pytest.mark.slow

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
VOICE = 1  # SECONDS
DATA = 2  # BYTES
EVENT = 3  # EVENTS
PEAK = pb.TimeBand(name="peak", days=[1, 2, 3, 4, 5], from_minute=8 * 60, to_minute=18 * 60)
# Days 6, 7 and 8 (the plan's holidays): on a holiday weekday the weekend band applies, not peak.
WEEKEND = pb.TimeBand(name="weekend", days=[6, 7, 8], from_minute=0, to_minute=1440)
HOLIDAYS = ["2024-12-25", "2024-12-26"]
# The first plan's first version takes effect at this past instant (2024-01-01T00:00:00Z), so that
# quotes at 2024 instants are priced by it.
PLAN_START_MS = 1_704_067_200_000


def ms_of(zone, *fields) -> int:
    return int(datetime.datetime(*fields, tzinfo=zone).timestamp() * 1000)


def sixty_one(price_micros_a_minute: int) -> list[pb.RateTier]:
    """'60/1': the first 60 s as one increment, then per second, at one price a minute."""
    return [pb.RateTier(from_units=0, price_micros=price_micros_a_minute, rate_units=60, increment_units=60),
            pb.RateTier(from_units=60, price_micros=price_micros_a_minute, rate_units=60, increment_units=1)]


def voice_rate(prefix: str, band: str, price_micros_a_minute: int, fee_micros: int, **fields) -> pb.RatingGroupRate:
    return pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, destination_prefix=prefix, time_band=band,
                              connect_fee_micros=fee_micros, tiers=sixty_one(price_micros_a_minute), **fields)


# ---------------------------------------------------------------- the Berlin voice plan

# Voice, "60/1", by destination prefix and band (micros a minute; connect fee):
#   4930 peak 100_000 (fee 25_000)   4930 any time 40_000 (fee 25_000)
#   49   peak  20_000 (fee 10_000)   49   weekend   4_000 (fee 10_000)   49 any time 8_000 (fee 10_000)
# Rounding HALF_EVEN (x.333 rounds down where UP would round up).
BERLIN_RATES = [
    voice_rate("4930", "peak", 100_000, 25_000),
    voice_rate("4930", "", 40_000, 25_000),
    voice_rate("49", "peak", 20_000, 10_000),
    voice_rate("49", "weekend", 4_000, 10_000),
    voice_rate("49", "", 8_000, 10_000, final_unit_action=pb.REDIRECT,
               redirect_server_address="https://top-up.example/voice"),
    # Roaming data: every remaining rate field set, for the round trip.
    pb.RatingGroupRate(rating_group=DATA, unit=pb.BYTES, roaming_zone="EU", connect_fee_micros=1_000,
                       tiers=[pb.RateTier(from_units=0, price_micros=0, rate_units=1_000_000,
                                          increment_units=1_000_000),
                              pb.RateTier(from_units=1_000_000_000, price_micros=2_000, rate_units=1_000_000,
                                          increment_units=1_000)],
                       minimum_charge_micros=5_000, maximum_cost_micros=9_000_000,
                       cap_action=pb.CAP_DENY_QUOTA, volume_period=pb.COUNTER_PERIOD_MONTH,
                       final_unit_action=pb.RESTRICT_ACCESS),
]


def berlin_put(plan_id: str) -> pb.PutTariffRequest:
    return pb.PutTariffRequest(
        tariff_plan_id=plan_id, rates=BERLIN_RATES, effective_from_ms=PLAN_START_MS, time_zone="Europe/Berlin",
        time_bands=[PEAK, WEEKEND], holidays=HOLIDAYS, rounding=pb.ROUNDING_HALF_EVEN,
        description="Berlin voice: peak Mon-Fri 08-18, 60/1, connect fee",
        policy_counters=[pb.PolicyCounter(counter_id="voice-minutes", rating_groups=[VOICE],
                                          period=pb.COUNTER_PERIOD_MONTH, base_status="normal",
                                          thresholds=[pb.PolicyCounterThreshold(at_least=10**9, status="heavy")])],
        controls=[pb.PlanControl(control_id="never", kind=pb.LOW_BALANCE, limit=1, action=pb.NOTIFY)],
    )


def put(stubs, request: pb.PutTariffRequest) -> int:
    reply = stubs.catalog.PutTariff(request, timeout=30)
    assert reply.result == pb.SUCCESS, reply
    return reply.version


def direct(stubs, subscriber_id: str, rating_group: int, units: int, **fields) -> pb.DebitResponse:
    return stubs.charging.Debit(pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber_id,
                                                rating_group=rating_group, used_units=units, **fields), timeout=30)


def money(stubs, subscriber_id: str) -> Money:
    reply = stubs.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=subscriber_id), timeout=30)
    return Money(reply.result, reply.balance_micros, reply.reserved_micros, reply.available_micros, reply.currency,
                 reply.credit_limit_micros)


def berlin_band(at_ms: int) -> str:
    """A reference for the Berlin plan's band at an instant (the first band listed that holds it)."""
    local = datetime.datetime.fromtimestamp(at_ms / 1000, BERLIN)
    day = 8 if local.date().isoformat() in HOLIDAYS else local.isoweekday()
    minute = local.hour * 60 + local.minute
    for band in (PEAK, WEEKEND):
        if day in band.days and band.from_minute <= minute < band.to_minute:
            return band.name
    return ""


# (prefix, band) -> (micros a minute, connect fee) of BERLIN_RATES' voice rates.
BERLIN_VOICE = {("4930", "peak"): (100_000, 25_000), ("4930", ""): (40_000, 25_000), ("49", "peak"): (20_000, 10_000),
                ("49", "weekend"): (4_000, 10_000), ("49", ""): (8_000, 10_000)}


def berlin_voice(destination: str, band: str) -> tuple[int, int]:
    """The longest prefix first; for it, the band's rate before the any-time one (grid/domain/pricing.py
    PlanIndex.select: a Berlin number priced at any time beats the national peak rate)."""
    for prefix in ("4930", "49"):
        if destination.startswith(prefix):
            for each in ((band, "") if band else ("",)):
                if (prefix, each) in BERLIN_VOICE:
                    return BERLIN_VOICE[(prefix, each)]
    raise AssertionError(f"no rate for {destination} in band {band!r}")


def berlin_cost(destination: str, started_ms: int, billed_seconds: int) -> int:
    """A reference: each billed second at its own band's price, the fee of the rate at the start, HALF_EVEN."""
    fee = berlin_voice(destination, berlin_band(started_ms))[1]
    exact = fractions.Fraction(fee) + sum(
        fractions.Fraction(berlin_voice(destination, berlin_band(started_ms + p * 1000))[0], 60)
        for p in range(billed_seconds))
    return round(exact)  # Fraction rounds half to even


# Instants in Europe/Berlin (CET, UTC+1, in January and December).
WEDNESDAY_10 = ms_of(BERLIN, 2024, 1, 17, 10, 0)  # peak
WEDNESDAY_20 = ms_of(BERLIN, 2024, 1, 17, 20, 0)  # off-peak: any time
WEDNESDAY_1759_30 = ms_of(BERLIN, 2024, 1, 17, 17, 59, 30)  # 30 s of peak left
SATURDAY_10 = ms_of(BERLIN, 2024, 1, 20, 10, 0)  # weekend
CHRISTMAS_10 = ms_of(BERLIN, 2024, 12, 25, 10, 0)  # a Wednesday, but a holiday: weekend band


def test_voice_plan_round_trips_and_prices_by_prefix_band_tiers_and_fee(stubs):
    plan_id = new_id("rating-berlin-")
    request = berlin_put(plan_id)
    assert put(stubs, request) == 1

    got = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id), timeout=30)
    assert got.result == pb.SUCCESS
    expected = pb.TariffPlan(
        tariff_plan_id=plan_id, version=1, rates=request.rates, policy_counters=request.policy_counters,
        controls=request.controls, effective_from_ms=request.effective_from_ms, time_zone=request.time_zone,
        time_bands=request.time_bands, holidays=request.holidays, rounding=request.rounding,
        description=request.description)
    assert got.plan == expected
    assert list(got.versions) == [pb.TariffVersion(version=1, effective_from_ms=PLAN_START_MS)]
    assert stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id, version=1), timeout=30) == got
    assert stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id, version=2),
                                   timeout=30).result == pb.TARIFF_PLAN_UNKNOWN

    subscriber = open_account(stubs, plan_id)
    cases = [
        # (destination, usage started, seconds, expected micros)
        # 4930 peak: 61 s billed 61 (60 + 1): 61 * 100_000 / 60 = 101_666.67, + 25_000 = 126_666.67 -> 126_667
        ("4930123456", WEDNESDAY_10, 61, 126_667),
        # 49 peak: 61 * 20_000 / 60 = 20_333.33, + 10_000 = 30_333.33 -> HALF_EVEN 30_333 (UP would be 30_334)
        ("4912345", WEDNESDAY_10, 61, 30_333),
        # 4930 peak, 30 s: billed as the first 60 s increment: 100_000 + 25_000
        ("4930123456", WEDNESDAY_10, 30, 125_000),
        # 4930 off-peak: 61 * 40_000 / 60 = 40_666.67, + 25_000 = 65_666.67 -> 65_667
        ("4930123456", WEDNESDAY_20, 61, 65_667),
        # 49 off-peak: 61 * 8_000 / 60 = 8_133.33, + 10_000 = 18_133.33 -> 18_133
        ("4912345", WEDNESDAY_20, 61, 18_133),
        # 49 on Saturday: weekend band: 61 * 4_000 / 60 = 4_066.67, + 10_000 = 14_066.67 -> 14_067
        ("4912345", SATURDAY_10, 61, 14_067),
        # 4930 on Saturday: the longest prefix wins before the band: 4930 has no weekend rate, so its any-time
        # rate (not 49's weekend rate): 61 * 40_000 / 60 = 40_666.67, + 25_000 = 65_666.67 -> 65_667
        ("4930123456", SATURDAY_10, 61, 65_667),
        # 49 at 10:00 on Christmas (a Wednesday): a holiday is day 8, the weekend band, not peak: 14_067
        ("4912345", CHRISTMAS_10, 61, 14_067),
        # 4930 from 17:59:30, 90 s: 30 s of peak (30 * 100_000 / 60 = 50_000) then 60 s off-peak
        # (60 * 40_000 / 60 = 40_000); the fee of the rate in force at the start (25_000): 115_000
        ("4930123456", WEDNESDAY_1759_30, 90, 115_000),
    ]
    charged = []
    for destination, started_ms, seconds, expected in cases:
        assert berlin_cost(destination, started_ms, max(seconds, 60)) == expected  # the hand sums agree
        reply = direct(stubs, subscriber.id, VOICE, seconds, destination=destination, usage_started_at_ms=started_ms)
        assert reply.result == pb.SUCCESS, (destination, started_ms, reply)
        assert (destination, started_ms, seconds, reply.charged_micros) == (destination, started_ms, seconds, expected)
        assert reply.tariff_version == 1
        assert not reply.overage and not reply.late
        charged.append(reply.charged_micros)
    after = money(stubs, subscriber.id)
    assert (after.balance, after.reserved) == (FUNDS - sum(charged), 0)

    # A number no prefix matches has no voice rate: RATING_FAILED, never charged as zero.
    unrated = direct(stubs, subscriber.id, VOICE, 61, destination="3312345", usage_started_at_ms=WEDNESDAY_10)
    assert unrated.result == pb.RATING_FAILED and unrated.charged_micros == 0
    assert money(stubs, subscriber.id) == after


def test_rounding_residue_of_a_direct_debit(stubs):
    """The residue is charged minus exact, in picos, truncated: 126_667 - 126_666.666... micros."""
    plan_id = new_id("rating-residue-")
    put(stubs, berlin_put(plan_id))
    subscriber = open_account(stubs, plan_id)
    up = direct(stubs, subscriber.id, VOICE, 61, destination="4930123456", usage_started_at_ms=WEDNESDAY_10)
    assert (up.charged_micros, up.rounding_residue_picos) == (126_667, 333_333)
    # HALF_EVEN rounded 30_333.33 down: the residue is negative, floored.
    down = direct(stubs, subscriber.id, VOICE, 61, destination="4912345", usage_started_at_ms=WEDNESDAY_10)
    assert (down.charged_micros, down.rounding_residue_picos) == (30_333, -333_334)


def test_a_rated_debit_replays_and_its_rating_inputs_are_part_of_its_payload(stubs):
    plan_id = new_id("rating-replay-")
    put(stubs, berlin_put(plan_id))
    subscriber = open_account(stubs, plan_id)
    request = pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber.id, rating_group=VOICE,
                              used_units=61, destination="4930123456", usage_started_at_ms=WEDNESDAY_10)
    first = stubs.charging.Debit(request, timeout=30)
    assert (first.result, first.charged_micros, first.tariff_version, first.replayed) == (
        pb.SUCCESS, 126_667, 1, False)
    charged = money(stubs, subscriber.id)
    assert charged.balance == FUNDS - 126_667

    again = stubs.charging.Debit(request, timeout=30)
    assert again.replayed and without_replayed(again) == first
    kept = stubs.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=subscriber.id,
                                                                  request_id=request.request_id), timeout=30)
    assert kept.found and kept.debit == first
    # The same request id with another destination, zone or start is another operation: refused by name.
    for field, value in (("destination", "4912345"), ("roaming_zone", "EU"), ("usage_started_at_ms", WEDNESDAY_20),
                         ("service_identifier", 7)):
        variant = pb.DebitRequest()
        variant.CopyFrom(request)
        setattr(variant, field, value)
        error = failing(stubs.charging.Debit, variant, timeout=30)
        assert error.code == grpc.StatusCode.ALREADY_EXISTS, (field, error)
        assert error.info is not None and error.info.reason == "REQUEST_ID_REUSED" and error.info_field == field
    assert money(stubs, subscriber.id) == charged


def test_quote_prices_and_counts_affordable_units_and_holds_nothing(stubs):
    plan_id = new_id("rating-quote-")
    put(stubs, berlin_put(plan_id))
    # 1_001_666 micros: at 4930 peak a call of u >= 60 s costs round(25_000 + u * 5_000 / 3).
    # 585 s: 975_000 + 25_000 = 1_000_000 fits; 586 s: 976_666.67 + 25_000 = 1_001_666.67 -> 1_001_667 > 1_001_666.
    funds = 1_001_666
    subscriber = open_account(stubs, plan_id, funds=funds)
    before = money(stubs, subscriber.id)
    account_before = stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber.id), timeout=30)

    quote = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=61,
                                                 destination="4930123456", at_ms=WEDNESDAY_10), timeout=30)
    assert quote.result == pb.SUCCESS
    assert (quote.cost_micros, quote.affordable_units, quote.available_micros) == (126_667, 585, funds)
    assert quote.rounding_residue_picos == 333_333
    assert (quote.tariff_plan_id, quote.tariff_version, quote.currency) == (plan_id, 1, "EUR")
    assert (quote.destination_prefix, quote.time_band, quote.roaming_zone) == ("4930", "peak", "")

    # 49 on the Christmas holiday (weekend band): 61 s -> 14_067 (see the first test);
    # affordable: 10_000 + u * 200 / 3 <= 1_001_666 -> u <= 14_874.99 -> 14_874 (14_874 * 200 / 3 = 991_600, fits;
    # 14_875 s: 991_666.67 + 10_000 = 1_001_666.67 -> 1_001_667, does not).
    holiday = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=61,
                                                   destination="4912345", at_ms=CHRISTMAS_10), timeout=30)
    assert (holiday.result, holiday.cost_micros, holiday.affordable_units) == (pb.SUCCESS, 14_067, 14_874)
    assert (holiday.destination_prefix, holiday.time_band) == ("49", "weekend")

    # A call across 18:00 is quoted second by second, like the debit in the first test: 115_000.
    across = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=90,
                                                  destination="4930123456", at_ms=WEDNESDAY_1759_30), timeout=30)
    assert (across.result, across.cost_micros, across.time_band) == (pb.SUCCESS, 115_000, "peak")

    # Only the affordable units: used_units 0 costs nothing (no connect fee without usage).
    only = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE,
                                                destination="4930123456", at_ms=WEDNESDAY_10), timeout=30)
    assert (only.result, only.cost_micros, only.affordable_units) == (pb.SUCCESS, 0, 585)

    # Before the plan existed there is no version to price by.
    early = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=61,
                                                 destination="4930123456", at_ms=PLAN_START_MS - 1), timeout=30)
    assert early.result == pb.RATING_FAILED

    # Advice of charge holds and charges nothing.
    assert money(stubs, subscriber.id) == before
    assert stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber.id), timeout=30) == account_before

    # And the quote was right: the debit it advised on costs what it said.
    debit = direct(stubs, subscriber.id, VOICE, 61, destination="4930123456", usage_started_at_ms=WEDNESDAY_10)
    assert debit.charged_micros == quote.cost_micros
    assert money(stubs, subscriber.id).balance == funds - 126_667


# ---------------------------------------------------------------- versions


def event_plan(plan_id: str, price_micros: int, effective_from_ms: int = 0) -> pb.PutTariffRequest:
    return pb.PutTariffRequest(tariff_plan_id=plan_id, effective_from_ms=effective_from_ms, rates=[
        pb.RatingGroupRate(rating_group=EVENT, unit=pb.EVENTS, price_micros=price_micros, rate_units=1,
                           increment_units=1)])


def test_a_new_version_takes_effect_at_its_instant_and_old_grants_keep_theirs(stubs):
    plan_id = new_id("rating-versions-")
    put_started_ms = int(time.time() * 1000)
    assert put(stubs, event_plan(plan_id, 100_000)) == 1
    put_ended_ms = int(time.time() * 1000)
    assert put(stubs, event_plan(plan_id, 100_000)) == 1  # identical content: the same version
    subscriber = open_account(stubs, plan_id)

    hold = stubs.charging.Reserve(pb.ReserveRequest(request_id=new_id("rsv-"), subscriber_id=subscriber.id,
                                                    session_id=new_id("s-"), rating_group=EVENT, requested_units=2),
                                  timeout=30)
    assert (hold.result, hold.granted_units, hold.held_micros, hold.tariff_version) == (pb.SUCCESS, 2, 200_000, 1)

    switch_ms = int(time.time() * 1000) + 6_000
    assert put(stubs, event_plan(plan_id, 250_000, switch_ms)) == 2
    assert put(stubs, event_plan(plan_id, 250_000, switch_ms)) == 2  # repeated: idempotent

    before_request = pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber.id, rating_group=EVENT,
                                     used_units=1)
    before = stubs.charging.Debit(before_request, timeout=30)
    quote_now = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=EVENT, used_units=1),
                                     timeout=30)
    quote_later = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=EVENT, used_units=1,
                                                       at_ms=switch_ms + 1_000), timeout=30)
    assert time.time() * 1000 < switch_ms, "the machine is too slow: the checks before the switch ran after it"
    assert (before.result, before.charged_micros, before.tariff_version) == (pb.SUCCESS, 100_000, 1)
    assert (quote_now.cost_micros, quote_now.tariff_version) == (100_000, 1)
    assert (quote_later.cost_micros, quote_later.tariff_version) == (250_000, 2)

    got = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id), timeout=30)
    assert got.result == pb.SUCCESS
    assert (got.plan.version, got.plan.effective_from_ms, got.plan.rates[0].price_micros) == (2, switch_ms, 250_000)
    first = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id, version=1), timeout=30)
    assert (first.plan.version, first.plan.rates[0].price_micros) == (1, 100_000)
    assert put_started_ms <= first.plan.effective_from_ms <= put_ended_ms
    assert list(got.versions) == [pb.TariffVersion(version=1, effective_from_ms=first.plan.effective_from_ms),
                                  pb.TariffVersion(version=2, effective_from_ms=switch_ms)]
    assert list(first.versions) == list(got.versions)

    time.sleep(max(0.0, (switch_ms + 300) / 1000 - time.time()))
    after = direct(stubs, subscriber.id, EVENT, 1)
    assert (after.result, after.charged_micros, after.tariff_version) == (pb.SUCCESS, 250_000, 2)
    # A retry of the debit made before the switch is its original reply (version 1), not a new charge.
    again = stubs.charging.Debit(before_request, timeout=30)
    assert again.replayed and without_replayed(again) == before
    # The grant made under version 1 is charged by version 1.
    on_hold = stubs.charging.Debit(pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber.id,
                                                   reservation_id=hold.reservation_id, used_units=1, final=True),
                                   timeout=30)
    assert (on_hold.result, on_hold.charged_micros, on_hold.tariff_version, on_hold.released_micros) == (
        pb.SUCCESS, 100_000, 1, 100_000)
    # A new grant is priced by version 2.
    fresh = stubs.charging.Reserve(pb.ReserveRequest(request_id=new_id("rsv-"), subscriber_id=subscriber.id,
                                                     session_id=new_id("s-"), rating_group=EVENT, requested_units=2),
                                   timeout=30)
    assert (fresh.result, fresh.held_micros, fresh.tariff_version) == (pb.SUCCESS, 500_000, 2)

    # Once version 2 is in force, the same content with no instant ("now") is a retry too.
    assert put(stubs, event_plan(plan_id, 250_000)) == 2
    assert money(stubs, subscriber.id) == Money(pb.SUCCESS, FUNDS - 100_000 - 250_000 - 100_000, 500_000,
                                                FUNDS - 450_000 - 500_000, "EUR", 0)


# ---------------------------------------------------------------- sessions


def session_plan(plan_id: str) -> pb.PutTariffRequest:
    """UK calls: 50_000 micros a minute, "60/1", a 50_000 connect fee; anything else much dearer."""
    return pb.PutTariffRequest(tariff_plan_id=plan_id, rates=[
        voice_rate("44", "", 50_000, 50_000),
        voice_rate("", "", 6_000_000, 0),
    ])


def usage(units_requested: int, units_used: int, destination: str = "447700900123") -> pb.MultipleUnitUsage:
    return pb.MultipleUnitUsage(rating_group=VOICE, requested_units=units_requested, used_units=units_used,
                                destination=destination)


def test_a_session_pays_the_connect_fee_once_and_is_rated_as_one(stubs):
    plan_id = new_id("rating-session-")
    put(stubs, session_plan(plan_id))
    subscriber = open_account(stubs, plan_id)
    session_id = new_id("session-")
    common = {"session_id": session_id, "subscriber_id": subscriber.id}

    created = stubs.charging.CreateSession(pb.CreateSessionRequest(
        invocation_sequence_number=1, multiple_unit_usage=[usage(120, 0)], **common), timeout=30)
    assert created.result == pb.SUCCESS
    (info,) = created.multiple_unit_information
    # The grant holds the fee and 120 s: 120 * 50_000 / 60 + 50_000 = 150_000.
    assert (info.result, info.granted_units, info.held_micros, info.tariff_time_change_ms) == (
        pb.SUCCESS, 120, 150_000, 0)

    charged = []
    # 30 s: billed as 60 s (50_000) + the fee 50_000 = 100_000; 50_000 of the hold goes back.
    # The new grant of 120 s continues from 30 s: billed 60 -> 150, 90 * 50_000 / 60 = 75_000, no second fee.
    updated = stubs.charging.UpdateSession(pb.UpdateSessionRequest(
        invocation_sequence_number=2, multiple_unit_usage=[usage(120, 30)], **common), timeout=30)
    (info,) = updated.multiple_unit_information
    assert (info.result, info.charged_micros, info.released_micros, info.held_micros) == (
        pb.SUCCESS, 100_000, 50_000, 75_000)
    charged.append(info.charged_micros)

    # 45 s more (75 s in all): 75 * 50_000 / 60 + 50_000 = 112_500, minus 100_000 = 12_500.
    # Next grant: 75 -> 195 s: 120 * 50_000 / 60 = 100_000.
    updated = stubs.charging.UpdateSession(pb.UpdateSessionRequest(
        invocation_sequence_number=3, multiple_unit_usage=[usage(120, 45)], **common), timeout=30)
    (info,) = updated.multiple_unit_information
    assert (info.result, info.charged_micros, info.released_micros, info.held_micros) == (
        pb.SUCCESS, 12_500, 62_500, 100_000)
    charged.append(info.charged_micros)

    # 10 s more (85 s): 85 * 50_000 / 60 = 70_833.33 + 50_000 = 120_833.33 -> 120_834 (UP), minus 112_500 = 8_334.
    released = stubs.charging.ReleaseSession(pb.ReleaseSessionRequest(
        invocation_sequence_number=4, multiple_unit_usage=[usage(0, 10)], **common), timeout=30)
    assert released.session_state == pb.SESSION_STATE_RELEASED
    (info,) = released.multiple_unit_information
    assert (info.result, info.charged_micros, info.released_micros) == (pb.SUCCESS, 8_334, 100_000 - 8_334)
    charged.append(info.charged_micros)

    assert charged == [100_000, 12_500, 8_334]
    assert sum(charged) == 120_834  # the fee once, 85 s rated as one, rounded once
    assert money(stubs, subscriber.id) == Money(pb.SUCCESS, FUNDS - 120_834, 0, FUNDS - 120_834, "EUR", 0)

    # The same 85 s as one direct debit costs the same.
    other = open_account(stubs, plan_id)
    whole = direct(stubs, other.id, VOICE, 85, destination="447700900123")
    assert (whole.result, whole.charged_micros) == (pb.SUCCESS, 120_834)


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_ctx(stubs):
    """A subscriber on the Berlin plan with a live hold, which no bad request may change."""
    plan_id = new_id("rating-bad-")
    put(stubs, berlin_put(plan_id))
    subscriber = open_account(stubs, plan_id)
    hold = stubs.charging.Reserve(pb.ReserveRequest(
        request_id=new_id("rsv-"), subscriber_id=subscriber.id, session_id=new_id("s-"), rating_group=VOICE,
        requested_units=60, destination="4930123456"), timeout=30)
    assert hold.result == pb.SUCCESS, hold
    (view,) = stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber.id), timeout=30).reservations
    return {"subscriber_id": subscriber.id, "plan_id": plan_id, "reservation_id": hold.reservation_id,
            "granted_at_ms": view.granted_at_ms}


def _bad_plan(**fields) -> pb.PutTariffRequest:
    request = berlin_put("")
    request.effective_from_ms = 0
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(request, name)[:]
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


BAD_TARIFFS = [
    ("tiers-not-from-0",
     _bad_plan(rates=[pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, tiers=[
         pb.RateTier(from_units=10, price_micros=1, rate_units=60, increment_units=1)])]),
     "rates[0].tiers[0].from_units"),
    ("unknown-time-band", _bad_plan(rates=[BERLIN_RATES[0], voice_rate("49", "night", 1_000, 0)]),
     "rates[1].time_band"),
    ("invalid-time-zone", _bad_plan(time_zone="Mars/Olympus_Mons"), "time_zone"),
    ("prefix-with-letters", _bad_plan(rates=[voice_rate("49a", "", 1_000, 0)]), "rates[0].destination_prefix"),
]


@pytest.mark.parametrize("name, request_, field", BAD_TARIFFS, ids=[case[0] for case in BAD_TARIFFS])
def test_a_bad_plan_is_invalid_argument_naming_the_field_and_nothing_is_put(stubs, name, request_, field):
    request = pb.PutTariffRequest()
    request.CopyFrom(request_)
    request.tariff_plan_id = new_id("rating-bad-plan-")
    error = failing(stubs.catalog.PutTariff, request, timeout=30)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.field == field, error
    assert error.info is not None and error.info.reason == "INVALID_FIELD" and error.info_field == field
    got = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=request.tariff_plan_id), timeout=30)
    assert got.result == pb.TARIFF_PLAN_UNKNOWN and not got.HasField("plan") and not got.versions


def _direct(c, **fields):
    return "charging.Debit", pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=c["subscriber_id"],
                                             rating_group=VOICE, used_units=61, **fields)


def _on_hold(c, **fields):
    return "charging.Debit", pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=c["subscriber_id"],
                                             reservation_id=c["reservation_id"], used_units=1, **fields)


def _reserve(c, **fields):
    return "charging.Reserve", pb.ReserveRequest(request_id=new_id("rsv-"), subscriber_id=c["subscriber_id"],
                                                 session_id=new_id("s-"), rating_group=VOICE, requested_units=60,
                                                 **fields)


def _quote(c, **fields):
    return "charging.Quote", pb.QuoteRequest(subscriber_id=c["subscriber_id"], rating_group=VOICE, used_units=61,
                                             **fields)


def _session(c, **fields):
    return "charging.CreateSession", pb.CreateSessionRequest(
        session_id=new_id("s-"), subscriber_id=c["subscriber_id"], invocation_sequence_number=1,
        multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=60, **fields)])


BAD_CHARGING = [
    ("debit-destination-letters", lambda c: _direct(c, destination="49abc123"), "destination"),
    ("debit-destination-plus", lambda c: _direct(c, destination="+4930123"), "destination"),
    ("reserve-destination-letters", lambda c: _reserve(c, destination="4930x"), "destination"),
    ("quote-destination-letters", lambda c: _quote(c, destination="0049-30"), "destination"),
    ("session-destination-letters", lambda c: _session(c, destination="49 30"), "multiple_unit_usage[0].destination"),
    ("debit-destination-33-digits", lambda c: _direct(c, destination="4" * 33), "destination"),
    # A debit on a reservation is rated as the reservation was granted: none of these may be given.
    ("on-hold-destination", lambda c: _on_hold(c, destination="4930123456"), "destination"),
    ("on-hold-roaming-zone", lambda c: _on_hold(c, roaming_zone="EU"), "roaming_zone"),
    ("on-hold-usage-started", lambda c: _on_hold(c, usage_started_at_ms=WEDNESDAY_10), "usage_started_at_ms"),
]


@pytest.mark.parametrize("name, build, field", BAD_CHARGING, ids=[case[0] for case in BAD_CHARGING])
def test_a_bad_destination_is_invalid_argument_naming_the_field_and_changes_nothing(stubs, bad_ctx, name, build,
                                                                                      field):
    subscriber_id = bad_ctx["subscriber_id"]
    before = (money(stubs, subscriber_id),
              stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber_id), timeout=30))
    method, request = build(bad_ctx)
    service, rpc = method.split(".")
    error = failing(getattr(getattr(stubs, service), rpc), request, timeout=30)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.field == field, error
    assert error.violations[0][1], "the violation says what is wrong"
    assert error.info is not None and error.info.reason == "INVALID_FIELD" and error.info_field == field
    after = (money(stubs, subscriber_id),
             stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber_id), timeout=30))
    assert after == before
    if getattr(request, "request_id", ""):
        assert not stubs.charging.GetTransaction(pb.GetTransactionRequest(
            subscriber_id=subscriber_id, request_id=request.request_id), timeout=30).found
    if isinstance(request, pb.CreateSessionRequest):
        session = stubs.charging.GetSession(pb.GetSessionRequest(subscriber_id=subscriber_id,
                                                                 session_id=request.session_id), timeout=30)
        assert session.result == pb.SESSION_NOT_FOUND


def test_the_hold_survives_the_bad_requests(stubs, bad_ctx):
    """After the bad cases (module order) the hold still debits as granted: 4930 at the band of its grant."""
    account = stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=bad_ctx["subscriber_id"]), timeout=30)
    assert [r.reservation_id for r in account.reservations] == [bad_ctx["reservation_id"]]
    debit = stubs.charging.Debit(pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=bad_ctx["subscriber_id"],
                                                 reservation_id=bad_ctx["reservation_id"], used_units=1, final=True),
                                 timeout=30)
    assert debit.result == pb.SUCCESS and debit.tariff_version == 1
    # 1 s is billed as the first 60 s increment, each second at the band it falls in (from the grant on,
    # in Berlin, now), plus the fee of the rate in force when the grant was made.
    assert debit.charged_micros == berlin_cost("4930123456", bad_ctx["granted_at_ms"], 60)
    assert money(stubs, bad_ctx["subscriber_id"]).reserved == 0


# ---------------------------------------------------------------- Tariff-Time-Change


def band_plan(plan_id: str, from_minute: int) -> pb.PutTariffRequest:
    """UTC; "soon" is one minute every day at 6_000 micros a second, 1_000 otherwise."""
    from_minute %= 1440
    return pb.PutTariffRequest(
        tariff_plan_id=plan_id, time_zone="UTC",
        time_bands=[pb.TimeBand(name="soon", days=[1, 2, 3, 4, 5, 6, 7, 8], from_minute=from_minute,
                                to_minute=from_minute + 1)],
        rates=[pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, time_band="soon", price_micros=6_000,
                                  rate_units=1, increment_units=1),
               pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, price_micros=1_000, rate_units=1,
                                  increment_units=1)])


def test_a_grant_that_may_cross_a_band_change_says_when_and_is_sized_for_the_dearer_side(stubs):
    # The band is the minute after next (UTC): whether the grant lands in this minute or the next, the
    # first band change after it is the start of that minute, well inside the grant's lifetime (validity
    # 300 s + grace 30 s), and the grant itself is not in the band. No clock control, no boundary race.
    minute = int(time.time()) // 60
    change_ms = (minute + 2) * 60_000
    crossing_plan = new_id("rating-ttc-")
    put(stubs, band_plan(crossing_plan, minute + 2))
    # A band 8 minutes on is beyond the lifetime of a grant made within the next 2 minutes (330 s).
    far_plan = new_id("rating-ttc-far-")
    put(stubs, band_plan(far_plan, minute + 8))

    subscriber = open_account(stubs, crossing_plan)
    reserve_request = pb.ReserveRequest(request_id=new_id("rsv-"), subscriber_id=subscriber.id,
                                        session_id=new_id("s-"), rating_group=VOICE, requested_units=30)
    reserve = stubs.charging.Reserve(reserve_request, timeout=30)
    assert time.time() * 1000 < change_ms, "the machine is too slow: the grant was made in the band"
    assert reserve.result == pb.SUCCESS
    assert reserve.tariff_time_change_ms == change_ms
    # Sized for the dearer side: 30 s at 6_000, not 1_000.
    assert (reserve.granted_units, reserve.held_micros, reserve.tariff_version) == (30, 180_000, 1)
    kept = stubs.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=subscriber.id,
                                                                  request_id=reserve_request.request_id), timeout=30)
    assert kept.found and kept.reserve == reserve  # the Tariff-Time-Change is kept with the reply

    session = stubs.charging.CreateSession(pb.CreateSessionRequest(
        session_id=new_id("s-"), subscriber_id=subscriber.id, invocation_sequence_number=1,
        multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=30)]), timeout=30)
    (info,) = session.multiple_unit_information
    assert (info.result, info.tariff_time_change_ms, info.held_micros) == (pb.SUCCESS, change_ms, 180_000)

    # The usage is charged second by second at the band each second falls in (from the grant on).
    granted_at_ms = next(r.granted_at_ms for r in stubs.account.GetAccount(
        pb.GetAccountRequest(subscriber_id=subscriber.id), timeout=30).reservations
        if r.reservation_id == reserve.reservation_id)
    expected = sum(6_000 if change_ms <= granted_at_ms + p * 1000 < change_ms + 60_000 else 1_000 for p in range(30))
    debit = stubs.charging.Debit(pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber.id,
                                                 reservation_id=reserve.reservation_id, used_units=30, final=True),
                                 timeout=30)
    assert (debit.result, debit.charged_micros, debit.released_micros) == (pb.SUCCESS, expected, 180_000 - expected)

    far = open_account(stubs, far_plan)
    calm = stubs.charging.Reserve(pb.ReserveRequest(
        request_id=new_id("rsv-"), subscriber_id=far.id, session_id=new_id("s-"), rating_group=VOICE,
        requested_units=30), timeout=30)
    assert time.time() * 1000 < (minute + 8) * 60_000 - 330_000, "the machine is too slow"
    assert (calm.result, calm.tariff_time_change_ms, calm.held_micros) == (pb.SUCCESS, 0, 30_000)


# ---------------------------------------------------------------- daylight saving time

UTC = datetime.timezone.utc


def dst_plan(plan_id: str, from_minute: int, to_minute: int) -> pb.PutTariffRequest:
    """Europe/Berlin; "band" every day at 6_000 micros a second, 1_000 otherwise."""
    return pb.PutTariffRequest(
        tariff_plan_id=plan_id, time_zone="Europe/Berlin", effective_from_ms=PLAN_START_MS,  # quotes in 2025
        time_bands=[pb.TimeBand(name="band", days=[1, 2, 3, 4, 5, 6, 7], from_minute=from_minute,
                                to_minute=to_minute)],
        rates=[pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, time_band="band", price_micros=6_000,
                                  rate_units=1, increment_units=1),
               pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, price_micros=1_000, rate_units=1,
                                  increment_units=1)])


DST_CASES = [
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST (01:00Z). Band 00:00-02:30. A call 00:50Z-01:20Z is
    # 01:50-02:00 CET in the band (600 s * 6_000 = 3_600_000), then 03:00-03:20 CEST outside it
    # (1_200 s * 1_000 = 1_200_000): 4_800_000.
    pytest.param(0, 150, datetime.datetime(2025, 3, 30, 0, 50, tzinfo=UTC), "2025-03-30T01:10:00Z",
                 id="spring-forward"),
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET (01:00Z). Band 02:30-24:00. A call 00:50Z-01:20Z is
    # 02:50-03:00 CEST in the band (3_600_000), then 02:00-02:20 CET outside it (1_200_000): 4_800_000.
    pytest.param(150, 1440, datetime.datetime(2025, 10, 26, 0, 50, tzinfo=UTC), "2025-10-26T01:10:00Z",
                 id="fall-back"),
]


@pytest.mark.parametrize("from_minute, to_minute, started, outside_later", DST_CASES)
def test_a_call_across_a_daylight_saving_change_is_priced_at_each_seconds_band(stubs, from_minute, to_minute,
                                                                                started, outside_later):
    plan_id = new_id("rating-dst-")
    put(stubs, dst_plan(plan_id, from_minute, to_minute))
    subscriber = open_account(stubs, plan_id, funds=20_000_000)  # enough for the half hour even all in the band
    started_ms = int(started.timestamp() * 1000)
    # The grid itself says where the band is: in it at the start, outside it 20 minutes later.
    at_start = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=1,
                                                    at_ms=started_ms), timeout=30)
    later_ms = int(datetime.datetime.fromisoformat(outside_later.replace("Z", "+00:00")).timestamp() * 1000)
    later = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=VOICE, used_units=1,
                                                 at_ms=later_ms), timeout=30)
    assert (at_start.time_band, at_start.cost_micros) == ("band", 6_000)
    assert (later.time_band, later.cost_micros) == ("", 1_000)

    debit = direct(stubs, subscriber.id, VOICE, 1_800, usage_started_at_ms=started_ms)
    assert debit.result == pb.SUCCESS
    assert debit.charged_micros == 4_800_000


def test_a_rate_named_for_a_service_rates_that_services_usage_first(embedded, stubs, tmp_path):
    """RFC 4006 Service-Identifier over the wire and from a catalog file: a
    zero-rated and a premium service of one data rating group, the group's own
    rate for every other service; a hold keeps its service."""
    import json
    import subprocess
    import sys

    plan_id = new_id("rating-services-")
    catalog = tmp_path / "services.yaml"
    catalog.write_text(f"""
plans:
  - id: {plan_id}
    rates:
      - {{rating_group: {DATA}, unit: bytes, price: "0.001", per: 1000000, increment: 1000000}}
      - {{rating_group: {DATA}, service_identifier: 7, unit: bytes, price: "0", per: 1000000, increment: 1000000}}
      - {{rating_group: {DATA}, service_identifier: 8, unit: bytes, price: "0.005", per: 1000000,
          increment: 1000000}}
""")
    applied = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "catalog", "apply",
                              str(catalog)], capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    shown = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "catalog", "get", plan_id],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "service_identifier: 8" in shown.stdout, shown.stdout
    stored = stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=plan_id), timeout=30)
    assert sorted(rate.service_identifier for rate in stored.plan.rates) == [0, 7, 8]

    subscriber = open_account(stubs, plan_id)
    mb = 1_000_000
    free = direct(stubs, subscriber.id, DATA, 3 * mb, service_identifier=7)
    video = direct(stubs, subscriber.id, DATA, 3 * mb, service_identifier=8)
    other = direct(stubs, subscriber.id, DATA, 3 * mb, service_identifier=9)
    # 3 started MB: free; 3 x 5_000; 3 x 1_000 (no rate names service 9: the group's).
    assert (free.charged_micros, video.charged_micros, other.charged_micros) == (0, 15_000, 3_000)
    quote = stubs.charging.Quote(pb.QuoteRequest(subscriber_id=subscriber.id, rating_group=DATA, used_units=mb,
                                                 service_identifier=8), timeout=30)
    assert (quote.cost_micros, quote.service_identifier) == (5_000, 8)
    hold = stubs.charging.Reserve(pb.ReserveRequest(
        request_id=new_id("rsv-"), subscriber_id=subscriber.id, session_id="s", rating_group=DATA,
        requested_units=2 * mb, service_identifier=8), timeout=30)
    assert (hold.result, hold.held_micros) == (pb.SUCCESS, 10_000)  # 2 x 5_000
    [shown] = stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber.id), timeout=30).reservations
    assert (shown.reservation_id, shown.service_identifier, shown.tariff_version) == (hold.reservation_id, 8, 1)
    used = stubs.charging.Debit(pb.DebitRequest(request_id=new_id("dbt-"), subscriber_id=subscriber.id,
                                                reservation_id=hold.reservation_id, used_units=mb, final=True),
                                timeout=30)
    assert (used.charged_micros, used.released_micros) == (5_000, 5_000)  # rated as granted: video
    cli = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "quote", subscriber.id,
                          str(DATA), str(mb), "--service", "7"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert int(json.loads(cli.stdout)["cost_micros"]) == 0
    assert money(stubs, subscriber.id).balance == FUNDS - 15_000 - 3_000 - 5_000
