"""Disputes over the wire (issue 6): AdminService.Dispute and `grid dispute`
rebuild, from the journal alone, the chain behind a request, a charge or a time
window of one subscriber on the session's grid.

The scripted history (`history`) runs on its own subscriber; its records'
sequences are compared with each other (other tests share the shard), every
amount and balance is written out by hand from the script.
"""

import json
import os
import subprocess
import sys
import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import FUNDS, SMS, SMS_MICROS, VOICE, failing, new_id, open_account, put_plan
from grid.domain.operations import DEFAULT_TENANT

pytestmark = pytest.mark.slow

JAEGER = "http://127.0.0.1:16686"  # GridConfig's default jaeger_url (the session grid's)
RESOLVED = pb.RESERVATION_ALREADY_RESOLVED


@pytest.fixture(scope="module")
def admin(stubs):
    return pb_grpc.AdminServiceStub(stubs.channel)


class History:
    """One subscriber's scripted history; `reply[name]` is each step's reply."""

    def __init__(self, calls, stubs, plan_id) -> None:
        self.subscriber = open_account(stubs, plan_id, funds=0).id
        self.plan_id = plan_id
        self.reply = {}
        self.request_id = {}
        for name, call, args in (
            ("fund", calls.top_up, dict(amount_micros=FUNDS)),
            # 120 s of voice at 1_000 a second: 120_000 held.
            ("reserve", calls.reserve, dict(units=120, rating_group=VOICE)),
            # 47 s on the hold: 47_000; balance 10_000_000 -> 9_953_000, held 120_000 -> 73_000.
            ("debit1", calls.debit, dict(used_units=47, reservation_id=None)),
            # 30 s more, final: 30_000; balance -> 9_923_000, held 73_000 -> 0 (43_000 returned).
            ("debit2", calls.debit, dict(used_units=30, reservation_id=None, final=True)),
            # 5_000 of the first charge back: balance -> 9_928_000.
            ("refund", calls.refund, dict(charge_id=None, amount_micros=5_000)),
            # A direct debit of one SMS: 100_000; balance -> 9_828_000.
            ("direct", calls.debit, dict(used_units=1, rating_group=SMS)),
            # Denied: a debit and a release on the resolved hold.
            ("late_debit", calls.debit, dict(used_units=5, reservation_id=None)),
            ("late_release", calls.release, dict(reservation_id=None)),
        ):
            if "reservation_id" in args:
                args["reservation_id"] = self.reply["reserve"].reservation_id
            if "charge_id" in args:
                args["charge_id"] = self.reply["debit1"].charge_id
            self.request_id[name] = new_id(f"{name}-")
            self.reply[name] = call(self.subscriber, request_id=self.request_id[name], **args)
            time.sleep(0.005)  # each step in its own millisecond: windows can cut between them
        expected = {"late_debit": RESOLVED, "late_release": RESOLVED}
        for name, reply in self.reply.items():
            assert reply.result == expected.get(name, pb.SUCCESS), (name, reply)


@pytest.fixture(scope="module")
def history(calls, stubs) -> History:
    return History(calls, stubs, put_plan(stubs))


def dispute(admin, subscriber_id: str, **request) -> pb.DisputeResponse:
    return admin.Dispute(pb.DisputeRequest(subscriber_id=subscriber_id, **request), timeout=30)


def by_name(history: History, events) -> list[tuple[str, int, str]]:
    """(step, depth, parent step) of each event, the steps named by request id."""
    names = {request_id: name for name, request_id in history.request_id.items()}
    step_of = {e.sequence: names.get(e.request_id, e.request_id) for e in events}
    return [(step_of[e.sequence], e.depth, step_of.get(e.parent_sequence, "") if e.parent_sequence else "")
            for e in events]


