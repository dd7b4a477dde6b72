"""Policy counters in the pure shard core (issue 11), without Ray, gRPC or disk.

A tariff plan defines counters (usage of some rating groups, or money spent,
per UTC day / week from Monday / calendar month, with thresholds naming the
status). Every charge moves them in the same batch as the charge (journaled,
notified on the "policy" channel); the sweep resets a counter whose period
ended while its status was not the base one; policy functions subscribe to
some or all counters of a subscriber.

Conventions: every expected value, instant and status below is written out by
hand from the plan and the script (never computed by the code under test):
DATA costs 2 micros a byte, VOICE 1 micro a second, SMS 100 micros an event,
OTHER 7 micros an event, FREE nothing. Mutating steps go through
ShardState.apply_batch([op], now) as the shard shell does (the sweep runs
first); `read` and `charge_before_sweep` use ShardState.apply, which never
sweeps (a charge that arrives before the idle sweep ran). Every write taken is
kept on a "disk" through the real codec, so a restart can be rebuilt from it.
"""

import copy
import dataclasses
import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import CounterPeriod, ErrorCode, JournalKind, Result, Unit
from grid.domain.policy_counters import period_bounds
from grid.domain.rating import CounterThreshold, PolicyCounter, Rate, TariffPlan
from grid.domain.records import JournalRecord, Notification
from grid.domain.shard_state import ShardState
from grid.storage import codec

T = ops.DEFAULT_TENANT
ALICE, BOB, NOBODY = "alice", "bob", "nobody"
SHARD = 5
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

DAYP, WEEKP, MONTHP = (CounterPeriod.COUNTER_PERIOD_DAY, CounterPeriod.COUNTER_PERIOD_WEEK,
                       CounterPeriod.COUNTER_PERIOD_MONTH)

# 2023-11-14 22:13:20 UTC, a Tuesday (date -u -d @1700000000).
T0 = 1_700_000_000_000
DAY_START = 1_699_920_000_000  # 2023-11-14 00:00 UTC
DAY_END = 1_700_006_400_000  # 2023-11-15 00:00 UTC
WEEK_START = 1_699_833_600_000  # Monday 2023-11-13 00:00 UTC
WEEK_END = 1_700_438_400_000  # Monday 2023-11-20 00:00 UTC
MONTH_START = 1_698_796_800_000  # 2023-11-01 00:00 UTC
MONTH_END = 1_701_388_800_000  # 2023-12-01 00:00 UTC
DEC_END = 1_704_067_200_000  # 2024-01-01 00:00 UTC

DATA, VOICE, SMS, FREE, OTHER = 10, 20, 30, 40, 50
RATES = (
    Rate(DATA, Unit.BYTES, 2, 1, 1),  # 2 micros a byte
    Rate(VOICE, Unit.SECONDS, 60, 60, 1),  # 1 micro a second
    Rate(SMS, Unit.EVENTS, 100, 1, 1),  # 100 micros an SMS
    Rate(FREE, Unit.EVENTS, 0, 1, 1),  # free
    Rate(OTHER, Unit.EVENTS, 7, 1, 1),  # 7 micros an event
)
PRICE = {DATA: 2, VOICE: 1, SMS: 100, FREE: 0, OTHER: 7}  # micros per unit, by hand

DATA_C = PolicyCounter("data", (DATA,), False, MONTHP, "normal",
                       (CounterThreshold(800, "slowed"), CounterThreshold(1_000, "capped")))
TALK_C = PolicyCounter("talk", (VOICE, SMS), False, WEEKP, "open", (CounterThreshold(100, "limited"),))
SPEND_C = PolicyCounter("spend", (), True, DAYP, "ok",
                        (CounterThreshold(5_000, "high"), CounterThreshold(10_000, "blocked")))
SMS_SPEND_C = PolicyCounter("sms_spend", (SMS,), True, WEEKP, "low", (CounterThreshold(1_000, "high"),))
COUNTERS = (DATA_C, TALK_C, SPEND_C, SMS_SPEND_C)
PLAN = TariffPlan("pc", RATES, policy_counters=COUNTERS)
PLAIN = TariffPlan("plain", RATES)  # no counters
FUNDS = 1_000_000_000

S = Result.SUCCESS
USAGE, RESET = "USAGE", "PERIOD_RESET"


# ====================================================================== world


