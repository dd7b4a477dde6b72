"""Buckets: free units and monetary sub-balances, consumed before the main balance.

Part of the shard state machine (ShardState mixes this in). A usage first
takes the units of the unit buckets that apply (its rating group and
destination, valid now), then the money its remaining units cost is taken
from the monetary buckets that apply, and only the rest from the main balance;
all in the one operation, so a charge drawing from several buckets and money
is atomic. The order is fixed: weight descending, expiry ascending (none
last), creation. A grant holds in buckets the same way (`bucket.reserved`), and
resolving it gives each bucket back what it held there.

What the main balance pays is what the journal's amount and the charge's
refundable amount say; bucket draws are listed beside it. A refund returns
money to the main balance, up to what the main balance paid.
"""

import dataclasses

from grid.domain import operations as ops
from grid.domain.outcomes import BucketUnit, JournalKind, Result, Unit
from grid.domain.records import Account, Bucket, Reservation

BUCKET_OF_UNIT = {Unit.SECONDS: BucketUnit.SECONDS, Unit.BYTES: BucketUnit.BYTES, Unit.EVENTS: BucketUnit.EVENTS}
# Buckets one account may have; used-up and expired ones are dropped when one is added.
BUCKETS_PER_ACCOUNT_MAX = 64

Draws = list[tuple[Bucket, int]]


def _plan(buckets, amount: int, now_ms: int, rating_group: int, destination: str, kind: BucketUnit) -> Draws:
    """What each applicable bucket gives, in consumption order, up to amount."""
    draws: Draws = []
    eligible = sorted((b for b in buckets if b.unit == kind and b.usable(now_ms) and b.remaining > b.reserved
                       and b.applies_to(rating_group, destination)), key=lambda b: b.order)
    for bucket in eligible:
        if amount <= 0:
            break
        taken = min(amount, bucket.remaining - bucket.reserved)
        draws.append((bucket, taken))
        amount -= taken
    return draws


def draws_tuple(draws: Draws) -> tuple[tuple[str, int], ...]:
    return tuple((bucket.bucket_id, amount) for bucket, amount in draws if amount)


@dataclasses.dataclass(slots=True)
class Consumption:
    """Usage on a grant, split: units from buckets, money from buckets, from the hold, beyond it."""

    money_units: int
    cost: object  # pricing.Rated of the money units
    unit_draws: Draws
    money_draws: Draws
    from_hold_micros: int
    overage_micros: int

    @property
    def bucket_units(self) -> int:
        return sum(amount for _, amount in self.unit_draws)

    @property
    def bucket_micros(self) -> int:
        return sum(amount for _, amount in self.money_draws)

    @property
    def balance_micros(self) -> int:
        """What the main balance pays."""
        return self.cost.charged_micros - self.bucket_micros


