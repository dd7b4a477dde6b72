"""Charging sessions in the pure shard core (issue 4; TESTING.md layer 1).

A session request (CreateSession, UpdateSession, ReleaseSession) carries
several rating groups; each is charged for its used units, its hold closed,
and a new grant made that *replaces* what was left of the hold. These tests
drive ShardState directly, as the shard shell does (one apply_batch per step,
the expiry sweep first), and after every scenario audit:

- conservation: top-ups - charges (from the replies) == sum of balances;
- holds: each account's reserved == the sum of its ACTIVE holds, counted from
  the reservations themselves (not only the core's own index), and no hold of
  a closed session is still ACTIVE;
- the core's own check_invariants().

Every step's writes are taken and kept on a dict "disk" through the real
codec (grid.storage.codec), honouring the deletes, so a restart can be
simulated at any point with ShardState.restore.

Rating groups of the test tariff (all amounts in micros):
- DATA:  1 micro a byte, per-byte billing, TERMINATE when money ends;
- VOICE: 1_000 a started minute (60 s increments);
- VIDEO: 2 micros a byte, REDIRECT to a top-up page when money ends;
- SMS:   500 an event, RESTRICT_ACCESS when money ends;
- UNRATED: priced by no plan (RATING_FAILED, never charged zero).
"""

import collections
import copy
import dataclasses
import itertools
from typing import Callable

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import (
    AccountState,
    ErrorCode,
    FinalUnitAction,
    JournalKind,
    NotificationReason,
    NotificationType,
    ReservationState,
    Result,
    SessionState,
    Unit,
)
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import IdempotencyRecord, JournalRecord, Notification, Reservation, Session
from grid.domain.shard_state import ShardState
from grid.storage import codec

T = ops.DEFAULT_TENANT
ALICE, BOB, CAROL = "alice", "bob", "carol"
SHARD = 5
T0 = 1_700_000_000_000  # ms
SECOND = 1_000

DATA, VOICE, VIDEO, SMS, UNRATED = 10, 20, 30, 40, 99
TOPUP_PAGE = "https://topup.example/"
RATES = (
    Rate(DATA, Unit.BYTES, 1, 1, 1),
    Rate(VOICE, Unit.SECONDS, 1_000, 60, 60),
    Rate(VIDEO, Unit.BYTES, 2, 1, 1, FinalUnitAction.REDIRECT, TOPUP_PAGE),
    Rate(SMS, Unit.EVENTS, 500, 1, 1, FinalUnitAction.RESTRICT_ACCESS),
)
BASIC = TariffPlan("basic", RATES)
OTHER = TariffPlan("other", RATES)  # same prices, another plan (carol's)

LIMITS = CoreLimits()
VALIDITY_MS = LIMITS.validity_time_s * SECOND
HOLD_LIFE_MS = (LIMITS.validity_time_s + LIMITS.expiry_grace_s) * SECOND
SUPERVISION_MIN_MS = VALIDITY_MS * 18 // 10
SUPERVISION_MAX_MS = VALIDITY_MS * 22 // 10

S = Result.SUCCESS
CLR = Result.CREDIT_LIMIT_REACHED
ACTIVE = SessionState.SESSION_STATE_ACTIVE
RELEASED = SessionState.SESSION_STATE_RELEASED
ABNORMAL = SessionState.SESSION_STATE_ABNORMALLY_RELEASED
NO_ACTION = FinalUnitAction.FINAL_UNIT_ACTION_UNSPECIFIED


def u(rating_group: int, req: int = 0, used: int = 0) -> ops.UnitUsage:
    return ops.UnitUsage(rating_group=rating_group, requested_units=req, used_units=used)


_KINDS = {"create": ops.CreateSession, "update": ops.UpdateSession, "release": ops.ReleaseSession}


# ====================================================================== world


class World:
    """One shard with the test tariffs and three accounts: alice (the
    scenario's, on BASIC), bob (a bystander on BASIC with 100_000) and carol
    (on OTHER with 100_000). Keeps a conservation ledger fed by the replies and
    a disk of every write taken, through the codec."""

    def __init__(self, *, balance: int = 100_000, credit_limit: int = 0, limits: CoreLimits = LIMITS) -> None:
        self.limits = limits
        self.shard = ShardState(SHARD, limits)
        self.now = T0
        self.ledger = 0  # top-ups - charges, from replies
        self.overage = collections.Counter()  # subscriber -> overage micros reported in replies
        self.disk: dict[bytes, bytes] = {}
        self.last_writes = None
        self.sequence: dict[tuple[str, str], int] = {}  # the client's last sequence number per session
        self._ids = itertools.count(1)
        assert self.shard.apply(ops.PutTariff(BASIC), self.now).result == S
        assert self.shard.apply(ops.PutTariff(OTHER), self.now).result == S
        for subscriber, plan, credit, amount in ((ALICE, "basic", credit_limit, balance), (BOB, "basic", 0, 100_000),
                                                 (CAROL, "other", 0, 100_000)):
            assert self.do(ops.CreateAccount(T, subscriber, self.rid(), "EUR", credit, plan)).result == S
            if amount:
                assert self.do(ops.TopUp(T, subscriber, self.rid(), amount)).result == S
        self.commit()

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    # ------------------------------------------------------------ applying

    def commit(self):
        """Take the shard's writes (as the shell does after each batch) and keep them."""
        writes = self.shard.take_writes()
        for record in writes.puts:
            self.disk[codec.key_of(record)] = codec.encode(record)
        deleted = [codec.idempotency_key(k) for k in writes.deleted_idempotency_keys]
        deleted += [codec.RESERVATION + r.encode() for r in writes.deleted_reservation_ids]
        deleted += [codec.CHARGE + c.encode() for c in writes.deleted_charge_ids]
        deleted += [codec.session_key(k) for k in writes.deleted_session_keys]
        deleted += [codec.notification_key(n) for n in writes.deleted_notification_sequences]
        for key in deleted:
            self.disk.pop(key, None)
        self.last_writes = writes
        return writes

    def do(self, operation):
        """One operation as the shell applies it: a batch of one, sweep first."""
        [reply] = self.shard.apply_batch([operation], self.now)
        self.commit()
        self.account_for(operation, reply)
        return reply

    def account_for(self, operation, reply) -> None:
        if isinstance(reply, ops.Rejection) or getattr(reply, "replayed", False):
            return
        if isinstance(reply, ops.TopUpReply) and reply.result == S:
            self.ledger += operation.amount_micros
        elif isinstance(reply, ops.DebitReply) and reply.result == S:
            self.ledger -= reply.charged_micros
            self.overage[operation.subscriber_id] += reply.overage_micros
        elif isinstance(reply, ops.SessionReply):
            for info in reply.multiple_unit_information:
                if info.charge_id:  # charged, whatever the outcome of a new grant
                    self.ledger -= info.charged_micros
                    self.overage[operation.subscriber_id] += info.overage_micros
                else:
                    assert info.charged_micros == 0 and info.overage_micros == 0, info

    def read(self, operation):
        return self.shard.apply(operation, self.now)

    def sweep(self, seconds: float = 0, *, ms: int = 0):
        """Move the clock and run an empty batch (the sweep)."""
        self.now += int(seconds * SECOND) + ms
        assert self.shard.apply_batch([], self.now) == []
        return self.commit()

    def session(self, kind: str, session_id: str, *usages, seq: int | None = None, client: str = "",
                sub: str = ALICE):
        return self.do(self.session_op(kind, session_id, *usages, seq=seq, client=client, sub=sub))

    def session_op(self, kind: str, session_id: str, *usages, seq: int | None = None, client: str = "",
                   sub: str = ALICE):
        key = (sub, session_id)
        if seq is None:
            seq = self.sequence.get(key, -1) + 1
        self.sequence[key] = max(self.sequence.get(key, -1), seq)
        return _KINDS[kind](T, sub, session_id, seq, tuple(usages), client)

    def create(self, session_id="s1", *usages, **kw):
        return self.session("create", session_id, *usages, **kw)

    def update(self, session_id="s1", *usages, **kw):
        return self.session("update", session_id, *usages, **kw)

    def release(self, session_id="s1", *usages, **kw):
        return self.session("release", session_id, *usages, **kw)

    def top_up(self, amount: int, sub: str = ALICE):
        return self.do(ops.TopUp(T, sub, self.rid(), amount))

    # ------------------------------------------------------------ reading

    def balance(self, sub: str = ALICE) -> ops.BalanceReply:
        return self.read(ops.GetBalance(T, sub))

    def get_session(self, session_id: str = "s1", sub: str = ALICE) -> ops.SessionInfoReply:
        return self.read(ops.GetSession(T, sub, session_id))

    def notifications(self, client: str, after: int = 0, limit: int = 100, tenant: str = T):
        return self.read(ops.ReadNotifications(tenant, client, after, limit))

    def journal(self, writes=None) -> list[JournalRecord]:
        writes = self.last_writes if writes is None else writes
        return sorted((r for r in writes.puts if isinstance(r, JournalRecord)), key=lambda r: r.sequence)

    def restored(self) -> ShardState:
        """A shard rebuilt from the disk alone (a restart)."""
        return ShardState.restore(SHARD, [codec.decode(v) for v in self.disk.values()], self.limits)

    # ------------------------------------------------------------ auditing

    def audit(self) -> None:
        shard = self.shard
        shard.check_invariants()
        assert sum(a.balance_micros for a in shard.accounts.values()) == self.ledger, \
            "conservation: top-ups - charges != sum of balances"
        for key, account in shard.accounts.items():
            active = [r for r in shard.reservations.values()
                      if r.account_key == key and r.state == ReservationState.ACTIVE]
            assert account.reserved_micros == sum(r.held_micros for r in active), key
            assert all(r.held_micros >= 0 for r in active)
            # Available goes below zero only by over-usage or late usage, and by no more.
            assert account.available_micros() >= -self.overage[account.subscriber_id], key
        for session in shard.sessions.values():
            live = {r.reservation_id for r in shard.reservations.values()
                    if r.session_id == session.session_id and r.account_key == session.account_key
                    and r.state == ReservationState.ACTIVE}
            if session.state != ACTIVE:
                assert not live, f"closed session {session.key} still holds {live}"
            else:
                assert live <= {rid for _, rid in session.holds}, session
        # The disk holds exactly what the shard would restore to.
        assert _state(self.restored()) == _state(shard)


