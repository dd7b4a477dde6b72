"""Bucket scenarios written out by hand (TESTING.md layer 1: pure core, no Ray, no gRPC).

Buckets are free units (seconds, bytes, events) and monetary sub-balances
(micros), consumed before the main balance in a fixed order: weight
descending, then expiry ascending (no expiry last), then creation. Every
expected amount below was worked out on paper from the tariff and the rules
(grid/domain/bucket_rules.py), never by calling the engine: each figure
carries a comment with its arithmetic.

The tests drive a real ShardState as the shard shell does (one apply_batch
per mutating step, with a trace id), keep the journal records each step
writes (take_writes), and after every scenario check:
- the core's own check_invariants();
- grid.audit.audit_shard over the state records and the journal (conservation,
  holds, the journal's balance chain, one effect per request);
- a ledger from the replies alone: top-ups - main-balance part of charges +
  refunds == the balance;
- a bucket ledger from the journal alone: for every bucket, what BUCKET_ADDED
  put in equals `initial`, and initial - remaining equals what the DEBIT
  records list as drawn from it.

Units: money in micros (1 EUR = 1_000_000), time in ms.
"""

import collections
import dataclasses
import itertools

import pytest

from grid import audit, cdr, dispute
from grid.domain import operations as ops
from grid.domain.outcomes import BucketUnit, ErrorCode, JournalKind, ReservationState, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import JournalRecord
from grid.domain.shard_state import ShardState

T = ops.DEFAULT_TENANT
ALICE = "alice"
SHARD = 0
T0 = 1_750_000_000_000  # ms, a whole second
SECOND = 1_000
MINUTE = 60 * SECOND
HOLD_LIFE_MS = (300 + 30) * SECOND  # CoreLimits: validity 300 s + grace 30 s
BALANCE = 1_000_000  # every scenario's account starts with 1 EUR (unless told)

S = Result.SUCCESS
CLR = Result.CREDIT_LIMIT_REACHED
MONEY, SECONDS, BYTES, EVENTS = BucketUnit.MONEY, BucketUnit.SECONDS, BucketUnit.BYTES, BucketUnit.EVENTS

# Rating groups.
VOICE = 1  # seconds: 1_000 a second (to 44...: 2_000 a second)
DATA = 2  # bytes: 1 micro a byte
SMS = 3  # events: 100_000 an event
FEE = 4  # seconds: connect fee 50_000, then 1_000 a second
MINUTES = 5  # seconds: 1_000 a started minute

PLAN = TariffPlan("buckets", (
    Rate(VOICE, Unit.SECONDS, 60_000, 60, 1),  # 60_000 per 60 s, billed per second: 1_000 a second
    Rate(VOICE, Unit.SECONDS, 120_000, 60, 1, destination_prefix="44"),  # 2_000 a second to the UK
    Rate(DATA, Unit.BYTES, 1, 1, 1),  # 1 micro a byte
    Rate(SMS, Unit.EVENTS, 100_000, 1, 1),  # 100_000 an event
    Rate(FEE, Unit.SECONDS, 60_000, 60, 1, connect_fee_micros=50_000),  # 50_000 once + 1_000 a second
    Rate(MINUTES, Unit.SECONDS, 1_000, 60, 60),  # 1_000 a started minute
))


def bucket(unit: BucketUnit, amount: int, **fields) -> ops.BucketGrant:
    return ops.BucketGrant(unit, amount, **fields)


