"""Fraud and policy controls (issue 10) in the pure core: velocity over a
sliding window, low balance, concurrent sessions; the actions NOTIFY,
DENY_GRANTS, SUSPEND and REAUTHORIZE; each hit journaled with the trace id of
the operation that fired it, in the same write; state kept across a restore;
and the journal still reconciles (grid.audit) after each scenario."""

from grid import audit
from grid.domain import operations as ops
from grid.domain.outcomes import (
    AccountState, ControlAction, ControlKind, JournalKind, NotificationReason, NotificationType, Result, Unit,
)
from grid.domain.rating import Control, Rate, TariffPlan
from grid.domain.records import JournalRecord
from grid.domain.shard_state import ShardState
from grid.storage import codec

T = ops.DEFAULT_TENANT
T0 = 1_795_000_000_000
S = 1_000  # ms
EV, DATA = 1, 2  # 1_000 micros an event; 1 micro a byte
NF = "smf-1"


class World:
    def __init__(self, *controls: Control, funds: int = 1_000_000) -> None:
        self.shard = ShardState(0)
        self.journal: list[JournalRecord] = []
        self.puts = {}
        self.now = T0
        self.n = 0
        plan = TariffPlan("guarded", (Rate(EV, Unit.EVENTS, 1_000, 1, 1), Rate(DATA, Unit.BYTES, 1, 1, 1)),
                          controls=controls)
        assert self.do(ops.PutTariff(plan)).result == Result.SUCCESS
        assert self.do(ops.CreateAccount(T, "a", "open", "EUR", 0, "guarded")).result == Result.SUCCESS
        assert self.do(ops.TopUp(T, "a", "fund", funds)).result == Result.SUCCESS

    def do(self, operation, at_s: float | None = None):
        if at_s is not None:
            self.now = T0 + int(at_s * S)
        self.n += 1
        if hasattr(operation, "trace_id") and not operation.trace_id:
            import dataclasses

            operation = dataclasses.replace(operation, trace_id=f"{self.n:032x}")
        [reply] = self.shard.apply_batch([operation], self.now)
        writes = self.shard.take_writes()
        for record in writes.puts:
            if type(record) is JournalRecord:
                self.journal.append(record)
            else:
                self.puts[codec.key_of(record)] = record
        self.shard.check_invariants()
        return reply

    def charge(self, events: int, at_s: float, rating_group: int = EV):
        reply = self.do(ops.Debit(T, "a", f"d{self.n}", "", rating_group, events, False), at_s)
        assert reply.result == Result.SUCCESS, reply
        return reply

    def hits(self) -> list[tuple]:
        return [(r.reference_id, r.units, r.status, r.trace_id) for r in self.journal if r.kind == JournalKind.CONTROL_HIT]

    def notifications(self) -> list[tuple]:
        reply = self.shard.apply(ops.ReadNotifications(T, NF, 0, 100), self.now)
        return [(n.type, n.reason) for n in reply.notifications]

    def reconciles(self) -> None:
        report = audit.audit_shard(0, list(self.puts.values()), sorted(self.journal, key=lambda r: r.sequence))
        assert report.ok, report.problems


def burst(action=ControlAction.DENY_GRANTS, limit=5_000, window_s=60, groups=()) -> Control:
    return Control("burst", ControlKind.SPEND_VELOCITY, limit, window_s, action, groups)


def test_spend_velocity_denies_grants_for_its_window_and_fires_once_per_window():
    w = World(burst())
    w.charge(2, 0)
    w.charge(2, 1)
    assert w.hits() == []
    third = w.charge(2, 2)  # 6_000 within 60 s
    assert w.hits() == [("burst", 6_000, "DENY_GRANTS", third.trace_id)]
    # The hit follows the debit that fired it in the journal (the same write).
    debit = next(r for r in w.journal if r.kind == JournalKind.DEBIT and r.trace_id == third.trace_id)
    hit = next(r for r in w.journal if r.kind == JournalKind.CONTROL_HIT)
    assert hit.sequence == debit.sequence + 1 and hit.request_id == debit.request_id
    assert w.do(ops.Reserve(T, "a", "r1", "s", EV, 1), 3).result == Result.END_USER_SERVICE_DENIED
    assert w.do(ops.CreateSession(T, "a", "sess", 0, (ops.UnitUsage(EV, 1),)), 4).result == \
        Result.END_USER_SERVICE_DENIED
    w.charge(2, 5)  # usage is still charged (it was consumed); no second hit within the window
    assert len(w.hits()) == 1
    assert w.do(ops.Reserve(T, "a", "r2", "s", EV, 1), 62.5).result == Result.SUCCESS  # the denial has passed
    w.reconciles()


def test_the_window_slides():
    w = World(burst(action=ControlAction.NOTIFY))
    w.charge(2, 0)
    w.charge(2, 40)
    w.charge(2, 70)  # the first charge left the 60 s window: 4_000
    assert w.hits() == []
    w.charge(1, 75)  # 5_000 within [15 s, 75 s]
    assert [h[:3] for h in w.hits()] == [("burst", 5_000, "NOTIFY")]


