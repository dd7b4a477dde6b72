"""CDR export over the wire (AdminService.ExportCdrs, `grid cdr export`): every
charge, late charge, refund, expiry and unrated usage of a scripted history
appears exactly once, in journal order, whatever the page size; a cursor
resumes after the last record exported and nothing is exported twice."""

import csv
import io
import json
import subprocess
import sys
import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import SMS, SMS_MICROS, VOICE, VOICE_MICROS_PER_S, ServingGrid, failing, open_account, put_plan
from grid_client import ChargingClient

pytestmark = pytest.mark.slow

UNRATED = 77  # not in RATES


def _export_all(client, cursor: str = "", limit: int = 0) -> tuple[list, str]:
    cdrs, pages = [], 0
    while True:
        page = client.export_cdrs(cursor, limit)
        pages += 1
        assert pages < 10_000, "the export does not end"
        cdrs += list(page.cdrs)
        cursor = page.next_cursor
        if not page.more:
            return cdrs, cursor


def _of(cdrs, subscriber_id: str) -> list:
    return [c for c in cdrs if c.subscriber_id == subscriber_id]


@pytest.fixture
def history(client, calls, subscriber):
    """A charge on a hold, a direct charge, a refund of part of it, unrated usage."""
    hold = calls.reserve(subscriber.id, 120, VOICE)
    on_hold = calls.debit(subscriber.id, 75, reservation_id=hold.reservation_id, final=True)
    direct = calls.debit(subscriber.id, 2, rating_group=SMS)
    refund = calls.refund(subscriber.id, direct.charge_id, 1_000)
    unrated = calls.debit(subscriber.id, 3, rating_group=UNRATED)
    assert unrated.result == pb.RATING_FAILED
    return {"hold": hold, "on_hold": on_hold, "direct": direct, "refund": refund}


def test_every_rated_event_is_exported_once_in_journal_order_whatever_the_page_size(client, subscriber, history):
    whole, _ = _export_all(client)
    mine = _of(whole, subscriber.id)
    assert [(c.kind, c.amount_micros, c.units, c.rating_group) for c in mine] == [
        (pb.CDR_CHARGE, 75 * VOICE_MICROS_PER_S, 75, VOICE),
        (pb.CDR_CHARGE, 2 * SMS_MICROS, 2, SMS),
        (pb.CDR_REFUND, 1_000, 0, SMS),
        (pb.CDR_UNRATED, 0, 3, UNRATED),
    ]
    charge, direct, refund, unrated = mine
    assert charge.charge_id == history["on_hold"].charge_id
    assert charge.reservation_id == history["hold"].reservation_id
    assert charge.trace_id == history["on_hold"].trace_id and len(charge.span_id) == 16
    assert (direct.charge_id, direct.reservation_id) == (history["direct"].charge_id, "")
    assert refund.charge_id == history["direct"].charge_id and refund.trace_id == history["refund"].trace_id
    assert unrated.rating_group == UNRATED and not unrated.charge_id
    assert charge.tariff_plan_id and charge.tariff_version == 1
    assert [c.sequence for c in mine] == sorted(c.sequence for c in mine)
    # Small pages: the same records, none twice.
    paged, _ = _export_all(client, limit=3)
    assert [c.cdr_id for c in paged] == [c.cdr_id for c in whole]
    assert len({c.cdr_id for c in whole}) == len(whole)


def test_a_cursor_resumes_after_the_last_record_exported(client, calls, subscriber, history):
    _, cursor = _export_all(client)
    assert _of(_export_all(client, cursor)[0], subscriber.id) == []
    later = calls.debit(subscriber.id, 1, rating_group=SMS)
    resumed, next_cursor = _export_all(client, cursor)
    assert [(c.kind, c.charge_id) for c in _of(resumed, subscriber.id)] == [(pb.CDR_CHARGE, later.charge_id)]
    assert _of(_export_all(client, next_cursor)[0], subscriber.id) == []


@pytest.fixture(scope="module")
def quick_expiry_grid(embedded, tmp_path_factory):
    """A 1-shard grid whose holds expire 1 s after their grant (swept every 0.1 s)."""
    from grid.domain.limits import CoreLimits

    grid = ServingGrid(tmp_path_factory.mktemp("grid-cdr") / "grid-data", shards=1, sweep_interval_s=0.1,
                       limits=CoreLimits(validity_time_s=1, expiry_grace_s=0))
    yield grid
    grid.stop()


def test_an_expired_hold_and_its_late_debit_are_exported(quick_expiry_grid):
    grid = quick_expiry_grid
    subscriber = open_account(grid.stubs, put_plan(grid.stubs))
    hold = grid.calls.reserve(subscriber.id, 10, VOICE)
    assert hold.result == pb.SUCCESS
    with ChargingClient(grid.target) as client:
        expired, deadline = None, time.monotonic() + 30
        while expired is None and time.monotonic() < deadline:
            expired = next((c for c in _of(_export_all(client)[0], subscriber.id) if c.kind == pb.CDR_EXPIRY), None)
            time.sleep(0.2)
        assert expired is not None, "the hold did not expire within 30 s"
        assert (expired.reservation_id, expired.amount_micros) == (hold.reservation_id, hold.held_micros)
        late = grid.calls.debit(subscriber.id, 4, reservation_id=hold.reservation_id)
        assert late.late
        charged = [c for c in _of(_export_all(client)[0], subscriber.id) if c.kind == pb.CDR_CHARGE]
        assert [(c.charge_id, c.late, c.reservation_id, c.amount_micros) for c in charged] == [
            (late.charge_id, True, hold.reservation_id, 4 * VOICE_MICROS_PER_S)]