class World:
    """One shard with PLAN, and alice on it with `balance` micros."""

    def __init__(self, balance: int = BALANCE, buckets: tuple[ops.BucketGrant, ...] = ()) -> None:
        self.state = ShardState(SHARD)
        self.now = T0
        self.journal: list[JournalRecord] = []
        self.ledger = 0  # top-ups - main-balance part of charges + refunds, from the replies
        self._steps = itertools.count(1)
        assert self.do(ops.PutTariff(PLAN)) == ops.PutTariffReply(S, version=1)
        created = self.do(ops.CreateAccount(T, ALICE, self.rid(), "EUR", 0, PLAN.tariff_plan_id, buckets=buckets))
        assert created.result == S, created
        # Each bucket's kind, kept here: a used-up bucket can leave the account.
        self.money_buckets = {b.bucket_id for b in self.state.accounts[(T, ALICE)].buckets if b.unit == MONEY}
        if balance:
            assert self.do(ops.TopUp(T, ALICE, self.rid(), balance)).result == S

    def rid(self) -> str:
        return f"req-{next(self._steps)}"

    def _collect(self) -> None:
        writes = self.state.take_writes()
        self.journal.extend(sorted((r for r in writes.puts if type(r) is JournalRecord), key=lambda r: r.sequence))

    def do(self, operation):
        """Apply one operation as the shell does: its own batch, a trace id, writes taken."""
        operation = dataclasses.replace(operation, trace_id=f"trace-{next(self._steps)}")
        [reply] = self.state.apply_batch([operation], self.now)
        self._collect()
        if isinstance(reply, ops.TopUpReply) and reply.result == S and operation.bucket is None:
            self.ledger += operation.amount_micros
        elif isinstance(reply, ops.DebitReply) and reply.result == S:
            self.ledger -= reply.charged_micros - reply.bucket_micros
        elif isinstance(reply, ops.RefundReply) and reply.result == S:
            self.ledger += reply.refunded_micros
        elif isinstance(reply, ops.SessionReply):
            self.ledger -= sum(i.charged_micros - i.bucket_micros for i in reply.multiple_unit_information)
        return reply

    def at(self, now_ms: int) -> None:
        """The clock moves on; the shell's next batch (here an empty one) sweeps what is due."""
        self.now = now_ms
        assert self.state.apply_batch([], now_ms) == []
        self._collect()

    def read(self, operation):
        return self.state.apply(operation, self.now)

    # ------------------------------------------------------------ operations

    def add(self, grant: ops.BucketGrant) -> str:
        reply = self.do(ops.TopUp(T, ALICE, self.rid(), 0, bucket=grant))
        assert reply.result == S and reply.bucket_id, reply
        if grant.unit == MONEY:
            self.money_buckets.add(reply.bucket_id)
        return reply.bucket_id

    def debit(self, rating_group: int, used_units: int, **fields) -> ops.DebitReply:
        reply = self.do(ops.Debit(T, ALICE, self.rid(), "", rating_group, used_units, False, **fields))
        assert reply.result == S, reply
        return reply

    def reserve(self, rating_group: int, requested_units: int, **fields) -> ops.ReserveReply:
        reply = self.do(ops.Reserve(T, ALICE, self.rid(), "s-reserve", rating_group, requested_units, **fields))
        assert reply.result == S, reply
        return reply

    def session(self, kind, session_id: str, sequence: int, usage: ops.UnitUsage) -> ops.UnitInformation:
        reply = self.do(kind(T, ALICE, session_id, sequence, (usage,)))
        assert reply.result == S, reply
        [info] = reply.multiple_unit_information
        assert info.result == S, info
        return info

    # ------------------------------------------------------------ reads

    def balance(self) -> ops.BalanceReply:
        reply = self.read(ops.GetBalance(T, ALICE))
        assert reply.result == S
        return reply

    def money(self) -> tuple[int, int]:
        """(balance, reserved) of the main balance."""
        reply = self.balance()
        return reply.balance_micros, reply.reserved_micros

    def buckets(self) -> dict[str, tuple[int, int]]:
        """bucket id -> (remaining, reserved), as GetBalance lists them."""
        return {b.bucket_id: (b.remaining, b.reserved) for b in self.balance().buckets}

    # ------------------------------------------------------------ the checks after every scenario

    def check(self) -> None:
        self.state.check_invariants()
        records = [*self.state.accounts.values(), *self.state.reservations.values(), *self.state.sessions.values()]
        report = audit.audit_shard(SHARD, records, self.journal)
        assert report.ok, report.problems
        assert self.balance().balance_micros == self.ledger, "top-ups - charges + refunds (from the replies)"
        put_in: dict[str, int] = {}
        drawn: collections.Counter = collections.Counter()
        for record in self.journal:
            if record.result != S:
                continue
            if record.kind == JournalKind.BUCKET_ADDED:
                [(bucket_id, amount)] = record.bucket_draws
                put_in[bucket_id] = amount
            elif record.kind == JournalKind.DEBIT:
                for bucket_id, amount in record.bucket_draws:
                    drawn[bucket_id] += amount
        account = self.state.accounts[(T, ALICE)]
        for each in account.buckets:
            assert put_in[each.bucket_id] == each.initial, each
            assert each.initial - each.remaining == drawn[each.bucket_id], each
        # Each charge's record says what unit and monetary buckets paid, and its CDR
        # carries it: from the draws and the buckets' kinds, never from the replies.
        money_buckets = self.money_buckets
        for record in self.journal:
            if record.kind != JournalKind.DEBIT or record.result != S:
                continue
            units = sum(amount for bucket_id, amount in record.bucket_draws if bucket_id not in money_buckets)
            micros = sum(amount for bucket_id, amount in record.bucket_draws if bucket_id in money_buckets)
            assert (record.bucket_units, record.bucket_micros) == (units, micros), record
            made = cdr.cdr_of(SHARD, record)
            assert (made["bucket_units"], made["bucket_micros"]) == (units, micros)
            assert made["bucket_draws"] == [{"bucket_id": b, "amount": a} for b, a in record.bucket_draws]


# ====================================================================== validity in time


