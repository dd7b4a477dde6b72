"""The rating engine: which rate prices a usage, and what the usage costs, exactly.

Pure: no I/O, no clock. A `PlanIndex` is built once per plan version (the shard
keeps one per version it holds) and answers the selection in microseconds:
longest-prefix match over the destination (one dict probe per prefix length
the plan uses), the time band in the plan's zone, then the roaming zone.

Costs are exact `Fraction`s until `charge()` rounds them once, by the plan's
rule, to micros. Usage is rated cumulatively along an axis: the session's
usage of the rating group (interval tiers, the connect fee, the minimum and
maximum cost) or, for volume tiers, the period's. A charge for `more` units
after `used` is R(total(used + more)) - R(total(used)), so usage reported in
pieces costs what it would cost reported at once, and the sum of a session's
charges was rounded once. Seconds of usage are placed on the clock (position
p is `start + p` seconds), so a call across a band change is priced piece by
piece; other units are priced at the band of their report.
"""

import dataclasses
import datetime
import fractions
import functools
import math
import zoneinfo

from grid.domain.outcomes import CounterPeriod, Unit
from grid.domain.rating import CapAction, Rate, Rounding, TariffPlan, Tier

Fraction = fractions.Fraction
PICOS_PER_MICRO = 1_000_000
HOLIDAY = 8
_ANY = ""
_ANY_SERVICE = 0  # a rate for every service of its rating group
# Band changes are looked for this far ahead at most: usage longer than this
# is priced at the band in force when the search stopped.
_BAND_SEARCH_DAYS_MAX = 400
_EDGE_CACHE_DAYS_MAX = 4096


class RatingError(Exception):
    """The plan has no rate for this usage (RATING_FAILED)."""


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> datetime.tzinfo:
    return zoneinfo.ZoneInfo(name) if name else datetime.timezone.utc


class _Prefixes:
    """Longest-prefix match: one dict per group, probed from the longest prefix
    length the group uses down to the empty prefix."""

    __slots__ = ("by_prefix", "lengths")

    def __init__(self) -> None:
        self.by_prefix: dict[str, Rate] = {}
        self.lengths: tuple[int, ...] = ()

    def add(self, rate: Rate) -> None:
        self.by_prefix[rate.destination_prefix] = rate

    def freeze(self) -> None:
        self.lengths = tuple(sorted({len(p) for p in self.by_prefix}, reverse=True))

    def match(self, destination: str) -> Rate | None:
        by_prefix = self.by_prefix
        size = len(destination)
        for length in self.lengths:
            if length <= size:
                rate = by_prefix.get(destination[:length])
                if rate is not None:
                    return rate
        return None


def _match_either(first: _Prefixes, second: _Prefixes, destination: str) -> Rate | None:
    """The longest prefix either holds; at equal length, first's rate."""
    size = len(destination)
    for length in sorted(set(first.lengths) | set(second.lengths), reverse=True):
        if length <= size:
            key = destination[:length]
            rate = first.by_prefix.get(key) or second.by_prefix.get(key)
            if rate is not None:
                return rate
    return None


