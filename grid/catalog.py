"""The catalog file format: tariff plans in YAML or JSON, loaded, validated, written.

`grid catalog apply FILE` loads every plan, validates them all (an error names
the file, the plan, the rate and the field) and only then puts them. Money is
a decimal string in currency units ("0.12") or an integer of micros
(`price_micros: 120000`), never a float: YAML reads 0.12 as a float, which is
refused with the way to write it. `dump_plan` writes the canonical form (money
in micros, days by name, times as HH:MM) that `load_plan` reads back equal.

    plans:
      - id: voice-de
        time_zone: Europe/Berlin
        time_bands:
          - {name: peak, days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}
        rates:
          - rating_group: 100
            unit: seconds
            destination_prefix: "49"
            time_band: peak
            connect_fee: "0.05"
            tiers:
              - {from: 0, price: "0.12", per: 60, increment: 60}
              - {from: 60, price: "0.12", per: 60, increment: 1}
"""

import dataclasses
import datetime
import decimal
import json
import pathlib

import yaml

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import ControlAction, ControlKind, CounterPeriod, FinalUnitAction, Unit
from grid.domain.rating import (
    DEFAULT_TENANT, CapAction, Control, CounterThreshold, PolicyCounter, Rate, Rounding, TariffPlan, Tier, TimeBand,
)
from grid.domain.validation import InvalidArgument, validate

MICROS_PER_UNIT = 1_000_000
# A catalog file larger than this is refused before parsing (100,000 rates fit).
FILE_BYTES_MAX = 64 << 20

_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7, "holiday": 8}
_DAY_NAMES = {number: name for name, number in _DAYS.items()}
_UNITS = {"seconds": Unit.SECONDS, "bytes": Unit.BYTES, "events": Unit.EVENTS}
_ROUNDING = {"up": Rounding.ROUNDING_UP, "half_even": Rounding.ROUNDING_HALF_EVEN, "down": Rounding.ROUNDING_DOWN}
_CAP = {"stop_charging": CapAction.CAP_STOP_CHARGING, "deny_quota": CapAction.CAP_DENY_QUOTA}
_PERIODS = {"day": CounterPeriod.COUNTER_PERIOD_DAY, "week": CounterPeriod.COUNTER_PERIOD_WEEK,
            "month": CounterPeriod.COUNTER_PERIOD_MONTH}
_FINAL = {"terminate": FinalUnitAction.TERMINATE, "redirect": FinalUnitAction.REDIRECT,
          "restrict_access": FinalUnitAction.RESTRICT_ACCESS}
_KINDS = {kind.name.lower(): kind for kind in ControlKind if kind}
_ACTIONS = {action.name.lower(): action for action in ControlAction if action}


class CatalogError(Exception):
    """A catalog file that cannot be applied; the message names where."""