def test_a_bucket_expiring_during_a_session_is_not_consumed_by_usage_reported_after_it_expired():
    w = World()
    free = w.add(bucket(SECONDS, 120, valid_until_ms=T0 + 100 * SECOND))  # 120 s, expires 100 s in

    created = w.session(ops.CreateSession, "s1", 1, ops.UnitUsage(VOICE, requested_units=300))
    # 300 s granted: the bucket's 120 s, and 180 s of money: 180 x 1_000 = 180_000 held.
    assert (created.granted_units, created.held_micros) == (300, 180_000)
    assert w.buckets() == {free: (120, 120)}
    assert w.money() == (1_000_000, 180_000)

    w.now = T0 + 60 * SECOND  # the bucket is still valid
    update = w.session(ops.UpdateSession, "s1", 2, ops.UnitUsage(VOICE, requested_units=300, used_units=60))
    # 60 s from the bucket's hold: nothing priced.
    assert (update.charged_micros, update.bucket_units, update.bucket_micros) == (0, 60, 0)
    # The hold replaced: 180_000 back; new grant 300 s = the bucket's last 60 s + 240 s x 1_000 = 240_000 held.
    assert (update.released_micros, update.granted_units, update.held_micros) == (180_000, 300, 240_000)
    assert w.buckets() == {free: (60, 60)}
    assert w.money() == (1_000_000, 240_000)

    w.now = T0 + 150 * SECOND  # the bucket expired at T0 + 100 s
    update = w.session(ops.UpdateSession, "s1", 3, ops.UnitUsage(VOICE, used_units=90))
    # The bucket's 60 s hold is skipped (expired): all 90 s priced, 90 x 1_000 = 90_000, from the held money.
    assert (update.charged_micros, update.bucket_units, update.bucket_micros) == (90_000, 0, 0)
    assert (update.overage_micros, update.late) == (0, False)
    assert update.released_micros == 150_000  # 240_000 held - 90_000
    assert w.buckets() == {free: (60, 0)}  # its hold given back, nothing taken: 60 left, unusable
    assert w.money() == (910_000, 0)  # 1_000_000 - 90_000

    w.now = T0 + 160 * SECOND
    w.session(ops.ReleaseSession, "s1", 4, ops.UnitUsage(VOICE))
    w.now = T0 + 170 * SECOND
    later = w.debit(VOICE, 10)
    assert (later.charged_micros, later.bucket_units) == (10_000, 0)  # 10 x 1_000, the expired bucket ignored
    assert w.money() == (900_000, 0)
    assert w.buckets() == {free: (60, 0)}
    w.check()


def test_a_bucket_is_valid_from_valid_from_until_just_before_valid_until():
    w = World()
    hour = 3_600 * SECOND
    early = w.add(bucket(SECONDS, 100, valid_from_ms=T0 + hour))  # not valid yet
    short = w.add(bucket(EVENTS, 5, valid_until_ms=T0 + MINUTE))  # valid for a minute

    first = w.debit(VOICE, 10)
    assert (first.charged_micros, first.bucket_units) == (10_000, 0)  # not yet valid: 10 x 1_000 in money
    # The quote counts no free seconds: (1_000_000 - 10_000) / 1_000 = 990 s.
    assert w.read(ops.Quote(T, ALICE, VOICE, 0)).affordable_units == 990
    hold = w.reserve(VOICE, 20)
    # 20 s of money (20 x 1_000 = 20_000), none from the bucket.
    assert (hold.granted_units, hold.held_micros, hold.bucket_units, hold.bucket_micros) == (20, 20_000, 0, 0)
    assert w.do(ops.Release(T, ALICE, w.rid(), hold.reservation_id)).released_micros == 20_000

    w.now = T0 + hour - 1  # one ms before valid_from
    assert w.debit(VOICE, 10).charged_micros == 10_000
    w.now = T0 + hour  # valid_from itself: valid
    covered = w.debit(VOICE, 10)
    assert (covered.charged_micros, covered.bucket_units) == (0, 10)
    assert w.money() == (980_000, 0)  # 1_000_000 - 10_000 - 10_000
    assert w.buckets() == {early: (90, 0), short: (5, 0)}  # the events bucket expired at T0 + 1 min, unused

    w2 = World()
    short = w2.add(bucket(EVENTS, 5, valid_until_ms=T0 + MINUTE))
    w2.now = T0 + MINUTE - 1  # one ms before valid_until: valid
    assert (w2.debit(SMS, 1).bucket_units, w2.buckets()) == (1, {short: (4, 0)})
    w2.now = T0 + MINUTE  # valid_until itself: expired
    expired = w2.debit(SMS, 1)
    assert (expired.charged_micros, expired.bucket_units) == (100_000, 0)
    assert w2.money() == (900_000, 0)
    w.check()
    w2.check()


# ====================================================================== several buckets, order, filters


def test_one_direct_debit_draws_several_buckets_then_money_atomically():
    w = World()
    a = w.add(bucket(SECONDS, 30))
    b = w.add(bucket(SECONDS, 20))
    m = w.add(bucket(MONEY, 10_000))
    reply = w.debit(VOICE, 100)
    # Units: A 30 then B 20 (same weight, no expiry: creation order) = 50; 50 s priced: 50 x 1_000 = 50_000;
    # the money bucket pays 10_000, the main balance 40_000.
    assert (reply.charged_micros, reply.bucket_units, reply.bucket_micros) == (50_000, 50, 10_000)
    assert w.buckets() == {a: (0, 0), b: (0, 0), m: (0, 0)}
    assert w.money() == (960_000, 0)  # 1_000_000 - 40_000
    charge = w.state.charges[reply.charge_id]
    assert charge.amount_micros == 40_000  # the main balance's part: all a refund could return
    assert charge.bucket_draws == ((a, 30), (b, 20), (m, 10_000))
    [debit] = [r for r in w.journal if r.kind == JournalKind.DEBIT]
    assert (debit.amount_micros, debit.balance_before_micros, debit.balance_after_micros) == (40_000, 1_000_000,
                                                                                              960_000)
    assert debit.bucket_draws == ((a, 30), (b, 20), (m, 10_000))
    w.check()


