"""Properties of rating, buckets and the catalog format, over generated plans (hypothesis).

(a) A charge is never negative and the cost of usage never decreases as the
    usage grows: over random valid plans (tiers, connect fee, minimum and
    maximum cost, cap actions, rounding rules, volume tiers, time bands in
    several zones), destinations, zones, start instants and usages, using
    grid.domain.pricing.Pricer directly.
(b) Usage reported in pieces and rated cumulatively (each charge is
    Pricer.charge(used so far, exact so far, piece), the piece's seconds
    placed on the clock after those before it) sums to exactly the one
    charge of the total - charged micros, rounding residue and the exact
    cost - whenever every piece is priced by rates of the same tier
    structure: (b1) plans without time bands, any rate; (b2) plans with time
    bands whose rates have a single price (no tiers), pieces crossing band
    changes. The same through the shard: a session reporting random pieces
    pays what one report of the total, and one direct debit, pay.
(c) Bucket consumption does not depend on the order in which buckets of equal
    weight and expiry (and the same filters) were created: any creation order
    gives the same replies, the same balance and the same totals per kind of
    bucket.
(d) Every valid plan round-trips through the catalog file format (the
    document, YAML text, JSON text) and through the protobuf PutTariff request
    (also as bytes).
"""

import dataclasses
import datetime
import json
from fractions import Fraction

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from charging.v1 import charging_pb2 as pb
from grid import catalog
from grid.domain import operations as ops
from grid.domain.limits import UINT32_MAX, UINT64_MAX, CoreLimits
from grid.domain.outcomes import (
    BucketUnit, ControlAction, ControlKind, CounterPeriod, FinalUnitAction, Result, Unit,
)
from grid.domain.pricing import PlanIndex, Pricer, RatingError, Usage
from grid.domain.rating import (
    CapAction, Control, CounterThreshold, PolicyCounter, Rate, Rounding, TariffPlan, Tier, TimeBand,
)
from grid.domain.shard_state import ShardState
from grid.domain.validation import INSTANT_MAX_MS, validate
from grid.frontdoor import convert

T = ops.DEFAULT_TENANT
S = Result.SUCCESS
LIMITS = CoreLimits()
SECOND = 1_000
HOUR = 3_600 * SECOND
T_2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
T_2027 = 1_798_761_600_000  # 2027-01-01T00:00:00Z
# Zones with and without daylight saving time, and one with a 30-minute shift.
ZONES = ("", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
ROAMING_ZONES = ("", "EU", "WORLD")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ====================================================================== valid plans

# Text a YAML or JSON writer must quote or escape to read back the same.
TRICKY = ("yes", "no", "on", "null", "~", "true", "1", "0x1F", "1e3", "0o7", ".inf", "-", "a: b", "#x", "é",
          "名前", "'q'", '"q"', "a\\b", "*x", "&a", "!t", "%", "@x", "`", "{}", "[]", "2025-01-01", "08:00",
          "12:30:00", "a  b", "<<", "=", "?", "|", ">")


def printable_text(min_size: int, max_size: int):
    alphabet = st.characters(codec="utf-8", exclude_categories=("C", "Z")) | st.just(" ")
    return st.text(alphabet, min_size=min_size, max_size=max_size).filter(str.isprintable)


identifiers = st.one_of(st.sampled_from(TRICKY), printable_text(1, 24)).filter(lambda s: s == s.strip())
descriptions = st.one_of(st.just(""), st.sampled_from(TRICKY), printable_text(0, 60))
money = st.one_of(st.integers(0, 10_000), st.integers(0, LIMITS.amount_max_micros))
rate_units = st.one_of(st.sampled_from([1, 60, 1_000, 1_000_000]), st.integers(1, UINT64_MAX))
increments = st.one_of(st.sampled_from([1, 6, 60, 1_000]), st.integers(1, 10**6))


@st.composite
def tier_lists(draw, prices=money):
    tiers = [Tier(0, draw(prices), draw(rate_units), draw(increments))]
    for _ in range(draw(st.integers(0, 3))):
        start = tiers[-1].from_units + draw(st.integers(1, 100)) * tiers[-1].increment_units
        tiers.append(Tier(start, draw(prices), draw(rate_units), draw(increments)))
    return tuple(tiers)


@st.composite
def rates(draw, rating_group: int, unit: Unit, volume_period: CounterPeriod, selector: tuple[str, str, str],
          prices=money, tiered: bool | None = None):
    prefix, band, zone = selector
    fields = {}
    if tiered if tiered is not None else draw(st.booleans()):
        fields["tiers"] = draw(tier_lists(prices))
        price = per = increment = 0
    else:
        price, per, increment = draw(prices), draw(rate_units), draw(increments)
    minimum = draw(st.one_of(st.just(0), prices))
    maximum = draw(st.one_of(st.just(0), prices.map(lambda m: min(m + minimum, LIMITS.amount_max_micros))))
    if maximum:
        fields["cap_action"] = draw(st.sampled_from(tuple(CapAction)))
    action = draw(st.sampled_from(tuple(FinalUnitAction)))
    return Rate(
        rating_group, unit, price, per, increment, action,
        draw(identifiers) if action == FinalUnitAction.REDIRECT else "",
        destination_prefix=prefix, time_band=band, roaming_zone=zone,
        connect_fee_micros=draw(st.one_of(st.just(0), prices)), minimum_charge_micros=minimum,
        maximum_cost_micros=maximum, volume_period=volume_period,
        # A group's base rate (no selector) is for any service: every usage of the group can be rated.
        service_identifier=draw(st.sampled_from((0, 0, 7, 2**32 - 1))) if any(selector) else 0, **fields,
    )


@st.composite
def time_bands(draw):
    names = draw(st.lists(identifiers, max_size=3, unique=True))
    bands = []
    for name in names:
        start = draw(st.one_of(st.just(0), st.integers(0, 1439)))  # whole days (0 to 24:00) are common
        bands.append(TimeBand(name, tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=8, unique=True))),
                              start, draw(st.one_of(st.just(1440), st.integers(start + 1, 1440)))))
    return tuple(bands)


