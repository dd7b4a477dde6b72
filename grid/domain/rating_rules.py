"""Rating inside the shard: plan versions, pricers, grants and volume counters.

Part of the shard state machine (ShardState mixes this in). A plan keeps every
version put; the one in force at an instant is the latest version put whose
effective instant has come. A grant records the version, destination and zone it was priced
with, and where the usage stood (its "progress"), so its usage is charged by
the same version and rate even after a new version takes effect, and a
session's usage of a rating group is rated as one: the connect fee once, the
tiers and caps across its updates.
"""

import dataclasses
from fractions import Fraction

from grid.domain import pricing, rating
from grid.domain.outcomes import Unit
from grid.domain.policy_counters import period_bounds
from grid.domain.records import Account, Reservation, VolumeCounter


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where a session's (or hold's) usage of one rating group stands."""

    anchor_ms: int
    used_units: int
    exact: Fraction

    @staticmethod
    def start(anchor_ms: int) -> "Progress":
        return Progress(anchor_ms, 0, Fraction(0))


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    granted_units: int
    held_micros: int
    # The money left after the hold buys nothing more (or the grant is short of the request).
    final: bool
    tariff_time_change_ms: int


class RatingRules:
    """The rating half of ShardState (uses its tariffs and marks)."""

    def _init_rating(self) -> None:
        # (tenant, plan id) -> every version held, ascending.
        self.tariff_versions: dict[tuple[str, str], list[rating.TariffPlan]] = {}
        self._plan_indexes: dict[tuple[str, str, int], pricing.PlanIndex] = {}
        self.volume_counters: dict[tuple[str, str, int], VolumeCounter] = {}

    def _hold_version(self, plan: rating.TariffPlan) -> None:
        versions = [p for p in self.tariff_versions.get(plan.key, ()) if p.version != plan.version] + [plan]
        versions.sort(key=lambda p: p.version)
        self.tariff_versions[plan.key] = versions
        latest = self.tariffs.get(plan.key)
        if latest is None or plan.version >= latest.version:
            self.tariffs[plan.key] = plan

    def prepare_indexes(self) -> int:
        """Build the index of every plan's latest version now (rather than at its
        first charge). Returns how many were built."""
        built = 0
        latest = set()
        for versions in self.tariff_versions.values():
            key = (versions[-1].tenant, versions[-1].tariff_plan_id, versions[-1].version)
            latest.add(key)
            if key not in self._plan_indexes:
                self._index_of(versions[-1])
                built += 1
        if built:  # older versions' indexes are rebuilt if a grant still priced by one needs it
            for key in [key for key in self._plan_indexes if key not in latest]:
                del self._plan_indexes[key]
        return built

    def _plan_in_force(self, key: tuple[str, str], at_ms: int, version: int = 0) -> rating.TariffPlan | None:
        """The version named, or the one in force at at_ms: the latest version put
        whose effective instant has come (a version is in force from its instant
        until a later version starts; one put with a past instant starts at once)."""
        versions = self.tariff_versions.get(key, ())
        if version:
            for plan in versions:
                if plan.version == version:
                    return plan
        for plan in reversed(versions):  # ascending by version
            if plan.effective_from_ms <= at_ms:
                return plan
        return None

    def _index_of(self, plan: rating.TariffPlan) -> pricing.PlanIndex:
        key = (plan.tenant, plan.tariff_plan_id, plan.version)
        index = self._plan_indexes.get(key)
        if index is None:
            index = self._plan_indexes[key] = pricing.PlanIndex(plan)
        return index

    def _pricer(self, account: Account, rating_group: int, destination: str, roaming_zone: str, at_ms: int,
                anchor_ms: int | None = None, version: int = 0, service_identifier: int = 0) -> pricing.Pricer | None:
        """The pricer of this usage, or None when the plan cannot rate it (RATING_FAILED)."""
        plan = self._plan_in_force((account.tenant, account.tariff_plan_id), at_ms, version)
        if plan is None:
            return None
        try:
            return pricing.Pricer(self._index_of(plan),
                                  pricing.Usage(rating_group, destination, roaming_zone, service_identifier),
                                  at_ms if anchor_ms is None else anchor_ms)
        except pricing.RatingError:
            return None

    def _unit_of(self, account: Account, rating_group: int, at_ms: int) -> Unit | None:
        """The unit of a rating group in the plan in force (whatever the time band)."""
        plan = self._plan_in_force((account.tenant, account.tariff_plan_id), at_ms)
        return None if plan is None else self._index_of(plan).units.get(rating_group)

    def _hold_pricer(self, account: Account, reservation: Reservation, now_ms: int) -> pricing.Pricer | None:
        """The pricer a hold was granted with (its version, if still held)."""
        return self._pricer(account, reservation.rating_group, reservation.destination, reservation.roaming_zone,
                            now_ms, anchor_ms=reservation.anchor_ms or reservation.granted_at_ms,
                            version=reservation.tariff_version, service_identifier=reservation.service_identifier)

    @staticmethod
    def _hold_progress(pricer: pricing.Pricer, reservation: Reservation) -> Progress:
        """Where the hold's usage stands now (its base plus what it charged)."""
        anchor = reservation.anchor_ms or reservation.granted_at_ms
        if reservation.exact_denominator:
            exact = Fraction(reservation.exact_numerator, reservation.exact_denominator)
        else:  # a hold stored before progress was: v1 plans have no bands, so this is exact
            tiers = pricer.anchor.effective_tiers
            exact = pricer.exact(0, pricing.billed_end(tiers, reservation.used_units), anchor, anchor, 0)
        return Progress(anchor, reservation.base_units + reservation.used_units - reservation.bucket_used_units, exact)

    @staticmethod
    def _set_hold_progress(reservation: Reservation, exact: Fraction) -> None:
        reservation.exact_numerator, reservation.exact_denominator = exact.numerator, exact.denominator

    # ------------------------------------------------------------ volume tiers

    def _volume_units(self, account: Account, pricer: pricing.Pricer, now_ms: int) -> int:
        if not pricer.volume:
            return 0
        counter = self.volume_counters.get((account.tenant, account.subscriber_id, pricer.usage.rating_group))
        if counter is None or counter.period_start_ms != period_bounds(pricer.anchor.volume_period, now_ms)[0]:
            return 0
        return counter.units

    def _count_volume(self, account: Account, pricer: pricing.Pricer, units: int, now_ms: int) -> None:
        if not pricer.volume or not units:
            return
        key = (account.tenant, account.subscriber_id, pricer.usage.rating_group)
        start = period_bounds(pricer.anchor.volume_period, now_ms)[0]
        counter = self.volume_counters.get(key)
        if counter is None:
            counter = self.volume_counters[key] = VolumeCounter(*key, period_start_ms=start, units=0)
        elif counter.period_start_ms != start:
            counter.period_start_ms, counter.units = start, 0
        counter.units += units
        self._mark("volume", key, counter)

    # ------------------------------------------------------------ charges and grants

    def _rate_more(self, account: Account, pricer: pricing.Pricer, progress: Progress, more_units: int,
                   start_ms: int, now_ms: int) -> pricing.Rated:
        """The charge for more usage after progress (seconds starting at start_ms)."""
        return pricer.charge(progress.used_units, progress.exact, more_units, start_ms, now_ms,
                             self._volume_units(account, pricer, now_ms))

    def _grant(self, account: Account, pricer: pricing.Pricer, progress: Progress, available_micros: int,
               requested_units: int, now_ms: int, lifetime_ms: int) -> Grant:
        """min(requested, what the money buys), sized for the dearer side of a band
        change within the grant's lifetime (RFC 4006 5.1.1)."""
        dearest, change_ms = pricer.window_rates(now_ms, now_ms + lifetime_ms)
        period = self._volume_units(account, pricer, now_ms)
        args = (progress.used_units, progress.exact)
        if pricer.anchor.simple and not dearest and not pricer.index.timed:
            granted = rating.affordable_units(pricer.anchor, available_micros, requested_units)
        else:
            granted = pricer.affordable(*args, available_micros, requested_units, now_ms, now_ms, period, dearest)
        if granted <= 0:
            return Grant(0, 0, True, change_ms)
        rated = pricer.charge(*args, granted, now_ms, now_ms, period, dearest)
        # Final when the money left cannot buy the next increment after what the grant bills.
        billed = pricing.billed_end(pricer.anchor.effective_tiers, progress.used_units + granted) - progress.used_units
        more = pricer.affordable(progress.used_units + billed, rated.exact_after,
                                 available_micros - rated.charged_micros, 1, now_ms, now_ms, period + billed, dearest)
        final = granted < requested_units or more == 0
        return Grant(granted, rated.charged_micros, final, change_ms)

