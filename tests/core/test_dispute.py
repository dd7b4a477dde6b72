"""Disputes from the journal alone (issue 6; DESIGN.md section 9), without Ray.

A scripted history is driven through the pure shard core (ShardState, one
apply_batch per step, as the shard shell does), every operation carrying its own
trace id and span id (what the shell sets). The journal records it wrote are
collected from take_writes() and then grid.dispute chooses and arranges them.

Every expected sequence, depth, parent, amount and balance below is written out
by hand from the script (see the comments of `history`), never computed by the
code under test. The same records are also committed to a real RocksDB
(ShardStore) to check the per-subscriber journal index a dispute reads.
"""

import dataclasses
import json

import pytest

from grid import dispute
from grid.domain import operations as ops
from grid.domain.outcomes import JournalKind, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import JournalRecord
from grid.domain.shard_state import ShardState

T = ops.DEFAULT_TENANT
ALICE, BOB = "alice", "bob"
SHARD = 3
T0 = 1_700_000_000_000  # ms
SECOND = 1_000
HOLD_LIFE_S = 300 + 30  # default validity + expiry grace
JAEGER = "http://jaeger.example:16686/"

VOICE = 1  # seconds: 1_000 micros a minute, per-second increments (rounding residue)
EV = 2  # events: 500 micros each
PLAN = TariffPlan("disp", (Rate(VOICE, Unit.SECONDS, 1_000, 60, 1), Rate(EV, Unit.EVENTS, 500, 1, 1)))

S, CLR, ARR = Result.SUCCESS, Result.CREDIT_LIMIT_REACHED, Result.RESERVATION_ALREADY_RESOLVED
(CREATED, TOP_UP, RESERVE, DEBIT, RELEASE, REFUND, EXPIRE, OPENED, RELEASED, TARIFF) = (
    JournalKind.ACCOUNT_CREATED, JournalKind.TOP_UP, JournalKind.RESERVE, JournalKind.DEBIT, JournalKind.RELEASE,
    JournalKind.REFUND, JournalKind.EXPIRE, JournalKind.SESSION_OPENED, JournalKind.SESSION_RELEASED,
    JournalKind.TARIFF)


def trace_of(step: int) -> str:
    return f"{0xabc0000 + step:032x}"


def span_of(step: int) -> str:
    return f"{0x5a0000 + step:016x}"


def usage(rating_group, requested=0, used=0):
    return (ops.UnitUsage(rating_group, requested_units=requested, used_units=used),)


class History:
    """The script. Step n runs at T0 + n seconds (the late debit later), with
    trace_of(n) and span_of(n); every reply is checked as it comes."""

    def __init__(self) -> None:
        self.state = ShardState(SHARD)
        self.records: list[JournalRecord] = []
        self.writes = []
        self.at = {}  # step -> ms

    def do(self, step: int, operation, now_ms: int | None = None):
        now_ms = T0 + step * SECOND if now_ms is None else now_ms
        self.at[step] = now_ms
        operation = dataclasses.replace(operation, trace_id=trace_of(step), span_id=span_of(step))
        [reply] = self.state.apply_batch([operation], now_ms)
        writes = self.state.take_writes()
        self.writes.append(writes)
        self.records.extend(sorted((r for r in writes.puts if type(r) is JournalRecord), key=lambda r: r.sequence))
        self.state.check_invariants()
        return reply