def test_a_debit_the_money_cannot_pay_takes_nothing_from_any_bucket():
    w = World(balance=5_000)
    a = w.add(bucket(SECONDS, 30))
    m = w.add(bucket(MONEY, 10_000))
    denied = w.do(ops.Debit(T, ALICE, w.rid(), "", VOICE, 50, False))
    # 30 s free, 20 s priced 20_000: the money bucket's 10_000 + 5_000 of balance fall 5_000 short.
    assert denied.result == CLR
    assert w.buckets() == {a: (30, 0), m: (10_000, 0)}
    assert w.money() == (5_000, 0)
    w.check()


def test_buckets_are_consumed_by_weight_then_expiry_then_creation():
    w = World()
    hour = 3_600 * SECOND
    # Created in this order (weight, expiry):
    e1 = w.add(bucket(EVENTS, 5))  # 0, none
    e2 = w.add(bucket(EVENTS, 5, valid_until_ms=T0 + 2 * hour))  # 0, 2 h
    e3 = w.add(bucket(EVENTS, 5, weight=10, valid_until_ms=T0 + 3 * hour))  # 10, 3 h
    e4 = w.add(bucket(EVENTS, 5, weight=10, valid_until_ms=T0 + 3 * hour))  # 10, 3 h (as e3, created after)
    e5 = w.add(bucket(EVENTS, 5, valid_until_ms=T0 + hour))  # 0, 1 h
    # Weight 10 first (e3 then e4 by creation), then weight 0 by expiry: e5 (1 h), e2 (2 h), e1 (none).
    assert [b.bucket_id for b in w.balance().buckets] == [e3, e4, e5, e2, e1]
    assert [b.bucket_id for b in w.read(ops.GetAccount(T, ALICE)).buckets] == [e3, e4, e5, e2, e1]

    assert w.debit(SMS, 12).bucket_units == 12  # e3 5, e4 5, e5 2
    assert w.buckets() == {e3: (0, 0), e4: (0, 0), e5: (3, 0), e2: (5, 0), e1: (5, 0)}
    assert w.debit(SMS, 9).bucket_units == 9  # e5 3, e2 5, e1 1
    assert w.buckets() == {e3: (0, 0), e4: (0, 0), e5: (0, 0), e2: (0, 0), e1: (4, 0)}
    last = w.debit(SMS, 6)  # e1 4, then 2 events in money: 2 x 100_000
    assert (last.bucket_units, last.charged_micros, last.bucket_micros) == (4, 200_000, 0)
    assert w.buckets() == {e3: (0, 0), e4: (0, 0), e5: (0, 0), e2: (0, 0), e1: (0, 0)}
    assert w.money() == (800_000, 0)
    w.check()


def test_money_buckets_follow_the_same_order():
    w = World()
    low = w.add(bucket(MONEY, 50_000))  # weight 0
    high = w.add(bucket(MONEY, 30_000, weight=5))  # weight 5: first
    soon = w.add(bucket(MONEY, 20_000, valid_until_ms=T0 + MINUTE))  # weight 0, expires: before `low`
    reply = w.debit(SMS, 1)  # 100_000: high 30_000, soon 20_000, low 50_000, main 0
    assert (reply.charged_micros, reply.bucket_micros) == (100_000, 100_000)
    assert w.state.charges[reply.charge_id].bucket_draws == ((high, 30_000), (soon, 20_000), (low, 50_000))
    assert w.money() == (1_000_000, 0)
    w.check()


def test_filters_by_rating_group_and_destination_prefix():
    w = World()
    germany = w.add(bucket(SECONDS, 60, destination_prefixes=("49",)))  # calls to 49... only
    data = w.add(bucket(MONEY, 500_000, rating_groups=(DATA,)))  # money for data only
    france = w.add(bucket(SECONDS, 40, rating_groups=(VOICE,), destination_prefixes=("33",)))  # both filters
    other_group = w.add(bucket(SECONDS, 50, rating_groups=(FEE,)))  # seconds, but of the FEE group only

    to_berlin = w.debit(VOICE, 10, destination="4930123456")
    assert (to_berlin.charged_micros, to_berlin.bucket_units) == (0, 10)  # the 49 bucket
    to_london = w.debit(VOICE, 10, destination="4420123456")
    # No bucket applies (49 and 33 filters, the FEE group's seconds): 10 x 2_000 (the 44 rate) = 20_000.
    assert (to_london.charged_micros, to_london.bucket_units, to_london.bucket_micros) == (20_000, 0, 0)
    to_paris = w.debit(VOICE, 10, destination="33123456")
    assert (to_paris.charged_micros, to_paris.bucket_units) == (0, 10)  # the France bucket
    no_destination = w.debit(VOICE, 5)
    assert (no_destination.charged_micros, no_destination.bucket_units) == (5_000, 0)  # "" matches no prefix
    browsing = w.debit(DATA, 300_000)  # 300_000 bytes x 1 = 300_000, all from the data money bucket
    assert (browsing.charged_micros, browsing.bucket_micros, browsing.bucket_units) == (300_000, 300_000, 0)
    text = w.debit(SMS, 1)  # the data bucket does not pay for SMS: 100_000 from the balance
    assert (text.charged_micros, text.bucket_micros) == (100_000, 0)
    fee_call = w.debit(FEE, 20)  # FEE seconds bucket: 20 free; no money units, so no fee either
    assert (fee_call.charged_micros, fee_call.bucket_units) == (0, 20)

    assert w.buckets() == {germany: (50, 0), data: (200_000, 0), france: (30, 0), other_group: (30, 0)}
    assert w.money() == (875_000, 0)  # 1_000_000 - 20_000 - 5_000 - 100_000
    w.check()


