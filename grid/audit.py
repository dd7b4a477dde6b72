"""Revenue assurance: reconcile a shard's journal with its balances, holds and
idempotency records, and report where money leaks.

Pure: a shard's state records and journal in, a report out. Run inside a live
shard (AdminService.Audit, `grid audit`: the shard pauses for the read) or
offline over a data directory or a restored snapshot (`grid audit
--data-dir DIR`). Checks:
- conservation: top-ups - charges + refunds (and the balances moved with slots or
  delegated by pools) == the sum of balances, per shard;
- holds: each account's held money == its active holds;
- the journal: sequences 1..N without a gap, each account's chain of balances
  continuous (each record starts where the one before ended) and ending at the
  account's balance;
- every effect carries its trace id; no request id applied twice;
and reports leakage: late usage, overage (usage the money did not cover),
expired holds, unrated usage (RATING_FAILED) and refunds, with amounts.
"""

import collections
import dataclasses

from grid.domain.outcomes import JournalKind, ReservationState, Result
from grid.domain.outcomes import SessionState
from grid.domain.records import Account, JournalRecord, Reservation, Session

PROBLEMS_LISTED_MAX = 50


@dataclasses.dataclass
class ShardAudit:
    shard_id: int
    journal_records: int = 0
    accounts: int = 0
    top_ups_micros: int = 0
    charges_micros: int = 0
    refunds_micros: int = 0
    # Balances of accounts that moved in and out with their slots.
    moved_in_micros: int = 0
    moved_out_micros: int = 0
    # Balance money delegated out of pools and returned to them.
    pool_in_micros: int = 0
    pool_out_micros: int = 0
    balances_micros: int = 0
    held_micros: int = 0
    leakage: dict = dataclasses.field(default_factory=lambda: {
        "late_usage": {"count": 0, "micros": 0},
        "overage": {"count": 0, "micros": 0},
        "expired_holds": {"count": 0, "micros": 0},
        "unrated_usage": {"count": 0, "units": 0},
        "refunds": {"count": 0, "micros": 0},
    })
    problems: list = dataclasses.field(default_factory=list)
    problems_total: int = 0

    @property
    def ok(self) -> bool:
        return self.problems_total == 0

    def problem(self, text: str) -> None:
        self.problems_total += 1
        if len(self.problems) < PROBLEMS_LISTED_MAX:
            self.problems.append(text)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


_MOVES = {JournalKind.TOP_UP: 1, JournalKind.REFUND: 1, JournalKind.DEBIT: -1, JournalKind.POOL_IN: 1,
          JournalKind.POOL_OUT: -1}


def audit_shard(shard_id: int, records, journal: list[JournalRecord]) -> ShardAudit:
    report = ShardAudit(shard_id)
    accounts: dict[tuple, Account] = {}
    sessions: dict[tuple, Session] = {}
    session_holds: list[Reservation] = []
    held = collections.Counter()
    for record in records:
        if isinstance(record, Account):
            accounts[record.key] = record
        elif isinstance(record, Reservation) and record.state == ReservationState.ACTIVE:
            held[record.account_key] += record.held_micros
            if record.request_id.startswith("session/"):
                session_holds.append(record)
        elif isinstance(record, Session):
            sessions[record.key] = record
    report.accounts = len(accounts)
    report.journal_records = len(journal)
    report.balances_micros = sum(account.balance_micros for account in accounts.values())
    report.held_micros = sum(account.reserved_micros for account in accounts.values())
    for key, account in accounts.items():
        if account.reserved_micros != held[key]:
            report.problem(f"{key}: {account.reserved_micros} held but its active holds hold {held[key]}")

    for reservation in session_holds:  # a hold of a session that ended would never be returned
        session = sessions.get((reservation.tenant, reservation.subscriber_id, reservation.session_id))
        if session is None or session.state != SessionState.SESSION_STATE_ACTIVE:
            report.problem(f"hold {reservation.reservation_id} is active but its session {reservation.session_id} "
                           "is not")
    # The journal may start after 1 where retention dropped its oldest records.
    first = journal[0].sequence if journal else 1
    for expected, record in enumerate(journal, first):
        if record.sequence != expected:
            report.problem(f"journal sequence {record.sequence} where {expected} was due: a gap")
            break
    position: dict[tuple, int] = {}
    effects: dict[tuple, list[int]] = collections.defaultdict(list)
    for record in journal:
        key = (record.tenant, record.subscriber_id)
        _leakage(report, record)
        if record.result == Result.SUCCESS:
            moved = record.balance_after_micros - record.balance_before_micros
            if record.kind in _MOVES and moved != _MOVES[record.kind] * record.amount_micros:
                report.problem(f"#{record.sequence} {record.kind.name} moved {moved}, its amount is "
                               f"{record.amount_micros}")
            if record.kind == JournalKind.TOP_UP:
                report.top_ups_micros += record.amount_micros
            elif record.kind == JournalKind.DEBIT:
                report.charges_micros += record.amount_micros
            elif record.kind == JournalKind.REFUND:
                report.refunds_micros += record.amount_micros
            elif record.kind == JournalKind.SLOT_MOVED_IN:
                report.moved_in_micros += record.amount_micros
            elif record.kind == JournalKind.SLOT_MOVED_OUT:
                report.moved_out_micros += record.amount_micros
            elif record.kind == JournalKind.POOL_IN:
                report.pool_in_micros += record.amount_micros
            elif record.kind == JournalKind.POOL_OUT:
                report.pool_out_micros += record.amount_micros
        if record.request_id and not record.trace_id and record.kind != JournalKind.EXPIRE:
            report.problem(f"#{record.sequence} {record.kind.name} of request {record.request_id} has no trace id")
        if record.request_id and record.kind in _MOVES and record.result == Result.SUCCESS:
            # One money movement per request (per rating group for a session request).
            effects[(*key, record.request_id, record.kind, record.rating_group)].append(record.sequence)
        if record.kind == JournalKind.SLOT_MOVED_IN:
            position.pop(key, None)  # the account arrives with its history elsewhere: its chain starts here
        if key in position and record.kind != JournalKind.TARIFF:
            before = (record.balance_before_micros, record.reserved_before_micros)
            if before != position[key]:
                report.problem(f"{key} #{record.sequence} starts at {before}, the record before ended at "
                               f"{position[key]}")
        if record.tenant or record.subscriber_id:
            position[key] = (record.balance_after_micros, record.reserved_after_micros)
    for key, sequences in effects.items():
        if len(sequences) > 1:
            report.problem(f"request {key} took effect {len(sequences)} times: journal {sequences}")
    for key, account in accounts.items():
        if key in position and position[key] != (account.balance_micros, account.reserved_micros):
            report.problem(f"{key} is {account.balance_micros}/{account.reserved_micros} but its journal ends at "
                           f"{position[key]}")
    # Conservation holds over the whole history only while the journal is whole.
    if first == 1 and (report.top_ups_micros - report.charges_micros + report.refunds_micros
                       - report.moved_out_micros + report.moved_in_micros
                       - report.pool_out_micros + report.pool_in_micros) != report.balances_micros:
        report.problem(f"conservation: top-ups {report.top_ups_micros} - charges {report.charges_micros} + refunds "
                       f"{report.refunds_micros} - moved out {report.moved_out_micros} + moved in "
                       f"{report.moved_in_micros} - pool out {report.pool_out_micros} + pool in {report.pool_in_micros} != balances "
                       f"{report.balances_micros}")
    return report