@pytest.fixture(scope="module")
def history() -> History:
    h = History()
    # 1: the plan (journal #1, no subscriber); 2, 3: the accounts (#2 alice, #3 bob).
    assert h.do(1, ops.PutTariff(PLAN)).result == S
    assert h.do(2, ops.CreateAccount(T, ALICE, "acc-a", "EUR", 0, "disp")).result == S
    assert h.do(3, ops.CreateAccount(T, BOB, "acc-b", "EUR", 0, "disp")).result == S
    # 4 (#4): alice tops up 1_000_000: balance 0 -> 1_000_000.
    assert h.do(4, ops.TopUp(T, ALICE, "top-1", 1_000_000)) == ops.TopUpReply(S, 1_000_000, trace_id=trace_of(4))
    # 5 (#5): a hold R3-1 for 120 s of voice: 120 * 1_000 / 60 = 2_000 held; held 0 -> 2_000.
    r = h.do(5, ops.Reserve(T, ALICE, "rsv-1", "s-1", VOICE, 120))
    assert (r.result, r.reservation_id, r.granted_units, r.held_micros) == (S, "R3-1", 120, 2_000)
    # 6 (#6): bob tops up (another subscriber's record between alice's).
    assert h.do(6, ops.TopUp(T, BOB, "top-b", 50_000)).result == S
    # 7 (#7): 47 s on R3-1: ceil(47_000 / 60) = 784 (exact 783.333..), residue (784*60 - 47_000) * 10^6 // 60
    #   = 666_666 picos; charge C3-2; balance 1_000_000 -> 999_216, held 2_000 -> 1_216.
    d = h.do(7, ops.Debit(T, ALICE, "dbt-1", "R3-1", 0, 47, False))
    assert (d.result, d.charge_id, d.charged_micros, d.rounding_residue_picos) == (S, "C3-2", 784, 666_666)
    # 8 (#8): 30 s more, final: cumulative ceil(77_000 / 60) = 1_284, so 1_284 - 784 = 500, residue
    #   666_666 - 666_666 = 0; charge C3-3; balance 999_216 -> 998_716; held 1_216 -> 716 -> 0 (716 returned).
    d = h.do(8, ops.Debit(T, ALICE, "dbt-2", "R3-1", 0, 30, True))
    assert (d.result, d.charge_id, d.charged_micros, d.released_micros) == (S, "C3-3", 500, 716)
    # 9 (#9): 300 of C3-2 refunded: balance 998_716 -> 999_016.
    f = h.do(9, ops.Refund(T, ALICE, "ref-1", "C3-2", 300))
    assert (f.result, f.refunded_micros, f.refundable_micros) == (S, 300, 484)
    # 10 (#10): a direct debit of 3 events: 1_500, charge C3-4; balance 999_016 -> 997_516.
    d = h.do(10, ops.Debit(T, ALICE, "dbt-direct", "", EV, 3, False))
    assert (d.result, d.charge_id, d.charged_micros) == (S, "C3-4", 1_500)
    # 11 (#11): a hold R3-5 for 60 s: 1_000 held; held 0 -> 1_000.
    r = h.do(11, ops.Reserve(T, ALICE, "rsv-2", "s-2", VOICE, 60))
    assert (r.result, r.reservation_id, r.held_micros) == (S, "R3-5", 1_000)
    # 12: 331 s after the hold (past validity + grace) a debit of 90 s on it: the batch's sweep first
    #   expires R3-5 (#12, no trace: the sweep is nobody's call; request id that of its reserve;
    #   1_000 returned, held 1_000 -> 0), then the usage is charged late (#13): 90 s = 1_500,
    #   charge C3-6, balance 997_516 -> 996_016, no overage (money enough).
    late_at = h.at[11] + (HOLD_LIFE_S + 1) * SECOND
    d = h.do(12, ops.Debit(T, ALICE, "dbt-late", "R3-5", 0, 90, False), now_ms=late_at)
    assert (d.result, d.charge_id, d.charged_micros, d.late, d.overage_micros) == (S, "C3-6", 1_500, True, 0)
    # 13 (#14): a direct debit of 10_000 events (5_000_000 micros) is denied: CREDIT_LIMIT_REACHED.
    assert h.do(13, ops.Debit(T, ALICE, "dbt-denied", "", EV, 10_000, False), now_ms=late_at + SECOND).result == CLR
    # 14 (#15): a debit on R3-1, long resolved, is denied (the denial names the hold).
    assert h.do(14, ops.Debit(T, ALICE, "dbt-3", "R3-1", 0, 5, False), now_ms=late_at + 2 * SECOND).result == ARR
    # 15: a session: opened (#16), a hold R3-7 of 60 s (#17): held 0 -> 1_000.
    base = late_at + 3 * SECOND
    s = h.do(15, ops.CreateSession(T, ALICE, "sess-1", 1, usage(VOICE, requested=60)), now_ms=base)
    assert s.result == S and s.multiple_unit_information[0].reservation_id == "R3-7"
    # 16: update, 50 s used, 60 s more asked: charged on R3-7 (#18): ceil(50_000 / 60) = 834, residue
    #   666_666, charge C3-8, balance 996_016 -> 995_182, held 1_000 -> 166; R3-7 closed (#19): 166
    #   returned, held 166 -> 0; a new hold R3-9 (#20): 1_000, held 0 -> 1_000.
    s = h.do(16, ops.UpdateSession(T, ALICE, "sess-1", 2, usage(VOICE, requested=60, used=50)),
             now_ms=base + SECOND)
    info = s.multiple_unit_information[0]
    assert (s.result, info.charge_id, info.charged_micros, info.released_micros, info.reservation_id) == (
        S, "C3-8", 834, 166, "R3-9")
    # 17: release, 20 s used: charged on R3-9 (#21), rated over the session's 70 s: ceil(70_000 / 60) -
    #   834 = 1_167 - 834 = 333, residue (1_167 - 1_166.666..) - 0.666.. = -333_333 picos, charge C3-10,
    #   balance 995_182 -> 994_849, held 1_000 -> 667; R3-9 closed (#22): 667 returned, held 667 -> 0;
    #   the session released (#23).
    s = h.do(17, ops.ReleaseSession(T, ALICE, "sess-1", 3, usage(VOICE, used=20)), now_ms=base + 2 * SECOND)
    info = s.multiple_unit_information[0]
    assert (s.result, info.charge_id, info.charged_micros, info.released_micros) == (S, "C3-10", 333, 667)
    return h