def test_bad_cursor_and_limit_name_the_field(stubs, embedded):
    from charging.v1 import charging_pb2_grpc as pb_grpc

    admin = pb_grpc.AdminServiceStub(stubs.channel)
    for request, field in ((pb.ExportCdrsRequest(cursor="cdr1.x.1"), "cursor"),
                           (pb.ExportCdrsRequest(cursor="cdr1.1"), "cursor"),
                           (pb.ExportCdrsRequest(limit=10_001), "limit")):
        error = failing(admin.ExportCdrs, request, timeout=30)
        assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), request


def test_the_cli_exports_csv_and_json_lines_and_prints_the_cursor(embedded, subscriber, history):
    def run(*args):
        done = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "cdr", "export", *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        cursor = [line for line in done.stderr.splitlines() if line.startswith("cursor: ")]
        return done.stdout, cursor[-1].split(" ", 1)[1]

    text, cursor = run("--format", "csv")
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["subscriber_id"] == subscriber.id]
    assert [(row["kind"], row["amount_micros"]) for row in rows] == [
        ("CDR_CHARGE", str(75 * VOICE_MICROS_PER_S)), ("CDR_CHARGE", str(2 * SMS_MICROS)), ("CDR_REFUND", "1000"),
        ("CDR_UNRATED", "0")]
    assert all(row["trace_id"] for row in rows)
    lines, again = run("--since", cursor)
    assert subscriber.id not in lines and again == cursor
    first, _ = run("--limit", "1")
    assert len(first.splitlines()) == 1 and json.loads(first)["cdr_id"]


def test_the_billing_cycle_accumulates_charges_refunds_and_usage_per_rating_group(client, embedded, subscriber,
                                                                                   history):
    cycle = client.get_billing_cycle(subscriber.id)
    assert cycle.result == pb.SUCCESS
    assert (cycle.charged_micros, cycle.refunded_micros, cycle.net_micros) == (
        75 * VOICE_MICROS_PER_S + 2 * SMS_MICROS, 1_000, 75 * VOICE_MICROS_PER_S + 2 * SMS_MICROS - 1_000)
    assert [(u.rating_group, u.units, u.charged_micros) for u in cycle.usage] == [
        (VOICE, 75, 75 * VOICE_MICROS_PER_S), (SMS, 2, 2 * SMS_MICROS)]
    assert cycle.period_start_ms < time.time() * 1000 < cycle.period_end_ms
    shown = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "account", "bill",
                            subscriber.id], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert int(json.loads(shown.stdout)["net_micros"]) == cycle.net_micros


def test_a_charge_paid_by_buckets_says_so_in_its_cdr_its_dispute_and_its_session_grant(client, embedded, subscriber):
    """The CDR and the dispute chain of a charge partly paid by buckets carry
    what each bucket paid (amount_micros is only the main balance's part); a
    session's grant says what the buckets hold of it."""
    seconds = client.top_up(subscriber.id, 0, bucket={"unit": pb.BUCKET_SECONDS, "amount": 30}).bucket_id
    purse = client.top_up(subscriber.id, 0, bucket={"unit": pb.BUCKET_MONEY, "amount": 20_000}).bucket_id
    debit = client.debit(subscriber.id, 100, rating_group=VOICE)
    # 30 s from the seconds bucket; 70 s priced 70 x 1_000 = 70_000: the purse 20_000, the balance 50_000.
    assert (debit.charged_micros, debit.bucket_units, debit.bucket_micros) == (70_000, 30, 20_000)

    [charge] = [c for c in _export_all(client)[0] if c.subscriber_id == subscriber.id]
    assert (charge.units, charge.amount_micros, charge.bucket_units, charge.bucket_micros) == (100, 50_000, 30, 20_000)
    assert [(d.bucket_id, d.amount) for d in charge.bucket_draws] == [(seconds, 30), (purse, 20_000)]

    chain = client.dispute(subscriber.id, charge_id=debit.charge_id)
    [event] = [e for e in chain.events if e.kind == pb.JOURNAL_DEBIT]
    assert (event.amount_micros, event.bucket_units, event.bucket_micros) == (50_000, 30, 20_000)
    assert [(d.bucket_id, d.amount) for d in event.bucket_draws] == [(seconds, 30), (purse, 20_000)]
    shown = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "dispute", subscriber.id,
                            "--charge-id", debit.charge_id], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"buckets paid 30 units and 20,000 micros ({seconds} 30, {purse} 20,000)" in shown.stdout, shown.stdout

    exported = subprocess.run([sys.executable, "-m", "grid.cli", "--target", embedded.target, "cdr", "export",
                               "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    [row] = [r for r in csv.DictReader(io.StringIO(exported.stdout)) if r["subscriber_id"] == subscriber.id]
    assert (row["bucket_units"], row["bucket_micros"], row["bucket_draws"]) == (
        "30", "20000", f"{seconds}=30;{purse}=20000")

    more = client.top_up(subscriber.id, 0, bucket={"unit": pb.BUCKET_SECONDS, "amount": 40}).bucket_id
    created = client.create_session(subscriber.id, f"s-{subscriber.id}", [(VOICE, 100, 0)])
    [grant] = created.multiple_unit_information
    # 100 s: the new bucket's 40 s and 60 s x 1_000 = 60_000 held in the main balance.
    assert (grant.granted_units, grant.granted_bucket_units, grant.held_micros, grant.held_bucket_micros) == (
        100, 40, 60_000, 0)
    assert {b.bucket_id: b.reserved for b in client.balance(subscriber.id).buckets}[more] == 40
