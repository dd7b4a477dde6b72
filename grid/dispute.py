"""Disputes answered from the journal alone: "why was I charged 4.37?"

Pure functions over a subscriber's journal records: choose the chain behind a
request id or a charge id (followed to its hold, the hold's other debits,
their refunds, and the hold's release or expiry), arrange it as a tree (a
debit under its hold, a refund under its debit), and render it as text or as
plain dicts for JSON. The shell (AdminService.Dispute, `grid dispute`) fetches
the records from the shard's per-subscriber journal index.
"""

import dataclasses
import datetime

from grid.domain.outcomes import JournalKind, Result
from grid.domain.records import JournalRecord

_HOLD_KINDS = (JournalKind.RESERVE, JournalKind.RELEASE, JournalKind.EXPIRE)
# Rounds of following references: request -> hold -> the hold's debits -> their refunds.
_FOLLOW_ROUNDS_MAX = 4


@dataclasses.dataclass(frozen=True)
class Event:
    record: JournalRecord
    depth: int
    parent_sequence: int


def _hold_of(record: JournalRecord) -> str:
    if record.kind in _HOLD_KINDS:
        return record.reference_id
    if record.kind == JournalKind.DEBIT:
        # A denied debit names the hold it was for in reference_id; a charge, its own id.
        return record.reservation_id if record.result == Result.SUCCESS else record.reference_id
    return ""


def _charge_of(record: JournalRecord) -> str:
    if record.kind == JournalKind.REFUND or (record.kind == JournalKind.DEBIT and record.result == Result.SUCCESS):
        return record.reference_id
    return ""


def select(records: list[JournalRecord], request_id: str = "", charge_id: str = "") -> list[JournalRecord]:
    """The records of the chain behind request_id or charge_id (all of them when
    neither is given: a time window)."""
    if not request_id and not charge_id:
        return list(records)
    requests = {request_id} if request_id else set()
    holds: set[str] = set()
    charges = {charge_id} if charge_id else set()
    chosen: list[JournalRecord] = []
    for _ in range(_FOLLOW_ROUNDS_MAX):
        chosen = [r for r in records if r.request_id in requests or (_hold_of(r) and _hold_of(r) in holds)
                  or (_charge_of(r) and _charge_of(r) in charges)]
        grown = (holds | {_hold_of(r) for r in chosen if _hold_of(r)},
                 charges | {_charge_of(r) for r in chosen if _charge_of(r)})
        if grown == (holds, charges):
            break
        holds, charges = grown
    return chosen


def tree(records: list[JournalRecord]) -> list[Event]:
    """Records in tree order: each under the record it belongs to (a debit, release
    or expiry under the reserve of its hold; a refund under the debit of its charge)."""
    records = sorted(records, key=lambda r: r.sequence)
    reserve_of = {r.reference_id: r for r in records if r.kind == JournalKind.RESERVE and r.result == Result.SUCCESS}
    debit_of = {r.reference_id: r for r in records if r.kind == JournalKind.DEBIT and r.result == Result.SUCCESS}
    parent: dict[int, int] = {}
    for record in records:
        above = None
        if record.kind == JournalKind.REFUND:
            above = debit_of.get(record.reference_id)
        elif record.kind in (JournalKind.DEBIT, JournalKind.RELEASE, JournalKind.EXPIRE):
            above = reserve_of.get(_hold_of(record))
        if above is not None and above.sequence < record.sequence:
            parent[record.sequence] = above.sequence
    children: dict[int, list[JournalRecord]] = {}
    roots = []
    for record in records:
        if record.sequence in parent:
            children.setdefault(parent[record.sequence], []).append(record)
        else:
            roots.append(record)
    events: list[Event] = []

    def visit(record: JournalRecord, depth: int) -> None:
        events.append(Event(record, depth, parent.get(record.sequence, 0)))
        for child in children.get(record.sequence, []):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return events


# ---------------------------------------------------------------- rendering


def trace_url(base_url: str, trace_id: str) -> str:
    return f"{base_url.rstrip('/')}/trace/{trace_id}" if trace_id and base_url else ""


def _micros(value: int) -> str:
    return f"{value:,} micros"


def _bucket_note(record: JournalRecord) -> str:
    """What buckets paid of a charge (amount_micros is the main balance's part)."""
    if not record.bucket_draws:
        return ""
    parts = []
    if record.bucket_units:
        parts.append(f"{record.bucket_units:,} units")
    if record.bucket_micros:
        parts.append(_micros(record.bucket_micros))
    draws = ", ".join(f"{bucket_id} {amount:,}" for bucket_id, amount in record.bucket_draws)
    if not parts:  # journaled before records split units from money: the draws alone
        return f", buckets drawn ({draws})"
    return f", buckets paid {' and '.join(parts)} ({draws})"