def test_the_chain_of_a_debit(admin, history, embedded):
    r = history.reply
    response = dispute(admin, history.subscriber, request_id=history.request_id["debit1"])
    assert not response.truncated
    events = response.events
    # The hold, its debits in order, the refund under the debit it refunds, the denials on the hold.
    assert by_name(history, events) == [
        ("reserve", 0, ""), ("debit1", 1, "reserve"), ("refund", 2, "debit1"), ("debit2", 1, "reserve"),
        ("late_debit", 1, "reserve"), ("late_release", 1, "reserve")]
    reserve, debit1, refund, debit2, late_debit, late_release = events
    # Journal order is script order.
    assert reserve.sequence < debit1.sequence < debit2.sequence < refund.sequence < late_debit.sequence \
        < late_release.sequence
    hold, charge1, charge2 = r["reserve"].reservation_id, r["debit1"].charge_id, r["debit2"].charge_id
    rows = [(e.kind, e.result, e.reference_id, e.reservation_id, e.rating_group, e.units, e.amount_micros,
             e.balance_before_micros, e.balance_after_micros, e.reserved_before_micros, e.reserved_after_micros,
             e.rounding_residue_picos, e.tariff_plan_id, e.tariff_version, e.late, e.overage_micros) for e in events]
    plan = history.plan_id
    assert rows == [
        (pb.JOURNAL_RESERVE, pb.SUCCESS, hold, "", VOICE, 120, 120_000, 10_000_000, 10_000_000, 0, 120_000, 0,
         plan, 1, False, 0),
        (pb.JOURNAL_DEBIT, pb.SUCCESS, charge1, hold, VOICE, 47, 47_000, 10_000_000, 9_953_000, 120_000, 73_000,
         0, plan, 1, False, 0),
        (pb.JOURNAL_REFUND, pb.SUCCESS, charge1, "", VOICE, 0, 5_000, 9_923_000, 9_928_000, 0, 0, 0, "", 0, False,
         0),
        (pb.JOURNAL_DEBIT, pb.SUCCESS, charge2, hold, VOICE, 30, 30_000, 9_953_000, 9_923_000, 73_000, 0, 0, plan,
         1, False, 0),
        (pb.JOURNAL_DEBIT, RESOLVED, hold, "", 0, 5, 0, 9_828_000, 9_828_000, 0, 0, 0, "", 0, False, 0),
        (pb.JOURNAL_RELEASE, RESOLVED, hold, "", 0, 0, 0, 9_828_000, 9_828_000, 0, 0, 0, "", 0, False, 0),
    ]
    shard = embedded.grid.shard_for(DEFAULT_TENANT, history.subscriber)
    for event, step in zip(events, ("reserve", "debit1", "refund", "debit2", "late_debit", "late_release")):
        assert event.request_id == history.request_id[step]
        assert event.trace_id == r[step].trace_id and len(event.trace_id) == 32
        assert event.trace_url == f"{JAEGER}/trace/{event.trace_id}"
        assert event.shard_id == shard
    assert reserve.at_ms < debit1.at_ms < debit2.at_ms < refund.at_ms


def test_a_charge_gives_the_same_chain_and_a_lone_charge_its_own(admin, history):
    r = history.reply
    whole = [e.sequence for e in dispute(admin, history.subscriber, request_id=history.request_id["debit1"]).events]
    for chosen in (dict(charge_id=r["debit1"].charge_id), dict(charge_id=r["debit2"].charge_id),
                   dict(request_id=history.request_id["reserve"]), dict(request_id=history.request_id["refund"])):
        assert [e.sequence for e in dispute(admin, history.subscriber, **chosen).events] == whole, chosen
    [direct] = dispute(admin, history.subscriber, charge_id=r["direct"].charge_id).events
    assert (direct.kind, direct.reference_id, direct.reservation_id, direct.rating_group, direct.units,
            direct.amount_micros, direct.balance_before_micros, direct.balance_after_micros, direct.depth) == (
        pb.JOURNAL_DEBIT, r["direct"].charge_id, "", SMS, 1, SMS_MICROS, 9_928_000, 9_828_000, 0)
    assert not dispute(admin, history.subscriber, charge_id="C0-999999").events
    assert not dispute(admin, history.subscriber, request_id="never-sent").events
    assert not dispute(admin, new_id("nobody-")).events


def test_a_window(admin, history):
    everything = dispute(admin, history.subscriber).events  # from 0 to now
    assert [pb.JournalKind.Name(e.kind) for e in everything] == [
        "JOURNAL_ACCOUNT_CREATED", "JOURNAL_TOP_UP", "JOURNAL_RESERVE", "JOURNAL_DEBIT", "JOURNAL_REFUND",
        "JOURNAL_DEBIT", "JOURNAL_DEBIT", "JOURNAL_RELEASE", "JOURNAL_DEBIT"]
    assert by_name(history, everything)[1:] == [
        ("fund", 0, ""), ("reserve", 0, ""), ("debit1", 1, "reserve"), ("refund", 2, "debit1"),
        ("debit2", 1, "reserve"), ("late_debit", 1, "reserve"), ("late_release", 1, "reserve"), ("direct", 0, "")]
    at = {name: e.at_ms for (name, _, _), e in zip(by_name(history, everything), everything)}
    # Inclusive at both ends.
    window = dispute(admin, history.subscriber, from_ms=at["reserve"], to_ms=at["debit2"]).events
    assert by_name(history, window) == [("reserve", 0, ""), ("debit1", 1, "reserve"), ("debit2", 1, "reserve")]
    # A window that starts after the hold: its debits stand alone.
    window = dispute(admin, history.subscriber, from_ms=at["reserve"] + 1, to_ms=at["refund"]).events
    assert by_name(history, window) == [("debit1", 0, ""), ("refund", 1, "debit1"), ("debit2", 0, "")]
    # The limit cuts the tree and says so.
    cut = dispute(admin, history.subscriber, limit=2)
    assert cut.truncated and [e.sequence for e in cut.events] == [e.sequence for e in everything[:2]]
    assert not dispute(admin, history.subscriber, limit=len(everything)).truncated