@st.composite
def policy_counters(draw):
    counters = []
    for counter_id in draw(st.lists(identifiers, max_size=2, unique=True)):
        spend = draw(st.booleans())
        groups = draw(st.lists(st.integers(1, UINT32_MAX), min_size=0 if spend else 1, max_size=3, unique=True))
        levels = draw(st.lists(st.integers(1, LIMITS.amount_max_micros), min_size=1, max_size=3, unique=True))
        counters.append(PolicyCounter(
            counter_id, tuple(groups), spend, draw(st.sampled_from(tuple(CounterPeriod)[1:])), draw(identifiers),
            tuple(CounterThreshold(level, draw(identifiers)) for level in sorted(levels))))
    return tuple(counters)


@st.composite
def controls(draw):
    made = []
    for control_id in draw(st.lists(identifiers, max_size=2, unique=True)):
        kind = draw(st.sampled_from(tuple(ControlKind)[1:]))
        action = draw(st.sampled_from(tuple(ControlAction)[1:]))
        velocity = kind in (ControlKind.SPEND_VELOCITY, ControlKind.USAGE_VELOCITY)
        window = draw(st.integers(1 if velocity or action == ControlAction.DENY_GRANTS else 0, 31 * 86_400))
        groups = ()
        if velocity:
            groups = tuple(draw(st.lists(st.integers(1, UINT32_MAX), min_size=kind == ControlKind.USAGE_VELOCITY,
                                         max_size=3, unique=True)))
        made.append(Control(control_id, kind, draw(st.integers(1, LIMITS.amount_max_micros)), window, action, groups))
    return tuple(made)


