"""The end of a storm: settle what the load left unclear or open, then check
that the money adds up for every subscriber it touched.

Settle (Jepsen style, TESTING.md "History checking"):
1. every request whose call failed is looked up with GetTransaction: its
   original reply when it took effect (booked now), or not found (it never
   will: invariant 7). One that cannot be looked up leaves the audit unproven;
2. holds still open (a call that dropped, a reserve settled in step 1) are
   released, and sessions still open are released with no further usage.

Audit, per subscriber touched:
    balance now == balance before the load - charged + refunded (+ topped up)
    held now == 0
with the amounts taken from the replies (ledger.py), plus the grid's own
reconciliation of every shard's journal (AdminService.Audit). Any difference
fails the run.
"""

import json

from charging.v1 import charging_pb2 as pb

from grid.storm.ledger import Ledger
from grid.storm.provisioning import PROVISION_WINDOW, run_pool

MISMATCHES_LISTED_MAX = 20
# GetTransactionResponse field holding each method's reply.
TRANSACTION_FIELDS = {"Reserve": "reserve", "Debit": "debit", "Release": "release", "Refund": "refund",
                      "TopUp": "top_up", "CreateSession": "session", "UpdateSession": "session",
                      "ReleaseSession": "session"}


async def settle(ledger: Ledger, client, run_id: str, window: int = PROVISION_WINDOW) -> dict:
    """Resolve the unknown outcomes, then close the holds and sessions left open."""
    from grid_client import GridError

    counts = {"unknown_outcomes": len(ledger.unknown), "resolved_applied": 0, "resolved_not_applied": 0,
              "holds_released": 0, "sessions_released": 0}
    problems: list[str] = []

    async def resolve(key) -> None:
        method, request = ledger.unknown[key]
        subscriber_id, request_id = key
        try:
            transaction = await client.get_transaction(subscriber_id, request_id)
        except GridError as error:
            problems.append(f"GetTransaction {request_id}: {error}")
            return
        if transaction.found:
            counts["resolved_applied"] += 1
            ledger.resolved(method, request, getattr(transaction, TRANSACTION_FIELDS[method]))
        else:
            counts["resolved_not_applied"] += 1
            ledger.resolved(method, request, None)

    await run_pool(list(ledger.unknown), resolve, window)

    async def release_hold(key) -> None:
        subscriber_id, reservation_id = key
        request = pb.ReleaseRequest(request_id=f"{run_id}-settle-{reservation_id}", subscriber_id=subscriber_id,
                                    reservation_id=reservation_id)
        try:
            reply = await client.release(subscriber_id, reservation_id, request_id=request.request_id)
        except GridError as error:
            problems.append(f"Release {reservation_id} of {subscriber_id}: {error}")
            return
        counts["holds_released"] += 1
        ledger.replied("Release", request, reply)

    await run_pool(sorted(ledger.holds), release_hold, window)

    async def release_session(track) -> None:
        request = pb.ReleaseSessionRequest(session_id=track.session_id, subscriber_id=track.subscriber_id,
                                           invocation_sequence_number=track.last_sequence + 1)
        ledger.sent("ReleaseSession", request)
        try:
            reply = await client.release_session(track.subscriber_id, track.session_id, track.last_sequence + 1)
        except GridError as error:
            problems.append(f"ReleaseSession {track.session_id}: {error}")
            return
        counts["sessions_released"] += 1
        ledger.replied("ReleaseSession", request, reply)

    await run_pool(ledger.open_sessions(), release_session, window)
    counts["unresolved"] = len(ledger.unknown)
    return {**counts, "problems": problems}


async def _read_balances(client, subscriber_ids, window: int) -> dict[str, pb.GetBalanceResponse | str]:
    """Each subscriber's GetBalance reply, or why it could not be read."""
    from grid_client import GridError

    found = {}

    async def one(subscriber_id: str) -> None:
        try:
            found[subscriber_id] = await client.balance(subscriber_id)
        except GridError as error:
            found[subscriber_id] = f"GetBalance failed: {error}"

    await run_pool(subscriber_ids, one, window)
    return found


async def _grid_audit(client) -> tuple[bool, dict, str]:
    from grid_client import GridError

    try:
        grid = await client.audit()
    except GridError as error:
        return False, {}, f"the grid's own audit did not answer: {error}"
    report = json.loads(grid.report_json)
    problem = "" if grid.ok else ("the grid's own audit found problems: "
                                  + "; ".join(p for shard in report["shards"] for p in shard["problems"][:5]))
    return grid.ok, report, problem


async def audit(ledger: Ledger, client, start: dict[str, tuple[int, int]], settled: dict,
                window: int = PROVISION_WINDOW, grid_auditor=None) -> dict:
    """Every touched subscriber's balance against the books, nothing held, and
    the grid's own audit (asked through grid_auditor when given: it reads every
    journal whole and needs a longer deadline): {"ok": ..., the evidence}."""
    touched = sorted(ledger.touched)
    now = await _read_balances(client, touched, window)
    mismatches = []
    held_after_micros = 0
    for subscriber_id in touched:
        reply = now[subscriber_id]
        if isinstance(reply, str):
            mismatches.append({"subscriber_id": subscriber_id, "problem": reply})
            continue
        held_after_micros += reply.reserved_micros
        if subscriber_id not in start:
            mismatches.append({"subscriber_id": subscriber_id, "problem": "not provisioned: no starting balance"})
            continue
        start_balance, start_held = start[subscriber_id]
        expected = ledger.expected_balance(subscriber_id, start_balance)
        if reply.balance_micros != expected or reply.reserved_micros != 0:
            mismatches.append({
                "subscriber_id": subscriber_id, "balance_before_micros": start_balance,
                "held_before_micros": start_held, "charged_micros": ledger.charged[subscriber_id],
                "refunded_micros": ledger.refunded[subscriber_id], "expected_balance_micros": expected,
                "balance_micros": reply.balance_micros, "held_micros": reply.reserved_micros,
                "difference_micros": reply.balance_micros - expected})
    grid_ok, grid_report, grid_problem = await _grid_audit(grid_auditor or client)
    problems = list(settled["problems"])
    if settled["unresolved"]:
        problems.append(f"{settled['unresolved']} outcomes could not be resolved: the books cannot be proven")
    if mismatches:
        problems.append(f"{len(mismatches)} of {len(touched)} subscribers do not add up")
    if grid_problem:
        problems.append(grid_problem)
    return {
        "ok": not problems,
        "problems": problems,
        "subscribers_touched": len(touched),
        **{key: value for key, value in ledger.totals().items() if key != "subscribers_touched"},
        "balance_before_micros": sum(start[s][0] for s in touched if s in start),
        "balance_after_micros": sum(now[s].balance_micros for s in touched if not isinstance(now[s], str)),
        "held_after_micros": held_after_micros,
        "mismatches_total": len(mismatches),
        "mismatches": mismatches[:MISMATCHES_LISTED_MAX],
        "settle": {key: value for key, value in settled.items() if key != "problems"},
        "replays_of_unknown_counted": ledger.replays_counted,
        "grid_audit": {"ok": grid_ok, "problems_total": grid_report.get("problems_total"),
                       "journal_records": grid_report.get("journal_records"),
                       "leakage": grid_report.get("leakage")},
    }
