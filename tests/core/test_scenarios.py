"""Scenario tables for the pure shard core (TESTING.md layer 1).

Each scenario reads as: given a tariff and an account, this sequence of
operations gives these replies. Every scenario also ends with the core's own
invariant check and a conservation audit computed from the replies alone
(top-ups - charges + refunds == sum of balances, DESIGN.md invariant 1).

Conventions of the little scenario language below:
- mutating steps go through ShardState.apply_batch([op], now) (as the shard
  shell does, so due holds are swept first); reads (`balance`, `account`,
  `transaction`) go through ShardState.apply(op, now), which never sweeps, so
  they show what a read sees before the sweep ran (lazy expiry);
- `wait(seconds)` advances the clock, `sweep()` runs an empty batch;
- keyword arguments of a step are the expected reply fields, `save=` names the
  reply so later steps can refer to its reservation or charge id.
"""

import copy
import dataclasses
import itertools
from typing import Callable

import pytest

from grid.domain import operations as ops
from grid.domain import rating
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import AccountState, ErrorCode, JournalKind, ReservationState, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import IdempotencyRecord, JournalRecord
from grid.domain.shard_state import ShardState

T = ops.DEFAULT_TENANT
ALICE, BOB, NOBODY = "alice", "bob", "nobody"
SHARD = 7
T0 = 1_700_000_000_000  # ms
SECOND = 1_000
HOUR = 3_600 * SECOND
DAY = 24 * HOUR

# Rating groups of the test tariff.
EV = 1  # events: 1_000 micros each
DATA = 2  # bytes: 2_000 micros per MB, billed in 100 kB increments
VOICE = 3  # seconds: 1_000 micros per minute, per-second billing (rounding residue)
MINUTE = 4  # seconds: 1_000 micros per minute, billed per started minute
UNRATED = 99  # no rate in the plan

PLAN = TariffPlan(
    "basic",
    (
        Rate(EV, Unit.EVENTS, 1_000, 1, 1),
        Rate(DATA, Unit.BYTES, 2_000, 1_000_000, 100_000),
        Rate(VOICE, Unit.SECONDS, 1_000, 60, 1),
        Rate(MINUTE, Unit.SECONDS, 1_000, 60, 60),
    ),
)

S, CLR, UU, RF, ESD = (
    Result.SUCCESS, Result.CREDIT_LIMIT_REACHED, Result.USER_UNKNOWN, Result.RATING_FAILED,
    Result.END_USER_SERVICE_DENIED,
)


# ====================================================================== world


class World:
    """One shard with the test tariff, alice (the scenario's account) and bob
    (a bystander with 100_000 micros), and a conservation ledger fed by replies."""

    def __init__(
        self, *, balance: int = 0, credit_limit: int = 0, state: AccountState = AccountState.ACTIVE,
        limits: CoreLimits = CoreLimits(),
    ) -> None:
        self.shard = ShardState(SHARD, limits)
        self.now = T0
        self.saved: dict[str, object] = {}
        self.ledger = 0  # top-ups - charges + refunds, from SUCCESS replies
        self._ids = itertools.count(1)
        assert self.shard.apply(ops.PutTariff(PLAN), self.now).result == S
        for subscriber, credit, amount in ((ALICE, credit_limit, balance), (BOB, 0, 100_000)):
            assert self.do(ops.CreateAccount(T, subscriber, self.rid(), "EUR", credit, "basic")).result == S
            if amount:
                assert self.do(ops.TopUp(T, subscriber, self.rid(), amount)).result == S
        if state != AccountState.ACTIVE:
            assert self.do(ops.SetAccountState(T, ALICE, self.rid(), state)).result == S
        self.shard.take_writes()

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def do(self, operation):
        """Apply one operation as the shell does: one batch, sweep first."""
        [reply] = self.shard.apply_batch([operation], self.now)
        if getattr(reply, "result", None) == S and not getattr(reply, "replayed", False):
            if isinstance(reply, ops.TopUpReply):
                self.ledger += operation.amount_micros
            elif isinstance(reply, ops.DebitReply):
                self.ledger -= reply.charged_micros
            elif isinstance(reply, ops.RefundReply):
                self.ledger += reply.refunded_micros
        return reply

    def read(self, operation):
        """A read, applied alone: no sweep runs before it."""
        return self.shard.apply(operation, self.now)

    def balance(self, subscriber: str = ALICE) -> ops.BalanceReply:
        return self.read(ops.GetBalance(T, subscriber))

    def audit(self) -> None:
        self.shard.check_invariants()
        total = sum(self.balance(s).balance_micros for s in (ALICE, BOB))
        assert total == self.ledger, "conservation: top-ups - charges + refunds != balances"
        for subscriber in (ALICE, BOB):
            b = self.balance(subscriber)
            assert b.reserved_micros >= 0
            assert b.available_micros == b.balance_micros - b.reserved_micros + b.credit_limit_micros


# ====================================================================== steps


@dataclasses.dataclass
class Step:
    describe: str
    make: Callable[[World], object] | None  # builds the operation (None: only the clock moves)
    expect: dict
    save: str | None = None
    read: bool = False
    advance_ms: int = 0
    replay_of: str | None = None  # the reply must be this saved reply, marked replayed
    sweep: bool = False  # run an empty batch (the expiry sweep) after moving the clock

    def run(self, world: World):
        world.now += self.advance_ms
        if self.sweep:
            assert world.shard.apply_batch([], world.now) == []
        if self.make is None:
            return None
        operation = self.make(world)
        reply = world.read(operation) if self.read else world.do(operation)
        for name, value in self.expect.items():
            assert hasattr(reply, name), f"{self.describe}: {reply!r} has no {name}"
            assert getattr(reply, name) == value, f"{self.describe}: {name} {getattr(reply, name)!r} != {value!r}\n{reply!r}"
        if self.replay_of is not None:
            assert reply == dataclasses.replace(world.saved[self.replay_of], replayed=True), self.describe
        if self.save:
            world.saved[self.save] = reply
        return reply


def _hold(ref: str) -> Callable[[World], str]:
    return lambda w: w.saved[ref].reservation_id if ref in w.saved else ref


def _charge(ref: str) -> Callable[[World], str]:
    return lambda w: w.saved[ref].charge_id if ref in w.saved else ref


def _request_id(w: World, rid: str | None) -> str:
    return rid if rid is not None else w.rid()