# What each of alice's journal records must say, by journal sequence:
# (step whose trace it carries or None, kind, result, request id, reference, reservation id, rating group, units,
#  amount, residue, balance before, after, held before, after, tariff (plan, version), late)
E = {
    2: (2, CREATED, S, "acc-a", "", "", 0, 0, 0, 0, 0, 0, 0, 0, ("", 0), False),
    4: (4, TOP_UP, S, "top-1", "", "", 0, 0, 1_000_000, 0, 0, 1_000_000, 0, 0, ("", 0), False),
    5: (5, RESERVE, S, "rsv-1", "R3-1", "", VOICE, 120, 2_000, 0, 1_000_000, 1_000_000, 0, 2_000, ("disp", 1), False),
    7: (7, DEBIT, S, "dbt-1", "C3-2", "R3-1", VOICE, 47, 784, 666_666, 1_000_000, 999_216, 2_000, 1_216,
        ("disp", 1), False),
    8: (8, DEBIT, S, "dbt-2", "C3-3", "R3-1", VOICE, 30, 500, 0, 999_216, 998_716, 1_216, 0, ("disp", 1), False),
    9: (9, REFUND, S, "ref-1", "C3-2", "", VOICE, 0, 300, 0, 998_716, 999_016, 0, 0, ("", 0), False),
    10: (10, DEBIT, S, "dbt-direct", "C3-4", "", EV, 3, 1_500, 0, 999_016, 997_516, 0, 0, ("disp", 1), False),
    11: (11, RESERVE, S, "rsv-2", "R3-5", "", VOICE, 60, 1_000, 0, 997_516, 997_516, 0, 1_000, ("disp", 1), False),
    12: (None, EXPIRE, S, "rsv-2", "R3-5", "", VOICE, 0, 1_000, 0, 997_516, 997_516, 1_000, 0, ("", 0), False),
    13: (12, DEBIT, S, "dbt-late", "C3-6", "R3-5", VOICE, 90, 1_500, 0, 997_516, 996_016, 0, 0, ("disp", 1), True),
    14: (13, DEBIT, CLR, "dbt-denied", "", "", EV, 10_000, 0, 0, 996_016, 996_016, 0, 0, ("", 0), False),
    15: (14, DEBIT, ARR, "dbt-3", "R3-1", "", 0, 5, 0, 0, 996_016, 996_016, 0, 0, ("", 0), False),
    16: (15, OPENED, S, "session/sess-1/1", "", "", 0, 1, 0, 0, 996_016, 996_016, 0, 0, ("", 0), False),
    17: (15, RESERVE, S, "session/sess-1/1", "R3-7", "", VOICE, 60, 1_000, 0, 996_016, 996_016, 0, 1_000,
         ("disp", 1), False),
    18: (16, DEBIT, S, "session/sess-1/2", "C3-8", "R3-7", VOICE, 50, 834, 666_666, 996_016, 995_182, 1_000, 166,
         ("disp", 1), False),
    19: (16, RELEASE, S, "session/sess-1/2", "R3-7", "", VOICE, 0, 166, 0, 995_182, 995_182, 166, 0, ("", 0),
         False),
    20: (16, RESERVE, S, "session/sess-1/2", "R3-9", "", VOICE, 60, 1_000, 0, 995_182, 995_182, 0, 1_000,
         ("disp", 1), False),
    21: (17, DEBIT, S, "session/sess-1/3", "C3-10", "R3-9", VOICE, 20, 333, -333_333, 995_182, 994_849, 1_000, 667,
         ("disp", 1), False),
    22: (17, RELEASE, S, "session/sess-1/3", "R3-9", "", VOICE, 0, 667, 0, 994_849, 994_849, 667, 0, ("", 0),
         False),
    23: (17, RELEASED, S, "session/sess-1/3", "", "", 0, 3, 0, 0, 994_849, 994_849, 0, 0, ("", 0), False),
}
SESSION_RECORDS = {16, 17, 18, 19, 20, 21, 22, 23}


