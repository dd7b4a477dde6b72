"""Bad input in every field of every request of every service.

Each case sends one request with one bad field (everything else valid) over
the raw stubs and expects INVALID_ARGUMENT whose google.rpc.BadRequest names
that field first, with an ErrorInfo naming it too, and that nothing changed:
the balance, the account, the tariff, and GetTransaction does not know the
request id.
"""

import dataclasses
import time
from typing import Callable

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from grid.config import GridConfig

from e2e_support import (
    FUNDS,
    PRICEY,
    RATES,
    SMS,
    UINT64_MAX,
    INT64_MAX,
    VOICE,
    create_account_request,
    debit_request,
    failing,
    new_id,
    open_account,
    put_plan,
    refund_request,
    release_request,
    reserve_request,
    set_state_request,
    top_up_request,
)

pytestmark = pytest.mark.slow

LONG = "x" * 129  # id_length_max is 128
SPACED = " padded"
CONTROL = "bell\x07"
AMOUNT_MAX = 10**15
USAGE_MAX = 10**15
UINT32_MAX = 2**32 - 1
RATES_MAX = 100_000  # CoreLimits.rates_per_plan_max
INSTANT_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last effective, quote or usage instant
DIGITS_33 = "4" * 33  # a destination (prefix) is at most 32 digits


@dataclasses.dataclass(frozen=True)
class Context:
    subscriber_id: str
    plan_id: str
    reservation_id: str
    charge_id: str


@pytest.fixture(scope="module")
def ctx(calls) -> Context:
    """One subscriber with a live hold and a charge; every case must leave it untouched."""
    return new_context(calls)


def new_context(calls) -> Context:
    plan_id = put_plan(calls.stubs)
    subscriber = open_account(calls.stubs, plan_id)
    hold = calls.reserve(subscriber.id, 100)
    charge = calls.debit(subscriber.id, 1, rating_group=SMS)
    assert hold.result == charge.result == pb.SUCCESS
    return Context(subscriber.id, plan_id, hold.reservation_id, charge.charge_id)


def _with(request, **fields):
    for name, value in fields.items():
        if isinstance(value, list):  # a repeated field is replaced, not assigned
            del getattr(request, name)[:]
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


def _rate(**fields) -> pb.RatingGroupRate:
    rate = pb.RatingGroupRate(rating_group=5, unit=pb.EVENTS, price_micros=10, rate_units=1, increment_units=1)
    return _with(rate, **fields)


def _put(plan_id, rates, counters=(), controls=(), **plan) -> pb.PutTariffRequest:
    """A PutTariffRequest; plan: its calendar fields (time_zone, time_bands, holidays ...)."""
    return _with(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=rates, policy_counters=list(counters),
                                     controls=list(controls)), **plan)


def _band(**fields) -> pb.TimeBand:
    band = pb.TimeBand(name="peak", days=[1, 2, 3, 4, 5], from_minute=8 * 60, to_minute=20 * 60)
    return _with(band, **fields)


def _tier(from_units, price_micros=10, rate_units=1, increment_units=1) -> pb.RateTier:
    return pb.RateTier(from_units=from_units, price_micros=price_micros, rate_units=rate_units,
                       increment_units=increment_units)


def _tiered(*tiers, **fields) -> pb.RatingGroupRate:
    """A rate priced by tiers (its own price_micros / rate_units / increment_units 0)."""
    return _rate(price_micros=0, rate_units=0, increment_units=0, tiers=list(tiers), **fields)


def _bucket(**fields) -> pb.BucketGrant:
    bucket = pb.BucketGrant(unit=pb.BUCKET_SECONDS, amount=600, rating_groups=[VOICE], destination_prefixes=["49"])
    return _with(bucket, **fields)


def _control(**fields) -> pb.PlanControl:
    control = pb.PlanControl(control_id="burst", kind=pb.SPEND_VELOCITY, limit=1_000, window_s=60,
                             action=pb.DENY_GRANTS)
    return _with(control, **fields)


def _threshold(at_least, status) -> pb.PolicyCounterThreshold:
    return pb.PolicyCounterThreshold(at_least=at_least, status=status)


def _counter(**fields) -> pb.PolicyCounter:
    counter = pb.PolicyCounter(counter_id="data", rating_groups=[5], period=pb.COUNTER_PERIOD_MONTH,
                               base_status="normal", thresholds=[_threshold(100, "capped")])
    return _with(counter, **fields)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    method: str  # "service.Method"
    request: Callable  # (Context) -> request message
    field: str


def reserve(c, **f):
    return _with(reserve_request(c.subscriber_id, 10, VOICE), **f)


def direct(c, **f):
    return _with(debit_request(c.subscriber_id, 1, rating_group=SMS), **f)


def on_hold(c, **f):
    return _with(debit_request(c.subscriber_id, 1, reservation_id=c.reservation_id), **f)


def release(c, **f):
    return _with(release_request(c.subscriber_id, c.reservation_id), **f)


def refund(c, **f):
    return _with(refund_request(c.subscriber_id, c.charge_id, 1), **f)


def top_up(c, **f):
    return _with(top_up_request(c.subscriber_id, 1), **f)


def bucket_top_up(c, amount_micros=0, **bucket_fields):
    """A top-up adding a bucket (amount_micros 0: the bucket holds the amount)."""
    request = top_up(c, amount_micros=amount_micros)
    request.bucket.CopyFrom(_bucket(**bucket_fields))
    return request


def quote(c, **f):
    return _with(pb.QuoteRequest(subscriber_id=c.subscriber_id, rating_group=VOICE, used_units=60,
                                 destination="4930123", roaming_zone="home"), **f)


def create(c, **f):
    return _with(create_account_request(new_id("sub-"), c.plan_id), **f)


def set_state(c, **f):
    return _with(set_state_request(c.subscriber_id, pb.SUSPENDED), **f)


def _units(*units, **fields):
    """Unit usages (rating group, requested, used); fields: set on every one (destination, roaming_zone)."""
    return [pb.MultipleUnitUsage(rating_group=g, requested_units=r, used_units=u, **fields) for g, r, u in units]


def create_session(c, **f):
    return _with(pb.CreateSessionRequest(session_id=new_id("sess-"), subscriber_id=c.subscriber_id,
                                         multiple_unit_usage=_units((VOICE, 10, 0))), **f)


def update_session(c, **f):
    return _with(pb.UpdateSessionRequest(session_id=new_id("sess-"), subscriber_id=c.subscriber_id,
                                         invocation_sequence_number=1, multiple_unit_usage=_units((VOICE, 10, 1))),
                 **f)