@st.composite
def plans(draw, *, banded: bool | None = None, extras: bool = True, prices=money, tiered: bool | None = None,
          groups_max: int = 3, units=(Unit.SECONDS, Unit.BYTES, Unit.EVENTS), volume: bool = True):
    """A plan that passes validation. Each rating group has a base rate (any
    destination, any time, any zone), so every usage of it can be rated."""
    bands = draw(time_bands()) if banded is None else (draw(time_bands().filter(bool)) if banded else ())
    zone = draw(st.sampled_from(ZONES)) if bands or extras else ""
    all_rates = []
    for rating_group in draw(st.lists(st.integers(1, UINT32_MAX), min_size=1, max_size=groups_max, unique=True)):
        unit = draw(st.sampled_from(units))
        period = draw(st.sampled_from(tuple(CounterPeriod))) if volume and draw(st.integers(0, 4)) == 0 else \
            CounterPeriod.COUNTER_PERIOD_UNSPECIFIED
        selectors = {("", "", "")} | set(draw(st.lists(st.tuples(
            st.text("0123456789", max_size=4), st.sampled_from(("",) + tuple(b.name for b in bands)),
            st.sampled_from(ROAMING_ZONES)), max_size=3)))
        for selector in sorted(selectors):
            all_rates.append(draw(rates(rating_group, unit, period, selector, prices, tiered)))
    plan = TariffPlan(
        draw(identifiers), tuple(draw(st.permutations(all_rates))),
        policy_counters=draw(policy_counters()) if extras else (),
        controls=draw(controls()) if extras else (),
        effective_from_ms=draw(st.one_of(st.just(0), st.integers(0, INSTANT_MAX_MS))) if extras else 0,
        time_zone=zone, time_bands=bands,
        holidays=tuple(d.isoformat() for d in draw(st.lists(
            st.dates(datetime.date(1970, 1, 1), datetime.date(2100, 12, 31)), max_size=3, unique=True))),
        rounding=draw(st.sampled_from(tuple(Rounding))),
        description=draw(descriptions) if extras else "",
    )
    validate(ops.PutTariff(plan), LIMITS)  # built valid; raises (and fails the test) if not
    return plan


@st.composite
def priced_usages(draw, plan: TariffPlan):
    """A usage the plan can rate: one of its rates' group, a destination under
    its prefix (or not), its zone (or another)."""
    rate = draw(st.sampled_from(plan.rates))
    destination = rate.destination_prefix + draw(st.text("0123456789", max_size=3))
    return Usage(rate.rating_group, destination, draw(st.sampled_from((rate.roaming_zone, "", "MARS"))),
                 draw(st.sampled_from((rate.service_identifier, 0, 99))))


def pricer_for(plan: TariffPlan, usage: Usage, anchor_ms: int) -> Pricer:
    try:
        return Pricer(PlanIndex(plan), usage, anchor_ms)
    except RatingError:  # never: every group has a base rate
        raise AssertionError("a plan with a base rate per group could not rate a usage") from None


instants = st.integers(T_2024, T_2027)


# ====================================================================== (a) never negative, never decreasing


@FAST
@given(st.data())
def test_cost_is_never_negative_and_never_decreases_as_usage_grows(data):
    plan = data.draw(plans(extras=False))
    usage = data.draw(priced_usages(plan))
    start_ms = data.draw(instants)
    pricer = pricer_for(plan, usage, start_ms)
    timed_seconds = pricer.seconds
    at_ms = start_ms if timed_seconds else data.draw(instants)
    period_units = data.draw(st.integers(0, 10**6)) if pricer.volume else 0
    # Seconds on a timed plan are placed on the clock (day by day): keep them to days, not decades.
    sizes = st.integers(0, 2 * 10**6) if timed_seconds else st.one_of(st.integers(0, 10**4), st.integers(0, 10**12))
    smaller, larger = sorted((data.draw(sizes), data.draw(sizes)))

    def charge(units: int):
        return pricer.charge(0, Fraction(0), units, start_ms, at_ms, period_units)

    low, high = charge(smaller), charge(larger)
    assert 0 <= low.charged_micros <= high.charged_micros
    assert low.exact_after <= high.exact_after
    # The charge for the growth itself (what a session's next report pays) is never negative either.
    more = pricer.charge(smaller, low.exact_after, larger - smaller, start_ms + smaller * SECOND, at_ms,
                         period_units + smaller)
    assert more.charged_micros >= 0
    assert charge(0).charged_micros == 0  # nothing used, nothing charged: no connect fee, no minimum


# ====================================================================== (b) pieces sum to the whole


def _pieces_and_whole(pricer: Pricer, pieces: list[int], start_ms: int, at_ms: int, period_units: int):
    used, exact, charged, residue = 0, Fraction(0), 0, 0
    for piece in pieces:
        rated = pricer.charge(used, exact, piece, start_ms + used * SECOND, at_ms, period_units + used)
        assert rated.charged_micros >= 0
        used, exact = used + piece, rated.exact_after
        charged += rated.charged_micros
        residue += rated.rounding_residue_picos
    whole = pricer.charge(0, Fraction(0), sum(pieces), start_ms, at_ms, period_units)
    return (charged, residue, exact), (whole.charged_micros, whole.rounding_residue_picos, whole.exact_after)