# ====================================================================== holds


def test_a_hold_spans_a_unit_bucket_a_money_bucket_and_money_and_release_gives_each_back():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    purse = w.add(bucket(MONEY, 30_000))
    hold = w.reserve(VOICE, 300)
    # 100 s from the seconds bucket; 200 s priced 200 x 1_000 = 200_000: 30_000 held in the money bucket,
    # 170_000 in the main balance.
    assert (hold.granted_units, hold.bucket_units, hold.bucket_micros, hold.held_micros) == (300, 100, 30_000,
                                                                                             170_000)
    assert w.buckets() == {free: (100, 100), purse: (30_000, 30_000)}
    assert w.money() == (1_000_000, 170_000)
    reservation = w.state.reservations[hold.reservation_id]
    assert (reservation.bucket_holds, reservation.bucket_units) == (((free, 100), (purse, 30_000)), 100)

    partial = w.do(ops.Debit(T, ALICE, w.rid(), hold.reservation_id, VOICE, 60, False))
    # 60 s from the seconds bucket's hold: nothing priced.
    assert (partial.result, partial.charged_micros, partial.bucket_units, partial.bucket_micros) == (S, 0, 60, 0)
    assert w.buckets() == {free: (40, 40), purse: (30_000, 30_000)}
    assert w.money() == (1_000_000, 170_000)

    released = w.do(ops.Release(T, ALICE, w.rid(), hold.reservation_id))
    assert (released.result, released.released_micros) == (S, 170_000)
    assert w.buckets() == {free: (40, 0), purse: (30_000, 0)}  # each gets back what the hold still held
    assert w.money() == (1_000_000, 0)
    assert w.state.reservations[hold.reservation_id].bucket_holds == ()
    w.check()


def test_usage_on_a_hold_past_its_unit_bucket_takes_the_money_bucket_hold_then_the_held_money():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    purse = w.add(bucket(MONEY, 30_000))
    hold = w.reserve(VOICE, 300)  # as above: 100 s free, 30_000 in the purse, 170_000 held
    first = w.do(ops.Debit(T, ALICE, w.rid(), hold.reservation_id, VOICE, 120, False))
    # 100 s from the bucket, 20 s priced 20_000, all from the purse's hold.
    assert (first.charged_micros, first.bucket_units, first.bucket_micros) == (20_000, 100, 20_000)
    assert w.buckets() == {free: (0, 0), purse: (10_000, 10_000)}
    assert w.money() == (1_000_000, 170_000)
    final = w.do(ops.Debit(T, ALICE, w.rid(), hold.reservation_id, VOICE, 100, True))
    # 100 s more: 100_000 (the hold's rating continues at 1_000 a second): purse 10_000, held money 90_000;
    # the final debit gives back 170_000 - 90_000 = 80_000.
    assert (final.charged_micros, final.bucket_units, final.bucket_micros) == (100_000, 0, 10_000)
    assert (final.released_micros, final.overage_micros) == (80_000, 0)
    assert w.buckets() == {free: (0, 0), purse: (0, 0)}
    assert w.money() == (910_000, 0)  # 1_000_000 - 90_000
    w.check()


def test_an_expired_hold_gives_its_buckets_back():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    purse = w.add(bucket(MONEY, 30_000))
    hold = w.reserve(VOICE, 300)  # 100 s free, 30_000 in the purse, 170_000 held (as above)
    w.at(T0 + HOLD_LIFE_MS - 1)
    assert w.buckets() == {free: (100, 100), purse: (30_000, 30_000)}
    w.at(T0 + HOLD_LIFE_MS)  # the sweep expires it
    assert w.state.reservations[hold.reservation_id].state == ReservationState.EXPIRED
    assert w.buckets() == {free: (100, 0), purse: (30_000, 0)}
    assert w.money() == (1_000_000, 0)
    [expire] = [r for r in w.journal if r.kind == JournalKind.EXPIRE]
    assert (expire.reference_id, expire.amount_micros) == (hold.reservation_id, 170_000)
    # The buckets are whole again: a new debit uses them.
    again = w.debit(VOICE, 130)  # 100 s free, 30 s priced 30_000, paid by the purse
    assert (again.charged_micros, again.bucket_units, again.bucket_micros) == (30_000, 100, 30_000)
    assert w.money() == (1_000_000, 0)
    w.check()


def test_late_usage_on_an_expired_hold_is_covered_by_the_buckets_it_gave_back():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    purse = w.add(bucket(MONEY, 5_000))
    hold = w.reserve(VOICE, 60)  # 60 s, all from the seconds bucket, no money held
    assert (hold.granted_units, hold.bucket_units, hold.bucket_micros, hold.held_micros) == (60, 60, 0, 0)
    w.at(T0 + HOLD_LIFE_MS)  # expired: the bucket's 60 s are free again (still valid)
    assert w.buckets() == {free: (100, 0), purse: (5_000, 0)}
    late = w.do(ops.Debit(T, ALICE, w.rid(), hold.reservation_id, VOICE, 110, True))
    # Late, but a usage all the same: 100 s from the bucket, 10 s priced 10_000: the purse 5_000, money 5_000.
    assert (late.result, late.late, late.overage_micros) == (S, True, 0)
    assert (late.charged_micros, late.bucket_units, late.bucket_micros) == (10_000, 100, 5_000)
    assert w.buckets() == {free: (0, 0), purse: (0, 0)}
    assert w.money() == (995_000, 0)
    w.check()


