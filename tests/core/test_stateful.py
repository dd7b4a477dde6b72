"""The shard core against a small reference model (TESTING.md layer 1).

A hypothesis state machine drives ShardState with top-ups, reserves, debits
(partial, full, over the hold, late), releases, direct debits, refunds, clock
moves, expiry sweeps, crashes (rebuild from a dict "disk" holding only the
writes taken so far) and retries of the last request with the same or another
payload. A model written from DESIGN.md sections 3-5 with plain dicts (it
imports nothing of shard_state) predicts every reply; after every step the
invariants of DESIGN.md section 11 that apply to the core are checked:

1. conservation: top-ups - charges + refunds (from the replies) == sum of balances;
2. bounds: available >= 0 after every successful reserve and direct debit,
   holds >= 0, no float in any reply;
3. exactly-once: a replay returns the original reply marked replayed; a reused
   id with another payload is ALREADY_EXISTS and changes nothing;
4. durability: a crash loses only writes not yet taken (an unacknowledged
   batch), never part of one; the journal on disk is a gapless prefix;
5. lifecycle: one absorbing state per hold, expiry returns the money once and
   is journaled once, no hold outlives validity + grace;
7. GetTransaction answers every recorded request with its original reply.
(6, per-subscriber order, is the machine's sequential order itself.)
"""

import copy
import dataclasses
import importlib.util
import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import AccountState, ErrorCode, JournalKind, ReservationState, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import (
    Account, BillingCycle, Charge, IdempotencyRecord, JournalRecord, Reservation, ShardMeta,
)
from grid.domain.shard_state import ShardState

T = ops.DEFAULT_TENANT
SHARD = 3
T0 = 1_700_000_000_000
VALIDITY_S, GRACE_S = 300, 30
LIMITS = CoreLimits(validity_time_s=VALIDITY_S, expiry_grace_s=GRACE_S, reservations_per_account_max=4)
LIFETIME_MS = (VALIDITY_S + GRACE_S) * 1000

# rating group -> (price_micros, rate_units, increment_units)
RATES = {
    1: (1_000, 1, 1),  # events
    2: (7, 3, 2),  # bytes-like, with rounding residue
    3: (500, 60, 30),  # seconds, per half minute
}
UNRATED = 9
PLAN = TariffPlan(
    "plan",
    tuple(Rate(rg, Unit.EVENTS, p, ru, inc) for rg, (p, ru, inc) in RATES.items()),
)
# subscriber -> (credit limit, state); "nobody" has no account.
PEOPLE = {"alice": (0, AccountState.ACTIVE), "bob": (5_000, AccountState.ACTIVE),
          "dave": (0, AccountState.SUSPENDED)}
OPENING_BALANCE = {"alice": 30_000, "bob": 10_000, "dave": 10_000}
SUBSCRIBERS = ["alice", "bob", "dave", "nobody"]

S = Result.SUCCESS

_codec = None
if importlib.util.find_spec("grid.storage") is not None and importlib.util.find_spec("grid.storage.codec"):
    _codec = importlib.import_module("grid.storage.codec")
    if not (hasattr(_codec, "encode") and hasattr(_codec, "decode")):
        _codec = None


# ====================================================================== the reference model


def model_cost(rg: int, units: int) -> tuple[int, int]:
    """(charged micros, residue picos) from the formula, with exact rationals."""
    price, per, inc = RATES[rg]
    exact = Fraction(math.ceil(Fraction(units, inc)) * inc * price, per)
    charged = math.ceil(exact)
    return charged, math.floor((charged - exact) * 10**6)


def model_grant(rg: int, available: int, requested: int) -> int:
    """The largest grant <= requested, in whole increments unless it is the request itself."""
    if model_cost(rg, requested)[0] <= available:
        return requested
    inc = RATES[rg][2]
    best = 0
    units = inc
    while units < requested and model_cost(rg, units)[0] <= available:
        best = units
        units += inc
    return best


