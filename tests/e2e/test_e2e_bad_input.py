"""Bad input in every field of every request of every service.

Each case sends one request with one bad field (everything else valid) over
the raw stubs and expects INVALID_ARGUMENT whose google.rpc.BadRequest names
that field first, with an ErrorInfo naming it too, and that nothing changed:
the balance, the account, the tariff, and GetTransaction does not know the
request id.
"""

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Context:
    subscriber_id: str
    plan_id: str
    reservation_id: str
    charge_id: str


@pytest.fixture(scope="module")
def ctx(calls) -> Context:
    """One subscriber with a live hold and a charge; every case must leave it untouched."""
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


def _put(plan_id, rates, counters=(), controls=()) -> pb.PutTariffRequest:
    return pb.PutTariffRequest(tariff_plan_id=plan_id, rates=rates, policy_counters=list(counters),
                               controls=list(controls))


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


def create(c, **f):
    return _with(create_account_request(new_id("sub-"), c.plan_id), **f)


def set_state(c, **f):
    return _with(set_state_request(c.subscriber_id, pb.SUSPENDED), **f)


def _units(*units):
    return [pb.MultipleUnitUsage(rating_group=g, requested_units=r, used_units=u) for g, r, u in units]


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
    ]


def id_cases(prefix, method, build, field):
    """The bad-identifier trio for one text field."""
    return [
        Case(f"{prefix}-{field}-empty", method, lambda c: build(c, **{field: ""}), field),
        Case(f"{prefix}-{field}-too-long", method, lambda c: build(c, **{field: LONG}), field),
        Case(f"{prefix}-{field}-padded", method, lambda c: build(c, **{field: SPACED}), field),
    ]


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
         lambda c: _put(c.plan_id, [_rate(rating_group=g) for g in range(1, 1026)]), "rates"),
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
# FAILED_PRECONDITION, tested with the sessions), and a cursor-less first watch.
ALWAYS_VALID = {(method, "invocation_sequence_number")
                for method in ("CreateSession", "UpdateSession", "ReleaseSession")} | {("PutTariff", "spend")}


def test_the_table_covers_every_field_of_every_request():
    """Every field of every request message is named by some case (or by a rate's
    or a unit usage's fields)."""
    named = {(case.method.split(".")[1], case.field.split(".")[-1]) for case in CASES} | ALWAYS_VALID
    services = {"charging": pb.DESCRIPTOR.services_by_name["ChargingService"],
                "account": pb.DESCRIPTOR.services_by_name["AccountService"],
                "catalog": pb.DESCRIPTOR.services_by_name["CatalogService"]}
    missing = []
    for service in services.values():
        for method in service.methods:
            if method.client_streaming:
                continue  # Charge: its operations are the unary requests (see test_e2e_stream)
            for field in method.input_type.fields:
                if field.name == "rates":
                    fields = [f.name for f in pb.RatingGroupRate.DESCRIPTOR.fields] + ["rates"]
                elif field.name == "controls":
                    fields = [f.name for f in pb.PlanControl.DESCRIPTOR.fields] + ["controls"]
                elif field.name == "policy_counters":
                    fields = [f.name for f in pb.PolicyCounter.DESCRIPTOR.fields] + ["policy_counters", "at_least"]
                elif field.name == "multiple_unit_usage":
                    fields = [f.name for f in pb.MultipleUnitUsage.DESCRIPTOR.fields] + ["multiple_unit_usage"]
                else:
                    fields = [field.name]
                missing += [(method.name, name) for name in fields if (method.name, name) not in named]
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