class World:
    """One shard: plan "pc" (the counters above) with alice and bob on it, carol
    on "plain"; each funded with FUNDS. Keeps every write through the codec."""

    def __init__(self, limits: CoreLimits = CoreLimits(), now: int = T0) -> None:
        self.limits = limits
        self.shard = ShardState(SHARD, limits)
        self.now = now
        self.disk: dict[bytes, bytes] = {}
        self.journal: list[JournalRecord] = []  # every journal record written, in order
        self.last_journal: list[JournalRecord] = []  # those of the last batch
        self._ids = itertools.count(1)
        self.position: dict[str, int] = {}  # per policy function: the last sequence it read up to
        self.heard: dict[str, list[Notification]] = {}
        assert self.shard.apply(ops.PutTariff(PLAN), self.now).result == S
        assert self.shard.apply(ops.PutTariff(PLAIN), self.now).result == S
        for subscriber, plan in ((ALICE, "pc"), (BOB, "pc"), ("carol", "plain")):
            assert self.do(ops.CreateAccount(T, subscriber, self.rid(), "EUR", 0, plan)).result == S
            assert self.do(ops.TopUp(T, subscriber, self.rid(), FUNDS)).result == S
        self.commit()

    def rid(self, prefix: str = "req") -> str:
        return f"{prefix}-{next(self._ids)}"

    def commit(self):
        writes = self.shard.take_writes()
        for record in writes.puts:
            self.disk[codec.key_of(record)] = codec.encode(record)
        deleted = [codec.idempotency_key(k) for k in writes.deleted_idempotency_keys]
        deleted += [codec.RESERVATION + r.encode() for r in writes.deleted_reservation_ids]
        deleted += [codec.CHARGE + c.encode() for c in writes.deleted_charge_ids]
        deleted += [codec.session_key(k) for k in writes.deleted_session_keys]
        deleted += [codec.notification_key(n) for n in writes.deleted_notification_sequences]
        deleted += [codec.subscription_key(k) for k in writes.deleted_subscription_keys]
        for key in deleted:
            self.disk.pop(key, None)
        self.last_journal = sorted((r for r in writes.puts if type(r) is JournalRecord), key=lambda r: r.sequence)
        self.journal.extend(self.last_journal)
        return writes

    def do(self, operation):
        """One operation as the shell applies it: a batch of one, the sweep first."""
        [reply] = self.shard.apply_batch([operation], self.now)
        self.commit()
        self.shard.check_invariants()
        return reply

    def read(self, operation):
        return self.shard.apply(operation, self.now)

    def sweep(self, at_ms: int | None = None) -> None:
        if at_ms is not None:
            assert at_ms >= self.now
            self.now = at_ms
        assert self.shard.apply_batch([], self.now) == []
        self.commit()

    # ------------------------------------------------------------ operations

    def debit(self, rating_group: int, units: int, sub: str = ALICE, rid: str | None = None) -> ops.DebitReply:
        rid = rid or self.rid("dbt")
        reply = self.do(ops.Debit(T, sub, rid, "", rating_group, units, False, trace_id=f"trace-{rid}"))
        assert reply.result == S, reply
        return reply

    def charge_before_sweep(self, rating_group: int, units: int, sub: str = ALICE,
                            rid: str | None = None) -> ops.DebitReply:
        """A direct debit applied without the batch's sweep (ShardState.apply)."""
        rid = rid or self.rid("dbt")
        reply = self.shard.apply(ops.Debit(T, sub, rid, "", rating_group, units, False, trace_id=f"trace-{rid}"),
                                 self.now)
        self.commit()
        assert reply.result == S, reply
        return reply

    def subscribe(self, client: str, *counter_ids: str, sub: str = ALICE, rid: str | None = None):
        rid = rid or self.rid("sub")
        return self.do(ops.Subscribe(T, sub, rid, client, tuple(counter_ids), trace_id=f"trace-{rid}"))

    def unsubscribe(self, client: str, sub: str = ALICE, rid: str | None = None):
        rid = rid or self.rid("unsub")
        return self.do(ops.Unsubscribe(T, sub, rid, client, trace_id=f"trace-{rid}"))

    # ------------------------------------------------------------ reading

    def counters(self, sub: str = ALICE) -> dict[str, ops.CounterStatusView]:
        reply = self.read(ops.GetCounters(T, sub))
        assert reply.result == S, reply
        views = {view.counter_id: view for view in reply.statuses}
        assert len(views) == len(reply.statuses)
        return views

    def hear(self, client: str) -> list[Notification]:
        """What the policy function hears since it last asked (as WatchStatus follows
        a shard: from its position, then past the shard's newest sequence)."""
        reply = self.read(ops.ReadNotifications(T, client, self.position.get(client, 0), 512, "policy"))
        assert isinstance(reply, ops.NotificationsReply), reply
        assert not reply.lost, f"{client} lost notifications"
        assert all(n.channel == "policy" and n.client_id == client and n.tenant == T for n in reply.notifications)
        got = list(reply.notifications)
        self.heard.setdefault(client, []).extend(got)
        self.position[client] = max([self.position.get(client, 0), reply.last_sequence] + [n.sequence for n in got])
        return got

    def notes(self, client: str) -> list[Notification]:
        """Everything the policy function heard so far."""
        self.hear(client)
        return list(self.heard[client])

    def policy_records(self, records=None) -> list[JournalRecord]:
        return [r for r in (self.journal if records is None else records) if r.kind == JournalKind.POLICY_STATUS]

    def restored(self) -> ShardState:
        return ShardState.restore(SHARD, [codec.decode(v) for v in self.disk.values()], self.limits)


def brief(n: Notification) -> tuple:
    """What a policy function acts on: (counter, previous -> status, value, cause)."""
    return (n.counter_id, n.previous_status, n.status, n.value, n.cause)


def view(counter_id, status, value, start, end, pending="", activation=0) -> ops.CounterStatusView:
    return ops.CounterStatusView(counter_id, status, value, start, end, pending, activation)


# ====================================================================== period bounds

# (period, instant, expected start, expected end), all from `date -u -d ... +%s`.
BOUNDS = [
    ("day, mid-day", DAYP, T0, DAY_START, DAY_END),
    ("day, its first ms", DAYP, DAY_START, DAY_START, DAY_END),
    ("day, its last ms", DAYP, DAY_END - 1, DAY_START, DAY_END),
    ("day, the next day's first ms", DAYP, DAY_END, DAY_END, DAY_END + DAY),
    ("week of a Tuesday starts the Monday before", WEEKP, T0, WEEK_START, WEEK_END),
    ("week, Monday 00:00 starts its own week", WEEKP, WEEK_START, WEEK_START, WEEK_END),
    ("week, Sunday 23:59:59.999 is the week before", WEEKP, WEEK_START - 1, 1_699_228_800_000, WEEK_START),
    # Tuesday 2024-12-31 12:00: Monday 2024-12-30 .. Monday 2025-01-06 (a week across the new year).
    ("week across the new year", WEEKP, 1_735_646_400_000, 1_735_516_800_000, 1_736_121_600_000),
    # 1970-01-01 is a Thursday: Monday 1969-12-29 .. Monday 1970-01-05.
    ("week of the epoch", WEEKP, 0, -259_200_000, 345_600_000),
    ("month, mid-month", MONTHP, T0, MONTH_START, MONTH_END),
    ("month, its first ms", MONTHP, MONTH_START, MONTH_START, MONTH_END),
    ("month, its last ms", MONTHP, MONTH_END - 1, MONTH_START, MONTH_END),
    # 2023-12-31 23:59:59.999: December 2023 ends at 2024-01-01 00:00.
    ("December to January", MONTHP, DEC_END - 1, MONTH_END, DEC_END),
    ("January 1st", MONTHP, DEC_END, DEC_END, 1_706_745_600_000),
    # 2024-02-29 12:00 (leap year): 2024-02-01 .. 2024-03-01.
    ("leap February", MONTHP, 1_709_208_000_000, 1_706_745_600_000, 1_709_251_200_000),
    # 2023-02-28 23:00 (not a leap year): 2023-02-01 .. 2023-03-01.
    ("February of a common year", MONTHP, 1_677_625_200_000, 1_675_209_600_000, 1_677_628_800_000),
    ("a 31-day month (December 2024)", MONTHP, 1_733_011_200_000 + 5 * DAY, 1_733_011_200_000, 1_735_689_600_000),
]