def release_session(c, **f):
    return _with(pb.ReleaseSessionRequest(session_id=new_id("sess-"), subscriber_id=c.subscriber_id,
                                          invocation_sequence_number=2, multiple_unit_usage=_units((VOICE, 0, 1))),
                 **f)


def get_session(c, **f):
    return _with(pb.GetSessionRequest(session_id="s", subscriber_id=c.subscriber_id), **f)


def watch(c, **f):
    return _with(pb.WatchNotificationsRequest(client_id="nf-1"), **f)


def session_cases(prefix, method, build):
    """Bad input common to the three session requests."""
    return [
        *id_cases(prefix, method, build, "session_id"),
        *id_cases(prefix, method, build, "subscriber_id"),
        Case(f"{prefix}-rating-group-zero", method, lambda c: build(c, multiple_unit_usage=_units((0, 0, 1))),
             "multiple_unit_usage[0].rating_group"),
        Case(f"{prefix}-rating-group-twice", method,
             lambda c: build(c, multiple_unit_usage=_units((VOICE, 0, 1), (SMS, 0, 1), (VOICE, 0, 2))),
             "multiple_unit_usage[2].rating_group"),
        Case(f"{prefix}-used-over-max", method,
             lambda c: build(c, multiple_unit_usage=_units((VOICE, 0, USAGE_MAX + 1))),
             "multiple_unit_usage[0].used_units"),
        Case(f"{prefix}-too-many-groups", method,
             lambda c: build(c, multiple_unit_usage=_units(*((g, 0, 1) for g in range(1, 66)))),
             "multiple_unit_usage"),
        Case(f"{prefix}-destination-plus", method,
             lambda c: build(c, multiple_unit_usage=_units((VOICE, 0, 1), destination="+4930123")),
             "multiple_unit_usage[0].destination"),
        Case(f"{prefix}-destination-too-long", method,
             lambda c: build(c, multiple_unit_usage=[*_units((SMS, 0, 1)),
                                                     *_units((VOICE, 0, 1), destination=DIGITS_33)]),
             "multiple_unit_usage[1].destination"),
        Case(f"{prefix}-roaming-zone-padded", method,
             lambda c: build(c, multiple_unit_usage=_units((VOICE, 0, 1), roaming_zone=SPACED)),
             "multiple_unit_usage[0].roaming_zone"),
        Case(f"{prefix}-roaming-zone-too-long", method,
             lambda c: build(c, multiple_unit_usage=_units((VOICE, 0, 1), roaming_zone=LONG)),
             "multiple_unit_usage[0].roaming_zone"),
    ]


def id_cases(prefix, method, build, field):
    """The bad-identifier trio for one text field."""
    return [
        Case(f"{prefix}-{field}-empty", method, lambda c: build(c, **{field: ""}), field),
        Case(f"{prefix}-{field}-too-long", method, lambda c: build(c, **{field: LONG}), field),
        Case(f"{prefix}-{field}-padded", method, lambda c: build(c, **{field: SPACED}), field),
    ]


def destination_cases(prefix, method, build, field="destination"):
    """A called number is at most 32 digits (E.164 without '+'); empty is fine."""
    return [
        Case(f"{prefix}-{field}-plus", method, lambda c: build(c, **{field: "+4930123"}), field),
        Case(f"{prefix}-{field}-spaces", method, lambda c: build(c, **{field: "49 30 123"}), field),
        Case(f"{prefix}-{field}-letters", method, lambda c: build(c, **{field: "49ABC"}), field),
        Case(f"{prefix}-{field}-unicode-digits", method, lambda c: build(c, **{field: "\u0664\u0669"}), field),
        Case(f"{prefix}-{field}-too-long", method, lambda c: build(c, **{field: DIGITS_33}), field),
    ]


def zone_cases(prefix, method, build, field="roaming_zone"):
    """An optional identifier: empty is fine, not too long, padded or unprintable."""
    return [
        Case(f"{prefix}-{field}-too-long", method, lambda c: build(c, **{field: LONG}), field),
        Case(f"{prefix}-{field}-padded", method, lambda c: build(c, **{field: SPACED}), field),
        Case(f"{prefix}-{field}-control-char", method, lambda c: build(c, **{field: CONTROL}), field),
    ]


def bucket_cases(prefix, method, build, where):
    """Bad input in a BucketGrant; build(c, **bucket fields) sends it, where is its path."""
    return [Case(f"{prefix}-{name}", method, (lambda c, fields=fields: build(c, **fields)), f"{where}.{field}")
            for name, fields, field in [
                ("unit-unspecified", {"unit": 0}, "unit"),
                ("unit-unknown-enum-number", {"unit": 99}, "unit"),
                ("amount-zero", {"amount": 0}, "amount"),
                ("amount-negative", {"amount": -1}, "amount"),
                ("money-amount-over-max", {"unit": pb.BUCKET_MONEY, "amount": AMOUNT_MAX + 1}, "amount"),
                ("seconds-amount-over-max", {"amount": USAGE_MAX + 1}, "amount"),
                ("amount-int64-max", {"unit": pb.BUCKET_BYTES, "amount": INT64_MAX}, "amount"),
                ("valid-from-negative", {"valid_from_ms": -1}, "valid_from_ms"),
                ("valid-from-past-9999", {"valid_from_ms": INSTANT_MAX_MS + 1}, "valid_from_ms"),
                ("valid-until-negative", {"valid_until_ms": -1}, "valid_until_ms"),
                ("valid-until-past-9999", {"valid_until_ms": INSTANT_MAX_MS + 1}, "valid_until_ms"),
                ("valid-until-at-valid-from", {"valid_from_ms": 10**12, "valid_until_ms": 10**12}, "valid_until_ms"),
                ("valid-until-before-valid-from", {"valid_from_ms": 10**12, "valid_until_ms": 1}, "valid_until_ms"),
                ("rating-group-zero", {"rating_groups": [VOICE, 0]}, "rating_groups[1]"),
                ("too-many-rating-groups", {"rating_groups": list(range(1, 66))}, "rating_groups"),
                ("destination-prefix-empty", {"destination_prefixes": [""]}, "destination_prefixes[0]"),
                ("destination-prefix-plus", {"destination_prefixes": ["49", "+33"]}, "destination_prefixes[1]"),
                ("destination-prefix-letters", {"destination_prefixes": ["4a"]}, "destination_prefixes[0]"),
                ("destination-prefix-too-long", {"destination_prefixes": [DIGITS_33]}, "destination_prefixes[0]"),
                ("too-many-destination-prefixes", {"destination_prefixes": [str(p) for p in range(100, 165)]},
                 "destination_prefixes"),
            ]]