def _leakage(report: ShardAudit, record: JournalRecord) -> None:
    leakage = report.leakage
    if record.kind == JournalKind.DEBIT and record.result == Result.SUCCESS:
        if record.late:
            leakage["late_usage"]["count"] += 1
            leakage["late_usage"]["micros"] += record.amount_micros
        if record.overage_micros:
            leakage["overage"]["count"] += 1
            leakage["overage"]["micros"] += record.overage_micros
    elif record.kind == JournalKind.DEBIT and record.result == Result.RATING_FAILED:
        leakage["unrated_usage"]["count"] += 1
        leakage["unrated_usage"]["units"] += record.units
    elif record.kind == JournalKind.EXPIRE and record.result == Result.SUCCESS:
        leakage["expired_holds"]["count"] += 1
        leakage["expired_holds"]["micros"] += record.amount_micros
    elif record.kind == JournalKind.REFUND and record.result == Result.SUCCESS:
        leakage["refunds"]["count"] += 1
        leakage["refunds"]["micros"] += record.amount_micros


def check_cdrs(exported: list[dict], journal_cdrs: list[dict]) -> list[str]:
    """An exported CDR file against the CDRs the journal gives: none missing up to
    the last one exported from each shard, none duplicated, none different."""
    problems = []
    seen: dict[str, dict] = {}
    for cdr in exported:
        if cdr["cdr_id"] in seen:
            problems.append(f"CDR {cdr['cdr_id']} exported twice")
        seen[cdr["cdr_id"]] = cdr
    last = collections.defaultdict(int)
    for cdr in exported:
        last[int(cdr["shard_id"])] = max(last[int(cdr["shard_id"])], int(cdr["sequence"]))
    expected = {c["cdr_id"]: c for c in journal_cdrs if int(c["sequence"]) <= last[int(c["shard_id"])]}
    for cdr_id in expected.keys() - seen.keys():
        problems.append(f"CDR {cdr_id} is in the journal but not in the export")
    for cdr_id in seen.keys() - expected.keys():
        problems.append(f"CDR {cdr_id} is in the export but not in the journal")
    for cdr_id in seen.keys() & expected.keys():
        mine, theirs = expected[cdr_id], seen[cdr_id]
        for field in ("amount_micros", "units", "subscriber_id", "trace_id", "bucket_units", "bucket_micros"):
            # A file exported before a field existed holds none: 0.
            if str(mine.get(field, 0)) != str(theirs.get(field, 0)):
                problems.append(f"CDR {cdr_id}: {field} is {theirs.get(field, 0)} in the export, "
                                f"{mine.get(field, 0)} in the journal")
    return problems


def overall(shards: list[ShardAudit]) -> dict:
    """The grid's report: every shard's, and their sums."""
    total = {name: sum(getattr(s, name) for s in shards) for name in (
        "journal_records", "accounts", "top_ups_micros", "charges_micros", "refunds_micros", "moved_in_micros",
        "moved_out_micros", "pool_in_micros", "pool_out_micros", "balances_micros", "held_micros",
        "problems_total")}
    leakage = {kind: {measure: sum(s.leakage[kind][measure] for s in shards) for measure in values}
               for kind, values in shards[0].leakage.items()} if shards else {}
    return {"ok": all(s.ok for s in shards), **total, "leakage": leakage, "shards": [s.as_dict() for s in shards]}