def alice_records(history: History) -> list[JournalRecord]:
    return [r for r in history.records if r.subscriber_id == ALICE]


def by_sequence(history: History) -> dict[int, JournalRecord]:
    return {r.sequence: r for r in history.records}


def shape(events: list[dispute.Event]) -> list[tuple[int, int, int]]:
    return [(e.record.sequence, e.depth, e.parent_sequence) for e in events]


def test_the_journal_says_what_the_script_did(history):
    records = by_sequence(history)
    assert sorted(records) == list(range(1, 24))
    assert {s for s, r in records.items() if r.subscriber_id == BOB} == {3, 6}
    assert records[1].kind == TARIFF and records[1].subscriber_id == ""
    assert sorted(r.sequence for r in alice_records(history)) == sorted(E)
    for sequence, expected in E.items():
        r = records[sequence]
        step = expected[0]
        got = (step if r.trace_id else None, r.kind, r.result, r.request_id, r.reference_id, r.reservation_id,
               r.rating_group, r.units, r.amount_micros, r.rounding_residue_picos, r.balance_before_micros,
               r.balance_after_micros, r.reserved_before_micros, r.reserved_after_micros,
               (r.tariff_plan_id, r.tariff_version), r.late)
        assert got == expected, f"journal #{sequence}"
        # Each record carries the trace and the span of the operation that wrote it; the sweep's, none.
        assert (r.trace_id, r.span_id) == ((trace_of(step), span_of(step)) if step else ("", "")), sequence
        assert r.session_id == ("sess-1" if sequence in SESSION_RECORDS else ""), sequence
        assert r.at_ms == history.at[step if step else 12], sequence