CASES = [
    # ------------------------------------------------------------ ChargingService.Reserve
    *id_cases("reserve", "charging.Reserve", reserve, "request_id"),
    *id_cases("reserve", "charging.Reserve", reserve, "subscriber_id"),
    *id_cases("reserve", "charging.Reserve", reserve, "session_id"),
    Case("reserve-session-control-char", "charging.Reserve", lambda c: reserve(c, session_id=CONTROL), "session_id"),
    Case("reserve-rating-group-zero", "charging.Reserve", lambda c: reserve(c, rating_group=0), "rating_group"),
    Case("reserve-units-zero", "charging.Reserve", lambda c: reserve(c, requested_units=0), "requested_units"),
    Case("reserve-units-over-max", "charging.Reserve", lambda c: reserve(c, requested_units=USAGE_MAX + 1),
         "requested_units"),
    Case("reserve-units-uint64-max", "charging.Reserve", lambda c: reserve(c, requested_units=UINT64_MAX),
         "requested_units"),
    *destination_cases("reserve", "charging.Reserve", reserve),
    *zone_cases("reserve", "charging.Reserve", reserve),
    # ------------------------------------------------------------ ChargingService.Debit
    *id_cases("direct-debit", "charging.Debit", direct, "request_id"),
    *id_cases("direct-debit", "charging.Debit", direct, "subscriber_id"),
    Case("direct-debit-rating-group-zero", "charging.Debit", lambda c: direct(c, rating_group=0), "rating_group"),
    Case("direct-debit-final", "charging.Debit", lambda c: direct(c, final=True), "final"),
    Case("direct-debit-units-zero", "charging.Debit", lambda c: direct(c, used_units=0), "used_units"),
    Case("direct-debit-units-over-max", "charging.Debit", lambda c: direct(c, used_units=USAGE_MAX + 1),
         "used_units"),
    Case("direct-debit-units-uint64-max", "charging.Debit", lambda c: direct(c, used_units=UINT64_MAX),
         "used_units"),
    Case("direct-debit-costs-more-than-one-charge-may", "charging.Debit",
         lambda c: direct(c, rating_group=PRICEY, used_units=10**7), "used_units"),
    Case("debit-reservation-id-too-long", "charging.Debit", lambda c: on_hold(c, reservation_id=LONG),
         "reservation_id"),
    Case("debit-reservation-id-padded", "charging.Debit", lambda c: on_hold(c, reservation_id=SPACED),
         "reservation_id"),
    Case("debit-units-over-max", "charging.Debit", lambda c: on_hold(c, used_units=USAGE_MAX + 1), "used_units"),
    Case("debit-costs-more-than-one-charge-may", "charging.Debit", lambda c: on_hold(c, used_units=USAGE_MAX),
         "used_units"),
    Case("debit-rating-group-not-the-holds", "charging.Debit", lambda c: on_hold(c, rating_group=SMS),
         "rating_group"),
    *destination_cases("direct-debit", "charging.Debit", direct),
    *zone_cases("direct-debit", "charging.Debit", direct),
    Case("direct-debit-started-negative", "charging.Debit", lambda c: direct(c, usage_started_at_ms=-1),
         "usage_started_at_ms"),
    Case("direct-debit-started-past-9999", "charging.Debit",
         lambda c: direct(c, usage_started_at_ms=INSTANT_MAX_MS + 1), "usage_started_at_ms"),
    Case("direct-debit-started-int64-max", "charging.Debit", lambda c: direct(c, usage_started_at_ms=INT64_MAX),
         "usage_started_at_ms"),
    # A debit on a hold is rated as the hold was granted: it may not name another number, zone or start.
    Case("debit-on-hold-with-destination", "charging.Debit", lambda c: on_hold(c, destination="4930123"),
         "destination"),
    Case("debit-on-hold-with-roaming-zone", "charging.Debit", lambda c: on_hold(c, roaming_zone="eu"),
         "roaming_zone"),
    Case("debit-on-hold-with-usage-start", "charging.Debit", lambda c: on_hold(c, usage_started_at_ms=1),
         "usage_started_at_ms"),
    Case("debit-on-hold-with-service", "charging.Debit", lambda c: on_hold(c, service_identifier=7),
         "service_identifier"),
    Case("debit-on-hold-with-bad-destination", "charging.Debit", lambda c: on_hold(c, destination="+49"),
         "destination"),
    # ------------------------------------------------------------ ChargingService.Release
    *id_cases("release", "charging.Release", release, "request_id"),
    *id_cases("release", "charging.Release", release, "subscriber_id"),
    *id_cases("release", "charging.Release", release, "reservation_id"),
    # ------------------------------------------------------------ ChargingService.Refund
    *id_cases("refund", "charging.Refund", refund, "request_id"),
    *id_cases("refund", "charging.Refund", refund, "subscriber_id"),
    *id_cases("refund", "charging.Refund", refund, "charge_id"),
    Case("refund-amount-zero", "charging.Refund", lambda c: refund(c, amount_micros=0), "amount_micros"),
    Case("refund-amount-negative", "charging.Refund", lambda c: refund(c, amount_micros=-1), "amount_micros"),
    Case("refund-amount-over-max", "charging.Refund", lambda c: refund(c, amount_micros=AMOUNT_MAX + 1),
         "amount_micros"),
    Case("refund-amount-int64-max", "charging.Refund", lambda c: refund(c, amount_micros=INT64_MAX),
         "amount_micros"),
    # ------------------------------------------------------------ ChargingService.TopUp
    *id_cases("top-up", "charging.TopUp", top_up, "request_id"),
    *id_cases("top-up", "charging.TopUp", top_up, "subscriber_id"),
    Case("top-up-amount-zero", "charging.TopUp", lambda c: top_up(c, amount_micros=0), "amount_micros"),
    Case("top-up-amount-negative", "charging.TopUp", lambda c: top_up(c, amount_micros=-5), "amount_micros"),
    Case("top-up-amount-int64-min", "charging.TopUp", lambda c: top_up(c, amount_micros=-(2**63)),
         "amount_micros"),
    Case("top-up-amount-over-max", "charging.TopUp", lambda c: top_up(c, amount_micros=AMOUNT_MAX + 1),
         "amount_micros"),
    Case("top-up-bucket-and-money", "charging.TopUp", lambda c: bucket_top_up(c, amount_micros=1), "amount_micros"),
    Case("top-up-bucket-and-negative-money", "charging.TopUp", lambda c: bucket_top_up(c, amount_micros=-1),
         "amount_micros"),
    *bucket_cases("top-up-bucket", "charging.TopUp", bucket_top_up, "bucket"),
    # ------------------------------------------------------------ ChargingService.Quote
    *id_cases("quote", "charging.Quote", quote, "subscriber_id"),
    Case("quote-rating-group-zero", "charging.Quote", lambda c: quote(c, rating_group=0), "rating_group"),
    Case("quote-used-units-over-max", "charging.Quote", lambda c: quote(c, used_units=USAGE_MAX + 1), "used_units"),
    Case("quote-used-units-uint64-max", "charging.Quote", lambda c: quote(c, used_units=UINT64_MAX), "used_units"),
    *destination_cases("quote", "charging.Quote", quote),
    *zone_cases("quote", "charging.Quote", quote),
    Case("quote-at-negative", "charging.Quote", lambda c: quote(c, at_ms=-1), "at_ms"),
    Case("quote-at-past-9999", "charging.Quote", lambda c: quote(c, at_ms=INSTANT_MAX_MS + 1), "at_ms"),
    Case("quote-at-int64-min", "charging.Quote", lambda c: quote(c, at_ms=-(2**63)), "at_ms"),
    # ------------------------------------------------------------ ChargingService reads
    Case("get-balance-subscriber-empty", "charging.GetBalance", lambda c: pb.GetBalanceRequest(),
         "subscriber_id"),
    Case("get-balance-subscriber-too-long", "charging.GetBalance",
         lambda c: pb.GetBalanceRequest(subscriber_id=LONG), "subscriber_id"),
    Case("get-transaction-subscriber-empty", "charging.GetTransaction",
         lambda c: pb.GetTransactionRequest(request_id="r"), "subscriber_id"),
    Case("get-transaction-request-id-empty", "charging.GetTransaction",
         lambda c: pb.GetTransactionRequest(subscriber_id=c.subscriber_id), "request_id"),
    Case("get-transaction-request-id-too-long", "charging.GetTransaction",
         lambda c: pb.GetTransactionRequest(subscriber_id=c.subscriber_id, request_id=LONG), "request_id"),
    # ------------------------------------------------------------ AccountService.CreateAccount
    *id_cases("create", "account.CreateAccount", create, "request_id"),
    *id_cases("create", "account.CreateAccount", create, "subscriber_id"),
    *id_cases("create", "account.CreateAccount", create, "tariff_plan_id"),
    Case("create-currency-lower-case", "account.CreateAccount", lambda c: create(c, currency="eur"), "currency"),
    Case("create-currency-four-letters", "account.CreateAccount", lambda c: create(c, currency="EURO"),
         "currency"),
    Case("create-currency-empty", "account.CreateAccount", lambda c: create(c, currency=""), "currency"),
    Case("create-currency-digit", "account.CreateAccount", lambda c: create(c, currency="E1R"), "currency"),
    Case("create-currency-trailing-newline", "account.CreateAccount", lambda c: create(c, currency="EUR\n"),
         "currency"),
    Case("create-credit-limit-negative", "account.CreateAccount", lambda c: create(c, credit_limit_micros=-1),
         "credit_limit_micros"),
    Case("create-credit-limit-over-max", "account.CreateAccount",
         lambda c: create(c, credit_limit_micros=AMOUNT_MAX + 1), "credit_limit_micros"),
    Case("create-too-many-buckets", "account.CreateAccount",
         lambda c: create(c, buckets=[_bucket(weight=i) for i in range(65)]), "buckets"),
    *bucket_cases("create-bucket", "account.CreateAccount",
                  lambda c, **fields: create(c, buckets=[_bucket(), _bucket(**fields)]), "buckets[1]"),
    # ------------------------------------------------------------ AccountService.GetAccount
    Case("get-account-subscriber-empty", "account.GetAccount", lambda c: pb.GetAccountRequest(), "subscriber_id"),
    Case("get-account-subscriber-too-long", "account.GetAccount",
         lambda c: pb.GetAccountRequest(subscriber_id=LONG), "subscriber_id"),
    # ------------------------------------------------------------ AccountService.SetAccountState
    *id_cases("set-state", "account.SetAccountState", set_state, "request_id"),
    *id_cases("set-state", "account.SetAccountState", set_state, "subscriber_id"),
    Case("set-state-unspecified", "account.SetAccountState", lambda c: set_state(c, state=0), "state"),
    Case("set-state-unknown-enum-number", "account.SetAccountState", lambda c: set_state(c, state=99), "state"),
    # ------------------------------------------------------------ CatalogService.PutTariff
    Case("put-tariff-id-empty", "catalog.PutTariff", lambda c: _put("", [_rate()]), "tariff_plan_id"),
    Case("put-tariff-id-too-long", "catalog.PutTariff", lambda c: _put(LONG, [_rate()]), "tariff_plan_id"),
    Case("put-tariff-no-rates", "catalog.PutTariff", lambda c: _put(c.plan_id, []), "rates"),
    Case("put-tariff-too-many-rates", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(rating_group=g) for g in range(1, RATES_MAX + 2)]), "rates"),
    Case("put-tariff-rating-group-zero", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(rating_group=0)]), "rates[0].rating_group"),
    Case("put-tariff-rating-group-twice", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(), _rate()]), "rates[1].rating_group"),
    Case("put-tariff-unit-unspecified", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(unit=0)]), "rates[0].unit"),
    Case("put-tariff-unit-unknown-enum-number", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(), _rate(rating_group=6, unit=42)]), "rates[1].unit"),
    Case("put-tariff-price-negative", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(price_micros=-1)]), "rates[0].price_micros"),
    Case("put-tariff-price-over-max", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(price_micros=AMOUNT_MAX + 1)]), "rates[0].price_micros"),
    Case("put-tariff-rate-units-zero", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(rate_units=0)]), "rates[0].rate_units"),
    Case("put-tariff-increment-zero", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(increment_units=0)]), "rates[0].increment_units"),
    Case("put-tariff-increment-over-max", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(increment_units=USAGE_MAX + 1)]), "rates[0].increment_units"),
    Case("put-new-tariff-bad-rate", "catalog.PutTariff",
         lambda c: _put(new_id("plan-"), [_rate(rate_units=0)]), "rates[0].rate_units"),
    Case("put-tariff-final-unit-action-unknown", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(final_unit_action=9)]), "rates[0].final_unit_action"),
    Case("put-tariff-redirect-without-address", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(final_unit_action=pb.REDIRECT)]), "rates[0].redirect_server_address"),
    Case("put-tariff-address-without-redirect", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(final_unit_action=pb.TERMINATE, redirect_server_address="http://x")]),
         "rates[0].redirect_server_address"),
    # ------------------------------------------------------------ a rate's selectors and charges
    *[Case(f"put-tariff-rate-destination-prefix-{name}", "catalog.PutTariff",
           (lambda c, prefix=prefix: _put(c.plan_id, [_rate(), _rate(destination_prefix=prefix)])),
           "rates[1].destination_prefix")
      for name, prefix in [("plus", "+49"), ("spaces", "49 30"), ("letters", "49ABC"),
                           ("unicode-digits", "\u0664\u0669"), ("too-long", DIGITS_33)]],
    Case("put-tariff-rate-selector-twice", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(destination_prefix="49", time_band="peak", roaming_zone="eu"),
                                    _rate(destination_prefix="49", time_band="peak", roaming_zone="eu")],
                        time_bands=[_band()]), "rates[1].rating_group"),
    Case("put-tariff-rate-selector-twice-with-its-service", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(), _rate(service_identifier=7), _rate(service_identifier=7)]),
         "rates[2].rating_group"),
    Case("put-tariff-rate-group-with-two-volume-periods", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(), _rate(destination_prefix="49", volume_period=pb.COUNTER_PERIOD_MONTH)]),
         "rates[1].unit"),
    Case("put-tariff-rate-group-with-two-units", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate(), _rate(destination_prefix="49", unit=pb.SECONDS)]), "rates[1].unit"),
    *[Case(f"put-tariff-rate-{name}", "catalog.PutTariff",
           (lambda c, fields=fields, plan=plan: _put(c.plan_id, [_rate(**fields)], **plan)), f"rates[0].{field}")
      for name, fields, plan, field in [
          ("time-band-unknown", {"time_band": "peak"}, {}, "time_band"),
          ("time-band-not-of-the-plan", {"time_band": "night"}, {"time_bands": [_band()]}, "time_band"),
          ("time-band-padded", {"time_band": " peak"}, {"time_bands": [_band()]}, "time_band"),
          ("roaming-zone-too-long", {"roaming_zone": LONG}, {}, "roaming_zone"),
          ("roaming-zone-padded", {"roaming_zone": SPACED}, {}, "roaming_zone"),
          ("roaming-zone-control-char", {"roaming_zone": CONTROL}, {}, "roaming_zone"),
          ("connect-fee-negative", {"connect_fee_micros": -1}, {}, "connect_fee_micros"),
          ("connect-fee-over-max", {"connect_fee_micros": AMOUNT_MAX + 1}, {}, "connect_fee_micros"),
          ("minimum-charge-negative", {"minimum_charge_micros": -1}, {}, "minimum_charge_micros"),
          ("minimum-charge-over-max", {"minimum_charge_micros": AMOUNT_MAX + 1}, {}, "minimum_charge_micros"),
          ("minimum-charge-above-maximum", {"minimum_charge_micros": 101, "maximum_cost_micros": 100}, {},
           "minimum_charge_micros"),
          ("maximum-cost-negative", {"maximum_cost_micros": -1}, {}, "maximum_cost_micros"),
          ("maximum-cost-over-max", {"maximum_cost_micros": AMOUNT_MAX + 1}, {}, "maximum_cost_micros"),
          ("cap-action-without-maximum", {"cap_action": pb.CAP_DENY_QUOTA}, {}, "cap_action"),
          ("cap-action-unknown-enum-number", {"cap_action": 9, "maximum_cost_micros": 100}, {}, "cap_action"),
          ("cap-action-negative-enum-number", {"cap_action": -1, "maximum_cost_micros": 100}, {}, "cap_action"),
          ("volume-period-unknown-enum-number", {"volume_period": 9}, {}, "volume_period"),
          ("volume-period-negative-enum-number", {"volume_period": -1}, {}, "volume_period"),
      ]],
    # ------------------------------------------------------------ a rate's tiers
    *[Case(f"put-tariff-tiers-{name}", "catalog.PutTariff", (lambda c, rate=rate: _put(c.plan_id, [rate])),
           f"rates[0].{field}")
      for name, rate, field in [
          ("with-price", _rate(tiers=[_tier(0)], price_micros=10, rate_units=0, increment_units=0), "price_micros"),
          ("with-rate-units", _rate(tiers=[_tier(0)], price_micros=0, rate_units=1, increment_units=0),
           "rate_units"),
          ("with-increment", _rate(tiers=[_tier(0)], price_micros=0, rate_units=0, increment_units=1),
           "increment_units"),
          ("too-many", _tiered(*(_tier(i) for i in range(17))), "tiers"),
          ("first-not-from-zero", _tiered(_tier(60), _tier(120)), "tiers[0].from_units"),
          ("not-ascending", _tiered(_tier(0), _tier(60), _tier(60)), "tiers[2].from_units"),
          ("descending", _tiered(_tier(0), _tier(120), _tier(60)), "tiers[2].from_units"),
          ("length-not-whole-increments", _tiered(_tier(0, increment_units=60), _tier(90)), "tiers[1].from_units"),
          ("from-over-max", _tiered(_tier(0), _tier(USAGE_MAX + 1)), "tiers[1].from_units"),
          ("price-negative", _tiered(_tier(0, price_micros=-1)), "tiers[0].price_micros"),
          ("price-over-max", _tiered(_tier(0), _tier(60, price_micros=AMOUNT_MAX + 1)), "tiers[1].price_micros"),
          ("rate-units-zero", _tiered(_tier(0, rate_units=0)), "tiers[0].rate_units"),
          ("increment-zero", _tiered(_tier(0), _tier(60, increment_units=0)), "tiers[1].increment_units"),
          ("increment-over-max", _tiered(_tier(0, increment_units=USAGE_MAX + 1)), "tiers[0].increment_units"),
      ]],
    # ------------------------------------------------------------ the plan's calendar
    *[Case(f"put-tariff-{name}", "catalog.PutTariff", (lambda c, plan=plan: _put(c.plan_id, [_rate()], **plan)),
           field)
      for name, plan, field in [
          ("effective-from-negative", {"effective_from_ms": -1}, "effective_from_ms"),
          ("effective-from-past-9999", {"effective_from_ms": INSTANT_MAX_MS + 1}, "effective_from_ms"),
          ("effective-from-int64-min", {"effective_from_ms": -(2**63)}, "effective_from_ms"),
          ("time-zone-unknown", {"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
          ("time-zone-path", {"time_zone": "../../etc/passwd"}, "time_zone"),
          ("time-zone-absolute-path", {"time_zone": "/etc/localtime"}, "time_zone"),
          ("time-zone-padded", {"time_zone": " Europe/Berlin"}, "time_zone"),
          ("time-zone-nul", {"time_zone": "Europe/Berlin\x00"}, "time_zone"),
          ("time-zone-too-long", {"time_zone": "Europe/" + "x" * 10_000}, "time_zone"),
          ("rounding-unknown-enum-number", {"rounding": 9}, "rounding"),
          ("rounding-negative-enum-number", {"rounding": -1}, "rounding"),
          ("description-too-long", {"description": "d" * 1025}, "description"),
          ("description-control-char", {"description": "line\nbreak"}, "description"),
          ("too-many-holidays", {"holidays": ["2030-01-01"] * 1001}, "holidays"),
          ("holiday-not-a-date", {"holidays": ["2030-12-25", "Christmas"]}, "holidays[1]"),
          ("holiday-month-13", {"holidays": ["2030-13-01"]}, "holidays[0]"),
          ("holiday-february-30", {"holidays": ["2030-02-30"]}, "holidays[0]"),
          ("holiday-short-form", {"holidays": ["2030-1-1"]}, "holidays[0]"),
          ("holiday-with-time", {"holidays": ["2030-01-01T00:00"]}, "holidays[0]"),
          ("holiday-compact", {"holidays": ["20300101"]}, "holidays[0]"),
          ("holiday-empty", {"holidays": [""]}, "holidays[0]"),
          ("too-many-time-bands", {"time_bands": [_band(name=f"b{i}") for i in range(33)]}, "time_bands"),
          ("time-band-name-empty", {"time_bands": [_band(name="")]}, "time_bands[0].name"),
          ("time-band-name-too-long", {"time_bands": [_band(name=LONG)]}, "time_bands[0].name"),
          ("time-band-name-padded", {"time_bands": [_band(name=SPACED)]}, "time_bands[0].name"),
          ("time-band-name-twice", {"time_bands": [_band(), _band(days=[6, 7])]}, "time_bands[1].name"),
          ("time-band-no-days", {"time_bands": [_band(days=[])]}, "time_bands[0].days"),
          ("time-band-day-zero", {"time_bands": [_band(days=[1, 0])]}, "time_bands[0].days[1]"),
          ("time-band-day-nine", {"time_bands": [_band(days=[9])]}, "time_bands[0].days[0]"),
          ("time-band-day-twice", {"time_bands": [_band(days=[1, 2, 1])]}, "time_bands[0].days"),
          ("time-band-from-minute-1440", {"time_bands": [_band(from_minute=1440, to_minute=1440)]},
           "time_bands[0].from_minute"),
          ("time-band-to-minute-1441", {"time_bands": [_band(to_minute=1441)]}, "time_bands[0].to_minute"),
          ("time-band-empty-interval", {"time_bands": [_band(from_minute=600, to_minute=600)]},
           "time_bands[0].to_minute"),
          ("time-band-backwards", {"time_bands": [_band(from_minute=1200, to_minute=480)]},
           "time_bands[0].to_minute"),
          ("time-band-to-minute-zero", {"time_bands": [_band(name="night", from_minute=0, to_minute=0)]},
           "time_bands[0].to_minute"),
      ]],
    *[Case(f"put-tariff-counter-{name}", "catalog.PutTariff",
           (lambda c, fields=fields: _put(c.plan_id, [_rate()], counters=[_counter(**fields)])), field)
      for name, fields, field in [
          ("id-empty", {"counter_id": ""}, "policy_counters[0].counter_id"),
          ("id-too-long", {"counter_id": LONG}, "policy_counters[0].counter_id"),
          ("rating-group-zero", {"rating_groups": [0]}, "policy_counters[0].rating_groups[0]"),
          ("rating-group-twice", {"rating_groups": [5, 5]}, "policy_counters[0].rating_groups"),
          ("usage-without-groups", {"rating_groups": []}, "policy_counters[0].rating_groups"),
          ("period-unset", {"period": 0}, "policy_counters[0].period"),
          ("period-unknown", {"period": 9}, "policy_counters[0].period"),
          ("base-status-empty", {"base_status": ""}, "policy_counters[0].base_status"),
          ("no-thresholds", {"thresholds": []}, "policy_counters[0].thresholds"),
          ("threshold-zero", {"thresholds": [_threshold(0, "slowed")]}, "policy_counters[0].thresholds[0].at_least"),
          ("thresholds-not-ascending", {"thresholds": [_threshold(10, "a"), _threshold(10, "b")]},
           "policy_counters[0].thresholds[1].at_least"),
          ("threshold-status-padded", {"thresholds": [_threshold(10, SPACED)]},
           "policy_counters[0].thresholds[0].status"),
      ]],
    *[Case(f"put-tariff-control-{name}", "catalog.PutTariff",
           (lambda c, fields=fields: _put(c.plan_id, [_rate()], controls=[_control(**fields)])), field)
      for name, fields, field in [
          ("id-empty", {"control_id": ""}, "controls[0].control_id"),
          ("kind-unset", {"kind": 0}, "controls[0].kind"),
          ("kind-unknown", {"kind": 9}, "controls[0].kind"),
          ("limit-zero", {"limit": 0}, "controls[0].limit"),
          ("velocity-without-window", {"window_s": 0}, "controls[0].window_s"),
          ("window-too-long", {"window_s": 31 * 86_400 + 1}, "controls[0].window_s"),
          ("action-unset", {"action": 0}, "controls[0].action"),
          ("action-unknown", {"action": 9}, "controls[0].action"),
          ("rating-group-zero", {"rating_groups": [0]}, "controls[0].rating_groups[0]"),
          ("usage-without-groups", {"kind": pb.USAGE_VELOCITY, "rating_groups": []}, "controls[0].rating_groups"),
          ("groups-on-low-balance", {"kind": pb.LOW_BALANCE, "action": pb.NOTIFY, "rating_groups": [5]},
           "controls[0].rating_groups"),
      ]],
    Case("put-tariff-control-twice", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate()], controls=[_control(), _control()]), "controls[1].control_id"),
    Case("put-tariff-too-many-controls", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate()], controls=[_control(control_id=f"c{i}") for i in range(33)]),
         "controls"),
    Case("put-tariff-too-many-counters", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate()], counters=[_counter(counter_id=f"c{i}") for i in range(33)]),
         "policy_counters"),
    Case("put-tariff-counter-twice", "catalog.PutTariff",
         lambda c: _put(c.plan_id, [_rate()], counters=[_counter(), _counter()]), "policy_counters[1].counter_id"),
    # ------------------------------------------------------------ ChargingService sessions
    *session_cases("create-session", "charging.CreateSession", create_session),
    Case("create-session-requested-over-max", "charging.CreateSession",
         lambda c: create_session(c, multiple_unit_usage=_units((VOICE, USAGE_MAX + 1, 0))),
         "multiple_unit_usage[0].requested_units"),
    Case("create-session-notify-too-long", "charging.CreateSession", lambda c: create_session(c, notify_client_id=LONG),
         "notify_client_id"),
    Case("create-session-notify-padded", "charging.CreateSession",
         lambda c: create_session(c, notify_client_id=SPACED), "notify_client_id"),
    *session_cases("update-session", "charging.UpdateSession", update_session),
    Case("update-session-requested-over-max", "charging.UpdateSession",
         lambda c: update_session(c, multiple_unit_usage=_units((VOICE, USAGE_MAX + 1, 0))),
         "multiple_unit_usage[0].requested_units"),
    Case("update-session-notify-control-char", "charging.UpdateSession",
         lambda c: update_session(c, notify_client_id=CONTROL), "notify_client_id"),
    *session_cases("release-session", "charging.ReleaseSession", release_session),
    Case("release-session-asks-for-units", "charging.ReleaseSession",
         lambda c: release_session(c, multiple_unit_usage=_units((VOICE, 5, 1))),
         "multiple_unit_usage[0].requested_units"),
    *id_cases("get-session", "charging.GetSession", get_session, "session_id"),
    *id_cases("get-session", "charging.GetSession", get_session, "subscriber_id"),
    Case("watch-client-empty", "charging.WatchNotifications", lambda c: watch(c, client_id=""), "client_id"),
    Case("watch-client-too-long", "charging.WatchNotifications", lambda c: watch(c, client_id=LONG), "client_id"),
    Case("watch-cursor-foreign", "charging.WatchNotifications", lambda c: watch(c, cursor="c9.1.2"), "cursor"),
    Case("watch-cursor-wrong-shape", "charging.WatchNotifications", lambda c: watch(c, cursor="c1.x"), "cursor"),
    *[case for field in ("request_id", "pool_id", "member_id") for case in id_cases(
        "pool", "account.DelegateFromPool", lambda c, **f: _with(pb.DelegateFromPoolRequest(
            request_id=new_id("pool-"), pool_id=c.subscriber_id, member_id=new_id("member-"), amount_micros=1), **f),
        field)],
    Case("pool-amount-zero", "account.DelegateFromPool", lambda c: pb.DelegateFromPoolRequest(
        request_id=new_id("pool-"), pool_id=c.subscriber_id, member_id=new_id("member-")), "amount_micros"),
    Case("pool-valid-until-negative", "account.DelegateFromPool", lambda c: pb.DelegateFromPoolRequest(
        request_id=new_id("pool-"), pool_id=c.subscriber_id, member_id=new_id("member-"), amount_micros=1,
        valid_until_ms=-1), "valid_until_ms"),
    Case("pool-member-is-the-pool", "account.DelegateFromPool", lambda c: pb.DelegateFromPoolRequest(
        request_id=new_id("pool-"), pool_id=c.subscriber_id, member_id=c.subscriber_id, amount_micros=1),
        "member_id"),
    *[case for field in ("request_id", "pool_id", "member_id") for case in id_cases(
        "reclaim", "account.ReclaimToPool", lambda c, **f: _with(pb.ReclaimToPoolRequest(
            request_id=new_id("back-"), pool_id=c.subscriber_id, member_id=new_id("member-")), **f), field)],
    *id_cases("bill", "account.GetBillingCycle",
              lambda c, **f: _with(pb.GetBillingCycleRequest(subscriber_id=c.subscriber_id), **f), "subscriber_id"),
    Case("bill-at-negative", "account.GetBillingCycle",
         lambda c: pb.GetBillingCycleRequest(subscriber_id=c.subscriber_id, at_ms=-1), "at_ms"),
    # ------------------------------------------------------------ CatalogService.GetTariff
    Case("get-tariff-id-empty", "catalog.GetTariff", lambda c: pb.GetTariffRequest(), "tariff_plan_id"),
    Case("get-tariff-id-too-long", "catalog.GetTariff", lambda c: pb.GetTariffRequest(tariff_plan_id=LONG),
         "tariff_plan_id"),
]


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isprintable() and value == value.strip()