class _Bad(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


# ---------------------------------------------------------------- reading values


class _Fields:
    """One mapping of the document: typed reads that name the field, and a check
    that nothing unknown was left (a typo is an error, not a silent default)."""

    def __init__(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(where, "must be a mapping")
        self.value = value
        self.where = where
        self.read: set[str] = set()

    def at(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, default=None):
        self.read.add(name)
        return self.value.get(name, default)

    def text(self, name: str, default: str = "") -> str:
        value = self.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _Bad(self.at(name), "must be text")
        return str(value)

    def integer(self, name: str, default: int = 0) -> int:
        value = self.get(name, default)
        if isinstance(value, float):
            raise _Bad(self.at(name), "must be a whole number, not a float")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(self.at(name), "must be a whole number")
        return value

    def choice(self, name: str, table: dict, default):
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value.lower() not in table:
            raise _Bad(self.at(name), f"must be one of {', '.join(table)}")
        return table[value.lower()]

    def money(self, name: str) -> int:
        """`name` as a decimal string of currency units, or `name_micros` as an integer."""
        micros_name = f"{name}_micros"
        if name in self.value and micros_name in self.value:
            raise _Bad(self.at(name), f"give {name} or {micros_name}, not both")
        if micros_name in self.value:
            return self.integer(micros_name)
        value = self.get(name)
        if value is None:
            return 0
        if isinstance(value, float):
            raise _Bad(self.at(name), f"money is never a float: write it as a string ({name}: \"{value}\") or "
                                      f"in micros ({micros_name}: {int(decimal.Decimal(repr(value)) * MICROS_PER_UNIT)})")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _Bad(self.at(name), "must be a decimal string such as \"0.12\"")
        try:
            amount = decimal.Decimal(str(value).strip())
        except decimal.InvalidOperation:
            raise _Bad(self.at(name), f"{str(value)[:32]!r} is not a decimal amount") from None
        micros = amount * MICROS_PER_UNIT
        if not amount.is_finite() or micros != micros.to_integral_value():
            raise _Bad(self.at(name), "has more than 6 decimals (the grid counts micros)")
        return int(micros)

    def items(self, name: str) -> list:
        value = self.get(name, [])
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Bad(self.at(name), "must be a list")
        return value

    def done(self) -> None:
        unknown = sorted(str(key) for key in self.value if key not in self.read)
        if unknown:
            raise _Bad(self.at(unknown[0]), "is not a field here (a typo?)")


def _minute(value, where: str) -> int:
    """"HH:MM" (24:00 ends the day), or minutes of the day (YAML reads 8:00 as 480)."""
    if isinstance(value, bool):
        raise _Bad(where, "must be a time HH:MM")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and (value[:2] + value[3:]).isdigit():
        return int(value[:2]) * 60 + int(value[3:])
    raise _Bad(where, "must be a time HH:MM")


def _instant_ms(value, where: str) -> int:
    if isinstance(value, bool):
        raise _Bad(where, "must be an instant")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad(where, "must be an ISO 8601 instant such as 2027-01-01T00:00:00Z") from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1000)
    raise _Bad(where, "must be an ISO 8601 instant or milliseconds since the epoch")


# ---------------------------------------------------------------- document -> plans


def _tier(value, where: str) -> Tier:
    fields = _Fields(value, where)
    tier = Tier(from_units=fields.integer("from"), price_micros=fields.money("price"),
                rate_units=fields.integer("per", 1), increment_units=fields.integer("increment", 1))
    fields.done()
    return tier


def _rate(value, where: str) -> Rate:
    fields = _Fields(value, where)
    tiers = tuple(_tier(tier, f"{where}.tiers[{index}]") for index, tier in enumerate(fields.items("tiers")))
    single = {"price", "price_micros", "per", "increment"} & set(fields.value)
    if tiers and single:
        raise _Bad(fields.at(sorted(single)[0]), "give either tiers or one price (price, per, increment)")
    rate = Rate(
        rating_group=fields.integer("rating_group"),
        service_identifier=fields.integer("service_identifier", 0),
        unit=fields.choice("unit", _UNITS, Unit.UNIT_UNSPECIFIED),
        price_micros=0 if tiers else fields.money("price"),
        rate_units=0 if tiers else fields.integer("per", 1),
        increment_units=0 if tiers else fields.integer("increment", 1),
        final_unit_action=fields.choice("final_unit_action", _FINAL, FinalUnitAction.FINAL_UNIT_ACTION_UNSPECIFIED),
        redirect_server_address=fields.text("redirect_server_address"),
        destination_prefix=fields.text("destination_prefix"),
        time_band=fields.text("time_band"),
        roaming_zone=fields.text("roaming_zone"),
        connect_fee_micros=fields.money("connect_fee"),
        tiers=tiers,
        minimum_charge_micros=fields.money("minimum_charge"),
        maximum_cost_micros=fields.money("maximum_cost"),
        cap_action=fields.choice("cap_action", _CAP, CapAction.CAP_ACTION_UNSPECIFIED),
        volume_period=fields.choice("volume_period", _PERIODS, CounterPeriod.COUNTER_PERIOD_UNSPECIFIED),
    )
    fields.done()
    return rate


def _band(value, where: str) -> TimeBand:
    fields = _Fields(value, where)
    days = []
    for index, day in enumerate(fields.items("days")):
        if isinstance(day, str) and day.lower()[:3] in _DAYS or day == "holiday":
            days.append(_DAYS["holiday" if day == "holiday" else day.lower()[:3]])
        elif isinstance(day, int) and not isinstance(day, bool):
            days.append(day)
        else:
            raise _Bad(f"{where}.days[{index}]", "must be mon..sun, holiday, or 1..8")
    band = TimeBand(name=fields.text("name"), days=tuple(days),
                    from_minute=_minute(fields.get("from", "00:00"), fields.at("from")),
                    to_minute=_minute(fields.get("to", "24:00"), fields.at("to")))
    fields.done()
    return band


def _counter(value, where: str) -> PolicyCounter:
    fields = _Fields(value, where)
    thresholds = []
    for index, threshold in enumerate(fields.items("thresholds")):
        each = _Fields(threshold, f"{where}.thresholds[{index}]")
        thresholds.append(CounterThreshold(each.integer("at_least"), each.text("status")))
        each.done()
    counter = PolicyCounter(
        counter_id=fields.text("id"), rating_groups=tuple(fields.items("rating_groups")),
        spend=bool(fields.get("spend", False)),
        period=fields.choice("period", _PERIODS, CounterPeriod.COUNTER_PERIOD_UNSPECIFIED),
        base_status=fields.text("base_status"), thresholds=tuple(thresholds),
    )
    fields.done()
    return counter


def _control(value, where: str) -> Control:
    fields = _Fields(value, where)
    control = Control(
        control_id=fields.text("id"), kind=fields.choice("kind", _KINDS, ControlKind.CONTROL_KIND_UNSPECIFIED),
        limit=fields.integer("limit"), window_s=fields.integer("window_s"),
        action=fields.choice("action", _ACTIONS, ControlAction.CONTROL_ACTION_UNSPECIFIED),
        rating_groups=tuple(fields.items("rating_groups")),
    )
    fields.done()
    return control


def load_plan(value, where: str = "plan", tenant: str = DEFAULT_TENANT) -> TariffPlan:
    fields = _Fields(value, where)
    plan_id = fields.text("id")
    where = f"{where} ({plan_id})" if plan_id else where
    fields.where = where
    holidays = []
    for index, day in enumerate(fields.items("holidays")):
        if isinstance(day, datetime.date) and not isinstance(day, datetime.datetime):
            day = day.isoformat()
        if not isinstance(day, str):
            raise _Bad(f"{where}.holidays[{index}]", "must be a date YYYY-MM-DD")
        holidays.append(day)
    effective = fields.get("effective_from")
    plan = TariffPlan(
        tariff_plan_id=plan_id,
        rates=tuple(_rate(rate, f"{where}.rates[{index}]") for index, rate in enumerate(fields.items("rates"))),
        policy_counters=tuple(_counter(c, f"{where}.policy_counters[{index}]")
                              for index, c in enumerate(fields.items("policy_counters"))),
        controls=tuple(_control(c, f"{where}.controls[{index}]") for index, c in enumerate(fields.items("controls"))),
        tenant=tenant,
        effective_from_ms=(fields.integer("effective_from_ms") if effective is None
                           else _instant_ms(effective, fields.at("effective_from"))),
        time_zone=fields.text("time_zone"),
        time_bands=tuple(_band(b, f"{where}.time_bands[{index}]") for index, b in enumerate(fields.items("time_bands"))),
        holidays=tuple(holidays),
        rounding=fields.choice("rounding", _ROUNDING, Rounding.ROUNDING_UNSPECIFIED),
        description=fields.text("description"),
    )
    fields.done()
    return plan


def load_document(document, source: str = "catalog", limits: CoreLimits = CoreLimits()) -> list[TariffPlan]:
    """Every plan of a parsed document, each validated as PutTariff would."""
    try:
        top = _Fields(document, "")
        values = top.items("plans")
        top.done()
        if not values:
            raise _Bad("plans", "the catalog lists no plans")
        plans = [load_plan(value, f"plans[{index}]") for index, value in enumerate(values)]
    except _Bad as error:
        raise CatalogError(f"{source}: {error}") from None
    seen = set()
    for index, plan in enumerate(plans):
        if plan.tariff_plan_id in seen:
            raise CatalogError(f"{source}: plans[{index}] ({plan.tariff_plan_id}): the plan id appears twice")
        seen.add(plan.tariff_plan_id)
        try:
            validate(ops.PutTariff(plan), limits)
        except InvalidArgument as error:
            raise CatalogError(f"{source}: plans[{index}] ({plan.tariff_plan_id}): {error.field}: {error.message}") \
                from None
    return plans


def load_file(path: pathlib.Path, limits: CoreLimits = CoreLimits()) -> list[TariffPlan]:
    """A .json file is JSON; anything else YAML (of which JSON is a subset)."""
    try:
        if path.stat().st_size > FILE_BYTES_MAX:
            raise CatalogError(f"{path}: larger than {FILE_BYTES_MAX} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(f"{path}: {error}") from None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise CatalogError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {error}") \
            from None
    return load_document(document, str(path), limits)


# ---------------------------------------------------------------- plans -> document


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _name(table: dict, value) -> str:
    for name, member in table.items():
        if member == value:
            return name
    raise ValueError(value)


def dump_plan(plan: TariffPlan) -> dict:
    """The canonical document of a plan (money in micros): load_plan reads it back equal."""
    document: dict = {"id": plan.tariff_plan_id}
    if plan.description:
        document["description"] = plan.description
    if plan.effective_from_ms:
        document["effective_from_ms"] = plan.effective_from_ms
    if plan.time_zone:
        document["time_zone"] = plan.time_zone
    if plan.rounding:
        document["rounding"] = _name(_ROUNDING, plan.rounding)
    if plan.holidays:
        document["holidays"] = list(plan.holidays)
    if plan.time_bands:
        document["time_bands"] = [
            {"name": b.name, "days": [_DAY_NAMES.get(day, day) for day in b.days], "from": _hhmm(b.from_minute),
             "to": _hhmm(b.to_minute)} for b in plan.time_bands]
    document["rates"] = [_dump_rate(rate) for rate in plan.rates]
    if plan.policy_counters:
        document["policy_counters"] = [
            {"id": c.counter_id, "rating_groups": list(c.rating_groups), "spend": c.spend,
             "period": _name(_PERIODS, c.period), "base_status": c.base_status,
             "thresholds": [{"at_least": t.at_least, "status": t.status} for t in c.thresholds]}
            for c in plan.policy_counters]
    if plan.controls:
        document["controls"] = [
            {"id": c.control_id, "kind": c.kind.name.lower(), "limit": c.limit, "window_s": c.window_s,
             "action": c.action.name.lower(), "rating_groups": list(c.rating_groups)} for c in plan.controls]
    return document


def _dump_rate(rate: Rate) -> dict:
    out: dict = {"rating_group": rate.rating_group, "unit": _name(_UNITS, rate.unit)}
    if rate.service_identifier:
        out["service_identifier"] = rate.service_identifier
    for name in ("destination_prefix", "time_band", "roaming_zone"):
        if getattr(rate, name):
            out[name] = getattr(rate, name)
    if rate.tiers:
        out["tiers"] = [{"from": t.from_units, "price_micros": t.price_micros, "per": t.rate_units,
                         "increment": t.increment_units} for t in rate.tiers]
    else:
        out.update(price_micros=rate.price_micros, per=rate.rate_units, increment=rate.increment_units)
    for name in ("connect_fee", "minimum_charge", "maximum_cost"):
        if getattr(rate, f"{name}_micros"):
            out[f"{name}_micros"] = getattr(rate, f"{name}_micros")
    if rate.cap_action:
        out["cap_action"] = _name(_CAP, rate.cap_action)
    if rate.volume_period:
        out["volume_period"] = _name(_PERIODS, rate.volume_period)
    if rate.final_unit_action:
        out["final_unit_action"] = _name(_FINAL, rate.final_unit_action)
    if rate.redirect_server_address:
        out["redirect_server_address"] = rate.redirect_server_address
    return out


def dump_document(plans: list[TariffPlan]) -> dict:
    return {"plans": [dump_plan(plan) for plan in plans]}


def stored_form(plan: TariffPlan) -> TariffPlan:
    """What a plan read back from the grid compares equal to once loaded from a file
    (the grid adds the version and its tenant)."""
    return dataclasses.replace(plan, version=0, tenant=DEFAULT_TENANT)