def test_late_session_usage_is_covered_by_the_buckets():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    # An update of a session this shard never saw (after a failover): its usage is late.
    info = w.session(ops.UpdateSession, "adopted", 1, ops.UnitUsage(VOICE, used_units=30))
    assert info.late
    w.check()
    assert (info.charged_micros, info.bucket_units) == (0, 30)  # the core charges 30 x 1_000 = 30_000 instead
    assert w.buckets() == {free: (70, 0)}


def test_a_monetary_bucket_pays_the_connect_fee():
    w = World()
    purse = w.add(bucket(MONEY, 60_000))
    first = w.debit(FEE, 5)  # fee 50_000 + 5 x 1_000 = 55_000, all from the purse
    assert (first.charged_micros, first.bucket_micros) == (55_000, 55_000)
    assert w.buckets() == {purse: (5_000, 0)}
    second = w.debit(FEE, 5)  # a new direct debit, a new fee: 55_000 = purse 5_000 + balance 50_000
    assert (second.charged_micros, second.bucket_micros) == (55_000, 5_000)
    assert w.money() == (950_000, 0)
    assert w.state.charges[second.charge_id].amount_micros == 50_000
    w.check()


def test_a_monetary_bucket_alone_funds_a_grant_with_a_connect_fee():
    w = World(balance=0)
    purse = w.add(bucket(MONEY, 60_000))
    hold = w.reserve(FEE, 20)
    # The purse buys 10 s: 50_000 + 10 x 1_000 = 60_000 (11 s would be 61_000). All of it held in the purse.
    assert (hold.granted_units, hold.bucket_micros, hold.held_micros) == (10, 60_000, 0)
    assert w.buckets() == {purse: (60_000, 60_000)}
    used = w.do(ops.Debit(T, ALICE, w.rid(), hold.reservation_id, FEE, 10, True))
    assert (used.charged_micros, used.bucket_micros, used.released_micros, used.overage_micros) == (60_000, 60_000,
                                                                                                   0, 0)
    assert w.buckets() == {purse: (0, 0)}
    assert w.money() == (0, 0)
    w.check()


# ====================================================================== sessions


def test_a_session_uses_a_minutes_bucket_then_money_rated_cumulatively_on_the_priced_seconds():
    w = World()
    minutes = w.add(bucket(SECONDS, 90))  # 90 free seconds; MINUTES costs 1_000 a started minute
    created = w.session(ops.CreateSession, "s1", 1, ops.UnitUsage(MINUTES, requested_units=60))
    assert (created.granted_units, created.held_micros) == (60, 0)  # all 60 s from the bucket
    assert w.buckets() == {minutes: (90, 60)}

    w.now = T0 + 60 * SECOND
    u2 = w.session(ops.UpdateSession, "s1", 2, ops.UnitUsage(MINUTES, requested_units=60, used_units=60))
    assert (u2.charged_micros, u2.bucket_units) == (0, 60)  # 60 s free
    # New grant: the bucket's last 30 s + 30 s priced: billed to a started minute = 1_000 held.
    assert (u2.granted_units, u2.held_micros) == (60, 1_000)
    assert w.buckets() == {minutes: (30, 30)}

    w.now = T0 + 120 * SECOND
    u3 = w.session(ops.UpdateSession, "s1", 3, ops.UnitUsage(MINUTES, requested_units=60, used_units=60))
    # 30 s free + 30 priced seconds: the first started minute of money, 1_000, from the hold.
    assert (u3.charged_micros, u3.bucket_units, u3.bucket_micros) == (1_000, 30, 0)
    # New grant 60 s, priced after 30 priced seconds: billed to 120 s, one more minute = 1_000 held.
    assert (u3.granted_units, u3.held_micros, u3.released_micros) == (60, 1_000, 0)
    assert w.buckets() == {minutes: (0, 0)}

    w.now = T0 + 140 * SECOND
    u4 = w.session(ops.UpdateSession, "s1", 4, ops.UnitUsage(MINUTES, requested_units=60, used_units=20))
    # 30 + 20 = 50 priced seconds: still within the first started minute, already charged: 0.
    assert (u4.charged_micros, u4.released_micros) == (0, 1_000)
    # New grant after 50 priced seconds: 50 + 60 = 110, billed to 120 s: one more minute = 1_000 held.
    assert (u4.granted_units, u4.held_micros) == (60, 1_000)

    w.now = T0 + 160 * SECOND
    done = w.session(ops.ReleaseSession, "s1", 5, ops.UnitUsage(MINUTES, used_units=20))
    # 70 priced seconds: the second started minute, 1_000, from the hold; nothing left to give back.
    assert (done.charged_micros, done.released_micros) == (1_000, 0)
    # 160 s used in all: 90 free, 70 priced = 2 started minutes = 2_000 (not 3 minutes for 160 s).
    assert w.money() == (998_000, 0)
    assert w.buckets() == {minutes: (0, 0)}
    w.check()


# ====================================================================== refunds