def test_a_debit_on_a_hold_brings_the_hold_its_other_debits_and_refunds(history):
    events = dispute.tree(dispute.select(alice_records(history), request_id="dbt-1"))
    # The hold (#5), under it the three debits on it in order (#7, #8 and the denied #15), the
    # refund (#9) under the charge it refunds (#7).
    assert shape(events) == [(5, 0, 0), (7, 1, 5), (9, 2, 7), (8, 1, 5), (15, 1, 5)]
    # The same chain from the hold's request, from either of its charges or from the refund.
    for chosen in (dict(request_id="rsv-1"), dict(charge_id="C3-2"), dict(charge_id="C3-3"),
                   dict(request_id="ref-1"), dict(request_id="dbt-3")):
        assert shape(dispute.tree(dispute.select(alice_records(history), **chosen))) == shape(events), chosen


def test_a_late_debit_brings_the_expired_hold(history):
    events = dispute.tree(dispute.select(alice_records(history), charge_id="C3-6"))
    assert shape(events) == [(11, 0, 0), (12, 1, 11), (13, 1, 11)]
    assert [e.record.kind for e in events] == [RESERVE, EXPIRE, DEBIT]
    assert events[2].record.late and events[1].record.trace_id == "" and events[2].record.trace_id == trace_of(12)


def test_lone_records_are_their_own_chain(history):
    records = alice_records(history)
    assert shape(dispute.tree(dispute.select(records, charge_id="C3-4"))) == [(10, 0, 0)]
    assert shape(dispute.tree(dispute.select(records, request_id="dbt-denied"))) == [(14, 0, 0)]
    assert shape(dispute.tree(dispute.select(records, request_id="top-1"))) == [(4, 0, 0)]
    assert dispute.select(records, request_id="never-sent") == []
    assert dispute.select(records, charge_id="C3-99") == []


def test_a_session_update_brings_both_holds_it_touched(history):
    events = dispute.tree(dispute.select(alice_records(history), request_id="session/sess-1/2"))
    # The update closed R3-7 (granted by the create) and opened R3-9 (charged and closed by the release).
    assert shape(events) == [(17, 0, 0), (18, 1, 17), (19, 1, 17), (20, 0, 0), (21, 1, 20), (22, 1, 20)]
    assert [e.record.request_id for e in events] == [
        "session/sess-1/1", "session/sess-1/2", "session/sess-1/2", "session/sess-1/2", "session/sess-1/3",
        "session/sess-1/3"]


def test_a_window_is_every_record_as_a_tree(history):
    events = dispute.tree(dispute.select(alice_records(history)))
    assert shape(events) == [
        (2, 0, 0), (4, 0, 0),
        (5, 0, 0), (7, 1, 5), (9, 2, 7), (8, 1, 5), (15, 1, 5),
        (10, 0, 0),
        (11, 0, 0), (12, 1, 11), (13, 1, 11),
        (14, 0, 0), (16, 0, 0),
        (17, 0, 0), (18, 1, 17), (19, 1, 17),
        (20, 0, 0), (21, 1, 20), (22, 1, 20),
        (23, 0, 0),
    ]
    # A window that starts after a hold: its debits stand alone, the refund still under its charge.
    later = [r for r in alice_records(history) if r.sequence >= 7 and r.sequence <= 9]
    assert shape(dispute.tree(dispute.select(later))) == [(7, 0, 0), (9, 1, 7), (8, 0, 0)]