@pytest.mark.parametrize("name,period,at,start,end", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_period_bounds_are_utc_days_weeks_from_monday_and_calendar_months(name, period, at, start, end):
    assert period_bounds(period, at) == (start, end)


# ====================================================================== counting


def test_a_usage_counter_counts_units_of_its_groups_and_a_spend_counter_money():
    w = World()
    assert w.counters() == {
        "data": view("data", "normal", 0, MONTH_START, MONTH_END),
        "talk": view("talk", "open", 0, WEEK_START, WEEK_END),
        "spend": view("spend", "ok", 0, DAY_START, DAY_END),
        "sms_spend": view("sms_spend", "low", 0, WEEK_START, WEEK_END),
    }
    w.debit(DATA, 300)  # data 300 bytes, 600 micros
    w.debit(VOICE, 90)  # talk 90 s, 90 micros
    w.debit(SMS, 2)  # talk 2 events, 200 micros (also sms_spend)
    w.debit(OTHER, 3)  # counted by no usage counter; 21 micros of spend
    w.debit(FREE, 5)  # nothing: no usage counter counts it and it costs nothing
    values = {cid: (v.status, v.value) for cid, v in w.counters().items()}
    assert values == {"data": ("normal", 300), "talk": ("open", 92), "spend": ("ok", 911),
                      "sms_spend": ("low", 200)}
    # Per subscriber: bob's counters did not move, and carol's plan has none.
    assert {cid: v.value for cid, v in w.counters(BOB).items()} == dict.fromkeys(values, 0)
    assert w.counters("carol") == {}
    assert w.read(ops.GetCounters(T, NOBODY)) == ops.CountersReply(Result.USER_UNKNOWN)
    assert w.policy_records() == []  # no threshold crossed: no status record


def test_thresholds_crossed_one_at_a_time_notify_each_change_with_the_charge_that_caused_it():
    w = World()
    assert w.subscribe("pcf").result == S
    w.debit(DATA, 799)
    assert w.notes("pcf") == [] and w.counters()["data"].status == "normal"
    slowed = w.debit(DATA, 1, rid="at-800")  # exactly the threshold: at_least is inclusive
    w.debit(DATA, 199)  # 999: still slowed, no news
    capped = w.debit(DATA, 1, rid="at-1000")
    notes = w.notes("pcf")
    assert [brief(n) for n in notes] == [("data", "normal", "slowed", 800, USAGE),
                                         ("data", "slowed", "capped", 1_000, USAGE)]
    assert [(n.request_id, n.trace_id) for n in notes] == [("at-800", "trace-at-800"), ("at-1000", "trace-at-1000")]
    assert slowed.trace_id == "trace-at-800" and capped.trace_id == "trace-at-1000"
    for n in notes:
        assert (n.subscriber_id, n.tenant, n.at_ms) == (ALICE, T, T0)
        assert (n.period_start_ms, n.period_end_ms, n.pending_status) == (MONTH_START, MONTH_END, "normal")
    assert notes[0].sequence < notes[1].sequence
    # 2_000 micros of data is below the spend threshold: spend never changed.
    assert w.counters()["spend"] == view("spend", "ok", 2_000, DAY_START, DAY_END)
    assert [(r.reference_id, r.status, r.units, r.request_id) for r in w.policy_records()] == [
        ("data", "slowed", 800, "at-800"), ("data", "capped", 1_000, "at-1000")]


def test_two_thresholds_crossed_by_one_charge_give_one_notification_with_the_final_status():
    w = World()
    w.subscribe("pcf")
    w.debit(DATA, 1_200, rid="big")
    assert [brief(n) for n in w.notes("pcf")] == [("data", "normal", "capped", 1_200, USAGE)]
    assert [(r.reference_id, r.status, r.units) for r in w.policy_records()] == [("data", "capped", 1_200)]
    # And a spend counter jumping its two thresholds at once (10_100 micros of SMS).
    w.debit(SMS, 101, rid="sms")
    notes = w.notes("pcf")[1:]
    assert [brief(n) for n in notes] == [("talk", "open", "limited", 101, USAGE),
                                         ("spend", "ok", "blocked", 2_400 + 10_100, USAGE),
                                         ("sms_spend", "low", "high", 10_100, USAGE)]
    assert {n.request_id for n in notes} == {"sms"}


def test_a_spend_counter_with_rating_groups_counts_only_their_money():
    w = World()
    w.subscribe("pcf", "sms_spend")
    w.debit(DATA, 5_000)  # 10_000 micros, but not SMS
    w.debit(OTHER, 100)
    assert w.counters()["sms_spend"].value == 0 and w.notes("pcf") == []
    w.debit(SMS, 9)
    w.debit(SMS, 1)  # 1_000 micros of SMS: high
    assert [brief(n) for n in w.notes("pcf")] == [("sms_spend", "low", "high", 1_000, USAGE)]


def test_session_usage_and_late_debits_count_too():
    w = World()
    w.subscribe("pcf", "data")
    assert w.do(ops.CreateSession(T, ALICE, "s1", 1, (ops.UnitUsage(DATA, requested_units=600),))).result == S
    assert w.counters()["data"].value == 0  # a grant is not usage
    w.do(ops.UpdateSession(T, ALICE, "s1", 2, (ops.UnitUsage(DATA, requested_units=600, used_units=500),)))
    w.do(ops.UpdateSession(T, ALICE, "s1", 3, (ops.UnitUsage(DATA, requested_units=600, used_units=400),)))
    assert [(brief(n), n.request_id) for n in w.notes("pcf")] == [
        (("data", "normal", "slowed", 900, USAGE), ops.session_request_id("s1", 3))]
    # The last policy record follows the update's own records in the same batch.
    assert w.last_journal[-1].kind == JournalKind.POLICY_STATUS
    assert w.do(ops.ReleaseSession(T, ALICE, "s1", 4, (ops.UnitUsage(DATA, used_units=50),))).result == S
    assert w.counters()["data"].value == 950
    # A hold that expired before its usage was reported: the late debit is usage all the same.
    reserved = w.do(ops.Reserve(T, ALICE, w.rid(), "s2", DATA, 100))
    w.sweep(w.now + (w.limits.validity_time_s + w.limits.expiry_grace_s) * SECOND + 1)
    late = w.do(ops.Debit(T, ALICE, "late", reserved.reservation_id, DATA, 100, True))
    assert (late.result, late.late) == (S, True)
    assert [brief(n) for n in w.notes("pcf")][1:] == [("data", "slowed", "capped", 1_050, USAGE)]
    assert w.notes("pcf")[1].request_id == "late"


def test_a_retransmitted_charge_counts_once():
    w = World()
    w.subscribe("pcf")
    first = w.debit(DATA, 900, rid="once")
    again = w.do(ops.Debit(T, ALICE, "once", "", DATA, 900, False, trace_id="trace-retry"))
    assert again == dataclasses.replace(first, replayed=True)
    assert w.last_journal == []
    assert w.counters()["data"].value == 900 and [n.status for n in w.notes("pcf")] == ["slowed"]


def test_refunds_do_not_lower_a_counter():
    """A documented decision (README): a counter counts what was used and charged."""
    w = World()
    w.subscribe("pcf")
    charge = w.debit(DATA, 900)
    refunded = w.do(ops.Refund(T, ALICE, w.rid(), charge.charge_id, charge.charged_micros))
    assert (refunded.result, refunded.refunded_micros) == (S, 1_800)
    assert {cid: (v.status, v.value) for cid, v in w.counters().items()}["data"] == ("slowed", 900)
    assert w.counters()["spend"].value == 1_800
    assert [brief(n) for n in w.notes("pcf")] == [("data", "normal", "slowed", 900, USAGE)]


def test_denied_and_rejected_charges_count_nothing():
    poor = World()
    poor.subscribe("pcf")
    refused = poor.do(ops.Debit(T, ALICE, poor.rid(), "", DATA, FUNDS, False))  # 2 * FUNDS: more than there is
    assert refused.result == Result.CREDIT_LIMIT_REACHED
    unrated = poor.do(ops.Debit(T, ALICE, poor.rid(), "", 99, 5, False))
    assert unrated.result == Result.RATING_FAILED
    assert {v.value for v in poor.counters().values()} == {0}
    assert poor.notes("pcf") == [] and poor.policy_records() == []


# ====================================================================== journal


def test_a_status_record_follows_the_charge_in_the_journal_and_keeps_the_balance_chain():
    w = World()
    w.debit(DATA, 500)
    big = w.debit(DATA, 2_500, rid="big")  # data 3_000 -> capped; 6_000 micros of spend -> high
    records = w.last_journal
    assert [(r.kind, r.reference_id, r.status) for r in records] == [
        (JournalKind.DEBIT, big.charge_id, ""),
        (JournalKind.POLICY_STATUS, "data", "capped"),
        (JournalKind.POLICY_STATUS, "spend", "high"),
    ]
    debit = records[0]
    assert debit.balance_after_micros == FUNDS - 1_000 - 5_000
    for record in records[1:]:
        assert (record.request_id, record.trace_id, record.result) == ("big", "trace-big", S)
        assert record.balance_before_micros == record.balance_after_micros == debit.balance_after_micros
        assert record.reserved_before_micros == record.reserved_after_micros == debit.reserved_after_micros
        assert (record.tenant, record.subscriber_id, record.at_ms) == (T, ALICE, T0)
    assert [r.units for r in records[1:]] == [3_000, 6_000]
    assert [r.sequence for r in records] == list(range(records[0].sequence, records[0].sequence + 3))


def _chain_is_continuous(records: list[JournalRecord], subscriber: str) -> None:
    mine = [r for r in records if r.subscriber_id == subscriber]
    for before, after in zip(mine, mine[1:]):
        assert after.balance_before_micros == before.balance_after_micros, (before, after)
        assert after.reserved_before_micros == before.reserved_after_micros, (before, after)


def test_the_journal_chain_stays_continuous_through_sessions_resets_and_denials():
    w = World()
    w.subscribe("pcf")
    w.do(ops.CreateSession(T, ALICE, "s1", 1, (ops.UnitUsage(DATA, requested_units=700),
                                               ops.UnitUsage(SMS, requested_units=5))))
    # One update: two charges, two new grants, three counters changing.
    w.do(ops.UpdateSession(T, ALICE, "s1", 2, (ops.UnitUsage(DATA, requested_units=700, used_units=700),
                                               ops.UnitUsage(SMS, requested_units=5, used_units=5))))
    w.do(ops.UpdateSession(T, ALICE, "s1", 3, (ops.UnitUsage(DATA, requested_units=10, used_units=300),)))
    kinds = [r.kind for r in w.last_journal]
    assert kinds[-1] == JournalKind.POLICY_STATUS and JournalKind.DEBIT in kinds
    w.do(ops.Debit(T, ALICE, w.rid(), "", DATA, FUNDS, False))  # denied: journaled, counts nothing
    w.charge_before_sweep(OTHER, 1)
    w.sweep(DAY_END)  # spend was not high (2_507 micros): nothing to reset
    w.debit(SMS, 60)  # spend 6_000 -> high on the new day
    w.sweep(DAY_END + DAY)  # reset by the sweep
    w.sweep(MONTH_END)  # data capped -> normal
    assert len(w.policy_records()) >= 4
    _chain_is_continuous(w.journal, ALICE)


# ====================================================================== resets


def test_the_sweep_resets_a_counter_at_its_period_end_and_tells_its_policy_functions():
    w = World()
    w.subscribe("pcf")
    w.debit(DATA, 500)  # data normal 500 (base status: a quiet reset), spend 1_000
    w.debit(SMS, 41, rid="sms")  # spend 5_100 -> high; talk 41; sms_spend 4_100 -> high
    before = w.notes("pcf")
    assert [brief(n) for n in before] == [("spend", "ok", "high", 5_100, USAGE),
                                          ("sms_spend", "low", "high", 4_100, USAGE)]
    assert w.counters()["spend"] == view("spend", "high", 5_100, DAY_START, DAY_END, "ok", DAY_END)
    records = len(w.journal)

    w.sweep(DAY_END - 1)
    assert w.notes("pcf") == before and len(w.journal) == records
    w.sweep(DAY_END)  # the period is [start, end): at its end the next one begins
    [reset] = w.hear("pcf")
    assert brief(reset) == ("spend", "high", "ok", 0, RESET)
    assert (reset.request_id, reset.trace_id, reset.at_ms) == ("", "", DAY_END)
    assert (reset.period_start_ms, reset.period_end_ms, reset.pending_status) == (DAY_END, DAY_END + DAY, "")
    [record] = w.journal[records:]
    assert (record.kind, record.reference_id, record.status, record.units, record.request_id, record.at_ms) == (
        JournalKind.POLICY_STATUS, "spend", "ok", 0, "", DAY_END)
    assert w.counters()["spend"] == view("spend", "ok", 0, DAY_END, DAY_END + DAY)
    w.sweep(DAY_END + HOUR)  # nothing more
    assert len(w.notes("pcf")) == 3

    w.sweep(WEEK_END)  # sms_spend high -> low; talk (open, 41) resets quietly
    assert [brief(n) for n in w.notes("pcf")[3:]] == [("sms_spend", "high", "low", 0, RESET)]
    assert w.counters()["talk"] == view("talk", "open", 0, WEEK_END, WEEK_END + 7 * DAY)
    w.sweep(MONTH_END)  # data was normal: reset without news or record
    assert len(w.notes("pcf")) == 4
    assert [r.reference_id for r in w.policy_records()] == ["spend", "sms_spend", "spend", "sms_spend"]
    assert w.counters()["data"] == view("data", "normal", 0, MONTH_END, DEC_END)


def test_a_base_status_counter_starts_from_zero_on_the_next_charge_after_its_period():
    w = World()
    w.subscribe("pcf")
    w.debit(DATA, 700)  # normal
    w.now = MONTH_END + 5 * SECOND
    w.debit(DATA, 200)  # a new month: 200, not 900
    assert w.counters()["data"] == view("data", "normal", 200, MONTH_END, DEC_END)
    assert [n.counter_id for n in w.notes("pcf")] == []
    assert w.policy_records() == []


def test_a_charge_before_the_sweep_resets_the_counter_lazily_then_counts_in_the_new_period():
    w = World()
    w.subscribe("pcf", "spend")
    w.debit(SMS, 50)  # spend 5_000 -> high
    w.now = DAY_END + 10 * SECOND
    # A read before anything swept: the new day, the base status, nothing pending.
    assert w.counters()["spend"] == view("spend", "ok", 0, DAY_END, DAY_END + DAY)
    assert w.shard.counters[(T, ALICE, "spend")].status == "high"  # not reset yet
    w.charge_before_sweep(OTHER, 1, rid="next-day")
    assert [(r.kind, r.reference_id, r.status, r.units, r.request_id) for r in w.last_journal] == [
        (JournalKind.DEBIT, w.last_journal[0].reference_id, "", 1, "next-day"),
        (JournalKind.POLICY_STATUS, "spend", "ok", 0, ""),  # the reset, before the charge is counted
    ]
    notes = w.notes("pcf")
    assert [brief(n) for n in notes] == [("spend", "ok", "high", 5_000, USAGE), ("spend", "high", "ok", 0, RESET)]
    assert notes[1].period_start_ms == DAY_END
    assert w.counters()["spend"] == view("spend", "ok", 7, DAY_END, DAY_END + DAY)
    # The sweep that comes later finds nothing left to reset.
    w.sweep(w.now + SECOND)
    assert len(w.notes("pcf")) == 2
    # A lazy reset straight into a new threshold: a reset, then the usage change.
    w.debit(SMS, 100)  # spend 10_007 -> blocked
    w.now = DAY_END + DAY + 1
    w.charge_before_sweep(SMS, 60, rid="again")  # 6_000 on the third day -> high
    assert [(brief(n), n.request_id) for n in w.notes("pcf")[3:]] == [
        (("spend", "blocked", "ok", 0, RESET), ""), (("spend", "ok", "high", 6_000, USAGE), "again")]


# ====================================================================== pending status


def test_views_announce_the_pending_base_status_at_the_period_end():
    w = World()
    w.debit(DATA, 850)
    w.debit(SMS, 1)
    assert w.counters() == {
        "data": view("data", "slowed", 850, MONTH_START, MONTH_END, "normal", MONTH_END),
        "talk": view("talk", "open", 1, WEEK_START, WEEK_END),
        "spend": view("spend", "ok", 1_800, DAY_START, DAY_END),
        "sms_spend": view("sms_spend", "low", 100, WEEK_START, WEEK_END),
    }
    # Subscribe answers the same views (only those asked for when some are named).
    reply = w.subscribe("pcf", "spend", "data")
    assert reply.result == S
    assert {v.counter_id: v for v in reply.statuses} == {k: w.counters()[k] for k in ("data", "spend")}
    assert {v.counter_id for v in w.subscribe("pcf2").statuses} == {"data", "talk", "spend", "sms_spend"}
    # After the period end, before any sweep: the view shows the new period already.
    w.now = MONTH_END
    assert w.counters()["data"] == view("data", "normal", 0, MONTH_END, DEC_END)


# ====================================================================== subscriptions


def test_notifications_reach_only_the_policy_functions_whose_subscription_covers_the_counter():
    w = World()
    w.subscribe("pcf-all")
    w.subscribe("pcf-data", "data")
    w.subscribe("pcf-sms", "sms_spend", "talk")
    w.subscribe("pcf-bob", sub=BOB)
    w.debit(SMS, 10)  # talk 10, sms_spend 1_000 -> high
    w.debit(DATA, 900)  # data slowed
    w.debit(VOICE, 90)  # talk 100 -> limited
    expect_sms = [("sms_spend", "low", "high", 1_000, USAGE), ("talk", "open", "limited", 100, USAGE)]
    expect_data = [("data", "normal", "slowed", 900, USAGE)]
    assert [brief(n) for n in w.notes("pcf-all")] == [expect_sms[0], expect_data[0], expect_sms[1]]
    assert [brief(n) for n in w.notes("pcf-data")] == expect_data
    assert [brief(n) for n in w.notes("pcf-sms")] == expect_sms
    assert w.notes("pcf-bob") == []
    w.debit(DATA, 1_000, sub=BOB)
    assert [(n.subscriber_id, *brief(n)) for n in w.notes("pcf-bob")] == [
        (BOB, "data", "normal", "capped", 1_000, USAGE)]
    assert len(w.notes("pcf-all")) == 3


def test_an_unknown_counter_or_subscriber_subscribes_nothing():
    w = World()
    reply = w.subscribe("pcf", "data", "nope", rid="bad")
    assert reply == ops.SubscribeReply(Result.COUNTER_UNKNOWN, trace_id="trace-bad")
    assert w.shard.subscriptions == {}
    assert [(r.kind, r.result, r.request_id) for r in w.last_journal] == [
        (JournalKind.SUBSCRIBED, Result.COUNTER_UNKNOWN, "bad")]
    assert w.subscribe("pcf", "data", sub="carol").result == Result.COUNTER_UNKNOWN  # a plan without counters
    assert w.subscribe("pcf", sub=NOBODY).result == Result.USER_UNKNOWN
    assert w.unsubscribe("pcf", sub=NOBODY).result == Result.USER_UNKNOWN
    w.debit(DATA, 1_000)
    assert w.notes("pcf") == []
    # The refusal is the request's answer for good: a retry is told the same.
    again = w.subscribe("pcf", "data", "nope", rid="bad")
    assert again == dataclasses.replace(reply, replayed=True)
    assert w.shard.subscriptions == {}


def test_subscribing_again_replaces_the_counter_set():
    w = World()
    w.subscribe("pcf", "data")
    w.subscribe("pcf", "spend")  # a new request: now only spend
    assert list(w.shard.subscriptions) == [(T, ALICE, "pcf")]
    assert w.shard.subscriptions[(T, ALICE, "pcf")].counter_ids == ("spend",)
    w.debit(DATA, 900)  # data slowed: not for pcf any more; spend 1_800
    assert w.notes("pcf") == []
    w.debit(OTHER, 500)  # spend 5_300 -> high
    assert [brief(n) for n in w.notes("pcf")] == [("spend", "ok", "high", 5_300, USAGE)]
    w.subscribe("pcf")  # everything
    w.debit(DATA, 100)  # data capped, spend 5_500
    assert [brief(n) for n in w.notes("pcf")][1:] == [("data", "slowed", "capped", 1_000, USAGE)]


def test_unsubscribe_stops_the_notifications_and_is_idempotent():
    w = World()
    w.subscribe("pcf")
    w.subscribe("other")
    w.debit(DATA, 900)
    assert w.unsubscribe("pcf", rid="bye").result == S
    assert [(r.kind, r.reference_id) for r in w.last_journal] == [(JournalKind.UNSUBSCRIBED, "pcf")]
    w.debit(DATA, 100)
    assert [brief(n) for n in w.notes("pcf")] == [("data", "normal", "slowed", 900, USAGE)]  # kept, not added to
    assert [n.status for n in w.notes("other")] == ["slowed", "capped"]
    assert w.unsubscribe("pcf").result == S  # nothing to end: still a success
    assert w.unsubscribe("never").result == S
    assert w.unsubscribe("pcf", rid="bye").replayed
    assert list(w.shard.subscriptions) == [(T, ALICE, "other")]


def test_a_replayed_subscribe_gets_the_original_reply_and_subscribes_nothing_again():
    w = World()
    first = w.subscribe("pcf", "data", rid="s-1")
    assert first.result == S and first.statuses == (view("data", "normal", 0, MONTH_START, MONTH_END),)
    w.debit(DATA, 900)
    journal = len(w.journal)
    replay = w.subscribe("pcf", "data", rid="s-1")
    # The original answer (the status then), not the current one; nothing written.
    assert replay == dataclasses.replace(first, replayed=True)
    assert len(w.journal) == journal
    assert w.unsubscribe("pcf", rid="u-1").result == S
    replay = w.subscribe("pcf", "data", rid="s-1")  # after the unsubscribe: still only a replay
    assert replay.replayed and w.shard.subscriptions == {}
    w.debit(DATA, 100)
    assert [n.status for n in w.notes("pcf")] == ["slowed"]
    # The same request id for another subscription is refused, naming the field.
    other = w.subscribe("pcf", "spend", rid="s-1")
    assert (type(other), other.code, other.field) == (ops.Rejection, ErrorCode.ALREADY_EXISTS, "counter_ids")
    other = w.do(ops.Subscribe(T, ALICE, "s-1", "pcf-2", ("data",)))
    assert (other.code, other.field) == (ErrorCode.ALREADY_EXISTS, "client_id")
    assert w.shard.subscriptions == {}


def test_two_policy_functions_on_one_subscriber_each_hear_every_change_once():
    w = World()
    w.subscribe("pcf-a")
    w.subscribe("pcf-b")
    w.debit(DATA, 850)
    w.debit(SMS, 50)
    w.debit(DATA, 500)
    w.sweep(DAY_END)
    a, b = w.notes("pcf-a"), w.notes("pcf-b")
    expected = [("data", "normal", "slowed", 850, USAGE),
                ("spend", "ok", "high", 6_700, USAGE),  # the SMS: spend, then sms_spend (the plan's order)
                ("sms_spend", "low", "high", 5_000, USAGE),
                ("data", "slowed", "capped", 1_350, USAGE),
                ("spend", "high", "ok", 0, RESET)]
    assert [brief(n) for n in a] == expected
    assert [brief(n) for n in b] == expected
    assert len({n.sequence for n in a + b}) == 2 * len(expected)  # each its own notification
    assert [(n.request_id, n.trace_id, n.at_ms) for n in a] == [(n.request_id, n.trace_id, n.at_ms) for n in b]


def test_a_subscriber_has_at_most_the_configured_number_of_policy_functions():
    w = World(CoreLimits(subscriptions_per_account_max=2))
    assert w.subscribe("pcf-1").result == S
    assert w.subscribe("pcf-2").result == S
    third = w.subscribe("pcf-3")
    assert (type(third), third.code, third.field) == (ops.Rejection, ErrorCode.RESOURCE_EXHAUSTED, "client_id")
    assert w.subscribe("pcf-2", "data").result == S  # changing an existing one is fine
    assert w.unsubscribe("pcf-1").result == S
    assert w.subscribe("pcf-3").result == S


# ====================================================================== restart


def _counter_state(shard: ShardState) -> dict:
    return copy.deepcopy({"counters": shard.counters, "subscriptions": shard.subscriptions,
                          "notifications": shard.notifications, "tariffs": shard.tariffs, "meta": shard.meta})


def test_a_restored_shard_keeps_counters_subscriptions_and_due_resets():
    w = World()
    w.subscribe("pcf-all")
    w.subscribe("pcf-data", "data")
    w.subscribe("pcf-gone")
    w.debit(DATA, 900)  # data slowed (month), spend 1_800
    w.debit(OTHER, 500)  # spend 5_300 -> high (day)
    w.unsubscribe("pcf-gone")
    w.debit(DATA, 10, sub=BOB)  # bob: base status, nothing due
    restored = World.__new__(World)
    restored.__dict__.update(w.__dict__)
    restored.shard = w.restored()
    assert _counter_state(restored.shard) == _counter_state(w.shard)
    assert restored.counters() == w.counters() and restored.counters(BOB) == w.counters(BOB)
    seen = {client: len(w.notes(client)) for client in ("pcf-all", "pcf-data", "pcf-gone")}
    assert seen == {"pcf-all": 2, "pcf-data": 1, "pcf-gone": 2}
    last = max(n.sequence for n in restored.shard.notifications.values())

    # The restored shard's sweep still resets what is due, and tells whom it should.
    restored.sweep(DAY_END)
    [reset] = restored.notes("pcf-all")[2:]
    assert brief(reset) == ("spend", "high", "ok", 0, RESET) and reset.sequence == last + 1
    assert restored.notes("pcf-data")[1:] == [] and len(restored.notes("pcf-gone")) == 2
    restored.debit(DATA, 100)  # counting goes on from the restored value: capped
    assert [brief(n) for n in restored.hear("pcf-data")] == [("data", "slowed", "capped", 1_000, USAGE)]
    assert restored.hear("pcf-gone") == []
    restored.sweep(MONTH_END)
    assert [brief(n) for n in restored.hear("pcf-data")] == [("data", "capped", "normal", 0, RESET)]
    assert restored.hear("pcf-gone") == []
    # And a second restart, from the later disk, has the reset done (nothing due twice).
    again = restored.restored()
    assert _counter_state(again) == _counter_state(restored.shard)
    assert again.apply_batch([], MONTH_END + HOUR) == []
    writes = again.take_writes()
    assert writes.deleted_subscription_keys == []
    assert not [r for r in writes.puts if type(r) in (JournalRecord, Notification)]


def test_a_restore_between_a_status_change_and_its_period_end_resets_once():
    w = World()
    w.subscribe("pcf")
    w.debit(SMS, 50)  # spend high
    w.debit(SMS, 50)  # spend blocked (a second reset entry is due at the same end)
    shard = w.restored()
    assert shard.apply_batch([], DAY_END) == []
    assert shard.apply_batch([], DAY_END + HOUR) == []
    notes = shard.apply(ops.ReadNotifications(T, "pcf", 0, 512, "policy"), DAY_END).notifications
    assert [brief(n) for n in notes if n.counter_id == "spend"] == [
        ("spend", "ok", "high", 5_000, USAGE), ("spend", "high", "blocked", 10_000, USAGE),
        ("spend", "blocked", "ok", 0, RESET)]


# ====================================================================== catalog


def test_a_put_tariff_that_only_changes_the_counters_changes_the_plan():
    shard = ShardState(SHARD)
    assert shard.apply(ops.PutTariff(TariffPlan("p", RATES)), T0).version == 1
    reply = shard.apply(ops.PutTariff(TariffPlan("p", RATES, policy_counters=(DATA_C,))), T0)
    assert (reply.result, reply.version) == (S, 2)
    assert shard.tariffs[(T, "p")].policy_counters == (DATA_C,)


# ====================================================================== property


class Model:
    """A reference model of the counters, written independently of the core:
    values per period, statuses from the thresholds, resets by the sweep or by
    the next counting charge, and the notifications a subscribe-all client gets."""

    def __init__(self) -> None:
        self.value = {c.counter_id: 0 for c in COUNTERS}
        self.start = {c.counter_id: period_bounds(c.period, T0)[0] for c in COUNTERS}
        self.status = {c.counter_id: c.base_status for c in COUNTERS}
        self.notes: list[tuple] = []

    @staticmethod
    def status_of(counter: PolicyCounter, value: int) -> str:
        status = counter.base_status
        for threshold in counter.thresholds:
            if value >= threshold.at_least:
                status = threshold.status
        return status

    def _roll(self, counter: PolicyCounter, now: int) -> None:
        cid = counter.counter_id
        start = period_bounds(counter.period, now)[0]
        if start > self.start[cid]:
            self.start[cid], self.value[cid] = start, 0
            if self.status[cid] != counter.base_status:
                self.notes.append((cid, self.status[cid], counter.base_status, 0, RESET))
                self.status[cid] = counter.base_status

    def sweep(self, now: int) -> None:
        """Counters whose period ended while not in their base status go back to it."""
        for counter in COUNTERS:
            if self.status[counter.counter_id] != counter.base_status:
                self._roll(counter, now)

    def view(self, counter: PolicyCounter, now: int) -> tuple:
        """(status, value, period start) as a read at `now` shows it."""
        cid = counter.counter_id
        start = period_bounds(counter.period, now)[0]
        if start > self.start[cid]:
            return counter.base_status, 0, start
        return self.status[cid], self.value[cid], start

    def charge(self, rating_group: int, units: int, now: int) -> None:
        for counter in COUNTERS:
            cid = counter.counter_id
            if counter.spend:
                if counter.rating_groups and rating_group not in counter.rating_groups:
                    continue
                amount = units * PRICE[rating_group]
            else:
                if rating_group not in counter.rating_groups:
                    continue
                amount = units
            if amount == 0:
                continue
            self._roll(counter, now)
            self.value[cid] += amount
            status = self.status_of(counter, self.value[cid])
            if status != self.status[cid]:
                self.notes.append((cid, self.status[cid], status, self.value[cid], USAGE))
                self.status[cid] = status


STEPS = st.one_of(
    st.tuples(st.just("debit"), st.sampled_from([DATA, VOICE, SMS, FREE, OTHER]), st.integers(1, 1_200)),
    st.tuples(st.just("early"), st.sampled_from([DATA, VOICE, SMS, FREE, OTHER]), st.integers(1, 1_200)),
    st.tuples(st.just("wait"), st.sampled_from([1, MINUTE, 3 * HOUR, DAY, 3 * DAY, 8 * DAY, 31 * DAY]),
              st.just(0)),
    st.tuples(st.just("sweep"), st.just(0), st.just(0)),
)


@settings(max_examples=150)
@given(st.lists(STEPS, min_size=3, max_size=40), st.integers(0, 40 * DAY))
def test_statuses_follow_the_values_and_notifications_replay_every_change(steps, start_offset):
    w = World(now=T0 + start_offset)
    model = Model()
    model.start = {c.counter_id: period_bounds(c.period, w.now)[0] for c in COUNTERS}
    assert w.subscribe("pcf").result == S
    for kind, a, b in steps:
        if kind == "wait":
            w.now += a
        elif kind == "sweep":
            w.sweep()
            model.sweep(w.now)
        elif kind == "debit":
            w.debit(a, b)
            model.sweep(w.now)
            model.charge(a, b, w.now)
        else:  # the charge arrives before the sweep
            w.charge_before_sweep(a, b)
            model.charge(a, b, w.now)
        w.hear("pcf")  # the policy function keeps up (notifications are kept 24 h)
        views = w.counters()
        for counter in COUNTERS:
            state = w.shard.counters.get((T, ALICE, counter.counter_id))
            if state is not None:
                assert state.status == counter.status_of(state.value), (counter.counter_id, state)
            got = views[counter.counter_id]
            assert (got.status, got.value, got.period_start_ms) == model.view(counter, w.now), counter.counter_id
            assert (got.pending_status, got.pending_activation_ms) == (
                (counter.base_status, got.period_end_ms) if got.status != counter.base_status else ("", 0))
    notes = w.heard.get("pcf", [])
    # Every change, once, in order per counter (the order between counters reset
    # by one sweep is not specified): the model's sequence exactly.
    for counter in COUNTERS:
        cid = counter.counter_id
        assert [brief(n) for n in notes if n.counter_id == cid] == [m for m in model.notes if m[0] == cid], cid
    assert len(notes) == len(model.notes)
    event(f"notifications: {min(len(notes), 5)}{'+' if len(notes) >= 5 else ''}")
    event(f"period resets notified: {sum(n.cause == RESET for n in notes) > 0}")
    # Per counter, the notifications chain without a gap: each starts from the last status.
    for counter in COUNTERS:
        chain = [n for n in notes if n.counter_id == counter.counter_id]
        statuses = [counter.base_status] + [n.status for n in chain]
        assert [n.previous_status for n in chain] == statuses[:-1]
        assert all(n.status != n.previous_status for n in chain)
        state = w.shard.counters.get((T, ALICE, counter.counter_id))
        assert statuses[-1] == (state.status if state else counter.base_status)
    assert [n.sequence for n in notes] == sorted({n.sequence for n in notes})
    # And every status change is journaled once, in the order notified.
    assert [(r.reference_id, r.status, r.units) for r in w.policy_records()] == [
        (n.counter_id, n.status, n.value) for n in notes]
    _chain_is_continuous(w.journal, ALICE)