class PlanIndex:
    """One plan version made fast to rate against."""

    def __init__(self, plan: TariffPlan) -> None:
        self.plan = plan
        self.zone = _zone(plan.time_zone)
        self.holidays = frozenset(datetime.date.fromisoformat(day) for day in plan.holidays)
        self._groups: dict[tuple[int, int, str, str], _Prefixes] = {}
        for rate in plan.rates:
            key = (rate.rating_group, rate.service_identifier, rate.time_band, rate.roaming_zone)
            self._groups.setdefault(key, _Prefixes()).add(rate)
        self._services = {rate.service_identifier for rate in plan.rates}
        for prefixes in self._groups.values():
            prefixes.freeze()
        # Every rate of a group has the same unit (validated).
        self.units = {rate.rating_group: rate.unit for rate in plan.rates}
        self.timed = bool(plan.time_bands)
        # Minutes of the day where some band starts or ends: the only places a band can change.
        self._edges = sorted({0, *(b.from_minute for b in plan.time_bands), *(b.to_minute % 1440 for b in plan.time_bands)})
        self._edge_cache: dict[datetime.date, tuple[tuple[int, str], ...]] = {}

    # ------------------------------------------------------------ selection

    def select(self, rating_group: int, destination: str, roaming_zone: str, band: str,
               service_identifier: int = 0) -> Rate | None:
        """The most specific rate: the service's before the group's (any
        service); then the zone's before any zone's; within a zone the longest
        destination prefix; for that prefix the band's rate before the any-time
        one (Berlin numbers priced at any time beat national at peak)."""
        # A service no rate names is priced as any service of its group.
        services = ((service_identifier, _ANY_SERVICE) if service_identifier and service_identifier in self._services
                    else (_ANY_SERVICE,))
        for service in services:
            for zone in ((roaming_zone, _ANY) if roaming_zone else (_ANY,)):
                timed = self._groups.get((rating_group, service, band, zone)) if band else None
                untimed = self._groups.get((rating_group, service, _ANY, zone))
                if timed is None and untimed is None:
                    continue
                if timed is None or untimed is None:
                    rate = (timed or untimed).match(destination)
                else:
                    rate = _match_either(timed, untimed, destination)
                if rate is not None:
                    return rate
        return None

    def band_at(self, at_ms: int) -> str:
        if not self.timed:
            return _ANY
        local = datetime.datetime.fromtimestamp(at_ms / 1000, self.zone)
        return self._band_of(local)

    def _band_of(self, local: datetime.datetime) -> str:
        day = HOLIDAY if local.date() in self.holidays else local.isoweekday()
        minute = local.hour * 60 + local.minute
        for band in self.plan.time_bands:
            if day in band.days and band.from_minute <= minute < band.to_minute:
                return band.name
        return _ANY

    def _day_edges(self, day: datetime.date) -> tuple[tuple[int, str], ...]:
        """(instant, band from then on) at each edge minute of a local day (cached:
        calls crossing a band change are common, and each day is asked often)."""
        edges = self._edge_cache.get(day)
        if edges is None:
            if len(self._edge_cache) >= _EDGE_CACHE_DAYS_MAX:
                self._edge_cache.clear()
            instants = set()
            for minute in self._edges:
                for fold in (0, 1):  # a fall-back hour holds each local minute twice
                    local = datetime.datetime.combine(day, datetime.time(minute // 60, minute % 60, fold=fold),
                                                      self.zone)
                    instants.add(int(local.timestamp() * 1000))
            instants.update(self._offset_changes(day))  # a daylight-saving jump can change the band too
            edges = self._edge_cache[day] = tuple(
                (at_ms, self._band_of(datetime.datetime.fromtimestamp(at_ms / 1000, self.zone)))
                for at_ms in sorted(instants))
        return edges

    def _offset_changes(self, day: datetime.date) -> list[int]:
        """Instants (ms) in the local day where the zone's UTC offset changes."""
        start = int(datetime.datetime.combine(day, datetime.time(0), self.zone).timestamp() * 1000)
        end = start + 26 * 3_600_000
        offset = lambda at_ms: datetime.datetime.fromtimestamp(at_ms / 1000, self.zone).utcoffset()
        if offset(start) == offset(end):
            return []
        low, high = start, end  # offset(low) != offset(high): find the first instant of the new offset
        while high - low > 1:
            middle = (low + high) // 2
            if offset(middle) == offset(low):
                low = middle
            else:
                high = middle
        return [high]

    def band_changes(self, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        """(instant, band from then on) for each change of band in (start, end)."""
        if not self.timed or end_ms <= start_ms:
            return []
        changes = []
        current = self.band_at(start_ms)
        day = datetime.datetime.fromtimestamp(start_ms / 1000, self.zone).date()
        for _ in range(_BAND_SEARCH_DAYS_MAX):
            for at_ms, band in self._day_edges(day):
                if at_ms <= start_ms:
                    continue
                if at_ms >= end_ms:
                    return changes
                if band != current:
                    changes.append((at_ms, band))
                    current = band
            day += datetime.timedelta(days=1)
        return changes


def tier_at(rate: Rate, position: int) -> Tier:
    tiers = rate.effective_tiers
    chosen = tiers[0]
    for tier in tiers:
        if tier.from_units <= position:
            chosen = tier
        else:
            break
    return chosen


def billed_end(tiers: tuple[Tier, ...], units: int) -> int:
    """Usage of `units` rounded up to the increment of the tier its last unit is
    in ("60/1": 1 s is billed as 60, 61 s as 61). Tier lengths are whole
    increments (validated), so the rounding never spills into the next tier."""
    if units <= 0:
        return 0
    tier = tiers[0]
    for each in tiers:
        if each.from_units <= units - 1:
            tier = each
        else:
            break
    return tier.from_units + -(-(units - tier.from_units) // tier.increment_units) * tier.increment_units


def round_micros(exact: Fraction, rule: Rounding) -> int:
    if rule == Rounding.ROUNDING_DOWN:
        return math.floor(exact)
    if rule == Rounding.ROUNDING_HALF_EVEN:
        return round(exact)  # Fraction.__round__ rounds half to even
    return math.ceil(exact)


def _round_ratio(numerator: int, denominator: int, rule: Rounding) -> int:
    """round_micros(numerator / denominator) in integers."""
    quotient, remainder = divmod(numerator, denominator)
    if not remainder or rule == Rounding.ROUNDING_DOWN:
        return quotient
    if rule == Rounding.ROUNDING_HALF_EVEN:
        twice = 2 * remainder
        return quotient + (twice > denominator or (twice == denominator and quotient % 2 == 1))
    return quotient + 1


@dataclasses.dataclass(frozen=True, slots=True)
class Rated:
    """A charge: what is taken, exactly what the usage was worth, and where the
    usage now stands."""

    charged_micros: int
    # Change of (charged - exact) over the axis, in 10^-12 currency units (floored).
    rounding_residue_picos: int
    exact_after: Fraction
    # The rate the usage was priced by (its connect fee, caps and tiers applied).
    rate: Rate


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What is being rated, beyond its units."""

    rating_group: int
    destination: str = ""
    roaming_zone: str = ""
    service_identifier: int = 0


class Pricer:
    """Prices one rating group's usage of one plan version, for one destination
    and zone. The anchor rate (in force when the usage started) gives the
    connect fee, the caps and the tier structure; each piece of usage is priced
    at the rate of its own time band."""

    def __init__(self, index: PlanIndex, usage: Usage, anchor_ms: int) -> None:
        self.index = index
        self.usage = usage
        anchor = index.select(usage.rating_group, usage.destination, usage.roaming_zone, index.band_at(anchor_ms),
                              usage.service_identifier)
        if anchor is None:
            raise RatingError(f"no rate for rating group {usage.rating_group} at this time and destination")
        self.anchor = anchor
        self.rounding = index.plan.rounding
        self.volume = anchor.volume_period != CounterPeriod.COUNTER_PERIOD_UNSPECIFIED
        self.seconds = anchor.unit == Unit.SECONDS and not self.volume and index.timed
        self._tiers = anchor.effective_tiers
        # One price, no fee, caps, bands or volume: integers, no Fractions but the result.
        self._simple = anchor.simple and not index.timed

    @property
    def unit(self) -> Unit:
        return self.anchor.unit

    def _rate_of(self, band: str) -> Rate:
        """The band's rate; where the plan has none for this usage in that band, the
        rate the usage started with goes on (a call is never left unpriced midway)."""
        rate = self.index.select(self.usage.rating_group, self.usage.destination, self.usage.roaming_zone, band,
                                 self.usage.service_identifier)
        return self.anchor if rate is None else rate

    # ------------------------------------------------------------ exact pieces

    def _segments(self, first: int, end: int, rate: Rate | None = None):
        """Positions [first, end) split at the anchor's tier boundaries and at those
        of the rate pricing them (a band's rate may tier differently)."""
        return self._segments_all(first, end, () if rate is None or rate is self.anchor else (rate,))

    def exact(self, first: int, end: int, start_ms: int, at_ms: int, start_position: int,
              dearest: tuple[Rate, ...] = ()) -> Fraction:
        """Exact cost of billed positions [first, end). Seconds are on the clock:
        position p at start_ms + (p - start_position) s; other units at at_ms.
        `dearest`: price every position at the dearest of these rates (a grant
        that may cross a band change, RFC 4006 5.1.1)."""
        if end <= first:
            return Fraction(0)
        total = Fraction(0)
        if dearest:
            for x, y in self._segments_all(first, end, dearest):
                price = max(Fraction(t.price_micros, t.rate_units) for t in (tier_at(r, x) for r in dearest))
                total += price * (y - x)
            return total
        if self.seconds:
            first_ms = start_ms + (first - start_position) * 1000
            end_ms = start_ms + (end - start_position) * 1000
            cuts = [(first_ms, self.index.band_at(first_ms))] + self.index.band_changes(first_ms, end_ms)
        else:
            cuts = [(at_ms, self.index.band_at(at_ms))]
        for number, (cut_ms, band) in enumerate(cuts):
            rate = self._rate_of(band)
            lower = first if number == 0 else start_position + -(-(cut_ms - start_ms) // 1000)
            upper = end if number + 1 == len(cuts) else start_position + -(-(cuts[number + 1][0] - start_ms) // 1000)
            lower, upper = max(lower, first), min(upper, end)
            for x, y in self._segments(lower, upper, rate):
                tier = tier_at(rate, x)
                total += Fraction(tier.price_micros, tier.rate_units) * (y - x)
        return total

    def _segments_all(self, first: int, end: int, rates: tuple[Rate, ...]):
        cuts = {t.from_units for t in self._tiers}
        for rate in rates:
            cuts.update(t.from_units for t in rate.effective_tiers)
        position = first
        for cut in sorted(c for c in cuts if first < c < end):
            yield position, cut
            position = cut
        if position < end:
            yield position, end

    def total(self, exact: Fraction, used_units: int) -> Fraction:
        """The session's cost so far: the fee once usage started, within the caps."""
        if used_units <= 0:
            return Fraction(0)
        rate = self.anchor
        value = exact + rate.connect_fee_micros
        if value < rate.minimum_charge_micros:
            value = Fraction(rate.minimum_charge_micros)
        if rate.maximum_cost_micros and value > rate.maximum_cost_micros:
            value = Fraction(rate.maximum_cost_micros)
        return value

    # ------------------------------------------------------------ charges

    def charge(self, used_units: int, exact_before: Fraction, more_units: int, start_ms: int, at_ms: int,
               period_units: int = 0, dearest: tuple[Rate, ...] = ()) -> Rated:
        """The charge for `more_units` after `used_units` of the session (whose
        exact cost so far is exact_before). Seconds start at start_ms; volume
        tiers continue from period_units."""
        axis = period_units if self.volume else used_units
        first = billed_end(self._tiers, axis)
        end = billed_end(self._tiers, axis + more_units)
        if self._simple and not dearest:
            return self._charge_simple(first, end, exact_before)
        exact_after = exact_before + self.exact(first, end, start_ms, at_ms, axis, dearest)
        before = self.total(exact_before, used_units)
        after = self.total(exact_after, used_units + more_units)
        charged_before, charged_after = round_micros(before, self.rounding), round_micros(after, self.rounding)
        residue = (math.floor((charged_after - after) * PICOS_PER_MICRO)
                   - math.floor((charged_before - before) * PICOS_PER_MICRO))
        return Rated(charged_after - charged_before, residue, exact_after, self.anchor)

    def _charge_simple(self, first: int, end: int, exact_before: Fraction) -> Rated:
        """charge() for a one-price rate in integers: the exact cost of [0, b) is
        b * price / rate_units, so each side is rounded from an integer fraction."""
        price, per = self.anchor.price_micros, self.anchor.rate_units
        before, after = first * price, end * price
        charged_before, charged_after = _round_ratio(before, per, self.rounding), _round_ratio(after, per, self.rounding)
        residue = ((charged_after * per - after) * PICOS_PER_MICRO // per
                   - (charged_before * per - before) * PICOS_PER_MICRO // per)
        return Rated(charged_after - charged_before, residue, exact_before + Fraction(after - before, per),
                     self.anchor)

    def affordable(self, used_units: int, exact_before: Fraction, available_micros: int, cap_units: int,
                   start_ms: int, at_ms: int, period_units: int = 0, dearest: tuple[Rate, ...] = ()) -> int:
        """The most units, at most cap_units, whose charge fits available_micros
        (a grant: whole increments unless the cap is smaller). With
        CAP_DENY_QUOTA, never past the plan's maximum cost."""
        def fits(units: int) -> bool:
            rated = self.charge(used_units, exact_before, units, start_ms, at_ms, period_units, dearest)
            if rated.charged_micros > available_micros:
                return False
            if self.anchor.maximum_cost_micros and self.anchor.cap_action == CapAction.CAP_DENY_QUOTA:
                uncapped = rated.exact_after + self.anchor.connect_fee_micros
                return uncapped <= self.anchor.maximum_cost_micros
            return True

        if cap_units <= 0 or not fits(min(1, cap_units)):
            return 0
        if fits(cap_units):
            return cap_units
        low, high = 1, cap_units  # fits(low), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            if fits(middle):
                low = middle
            else:
                high = middle
        return low

    def window_rates(self, from_ms: int, to_ms: int) -> tuple[tuple[Rate, ...], int]:
        """The rates in force between from_ms and to_ms, and the first band change
        in that window (0: none): a grant is sized for the dearer side."""
        if not self.index.timed:
            return (), 0
        changes = self.index.band_changes(from_ms, to_ms)
        if not changes:
            return (), 0
        rates = {self._rate_of(self.index.band_at(from_ms))}
        rates.update(self._rate_of(band) for _, band in changes)
        return tuple(rates), changes[0][0]


def exact_of(numerator: int, denominator: int) -> Fraction:
    return Fraction(numerator, denominator or 1)