@dataclasses.dataclass
class Hold:
    sub: str
    rg: int
    granted: int
    used: int
    held: int
    state: str  # ACTIVE, COMMITTED, RELEASED, EXPIRED
    expires_at: int


@dataclasses.dataclass
class ChargeM:
    sub: str
    amount: int
    refunded: int


@dataclasses.dataclass
class Model:
    balances: dict  # sub -> balance (holds included)
    holds: dict = dataclasses.field(default_factory=dict)  # reservation id -> Hold
    charges: dict = dataclasses.field(default_factory=dict)  # charge id -> ChargeM
    requests: dict = dataclasses.field(default_factory=dict)  # (sub, request id) -> (operation, reply)
    expired: dict = dataclasses.field(default_factory=dict)  # reservation id -> money the expiry returned
    journaled_expiries: set = dataclasses.field(default_factory=set)
    ledger: int = 0  # top-ups - charges + refunds, from the shard's replies

    def held(self, sub: str, now: int | None = None) -> int:
        """Money held for sub; with now, what a read shows (holds past expiry hidden)."""
        return sum(
            h.held for h in self.holds.values()
            if h.sub == sub and h.state == "ACTIVE" and (now is None or h.expires_at > now)
        )

    def available(self, sub: str, now: int | None = None) -> int:
        return self.balances[sub] - self.held(sub, now) + PEOPLE[sub][0]

    # ------------------------------------------------------------ expiry
    def expire(self, now: int, sub: str | None = None) -> None:
        for rid, h in self.holds.items():
            if h.state == "ACTIVE" and h.expires_at <= now and (sub is None or h.sub == sub):
                assert rid not in self.expired
                self.expired[rid] = h.held
                h.state, h.held = "EXPIRED", 0

    # ------------------------------------------------------------ operations
    def apply(self, op, now: int, actual, *, swept: bool):
        """The reply the shard must give to op; `actual` only lends new ids."""
        if swept:
            self.expire(now)
        key = (op.subscriber_id, op.request_id)
        if key in self.requests:
            stored, reply = self.requests[key]
            field = first_difference(stored, op)
            if field is not None:
                return ops.Rejection(ErrorCode.ALREADY_EXISTS, field, _ANY)
            return dataclasses.replace(reply, replayed=True)
        self.expire(now, op.subscriber_id)
        reply = getattr(self, "_" + type(op).__name__.lower())(op, now, actual)
        if not isinstance(reply, ops.Rejection):
            self.requests[key] = (op, reply)
        return reply

    def _topup(self, op, now, actual):
        sub = op.subscriber_id
        if sub not in self.balances:
            return ops.TopUpReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        self.balances[sub] += op.amount_micros
        return ops.TopUpReply(S, balance_micros=self.balances[sub], trace_id=op.trace_id)

    def _reserve(self, op, now, actual):
        sub, rg = op.subscriber_id, op.rating_group
        denial = None
        if sub not in self.balances:
            denial = Result.USER_UNKNOWN
        elif PEOPLE[sub][1] != AccountState.ACTIVE:
            denial = Result.END_USER_SERVICE_DENIED
        elif rg not in RATES:
            denial = Result.RATING_FAILED
        elif sum(1 for h in self.holds.values() if h.sub == sub and h.state == "ACTIVE") >= 4:
            denial = Result.TOO_MANY_RESERVATIONS
        else:
            available = self.available(sub)
            granted = model_grant(rg, available, op.requested_units)
            if granted == 0:
                denial = Result.CREDIT_LIMIT_REACHED
        if denial is not None:
            return ops.ReserveReply(denial, trace_id=op.trace_id)
        held = model_cost(rg, granted)[0]
        one_more = model_cost(rg, RATES[rg][2])[0]
        rid = actual.reservation_id
        assert rid and rid not in self.holds, f"reservation id {rid!r} is not new"
        self.holds[rid] = Hold(sub, rg, granted, 0, held, "ACTIVE", now + LIFETIME_MS)
        return ops.ReserveReply(
            S, reservation_id=rid, granted_units=granted,
            final_unit_indication=granted < op.requested_units or available - held < one_more,
            validity_time_s=VALIDITY_S, held_micros=held, trace_id=op.trace_id, tariff_version=1,
        )

    def _charge(self, op, sub, amount, actual) -> str:
        cid = actual.charge_id
        assert cid and cid not in self.charges, f"charge id {cid!r} is not new"
        self.charges[cid] = ChargeM(sub, amount, 0)
        self.balances[sub] -= amount
        return cid

    def _debit(self, op, now, actual):
        sub = op.subscriber_id
        if not op.reservation_id:
            return self._direct_debit(op, now, actual)
        if sub not in self.balances:
            return ops.DebitReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        hold = self.holds.get(op.reservation_id)
        if hold is None or hold.sub != sub:
            return ops.DebitReply(Result.RESERVATION_NOT_FOUND, trace_id=op.trace_id)
        if op.rating_group not in (0, hold.rg):
            return ops.Rejection(ErrorCode.INVALID_ARGUMENT, "rating_group", _ANY)
        if hold.state == "EXPIRED":  # used already: charged late, whatever the balance, continuing the hold's rating
            total_after, residue_after = model_cost(hold.rg, hold.used + op.used_units)
            total_before, residue_before = model_cost(hold.rg, hold.used)
            charged, residue = total_after - total_before, residue_after - residue_before
            overage = max(0, charged - max(0, self.available(sub)))
            cid = self._charge(op, sub, charged, actual)
            return ops.DebitReply(
                S, charge_id=cid, charged_micros=charged, overage=overage > 0, overage_micros=overage, late=True,
                rounding_residue_picos=residue, trace_id=op.trace_id, tariff_version=1,
            )
        if hold.state != "ACTIVE":
            return ops.DebitReply(Result.RESERVATION_ALREADY_RESOLVED, trace_id=op.trace_id)
        # Usage on a hold is rated cumulatively: this report costs what it adds to the total.
        total_after, residue_after = model_cost(hold.rg, hold.used + op.used_units)
        total_before, residue_before = model_cost(hold.rg, hold.used)
        charged, residue = total_after - total_before, residue_after - residue_before
        from_hold = min(charged, hold.held)
        hold.held -= from_hold
        hold.used += op.used_units
        cid = self._charge(op, sub, charged, actual)
        released = 0
        if op.final:
            released, hold.held, hold.state = hold.held, 0, "COMMITTED"
        return ops.DebitReply(
            S, charge_id=cid, charged_micros=charged, overage=charged > from_hold or hold.used > hold.granted,
            overage_micros=charged - from_hold, released_micros=released, rounding_residue_picos=residue,
            trace_id=op.trace_id, tariff_version=1,
        )

    def _direct_debit(self, op, now, actual):
        sub = op.subscriber_id
        if sub not in self.balances:
            return ops.DebitReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        if PEOPLE[sub][1] != AccountState.ACTIVE:
            return ops.DebitReply(Result.END_USER_SERVICE_DENIED, trace_id=op.trace_id)
        if op.rating_group not in RATES:
            return ops.DebitReply(Result.RATING_FAILED, trace_id=op.trace_id)
        charged, residue = model_cost(op.rating_group, op.used_units)
        if charged > self.available(sub):
            return ops.DebitReply(Result.CREDIT_LIMIT_REACHED, trace_id=op.trace_id)
        cid = self._charge(op, sub, charged, actual)
        return ops.DebitReply(
            S, charge_id=cid, charged_micros=charged, rounding_residue_picos=residue, trace_id=op.trace_id,
            tariff_version=1,
        )

    def _release(self, op, now, actual):
        sub = op.subscriber_id
        hold = self.holds.get(op.reservation_id)
        if sub not in self.balances:
            result = Result.USER_UNKNOWN
        elif hold is None or hold.sub != sub:
            result = Result.RESERVATION_NOT_FOUND
        elif hold.state == "EXPIRED":
            result = Result.RESERVATION_EXPIRED
        elif hold.state != "ACTIVE":
            result = Result.RESERVATION_ALREADY_RESOLVED
        else:
            released, hold.held, hold.state = hold.held, 0, "RELEASED"
            return ops.ReleaseReply(S, released_micros=released, trace_id=op.trace_id)
        return ops.ReleaseReply(result, trace_id=op.trace_id)

    def _refund(self, op, now, actual):
        sub = op.subscriber_id
        charge = self.charges.get(op.charge_id)
        if sub not in self.balances:
            return ops.RefundReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        if charge is None or charge.sub != sub:
            return ops.RefundReply(Result.CHARGE_NOT_FOUND, trace_id=op.trace_id)
        refundable = charge.amount - charge.refunded
        if op.amount_micros > refundable:
            return ops.RefundReply(Result.REFUND_EXCEEDS_CHARGE, refundable_micros=refundable, trace_id=op.trace_id)
        charge.refunded += op.amount_micros
        self.balances[sub] += op.amount_micros
        return ops.RefundReply(
            S, refunded_micros=op.amount_micros, refundable_micros=refundable - op.amount_micros, trace_id=op.trace_id,
        )


