"""Rating: the exact cost of usage under a tariff plan (v1: one price per rating group).

The cost of u units is ceil(ceil(u / increment) * increment * price / rate_units)
micros: computed in integers, rounded once, up to the next micro. The rounding
residue (charged minus exact) is returned so the journal can record it.
"""

import dataclasses
import enum

from grid.domain.outcomes import ControlAction, ControlKind, CounterPeriod, FinalUnitAction, Unit

# The tenant of calls made without credentials (the embedded default) and of
# everything stored before tenants had catalogs of their own.
DEFAULT_TENANT = "default"


class Rounding(enum.IntEnum):
    """How a plan rounds an exact cost to micros, once per charge (unset: UP)."""

    ROUNDING_UNSPECIFIED = 0
    ROUNDING_UP = 1
    ROUNDING_HALF_EVEN = 2
    ROUNDING_DOWN = 3


class CapAction(enum.IntEnum):
    """What a rate's maximum cost does when a session or debit reaches it (unset: STOP_CHARGING)."""

    CAP_ACTION_UNSPECIFIED = 0
    # Usage past the cap is free: charging stops at the cap.
    CAP_STOP_CHARGING = 1
    # No quota is granted past the cap.
    CAP_DENY_QUOTA = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    """From from_units on (of the session's usage, or of the period's for volume
    tiers): price_micros per rate_units, billed in increment_units."""

    from_units: int
    price_micros: int
    rate_units: int
    increment_units: int


@dataclasses.dataclass(frozen=True, slots=True)
class TimeBand:
    """A named part of the week in the plan's time zone: days 1 (Monday) to 7,
    8 for the plan's holidays; minutes of the day [from_minute, to_minute)."""

    name: str
    days: tuple[int, ...]
    from_minute: int
    to_minute: int


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """The price of one rating group: price_micros per rate_units, in increments.

    Chosen by rating group, then service (RFC 4006 Service-Identifier; 0:
    any service of the group), destination prefix (longest match; empty:
    any), time band (empty: any time) and roaming zone (empty: any). `tiers`, when
    given, replace the single price: "60/1" is Tier(0, p, 60, 60), Tier(60, p,
    60, 1). With volume_period set, tiers count the period's usage instead.
    """

    rating_group: int
    unit: Unit
    price_micros: int
    rate_units: int
    increment_units: int
    # What a session's network function does when money ends the grant
    # (RFC 4006 Final-Unit-Indication); unset means TERMINATE. REDIRECT names
    # where to send the user.
    final_unit_action: FinalUnitAction = FinalUnitAction.FINAL_UNIT_ACTION_UNSPECIFIED
    redirect_server_address: str = ""
    destination_prefix: str = ""
    time_band: str = ""
    roaming_zone: str = ""
    # Charged once per session (or direct debit) when usage starts.
    connect_fee_micros: int = 0
    tiers: tuple[Tier, ...] = ()
    # A session or direct debit with usage costs at least this, at most maximum_cost (0: none).
    minimum_charge_micros: int = 0
    maximum_cost_micros: int = 0
    cap_action: CapAction = CapAction.CAP_ACTION_UNSPECIFIED
    # Volume tiers: the tiers count usage of this rating group in the period.
    volume_period: CounterPeriod = CounterPeriod.COUNTER_PERIOD_UNSPECIFIED
    # For this service of the group only (0: any). Last: plans stored before decode with 0.
    service_identifier: int = 0

    @property
    def effective_tiers(self) -> tuple[Tier, ...]:
        if self.tiers:
            return self.tiers
        return (Tier(0, self.price_micros, self.rate_units, self.increment_units),)

    @property
    def simple(self) -> bool:
        """Priced by the v1 closed form: one price, no fee, caps or volume tiers."""
        return (not self.tiers and not self.connect_fee_micros and not self.minimum_charge_micros
                and not self.maximum_cost_micros and not self.volume_period)


@dataclasses.dataclass(frozen=True, slots=True)
class CounterThreshold:
    at_least: int
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyCounter:
    """Usage of some rating groups (or the money spent on them) in a period, with
    thresholds naming its status (TS 29.594 policy counters)."""

    counter_id: str
    rating_groups: tuple[int, ...]
    spend: bool
    period: CounterPeriod
    base_status: str
    thresholds: tuple[CounterThreshold, ...]

    def counts(self, rating_group: int) -> bool:
        return rating_group in self.rating_groups or (self.spend and not self.rating_groups)

    def status_of(self, value: int) -> str:
        status = self.base_status
        for threshold in self.thresholds:  # ascending (validated)
            if value >= threshold.at_least:
                status = threshold.status
        return status