def test_a_refund_returns_at_most_what_the_main_balance_paid():
    w = World()
    w.add(bucket(MONEY, 30_000))
    split = w.debit(SMS, 1)  # 100_000: the purse 30_000, the balance 70_000
    assert (split.charged_micros, split.bucket_micros) == (100_000, 30_000)
    too_much = w.do(ops.Refund(T, ALICE, w.rid(), split.charge_id, 70_001))
    assert (too_much.result, too_much.refundable_micros) == (Result.REFUND_EXCEEDS_CHARGE, 70_000)
    refunded = w.do(ops.Refund(T, ALICE, w.rid(), split.charge_id, 70_000))
    assert (refunded.result, refunded.refunded_micros, refunded.refundable_micros) == (S, 70_000, 0)
    assert w.money() == (1_000_000, 0)  # the main balance whole again; the purse is not refilled

    purse = w.add(bucket(MONEY, 200_000))
    by_bucket = w.debit(SMS, 1)  # 100_000, all from the new purse
    assert (by_bucket.charged_micros, by_bucket.bucket_micros) == (100_000, 100_000)
    assert w.state.charges[by_bucket.charge_id].amount_micros == 0
    nothing = w.do(ops.Refund(T, ALICE, w.rid(), by_bucket.charge_id, 1))
    assert (nothing.result, nothing.refundable_micros) == (Result.REFUND_EXCEEDS_CHARGE, 0)
    free = w.add(bucket(EVENTS, 1))
    by_units = w.debit(SMS, 1)  # one free event: nothing priced
    assert (by_units.charged_micros, by_units.bucket_units) == (0, 1)
    assert w.do(ops.Refund(T, ALICE, w.rid(), by_units.charge_id, 1)).result == Result.REFUND_EXCEEDS_CHARGE
    assert w.buckets()[purse] == (100_000, 0) and w.buckets()[free] == (0, 0)
    assert w.money() == (1_000_000, 0)
    w.check()


# ====================================================================== quotes


def test_a_quote_counts_free_units_and_money_buckets():
    w = World(balance=100_000)
    free = w.add(bucket(SECONDS, 100))
    w.add(bucket(MONEY, 50_000))
    w.add(bucket(SECONDS, 60, destination_prefixes=("49",)))
    w.add(bucket(EVENTS, 1_000))  # other unit: never counted for seconds

    quote = w.read(ops.Quote(T, ALICE, VOICE, 150))
    # 100 s free, 50 s priced: 50 x 1_000 = 50_000 (the price, whoever pays it).
    assert (quote.result, quote.cost_micros) == (S, 50_000)
    # Money: balance 100_000 + purse 50_000 = 150_000, which buys 150 s; plus 100 free s.
    assert (quote.available_micros, quote.affordable_units) == (150_000, 250)
    # To 49...: the 49 bucket counts too: 100 + 60 + 150 = 310.
    assert w.read(ops.Quote(T, ALICE, VOICE, 0, destination="4930")).affordable_units == 310
    # To 44... at 2_000 a second: 100 free + 150_000 / 2_000 = 75 -> 175.
    assert w.read(ops.Quote(T, ALICE, VOICE, 0, destination="4420")).affordable_units == 175

    hold = w.reserve(VOICE, 30)  # 30 s, all held in the first free bucket
    assert (hold.bucket_units, hold.held_micros) == (30, 0)
    assert w.buckets()[free] == (100, 30)
    # Held units are not free to quote: 70 + 150 = 220.
    assert w.read(ops.Quote(T, ALICE, VOICE, 0)).affordable_units == 220
    w.do(ops.Release(T, ALICE, w.rid(), hold.reservation_id))
    assert w.read(ops.Quote(T, ALICE, VOICE, 0)).affordable_units == 250
    w.check()


# ====================================================================== how many buckets


def test_at_most_64_buckets_unless_used_up_or_expired_ones_are_dropped():
    w = World(buckets=(
        *(bucket(MONEY, 1_000, rating_groups=(DATA,)) for _ in range(62)),  # never touched below
        bucket(EVENTS, 1),  # used up below
        bucket(SECONDS, 10, valid_until_ms=T0 + MINUTE),  # expires below
    ))
    listed = w.balance().buckets
    assert len(listed) == 64
    [one_event] = [b.bucket_id for b in listed if b.unit == EVENTS]
    [expiring] = [b.bucket_id for b in listed if b.unit == SECONDS]

    def top_up_bucket():
        return w.do(ops.TopUp(T, ALICE, w.rid(), 0, bucket=bucket(EVENTS, 5)))

    refused = top_up_bucket()
    assert (refused.result, refused.bucket_id, refused.balance_micros) == (Result.BALANCE_LIMIT_EXCEEDED, "",
                                                                           1_000_000)
    assert len(w.balance().buckets) == 64

    assert w.debit(SMS, 1).bucket_units == 1  # the one event used: that bucket is used up
    added = top_up_bucket()
    assert added.result == S and added.bucket_id
    ids = [b.bucket_id for b in w.balance().buckets]
    assert len(ids) == 64 and one_event not in ids and added.bucket_id in ids
    assert top_up_bucket().result == Result.BALANCE_LIMIT_EXCEEDED  # nothing used up or expired now

    w.now = T0 + 10 * SECOND
    hold = w.reserve(VOICE, 5)  # 5 s held in the expiring bucket
    assert hold.bucket_units == 5
    w.now = T0 + MINUTE  # the bucket expired, but a live hold holds some of it: it stays
    assert top_up_bucket().result == Result.BALANCE_LIMIT_EXCEEDED
    w.do(ops.Release(T, ALICE, w.rid(), hold.reservation_id))
    added = top_up_bucket()  # expired and held by nothing: dropped for the new one
    assert added.result == S
    ids = [b.bucket_id for b in w.balance().buckets]
    assert len(ids) == 64 and expiring not in ids and added.bucket_id in ids
    assert w.money() == (1_000_000, 0)
    w.check()

    too_many = w.do(ops.CreateAccount(T, "bob", w.rid(), "EUR", 0, PLAN.tariff_plan_id,
                                      buckets=tuple(bucket(EVENTS, 1) for _ in range(65))))
    assert isinstance(too_many, ops.Rejection)
    assert (too_many.code, too_many.field) == (ErrorCode.INVALID_ARGUMENT, "buckets")
    w.check()