class _Any:
    def __eq__(self, other):
        return isinstance(other, str) and bool(other)

    def __repr__(self):
        return "<any message>"


_ANY = _Any()
_NOT_PAYLOAD = {"tenant", "request_id", "trace_id"}


def first_difference(stored, incoming) -> str | None:
    if type(stored) is not type(incoming):
        return "operation"
    for f in dataclasses.fields(stored):
        if f.name not in _NOT_PAYLOAD and getattr(stored, f.name) != getattr(incoming, f.name):
            return f.name
    return None


# ====================================================================== the disk


def natural_key(record) -> tuple:
    if isinstance(record, Account):
        return ("account", record.tenant, record.subscriber_id)
    if isinstance(record, Reservation):
        return ("reservation", record.reservation_id)
    if isinstance(record, Charge):
        return ("charge", record.charge_id)
    if isinstance(record, IdempotencyRecord):
        return ("idempotency", record.tenant, record.subscriber_id, record.request_id)
    if isinstance(record, JournalRecord):
        return ("journal", record.sequence)
    if isinstance(record, ShardMeta):
        return ("meta",)
    if isinstance(record, TariffPlan):
        return ("tariff", record.tariff_plan_id)
    if isinstance(record, BillingCycle):
        return ("billing_cycle", *record.key)
    raise AssertionError(f"the core wrote an unknown record {record!r}")