@dataclasses.dataclass(frozen=True, slots=True)
class Control:
    """A fraud or policy control, evaluated in the shard as a charge commits (or a
    session opens), journaled and traced when it fires."""

    control_id: str
    kind: ControlKind
    limit: int
    # The velocity window, and how long DENY_GRANTS lasts; a control fires at most once per window.
    window_s: int
    action: ControlAction
    # USAGE_VELOCITY: the rating groups counted (SPEND_VELOCITY: empty = all).
    rating_groups: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class TariffPlan:
    tariff_plan_id: str
    rates: tuple[Rate, ...]
    version: int = 0
    policy_counters: tuple[PolicyCounter, ...] = ()
    controls: tuple[Control, ...] = ()
    # The tenant whose catalog holds the plan: only its accounts can use it.
    tenant: str = DEFAULT_TENANT
    # From this instant on (ms) new grants and charges use this version.
    effective_from_ms: int = 0
    # IANA time zone of the time bands, e.g. "Europe/Berlin".
    time_zone: str = ""
    time_bands: tuple[TimeBand, ...] = ()
    # ISO dates (YYYY-MM-DD, in the plan's zone) that are day 8 for the time bands.
    holidays: tuple[str, ...] = ()
    rounding: Rounding = Rounding.ROUNDING_UNSPECIFIED
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.tariff_plan_id)

    def counter(self, counter_id: str) -> PolicyCounter | None:
        for counter in self.policy_counters:
            if counter.counter_id == counter_id:
                return counter
        return None

    def rate_for(self, rating_group: int) -> Rate | None:
        """The rate of a rating group for any destination, time and zone (v1 plans)."""
        for rate in self.rates:
            if rate.rating_group == rating_group and not (rate.destination_prefix or rate.time_band
                                                          or rate.roaming_zone or rate.service_identifier):
                return rate
        return None

    @property
    def content(self) -> tuple:
        """What PutTariff compares to decide whether a plan changed."""
        return (self.rates, self.policy_counters, self.controls, self.time_zone, self.time_bands, self.holidays,
                self.rounding, self.description)


@dataclasses.dataclass(frozen=True, slots=True)
class Cost:
    """A rated cost: what is charged and the residue of rounding it once."""

    charged_micros: int
    # charged - exact, in 10^-12 of the currency unit (micro-micros), truncated.
    rounding_residue_picos: int


PICOS_PER_MICRO = 1_000_000


def billed_units(rate: Rate, units: int) -> int:
    """Usage rounded up to a whole number of increments."""
    increments = -(-units // rate.increment_units)
    return increments * rate.increment_units


def cost(rate: Rate, units: int) -> Cost:
    assert units >= 0
    numerator = billed_units(rate, units) * rate.price_micros
    charged = -(-numerator // rate.rate_units)
    residue_picos = (charged * rate.rate_units - numerator) * PICOS_PER_MICRO // rate.rate_units
    assert charged * rate.rate_units >= numerator
    return Cost(charged_micros=charged, rounding_residue_picos=residue_picos)


def cost_of_more(rate: Rate, used_units: int, more_units: int) -> Cost:
    """The charge for more usage on a reservation that has used_units already.

    Usage reported in pieces is rated cumulatively: the charge is cost(used +
    more) - cost(used), so a grant's usage costs what its hold was priced at
    however it is reported (a 60 s increment is not billed again for every
    30 s report). The residue is likewise the change in the cumulative residue,
    and may be negative when an earlier report already rounded this usage up.
    """
    before = cost(rate, used_units)
    after = cost(rate, used_units + more_units)
    return Cost(
        charged_micros=after.charged_micros - before.charged_micros,
        rounding_residue_picos=after.rounding_residue_picos - before.rounding_residue_picos,
    )


def affordable_units(rate: Rate, available_micros: int, cap_units: int) -> int:
    """The most units, a whole number of increments and at most cap_units, whose
    cost fits in available_micros.

    ceil(x) <= A  <=>  x <= A for integer A, so k increments are affordable iff
    k * increment * price <= A * rate_units.
    """
    if available_micros <= 0 and rate.price_micros > 0:
        return 0
    if rate.price_micros == 0:
        return cap_units
    increments = (available_micros * rate.rate_units) // (rate.increment_units * rate.price_micros)
    return min(cap_units, increments * rate.increment_units)