pieces_lists = st.lists(st.one_of(st.integers(0, 200), st.integers(0, 100_000)), min_size=1, max_size=8)


@FAST
@given(st.data())
def test_usage_in_pieces_costs_what_it_costs_at_once_without_time_bands(data):
    plan = data.draw(plans(banded=False, extras=False))
    usage = data.draw(priced_usages(plan))
    start_ms, at_ms = data.draw(instants), data.draw(instants)
    pricer = pricer_for(plan, usage, start_ms)
    period_units = data.draw(st.integers(0, 10**6)) if pricer.volume else 0
    pieces = data.draw(pieces_lists)
    in_pieces, at_once = _pieces_and_whole(pricer, pieces, start_ms, at_ms, period_units)
    assert in_pieces == at_once


@FAST
@given(st.data())
def test_seconds_in_pieces_cost_what_they_cost_at_once_across_band_changes_with_single_price_rates(data):
    # Volume tiers are excluded: they price by the report's band, not on the clock.
    plan = data.draw(plans(banded=True, extras=False, tiered=False, units=(Unit.SECONDS,), volume=False))
    usage = data.draw(priced_usages(plan))
    start_ms = data.draw(instants)
    pricer = pricer_for(plan, usage, start_ms)
    assert pricer.seconds
    pieces = data.draw(st.lists(st.integers(0, 6 * 3_600), min_size=1, max_size=6))
    in_pieces, at_once = _pieces_and_whole(pricer, pieces, start_ms, start_ms, 0)
    assert in_pieces == at_once


def test_a_call_across_a_band_change_costs_the_same_reported_at_once_or_in_two_pieces():
    peak = TimeBand("peak", (1, 2, 3, 4, 5, 6, 7), 8 * 60, 18 * 60)
    plan = TariffPlan("bands", (
        Rate(1, Unit.SECONDS, 60, 60, 1),  # off-peak: 1 micro a second
        # Peak: 10 a second for the first 45 s of the call, then 1 a second.
        Rate(1, Unit.SECONDS, 0, 0, 0, time_band="peak", tiers=(Tier(0, 600, 60, 1), Tier(45, 60, 60, 1))),
    ), time_zone="UTC", time_bands=(peak,))
    validate(ops.PutTariff(plan), LIMITS)
    start_ms = int(datetime.datetime(2025, 1, 15, 7, 59, 30, tzinfo=datetime.timezone.utc).timestamp() * 1000)
    pricer = pricer_for(plan, Usage(1), start_ms)  # anchored off-peak; peak from second 30 of the call
    in_pieces, at_once = _pieces_and_whole(pricer, [50, 10], start_ms, start_ms, 0)
    # Per second: 30 off-peak x 1 + peak seconds 30..44 x 10 + 45..59 x 1 = 30 + 150 + 15 = 195.
    # At once the core charges 330 (seconds 30..59 all at 10); in pieces of 50 + 10 it charges 240.
    assert in_pieces[0] == at_once[0]


class Shard:
    """A shard with one plan and one rich account: the shell's way of applying operations."""

    def __init__(self, plan: TariffPlan, now_ms: int, buckets: tuple[ops.BucketGrant, ...] = (),
                 balance_micros: int = LIMITS.amount_max_micros) -> None:
        self.state = ShardState(1)
        self.now = now_ms
        self.requests = 0
        assert self.state.apply(ops.PutTariff(dataclasses.replace(plan, effective_from_ms=0)), now_ms).result == S
        assert self.do(ops.CreateAccount(T, "sub", self.rid(), "EUR", 0, plan.tariff_plan_id,
                                         buckets=buckets)).result == S
        if balance_micros:
            assert self.do(ops.TopUp(T, "sub", self.rid(), balance_micros)).result == S

    def rid(self) -> str:
        self.requests += 1
        return f"r{self.requests}"

    def do(self, operation):
        [reply] = self.state.apply_batch([operation], self.now)
        self.state.take_writes()
        return reply

    def balance(self) -> ops.BalanceReply:
        return self.state.apply(ops.GetBalance(T, "sub"), self.now)