def _state(shard: ShardState) -> dict:
    """Everything a shard keeps that a reply or a later operation can depend on."""
    return copy.deepcopy({
        "accounts": shard.accounts, "reservations": shard.reservations, "charges": shard.charges,
        "tariffs": shard.tariffs, "idempotency": shard.idempotency, "meta": shard.meta,
        "sessions": shard.sessions, "notifications": shard.notifications,
    })


def info(reply: ops.SessionReply, rating_group: int) -> ops.UnitInformation:
    [found] = [i for i in reply.multiple_unit_information if i.rating_group == rating_group]
    return found


def _fields(value, expect: dict, where: str) -> None:
    for name, wanted in expect.items():
        assert hasattr(value, name), f"{where}: {value!r} has no {name}"
        got = getattr(value, name)
        assert got == wanted, f"{where}: {name} {got!r} != {wanted!r}\n{value!r}"


# ====================================================================== scenario tables


@dataclasses.dataclass
class Step:
    describe: str
    run: Callable[[World], object]
    expect: dict  # reply fields
    groups: dict  # rating group -> expected UnitInformation fields
    after: dict  # GetBalance fields after the step

    def check(self, world: World) -> None:
        reply = self.run(world)
        where = self.describe
        _fields(reply, self.expect, where)
        if self.groups:
            assert isinstance(reply, ops.SessionReply), f"{where}: {reply!r}"
            got = [i.rating_group for i in reply.multiple_unit_information]
            assert got == list(self.groups), f"{where}: rating groups {got} != {list(self.groups)}"
            for rating_group, fields in self.groups.items():
                _fields(info(reply, rating_group), fields, f"{where} rg {rating_group}")
        _fields(world.balance(), self.after, f"{where} (balance after)")


def _session_step(kind, usages, session_id, seq, client, groups, after, expect) -> Step:
    described = ", ".join(f"rg{x.rating_group} req {x.requested_units} used {x.used_units}" for x in usages)
    return Step(
        f"{kind} {session_id}: {described}",
        lambda w: w.session(kind, session_id, *usages, seq=seq, client=client),
        expect, groups or {}, after or {},
    )


def create(*usages, sid="s1", seq=None, client="", groups=None, after=None, **expect) -> Step:
    return _session_step("create", usages, sid, seq, client, groups, after, expect)


def update(*usages, sid="s1", seq=None, client="", groups=None, after=None, **expect) -> Step:
    return _session_step("update", usages, sid, seq, client, groups, after, expect)


def release(*usages, sid="s1", seq=None, groups=None, after=None, **expect) -> Step:
    return _session_step("release", usages, sid, seq, "", groups, after, expect)


def top_up(amount, *, after=None, **expect) -> Step:
    return Step(f"top up {amount}", lambda w: w.top_up(amount), expect, {}, after or {})


def suspend(*, after=None) -> Step:
    return Step("suspend", lambda w: w.do(ops.SetAccountState(T, ALICE, w.rid(), AccountState.SUSPENDED)),
                {"result": S}, {}, after or {})


def sweep(seconds, *, after=None) -> Step:
    return Step(f"sweep after {seconds}s", lambda w: w.sweep(seconds), {}, {}, after or {})


def session_is(state, sid="s1", holds=None) -> Step:
    def run(w):
        reply = w.get_session(sid)
        if holds is not None:
            assert sorted(v.rating_group for v in reply.reservations) == sorted(holds), reply
        return reply
    return Step(f"session {sid} is {state.name}", run, {"result": S, "state": state}, {}, {})


def granted(units, held, *, threshold=None, final=False, action=FinalUnitAction.TERMINATE, address="", **more):
    """The fields of a successful grant. A final grant carries the plan's action and
    threshold 0; any other the threshold share of the grant and no action."""
    fields = dict(result=S, granted_units=units, held_micros=held, validity_time_s=LIMITS.validity_time_s,
                  quota_holding_time_s=LIMITS.quota_holding_time_s)
    if final:
        fields.update(threshold_units=0, final_unit_action=action, redirect_server_address=address)
    else:
        fields.update(threshold_units=units * LIMITS.quota_threshold_percent // 100 if threshold is None else threshold,
                      final_unit_action=NO_ACTION, redirect_server_address="")
    fields.update(more)
    return fields


def charged(amount, *, late=False, overage=0, released=0, **more):
    return dict(charged_micros=amount, late=late, overage_micros=overage, released_micros=released, **more)


NOTHING_GRANTED = dict(granted_units=0, held_micros=0, reservation_id="", validity_time_s=0)