def top_up(amount, *, sub=ALICE, rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(f"top up {amount}", lambda w: ops.TopUp(T, sub, _request_id(w, rid), amount), expect, save,
                replay_of=replay_of)


def reserve(units, *, rg=EV, sub=ALICE, session="s1", rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(
        f"reserve {units} of rg {rg}", lambda w: ops.Reserve(T, sub, _request_id(w, rid), session, rg, units),
        expect, save, replay_of=replay_of,
    )


def debit(hold, units, *, final=False, rg=0, sub=ALICE, rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(
        f"debit {units} on {hold}{' (final)' if final else ''}",
        lambda w: ops.Debit(T, sub, _request_id(w, rid), _hold(hold)(w), rg, units, final),
        expect, save, replay_of=replay_of,
    )


def direct(units, *, rg=EV, sub=ALICE, rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(
        f"direct debit {units} of rg {rg}", lambda w: ops.Debit(T, sub, _request_id(w, rid), "", rg, units, False),
        expect, save, replay_of=replay_of,
    )


def release(hold, *, sub=ALICE, rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(f"release {hold}", lambda w: ops.Release(T, sub, _request_id(w, rid), _hold(hold)(w)), expect, save,
                replay_of=replay_of)


def refund(charge, amount, *, sub=ALICE, rid=None, save=None, replay_of=None, **expect) -> Step:
    return Step(
        f"refund {amount} of {charge}",
        lambda w: ops.Refund(T, sub, _request_id(w, rid), _charge(charge)(w), amount), expect, save,
        replay_of=replay_of,
    )


def suspend(*, sub=ALICE, **expect) -> Step:
    return Step("suspend", lambda w: ops.SetAccountState(T, sub, w.rid(), AccountState.SUSPENDED), expect)


def balance(*, sub=ALICE, **expect) -> Step:
    return Step("get balance", lambda w: ops.GetBalance(T, sub), expect, read=True)


def transaction(rid, *, sub=ALICE, **expect) -> Step:
    return Step(f"get transaction {rid}", lambda w: ops.GetTransaction(T, sub, rid), expect, read=True)


def wait(seconds=0, *, ms=0) -> Step:
    """Advance the clock; nothing runs (no sweep)."""
    return Step(f"wait {seconds}s+{ms}ms", None, {}, advance_ms=seconds * SECOND + ms)


def sweep(seconds=0, *, ms=0) -> Step:
    """Advance the clock and run an empty batch (the expiry sweep)."""
    return Step("sweep", None, {}, advance_ms=seconds * SECOND + ms, sweep=True)


def given(**account) -> dict:
    return account


# ====================================================================== the table

VALIDITY_PLUS_GRACE_S = 300 + 30

SCENARIOS: dict[str, tuple[dict, list[Step]]] = {
    # ------------------------------------------------------------ rating
    "voice is rated per second and rounded up once to the micro": (
        given(balance=10_000),
        [
            direct(1, rg=VOICE, result=S, charged_micros=17, rounding_residue_picos=333_333),
            direct(3, rg=VOICE, result=S, charged_micros=50, rounding_residue_picos=0),
            direct(61, rg=VOICE, result=S, charged_micros=1_017, rounding_residue_picos=333_333),
            balance(balance_micros=10_000 - 17 - 50 - 1_017),
        ],
    ),
    "rounding once per charge: three 1 s charges cost more than one 3 s charge": (
        given(balance=10_000),
        [direct(1, rg=VOICE, charged_micros=17)] * 3 + [balance(balance_micros=10_000 - 51)],
    ),
    "minute billing charges every started minute": (
        given(balance=10_000),
        [
            direct(1, rg=MINUTE, charged_micros=1_000, rounding_residue_picos=0),
            direct(60, rg=MINUTE, charged_micros=1_000),
            direct(61, rg=MINUTE, charged_micros=2_000),
        ],
    ),
    "data is reserved and billed in whole 100 kB increments": (
        given(balance=10_000),
        [
            reserve(250_000, rg=DATA, save="h", result=S, granted_units=250_000, held_micros=600),
            debit("h", 1, final=True, result=S, charged_micros=200, released_micros=400),
            balance(balance_micros=9_800, reserved_micros=0),
        ],
    ),
    # ------------------------------------------------------------ reserve
    "reserve grants what was asked when the balance affords it": (
        given(balance=10_000),
        [
            reserve(5, result=S, granted_units=5, held_micros=5_000, final_unit_indication=False,
                    validity_time_s=300),
            balance(balance_micros=10_000, reserved_micros=5_000, available_micros=5_000),
        ],
    ),
    "reserve of exactly the balance is the last grant (final unit indication)": (
        given(balance=10_000),
        [
            reserve(10, result=S, granted_units=10, held_micros=10_000, final_unit_indication=True),
            balance(available_micros=0),
        ],
    ),
    "money cuts the grant: grant = affordable, final unit indication": (
        given(balance=10_500),
        [
            reserve(25, result=S, granted_units=10, held_micros=10_000, final_unit_indication=True),
            balance(balance_micros=10_500, reserved_micros=10_000, available_micros=500),
        ],
    ),
    "nothing affordable: CREDIT_LIMIT_REACHED and nothing held": (
        given(balance=999),
        [
            reserve(1, result=CLR, granted_units=0, held_micros=0, reservation_id=""),
            balance(balance_micros=999, reserved_micros=0, available_micros=999),
        ],
    ),
    "holds add up: the second reserve sees what the first holds": (
        given(balance=10_000),
        [
            reserve(6, result=S, granted_units=6, final_unit_indication=False),
            reserve(6, result=S, granted_units=4, final_unit_indication=True),
            reserve(1, result=CLR),
            balance(reserved_micros=10_000, available_micros=0),
        ],
    ),
    "credit limit extends what a postpaid account may reserve": (
        given(balance=0, credit_limit=5_000),
        [
            reserve(8, result=S, granted_units=5, held_micros=5_000, final_unit_indication=True),
            balance(balance_micros=0, reserved_micros=5_000, available_micros=0, credit_limit_micros=5_000),
        ],
    ),
    "credit limit adds to the balance": (
        given(balance=2_000, credit_limit=3_000),
        [reserve(10, result=S, granted_units=5), direct(1, result=CLR)],
    ),
    "credit limit lets a direct debit take the balance below zero, down to the limit": (
        given(balance=0, credit_limit=5_000),
        [
            direct(5, result=S, charged_micros=5_000),
            balance(balance_micros=-5_000, available_micros=0),
            direct(1, result=CLR),
        ],
    ),
    # ------------------------------------------------------------ debit against a hold
    "partial debits draw the hold down, the final one commits it": (
        given(balance=20_000),
        [
            reserve(10, save="h", held_micros=10_000),
            debit("h", 4, result=S, charged_micros=4_000, released_micros=0, overage=False, late=False),
            balance(balance_micros=16_000, reserved_micros=6_000, available_micros=10_000),
            debit("h", 6, final=True, result=S, charged_micros=6_000, released_micros=0, overage=False),
            balance(balance_micros=10_000, reserved_micros=0, available_micros=10_000),
        ],
    ),
    "a final debit below the hold returns the rest": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 3, final=True, result=S, charged_micros=3_000, released_micros=7_000),
            balance(balance_micros=17_000, reserved_micros=0, available_micros=17_000),
        ],
    ),
    "a full debit uses the whole hold and returns nothing": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 10, final=True, result=S, charged_micros=10_000, released_micros=0, overage=False,
                  overage_micros=0),
            balance(balance_micros=10_000, reserved_micros=0),
        ],
    ),
    "usage over the hold is charged in full and flagged as overage": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 15, final=True, result=S, charged_micros=15_000, overage=True, overage_micros=5_000,
                  released_micros=0),
            balance(balance_micros=5_000, reserved_micros=0, available_micros=5_000),
        ],
    ),
    "overage is never clamped, even below the floor": (
        given(balance=10_000),
        [
            reserve(10, save="h", final_unit_indication=True),
            debit("h", 12, final=True, result=S, charged_micros=12_000, overage=True, overage_micros=2_000),
            balance(balance_micros=-2_000, reserved_micros=0, available_micros=-2_000),
            reserve(1, result=CLR),
            direct(1, result=CLR),
            top_up(3_000, result=S, balance_micros=1_000),
            reserve(1, result=S, granted_units=1),
        ],
    ),
    "a partial debit over what is left of the hold is overage; the hold stays open": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 4, result=S, charged_micros=4_000, overage=False),
            debit("h", 8, result=S, charged_micros=8_000, overage=True, overage_micros=2_000),
            balance(balance_micros=8_000, reserved_micros=0),
            debit("h", 0, final=True, result=S, charged_micros=0, released_micros=0),
            debit("h", 1, result=Result.RESERVATION_ALREADY_RESOLVED),
        ],
    ),
    "debit after commit is refused and charges nothing": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 2, final=True, result=S),
            debit("h", 2, result=Result.RESERVATION_ALREADY_RESOLVED, charged_micros=0, charge_id=""),
            debit("h", 2, final=True, result=Result.RESERVATION_ALREADY_RESOLVED),
            release("h", result=Result.RESERVATION_ALREADY_RESOLVED, released_micros=0),
            balance(balance_micros=18_000, reserved_micros=0),
        ],
    ),
    "debit of a hold nobody made": (
        given(balance=20_000),
        [debit("R7-999", 1, result=Result.RESERVATION_NOT_FOUND), balance(balance_micros=20_000)],
    ),
    "a debit names the hold's own rating group or none": (
        given(balance=20_000),
        [
            reserve(5, save="h"),
            debit("h", 1, rg=EV, result=S, charged_micros=1_000),
            debit("h", 1, rg=VOICE, code=ErrorCode.INVALID_ARGUMENT, field="rating_group"),
            balance(balance_micros=19_000, reserved_micros=4_000),
        ],
    ),
    # ------------------------------------------------------------ release
    "release returns the whole remaining hold": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            debit("h", 4, result=S),
            release("h", result=S, released_micros=6_000),
            balance(balance_micros=16_000, reserved_micros=0, available_micros=16_000),
        ],
    ),
    "release twice: the second finds it resolved and returns nothing": (
        given(balance=20_000),
        [
            reserve(10, save="h"),
            release("h", result=S, released_micros=10_000),
            release("h", result=Result.RESERVATION_ALREADY_RESOLVED, released_micros=0),
            debit("h", 1, result=Result.RESERVATION_ALREADY_RESOLVED),
            balance(balance_micros=20_000, reserved_micros=0),
        ],
    ),
    "another subscriber's hold is not found": (
        given(balance=20_000),
        [
            reserve(5, sub=BOB, save="bobs"),
            release("bobs", result=Result.RESERVATION_NOT_FOUND),
            debit("bobs", 5, final=True, result=Result.RESERVATION_NOT_FOUND),
            balance(sub=BOB, reserved_micros=5_000),
            balance(balance_micros=20_000),
        ],
    ),
    # ------------------------------------------------------------ expiry
    "a hold lives validity + grace (300 s + 30 s), then expires": (
        given(balance=10_000),
        [
            reserve(5, save="h", validity_time_s=300),
            wait(VALIDITY_PLUS_GRACE_S, ms=-1),
            balance(reserved_micros=5_000, available_micros=5_000),
            wait(ms=1),
            balance(reserved_micros=0, available_micros=10_000),  # lazy: no sweep has run
            sweep(),
            balance(reserved_micros=0, available_micros=10_000, balance_micros=10_000),
            release("h", result=Result.RESERVATION_EXPIRED, released_micros=0),
        ],
    ),
    "an expired hold's money is available again": (
        given(balance=10_000),
        [
            reserve(10, save="h", final_unit_indication=True),
            reserve(1, result=CLR),
            wait(VALIDITY_PLUS_GRACE_S),
            reserve(10, result=S, granted_units=10),
        ],
    ),
    "usage reported after expiry is charged as late, even past the balance": (
        given(balance=5_000),
        [
            reserve(5, save="h", final_unit_indication=True),
            sweep(VALIDITY_PLUS_GRACE_S),
            debit("h", 8, final=True, result=S, late=True, charged_micros=8_000, overage=True,
                  overage_micros=3_000, released_micros=0),
            balance(balance_micros=-3_000, reserved_micros=0, available_micros=-3_000),
            release("h", result=Result.RESERVATION_EXPIRED),
        ],
    ),
    "late usage within the balance is late but no overage": (
        given(balance=20_000),
        [
            reserve(5, save="h"),
            wait(VALIDITY_PLUS_GRACE_S + 3_600),
            debit("h", 3, result=S, late=True, charged_micros=3_000, overage=False, overage_micros=0),
            balance(balance_micros=17_000, reserved_micros=0),
        ],
    ),
    "a refund of a late charge works like any other": (
        given(balance=5_000),
        [
            reserve(5, save="h"),
            sweep(VALIDITY_PLUS_GRACE_S),
            debit("h", 2, save="late", late=True, charged_micros=2_000),
            refund("late", 2_000, result=S, refunded_micros=2_000, refundable_micros=0),
            balance(balance_micros=5_000),
        ],
    ),
    # ------------------------------------------------------------ direct debit
    "direct debit charges at once with no hold": (
        given(balance=5_000),
        [
            direct(3, result=S, charged_micros=3_000, late=False, overage=False, released_micros=0),
            balance(balance_micros=2_000, reserved_micros=0, available_micros=2_000),
            direct(3, result=CLR, charged_micros=0, charge_id=""),
            balance(balance_micros=2_000),
            direct(2, result=S, charged_micros=2_000),
            balance(balance_micros=0, available_micros=0),
        ],
    ),
    "a direct debit cannot spend what is held": (
        given(balance=5_000),
        [reserve(4), direct(2, result=CLR), direct(1, result=S), balance(balance_micros=4_000, available_micros=0)],
    ),
    # ------------------------------------------------------------ denials
    "no rate for the rating group: RATING_FAILED, never a free charge": (
        given(balance=5_000),
        [
            reserve(1, rg=UNRATED, result=RF, granted_units=0, held_micros=0),
            direct(1, rg=UNRATED, result=RF, charged_micros=0, charge_id=""),
            balance(balance_micros=5_000, reserved_micros=0),
        ],
    ),
    "unknown subscriber: USER_UNKNOWN for every operation": (
        given(balance=5_000),
        [
            top_up(1_000, sub=NOBODY, result=UU, balance_micros=0),
            reserve(1, sub=NOBODY, result=UU),
            direct(1, sub=NOBODY, result=UU),
            debit("R7-1", 1, sub=NOBODY, result=UU),
            release("R7-1", sub=NOBODY, result=UU),
            refund("C7-1", 1, sub=NOBODY, result=UU),
            balance(sub=NOBODY, result=UU),
            Step("get account", lambda w: ops.GetAccount(T, NOBODY), {"result": UU}, read=True),
        ],
    ),
    "a suspended account may neither reserve nor direct-debit": (
        given(balance=5_000),
        [
            suspend(result=S),
            reserve(1, result=ESD, granted_units=0),
            direct(1, result=ESD, charged_micros=0),
            balance(balance_micros=5_000, reserved_micros=0),
        ],
    ),
    "usage on a hold granted before suspension is still charged": (
        given(balance=5_000),
        [reserve(2, save="h"), suspend(result=S), debit("h", 2, final=True, result=S, charged_micros=2_000)],
    ),
    # ------------------------------------------------------------ refunds
    "refunds are bounded by the charge": (
        given(balance=10_000),
        [
            direct(5, save="c", charged_micros=5_000),
            refund("c", 2_000, result=S, refunded_micros=2_000, refundable_micros=3_000),
            refund("c", 3_001, result=Result.REFUND_EXCEEDS_CHARGE, refunded_micros=0, refundable_micros=3_000),
            refund("c", 3_000, result=S, refunded_micros=3_000, refundable_micros=0),
            refund("c", 1, result=Result.REFUND_EXCEEDS_CHARGE, refundable_micros=0),
            balance(balance_micros=10_000),
        ],
    ),
    "a refund of a charge against a hold": (
        given(balance=10_000),
        [
            reserve(5, save="h"),
            debit("h", 4, final=True, save="c", charged_micros=4_000, released_micros=1_000),
            refund("c", 4_000, result=S, refundable_micros=0),
            balance(balance_micros=10_000),
        ],
    ),
    "a refund of another subscriber's charge is CHARGE_NOT_FOUND": (
        given(balance=10_000),
        [
            direct(5, sub=BOB, save="bobs"),
            refund("bobs", 1_000, result=Result.CHARGE_NOT_FOUND, refunded_micros=0, refundable_micros=0),
            refund("C7-999", 1, result=Result.CHARGE_NOT_FOUND),
            balance(balance_micros=10_000),
            balance(sub=BOB, balance_micros=95_000),
        ],
    ),
    # ------------------------------------------------------------ limits
    "a top-up may not take the balance past balance_max": (
        given(balance=600_000, limits=CoreLimits(balance_max_micros=1_000_000, amount_max_micros=1_000_000)),
        [
            top_up(400_000, result=S, balance_micros=1_000_000),
            top_up(1, result=Result.BALANCE_LIMIT_EXCEEDED, balance_micros=1_000_000),
            balance(balance_micros=1_000_000),
        ],
    ),
    "too many holds at once: TOO_MANY_RESERVATIONS until one resolves or expires": (
        given(balance=100_000, limits=CoreLimits(reservations_per_account_max=2)),
        [
            reserve(1, save="h1", result=S),
            reserve(1, save="h2", result=S),
            reserve(1, result=Result.TOO_MANY_RESERVATIONS, granted_units=0),
            balance(reserved_micros=2_000),
            release("h1", result=S),
            reserve(1, result=S),
            reserve(1, result=Result.TOO_MANY_RESERVATIONS),
            wait(VALIDITY_PLUS_GRACE_S),
            reserve(1, result=S),
            reserve(1, result=S),
        ],
    ),
    # ------------------------------------------------------------ idempotency
    "a retried top-up is answered from the record, with no new effect": (
        given(balance=0),
        [
            top_up(1_000, rid="t", save="first", result=S, balance_micros=1_000, replayed=False),
            top_up(1_000, rid="t", replay_of="first", replayed=True, balance_micros=1_000),
            balance(balance_micros=1_000),
            top_up(1_000, rid="t2", result=S, balance_micros=2_000),
        ],
    ),
    "a retried reserve returns the same hold, not a second one": (
        given(balance=10_000),
        [
            reserve(4, rid="r", save="first", result=S),
            reserve(4, rid="r", replay_of="first"),
            balance(reserved_micros=4_000),
        ],
    ),
    "a retried debit charges once": (
        given(balance=10_000),
        [
            reserve(4, save="h"),
            debit("h", 3, final=True, rid="d", save="first", result=S, charged_micros=3_000),
            debit("h", 3, final=True, rid="d", replay_of="first"),
            balance(balance_micros=7_000, reserved_micros=0),
        ],
    ),
    "a retried release after the hold expired still answers SUCCESS": (
        given(balance=10_000),
        [
            reserve(4, save="h"),
            release("h", rid="rel", save="first", result=S, released_micros=4_000),
            sweep(VALIDITY_PLUS_GRACE_S),
            release("h", rid="rel", replay_of="first"),
        ],
    ),
    "a denial is replayed as the same denial even when a new attempt would succeed": (
        given(balance=0),
        [
            reserve(5, rid="r", save="denied", result=CLR),
            top_up(10_000, result=S),
            reserve(5, rid="r", replay_of="denied", result=CLR),
            balance(reserved_micros=0, available_micros=10_000),
            reserve(5, rid="r-new", result=S, granted_units=5),
        ],
    ),
    "a request id reused with another payload changes nothing": (
        given(balance=0),
        [
            top_up(1_000, rid="t", result=S),
            top_up(2_000, rid="t", code=ErrorCode.ALREADY_EXISTS, field="amount_micros"),
            reserve(1, rid="t", code=ErrorCode.ALREADY_EXISTS, field="operation"),
            balance(balance_micros=1_000, reserved_micros=0),
        ],
    ),
    "request ids are per subscriber": (
        given(balance=0),
        [
            top_up(1_000, rid="same", result=S, balance_micros=1_000),
            top_up(1_000, sub=BOB, rid="same", result=S, balance_micros=101_000, replayed=False),
        ],
    ),
    "GetTransaction answers applied (with the reply) or unknown": (
        given(balance=0),
        [
            transaction("t", found=False, reply=None),
            reserve(5, rid="denied", result=CLR),
            transaction("denied", found=True, reply=ops.ReserveReply(CLR)),
            top_up(1_000, rid="t", result=S),
            transaction("t", found=True, reply=ops.TopUpReply(S, balance_micros=1_000)),
            transaction("t", sub=BOB, found=False),
            top_up(1_000, rid="t", replayed=True),
            transaction("t", found=True, reply=ops.TopUpReply(S, balance_micros=1_000)),  # never changes
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    account, steps = SCENARIOS[name]
    world = World(**account)
    for step in steps:
        step.run(world)
    world.audit()


# ====================================================================== rating formula


@pytest.mark.parametrize(
    "price, rate_units, increment, units, charged, residue_picos",
    [
        (1_000, 1, 1, 5, 5_000, 0),
        (1_000, 1, 1, 0, 0, 0),  # nothing used costs nothing
        (1_000, 60, 1, 1, 17, 333_333),  # 16.666.. -> 17
        (1_000, 60, 1, 60, 1_000, 0),
        (1_000, 60, 60, 1, 1_000, 0),  # a started minute is a minute
        (1_000, 60, 60, 61, 2_000, 0),
        (1_000, 1, 10, 11, 20_000, 0),
        (2_000, 1_000_000, 100_000, 1, 200, 0),
        (2_000, 1_000_000, 100_000, 100_001, 400, 0),
        (1, 3, 1, 1, 1, 666_666),  # 0.333.. -> 1
        (1, 3, 1, 2, 1, 333_333),
        (1, 3, 1, 3, 1, 0),
        (7, 10, 3, 4, 5, 800_000),  # ceil(4/3)*3 = 6 units; 6*7/10 = 4.2 -> 5
        (0, 1, 1, 10, 0, 0),
        (10**15, 1, 1, 1, 10**15, 0),
        (1, 10**18, 1, 10**15, 1, 999_000),  # 0.001 -> 1
    ],
)
def test_rating_formula(price, rate_units, increment, units, charged, residue_picos):
    rate = Rate(1, Unit.EVENTS, price, rate_units, increment)
    cost = rating.cost(rate, units)
    assert (cost.charged_micros, cost.rounding_residue_picos) == (charged, residue_picos)
    assert type(cost.charged_micros) is int and type(cost.rounding_residue_picos) is int


@pytest.mark.parametrize(
    "price, rate_units, increment, available, cap, granted",
    [
        (1_000, 1, 1, 10_500, 25, 10),
        (1_000, 1, 1, 10_000, 25, 10),
        (1_000, 1, 1, 9_999, 25, 9),
        (1_000, 1, 1, 999, 25, 0),
        (1_000, 1, 1, 0, 25, 0),
        (1_000, 1, 1, -5, 25, 0),
        (1_000, 1, 1, 10**9, 25, 25),
        (1_000, 60, 60, 2_999, 1_000, 120),  # two whole minutes, not 179 s
        (1_000, 60, 60, 10_000, 7, 7),  # cap not a multiple of the increment: granted as asked
        (1, 3, 1, 1, 100, 3),  # 3 units cost exactly 1 micro
        (0, 1, 1, 0, 42, 42),  # free: the cap
    ],
)
def test_affordable_units(price, rate_units, increment, available, cap, granted):
    rate = Rate(1, Unit.EVENTS, price, rate_units, increment)
    assert rating.affordable_units(rate, available, cap) == granted


# ====================================================================== reserve under pressure


def test_200_reserves_against_a_balance_covering_50_grant_exactly_50():
    world = World(balance=50_000)
    batch = [ops.Reserve(T, ALICE, f"r{i}", f"s{i}", EV, 1) for i in range(200)]
    replies = world.shard.apply_batch(batch, world.now)
    granted = [r for r in replies if r.result == S]
    assert len(granted) == 50
    assert all(r.granted_units == 1 and r.held_micros == 1_000 for r in granted)
    assert [r.result for r in replies[:50]] == [S] * 50
    assert all(r.result == CLR and r.held_micros == 0 for r in replies[50:])
    assert [r.final_unit_indication for r in granted] == [False] * 49 + [True]
    assert len({r.reservation_id for r in granted}) == 50
    b = world.balance()
    assert (b.balance_micros, b.reserved_micros, b.available_micros) == (50_000, 50_000, 0)
    world.audit()


# ====================================================================== expiry, in detail


def test_expiry_is_journaled_once_by_the_sweep_and_reads_are_lazy_before_it():
    world = World(balance=10_000)
    held = world.do(ops.Reserve(T, ALICE, "r", "s", EV, 4))
    rid = held.reservation_id
    reservation = world.shard.reservations[rid]
    assert reservation.expires_at_ms == T0 + VALIDITY_PLUS_GRACE_S * SECOND
    world.shard.take_writes()

    due = T0 + VALIDITY_PLUS_GRACE_S * SECOND
    assert world.shard.expire_due(due - 1) == 0
    assert not world.shard.take_writes()

    # Due but not swept: the read already hides the hold; the record is still ACTIVE.
    view = world.shard.apply(ops.GetBalance(T, ALICE), due)
    assert (view.reserved_micros, view.available_micros) == (0, 10_000)
    account_view = world.shard.apply(ops.GetAccount(T, ALICE), due)
    assert account_view.reservations == () and account_view.reserved_micros == 0
    assert reservation.state == ReservationState.ACTIVE
    assert not world.shard.take_writes(), "a read writes nothing"

    assert world.shard.apply_batch([], due) == []
    assert reservation.state == ReservationState.EXPIRED
    writes = world.shard.take_writes()
    journal = [p for p in writes.puts if isinstance(p, JournalRecord)]
    assert len(journal) == 1
    [record] = journal
    assert record.kind == JournalKind.EXPIRE and record.result == S
    assert record.reference_id == rid and record.amount_micros == 4_000
    assert (record.balance_before_micros, record.balance_after_micros) == (10_000, 10_000)
    assert (record.reserved_before_micros, record.reserved_after_micros) == (4_000, 0)
    assert record.at_ms == due
    assert world.shard.reservations[rid] in writes.puts

    # Funds come back exactly once: later sweeps and reads find nothing more to return.
    assert world.shard.expire_due(due + DAY // 2) == 0
    assert not [p for p in world.shard.take_writes().puts if isinstance(p, JournalRecord)]
    assert world.balance().reserved_micros == 0
    assert world.shard.accounts[(T, ALICE)].reserved_micros == 0
    world.audit()


def test_the_sweep_expires_every_due_hold_of_every_account_and_only_those():
    world = World(balance=10_000)
    early = world.do(ops.Reserve(T, ALICE, "a1", "s", EV, 1)).reservation_id
    world.now += 100 * SECOND
    late = world.do(ops.Reserve(T, ALICE, "a2", "s", EV, 1)).reservation_id
    bobs = world.do(ops.Reserve(T, BOB, "b1", "s", EV, 1)).reservation_id
    assert world.shard.expire_due(T0 + VALIDITY_PLUS_GRACE_S * SECOND) == 1
    states = {rid: world.shard.reservations[rid].state for rid in (early, late, bobs)}
    assert states == {early: ReservationState.EXPIRED, late: ReservationState.ACTIVE, bobs: ReservationState.ACTIVE}
    assert world.shard.expire_due(T0 + (100 + VALIDITY_PLUS_GRACE_S) * SECOND) == 2
    world.shard.check_invariants()


def test_the_next_operation_on_the_account_journals_the_expiry_before_its_own_effect():
    world = World(balance=10_000)
    rid = world.do(ops.Reserve(T, ALICE, "r", "s", EV, 10)).reservation_id
    world.shard.take_writes()
    # No sweep: apply() alone, as a shell that sweeps rarely would.
    reply = world.shard.apply(ops.Reserve(T, ALICE, "r2", "s", EV, 10), T0 + VALIDITY_PLUS_GRACE_S * SECOND)
    assert reply.result == S and reply.granted_units == 10
    journal = sorted((p for p in world.shard.take_writes().puts if isinstance(p, JournalRecord)),
                     key=lambda r: r.sequence)
    assert [(r.kind, r.reference_id) for r in journal] == [
        (JournalKind.EXPIRE, rid), (JournalKind.RESERVE, reply.reservation_id),
    ]


# ====================================================================== journal


def _journal(writes) -> list[JournalRecord]:
    return sorted((p for p in writes.puts if isinstance(p, JournalRecord)), key=lambda r: r.sequence)


def test_journal_has_one_record_per_effect_with_balance_before_and_after():
    world = World(balance=0)
    shard = world.shard
    rows = []

    def run(operation):
        reply = world.do(operation)
        writes = shard.take_writes()
        journal = _journal(writes)
        rows.extend(journal)
        if getattr(reply, "replayed", False):
            assert not writes, "a replay writes nothing"
        elif isinstance(operation, ops.MUTATING_OPERATIONS):
            assert len(journal) >= 1
            # The idempotency record travels in the same storage batch as the effect.
            keys = {(p.tenant, p.subscriber_id, p.request_id) for p in writes.puts if isinstance(p, IdempotencyRecord)}
            assert (operation.tenant, operation.subscriber_id, operation.request_id) in keys
        return reply

    run(ops.TopUp(T, ALICE, "t", 10_000))
    h = run(ops.Reserve(T, ALICE, "r", "s", EV, 5)).reservation_id
    run(ops.Debit(T, ALICE, "d1", h, 0, 2, False))
    charge = run(ops.Debit(T, ALICE, "d2", h, 0, 1, True)).charge_id
    direct_charge = run(ops.Debit(T, ALICE, "dd", "", EV, 1, False)).charge_id
    run(ops.Refund(T, ALICE, "rf", direct_charge, 500))
    h2 = run(ops.Reserve(T, ALICE, "r2", "s", EV, 3)).reservation_id
    world.now += VALIDITY_PLUS_GRACE_S * SECOND
    run(ops.Release(T, ALICE, "rel", "R7-999"))  # the account's due hold expires first, then the denial
    run(ops.Debit(T, ALICE, "voice", "", VOICE, 1, False))
    # A replay journals nothing.
    run(ops.TopUp(T, ALICE, "t", 10_000))

    got = [
        (r.kind, r.result, r.reference_id, r.amount_micros, r.balance_before_micros, r.balance_after_micros,
         r.reserved_before_micros, r.reserved_after_micros)
        for r in rows
    ]
    K = JournalKind
    assert got == [
        (K.TOP_UP, S, "", 10_000, 0, 10_000, 0, 0),
        (K.RESERVE, S, h, 5_000, 10_000, 10_000, 0, 5_000),
        (K.DEBIT, S, rows[2].reference_id, 2_000, 10_000, 8_000, 5_000, 3_000),
        (K.DEBIT, S, charge, 1_000, 8_000, 7_000, 3_000, 0),  # final: the rest (2_000) is released
        (K.DEBIT, S, direct_charge, 1_000, 7_000, 6_000, 0, 0),
        (K.REFUND, S, direct_charge, 500, 6_000, 6_500, 0, 0),
        (K.RESERVE, S, h2, 3_000, 6_500, 6_500, 0, 3_000),
        (K.EXPIRE, S, h2, 3_000, 6_500, 6_500, 3_000, 0),
        (K.RELEASE, Result.RESERVATION_NOT_FOUND, "R7-999", 0, 6_500, 6_500, 0, 0),
        (K.DEBIT, S, rows[9].reference_id, 17, 6_500, 6_483, 0, 0),
    ]
    sequences = [r.sequence for r in rows]
    assert sequences == list(range(sequences[0], sequences[0] + len(rows))), "no gaps, no repeats"
    assert all(r.tenant == T and r.subscriber_id == ALICE for r in rows)
    assert all(r.at_ms in (T0, T0 + VALIDITY_PLUS_GRACE_S * SECOND) for r in rows)
    voice = rows[-1]
    assert (voice.rounding_residue_picos, voice.tariff_plan_id, voice.tariff_version, voice.rating_group) == (
        333_333, "basic", 1, VOICE,
    )
    assert rows[2].units == 2 and rows[1].units == 5
    assert rows[0].request_id == "t" and rows[7].request_id == "r2"  # an expiry names the hold's request
    world.audit()


def test_journal_records_carry_the_trace_id_of_the_operation():
    world = World(balance=10_000)
    world.do(ops.Debit(T, ALICE, "d", "", EV, 1, False, trace_id="0af7651916cd43dd8448eb211c80319c"))
    [record] = _journal(world.shard.take_writes())
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_late_debit_journal_is_flagged_late_with_its_overage():
    world = World(balance=1_000)
    rid = world.do(ops.Reserve(T, ALICE, "r", "s", EV, 1)).reservation_id
    world.now += VALIDITY_PLUS_GRACE_S * SECOND
    world.shard.take_writes()
    reply = world.do(ops.Debit(T, ALICE, "d", rid, 0, 3, True))
    assert reply.late and reply.overage_micros == 2_000
    journal = _journal(world.shard.take_writes())
    assert [r.kind for r in journal] == [JournalKind.EXPIRE, JournalKind.DEBIT]
    assert journal[1].late and journal[1].overage_micros == 2_000
    assert (journal[1].balance_before_micros, journal[1].balance_after_micros) == (1_000, -2_000)


def test_denials_are_journaled_and_change_no_money():
    world = World(balance=500)
    world.do(ops.Reserve(T, ALICE, "r", "s", EV, 1))
    world.do(ops.Debit(T, ALICE, "d", "", UNRATED, 1, False))
    world.do(ops.Reserve(T, NOBODY, "n", "s", EV, 1))
    journal = _journal(world.shard.take_writes())
    assert [(r.kind, r.result, r.subscriber_id) for r in journal] == [
        (JournalKind.RESERVE, CLR, ALICE), (JournalKind.DEBIT, RF, ALICE), (JournalKind.RESERVE, UU, NOBODY),
    ]
    assert all(r.balance_before_micros == r.balance_after_micros for r in journal)
    assert all(r.reserved_before_micros == r.reserved_after_micros == 0 for r in journal)


# ====================================================================== idempotency, in detail


def _write_free(world: World) -> None:
    assert not world.shard.take_writes(), "expected no new effect"


def test_a_replay_has_no_new_effect_and_keeps_the_original_trace_id():
    world = World(balance=10_000)
    first = world.do(ops.Debit(T, ALICE, "d", "", EV, 2, False, trace_id="first-trace"))
    world.shard.take_writes()
    replay = world.do(ops.Debit(T, ALICE, "d", "", EV, 2, False, trace_id="retry-trace"))
    assert replay == dataclasses.replace(first, replayed=True)
    assert replay.trace_id == "first-trace" and replay.charge_id == first.charge_id
    _write_free(world)
    assert world.balance().balance_micros == 8_000
    assert len(world.shard.charges) == 1
    # GetTransaction answers the original reply, not the replay.
    assert world.read(ops.GetTransaction(T, ALICE, "d")) == ops.TransactionReply(True, first)


RETRIES = [
    # (original, retry with the same request id, differing field)
    (ops.TopUp(T, ALICE, "x", 1_000), ops.TopUp(T, ALICE, "x", 2_000), "amount_micros"),
    (ops.Reserve(T, ALICE, "x", "s1", EV, 5), ops.Reserve(T, ALICE, "x", "s1", EV, 6), "requested_units"),
    (ops.Reserve(T, ALICE, "x", "s1", EV, 5), ops.Reserve(T, ALICE, "x", "s2", EV, 5), "session_id"),
    (ops.Reserve(T, ALICE, "x", "s1", EV, 5), ops.Reserve(T, ALICE, "x", "s1", VOICE, 5), "rating_group"),
    (ops.Debit(T, ALICE, "x", "", EV, 1, False), ops.Debit(T, ALICE, "x", "", EV, 2, False), "used_units"),
    (ops.Debit(T, ALICE, "x", "", EV, 1, False), ops.Debit(T, ALICE, "x", "", VOICE, 1, False), "rating_group"),
    (ops.Debit(T, ALICE, "x", "HOLD", 0, 1, False), ops.Debit(T, ALICE, "x", "HOLD", 0, 1, True), "final"),
    (ops.Debit(T, ALICE, "x", "HOLD", 0, 1, False), ops.Debit(T, ALICE, "x", "", EV, 1, False), "reservation_id"),
    (ops.Release(T, ALICE, "x", "HOLD"), ops.Release(T, ALICE, "x", "R7-999"), "reservation_id"),
    (ops.Refund(T, ALICE, "x", "CHARGE", 1), ops.Refund(T, ALICE, "x", "CHARGE", 2), "amount_micros"),
    (ops.Refund(T, ALICE, "x", "CHARGE", 1), ops.Refund(T, ALICE, "x", "C7-999", 1), "charge_id"),
    (ops.TopUp(T, ALICE, "x", 1_000), ops.Reserve(T, ALICE, "x", "s1", EV, 1), "operation"),
    (ops.SetAccountState(T, ALICE, "x", AccountState.SUSPENDED),
     ops.SetAccountState(T, ALICE, "x", AccountState.ACTIVE), "state"),
    (ops.CreateAccount(T, "carol", "x", "EUR", 0, "basic"), ops.CreateAccount(T, "carol", "x", "USD", 0, "basic"),
     "currency"),
    (ops.CreateAccount(T, "carol", "x", "EUR", 0, "basic"), ops.CreateAccount(T, "carol", "x", "EUR", 1, "basic"),
     "credit_limit_micros"),
]


def _fill(world: World, operation):
    """Give HOLD and CHARGE placeholders real ids of alice's."""
    changes = {}
    if getattr(operation, "reservation_id", None) == "HOLD":
        changes["reservation_id"] = world.saved["hold"].reservation_id
    if getattr(operation, "charge_id", None) == "CHARGE":
        changes["charge_id"] = world.saved["charge"].charge_id
    return dataclasses.replace(operation, **changes) if changes else operation


@pytest.mark.parametrize("original, retry, field", RETRIES, ids=[f"{type(o).__name__}-{f}" for o, _, f in RETRIES])
def test_a_reused_request_id_with_another_payload_is_rejected_naming_the_field(original, retry, field):
    world = World(balance=50_000)
    world.saved["hold"] = world.do(ops.Reserve(T, ALICE, "h", "s", EV, 5))
    world.saved["charge"] = world.do(ops.Debit(T, ALICE, "c", "", EV, 5, False))
    first = world.do(_fill(world, original))
    assert not isinstance(first, ops.Rejection)
    world.shard.take_writes()
    before = world.shard.apply(ops.GetAccount(T, ALICE), world.now)

    reply = world.do(_fill(world, retry))
    assert isinstance(reply, ops.Rejection)
    assert (reply.code, reply.field) == (ErrorCode.ALREADY_EXISTS, field)
    assert reply.message
    _write_free(world)
    assert world.shard.apply(ops.GetAccount(T, ALICE), world.now) == before
    # The id still answers with the original, for the original payload.
    assert world.read(ops.GetTransaction(T, original.subscriber_id, "x")) == ops.TransactionReply(True, first)
    assert world.do(_fill(world, original)) == dataclasses.replace(first, replayed=True)


def test_idempotency_records_are_forgotten_after_the_horizon():
    world = World(balance=0)
    world.do(ops.TopUp(T, ALICE, "t", 1_000))
    world.shard.take_writes()
    horizon_ms = CoreLimits().idempotency_horizon_s * SECOND
    assert horizon_ms >= DAY

    world.now = T0 + horizon_ms
    assert world.shard.apply_batch([], world.now) == []
    assert world.read(ops.GetTransaction(T, ALICE, "t")).found
    assert not world.shard.take_writes().deleted_idempotency_keys

    world.now += 1
    world.shard.apply_batch([], world.now)
    writes = world.shard.take_writes()
    assert (T, ALICE, "t") in writes.deleted_idempotency_keys
    assert world.read(ops.GetTransaction(T, ALICE, "t")) == ops.TransactionReply(found=False)
    # Past the horizon the id is new again: it takes effect (clients never retry that late).
    assert world.do(ops.TopUp(T, ALICE, "t", 1_000)) == ops.TopUpReply(S, balance_micros=2_000)
    world.audit()


def test_the_horizon_is_configurable():
    world = World(balance=0, limits=CoreLimits(idempotency_horizon_s=60))
    world.do(ops.TopUp(T, ALICE, "t", 1_000))
    world.now += 60 * SECOND + 1
    world.shard.apply_batch([], world.now)
    assert not world.read(ops.GetTransaction(T, ALICE, "t")).found
    # The setup's own records (older) are gone too; none of bob's survive either.
    assert not world.shard.idempotency


# ====================================================================== validation

LONG = "x" * 129
BAD_IDS = ["", " lead", "trail ", "tab\there", "new\nline", LONG, 5, None]


def _valid_operations() -> dict[str, object]:
    return {
        "CreateAccount": ops.CreateAccount(T, "carol", "v", "EUR", 0, "basic"),
        "SetAccountState": ops.SetAccountState(T, ALICE, "v", AccountState.SUSPENDED),
        "TopUp": ops.TopUp(T, ALICE, "v", 1_000),
        "Reserve": ops.Reserve(T, ALICE, "v", "s1", EV, 1),
        "Debit": ops.Debit(T, ALICE, "v", "R7-1", 0, 1, False),
        "DirectDebit": ops.Debit(T, ALICE, "v", "", EV, 1, False),
        "Release": ops.Release(T, ALICE, "v", "R7-1"),
        "Refund": ops.Refund(T, ALICE, "v", "C7-1", 1),
        "PutTariff": ops.PutTariff(TariffPlan("other", (Rate(1, Unit.EVENTS, 1, 1, 1),))),
        "GetBalance": ops.GetBalance(T, ALICE),
        "GetAccount": ops.GetAccount(T, ALICE),
        "GetTransaction": ops.GetTransaction(T, ALICE, "v"),
        "GetTariff": ops.GetTariff("basic"),
    }


VALID = _valid_operations()
KEYED = [name for name in VALID if name not in ("PutTariff", "GetTariff")]
MUTATING = [name for name, op in VALID.items() if isinstance(op, ops.MUTATING_OPERATIONS)]


def _rate(**changes) -> Rate:
    return dataclasses.replace(Rate(1, Unit.EVENTS, 1, 1, 1), **changes)


def _plan(rates=None, plan_id="other") -> ops.PutTariff:
    return ops.PutTariff(TariffPlan(plan_id, (_rate(),) if rates is None else rates))


def _bad_cases():
    cases = []

    def add(name, field, operation, value_label):
        cases.append(pytest.param(name, operation, field, id=f"{name}-{field}-{value_label}"))

    for name in KEYED:
        for index, bad in enumerate(BAD_IDS):
            add(name, "tenant", dataclasses.replace(VALID[name], tenant=bad), index)
            add(name, "subscriber_id", dataclasses.replace(VALID[name], subscriber_id=bad), index)
    for name in MUTATING + ["GetTransaction"]:
        for index, bad in enumerate(BAD_IDS):
            add(name, "request_id", dataclasses.replace(VALID[name], request_id=bad), index)

    def each(name, field, values):
        for index, value in enumerate(values):
            add(name, field, dataclasses.replace(VALID[name], **{field: value}), index)

    each("CreateAccount", "currency", ["", "eur", "EURO", "EU", "€UR", " EUR", 978, None])
    each("CreateAccount", "credit_limit_micros", [-1, 10**15 + 1, 1.5, 0.0, True, "0", None])
    each("CreateAccount", "tariff_plan_id", ["", LONG, " basic", None])
    each("SetAccountState", "state", [AccountState.ACCOUNT_STATE_UNSPECIFIED, 0, 4, -1, "ACTIVE", None])
    each("TopUp", "amount_micros", [0, -1, 10**15 + 1, 2**63, 1.5, 1000.0, True, "1000", None])
    each("Reserve", "session_id", ["", " s", LONG, None])
    each("Reserve", "rating_group", [0, -1, 2**32, True, 1.0, "1", None])
    each("Reserve", "requested_units", [0, -1, 10**15 + 1, 2.0, False, "1", None])
    each("Debit", "reservation_id", [LONG, " R7-1", "R7\x001", 7])
    each("Debit", "rating_group", [-1, 2**32, 1.0, "1", None])
    each("Debit", "used_units", [-1, 10**15 + 1, 1.0, "1", None])
    each("Debit", "final", ["yes", None, 1, 0])
    each("DirectDebit", "rating_group", [0, -1, 2**32, 1.0, None])
    each("DirectDebit", "used_units", [0, -1, 10**15 + 1, 1.0, None])
    each("DirectDebit", "final", [True, 1, "no", None])
    each("Release", "reservation_id", ["", LONG, " R", None])
    each("Refund", "charge_id", ["", LONG, "C\n", None])
    each("Refund", "amount_micros", [0, -1, 10**15 + 1, 1.5, True, None])
    each("GetTariff", "tariff_plan_id", ["", LONG, None])

    add("PutTariff", "tariff_plan_id", _plan(plan_id=""), "empty")
    add("PutTariff", "tariff_plan_id", _plan(plan_id=LONG), "long")
    add("PutTariff", "rates", _plan(rates=()), "none")
    add("PutTariff", "rates[1].rating_group", _plan(rates=(_rate(), _rate())), "duplicate")
    for field, values in {
        "rating_group": [0, -1, 2**32, 1.0],
        "unit": [Unit.UNIT_UNSPECIFIED, 0, 9, "EVENTS", None],
        "price_micros": [-1, 10**15 + 1, 0.5, True, None],
        "rate_units": [0, -1, 2**64, 1.0, None],
        "increment_units": [0, -1, 10**15 + 1, 1.0, None],
    }.items():
        for index, value in enumerate(values):
            add("PutTariff", f"rates[0].{field}", _plan(rates=(_rate(**{field: value}),)), index)
            if field != "rating_group":
                add("PutTariff", f"rates[1].{field}",
                    _plan(rates=(_rate(), _rate(rating_group=2, **{field: value}))), index)
    too_many = tuple(_rate(rating_group=g) for g in range(1, CoreLimits().rates_per_plan_max + 2))
    add("PutTariff", "rates", _plan(rates=too_many), "too-many")
    return cases


def _snapshot(world: World):
    shard = world.shard
    return (
        copy.deepcopy(shard.accounts), copy.deepcopy(shard.reservations), copy.deepcopy(shard.charges),
        dict(shard.idempotency), dict(shard.tariffs), copy.deepcopy(shard.meta),
    )


def _world_with_history() -> World:
    world = World(balance=50_000)
    world.do(ops.Reserve(T, ALICE, "h", "s", EV, 5))
    world.do(ops.Debit(T, ALICE, "c", "", EV, 1, False))
    world.shard.take_writes()
    return world


@pytest.mark.parametrize("name", list(VALID))
def test_the_valid_base_of_each_operation_is_accepted(name):
    world = _world_with_history()
    reply = world.do(VALID[name])
    assert not isinstance(reply, ops.Rejection), reply


@pytest.mark.parametrize("name, operation, field", _bad_cases())
def test_bad_input_is_rejected_naming_the_field_and_changes_nothing(name, operation, field):
    world = _world_with_history()
    before = _snapshot(world)
    reply = world.do(operation)
    assert isinstance(reply, ops.Rejection), reply
    assert reply.code == ErrorCode.INVALID_ARGUMENT
    assert reply.field == field, reply
    assert isinstance(reply.message, str) and reply.message
    _write_free(world)
    assert _snapshot(world) == before
    world.audit()


@pytest.mark.parametrize(
    "operation, field",
    [
        # Checks that need state are made by the core and still change nothing.
        (ops.Debit(T, ALICE, "big", "", EV, 10**15, False), "used_units"),  # costs more than charge_max
        (ops.Debit(T, ALICE, "rg", "HOLD", VOICE, 1, False), "rating_group"),  # not the hold's rating group
    ],
)
def test_stateful_rejections_change_nothing_and_leave_the_request_id_free(operation, field):
    world = _world_with_history()
    hold = next(iter(world.shard.reservations))
    operation = dataclasses.replace(operation, reservation_id=hold) if operation.reservation_id else operation
    before = _snapshot(world)
    reply = world.do(operation)
    assert isinstance(reply, ops.Rejection)
    assert (reply.code, reply.field) == (ErrorCode.INVALID_ARGUMENT, field)
    _write_free(world)
    assert _snapshot(world) == before
    # Nothing was recorded: the corrected request may reuse the id.
    corrected = dataclasses.replace(operation, used_units=1, rating_group=EV if not operation.reservation_id else 0)
    assert world.do(corrected).result == S


def test_an_unknown_operation_is_rejected():
    world = World()

    @dataclasses.dataclass(frozen=True)
    class Teleport:
        tenant: str = T
        subscriber_id: str = ALICE

    reply = world.do(Teleport())
    assert isinstance(reply, ops.Rejection) and reply.field == "operation"
    _write_free(world)


def test_no_reply_carries_a_float():
    world = World(balance=10_000, credit_limit=1_000)
    rid = world.do(ops.Reserve(T, ALICE, "r", "s", VOICE, 7)).reservation_id
    replies = [
        world.do(ops.Debit(T, ALICE, "d", rid, 0, 5, False)),
        world.do(ops.Debit(T, ALICE, "dd", "", DATA, 123_457, False)),
        world.read(ops.GetBalance(T, ALICE)),
        world.read(ops.GetAccount(T, ALICE)),
        world.read(ops.GetTransaction(T, ALICE, "r")),
        world.read(ops.GetTariff("basic")),
    ]

    def walk(value, path):
        assert not isinstance(value, float), path
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{path}.{f.name}")
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    for reply in replies:
        walk(reply, type(reply).__name__)


# ====================================================================== regressions of core bugs found by these tests


class CoreCrashed(Exception):
    """The core raised where it should have answered."""


def test_reserve_of_a_free_rating_group_on_an_overdrawn_account_does_not_crash():
    plan = TariffPlan("basic", PLAN.rates + (Rate(5, Unit.EVENTS, 0, 1, 1),))
    world = World(balance=1_000)
    assert world.shard.apply(ops.PutTariff(plan), world.now).result == S
    rid = world.do(ops.Reserve(T, ALICE, "r", "s", EV, 1)).reservation_id
    assert world.do(ops.Debit(T, ALICE, "d", rid, 0, 3, True)).overage_micros == 2_000
    assert world.balance().available_micros == -2_000
    try:
        reply = world.do(ops.Reserve(T, ALICE, "free", "s", 5, 10))
    except AssertionError as error:  # was: `assert 0 <= held <= available`
        raise CoreCrashed(repr(error)) from error
    assert isinstance(reply, ops.ReserveReply)
    world.audit()


def test_a_currency_with_a_trailing_newline_is_rejected():
    world = World()
    reply = world.do(ops.CreateAccount(T, "carol", "v", "EUR\n", 0, "basic"))
    assert isinstance(reply, ops.Rejection) and reply.field == "currency"


@pytest.mark.parametrize(
    "operation, field",
    [
        (ops.SetAccountState(T, ALICE, "v", 2.0), "state"),
        (ops.SetAccountState(T, ALICE, "v", True), "state"),
        (_plan(rates=(_rate(unit=3.0),)), "rates[0].unit"),
    ],
    ids=["state-float", "state-bool", "unit-float"],
)
def test_enum_fields_reject_floats_and_booleans(operation, field):
    world = World()
    reply = world.do(operation)
    assert isinstance(reply, ops.Rejection) and reply.field == field


@pytest.mark.parametrize(
    "operation",
    [ops.PutTariff(None), ops.PutTariff(TariffPlan("p", 5)), ops.PutTariff(TariffPlan("p", (None,)))],
    ids=["plan-none", "rates-int", "rate-none"],
)
def test_a_malformed_tariff_is_rejected_not_crashed_on(operation):
    world = World()
    reply = world.do(operation)
    assert isinstance(reply, ops.Rejection)


def test_no_idempotency_key_is_both_put_and_deleted_in_one_batch():
    world = World(balance=0)
    world.do(ops.TopUp(T, ALICE, "t", 1_000))
    world.shard.take_writes()
    world.now += CoreLimits().idempotency_horizon_s * SECOND + 1
    reply = world.do(ops.TopUp(T, ALICE, "t", 1_000))  # a new operation: the old record is past the horizon
    assert reply.result == S and not reply.replayed
    writes = world.shard.take_writes()
    put = {(p.tenant, p.subscriber_id, p.request_id) for p in writes.puts if isinstance(p, IdempotencyRecord)}
    assert (T, ALICE, "t") in put
    assert not put & set(writes.deleted_idempotency_keys)


def test_usage_reported_in_pieces_is_rated_cumulatively_on_its_reservation():
    """Twenty 30 s reports on a 600 s grant billed per started minute cost ten
    minutes, exactly the hold: rounding happens on the reservation's total."""
    per_minute = Rate(1, Unit.SECONDS, 20_000, 60, 60)
    shard = ShardState(0)
    shard.apply(ops.PutTariff(TariffPlan("minute", (per_minute,))), 0)
    shard.apply(ops.CreateAccount(T, "dan", "c", "EUR", 0, "minute"), 0)
    shard.apply(ops.TopUp(T, "dan", "t", 200_000), 0)
    hold = shard.apply(ops.Reserve(T, "dan", "r", "call", 1, 600), 0)
    assert hold.held_micros == 200_000
    replies = [shard.apply(ops.Debit(T, "dan", f"d{n}", hold.reservation_id, 0, 30, n == 19), 0) for n in range(20)]
    assert [r.charged_micros for r in replies[:4]] == [20_000, 0, 20_000, 0]
    assert sum(r.charged_micros for r in replies) == 200_000
    assert not any(r.overage for r in replies)
    # The residues add up to the reservation's: charged 200,000 for exactly 200,000.
    assert sum(r.rounding_residue_picos for r in replies) == 0
    assert shard.apply(ops.GetBalance(T, "dan"), 0).available_micros == 0


def test_charges_and_resolved_holds_are_kept_for_their_retention_then_forgotten():
    """DESIGN.md 13: charge records are kept 400 days; inside that a refund finds
    its charge, past it the sweep forgets it (and deletes it from storage)."""
    day_ms = 86_400_000
    limits = CoreLimits(charge_retention_s=2 * 86_400, idempotency_horizon_s=86_400)
    shard = ShardState(0, limits)
    shard.apply(ops.PutTariff(TariffPlan("p", (Rate(1, Unit.EVENTS, 10, 1, 1),))), 0)
    shard.apply(ops.CreateAccount(T, "eve", "c", "EUR", 0, "p"), 0)
    shard.apply(ops.TopUp(T, "eve", "t", 1_000), 0)
    hold = shard.apply(ops.Reserve(T, "eve", "r", "s", 1, 5), 0)
    old = shard.apply(ops.Debit(T, "eve", "d", hold.reservation_id, 0, 5, True), 0)
    young = shard.apply(ops.Debit(T, "eve", "d2", "", 1, 1, False), day_ms)
    shard.take_writes()

    shard.apply_batch([], 2 * day_ms)  # exactly at the retention: still kept
    assert not shard.take_writes().deleted_charge_ids
    assert shard.apply(ops.Refund(T, "eve", "f1", old.charge_id, 1), 2 * day_ms).result == Result.SUCCESS

    shard.apply_batch([], 2 * day_ms + 400_000)  # the hold's expiry time passes the retention too
    writes = shard.take_writes()
    assert writes.deleted_charge_ids == [old.charge_id]
    assert writes.deleted_reservation_ids == [hold.reservation_id]
    assert shard.apply(ops.Refund(T, "eve", "f2", old.charge_id, 1), 3 * day_ms).result == Result.CHARGE_NOT_FOUND
    assert shard.apply(ops.Refund(T, "eve", "f3", young.charge_id, 1), 2 * day_ms + 1).result == Result.SUCCESS
    released = shard.apply(ops.Release(T, "eve", "x", hold.reservation_id), 3 * day_ms)
    assert released.result == Result.RESERVATION_NOT_FOUND