small_prices = st.integers(0, 5_000)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_session_reporting_in_pieces_pays_what_one_report_and_one_direct_debit_pay(data):
    plan = data.draw(plans(banded=False, extras=False, prices=small_prices, groups_max=1))
    rating_group = plan.rates[0].rating_group
    destination = data.draw(st.sampled_from(sorted({r.destination_prefix for r in plan.rates}))) + "1"
    pieces = data.draw(st.lists(st.integers(1, 2_000), min_size=2, max_size=6))
    requests = data.draw(st.lists(st.integers(1, 2_000), min_size=len(pieces), max_size=len(pieces)))
    start_ms = data.draw(st.integers(T_2024, T_2027)) // 86_400_000 * 86_400_000 + HOUR  # 01:00 UTC: same day

    def unit_usage(**fields):
        return ops.UnitUsage(rating_group, destination=destination, **fields)

    split = Shard(plan, start_ms)
    reply = split.do(ops.CreateSession(T, "sub", "s", 1, (unit_usage(requested_units=requests[0]),)))
    assert reply.result == S
    paid = []
    for number, piece in enumerate(pieces, 2):
        split.now += piece * SECOND
        last = number == len(pieces) + 1
        kind = ops.ReleaseSession if last else ops.UpdateSession
        usage = unit_usage(used_units=piece) if last else unit_usage(used_units=piece,
                                                                      requested_units=requests[number - 1])
        reply = split.do(kind(T, "sub", "s", number, (usage,)))
        assert reply.result == S, reply
        [info] = reply.multiple_unit_information
        assert info.used_units == piece and info.charged_micros >= 0
        paid.append(info.charged_micros)

    total = sum(pieces)
    whole = Shard(plan, start_ms)
    assert whole.do(ops.CreateSession(T, "sub", "s", 1, (unit_usage(requested_units=requests[0]),))).result == S
    whole.now += total * SECOND
    reply = whole.do(ops.ReleaseSession(T, "sub", "s", 2, (unit_usage(used_units=total),)))
    [once] = reply.multiple_unit_information

    direct = Shard(plan, start_ms)
    direct.now += total * SECOND
    debit = direct.do(ops.Debit(T, "sub", direct.rid(), "", rating_group, total, False, destination=destination,
                                usage_started_at_ms=start_ms))
    assert debit.result == S, debit

    event("charged" if sum(paid) else "charged nothing")
    event(f"{len(pieces)} pieces")
    assert sum(paid) == once.charged_micros == debit.charged_micros
    balances = {shard.balance().balance_micros for shard in (split, whole, direct)}
    assert balances == {LIMITS.amount_max_micros - sum(paid)}
    for shard in (split, whole, direct):
        shard.state.check_invariants()


# ====================================================================== (c) creation order of equivalent buckets

VOICE, DATA, SMS, MINUTES = 1, 2, 3, 4
ORDER_PLAN = TariffPlan("order", (
    Rate(VOICE, Unit.SECONDS, 60_000, 60, 1),  # 1_000 a second
    Rate(VOICE, Unit.SECONDS, 120_000, 60, 1, destination_prefix="44"),  # 2_000 a second
    Rate(DATA, Unit.BYTES, 1, 1, 1),
    Rate(SMS, Unit.EVENTS, 100_000, 1, 1),
    Rate(MINUTES, Unit.SECONDS, 1_000, 60, 60, connect_fee_micros=500),
))
T0 = 1_750_000_000_000
GROUP_UNIT = {VOICE: BucketUnit.SECONDS, DATA: BucketUnit.BYTES, SMS: BucketUnit.EVENTS, MINUTES: BucketUnit.SECONDS}

bucket_classes = st.lists(
    st.tuples(st.sampled_from((0, 1, 7)), st.sampled_from((0, T0 + HOUR, T0 + 2 * HOUR)),
              st.sampled_from(((), (VOICE,), (DATA, SMS), (MINUTES, VOICE))),
              st.sampled_from(((), ("49",), ("44", "33")))),
    min_size=1, max_size=4, unique_by=lambda c: (c[0], c[1]))  # one set of filters per (weight, expiry)


@st.composite
def bucket_sets(draw):
    classes = draw(bucket_classes)
    grants = []
    for _ in range(draw(st.integers(2, 10))):
        weight, until, groups, prefixes = draw(st.sampled_from(classes))
        unit = draw(st.sampled_from(tuple(BucketUnit)[1:]))
        amount = draw(st.integers(1, 300_000) if unit in (BucketUnit.MONEY, BucketUnit.BYTES) else st.integers(1, 200))
        grants.append(ops.BucketGrant(unit, amount, 0, until, weight, groups, prefixes))
    return grants


