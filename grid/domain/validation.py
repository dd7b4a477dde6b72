"""Static validation of operations: every field checked, the error names it.

Called by the front door before an operation is queued (bad input never
reaches a shard) and again by the shard core (defence in depth). Checks that
need state (is there such an account?) are outcomes, not validation.
"""

import datetime
import re
import zoneinfo

from grid.domain import operations as ops
from grid.domain.limits import UINT32_MAX, UINT64_MAX, CoreLimits
from grid.domain.bucket_rules import BUCKETS_PER_ACCOUNT_MAX
from grid.domain.outcomes import AccountState, BucketUnit, ControlAction, ControlKind, CounterPeriod, ErrorCode, FinalUnitAction, Unit
from grid.domain.rating import CapAction, Control, CounterThreshold, PolicyCounter, Rate, Rounding, TariffPlan, Tier, TimeBand

_CURRENCY = re.compile(r"[A-Z]{3}")
# E.164 allows 15 digits; prefixes and numbers are digits only (no "+", no spaces).
_DIGITS = re.compile(r"[0-9]{0,32}")
DESTINATION_LENGTH_MAX = 32
# Far enough (9999-12-31) for any effective time or quote, still an int64 of ms.
INSTANT_MAX_MS = 253_402_300_799_999
_TIERS_MAX = 16
# Built once: validating a 100,000-rate plan rebuilt these per rate (a benchmark found it).
_ALL_CAPACTION = tuple(CapAction)
_ALL_COUNTERPERIOD = tuple(CounterPeriod)
_ALL_FINALUNITACTION = tuple(FinalUnitAction)
_BANDS_MAX = 32
_HOLIDAYS_MAX = 1000
_DESCRIPTION_MAX = 1024