def _world(calls, ctx: Context, request):
    """What a bad request must not change."""
    account = calls.get_account(ctx.subscriber_id)
    tariff = calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=ctx.plan_id))
    seen = [calls.money(ctx.subscriber_id), account, tariff]
    if isinstance(request, pb.CreateAccountRequest) and _valid_id(request.subscriber_id):
        seen.append(calls.get_account(request.subscriber_id).result)
    if isinstance(request, pb.PutTariffRequest) and _valid_id(request.tariff_plan_id):
        seen.append(calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=request.tariff_plan_id)))
    return seen


# Fields whose every wire value is valid: a uint32 sequence number (an old one is
# FAILED_PRECONDITION, tested with the sessions), and a cursor-less first watch;
# a bucket's uint32 weight; GetTariff's uint32 version (an unknown one is the result
# TARIFF_PLAN_UNKNOWN, not an error); a uint32 service identifier (one no rate names
# is rated as any service of its group; a Debit on a hold naming one is refused, above;
# out-of-range values are held off by the core's own tests, tests/core/test_service_rating.py).
ALWAYS_VALID = {(method, "invocation_sequence_number")
                for method in ("CreateSession", "UpdateSession", "ReleaseSession")} | {("PutTariff", "spend")} | {
    ("TopUp", "weight"), ("CreateAccount", "weight"), ("GetTariff", "version")} | {
    (method, "service_identifier")
    for method in ("Reserve", "CreateSession", "UpdateSession", "ReleaseSession", "Quote", "PutTariff")}