steps = st.lists(st.one_of(
    st.tuples(st.just("debit"), st.sampled_from((VOICE, DATA, SMS, MINUTES)), st.integers(1, 400),
              st.sampled_from(("", "4930", "4420", "331")), st.integers(0, 1_800)),
    st.tuples(st.just("hold"), st.sampled_from((VOICE, DATA, SMS, MINUTES)), st.integers(1, 400),
              st.sampled_from(("", "4930", "4420", "331")), st.integers(0, 1_800), st.integers(0, 500),
              st.booleans()),
), min_size=1, max_size=10)


def _run(grants, plan_steps):
    shard = Shard(ORDER_PLAN, T0, tuple(grants), balance_micros=3_000_000)
    replies = []
    for step in plan_steps:
        kind, rating_group, units, destination, advance_s = step[:5]
        shard.now += advance_s * SECOND
        if kind == "debit":
            replies.append(shard.do(ops.Debit(T, "sub", shard.rid(), "", rating_group, units, False,
                                              destination=destination)))
            continue
        used, release = step[5:]
        hold = shard.do(ops.Reserve(T, "sub", shard.rid(), "s", rating_group, units, destination=destination))
        replies.append(hold)
        if hold.result == S:
            replies.append(shard.do(ops.Debit(T, "sub", shard.rid(), hold.reservation_id, rating_group, used,
                                              not release)))
            if release:
                replies.append(shard.do(ops.Release(T, "sub", shard.rid(), hold.reservation_id)))
    shard.state.check_invariants()
    totals: dict[tuple, list[int]] = {}
    for bucket in shard.state.accounts[(T, "sub")].buckets:
        key = (bucket.unit, bucket.weight, bucket.valid_until_ms, bucket.rating_groups, bucket.destination_prefixes)
        entry = totals.setdefault(key, [0, 0, 0])
        entry[0] += bucket.initial
        entry[1] += bucket.remaining
        entry[2] += bucket.reserved
    return replies, shard.balance(), totals


@FAST
@given(bucket_sets().flatmap(lambda grants: st.tuples(st.just(grants), st.permutations(grants))), steps)
def test_consumption_does_not_depend_on_the_creation_order_of_equivalent_buckets(grant_orders, plan_steps):
    grants, shuffled = grant_orders
    replies, balance, totals = _run(grants, plan_steps)
    replies_shuffled, balance_shuffled, totals_shuffled = _run(shuffled, plan_steps)
    event("some bucket drawn" if any(getattr(r, "bucket_units", 0) or getattr(r, "bucket_micros", 0)
                                     for r in replies) else "no bucket drawn")
    event("the order changed" if grants != shuffled else "the same order")
    assert replies == replies_shuffled  # every charge, bucket draw total, grant and release alike
    assert (balance.balance_micros, balance.reserved_micros) == (balance_shuffled.balance_micros,
                                                                  balance_shuffled.reserved_micros)
    assert totals == totals_shuffled  # per kind of bucket: put in, remaining, reserved


# ====================================================================== (d) round trips of the file format


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_valid_plan_round_trips_through_the_catalog_format_yaml_json_and_protobuf(plan):
    document = catalog.dump_plan(plan)
    assert catalog.load_plan(document) == plan
    assert catalog.load_plan(yaml.safe_load(yaml.safe_dump(document))) == plan
    assert catalog.load_plan(yaml.safe_load(yaml.safe_dump(document, allow_unicode=True))) == plan
    assert catalog.load_plan(json.loads(json.dumps(document))) == plan
    assert catalog.load_plan(json.loads(json.dumps(document, ensure_ascii=False))) == plan
    request = convert.put_tariff_request(plan)
    assert convert.plan_from_message(request, T) == plan
    assert convert.plan_from_message(pb.PutTariffRequest.FromString(request.SerializeToString()), T) == plan


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plans(), min_size=1, max_size=3, unique_by=lambda p: p.tariff_plan_id))
def test_a_catalog_document_of_valid_plans_loads_back_equal_through_yaml(many):
    text = yaml.safe_dump(catalog.dump_document(many))
    assert catalog.load_document(yaml.safe_load(text), "generated.yaml") == many