def test_text_names_every_record_with_its_trace_and_jaeger_link(history):
    events = dispute.tree(dispute.select(alice_records(history), request_id="dbt-1"))
    lines = dispute.render_text(events, JAEGER).splitlines()
    assert len(lines) == 5
    for line, event in zip(lines, events):
        r = event.record
        assert line.startswith("  " * event.depth + f"#{r.sequence} ") and not line.startswith("  " * event.depth + " ")
        assert f" {r.request_id}: " in line
        assert f"trace {r.trace_id} span {r.span_id} http://jaeger.example:16686/trace/{r.trace_id}" in line
    assert "hold R3-1: rating group 1, 120 units granted, 2,000 micros held, tariff disp v1" in lines[0]
    assert "balance 1,000,000 -> 1,000,000, held 0 -> 2,000" in lines[0]
    assert ("charge C3-2 on hold R3-1: rating group 1, 47 units, 784 micros (rounding residue +666,666 picos), "
            "tariff disp v1; balance 1,000,000 -> 999,216, held 2,000 -> 1,216") in lines[1]
    assert "refund of charge C3-2: 300 micros; balance 998,716 -> 999,016" in lines[2]
    assert "DENIED: RESERVATION_ALREADY_RESOLVED" in lines[4] and "(R3-1)" in lines[4]
    # The sweep's expiry has no trace to link to.
    [expiry] = [line for line in dispute.render_text(dispute.tree(dispute.select(
        alice_records(history), charge_id="C3-6")), JAEGER).splitlines() if "expired" in line]
    assert "hold R3-5 expired: 1,000 micros returned" in expiry and "no trace" in expiry and "/trace/" not in expiry
    # No base URL: no link, the ids still there.
    plain = dispute.render_text(events, "")
    assert "/trace/" not in plain and f"trace {trace_of(7)} span {span_of(7)}" in plain


def test_json_carries_each_record_with_its_trace(history):
    events = dispute.tree(dispute.select(alice_records(history), charge_id="C3-6"))
    out = json.loads(json.dumps(dispute.as_dicts(events, JAEGER)))
    assert [(d["sequence"], d["kind"], d["result"], d["depth"], d["parent_sequence"]) for d in out] == [
        (11, "RESERVE", "SUCCESS", 0, 0), (12, "EXPIRE", "SUCCESS", 1, 11), (13, "DEBIT", "SUCCESS", 1, 11)]
    assert [(d["trace_id"], d["span_id"], d["trace_url"]) for d in out] == [
        (trace_of(11), span_of(11), f"http://jaeger.example:16686/trace/{trace_of(11)}"),
        ("", "", ""),
        (trace_of(12), span_of(12), f"http://jaeger.example:16686/trace/{trace_of(12)}"),
    ]
    late = out[2]
    assert (late["amount_micros"], late["balance_before_micros"], late["balance_after_micros"], late["late"],
            late["reservation_id"], late["reference_id"]) == (1_500, 997_516, 996_016, True, "R3-5", "C3-6")
    assert late["text"].startswith("charge C3-6 on hold R3-5: rating group 1, 90 units, 1,500 micros") and \
        late["text"].endswith(", late")


def test_trace_url():
    assert dispute.trace_url("http://j:16686/", "ab12") == "http://j:16686/trace/ab12"
    assert dispute.trace_url("http://j:16686", "") == ""
    assert dispute.trace_url("", "ab12") == ""


def test_the_store_indexes_each_subscribers_journal(history, tmp_path):
    """The records committed to RocksDB come back per subscriber and window, oldest first."""
    from grid.storage.shard_store import ShardStore

    store = ShardStore(tmp_path / "shard-3", SHARD)
    try:
        for writes in history.writes:
            store.commit(writes)
        everything, cut = store.subscriber_journal(T, ALICE, 0, 2**62, 1_000)
        assert not cut and [r.sequence for r in everything] == sorted(E)
        assert everything == alice_records(history)
        bob, _ = store.subscriber_journal(T, BOB, 0, 2**62, 1_000)
        assert [r.sequence for r in bob] == [3, 6]
        # The window is inclusive at both ends: steps 5..9 are #5, #7, #8, #9 (bob's #6 is not alice's).
        window, _ = store.subscriber_journal(T, ALICE, history.at[5], history.at[9], 1_000)
        assert [r.sequence for r in window] == [5, 7, 8, 9]
        # Cut after scanning 3 records: told so.
        first, cut = store.subscriber_journal(T, ALICE, 0, 2**62, 3)
        assert cut and [r.sequence for r in first] == [2, 4, 5]
        assert store.subscriber_journal(T, "alic", 0, 2**62, 1_000) == ([], False)
    finally:
        store.close()