SCENARIOS: dict[str, tuple[dict, list[Step]]] = {
    "create with three groups, the unrated one denied; updates replace each hold; release returns the rest": (
        dict(balance=100_000),
        [
            create(u(DATA, req=10_000), u(VOICE, req=600), u(UNRATED, req=5),
                   result=S, session_state=ACTIVE,
                   groups={DATA: granted(10_000, 10_000, threshold=2_000),
                           VOICE: granted(600, 10_000, threshold=120),
                           UNRATED: dict(result=Result.RATING_FAILED, **NOTHING_GRANTED)},
                   after=dict(balance_micros=100_000, reserved_micros=20_000, available_micros=80_000)),
            session_is(ACTIVE, holds=[DATA, VOICE]),
            # Partial usage: 4_000 of 10_000 bytes, 90 s of 600 (two started minutes).
            update(u(DATA, req=10_000, used=4_000), u(VOICE, req=600, used=90),
                   result=S, session_state=ACTIVE,
                   groups={DATA: {**charged(4_000, released=6_000), **granted(10_000, 10_000)},
                           VOICE: {**charged(2_000, released=8_000), **granted(600, 10_000)}},
                   # The new grants replace the rest of the old holds: 20_000 held, not 34_000.
                   after=dict(balance_micros=94_000, reserved_micros=20_000, available_micros=74_000)),
            # A group reported with no new request closes its hold; the other keeps its own.
            update(u(DATA, used=3_000),
                   groups={DATA: {**charged(3_000, released=7_000), **NOTHING_GRANTED, "result": S}},
                   after=dict(balance_micros=91_000, reserved_micros=10_000)),
            session_is(ACTIVE, holds=[VOICE]),
            # The release reports voice; every other hold of the session (none left) goes back.
            # The session's voice is rated as one: 90 + 61 = 151 s is three started minutes, 3_000,
            # of which 2_000 were charged at the update.
            release(u(VOICE, used=61),
                    result=S, session_state=RELEASED, supervision_time_s=0,
                    groups={VOICE: {**charged(1_000, released=9_000), **NOTHING_GRANTED, "result": S}},
                    after=dict(balance_micros=90_000, reserved_micros=0, available_micros=90_000)),
            session_is(RELEASED, holds=[]),
        ],
    ),
    "a release returns the holds of the groups it does not report": (
        dict(balance=100_000),
        [
            create(u(DATA, req=10_000), u(VOICE, req=60), u(SMS, req=4),
                   after=dict(reserved_micros=10_000 + 1_000 + 2_000)),
            release(u(DATA, used=2_500), result=S, session_state=RELEASED,
                    groups={DATA: charged(2_500, released=7_500, result=S)},
                    after=dict(balance_micros=97_500, reserved_micros=0, available_micros=97_500)),
            session_is(RELEASED, holds=[]),
        ],
    ),
    "money for two groups only: the third is denied with its final unit action": (
        dict(balance=15_000),
        [
            create(u(DATA, req=10_000), u(VOICE, req=600), u(VIDEO, req=1_000),
                   result=S,
                   groups={DATA: granted(10_000, 10_000),
                           # 5_000 left buys 5 of the 10 minutes asked: the final units.
                           VOICE: granted(300, 5_000, final=True, action=FinalUnitAction.TERMINATE),
                           VIDEO: dict(result=CLR, final_unit_action=FinalUnitAction.REDIRECT,
                                       redirect_server_address=TOPUP_PAGE, **NOTHING_GRANTED)},
                   after=dict(balance_micros=15_000, reserved_micros=15_000, available_micros=0)),
        ],
    ),
    "final units when the grant takes the last money, though all that was asked was granted": (
        dict(balance=10_500),
        [
            create(u(VOICE, req=600),
                   groups={VOICE: granted(600, 10_000, final=True)},
                   after=dict(available_micros=500)),
        ],
    ),
    "final units carry the plan's action: REDIRECT with its address, RESTRICT_ACCESS": (
        dict(balance=3_000),
        [
            create(u(VIDEO, req=10_000), u(SMS, req=10),
                   groups={VIDEO: granted(1_500, 3_000, final=True, action=FinalUnitAction.REDIRECT,
                                          address=TOPUP_PAGE),
                           SMS: dict(result=CLR, final_unit_action=FinalUnitAction.RESTRICT_ACCESS,
                                     redirect_server_address="", **NOTHING_GRANTED)},
                   after=dict(reserved_micros=3_000, available_micros=0)),
            top_up(5_000),
            update(u(VIDEO, used=1_500, req=1_000), u(SMS, req=10),
                   groups={VIDEO: {**charged(3_000), **granted(1_000, 2_000)},
                           SMS: granted(6, 3_000, final=True, action=FinalUnitAction.RESTRICT_ACCESS)},
                   after=dict(balance_micros=5_000, reserved_micros=5_000, available_micros=0)),
        ],
    ),
    "over-usage is charged in full and counted as overage; the re-grant sees what is left": (
        dict(balance=50_000),
        [
            create(u(DATA, req=10_000), groups={DATA: granted(10_000, 10_000)}),
            update(u(DATA, req=10_000, used=15_000),
                   groups={DATA: {**charged(15_000, overage=5_000, released=0), **granted(10_000, 10_000)}},
                   after=dict(balance_micros=35_000, reserved_micros=10_000, available_micros=25_000)),
            release(u(DATA, used=10_000), groups={DATA: charged(10_000, overage=0, released=0)},
                    after=dict(balance_micros=25_000, reserved_micros=0)),
        ],
    ),
    "over-usage past the last money: never clamped, the balance goes below zero, nothing more is granted": (
        dict(balance=10_000),
        [
            create(u(DATA, req=10_000), groups={DATA: granted(10_000, 10_000, final=True)},
                   after=dict(available_micros=0)),
            update(u(DATA, req=1_000, used=12_000),
                   groups={DATA: dict(result=CLR, final_unit_action=FinalUnitAction.TERMINATE,
                                      **charged(12_000, overage=2_000), **NOTHING_GRANTED)},
                   after=dict(balance_micros=-2_000, reserved_micros=0, available_micros=-2_000)),
            top_up(3_000, after=dict(balance_micros=1_000)),
            update(u(DATA, req=5_000), groups={DATA: granted(1_000, 1_000, final=True)}),
            release(u(DATA, used=1_000), session_state=RELEASED,
                    groups={DATA: charged(1_000)}, after=dict(balance_micros=0, reserved_micros=0)),
        ],
    ),
    "a credit limit extends the grant": (
        dict(balance=1_000, credit_limit=4_000),
        [
            create(u(DATA, req=10_000), groups={DATA: granted(5_000, 5_000, final=True)},
                   after=dict(available_micros=0)),
            release(u(DATA, used=5_000), after=dict(balance_micros=-4_000, available_micros=0)),
        ],
    ),
    "usage is rated in the group's increments (a started minute is a minute)": (
        dict(balance=100_000),
        [
            create(u(VOICE, req=120), groups={VOICE: granted(120, 2_000)}),
            update(u(VOICE, req=120, used=1), groups={VOICE: charged(1_000, released=1_000)}),
            # Rated over the session: 1 + 61 = 62 s is two started minutes, one more than charged.
            update(u(VOICE, req=120, used=61), groups={VOICE: charged(1_000, released=1_000)}),
            # 62 + 121 = 183 s: four minutes, two more; the hold (120 s from 62 s: 2_000) covers them.
            release(u(VOICE, used=121), groups={VOICE: charged(2_000, released=0)},
                    after=dict(balance_micros=96_000, reserved_micros=0)),
        ],
    ),
    "an unknown subscriber, a suspended account: the create is denied and opens nothing": (
        dict(balance=100_000),
        [
            Step("create for nobody", lambda w: w.create("s1", u(DATA, req=10), sub="nobody"),
                 {"result": Result.USER_UNKNOWN, "multiple_unit_information": ()}, {}, {}),
            suspend(),
            create(u(DATA, req=10), result=Result.END_USER_SERVICE_DENIED, multiple_unit_information=(),
                   after=dict(reserved_micros=0)),
            Step("no session", lambda w: w.get_session("s1"), {"result": Result.SESSION_NOT_FOUND}, {}, {}),
        ],
    ),
    "an account at its session limit may not open one more; a closed one frees its place": (
        dict(balance=100_000, limits=CoreLimits(sessions_per_account_max=1)),
        [
            create(u(DATA, req=1_000), result=S),
            create(u(DATA, req=1_000), sid="s2", result=Result.TOO_MANY_SESSIONS, multiple_unit_information=(),
                   after=dict(reserved_micros=1_000)),
            release(),
            create(u(DATA, req=1_000), sid="s3", result=S, after=dict(reserved_micros=1_000)),
        ],
    ),
    "a suspension mid-session: used units are still charged, no new grant": (
        dict(balance=100_000),
        [
            create(u(DATA, req=10_000), u(VOICE, req=60)),
            suspend(),
            update(u(DATA, req=10_000, used=4_000), u(VOICE, req=60),
                   groups={DATA: dict(result=Result.END_USER_SERVICE_DENIED, **charged(4_000, released=6_000),
                                      **NOTHING_GRANTED),
                           VOICE: dict(result=Result.END_USER_SERVICE_DENIED, released_micros=1_000,
                                       **NOTHING_GRANTED)},
                   after=dict(balance_micros=96_000, reserved_micros=0)),
            release(session_state=RELEASED),
        ],
    ),
    "hold expiry inside a live session: the usage reported next is charged late": (
        dict(balance=100_000),
        [
            create(u(DATA, req=10_000), after=dict(reserved_micros=10_000)),
            sweep(LIMITS.validity_time_s + LIMITS.expiry_grace_s, after=dict(reserved_micros=0)),
            session_is(ACTIVE, holds=[]),
            update(u(DATA, req=10_000, used=4_000), session_state=ACTIVE,
                   groups={DATA: {**charged(4_000, late=True, overage=0, released=0), **granted(10_000, 10_000)}},
                   after=dict(balance_micros=96_000, reserved_micros=10_000)),
            release(u(DATA, used=100), groups={DATA: charged(100, late=False, released=9_900)},
                    after=dict(reserved_micros=0)),
        ],
    ),
    "late usage the money does not cover is charged and counted as overage": (
        dict(balance=3_000),
        [
            create(u(DATA, req=1_000), after=dict(reserved_micros=1_000)),
            sweep(LIMITS.validity_time_s + LIMITS.expiry_grace_s),
            update(u(DATA, used=5_000), groups={DATA: charged(5_000, late=True, overage=2_000)},
                   after=dict(balance_micros=-2_000, available_micros=-2_000)),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_session_scenario(name):
    account, steps = SCENARIOS[name]
    world = World(**account)
    for step in steps:
        step.check(world)
        world.shard.check_invariants()
    world.audit()


# ====================================================================== one request: what it writes


def test_a_multi_group_update_writes_its_effects_in_one_batch_with_one_idempotency_record():
    w = World()
    w.create("s1", u(DATA, req=10_000), u(VOICE, req=600))
    reply = w.update("s1", u(DATA, req=10_000, used=4_000), u(VOICE, req=600, used=90), u(UNRATED, req=1))
    writes = w.last_writes
    records = [r for r in writes.puts if isinstance(r, IdempotencyRecord)]
    assert len(records) == 1
    [record] = records
    assert record.request_id == ops.session_request_id("s1", 1) and record.reply == reply
    kinds = [r.kind for r in w.journal()]
    # Each group's debit, the return of its old hold and its new grant, and the denial of the unrated one.
    assert kinds.count(JournalKind.DEBIT) == 2
    assert kinds.count(JournalKind.RELEASE) == 2
    assert kinds.count(JournalKind.RESERVE) == 3  # two grants, one RATING_FAILED denial
    assert [r.result for r in w.journal() if r.kind == JournalKind.RESERVE].count(Result.RATING_FAILED) == 1
    assert all(r.session_id == "s1" for r in w.journal())
    # Every changed record is in the one batch: old holds replaced, new ones active, the session.
    states = sorted(r.state for r in writes.puts if isinstance(r, Reservation))
    assert states == sorted([ReservationState.REPLACED] * 2 + [ReservationState.ACTIVE] * 2)
    assert any(isinstance(r, Session) and r.last_sequence_number == 1 for r in writes.puts)
    # The journal's last record leaves the account as it is.
    last = w.journal()[-1]
    account = w.shard.accounts[(T, ALICE)]
    assert (last.balance_after_micros, last.reserved_after_micros) == (account.balance_micros,
                                                                          account.reserved_micros)
    w.audit()


def test_replaced_holds_are_never_charged_again_and_a_debit_on_one_is_late():
    """The hold a re-grant replaced is closed: a Debit naming it is charged as late usage."""
    w = World()
    first = info(w.create("s1", u(DATA, req=10_000)), DATA)
    w.update("s1", u(DATA, req=10_000, used=1_000))
    assert w.shard.reservations[first.reservation_id].state == ReservationState.REPLACED
    assert w.shard.reservations[first.reservation_id].held_micros == 0
    debit = w.do(ops.Debit(T, ALICE, w.rid(), first.reservation_id, 0, 500, False))
    assert (debit.result, debit.late, debit.charged_micros) == (S, True, 500)
    w.audit()


# ====================================================================== atomicity


def _bad_requests():
    """Requests refused as a whole, against session s1 created with sequence number 5."""
    return {
        # The second group's usage would cost more than one charge may (2 micros a byte).
        "a usage costing more than charge_max in the second group": (
            ops.UpdateSession(T, ALICE, "s1", 6, (u(DATA, req=1_000, used=1_000),
                                                   u(VIDEO, req=1_000, used=LIMITS.usage_max_units))),
            ErrorCode.INVALID_ARGUMENT, "multiple_unit_usage[1].used_units"),
        "a rating group twice": (
            ops.UpdateSession(T, ALICE, "s1", 6, (u(DATA, req=1_000, used=1_000), u(VOICE, used=60),
                                                   u(DATA, used=5))),
            ErrorCode.INVALID_ARGUMENT, "multiple_unit_usage[2].rating_group"),
        "requested units in a release": (
            ops.ReleaseSession(T, ALICE, "s1", 6, (u(DATA, used=1_000), u(VOICE, req=60, used=60))),
            ErrorCode.INVALID_ARGUMENT, "multiple_unit_usage[1].requested_units"),
        "a notify_client_id on a release": (
            ops.ReleaseSession(T, ALICE, "s1", 6, (u(DATA, used=1_000),), "smf-1"),
            ErrorCode.INVALID_ARGUMENT, "notify_client_id"),
        "a create for a session that exists": (
            ops.CreateSession(T, ALICE, "s1", 6, (u(DATA, req=1_000),)),
            ErrorCode.ALREADY_EXISTS, "session_id"),
        "an older sequence number never seen": (
            ops.UpdateSession(T, ALICE, "s1", 3, (u(DATA, req=1_000, used=1_000),)),
            ErrorCode.FAILED_PRECONDITION, "invocation_sequence_number"),
        "the create's sequence number reused by an update": (
            ops.UpdateSession(T, ALICE, "s1", 5, (u(DATA, req=1_000, used=1_000),)),
            ErrorCode.ALREADY_EXISTS, "operation"),
    }


@pytest.mark.parametrize("name", list(_bad_requests()))
def test_a_refused_session_request_changes_nothing_at_all(name):
    operation, code, field = _bad_requests()[name]
    w = World()
    w.create("s1", u(DATA, req=10_000), u(VOICE, req=600), seq=5, client="smf-1")
    w.now += 10 * SECOND
    before = _state(w.shard)
    balance = w.balance()
    reply = w.do(operation)
    assert isinstance(reply, ops.Rejection), reply
    assert (reply.code, reply.field) == (code, field), reply
    assert not w.last_writes, f"a refused request wrote {w.last_writes}"
    assert _state(w.shard) == before
    assert w.balance() == balance
    # Nothing was recorded under its number: the corrected request applies.
    fixed = w.do(ops.UpdateSession(T, ALICE, "s1", 6, (u(DATA, req=1_000, used=1_000),)))
    assert fixed.result == S and not fixed.replayed and info(fixed, DATA).charged_micros == 1_000
    w.audit()


# ====================================================================== sequence numbers


def test_a_retransmission_gets_the_original_reply_and_changes_nothing():
    w = World()
    w.create("s1", u(DATA, req=10_000), u(VOICE, req=600), client="smf-1")
    op = w.session_op("update", "s1", u(DATA, req=10_000, used=4_000), u(VOICE, req=600, used=90))
    original = w.do(op)
    assert original.result == S and not original.replayed
    state, balance = _state(w.shard), w.balance()
    for retry in (op, dataclasses.replace(op, trace_id="another-front-door")):
        again = w.do(retry)
        assert again == dataclasses.replace(original, replayed=True)
        assert not w.last_writes
        assert _state(w.shard) == state and w.balance() == balance
    # Still answered after later requests moved the session on.
    w.update("s1", u(DATA, req=10_000, used=1_000))
    assert w.do(op) == dataclasses.replace(original, replayed=True)
    assert not w.last_writes
    # GetTransaction resolves an ambiguous session request by (session, sequence number).
    found = w.read(ops.GetTransaction(T, ALICE, ops.session_request_id("s1", 1)))
    assert found.found and found.reply == original
    assert not w.read(ops.GetTransaction(T, ALICE, ops.session_request_id("s1", 9))).found
    w.audit()


@pytest.mark.parametrize("change, field", [
    (dict(multiple_unit_usage=(u(DATA, req=10_000, used=4_001),)), "multiple_unit_usage"),
    (dict(notify_client_id="smf-2"), "notify_client_id"),
])
def test_the_same_sequence_number_with_another_payload_is_already_exists(change, field):
    w = World()
    w.create("s1", u(DATA, req=10_000))
    op = w.session_op("update", "s1", u(DATA, req=10_000, used=4_000))
    assert w.do(op).result == S
    state = _state(w.shard)
    reply = w.do(dataclasses.replace(op, **change))
    assert isinstance(reply, ops.Rejection)
    assert (reply.code, reply.field) == (ErrorCode.ALREADY_EXISTS, field)
    assert not w.last_writes and _state(w.shard) == state
    # Another kind of request under the same number: also refused.
    release = ops.ReleaseSession(T, ALICE, "s1", 1, (u(DATA, used=4_000),))
    assert (w.do(release).code, w.do(release).field) == (ErrorCode.ALREADY_EXISTS, "operation")
    w.audit()


def test_an_older_unseen_sequence_number_is_refused_with_no_effect_and_gaps_are_accepted():
    w = World()
    assert w.create("s1", u(DATA, req=10_000), seq=3).result == S
    # A gap: 3 -> 7 is accepted.
    jumped = w.update("s1", u(DATA, req=10_000, used=1_000), seq=7)
    assert jumped.result == S and jumped.invocation_sequence_number == 7
    state, balance = _state(w.shard), w.balance()
    for older in (4, 5, 6):  # never seen, older than the last applied
        for kind in ("update", "release"):
            reply = w.do(w.session_op(kind, "s1", u(DATA, used=500), seq=older))
            assert isinstance(reply, ops.Rejection), reply
            assert (reply.code, reply.field) == (ErrorCode.FAILED_PRECONDITION, "invocation_sequence_number")
            assert not w.last_writes
    assert _state(w.shard) == state and w.balance() == balance
    assert w.get_session().last_sequence_number == 7
    # Next numbers apply; the gap does not reopen.
    assert w.update("s1", u(DATA, req=10_000, used=1_000), seq=8).result == S
    assert isinstance(w.do(w.session_op("update", "s1", u(DATA, used=1), seq=5)), ops.Rejection)
    w.audit()


# ====================================================================== supervision


def test_supervision_closes_a_silent_session_returning_its_holds_and_journaling_it():
    w = World()
    created = w.create("s1", u(DATA, req=10_000), u(VOICE, req=600))
    deadline = w.get_session().supervision_deadline_ms
    assert T0 + SUPERVISION_MIN_MS <= deadline <= T0 + SUPERVISION_MAX_MS
    assert created.supervision_time_s == (deadline - T0) // 1000
    w.sweep(ms=deadline - 1 - w.now)
    assert w.get_session().state == ACTIVE
    assert not [r for r in w.journal() if r.kind == JournalKind.SESSION_SUPERVISED]
    w.sweep(ms=1)
    assert w.get_session().state == ABNORMAL
    supervised = [r for r in w.journal() if r.kind == JournalKind.SESSION_SUPERVISED]
    assert len(supervised) == 1 and supervised[0].session_id == "s1" and supervised[0].subscriber_id == ALICE
    assert any(isinstance(r, Session) and r.state == ABNORMAL for r in w.last_writes.puts)
    assert w.balance().reserved_micros == 0 and w.balance().balance_micros == 100_000
    assert w.get_session().reservations == ()
    # Once only: a later sweep journals nothing more about it.
    w.sweep(3600)
    assert not [r for r in w.journal() if r.kind == JournalKind.SESSION_SUPERVISED]
    w.audit()


def test_supervision_itself_returns_holds_that_outlive_it():
    """With a grace longer than the supervision time, the holds are still active at
    supervision: it must return them (journaled as expiries) before closing."""
    limits = CoreLimits(validity_time_s=100, expiry_grace_s=1_000)
    w = World(limits=limits)
    created = w.create("s1", u(DATA, req=10_000), u(VOICE, req=600))
    ids = {i.reservation_id for i in created.multiple_unit_information}
    assert w.balance().reserved_micros == 20_000
    deadline = w.get_session().supervision_deadline_ms
    assert T0 + 180 * SECOND <= deadline <= T0 + 220 * SECOND
    w.sweep(ms=deadline - w.now)
    expired = {r.reference_id for r in w.journal() if r.kind == JournalKind.EXPIRE}
    assert expired == ids
    assert all(w.shard.reservations[i].state == ReservationState.EXPIRED for i in ids)
    assert w.balance().reserved_micros == 0 and w.get_session().state == ABNORMAL
    assert [r.kind for r in w.journal()][-1] == JournalKind.SESSION_SUPERVISED
    w.audit()


def test_an_update_resets_the_supervision_timer():
    w = World()
    w.create("s1", u(DATA, req=10_000))
    first = w.get_session().supervision_deadline_ms
    w.sweep(ms=first - w.now - 10 * SECOND)
    w.update("s1", u(DATA, req=10_000, used=100))
    second = w.get_session().supervision_deadline_ms
    assert w.now + SUPERVISION_MIN_MS <= second <= w.now + SUPERVISION_MAX_MS
    w.sweep(ms=first - w.now + 1)
    assert w.get_session().state == ACTIVE
    w.sweep(ms=second - w.now)
    assert w.get_session().state == ABNORMAL
    w.audit()


def test_supervision_deadlines_are_jittered_within_bounds_and_deterministic():
    count = 60
    deadlines = []
    for shard_round in range(2):
        w = World(balance=1_000_000)
        for n in range(count):
            assert w.create(f"s{n}", u(SMS, req=1)).result == S
        deadlines.append([w.get_session(f"s{n}").supervision_deadline_ms - T0 for n in range(count)])
    assert deadlines[0] == deadlines[1], "the core has no randomness: same sessions, same deadlines"
    times = deadlines[0]
    assert all(SUPERVISION_MIN_MS <= t <= SUPERVISION_MAX_MS for t in times), times
    assert len(set(times)) >= count * 9 // 10, "sessions opened together must not expire together"
    assert max(times) - min(times) > (SUPERVISION_MAX_MS - SUPERVISION_MIN_MS) // 2
    # Swept at one instant in the middle of the window, only some of them close.
    w.sweep(ms=VALIDITY_MS * 2)
    closed = sum(w.get_session(f"s{n}").state == ABNORMAL for n in range(count))
    assert closed == sum(t <= VALIDITY_MS * 2 for t in times) and 0 < closed < count
    w.audit()


def _supervised(world: World, session_id="s1", *usages) -> None:
    world.create(session_id, *usages)
    world.sweep(ms=world.get_session(session_id).supervision_deadline_ms - world.now)
    assert world.get_session(session_id).state == ABNORMAL


def test_a_late_update_after_supervision_is_accepted_and_charged_late_with_overage():
    w = World(balance=1_000)
    _supervised(w, "s1", u(DATA, req=1_000))
    assert w.balance().reserved_micros == 0
    reply = w.update("s1", u(DATA, req=1_000, used=5_000), u(VOICE, used=60))
    assert reply.result == S and not isinstance(reply, ops.Rejection)
    data, voice = info(reply, DATA), info(reply, VOICE)
    assert (data.late, data.charged_micros, data.overage_micros) == (True, 5_000, 4_000)
    # The session is carried on, but there is no money for the new quota asked.
    assert (data.result, data.granted_units, data.final_unit_action) == (CLR, 0, FinalUnitAction.TERMINATE)
    assert (voice.result, voice.late, voice.charged_micros, voice.overage_micros) == (S, True, 1_000, 1_000)
    assert w.balance().balance_micros == 1_000 - 6_000
    late = [r for r in w.journal() if r.kind == JournalKind.DEBIT]
    assert all(r.late for r in late) and sum(r.overage_micros for r in late) == 5_000
    w.audit()


def test_a_late_release_after_supervision_is_accepted_and_charged_late():
    w = World(balance=100_000)
    _supervised(w, "s1", u(DATA, req=10_000), u(VOICE, req=600))
    reply = w.release("s1", u(DATA, used=7_000), u(VOICE, used=600))
    assert reply.result == S and reply.session_state == RELEASED
    assert [(i.rating_group, i.late, i.charged_micros, i.overage_micros) for i in reply.multiple_unit_information] \
        == [(DATA, True, 7_000, 0), (VOICE, True, 10_000, 0)]
    assert w.balance().balance_micros == 83_000 and w.balance().reserved_micros == 0
    assert w.get_session().state == RELEASED
    w.audit()


@pytest.mark.parametrize("kind", ["update", "release"])
def test_usage_for_a_session_the_grid_never_saw_is_charged_late_never_refused(kind):
    w = World(balance=0)
    reply = w.session(kind, "lost-in-failover", u(DATA, used=2_000), u(VOICE, used=30), seq=41)
    assert not isinstance(reply, ops.Rejection), reply
    assert reply.result == S
    assert [(i.result, i.late, i.charged_micros, i.overage_micros) for i in reply.multiple_unit_information] \
        == [(S, True, 2_000, 2_000), (S, True, 1_000, 1_000)]
    assert w.balance().balance_micros == -3_000
    session = w.get_session("lost-in-failover")
    assert session.result == S and session.last_sequence_number == 41
    assert session.state == (RELEASED if kind == "release" else ACTIVE)
    opened = [r for r in w.journal() if r.kind == JournalKind.SESSION_OPENED]
    assert len(opened) == 1 and opened[0].late
    # Its retransmission is a replay, not a second charge.
    again = w.session(kind, "lost-in-failover", u(DATA, used=2_000), u(VOICE, used=30), seq=41)
    assert again == dataclasses.replace(reply, replayed=True) and not w.last_writes
    w.audit()


def test_an_update_of_a_released_session_charges_its_usage_and_grants_nothing():
    w = World()
    w.create("s1", u(DATA, req=10_000))
    w.release("s1", u(DATA, used=1_000))
    reply = w.update("s1", u(DATA, req=10_000, used=500))
    data = info(reply, DATA)
    assert (data.result, data.late, data.charged_micros, data.granted_units) == \
        (Result.SESSION_ALREADY_RELEASED, True, 500, 0)
    assert w.balance().balance_micros == 100_000 - 1_500 and w.balance().reserved_micros == 0
    assert w.get_session().state == RELEASED
    w.audit()


# ====================================================================== notifications


def _notification_world() -> World:
    w = World()
    w.create("s1", u(DATA, req=1_000), client="smf-1")
    w.create("s2", u(DATA, req=1_000), client="smf-2")
    w.create("quiet", u(DATA, req=1_000))  # no notify_client_id
    w.create("gone", u(DATA, req=1_000), client="smf-1")
    w.release("gone")
    w.create("c1", u(DATA, req=1_000), client="smf-1", sub=CAROL)  # carol is on plan OTHER
    return w


def _seen(reply: ops.NotificationsReply) -> list[tuple]:
    return [(n.subscriber_id, n.session_id, n.type, n.reason) for n in reply.notifications]


def test_a_top_up_asks_the_owner_of_each_active_session_to_reauthorize():
    w = _notification_world()
    assert _seen(w.notifications("smf-1")) == []
    assert w.top_up(5_000).result == S
    notes = [r for r in w.last_writes.puts if isinstance(r, Notification)]
    assert sorted(n.session_id for n in notes) == ["s1", "s2"]  # not "quiet", not the released "gone"
    reauth = (NotificationType.REAUTHORIZATION, NotificationReason.TOP_UP)
    assert _seen(w.notifications("smf-1")) == [(ALICE, "s1", *reauth)]
    assert _seen(w.notifications("smf-2")) == [(ALICE, "s2", *reauth)]
    assert _seen(w.notifications("smf-3")) == []
    assert _seen(w.notifications("smf-1", tenant="other-tenant")) == []
    # A top-up of another subscriber tells only her sessions' owners.
    w.top_up(1_000, sub=CAROL)
    assert _seen(w.notifications("smf-1")) == [(ALICE, "s1", *reauth), (CAROL, "c1", *reauth)]
    assert _seen(w.notifications("smf-2")) == [(ALICE, "s2", *reauth)]
    w.audit()


def test_a_retried_top_up_does_not_notify_again():
    w = _notification_world()
    op = ops.TopUp(T, ALICE, "topup-1", 5_000)
    w.do(op)
    assert w.do(op).replayed and not w.last_writes
    assert len(w.notifications("smf-1").notifications) == 1


def test_closing_an_account_aborts_charging():
    w = _notification_world()
    w.do(ops.SetAccountState(T, ALICE, w.rid(), AccountState.CLOSED))
    assert _seen(w.notifications("smf-1")) == [
        (ALICE, "s1", NotificationType.ABORT_CHARGING, NotificationReason.ACCOUNT_CLOSED)]


def test_a_suspension_aborts_charging_and_a_reactivation_reauthorizes():
    w = _notification_world()
    w.do(ops.SetAccountState(T, ALICE, w.rid(), AccountState.SUSPENDED))
    assert _seen(w.notifications("smf-1")) == [
        (ALICE, "s1", NotificationType.ABORT_CHARGING, NotificationReason.ACCOUNT_SUSPENDED)]
    assert _seen(w.notifications("smf-2")) == [
        (ALICE, "s2", NotificationType.ABORT_CHARGING, NotificationReason.ACCOUNT_SUSPENDED)]
    w.do(ops.SetAccountState(T, ALICE, w.rid(), AccountState.ACTIVE))
    assert _seen(w.notifications("smf-1"))[-1] == (
        ALICE, "s1", NotificationType.REAUTHORIZATION, NotificationReason.ACCOUNT_REACTIVATED)
    w.audit()


def test_a_tariff_change_reauthorizes_the_sessions_on_that_plan_only():
    w = _notification_world()
    cheaper = TariffPlan("basic", (Rate(DATA, Unit.BYTES, 1, 2, 1),) + RATES[1:])
    assert w.shard.apply(ops.PutTariff(cheaper), w.now).result == S
    w.commit()
    changed = (NotificationType.REAUTHORIZATION, NotificationReason.TARIFF_CHANGED)
    assert _seen(w.notifications("smf-1")) == [(ALICE, "s1", *changed)]  # not carol's c1 (plan OTHER)
    assert _seen(w.notifications("smf-2")) == [(ALICE, "s2", *changed)]
    # The same plan again changes nothing and tells nobody.
    assert w.shard.apply(ops.PutTariff(cheaper), w.now).result == S
    assert not w.shard.take_writes()
    assert len(w.notifications("smf-1").notifications) == 1
    w.audit()


def test_notifications_are_read_with_a_resumable_cursor():
    w = _notification_world()
    for amount in (1_000, 2_000, 3_000):
        w.top_up(amount)
    first = w.notifications("smf-1", limit=2)
    assert len(first.notifications) == 2
    sequences = [n.sequence for n in first.notifications]
    assert sequences == sorted(sequences) and first.last_sequence >= sequences[-1]
    rest = w.notifications("smf-1", after=sequences[-1])
    assert len(rest.notifications) == 1 and rest.notifications[0].sequence > sequences[-1]
    assert not first.lost and not rest.lost
    after_all = w.notifications("smf-1", after=rest.notifications[0].sequence)
    assert after_all.notifications == ()
    # A new event after the cursor is found from it, and only it.
    w.top_up(4_000)
    newer = w.notifications("smf-1", after=rest.notifications[0].sequence)
    assert [n.session_id for n in newer.notifications] == ["s1"]
    assert newer.notifications[0].sequence > rest.notifications[0].sequence
    w.audit()


def test_a_session_released_or_supervised_is_not_notified():
    w = World()
    w.create("s1", u(DATA, req=1_000), client="smf-1")
    w.create("s2", u(DATA, req=1_000), client="smf-1")
    w.release("s1")
    w.top_up(1_000)
    assert [n.session_id for n in w.notifications("smf-1").notifications] == ["s2"]
    w.sweep(ms=w.get_session("s2").supervision_deadline_ms - w.now)
    assert w.get_session("s2").state == ABNORMAL
    w.top_up(1_000)
    assert [n.session_id for n in w.notifications("smf-1").notifications] == ["s2"]
    w.audit()


def test_an_update_can_set_the_notify_client_id():
    w = World()
    w.create("s1", u(DATA, req=1_000))
    w.top_up(1_000)
    assert w.notifications("smf-9").notifications == ()
    w.update("s1", u(DATA, req=1_000), client="smf-9")
    w.top_up(1_000)
    assert [n.session_id for n in w.notifications("smf-9").notifications] == ["s1"]


# ====================================================================== restart


def _both(world: World, restored: ShardState, operation):
    """Apply one operation to the live shard and to the restored one: same reply."""
    [live] = world.shard.apply_batch([operation], world.now)
    world.commit()
    world.account_for(operation, live)
    [other] = restored.apply_batch([operation], world.now)
    restored.take_writes()
    assert live == other, f"{operation!r}\nlive:     {live!r}\nrestored: {other!r}"
    return live


def test_a_restart_in_the_middle_of_a_session_continues_it_exactly():
    w = World()
    w.create("s1", u(DATA, req=10_000), u(VOICE, req=600), client="smf-1")
    w.create("s2", u(VIDEO, req=1_000), client="smf-1")
    w.now += 30 * SECOND
    w.update("s1", u(DATA, req=10_000, used=4_000), u(VOICE, req=600, used=90))
    w.top_up(1_000)  # a notification
    w.now += 10 * SECOND
    restored = w.restored()
    assert _state(restored) == _state(w.shard)
    assert restored.meta.next_notification_sequence == w.shard.meta.next_notification_sequence > 1
    # Reads agree.
    for read in (ops.GetSession(T, ALICE, "s1"), ops.GetSession(T, ALICE, "s2"), ops.GetBalance(T, ALICE),
                 ops.ReadNotifications(T, "smf-1", 0, 10),
                 ops.GetTransaction(T, ALICE, ops.session_request_id("s1", 1))):
        assert restored.apply(read, w.now) == w.read(read), read
    # A retransmission from before the restart is a replay on both; an older number refused on both.
    assert _both(w, restored, w.session_op("update", "s1", u(DATA, req=10_000, used=4_000),
                                           u(VOICE, req=600, used=90), seq=1)).replayed
    assert isinstance(_both(w, restored, ops.UpdateSession(T, ALICE, "s2", 0, (u(VIDEO, used=1),))), ops.Rejection)
    # The session goes on the same way on both.
    _both(w, restored, w.session_op("update", "s1", u(DATA, req=10_000, used=10_500), u(VOICE, req=600, used=600)))
    _both(w, restored, ops.TopUp(T, ALICE, "after-restart", 2_000))
    _both(w, restored, ops.SetAccountState(T, ALICE, "suspend", AccountState.SUSPENDED))
    assert restored.apply(ops.ReadNotifications(T, "smf-1", 0, 100), w.now) == w.notifications("smf-1")
    _both(w, restored, w.session_op("release", "s1", u(DATA, used=3_000)))
    # The other session is supervised at the same instant on both.
    deadline = w.get_session("s2").supervision_deadline_ms
    w.now = deadline
    assert w.shard.apply_batch([], w.now) == restored.apply_batch([], w.now) == []
    w.commit()
    restored.take_writes()
    assert w.get_session("s2").state == ABNORMAL
    assert _state(restored) == _state(w.shard)
    w.audit()


def test_a_restart_keeps_sessions_notifications_and_sequence_numbers_from_disk_alone():
    w = World()
    w.create("s1", u(DATA, req=10_000), client="smf-1")
    w.update("s1", u(DATA, req=10_000, used=100), seq=5)
    w.top_up(1_000)
    cursor = w.notifications("smf-1").last_sequence
    restarted = w.restored()
    w.shard = restarted  # from here on only the restarted shard exists
    stale = w.do(ops.UpdateSession(T, ALICE, "s1", 4, (u(DATA, used=1),)))
    assert (stale.code, stale.field) == (ErrorCode.FAILED_PRECONDITION, "invocation_sequence_number")
    w.top_up(1_000)
    newer = w.notifications("smf-1", after=cursor)
    assert [(n.session_id, n.sequence) for n in newer.notifications] == [("s1", cursor + 1)]
    assert not newer.lost
    assert w.release("s1", u(DATA, used=1_000), seq=6).session_state == RELEASED
    w.audit()


# ====================================================================== regressions
# Both were bugs of the uncommitted session core this file was first written against;
# commit 096e7d4 fixed them. Each test fails on that earlier code.


def test_a_session_forgotten_and_adopted_again_in_one_batch_survives_a_restart():
    """When the sweep at the start of a batch forgets a closed session (past the
    idempotency horizon) and a late update in the same batch adopts the same key
    again, the batch must not both put and delete the session: the store applies
    deletes after puts, so the live session would vanish on restart (its sequence
    number, supervision and notify_client_id), its active hold orphaned."""
    w = World(limits=CoreLimits(idempotency_horizon_s=3_600))
    w.create("s1", u(DATA, req=1_000), client="smf-1")
    w.release("s1", u(DATA, used=10))
    w.now += 3_601 * SECOND
    # One batch: the sweep forgets the released s1, then this late update adopts s1 again.
    reply = w.update("s1", u(DATA, req=1_000, used=100), client="smf-1")
    assert reply.result == S and info(reply, DATA).late and w.get_session().state == ACTIVE
    restarted = w.restored()  # the disk applies puts, then deletes, as ShardStore.commit does
    assert restarted.sessions.keys() == w.shard.sessions.keys()
    assert _state(restarted) == _state(w.shard)


def test_the_order_of_rating_groups_in_a_request_does_not_change_the_grants():
    """A group asking for more quota, listed before a group that closes its hold
    in the same update, gets the money that hold frees: every reported hold is
    closed before any new grant (else it got a smaller, final grant with
    TERMINATE while the money was available once the request applied)."""
    outcomes = []
    for data_first in (True, False):
        w = World(balance=10_000)
        w.create("s1", u(DATA, req=5_000), u(VOICE, req=300))  # all the money held: 5_000 + 5_000
        more_data, close_voice = u(DATA, req=10_000), u(VOICE, used=0)
        reply = w.update("s1", *((more_data, close_voice) if data_first else (close_voice, more_data)))
        data = info(reply, DATA)
        outcomes.append((data.granted_units, data.final_unit_action, w.balance()))
        w.audit()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 10_000


# ====================================================================== property


_used = st.one_of(st.just(0), st.integers(0, 3_000), st.integers(0, 12_000))
_usage = st.tuples(st.sampled_from([DATA, VOICE, VIDEO, UNRATED]), st.integers(0, 6_000), _used)
_usages = st.lists(_usage, max_size=3, unique_by=lambda t: t[0])
_sid = st.sampled_from(["a", "b"])
_session_action = st.tuples(st.sampled_from(["update", "update", "update", "release", "create"]), _sid, _usages,
                            st.sampled_from([1, 1, 1, 3]))
_actions = st.lists(
    st.one_of(
        _session_action, _session_action, _session_action,  # weighted: mostly session requests
        st.tuples(st.just("topup"), st.integers(1, 20_000)),
        st.tuples(st.sampled_from(["advance", "wait"]), st.sampled_from([1, 30, 60, 120, 331, 700])),
        st.tuples(st.just("retransmit")),
        st.tuples(st.just("restart")),
    ),
    max_size=30,
)


def _sweep_writes(world: World):
    """What the next batch's sweep alone writes (the clock may have moved since the last batch)."""
    twin = copy.deepcopy(world.shard)
    assert twin.apply_batch([], world.now) == []
    return twin.take_writes()


@given(balance=st.integers(0, 60_000), opening=st.tuples(_usages, _usages), actions=_actions)
def test_random_sessions_conserve_money_and_keep_every_invariant(balance, opening, actions):
    """Two sessions opened, then random updates, releases, top-ups, clock moves
    (hold expiry, supervision; swept at once or by the next batch),
    retransmissions and restarts."""
    w = World(balance=balance)
    last = None  # (operation, reply, when) of the last session request applied
    steps = [("create", sid, [(rg, req, 0) for rg, req, _ in usages], 1) for sid, usages in zip("ab", opening)]
    for action in steps + actions:
        available_before = w.shard.accounts[(T, ALICE)].available_micros()
        kind = action[0]
        if kind in _KINDS:
            _, sid, usages, step = action
            seq = w.sequence.get((ALICE, sid), -1) + step
            units = tuple(u(rg, 0 if kind == "release" else req, used) for rg, req, used in usages)
            operation = w.session_op(kind, sid, *units, seq=seq)
            swept = _sweep_writes(w)
            reply = w.do(operation)
            if isinstance(reply, ops.Rejection):
                # The only refusal possible here: a create for a session that exists. Usage is never refused.
                assert kind == "create" and (reply.code, reply.field) == (ErrorCode.ALREADY_EXISTS, "session_id")
                assert w.last_writes == swept, "a refused request wrote more than the batch's sweep"
                event("create refused: the session exists")
                continue
            assert reply.result == S and not reply.replayed
            assert [i.rating_group for i in reply.multiple_unit_information] == [x.rating_group for x in units]
            for i, asked in zip(reply.multiple_unit_information, units):
                event(f"{kind}: {i.result.name}{' late' if i.late else ''}{' overage' if i.overage_micros else ''}"
                      f"{' final' if i.final_unit_action else ''}")
                assert (i.result == Result.RATING_FAILED) == (i.rating_group == UNRATED)
                # Used units are charged whatever else happens (an unrated group is never charged zero).
                assert bool(i.charge_id) == (asked.used_units > 0 and i.rating_group != UNRATED), i
                assert i.granted_units <= asked.requested_units
                if i.granted_units:
                    # Nothing is held for a grant inside an increment the session already paid for
                    # (its usage is rated as one: 1 s used of a 60 s increment leaves 59 s paid).
                    assert i.result == S and i.held_micros >= 0 and i.reservation_id
                    assert i.validity_time_s == LIMITS.validity_time_s
                    if i.final_unit_action == NO_ACTION:
                        assert i.granted_units == asked.requested_units
                        assert i.threshold_units == i.granted_units * LIMITS.quota_threshold_percent // 100
                    else:
                        assert i.threshold_units == 0
            last = (operation, reply, w.now)
            overage = sum(i.overage_micros for i in reply.multiple_unit_information)
            if available_before >= 0 and overage == 0:
                assert w.shard.accounts[(T, ALICE)].available_micros() >= 0, reply
            # What alice holds is exactly what her sessions' live grants hold.
            assert w.balance().reserved_micros == sum(
                v.held_micros for sid_ in "ab" for v in w.get_session(sid_).reservations)
        elif kind == "topup":
            assert w.top_up(action[1]).result == S
        elif kind == "wait":  # the clock moves; the next batch's sweep sees it
            w.now += action[1] * SECOND
        elif kind == "advance":
            writes = w.sweep(action[1])
            if any(isinstance(r, JournalRecord) and r.kind == JournalKind.SESSION_SUPERVISED for r in writes.puts):
                event("a session supervised")
        elif kind == "retransmit" and last is not None \
                and w.now - last[2] < w.limits.idempotency_horizon_s * SECOND:
            operation, original, _ = last
            swept = _sweep_writes(w)
            again = w.do(operation)
            assert again == dataclasses.replace(original, replayed=True)
            assert w.last_writes == swept, "a replay wrote more than the batch's sweep"
        elif kind == "restart":
            restarted = w.restored()
            assert _state(restarted) == _state(w.shard)
            w.shard = restarted
        w.shard.check_invariants()
        assert sum(a.balance_micros for a in w.shard.accounts.values()) == w.ledger
        assert w.shard.accounts[(T, ALICE)].available_micros() >= -w.overage[ALICE]
    w.audit()