def test_a_bucket_top_up_retried_adds_one_bucket():
    w = World()
    top_up = ops.TopUp(T, ALICE, "bucket-1", 0, bucket=bucket(EVENTS, 5))
    first = w.do(top_up)
    again = w.do(top_up)
    assert (first.result, first.replayed, again.result, again.replayed) == (S, False, S, True)
    assert again.bucket_id == first.bucket_id
    other = w.do(dataclasses.replace(top_up, bucket=bucket(EVENTS, 6)))
    assert isinstance(other, ops.Rejection)
    assert (other.code, other.field) == (ErrorCode.ALREADY_EXISTS, "bucket")
    assert w.buckets() == {first.bucket_id: (5, 0)}
    w.check()


def test_a_bucket_top_up_carries_no_money():
    w = World()
    rejected = w.do(ops.TopUp(T, ALICE, w.rid(), 1, bucket=bucket(EVENTS, 5)))
    assert isinstance(rejected, ops.Rejection)
    assert (rejected.code, rejected.field) == (ErrorCode.INVALID_ARGUMENT, "amount_micros")
    added = w.do(ops.TopUp(T, ALICE, w.rid(), 0, bucket=bucket(EVENTS, 5)))
    assert (added.result, added.balance_micros) == (S, 1_000_000)
    assert w.buckets() == {added.bucket_id: (5, 0)}
    w.check()


# ====================================================================== what records and CDRs say of buckets


def test_a_session_grant_says_what_buckets_hold_and_its_charges_say_what_they_paid():
    w = World()
    free = w.add(bucket(SECONDS, 100))
    purse = w.add(bucket(MONEY, 30_000))
    created = w.session(ops.CreateSession, "s1", 1, ops.UnitUsage(VOICE, requested_units=300))
    # 300 s: the bucket's 100 s; 200 s priced 200 x 1_000 = 200_000: the purse holds 30_000, the balance 170_000.
    assert (created.granted_units, created.granted_bucket_units) == (300, 100)
    assert (created.held_micros, created.held_bucket_micros) == (170_000, 30_000)
    assert w.buckets() == {free: (100, 100), purse: (30_000, 30_000)}

    w.now = T0 + 150 * SECOND
    update = w.session(ops.UpdateSession, "s1", 2, ops.UnitUsage(VOICE, requested_units=100, used_units=150))
    # 100 s from the bucket, 50 s priced 50_000: the purse's 30_000 then 20_000 of the held money.
    assert (update.charged_micros, update.bucket_units, update.bucket_micros) == (50_000, 100, 30_000)
    # New grant, no buckets left: 100 s x 1_000 = 100_000 held, all from the balance.
    assert (update.granted_units, update.granted_bucket_units, update.held_bucket_micros) == (100, 0, 0)
    assert update.held_micros == 100_000
    [debit] = [r for r in w.journal if r.kind == JournalKind.DEBIT]
    assert (debit.amount_micros, debit.bucket_units, debit.bucket_micros) == (20_000, 100, 30_000)
    assert debit.bucket_draws == ((free, 100), (purse, 30_000))

    made = cdr.cdr_of(SHARD, debit)
    assert (made["units"], made["amount_micros"], made["bucket_units"], made["bucket_micros"]) == (150, 20_000, 100,
                                                                                                   30_000)
    [header, row] = cdr.to_csv([{name: made[name] for name in cdr.FIELDS}], header=True).splitlines()
    assert header.endswith(",bucket_units,bucket_micros,bucket_draws")
    assert row.endswith(f",100,30000,{free}=100;{purse}=30000")
    text = dispute.describe(debit)
    assert f"buckets paid 100 units and 30,000 micros ({free} 100, {purse} 30,000)" in text, text

    w.now = T0 + 160 * SECOND
    w.session(ops.ReleaseSession, "s1", 3, ops.UnitUsage(VOICE, used_units=10))
    [_, last] = [r for r in w.journal if r.kind == JournalKind.DEBIT]
    assert (last.amount_micros, last.bucket_units, last.bucket_micros, last.bucket_draws) == (10_000, 0, 0, ())
    assert "buckets paid" not in dispute.describe(last)
    assert cdr.cdr_of(SHARD, last)["bucket_draws"] == []
    w.check()
