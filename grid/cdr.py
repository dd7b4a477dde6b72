"""Rated-event records (CDRs) from the journal: every charge (late ones
flagged), refund, expiry and unrated usage, for billing and revenue assurance.

Pure: journal records in, CDR dicts out, and the cursor (each shard's last
journal sequence read) that makes an export resumable. The shell pages through
each shard's journal (AdminService.ExportCdrs, `grid cdr export`).
"""

import csv
import io

from grid.domain.outcomes import JournalKind, Result
from grid.domain.records import JournalRecord

CDR_CHARGE, CDR_REFUND, CDR_EXPIRY, CDR_UNRATED = 1, 2, 3, 4  # charging.v1.CdrKind
KIND_NAMES = {CDR_CHARGE: "CDR_CHARGE", CDR_REFUND: "CDR_REFUND", CDR_EXPIRY: "CDR_EXPIRY",
              CDR_UNRATED: "CDR_UNRATED"}
FIELDS = ("cdr_id", "shard_id", "sequence", "at_ms", "kind", "subscriber_id", "request_id", "charge_id",
          "reservation_id", "session_id", "rating_group", "units", "amount_micros", "rounding_residue_picos",
          "tariff_plan_id", "tariff_version", "late", "overage_micros", "trace_id", "span_id", "bucket_units",
          "bucket_micros", "bucket_draws")
_CURSOR_VERSION = "cdr1"


class BadCursor(ValueError):
    pass


def kind_of(record: JournalRecord) -> int | None:
    """The CDR kind of a journal record, or None when it is not a rated event."""
    if record.kind == JournalKind.DEBIT:
        if record.result == Result.SUCCESS:
            return CDR_CHARGE
        if record.result == Result.RATING_FAILED:
            return CDR_UNRATED
        return None
    if record.kind == JournalKind.REFUND and record.result == Result.SUCCESS:
        return CDR_REFUND
    if record.kind == JournalKind.EXPIRE and record.result == Result.SUCCESS:
        return CDR_EXPIRY
    return None


def cdr_of(shard_id: int, record: JournalRecord) -> dict | None:
    kind = kind_of(record)
    if kind is None:
        return None
    charge_id = record.reference_id if kind in (CDR_CHARGE, CDR_REFUND) else ""
    reservation_id = record.reservation_id if kind == CDR_CHARGE else (
        record.reference_id if kind in (CDR_EXPIRY, CDR_UNRATED) else "")
    return {
        "cdr_id": f"{shard_id}-{record.sequence}", "shard_id": shard_id, "sequence": record.sequence,
        "at_ms": record.at_ms, "kind": kind, "subscriber_id": record.subscriber_id, "request_id": record.request_id,
        "charge_id": charge_id, "reservation_id": reservation_id, "session_id": record.session_id,
        "rating_group": record.rating_group, "units": record.units, "amount_micros": record.amount_micros,
        "rounding_residue_picos": record.rounding_residue_picos, "tariff_plan_id": record.tariff_plan_id,
        "tariff_version": record.tariff_version, "late": record.late, "overage_micros": record.overage_micros,
        "trace_id": record.trace_id, "span_id": record.span_id, "tenant": record.tenant,
        # Only a charge's draws: a hold's or expiry's are holdings, not what was paid.
        **(_bucket_fields(record) if kind == CDR_CHARGE else
           {"bucket_units": 0, "bucket_micros": 0, "bucket_draws": []}),
    }


def _bucket_fields(record: JournalRecord) -> dict:
    return {"bucket_units": record.bucket_units, "bucket_micros": record.bucket_micros,
            "bucket_draws": [{"bucket_id": bucket_id, "amount": amount} for bucket_id, amount in record.bucket_draws]}


def from_message(message) -> dict:
    """A charging.v1.Cdr as the dict cdr_of makes (for files written from an export)."""
    fields = {name: getattr(message, name) for name in FIELDS if name != "bucket_draws"}
    fields["bucket_draws"] = [{"bucket_id": draw.bucket_id, "amount": draw.amount} for draw in message.bucket_draws]
    return fields


def draws_text(draws: list[dict]) -> str:
    """A CSV cell: "B7=3600;B9=500000" (bucket=units, or micros for a monetary bucket)."""
    return ";".join(f"{draw['bucket_id']}={draw['amount']}" for draw in draws)


def encode_cursor(positions: list[int]) -> str:
    return ".".join([_CURSOR_VERSION, *map(str, positions)])


def decode_cursor(cursor: str, shards: int) -> list[int]:
    if not cursor:
        return [0] * shards
    version, *parts = cursor.split(".")
    if version != _CURSOR_VERSION or len(parts) != shards or not all(
            part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
        raise BadCursor("is not a CDR cursor of this grid; pass one from a previous page, or none")
    return [int(part) for part in parts]


def to_csv(cdrs: list[dict], header: bool) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    if header:
        writer.writeheader()
    for cdr in cdrs:
        writer.writerow({**cdr, "kind": KIND_NAMES.get(cdr["kind"], cdr["kind"]),
                         "bucket_draws": draws_text(cdr.get("bucket_draws", []))})
    return out.getvalue()