class InvalidArgument(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _identifier(field: str, value: str, limits: CoreLimits, *, required: bool = True,
                length_max: int | None = None) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return
    length_max = limits.id_length_max if length_max is None else length_max
    if len(value) > length_max:
        raise InvalidArgument(field, f"is longer than {length_max} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidArgument(field, "must be printable with no leading or trailing spaces")


check_identifier = _identifier  # for the shells' own requests (e.g. disputes)


def _integer(field: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}")


def _enum(field: str, value, allowed: tuple) -> None:
    """An enum field is an int (never a bool or a float that compares equal) among the allowed."""
    if type(value) is bool or not isinstance(value, int) or value not in allowed:
        names = ", ".join(member.name for member in allowed)
        raise InvalidArgument(field, f"must be one of {names}")


def _keys(operation, limits: CoreLimits) -> None:
    _identifier("tenant", operation.tenant, limits)
    _identifier("subscriber_id", operation.subscriber_id, limits)


def _validate_create_account(op: ops.CreateAccount, limits: CoreLimits) -> None:
    if not isinstance(op.currency, str) or not _CURRENCY.fullmatch(op.currency):
        raise InvalidArgument("currency", "must be three upper-case ISO 4217 letters, e.g. EUR")
    _integer("credit_limit_micros", op.credit_limit_micros, 0, limits.amount_max_micros)
    _identifier("tariff_plan_id", op.tariff_plan_id, limits)
    if not isinstance(op.buckets, tuple) or len(op.buckets) > BUCKETS_PER_ACCOUNT_MAX:
        raise InvalidArgument("buckets", f"must be a list of at most {BUCKETS_PER_ACCOUNT_MAX} buckets")
    for index, bucket in enumerate(op.buckets):
        _validate_bucket(bucket, f"buckets[{index}]", limits)


_BUCKET_FILTERS_MAX = 64


def _validate_bucket(bucket, where: str, limits: CoreLimits) -> None:
    if not isinstance(bucket, ops.BucketGrant):
        raise InvalidArgument(where, "must be a bucket")
    _enum(f"{where}.unit", bucket.unit, tuple(BucketUnit)[1:])
    high = limits.amount_max_micros if bucket.unit == BucketUnit.MONEY else limits.usage_max_units
    _integer(f"{where}.amount", bucket.amount, 1, high)
    _integer(f"{where}.valid_from_ms", bucket.valid_from_ms, 0, INSTANT_MAX_MS)
    _integer(f"{where}.valid_until_ms", bucket.valid_until_ms, 0, INSTANT_MAX_MS)
    if bucket.valid_until_ms and bucket.valid_until_ms <= bucket.valid_from_ms:
        raise InvalidArgument(f"{where}.valid_until_ms", "must be after valid_from_ms (or 0: no expiry)")
    _integer(f"{where}.weight", bucket.weight, 0, UINT32_MAX)
    for name, values in (("rating_groups", bucket.rating_groups), ("destination_prefixes",
                                                                   bucket.destination_prefixes)):
        if not isinstance(values, tuple) or len(values) > _BUCKET_FILTERS_MAX:
            raise InvalidArgument(f"{where}.{name}", f"must be a list of at most {_BUCKET_FILTERS_MAX}")
    for index, rating_group in enumerate(bucket.rating_groups):
        _integer(f"{where}.rating_groups[{index}]", rating_group, 1, UINT32_MAX)
    for index, prefix in enumerate(bucket.destination_prefixes):
        if not isinstance(prefix, str) or not prefix or not _DIGITS.fullmatch(prefix):
            raise InvalidArgument(f"{where}.destination_prefixes[{index}]",
                                  f"must be 1 to {DESTINATION_LENGTH_MAX} digits")


def _validate_set_state(op: ops.SetAccountState, limits: CoreLimits) -> None:
    _enum("state", op.state, (AccountState.ACTIVE, AccountState.SUSPENDED, AccountState.CLOSED))


def _validate_top_up(op: ops.TopUp, limits: CoreLimits) -> None:
    if op.bucket is not None:
        _validate_bucket(op.bucket, "bucket", limits)
        if op.amount_micros != 0:
            raise InvalidArgument("amount_micros", "must be 0 when a bucket is given (the bucket holds the amount)")
        return
    _integer("amount_micros", op.amount_micros, 1, limits.amount_max_micros)


def _usage_context(op, limits: CoreLimits, where: str = "") -> None:
    """What a usage is rated by besides its group: the number called and the zone."""
    if not isinstance(op.destination, str) or not _DIGITS.fullmatch(op.destination):
        raise InvalidArgument(f"{where}destination",
                              f"must be at most {DESTINATION_LENGTH_MAX} digits (E.164 without '+')")
    _identifier(f"{where}roaming_zone", op.roaming_zone, limits, required=False)
    _integer(f"{where}service_identifier", op.service_identifier, 0, UINT32_MAX)


def _validate_reserve(op: ops.Reserve, limits: CoreLimits) -> None:
    _identifier("session_id", op.session_id, limits)
    _integer("rating_group", op.rating_group, 1, UINT32_MAX)
    _integer("requested_units", op.requested_units, 1, limits.usage_max_units)
    _usage_context(op, limits)


def _validate_quote(op: ops.Quote, limits: CoreLimits) -> None:
    _integer("rating_group", op.rating_group, 1, UINT32_MAX)
    _integer("used_units", op.used_units, 0, limits.usage_max_units)
    _usage_context(op, limits)
    _integer("at_ms", op.at_ms, 0, INSTANT_MAX_MS)


def _validate_debit(op: ops.Debit, limits: CoreLimits) -> None:
    _identifier("reservation_id", op.reservation_id, limits, required=False)
    if op.reservation_id:
        _integer("rating_group", op.rating_group, 0, UINT32_MAX)
        _integer("used_units", op.used_units, 0, limits.usage_max_units)
    else:
        if op.rating_group == 0:
            raise InvalidArgument("rating_group", "is required for a direct debit (no reservation_id)")
        _integer("rating_group", op.rating_group, 1, UINT32_MAX)
        _integer("used_units", op.used_units, 1, limits.usage_max_units)
        if op.final:
            raise InvalidArgument("final", "applies to a reservation; a direct debit has none")
    _usage_context(op, limits)
    _integer("usage_started_at_ms", op.usage_started_at_ms, 0, INSTANT_MAX_MS)
    if op.reservation_id:
        for field in ("destination", "roaming_zone", "usage_started_at_ms", "service_identifier"):
            if getattr(op, field):
                raise InvalidArgument(field, "a debit on a reservation is rated as the reservation was granted")
    if not isinstance(op.final, bool):
        raise InvalidArgument("final", "must be a boolean")


def _validate_release(op: ops.Release, limits: CoreLimits) -> None:
    _identifier("reservation_id", op.reservation_id, limits)


def _validate_refund(op: ops.Refund, limits: CoreLimits) -> None:
    _identifier("charge_id", op.charge_id, limits)
    _integer("amount_micros", op.amount_micros, 1, limits.amount_max_micros)


def _validate_put_tariff(op: ops.PutTariff, limits: CoreLimits) -> None:
    plan = op.plan
    if not isinstance(plan, TariffPlan):
        raise InvalidArgument("plan", "must be a tariff plan")
    _identifier("tariff_plan_id", plan.tariff_plan_id, limits)
    if not isinstance(plan.rates, tuple):
        raise InvalidArgument("rates", "must be a list of rates")
    if not plan.rates:
        raise InvalidArgument("rates", "a plan needs at least one rate")
    if len(plan.rates) > limits.rates_per_plan_max:
        raise InvalidArgument("rates", f"at most {limits.rates_per_plan_max} rates per plan")
    _validate_plan_calendar(plan, limits)
    bands = {band.name for band in plan.time_bands}
    seen = set()
    units: dict[int, tuple] = {}
    for index, rate in enumerate(plan.rates):
        where = f"rates[{index}]"
        if not isinstance(rate, Rate):
            raise InvalidArgument(where, "must be a rate")
        try:
            _validate_rate(rate, where, bands, limits)
            selector = (rate.rating_group, rate.service_identifier, rate.destination_prefix, rate.time_band,
                        rate.roaming_zone)
            if selector in seen:
                raise InvalidArgument(f"{where}.rating_group", "a rate for this rating group, service, destination "
                                      "prefix, time band and roaming zone appears twice in the plan")
            seen.add(selector)
            kind = (rate.unit, rate.volume_period)
            if units.setdefault(rate.rating_group, kind) != kind:
                raise InvalidArgument(f"{where}.unit", "every rate of a rating group has the same unit and volume "
                                      "period")
        except InvalidArgument as error:
            raise InvalidArgument(error.field, f"{error.message} (plan {plan.tariff_plan_id!r}, {_rate_name(rate)})")
    _validate_counters(plan, limits)
    _validate_controls(plan, limits)


def _rate_name(rate: Rate) -> str:
    parts = [f"rating group {rate.rating_group}"]
    if rate.service_identifier:
        parts.append(f"service {rate.service_identifier}")
    if rate.destination_prefix:
        parts.append(f"destination {rate.destination_prefix}")
    if rate.time_band:
        parts.append(f"band {rate.time_band}")
    if rate.roaming_zone:
        parts.append(f"zone {rate.roaming_zone}")
    return "rate of " + ", ".join(parts)


def _validate_rate(rate: Rate, where: str, bands: set[str], limits: CoreLimits) -> None:
    _integer(f"{where}.rating_group", rate.rating_group, 1, UINT32_MAX)
    _enum(f"{where}.unit", rate.unit, (Unit.SECONDS, Unit.BYTES, Unit.EVENTS))
    if not isinstance(rate.destination_prefix, str) or not _DIGITS.fullmatch(rate.destination_prefix):
        raise InvalidArgument(f"{where}.destination_prefix", f"must be at most {DESTINATION_LENGTH_MAX} digits")
    if not isinstance(rate.time_band, str) or (rate.time_band and rate.time_band not in bands):
        raise InvalidArgument(f"{where}.time_band", "must name one of the plan's time_bands (or be empty: any time)")
    _identifier(f"{where}.roaming_zone", rate.roaming_zone, limits, required=False)
    _integer(f"{where}.service_identifier", rate.service_identifier, 0, UINT32_MAX)
    if not isinstance(rate.tiers, tuple):
        raise InvalidArgument(f"{where}.tiers", "must be a list of tiers")
    if rate.tiers:
        for name in ("price_micros", "rate_units", "increment_units"):
            if getattr(rate, name) != 0:
                raise InvalidArgument(f"{where}.{name}", "must be 0 when tiers are given (each tier has its own)")
        if len(rate.tiers) > _TIERS_MAX:
            raise InvalidArgument(f"{where}.tiers", f"at most {_TIERS_MAX} tiers")
        for tier_index, tier in enumerate(rate.tiers):
            _validate_tier(tier, f"{where}.tiers[{tier_index}]", limits)
        if rate.tiers[0].from_units != 0:
            raise InvalidArgument(f"{where}.tiers[0].from_units", "the first tier starts at 0")
        for tier_index, (tier, following) in enumerate(zip(rate.tiers, rate.tiers[1:])):
            here = f"{where}.tiers[{tier_index + 1}].from_units"
            if following.from_units <= tier.from_units:
                raise InvalidArgument(here, "tiers must start in ascending order")
            if (following.from_units - tier.from_units) % tier.increment_units:
                raise InvalidArgument(here, f"must be a whole number of the previous tier's increments "
                                            f"({tier.increment_units}) after its start")
    else:
        _integer(f"{where}.price_micros", rate.price_micros, 0, limits.amount_max_micros)
        _integer(f"{where}.rate_units", rate.rate_units, 1, UINT64_MAX)
        _integer(f"{where}.increment_units", rate.increment_units, 1, limits.usage_max_units)
    _integer(f"{where}.connect_fee_micros", rate.connect_fee_micros, 0, limits.amount_max_micros)
    _integer(f"{where}.minimum_charge_micros", rate.minimum_charge_micros, 0, limits.amount_max_micros)
    _integer(f"{where}.maximum_cost_micros", rate.maximum_cost_micros, 0, limits.amount_max_micros)
    if rate.maximum_cost_micros and rate.minimum_charge_micros > rate.maximum_cost_micros:
        raise InvalidArgument(f"{where}.minimum_charge_micros", "must not exceed maximum_cost_micros")
    _enum(f"{where}.cap_action", rate.cap_action, _ALL_CAPACTION)
    if rate.cap_action and not rate.maximum_cost_micros:
        raise InvalidArgument(f"{where}.cap_action", "applies only with a maximum_cost_micros")
    _enum(f"{where}.volume_period", rate.volume_period, _ALL_COUNTERPERIOD)
    _enum(f"{where}.final_unit_action", rate.final_unit_action, _ALL_FINALUNITACTION)
    if rate.final_unit_action == FinalUnitAction.REDIRECT:
        _identifier(f"{where}.redirect_server_address", rate.redirect_server_address, limits)
    elif rate.redirect_server_address:
        raise InvalidArgument(f"{where}.redirect_server_address", "applies only to final_unit_action REDIRECT")


def _validate_tier(tier, where: str, limits: CoreLimits) -> None:
    if not isinstance(tier, Tier):
        raise InvalidArgument(where, "must be a tier")
    _integer(f"{where}.from_units", tier.from_units, 0, limits.usage_max_units)
    _integer(f"{where}.price_micros", tier.price_micros, 0, limits.amount_max_micros)
    _integer(f"{where}.rate_units", tier.rate_units, 1, UINT64_MAX)
    _integer(f"{where}.increment_units", tier.increment_units, 1, limits.usage_max_units)


def _validate_plan_calendar(plan: TariffPlan, limits: CoreLimits) -> None:
    """The plan's clock: its zone, time bands and holidays, effective time, rounding."""
    _integer("effective_from_ms", plan.effective_from_ms, 0, INSTANT_MAX_MS)
    _enum("rounding", plan.rounding, tuple(Rounding))
    if not isinstance(plan.description, str) or len(plan.description) > _DESCRIPTION_MAX or (
            plan.description and not plan.description.isprintable()):
        raise InvalidArgument("description", f"must be printable, at most {_DESCRIPTION_MAX} characters")
    if not isinstance(plan.time_zone, str):
        raise InvalidArgument("time_zone", "must be a string")
    if plan.time_zone:
        try:
            zoneinfo.ZoneInfo(plan.time_zone)
        except Exception:  # not found, a path-like or overlong name (OSError): all not a zone
            raise InvalidArgument("time_zone", f"{plan.time_zone[:64]!r} is not an IANA time zone "
                                  "(e.g. Europe/Berlin)") from None
    if not isinstance(plan.time_bands, tuple) or len(plan.time_bands) > _BANDS_MAX:
        raise InvalidArgument("time_bands", f"must be a list of at most {_BANDS_MAX} time bands")
    names = set()
    for index, band in enumerate(plan.time_bands):
        where = f"time_bands[{index}]"
        if not isinstance(band, TimeBand):
            raise InvalidArgument(where, "must be a time band")
        _identifier(f"{where}.name", band.name, limits)
        if band.name in names:
            raise InvalidArgument(f"{where}.name", "appears twice in the plan")
        names.add(band.name)
        if not isinstance(band.days, tuple) or not band.days:
            raise InvalidArgument(f"{where}.days", "must list days: 1 (Monday) to 7 (Sunday), 8 for holidays")
        for day_index, day in enumerate(band.days):
            _integer(f"{where}.days[{day_index}]", day, 1, 8)
        if len(set(band.days)) != len(band.days):
            raise InvalidArgument(f"{where}.days", "must list each day once")
        _integer(f"{where}.from_minute", band.from_minute, 0, 1439)
        _integer(f"{where}.to_minute", band.to_minute, band.from_minute + 1, 1440)
    if not isinstance(plan.holidays, tuple) or len(plan.holidays) > _HOLIDAYS_MAX:
        raise InvalidArgument("holidays", f"must be a list of at most {_HOLIDAYS_MAX} dates")
    for index, day in enumerate(plan.holidays):
        try:
            if not isinstance(day, str) or len(day) != 10:
                raise ValueError(day)
            datetime.date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument(f"holidays[{index}]", "must be a date YYYY-MM-DD") from None


# The longest velocity window (and grant denial) a control may have: 31 days.
_CONTROL_WINDOW_MAX_S = 31 * 86_400


def _validate_controls(plan: TariffPlan, limits: CoreLimits) -> None:
    controls = plan.controls
    if not isinstance(controls, tuple):
        raise InvalidArgument("controls", "must be a list of controls")
    if len(controls) > limits.counters_per_plan_max:
        raise InvalidArgument("controls", f"at most {limits.counters_per_plan_max} controls per plan")
    seen = set()
    for index, control in enumerate(controls):
        where = f"controls[{index}]"
        if not isinstance(control, Control):
            raise InvalidArgument(where, "must be a control")
        _identifier(f"{where}.control_id", control.control_id, limits)
        if control.control_id in seen:
            raise InvalidArgument(f"{where}.control_id", "appears twice in the plan")
        seen.add(control.control_id)
        _enum(f"{where}.kind", control.kind, tuple(ControlKind)[1:])
        _integer(f"{where}.limit", control.limit, 1, limits.amount_max_micros)
        velocity = control.kind in (ControlKind.SPEND_VELOCITY, ControlKind.USAGE_VELOCITY)
        _enum(f"{where}.action", control.action, tuple(ControlAction)[1:])
        needs_window = velocity or control.action == ControlAction.DENY_GRANTS
        _integer(f"{where}.window_s", control.window_s, 1 if needs_window else 0, _CONTROL_WINDOW_MAX_S)
        if not isinstance(control.rating_groups, tuple):
            raise InvalidArgument(f"{where}.rating_groups", "must be a list of rating groups")
        for group_index, rating_group in enumerate(control.rating_groups):  # each checked before hashing
            _integer(f"{where}.rating_groups[{group_index}]", rating_group, 1, UINT32_MAX)
        if len(set(control.rating_groups)) != len(control.rating_groups):
            raise InvalidArgument(f"{where}.rating_groups", "must list each rating group once")
        if control.kind == ControlKind.USAGE_VELOCITY and not control.rating_groups:
            raise InvalidArgument(f"{where}.rating_groups", "a usage velocity control counts some rating groups")
        if control.rating_groups and not velocity:
            raise InvalidArgument(f"{where}.rating_groups", "applies only to velocity controls")


def _validate_session(op, limits: CoreLimits) -> None:
    _identifier("session_id", op.session_id, limits)
    _integer("invocation_sequence_number", op.invocation_sequence_number, 0, UINT32_MAX)
    _identifier("notify_client_id", op.notify_client_id, limits, required=False)
    if isinstance(op, ops.ReleaseSession) and op.notify_client_id:
        raise InvalidArgument("notify_client_id", "is set by CreateSession or UpdateSession, not by a release")
    usages = op.multiple_unit_usage
    if not isinstance(usages, tuple):
        raise InvalidArgument("multiple_unit_usage", "must be a list")
    if len(usages) > limits.units_per_session_request_max:
        raise InvalidArgument("multiple_unit_usage", f"at most {limits.units_per_session_request_max} rating groups")
    seen = set()
    for index, usage in enumerate(usages):
        where = f"multiple_unit_usage[{index}]"
        if not isinstance(usage, ops.UnitUsage):
            raise InvalidArgument(where, "must be a unit usage")
        _integer(f"{where}.rating_group", usage.rating_group, 1, UINT32_MAX)
        if usage.rating_group in seen:
            raise InvalidArgument(f"{where}.rating_group", "appears twice in the request")
        seen.add(usage.rating_group)
        _integer(f"{where}.requested_units", usage.requested_units, 0, limits.usage_max_units)
        _integer(f"{where}.used_units", usage.used_units, 0, limits.usage_max_units)
        _usage_context(usage, limits, f"{where}.")
        if isinstance(op, ops.ReleaseSession) and usage.requested_units:
            raise InvalidArgument(f"{where}.requested_units", "a release asks for no more units")


def _validate_get_session(op: ops.GetSession, limits: CoreLimits) -> None:
    _identifier("session_id", op.session_id, limits)


def _validate_read_notifications(op: ops.ReadNotifications, limits: CoreLimits) -> None:
    _identifier("client_id", op.client_id, limits)
    _integer("after_sequence", op.after_sequence, 0, UINT64_MAX)
    _integer("limit", op.limit, 1, limits.notifications_per_read_max)
    if op.channel not in ("sessions", "policy"):
        raise InvalidArgument("channel", "must be sessions or policy")


# A session request's id is session/<session_id>/<sequence number>: longer than a client's.
_SESSION_REQUEST_ID_OVERHEAD = len(ops.session_request_id("", UINT32_MAX))


def _validate_counters(plan: TariffPlan, limits: CoreLimits) -> None:
    counters = plan.policy_counters
    if not isinstance(counters, tuple):
        raise InvalidArgument("policy_counters", "must be a list of policy counters")
    if len(counters) > limits.counters_per_plan_max:
        raise InvalidArgument("policy_counters", f"at most {limits.counters_per_plan_max} counters per plan")
    seen = set()
    for index, counter in enumerate(counters):
        where = f"policy_counters[{index}]"
        if not isinstance(counter, PolicyCounter):
            raise InvalidArgument(where, "must be a policy counter")
        _identifier(f"{where}.counter_id", counter.counter_id, limits)
        if counter.counter_id in seen:
            raise InvalidArgument(f"{where}.counter_id", "appears twice in the plan")
        seen.add(counter.counter_id)
        if not isinstance(counter.rating_groups, tuple):
            raise InvalidArgument(f"{where}.rating_groups", "must be a list of rating groups")
        for group_index, rating_group in enumerate(counter.rating_groups):  # each checked before hashing
            _integer(f"{where}.rating_groups[{group_index}]", rating_group, 1, UINT32_MAX)
        if len(set(counter.rating_groups)) != len(counter.rating_groups):
            raise InvalidArgument(f"{where}.rating_groups", "must list each rating group once")
        if not isinstance(counter.spend, bool):
            raise InvalidArgument(f"{where}.spend", "must be a boolean")
        if not counter.spend and not counter.rating_groups:
            raise InvalidArgument(f"{where}.rating_groups", "a usage counter counts some rating groups "
                                  "(or set spend to count money)")
        _enum(f"{where}.period", counter.period, (CounterPeriod.COUNTER_PERIOD_DAY, CounterPeriod.COUNTER_PERIOD_WEEK,
                                                  CounterPeriod.COUNTER_PERIOD_MONTH))
        _identifier(f"{where}.base_status", counter.base_status, limits)
        if not isinstance(counter.thresholds, tuple) or not counter.thresholds:
            raise InvalidArgument(f"{where}.thresholds", "a counter needs at least one threshold")
        if len(counter.thresholds) > limits.thresholds_per_counter_max:
            raise InvalidArgument(f"{where}.thresholds", f"at most {limits.thresholds_per_counter_max} thresholds")
        previous = 0
        for threshold_index, threshold in enumerate(counter.thresholds):
            at = f"{where}.thresholds[{threshold_index}]"
            if not isinstance(threshold, CounterThreshold):
                raise InvalidArgument(at, "must be a threshold")
            _integer(f"{at}.at_least", threshold.at_least, previous + 1, limits.amount_max_micros)
            previous = threshold.at_least
            _identifier(f"{at}.status", threshold.status, limits)


def _validate_subscribe(op: ops.Subscribe, limits: CoreLimits) -> None:
    _identifier("client_id", op.client_id, limits)
    if not isinstance(op.counter_ids, tuple) or len(op.counter_ids) > limits.counters_per_plan_max:
        raise InvalidArgument("counter_ids", f"at most {limits.counters_per_plan_max} counter ids")
    for index, counter_id in enumerate(op.counter_ids):
        _identifier(f"counter_ids[{index}]", counter_id, limits)
    if len(set(op.counter_ids)) != len(op.counter_ids):
        raise InvalidArgument("counter_ids", "lists a counter twice")


def _validate_unsubscribe(op: ops.Unsubscribe, limits: CoreLimits) -> None:
    _identifier("client_id", op.client_id, limits)


# The last instant whose calendar month (and the month after it) Python's
# datetime can name: 9999-11-30T23:59:59.999Z. A billing period ends the next month.
CALENDAR_MS_MAX = 253_399_622_399_999


def _validate_billing_cycle(op: ops.GetBillingCycle, limits: CoreLimits) -> None:
    _integer("at_ms", op.at_ms, 0, CALENDAR_MS_MAX)


def _validate_transaction(op: ops.GetTransaction, limits: CoreLimits) -> None:
    session = isinstance(op.request_id, str) and op.request_id.startswith("session/")
    _identifier("request_id", op.request_id, limits,
                length_max=limits.id_length_max + (_SESSION_REQUEST_ID_OVERHEAD if session else 0))


def _validate_get_tariff(op: ops.GetTariff, limits: CoreLimits) -> None:
    _identifier("tariff_plan_id", op.tariff_plan_id, limits)
    _integer("version", op.version, 0, UINT32_MAX)


def _nothing(op, limits: CoreLimits) -> None:
    return None


_VALIDATORS = {
    ops.CreateAccount: _validate_create_account,
    ops.SetAccountState: _validate_set_state,
    ops.TopUp: _validate_top_up,
    ops.Reserve: _validate_reserve,
    ops.Debit: _validate_debit,
    ops.Release: _validate_release,
    ops.Refund: _validate_refund,
    ops.PutTariff: _validate_put_tariff,
    ops.GetBalance: _nothing,
    ops.GetAccount: _nothing,
    ops.GetTransaction: _validate_transaction,
    ops.GetTariff: _validate_get_tariff,
    ops.CreateSession: _validate_session,
    ops.UpdateSession: _validate_session,
    ops.ReleaseSession: _validate_session,
    ops.GetSession: _validate_get_session,
    ops.ReadNotifications: _validate_read_notifications,
    ops.Subscribe: _validate_subscribe,
    ops.Unsubscribe: _validate_unsubscribe,
    ops.GetCounters: _nothing,
    ops.GetBillingCycle: _validate_billing_cycle,
    ops.Quote: _validate_quote,
    ops.ExportSlots: lambda op, limits: _validate_slots(op),
    ops.ImportSlots: lambda op, limits: _validate_slots(op),
    ops.DropSlots: lambda op, limits: _validate_slots(op),
    ops.PoolTake: lambda op, limits: _validate_pool(op, limits),
    ops.PoolGive: lambda op, limits: _validate_pool(op, limits),
    ops.PoolReclaim: lambda op, limits: _validate_pool(op, limits),
}


def _validate_pool(op, limits: CoreLimits) -> None:
    _identifier("counterparty", op.counterparty, limits)
    if op.counterparty == op.subscriber_id:
        raise InvalidArgument("counterparty", "a pool and its member are two accounts")
    if not isinstance(op, ops.PoolReclaim):
        _integer("amount_micros", op.amount_micros, 1, limits.amount_max_micros)
    if isinstance(op, ops.PoolGive):
        if not isinstance(op.as_bucket, bool):
            raise InvalidArgument("as_bucket", "must be a boolean")
        _integer("valid_until_ms", op.valid_until_ms, 0, INSTANT_MAX_MS)
_SLOT_OPERATIONS = (ops.ExportSlots, ops.ImportSlots, ops.DropSlots)


def _validate_slots(op) -> None:
    """Slot moves come from the grid's own mover, never from a caller: checked all the same."""
    if not isinstance(op.slots, tuple) or not op.slots:
        raise InvalidArgument("slots", "must list slots")
    for index, slot in enumerate(op.slots):
        _integer(f"slots[{index}]", slot, 0, UINT32_MAX)
    if isinstance(op, ops.ExportSlots):
        _integer("slot_count", op.slot_count, 1, UINT32_MAX)
        if max(op.slots) >= op.slot_count:
            raise InvalidArgument("slots", f"slots are below slot_count {op.slot_count}")


def validate(operation, limits: CoreLimits) -> None:
    """Raise InvalidArgument naming the first bad field of the operation."""
    validator = _VALIDATORS.get(type(operation))
    if validator is None:
        raise InvalidArgument("operation", f"unknown operation {type(operation).__name__}")
    if isinstance(operation, ops.ReadNotifications):
        _identifier("tenant", operation.tenant, limits)
    elif not isinstance(operation, (ops.PutTariff, ops.GetTariff, *_SLOT_OPERATIONS)):
        _keys(operation, limits)
    if isinstance(operation, ops.MUTATING_OPERATIONS) and not isinstance(operation, ops.SESSION_OPERATIONS):
        _identifier("request_id", operation.request_id, limits)  # a session's is (session_id, sequence number)
    validator(operation, limits)


def rejection_for(operation, limits: CoreLimits) -> ops.Rejection | None:
    try:
        validate(operation, limits)
    except InvalidArgument as error:
        return ops.Rejection(ErrorCode.INVALID_ARGUMENT, error.field, error.message)
    return None