def _field_names(field) -> list:
    """The names a case must cover for a request field: its own, or for a message field
    those of its fields (recursively: rates[0].tiers[1].from_units names from_units),
    plus the repeated field's own name (too many entries). A singular message field
    (TopUp's bucket) cannot be anything but its fields on the wire."""
    if field.message_type is None:
        return [field.name]
    names = [name for inner in field.message_type.fields for name in _field_names(inner)]
    return names + [field.name] if field.is_repeated else names


def test_the_table_covers_every_field_of_every_request():
    """Every field of every request message is named by some case (a message field:
    each of its fields, e.g. a rate's, a tier's, a time band's, a bucket's)."""
    named = {(case.method.split(".")[1], case.field.split(".")[-1]) for case in CASES} | ALWAYS_VALID
    services = {"charging": pb.DESCRIPTOR.services_by_name["ChargingService"],
                "account": pb.DESCRIPTOR.services_by_name["AccountService"],
                "catalog": pb.DESCRIPTOR.services_by_name["CatalogService"]}
    missing = []
    for service in services.values():
        for method in service.methods:
            if method.client_streaming or method.name == "ChargeBatch":
                continue  # Charge, ChargeBatch: their operations are the unary requests (test_e2e_stream, _charge_batch)
            for field in method.input_type.fields:
                missing += [(method.name, name) for name in _field_names(field) if (method.name, name) not in named]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_field_is_invalid_argument_naming_it_and_changes_nothing(calls, ctx, case):
    service, method = case.method.split(".")
    call = getattr(getattr(calls.stubs, service), method)
    if method == "WatchNotifications":  # server streaming: the error comes with the first message
        stream_call = call
        call = lambda request, timeout: next(stream_call(request, timeout=timeout))  # noqa: E731
    request = case.request(ctx)
    before = _world(calls, ctx, request)

    error = failing(call, request, timeout=30)

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.field == case.field, error
    assert error.violations[0][1], "the violation says what is wrong"
    assert error.info is not None and error.info.reason == "INVALID_FIELD"
    assert error.info_field == case.field
    assert error.message.startswith(case.field)
    assert _world(calls, ctx, request) == before
    request_id = getattr(request, "request_id", "")
    if _valid_id(request_id) and "subscriber_id" in type(request).DESCRIPTOR.fields_by_name:
        subscriber_id = request.subscriber_id if _valid_id(request.subscriber_id) else ctx.subscriber_id
        assert not calls.transaction(subscriber_id, request_id).found


