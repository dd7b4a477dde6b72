"""Revenue assurance over the pure core (grid.audit): the scripted history of
test_dispute (charges on holds, a refund, a direct debit, an expired hold and
its late debit, a denial, a session) reconciles, its leakage report has the
amounts written out by hand, and each kind of damage to the records is found."""

import dataclasses

from grid import audit
from grid.domain.outcomes import JournalKind
from grid.domain.records import Account, JournalRecord

from test_dispute import ALICE, history  # noqa: F401 (history is a fixture)


def _state_and_journal(h):
    """The shard's state records and its journal, as its store holds them."""
    return list(h.state.accounts.values()) + list(h.state.reservations.values()), list(h.records)


def test_a_clean_history_reconciles_and_its_leakage_is_reported_with_amounts(history):
    h = history
    records, journal = _state_and_journal(h)
    report = audit.audit_shard(3, records, journal)
    assert report.ok, report.problems
    # Top-ups: alice 1_000_000, bob 50_000. Charges: 784 + 500 + 1_500 + 1_500 (late) + 834 + 333 (the session rated as one) = 5_451.
    assert (report.top_ups_micros, report.charges_micros, report.refunds_micros) == (1_050_000, 5_451, 300)
    assert report.balances_micros == 1_050_000 - 5_451 + 300
    assert report.held_micros == 0 and report.journal_records == len(journal)
    assert report.leakage == {
        "late_usage": {"count": 1, "micros": 1_500},
        "overage": {"count": 0, "micros": 0},
        "expired_holds": {"count": 1, "micros": 1_000},
        "unrated_usage": {"count": 0, "units": 0},
        "refunds": {"count": 1, "micros": 300},
    }


def _damaged(records, journal, *, balance_delta=0, drop=None, duplicate=None, untraced=None):
    records = [dataclasses.replace(r, balance_micros=r.balance_micros + balance_delta)
               if isinstance(r, Account) and r.subscriber_id == ALICE else r for r in records]
    journal = list(journal)
    if drop is not None:
        journal = [r for r in journal if r.sequence != drop]
    if duplicate is not None:
        original = next(r for r in journal if r.sequence == duplicate)
        journal.append(dataclasses.replace(original, sequence=journal[-1].sequence + 1,
                                           balance_before_micros=original.balance_after_micros,
                                           balance_after_micros=2 * original.balance_after_micros
                                           - original.balance_before_micros))
    if untraced is not None:
        journal = [dataclasses.replace(r, trace_id="") if r.sequence == untraced else r for r in journal]
    return records, journal


def _problems(h, **damage) -> list[str]:
    records, journal = _state_and_journal(h)
    report = audit.audit_shard(3, *_damaged(records, journal, **damage))
    assert not report.ok
    return report.problems


def test_a_balance_that_is_not_its_journals_fold_is_found(history):
    problems = _problems(history, balance_delta=1)
    assert any("conservation" in p for p in problems)
    assert any("journal ends at" in p for p in problems)


def test_a_missing_journal_record_is_a_gap_and_breaks_the_chain(history):
    problems = _problems(history, drop=7)
    assert any("a gap" in p for p in problems)
    assert any("starts at" in p for p in problems)


def test_a_request_applied_twice_is_found(history):
    debit = next(r for r in history.records if r.kind == JournalKind.DEBIT and r.request_id == "dbt-direct")
    problems = _problems(history, duplicate=debit.sequence)
    assert any("took effect 2 times" in p for p in problems)


def test_an_effect_without_its_trace_id_is_found(history):
    problems = _problems(history, untraced=4)
    assert any("has no trace id" in p for p in problems)


def test_the_overall_report_sums_the_shards(history):
    h = history
    records, journal = _state_and_journal(h)
    one = audit.audit_shard(3, records, journal)
    total = audit.overall([one, one])
    assert total["ok"] and total["charges_micros"] == 2 * 5_451
    assert total["leakage"]["late_usage"] == {"count": 2, "micros": 3_000}


def test_an_exported_cdr_file_is_checked_against_the_journal():
    journal = [{"cdr_id": f"0-{n}", "shard_id": 0, "sequence": n, "amount_micros": 10 * n, "units": n,
                "subscriber_id": "a", "trace_id": f"t{n}"} for n in (3, 5, 8)]
    assert audit.check_cdrs([dict(c) for c in journal[:2]], journal) == []  # a prefix: fine
    missing = audit.check_cdrs([journal[0], journal[2]], journal)
    assert missing == ["CDR 0-5 is in the journal but not in the export"]
    twice = audit.check_cdrs([journal[0], journal[0]], journal)
    assert twice == ["CDR 0-3 exported twice"]
    changed = audit.check_cdrs([{**journal[0], "amount_micros": 31}], journal)
    assert changed == ["CDR 0-3: amount_micros is 31 in the export, 30 in the journal"]
    invented = audit.check_cdrs([{**journal[0], "cdr_id": "0-4", "sequence": 4}], journal)
    assert "CDR 0-4 is in the export but not in the journal" in invented


def test_an_active_hold_of_a_session_that_ended_is_found(history):
    from grid.domain.outcomes import ReservationState, SessionState
    from grid.domain.records import Reservation, Session

    records, journal = _state_and_journal(history)
    session = Session("default", ALICE, "gone", SessionState.SESSION_STATE_RELEASED, "", 3, (), 1, 2, 0, 2)
    leak = Reservation("R3-99", "default", ALICE, "gone", 1, 10, 0, 0, ReservationState.ACTIVE, 1, 10**15,
                       "session/gone/1")
    report = audit.audit_shard(3, records + [session, leak], journal)
    assert any("R3-99 is active but its session gone is not" in p for p in report.problems)