def describe(record: JournalRecord) -> str:
    """One line of what the record says, in words."""
    kind = record.kind
    rating = f"rating group {record.rating_group}, " if record.rating_group else ""
    tariff = f", tariff {record.tariff_plan_id} v{record.tariff_version}" if record.tariff_plan_id else ""
    if record.result != Result.SUCCESS:
        what = {JournalKind.RESERVE: f"reserve of {record.units} units", JournalKind.DEBIT:
                f"debit of {record.units} units", JournalKind.REFUND: f"refund of {_micros(record.amount_micros)}",
                JournalKind.TOP_UP: f"top-up of {_micros(record.amount_micros)}"}.get(kind, kind.name.lower())
        on = f" ({record.reference_id})" if record.reference_id else ""
        return f"{what}{on} DENIED: {record.result.name}"
    if kind == JournalKind.RESERVE:
        return f"hold {record.reference_id}: {rating}{record.units} units granted, {_micros(record.amount_micros)} " \
               f"held{tariff}"
    if kind == JournalKind.DEBIT:
        on = f" on hold {record.reservation_id}" if record.reservation_id else " (direct)"
        notes = "".join([", late" if record.late else "",
                         f", overage {_micros(record.overage_micros)}" if record.overage_micros else "",
                         _bucket_note(record)])
        return (f"charge {record.reference_id}{on}: {rating}{record.units} units, {_micros(record.amount_micros)} "
                f"(rounding residue {record.rounding_residue_picos:+,} picos){tariff}{notes}")
    if kind == JournalKind.REFUND:
        return f"refund of charge {record.reference_id}: {_micros(record.amount_micros)}"
    back = (" and to buckets " + ", ".join(f"{bucket_id} {amount:,}" for bucket_id, amount in record.bucket_draws)
            if record.bucket_draws else "")
    if kind == JournalKind.RELEASE:
        return f"hold {record.reference_id} closed: {_micros(record.amount_micros)} returned{back}"
    if kind == JournalKind.EXPIRE:
        return f"hold {record.reference_id} expired: {_micros(record.amount_micros)} returned{back}"
    if kind == JournalKind.TOP_UP:
        return f"top-up of {_micros(record.amount_micros)}"
    if kind in (JournalKind.SESSION_OPENED, JournalKind.SESSION_RELEASED, JournalKind.SESSION_SUPERVISED):
        late = " (adopted: usage charged late)" if record.late else ""
        return f"session {record.session_id} {kind.name.split('_', 1)[1].lower()} at sequence number " \
               f"{record.units}{late}"
    if kind == JournalKind.CONTROL_HIT:
        return f"control {record.reference_id} fired at {record.units:,}: {record.status}"
    if kind == JournalKind.POLICY_STATUS:
        return f"policy counter {record.reference_id}: status {record.status} at {record.units:,}"
    if kind in (JournalKind.SUBSCRIBED, JournalKind.UNSUBSCRIBED):
        return f"policy function {record.reference_id} {kind.name.lower()}"
    if kind == JournalKind.ACCOUNT_STATE:
        return f"account state set ({record.units})"
    return kind.name.lower().replace("_", " ")


def _when(at_ms: int) -> str:
    return datetime.datetime.fromtimestamp(at_ms / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds")


def render_text(events: list[Event], base_url: str = "") -> str:
    lines = []
    for event in events:
        r = event.record
        money = (f"balance {r.balance_before_micros:,} -> {r.balance_after_micros:,}, held "
                 f"{r.reserved_before_micros:,} -> {r.reserved_after_micros:,}")
        trail = f"trace {r.trace_id}" + (f" span {r.span_id}" if r.span_id else "") if r.trace_id else "no trace"
        url = trace_url(base_url, r.trace_id)
        lines.append(f"{'  ' * event.depth}#{r.sequence} {_when(r.at_ms)} {r.request_id or '(sweep)'}: "
                     f"{describe(r)}; {money}; {trail}" + (f" {url}" if url else ""))
    return "\n".join(lines)


def as_dicts(events: list[Event], base_url: str = "") -> list[dict]:
    out = []
    for event in events:
        fields = dataclasses.asdict(event.record)
        fields["kind"] = event.record.kind.name
        fields["result"] = event.record.result.name
        fields.update(depth=event.depth, parent_sequence=event.parent_sequence,
                      trace_url=trace_url(base_url, event.record.trace_id), text=describe(event.record))
        out.append(fields)
    return out