def test_the_requests_the_cases_spoil_are_valid_as_built(calls):
    """The builders' own requests (new fields set) succeed, so that each case differs from a
    valid request in its one bad field. On a context of its own: these change things."""
    own = new_context(calls)
    now_ms = time.time_ns() // 1_000_000
    usage = _units((VOICE, 10, 0), destination="4930123", roaming_zone="home")
    replies = {
        "reserve": calls.stubs.charging.Reserve(reserve(own, destination="4930123", roaming_zone="home")),
        "direct debit": calls.stubs.charging.Debit(direct(own, destination="4930123", roaming_zone="home",
                                                          usage_started_at_ms=now_ms - 1_000)),
        "debit on hold": calls.stubs.charging.Debit(on_hold(own)),
        "bucket top-up": calls.stubs.charging.TopUp(bucket_top_up(own)),
        "quote": calls.stubs.charging.Quote(quote(own, at_ms=now_ms)),
        "account with buckets": calls.stubs.account.CreateAccount(create(own, buckets=[_bucket(), _bucket()])),
        "session": calls.stubs.charging.CreateSession(create_session(own, multiple_unit_usage=usage)),
        "plan": calls.stubs.catalog.PutTariff(_put(
            new_id("plan-"),
            [_rate(), _rate(destination_prefix="49", time_band="peak", roaming_zone="eu", connect_fee_micros=5,
                            minimum_charge_micros=1, maximum_cost_micros=100, cap_action=pb.CAP_DENY_QUOTA),
             _tiered(_tier(0, increment_units=60), _tier(60), rating_group=6,
                     volume_period=pb.COUNTER_PERIOD_MONTH)],
            time_bands=[_band(), _band(name="weekend", days=[6, 7, 8], from_minute=0, to_minute=1440)],
            time_zone="Europe/Berlin", holidays=["2030-12-25"], rounding=pb.ROUNDING_HALF_EVEN,
            description="every new field", effective_from_ms=now_ms)),
        "tariff version": calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=own.plan_id,
                                                                            version=1)),
    }
    assert {name: pb.Result.Name(reply.result) for name, reply in replies.items()} == {
        name: "SUCCESS" for name in replies}
    assert replies["bucket top-up"].bucket_id
    # The bucket (600 s of VOICE to numbers starting 49) pays for the quoted minute.
    assert (replies["quote"].tariff_plan_id, replies["quote"].cost_micros) == (own.plan_id, 0)