def test_usage_velocity_counts_only_its_rating_groups_and_notifies_the_session_owner():
    control = Control("data-burst", ControlKind.USAGE_VELOCITY, 1_000, 10, ControlAction.NOTIFY, (DATA,))
    w = World(control)
    assert w.do(ops.CreateSession(T, "a", "pdu", 0, (ops.UnitUsage(DATA, 10),), NF), 0).result == Result.SUCCESS
    w.charge(5, 1)  # events: not counted
    w.charge(999, 2, rating_group=DATA)
    assert w.hits() == []
    w.charge(1, 3, rating_group=DATA)
    assert [h[:3] for h in w.hits()] == [("data-burst", 1_000, "NOTIFY")]
    assert w.notifications() == [(NotificationType.ALERT, NotificationReason.CONTROL_FIRED)]


def test_low_balance_fires_on_crossing_only_and_again_after_a_top_up():
    w = World(Control("low", ControlKind.LOW_BALANCE, 500_000, 0, ControlAction.NOTIFY), funds=600_000)
    w.charge(50, 0)  # 550_000
    assert w.hits() == []
    crossing = w.charge(60, 1)  # 490_000: crossed
    w.charge(10, 2)  # 480_000: still below, no second hit
    assert w.hits() == [("low", 490_000, "NOTIFY", crossing.trace_id)]
    w.do(ops.TopUp(T, "a", "more", 100_000), 3)  # 580_000
    w.charge(90, 4)  # 490_000: crossed again
    assert [h[:2] for h in w.hits()] == [("low", 490_000), ("low", 490_000)]
    w.reconciles()


def test_suspend_suspends_and_tells_the_sessions_to_stop():
    w = World(burst(action=ControlAction.SUSPEND, limit=3_000))
    assert w.do(ops.CreateSession(T, "a", "pdu", 0, (ops.UnitUsage(EV, 1),), NF), 0).result == Result.SUCCESS
    w.charge(3, 1)
    assert w.shard.accounts[(T, "a")].state == AccountState.SUSPENDED
    assert (NotificationType.ABORT_CHARGING, NotificationReason.CONTROL_FIRED) in w.notifications()
    state_records = [r for r in w.journal if r.kind == JournalKind.ACCOUNT_STATE]
    assert [(r.units, r.reference_id) for r in state_records] == [(int(AccountState.SUSPENDED), "burst")]
    assert w.do(ops.Reserve(T, "a", "r", "s", EV, 1), 2).result == Result.END_USER_SERVICE_DENIED
    w.reconciles()


def test_reauthorize_asks_the_sessions_again():
    w = World(burst(action=ControlAction.REAUTHORIZE, limit=2_000))
    assert w.do(ops.CreateSession(T, "a", "pdu", 0, (ops.UnitUsage(EV, 1),), NF), 0).result == Result.SUCCESS
    w.charge(2, 1)
    assert w.notifications() == [(NotificationType.REAUTHORIZATION, NotificationReason.CONTROL_FIRED)]


def test_concurrent_sessions_cap_denies_the_next_session_or_only_notifies():
    cap = Control("two-sessions", ControlKind.CONCURRENT_SESSIONS, 2, 60, ControlAction.DENY_GRANTS)
    w = World(cap)
    for i in range(2):
        assert w.do(ops.CreateSession(T, "a", f"s{i}", 0, (), NF), i).result == Result.SUCCESS
    assert w.do(ops.CreateSession(T, "a", "s2", 0, ()), 3).result == Result.TOO_MANY_SESSIONS
    assert [h[:3] for h in w.hits()] == [("two-sessions", 3, "DENY_GRANTS")]
    notify = World(Control("two", ControlKind.CONCURRENT_SESSIONS, 2, 0, ControlAction.NOTIFY))
    for i in range(3):
        assert notify.do(ops.CreateSession(T, "a", f"s{i}", 0, (), NF), i).result == Result.SUCCESS
    assert [h[:3] for h in notify.hits()] == [("two", 3, "NOTIFY")]


def test_a_restored_shard_continues_the_window_and_the_denial():
    w = World(burst())
    w.charge(2, 0)
    w.charge(2, 1)
    restored = ShardState.restore(0, [codec.decode(codec.encode(r)) for r in w.puts.values()])
    w.shard = restored
    w.charge(2, 2)
    assert [h[:3] for h in w.hits()] == [("burst", 6_000, "DENY_GRANTS")]
    again = ShardState.restore(0, [codec.decode(codec.encode(r)) for r in w.puts.values()])
    assert again.apply_batch([ops.Reserve(T, "a", "r", "s", EV, 1)], T0 + 3 * S)[0].result == \
        Result.END_USER_SERVICE_DENIED