class BucketRules:
    """The bucket half of ShardState (uses its accounts, journal, ids and marks)."""

    # ------------------------------------------------------------ adding

    def _add_bucket(self, account: Account, grant: ops.BucketGrant, op, now_ms: int,
                    pool_id: str = "") -> Bucket | None:
        """Add a bucket (dropping used-up and expired ones); None when the account has too many."""
        kept = tuple(b for b in account.buckets
                     if b.reserved or (b.remaining > 0 and (not b.valid_until_ms or b.valid_until_ms > now_ms)))
        if len(kept) >= BUCKETS_PER_ACCOUNT_MAX:
            return None
        sequence = self.meta.next_object_id
        bucket = Bucket(
            bucket_id=self._next_id("B"), unit=grant.unit, initial=grant.amount, remaining=grant.amount, reserved=0,
            valid_from_ms=grant.valid_from_ms, valid_until_ms=grant.valid_until_ms, weight=grant.weight,
            rating_groups=grant.rating_groups, destination_prefixes=grant.destination_prefixes,
            created_sequence=sequence, pool_id=pool_id,
        )
        account.buckets = kept + (bucket,)
        self._mark("account", account.key, account)
        self._journal(JournalKind.BUCKET_ADDED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                      reference_id=bucket.bucket_id, units=grant.amount,
                      bucket_draws=((bucket.bucket_id, grant.amount),))
        return bucket

    @staticmethod
    def _bucket(account: Account, bucket_id: str) -> Bucket | None:
        for bucket in account.buckets:
            if bucket.bucket_id == bucket_id:
                return bucket
        return None

    def _bucket_views(self, account: Account, now_ms: int) -> tuple[Bucket, ...]:
        return tuple(dataclasses.replace(b) for b in sorted(account.buckets, key=lambda b: b.order))

    # ------------------------------------------------------------ direct usage

    def _unit_draws(self, account: Account, unit: Unit, rating_group: int, destination: str, units: int,
                    now_ms: int) -> Draws:
        kind = BUCKET_OF_UNIT.get(unit)
        if kind is None or not account.buckets:
            return []
        return _plan(account.buckets, units, now_ms, rating_group, destination, kind)

    def _money_draws(self, account: Account, rating_group: int, destination: str, micros: int,
                     now_ms: int) -> Draws:
        if not account.buckets or micros <= 0:
            return []
        return _plan(account.buckets, micros, now_ms, rating_group, destination, BucketUnit.MONEY)

    def _bucket_money(self, account: Account, rating_group: int, destination: str, now_ms: int) -> int:
        """Money the monetary buckets that apply can still pay."""
        return sum(amount for _, amount in self._money_draws(account, rating_group, destination, 1 << 62, now_ms))

    def _take(self, account: Account, draws: Draws) -> None:
        for bucket, amount in draws:
            bucket.remaining -= amount
            assert 0 <= bucket.reserved <= bucket.remaining, bucket
        if draws:
            self._mark("account", account.key, account)

    # ------------------------------------------------------------ grants

    def _grant_with_buckets(self, account: Account, pricer, progress, destination: str, requested_units: int,
                            now_ms: int, lifetime_ms: int):
        """A grant: the unit buckets' units first, then what money buys (monetary
        buckets, then the main balance). Returns (Grant of all units with the
        money held in total, unit and money bucket draws, units from buckets)."""
        from grid.domain.rating_rules import Grant

        rating_group = pricer.usage.rating_group
        unit_draws = self._unit_draws(account, pricer.unit, rating_group, destination, requested_units, now_ms)
        covered = sum(amount for _, amount in unit_draws)
        bucket_money = self._bucket_money(account, rating_group, destination, now_ms)
        available = account.available_micros() + bucket_money
        if covered < requested_units:
            grant = self._grant(account, pricer, progress, available, requested_units - covered, now_ms,
                                lifetime_ms)
        else:  # the buckets cover it all; final only if neither they nor money could give more
            spare = sum(amount for _, amount in self._unit_draws(
                account, pricer.unit, rating_group, destination, 1 << 62, now_ms)) - covered
            more = self._grant(account, pricer, progress, available, 1, now_ms, lifetime_ms)
            grant = Grant(0, 0, spare <= 0 and more.granted_units == 0, more.tariff_time_change_ms)
        money_draws = self._money_draws(account, rating_group, destination, grant.held_micros, now_ms)
        total = Grant(covered + grant.granted_units, grant.held_micros, grant.final, grant.tariff_time_change_ms)
        return total, unit_draws, money_draws, covered

    def _hold_in_buckets(self, account: Account, reservation: Reservation, draws: Draws, bucket_units: int) -> None:
        for bucket, amount in draws:
            bucket.reserved += amount
            assert bucket.reserved <= bucket.remaining, bucket
        reservation.bucket_holds = draws_tuple(draws)
        reservation.bucket_units = bucket_units

    def _return_bucket_holds(self, account: Account, reservation: Reservation) -> None:
        """A grant resolved: each bucket gets back what the grant held in it."""
        for bucket_id, amount in reservation.bucket_holds:
            bucket = self._bucket(account, bucket_id)
            if bucket is not None:
                bucket.reserved -= amount
                assert bucket.reserved >= 0, bucket
        if reservation.bucket_holds:
            reservation.bucket_holds = ()
            self._mark("account", account.key, account)

    def _consume_on_hold(self, account: Account, reservation: Reservation, pricer, progress, used_units: int,
                         start_ms: int, now_ms: int) -> Consumption:
        """Plan the usage on a grant: the units it held in unit buckets first, the
        rest priced; the price from what it held in monetary buckets, then its
        money, then beyond it. Nothing changes until `_apply_consumption`."""
        unit_kind = BUCKET_OF_UNIT.get(pricer.unit)
        unit_draws: Draws = []
        money_holds: list[tuple[Bucket, int]] = []
        left = used_units
        for bucket_id, amount in reservation.bucket_holds:
            bucket = self._bucket(account, bucket_id)
            if bucket is None or not bucket.usable(now_ms):
                continue  # an expired bucket is never consumed: its part is priced instead
            if bucket.unit == unit_kind and left > 0:
                taken = min(left, amount)
                unit_draws.append((bucket, taken))
                left -= taken
            elif bucket.unit == BucketUnit.MONEY:
                money_holds.append((bucket, amount))
        cost = self._rate_more(account, pricer, progress, left, start_ms, now_ms)
        due = cost.charged_micros
        money_draws: Draws = []
        for bucket, amount in money_holds:
            taken = min(due, amount)
            if taken > 0:
                money_draws.append((bucket, taken))
                due -= taken
        from_hold = min(due, reservation.held_micros)
        return Consumption(left, cost, unit_draws, money_draws, from_hold, due - from_hold)

    def _apply_consumption(self, account: Account, reservation: Reservation, used: Consumption) -> None:
        held = dict(reservation.bucket_holds)
        for bucket, amount in used.unit_draws + used.money_draws:
            bucket.remaining -= amount
            bucket.reserved -= amount
            held[bucket.bucket_id] -= amount
            assert 0 <= bucket.reserved <= bucket.remaining and held[bucket.bucket_id] >= 0, bucket
        reservation.bucket_holds = tuple((bucket_id, amount) for bucket_id, amount in held.items() if amount)
        reservation.bucket_used_units += used.bucket_units
        account.balance_micros -= used.balance_micros
        account.reserved_micros -= used.from_hold_micros
        reservation.held_micros -= used.from_hold_micros
        if used.unit_draws or used.money_draws:
            self._mark("account", account.key, account)