def freeze(record):
    """What the disk keeps: the codec's bytes when there is a codec, else a deep copy
    (the core's records are mutable and must not alias the disk)."""
    return _codec.encode(record) if _codec is not None else copy.deepcopy(record)


def thaw(stored):
    return _codec.decode(stored) if _codec is not None else copy.deepcopy(stored)


def walk_for_floats(value, path="reply"):
    assert not isinstance(value, float), f"a float at {path}"
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            walk_for_floats(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            walk_for_floats(item, f"{path}[{i}]")


# ====================================================================== the machine


def _describe(op, reply) -> str:
    """A coverage label for hypothesis statistics (--hypothesis-show-statistics)."""
    name = type(op).__name__
    if isinstance(op, ops.Debit):
        name = "Debit(direct)" if not op.reservation_id else "Debit(final)" if op.final else "Debit(partial)"
    if isinstance(reply, ops.Rejection):
        return f"{name}: {reply.code.name} {reply.field}"
    flags = [flag for flag in ("replayed", "late", "overage", "final_unit_indication") if getattr(reply, flag, False)]
    if getattr(reply, "released_micros", 0):
        flags.append("released")
    return f"{name}: {reply.result.name} {' '.join(flags)}".rstrip()

STATE_NAMES = {
    ReservationState.ACTIVE: "ACTIVE", ReservationState.COMMITTED: "COMMITTED",
    ReservationState.RELEASED: "RELEASED", ReservationState.EXPIRED: "EXPIRED",
}

subscribers = st.sampled_from(["alice", "alice", "bob", "bob", "dave", "nobody"])
owners = st.sampled_from(["owner", "owner", "owner", "other"])
rating_groups = st.sampled_from([1, 1, 2, 3, UNRATED])
picks = st.integers(0, 10**6)


class ShardMachine(RuleBasedStateMachine):
    @initialize()
    def open_shard(self):
        self.now = T0
        self.shard = ShardState(SHARD, LIMITS)
        self.disk: dict = {}
        self.counter = 0
        self.model = Model(balances={sub: 0 for sub in PEOPLE})
        self.auto_commit = True
        self.last = None  # the last mutating operation sent
        assert self.shard.apply(ops.PutTariff(PLAN), self.now).result == S
        for sub, (credit, state) in PEOPLE.items():
            assert self.shard.apply(ops.CreateAccount(T, sub, self.rid(), "EUR", credit, "plan"), self.now).result == S
            if state != AccountState.ACTIVE:
                assert self.shard.apply(ops.SetAccountState(T, sub, self.rid(), state), self.now).result == S
            amount = OPENING_BALANCE[sub]
            assert self.shard.apply(ops.TopUp(T, sub, self.rid(), amount), self.now).balance_micros == amount
            self.model.balances[sub] += amount
            self.model.ledger += amount
        self.model.requests.clear()  # setup requests are not retried
        self.commit()

    # ------------------------------------------------------------ plumbing
    def rid(self) -> str:
        self.counter += 1
        return f"q{self.counter}"

    def trace(self) -> str:
        self.counter += 1
        return f"{self.counter:032x}"

    def send(self, op, via_batch: bool):
        """Apply op to the shard and to the model; compare; keep the books."""
        if via_batch:
            [reply] = self.shard.apply_batch([op], self.now)
        else:
            reply = self.shard.apply(op, self.now)
        expected = self.model.apply(op, self.now, reply, swept=via_batch)
        assert reply == expected, f"\n   op: {op}\n  got: {reply}\n want: {expected}"
        walk_for_floats(reply)
        event(_describe(op, reply))
        if getattr(reply, "result", None) == S and not reply.replayed:  # the books, from the replies
            if isinstance(reply, ops.TopUpReply):
                self.model.ledger += op.amount_micros
            elif isinstance(reply, ops.DebitReply):
                self.model.ledger -= reply.charged_micros
            elif isinstance(reply, ops.RefundReply):
                self.model.ledger += reply.refunded_micros
        if isinstance(op, ops.MUTATING_OPERATIONS):
            self.last = op
        if self.auto_commit:
            self.commit()
        return reply

    def commit(self):
        """The shell's synced write: every change since the last one, or none."""
        writes = self.shard.take_writes()
        for record in writes.puts:
            if isinstance(record, JournalRecord):
                self.check_journal_record(record)
            self.disk[natural_key(record)] = freeze(record)
        for key in writes.deleted_idempotency_keys:  # after the puts, as ShardStore.commit does
            self.disk.pop(("idempotency",) + tuple(key), None)
        for charge_id in writes.deleted_charge_ids:
            self.disk.pop(("charge", charge_id), None)
        for reservation_id in writes.deleted_reservation_ids:
            self.disk.pop(("reservation", reservation_id), None)
        self.durable = copy.deepcopy(self.model)

    def check_journal_record(self, record: JournalRecord):
        if record.kind == JournalKind.EXPIRE:
            rid = record.reference_id
            assert rid not in self.model.journaled_expiries, f"{rid} expired twice"
            self.model.journaled_expiries.add(rid)
            assert record.amount_micros == self.model.expired[rid]
            assert record.reserved_before_micros - record.reserved_after_micros == record.amount_micros
        if record.result == S and record.kind in (JournalKind.TOP_UP, JournalKind.REFUND):
            assert record.balance_after_micros - record.balance_before_micros == record.amount_micros
        if record.result == S and record.kind == JournalKind.DEBIT:
            assert record.balance_before_micros - record.balance_after_micros == record.amount_micros
        if record.result != S:
            assert record.balance_before_micros == record.balance_after_micros
            assert record.reserved_before_micros == record.reserved_after_micros

    def pick_hold(self, pick: int) -> str:
        """Mostly one of the three newest holds (where the action is), sometimes any, rarely none."""
        ids = list(self.model.holds)
        if not ids or pick % 10 == 0:
            return f"R{SHARD}-999999"
        if pick % 10 < 8:
            return ids[-1 - pick % min(3, len(ids))]
        return ids[pick % len(ids)]

    def pick_charge(self, pick: int) -> str:
        ids = list(self.model.charges)
        if not ids or pick % 10 == 0:
            return f"C{SHARD}-999999"
        return ids[pick % len(ids)]

    def who(self, owner: str, of: str) -> str:
        if owner == "owner":
            return of
        return next(s for s in SUBSCRIBERS if s != of)

    # ------------------------------------------------------------ rules: money
    @rule(sub=subscribers, amount=st.one_of(st.integers(1, 5_000), st.integers(1, 100_000)), via_batch=st.booleans())
    def top_up(self, sub, amount, via_batch):
        self.send(ops.TopUp(T, sub, self.rid(), amount, trace_id=self.trace()), via_batch)

    @rule(sub=subscribers, rg=rating_groups, units=st.integers(1, 60), via_batch=st.booleans())
    def reserve(self, sub, rg, units, via_batch):
        reply = self.send(ops.Reserve(T, sub, self.rid(), "sess", rg, units, trace_id=self.trace()), via_batch)
        if reply.result == S:
            assert self.shard.apply(ops.GetBalance(T, sub), self.now).available_micros >= 0

    @rule(pick=picks, owner=owners, used=st.one_of(st.integers(0, 12), st.integers(0, 80)), final=st.booleans(),
          rg=st.sampled_from(["none", "none", "same", "other"]), via_batch=st.booleans())
    def debit(self, pick, owner, used, final, rg, via_batch):
        rid = self.pick_hold(pick)
        hold = self.model.holds.get(rid)
        sub = self.who(owner, hold.sub if hold else "alice")
        group = {"none": 0, "same": hold.rg if hold else 0, "other": 2 if hold and hold.rg != 2 else 1}[rg]
        self.send(ops.Debit(T, sub, self.rid(), rid, group, used, final, trace_id=self.trace()), via_batch)

    @rule(sub=subscribers, rg=rating_groups, used=st.integers(1, 60), via_batch=st.booleans())
    def direct_debit(self, sub, rg, used, via_batch):
        reply = self.send(ops.Debit(T, sub, self.rid(), "", rg, used, False, trace_id=self.trace()), via_batch)
        if reply.result == S and not reply.replayed:
            assert self.shard.apply(ops.GetBalance(T, sub), self.now).available_micros >= 0

    @precondition(lambda self: self.model.holds)
    @rule(pick=picks, used=st.one_of(st.integers(0, 12), st.integers(0, 80)), final=st.booleans(),
          after_ms=st.sampled_from([0, 1, 60_000]), via_batch=st.booleans())
    def debit_after_expiry(self, pick, used, final, after_ms, via_batch):
        """Usage reported once the hold's validity + grace has passed (e.g. after a failover)."""
        rid = self.pick_hold(pick % 10 or 1)
        hold = self.model.holds[rid]
        self.now = max(self.now, hold.expires_at + after_ms)
        reply = self.send(ops.Debit(T, hold.sub, self.rid(), rid, 0, used, final, trace_id=self.trace()), via_batch)
        if reply.result == S and not reply.replayed and hold.state == "EXPIRED":
            assert reply.late

    @rule(pick=picks, owner=owners, via_batch=st.booleans())
    def release(self, pick, owner, via_batch):
        rid = self.pick_hold(pick)
        hold = self.model.holds.get(rid)
        sub = self.who(owner, hold.sub if hold else "alice")
        self.send(ops.Release(T, sub, self.rid(), rid, trace_id=self.trace()), via_batch)

    @rule(pick=picks, owner=owners, amount=st.one_of(st.integers(1, 3), st.integers(1, 20_000)),
          whole=st.booleans(), via_batch=st.booleans())
    def refund(self, pick, owner, amount, whole, via_batch):
        cid = self.pick_charge(pick)
        charge = self.model.charges.get(cid)
        sub = self.who(owner, charge.sub if charge else "alice")
        if whole and charge is not None and charge.amount > charge.refunded:
            amount = charge.amount - charge.refunded
        self.send(ops.Refund(T, sub, self.rid(), cid, amount, trace_id=self.trace()), via_batch)

    # ------------------------------------------------------------ rules: time
    @rule(ms=st.one_of(
        st.sampled_from([1, 1_000, 60_000, VALIDITY_S * 1000, LIFETIME_MS - 1, LIFETIME_MS, LIFETIME_MS + 1]),
        st.integers(0, 2 * LIFETIME_MS),
    ))
    def advance_clock(self, ms):
        self.now += ms

    @rule()
    def expire_sweep(self):
        due = sum(1 for h in self.model.holds.values() if h.state == "ACTIVE" and h.expires_at <= self.now)
        event("sweep expired holds" if due else "sweep found nothing due")
        assert self.shard.apply_batch([], self.now) == []
        self.model.expire(self.now)
        if self.auto_commit:
            self.commit()
        for r in self.shard.reservations.values():
            assert not (r.state == ReservationState.ACTIVE and r.expires_at_ms <= self.now), "a hold outlived its life"

    # ------------------------------------------------------------ rules: crash
    @rule()
    def hold_back_commits(self):
        """A batch in flight: its writes are not taken (and its replies not acknowledged)."""
        self.auto_commit = False

    @rule()
    def commit_now(self):
        self.commit()
        self.auto_commit = True

    @rule()
    def crash_and_recover(self):
        event("crash with writes not taken" if not self.auto_commit else "crash after a commit")
        self.shard = ShardState.restore(SHARD, [thaw(v) for v in self.disk.values()], LIMITS)
        self.model = copy.deepcopy(self.durable)
        self.auto_commit = True
        sequences = sorted(k[1] for k in self.disk if k[0] == "journal")
        assert sequences == list(range(1, len(sequences) + 1)), "the journal on disk has a gap"
        assert self.shard.meta.next_journal_sequence == len(sequences) + 1

    # ------------------------------------------------------------ rules: retries
    @precondition(lambda self: self.last is not None)
    @rule(via_batch=st.booleans())
    def retry_same_payload(self, via_batch):
        key = (self.last.subscriber_id, self.last.request_id)
        recorded = key in self.model.requests
        reply = self.send(dataclasses.replace(self.last, trace_id=self.trace()), via_batch)
        if recorded:
            assert reply.replayed
            assert reply == dataclasses.replace(self.model.requests[key][1], replayed=True)

    @precondition(lambda self: self.last is not None
                  and (self.last.subscriber_id, self.last.request_id) in self.model.requests)
    @rule(change_type=st.booleans())
    def retry_other_payload(self, change_type):
        op = self.last
        if change_type:
            other = ops.TopUp(T, op.subscriber_id, op.request_id, 1) if not isinstance(op, ops.TopUp) else \
                ops.Release(T, op.subscriber_id, op.request_id, "R0-0")
            field = "operation"
        elif isinstance(op, (ops.TopUp, ops.Refund)):
            other, field = dataclasses.replace(op, amount_micros=op.amount_micros + 1), "amount_micros"
        elif isinstance(op, ops.Reserve):
            other, field = dataclasses.replace(op, requested_units=op.requested_units + 1), "requested_units"
        elif isinstance(op, ops.Debit):
            other, field = dataclasses.replace(op, used_units=op.used_units + 1), "used_units"
        else:
            other, field = dataclasses.replace(op, reservation_id=op.reservation_id + "0"), "reservation_id"
        pending = bool(self.shard.take_writes()) if self.auto_commit else None
        assert pending in (None, False)
        before = copy.deepcopy((self.shard.accounts, self.shard.reservations, self.shard.charges))
        reply = self.shard.apply(other, self.now)
        assert isinstance(reply, ops.Rejection)
        assert (reply.code, reply.field) == (ErrorCode.ALREADY_EXISTS, field)
        assert (self.shard.accounts, self.shard.reservations, self.shard.charges) == before
        if self.auto_commit:
            assert not self.shard.take_writes(), "a rejected retry wrote something"

    # ------------------------------------------------------------ invariants
    @invariant()
    def shard_agrees_with_the_model(self):
        if not hasattr(self, "shard"):
            return
        self.shard.check_invariants()
        total = 0
        for sub in SUBSCRIBERS:
            b = self.shard.apply(ops.GetBalance(T, sub), self.now)
            walk_for_floats(b)
            if sub not in self.model.balances:
                assert b.result == Result.USER_UNKNOWN
                continue
            want = (self.model.balances[sub], self.model.held(sub, self.now), self.model.available(sub, self.now))
            assert (b.balance_micros, b.reserved_micros, b.available_micros) == want, sub
            assert b.reserved_micros >= 0
            total += b.balance_micros
            account = self.shard.apply(ops.GetAccount(T, sub), self.now)
            walk_for_floats(account)
            assert all(v.held_micros >= 0 and v.expires_at_ms > self.now for v in account.reservations)
            assert sum(v.held_micros for v in account.reservations) == account.reserved_micros
        assert total == self.model.ledger, "conservation: top-ups - charges + refunds != balances"
        # One state per hold, the model's; expired holds hold nothing.
        assert set(self.shard.reservations) == set(self.model.holds)
        for rid, hold in self.model.holds.items():
            r = self.shard.reservations[rid]
            assert (STATE_NAMES[r.state], r.held_micros, r.used_units) == (hold.state, hold.held, hold.used), rid
            assert (r.granted_units, r.expires_at_ms) == (hold.granted, hold.expires_at), rid
            assert r.state == ReservationState.ACTIVE or r.held_micros == 0
        for cid, charge in self.model.charges.items():
            c = self.shard.charges[cid]
            assert (c.amount_micros, c.refunded_micros) == (charge.amount, charge.refunded)

    @invariant()
    def every_recorded_request_is_resolvable(self):
        if not hasattr(self, "shard"):
            return
        for (sub, request_id), (_, reply) in self.model.requests.items():
            assert self.shard.apply(ops.GetTransaction(T, sub, request_id), self.now) == ops.TransactionReply(
                True, reply)
        if self.last is not None and (self.last.subscriber_id, self.last.request_id) not in self.model.requests:
            answer = self.shard.apply(ops.GetTransaction(T, self.last.subscriber_id, self.last.request_id), self.now)
            assert answer == ops.TransactionReply(found=False)


ShardMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestShardMachine = ShardMachine.TestCase


def test_the_disk_round_trips_through_the_codec_when_there_is_one():
    if _codec is None:
        pytest.skip("grid.storage.codec does not exist yet: the machine deep-copies instead")
    state = ShardState(SHARD, LIMITS)
    state.apply(ops.PutTariff(PLAN), T0)
    state.apply(ops.CreateAccount(T, "alice", "a", "EUR", 0, "plan"), T0)
    state.apply(ops.TopUp(T, "alice", "t", 10_000), T0)
    state.apply(ops.Reserve(T, "alice", "r", "s", 2, 5), T0)
    for record in state.take_writes().puts:
        assert thaw(freeze(record)) == record