def test_the_hold_and_charge_survive_every_bad_case(calls, ctx):
    """After the table (module order), the context's hold and charge still work."""
    account = calls.get_account(ctx.subscriber_id)
    assert account.account.state == pb.ACTIVE
    assert [r.reservation_id for r in account.reservations] == [ctx.reservation_id]
    assert calls.refund(ctx.subscriber_id, ctx.charge_id, 1).refundable_micros == 100_000 - 1
    assert calls.release(ctx.subscriber_id, ctx.reservation_id).released_micros == 100_000
    assert calls.money(ctx.subscriber_id).balance == FUNDS - 100_000 + 1


def test_the_rates_of_a_rejected_put_are_not_half_applied(calls, ctx):
    before = calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=ctx.plan_id))
    bad = list(RATES) + [_rate(rating_group=50, rate_units=0)]
    error = failing(calls.stubs.catalog.PutTariff, _put(ctx.plan_id, bad))
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, f"rates[{len(RATES)}].rate_units")
    assert calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=ctx.plan_id)) == before


@pytest.mark.parametrize("call", [
    lambda s, big: s.charging.TopUp(pb.TopUpRequest(request_id="r", subscriber_id=big, amount_micros=1), timeout=30),
    lambda s, big: s.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=big, rates=RATES), timeout=30),
], ids=["top-up", "put-tariff"])
def test_an_oversized_message_is_refused(calls, call):
    big = "s" * (GridConfig().message_bytes_max + 1024)
    error = failing(call, calls.stubs, big)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is fine afterwards.
    assert calls.stubs.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id="x")).result == pb.TARIFF_PLAN_UNKNOWN