@pytest.mark.parametrize("request_fields, field", [
    (dict(subscriber_id=""), "subscriber_id"),
    (dict(request_id="a", charge_id="C0-1"), "charge_id"),
    (dict(from_ms=2_000, to_ms=1_000), "to_ms"),
    (dict(limit=10_001), "limit"),
    (dict(request_id="x" * 1_000), "request_id"),
])
def test_bad_requests_name_the_field(admin, request_fields, field):
    request = pb.DisputeRequest(**{"subscriber_id": "someone", **request_fields})
    error = failing(admin.Dispute, request, timeout=30)
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), error


def test_a_negative_window_start_names_from_ms(admin):
    error = failing(admin.Dispute, pb.DisputeRequest(subscriber_id="someone", from_ms=-1), timeout=30)
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "from_ms")


def test_with_tracing_off_journal_records_still_carry_span_ids(admin, history):
    assert not any(key.startswith("OTEL_") for key in os.environ)  # the session's grid does not export
    events = dispute(admin, history.subscriber, request_id=history.request_id["debit1"]).events
    assert all(len(e.trace_id) == 32 for e in events)
    assert all(len(e.span_id) == 16 for e in events), [e.span_id for e in events]


# ---------------------------------------------------------------- grid dispute


def run_cli(embedded, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grid.cli", "--target", embedded.target, "dispute", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def test_the_cli_prints_the_tree_with_traces_and_links_and_json(admin, history, embedded):
    r = history.reply
    charge = r["debit1"].charge_id
    events = dispute(admin, history.subscriber, charge_id=charge).events
    # Four at once (each is a Python start-up).
    text, linked, as_json, refused = (
        run_cli(embedded, history.subscriber, "--charge-id", charge),
        run_cli(embedded, history.subscriber, "--charge-id", charge, "--jaeger-url", "https://jaeger.test/ui/"),
        run_cli(embedded, history.subscriber, "--request-id", history.request_id["debit1"], "--json"),
        run_cli(embedded, history.subscriber, "--limit", "10001"),
    )

    code, out, err = finished(text)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(events) == 6
    for line, event in zip(lines, events):
        assert line.startswith("  " * event.depth + f"#{event.sequence} "), line
        assert f" {event.request_id}: " in line
        assert f"trace {event.trace_id}" in line and line.endswith(f"{JAEGER}/trace/{event.trace_id}"), line
    hold = r["reserve"].reservation_id
    assert f"hold {hold}: rating group {VOICE}, 120 units granted, 120,000 micros held" in lines[0]
    assert f"charge {charge} on hold {r['reserve'].reservation_id}: rating group {VOICE}, 47 units, 47,000 micros" \
        in lines[1] and "balance 10,000,000 -> 9,953,000, held 120,000 -> 73,000" in lines[1]
    assert f"refund of charge {charge}: 5,000 micros; balance 9,923,000 -> 9,928,000" in lines[2]
    assert "DENIED: RESERVATION_ALREADY_RESOLVED" in lines[4] and "DENIED: RESERVATION_ALREADY_RESOLVED" in lines[5]

    code, out, err = finished(linked)
    assert code == 0, err
    for line, event in zip(out.splitlines(), events, strict=True):
        assert line.endswith(f"https://jaeger.test/ui/trace/{event.trace_id}") and JAEGER not in line, line

    code, out, err = finished(as_json)
    assert code == 0, err
    document = json.loads(out)
    assert (document["subscriber_id"], document["truncated"]) == (history.subscriber, False)
    assert [(e["sequence"], e["depth"], e["parent_sequence"], e["kind"], e["result"], e["trace_id"], e["trace_url"],
             e["amount_micros"]) for e in document["events"]] == [
        (e.sequence, e.depth, e.parent_sequence, pb.JournalKind.Name(e.kind).removeprefix("JOURNAL_"),
         pb.Result.Name(e.result), e.trace_id, f"{JAEGER}/trace/{e.trace_id}", e.amount_micros) for e in events]

    code, out, err = finished(refused)
    assert code == 2 and "field: limit" in err, (code, out, err)
