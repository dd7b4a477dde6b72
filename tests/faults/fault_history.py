"""A Jepsen-style history of charging operations under faults, and its checker.

Every operation a fault test invokes is recorded with its kind, subscriber,
request id and payload, then its outcome:

- ok(reply): the grid answered (a business denial such as CREDIT_LIMIT_REACHED
  is an ok outcome too: it is recorded and replayed like a success);
- fail(error): a definite error after which nothing changed (INVALID_ARGUMENT,
  ALREADY_EXISTS, FAILED_PRECONDITION, ...);
- unknown(error): UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, OutcomeUnknown,
  a connection error, an op cut off by the test: it may or may not have
  happened, and it may still happen while a batch is in flight.

After the faults (and a restart, where the whole grid was killed) the checker:

1. asks GetTransaction about every op: an ok op must be found with the reply
   the client got (its `replayed` flag aside), a failed op must not be found,
   an unknown op is resolved by the answer; an op found before must still be
   found with the same reply (the answer never changes: invariant 7);
2. retries every op that was unknown once, with the same request id and
   payload: the reply is the recorded one marked replayed if it had been
   applied, else it takes effect now, once;
3. folds the applied ops per subscriber (SUCCESS top-ups +amount, debits
   -charged, refunds +refunded) and compares with GetBalance; rebuilds every
   hold from the applied reserves, debits and releases and compares with
   GetAccount (held per reservation, sum of holds == reserved); checks
   available >= 0 where no overage or late debit was applied, that no charge
   is refunded beyond itself, and that no two requests got the same charge or
   reservation id (invariants 1, 2, 3, 4, 5, 7 of DESIGN.md section 11).

Every violation is collected with the seed, so one assertion reports them all.
"""

import asyncio
import collections
import dataclasses
import threading
import time
from typing import Any

import grpc
from grid_client import GridError, RetryPolicy, pb

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"

# After these nothing changed: the call was refused before any effect.
DEFINITE_FAILURES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
})

# Client method -> the GetTransactionResponse field that holds its reply.
REPLY_FIELD = {
    "top_up": "top_up", "reserve": "reserve", "debit": "debit", "release": "release", "refund": "refund",
    "create_account": "create_account", "set_account_state": "set_account_state",
}

CHECK_RETRY = RetryPolicy(attempts=6, timeout_s=10.0)


def classify(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if isinstance(error, grpc.RpcError):
        code = error.code()
    if isinstance(error, (GridError, grpc.RpcError)) and code in DEFINITE_FAILURES:
        return FAIL
    # UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED, OutcomeUnknown, and the
    # client's Unavailable ("did not take effect yet"): an earlier attempt may still be in
    # flight in the front door, so none of them is a definite failure.
    return UNKNOWN


def without_replayed(reply):
    copy = type(reply)()
    copy.CopyFrom(reply)
    if "replayed" in type(reply).DESCRIPTOR.fields_by_name:
        copy.replayed = False
    return copy


def short(reply) -> str:
    return " ".join(str(reply).split()) if reply is not None else "None"


@dataclasses.dataclass
class Op:
    index: int
    kind: str
    subscriber: str
    request_id: str
    payload: dict
    invoked_at: float
    outcome: str | None = None  # ok, fail, unknown; None while in flight
    reply: Any = None
    error: str = ""
    completed_at: float | None = None
    # What the grid recorded for the request id (GetTransaction), once known; None: not applied.
    applied: Any = None
    resolved: bool = False
    retried: bool = False

    def describe(self) -> str:
        return (f"#{self.index} {self.kind} {self.subscriber} {self.request_id} {self.payload} -> {self.outcome}"
                f" {short(self.reply) if self.reply is not None else self.error}")


class History:
    """Thread-safe record of invocations and outcomes."""

    def __init__(self, seed: int, label: str = "") -> None:
        self.seed = seed
        self.label = label
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def invoke(self, kind: str, subscriber: str, payload: dict, request_id: str | None = None) -> Op:
        with self._lock:
            index = len(self.ops)
            op = Op(index, kind, subscriber, request_id or f"{self.label}{kind}-{index}-s{self.seed}",
                    dict(payload), time.monotonic())
            self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, outcome: str, reply=None, error: str = "") -> None:
        op.outcome, op.reply, op.error, op.completed_at = outcome, reply, error, time.monotonic()

    async def call(self, client, kind: str, subscriber: str, **payload) -> Op:
        """Invoke client.<kind>(subscriber, **payload) with a fresh request id and record it."""
        op = self.invoke(kind, subscriber, payload)
        await self.perform(client, op)
        return op

    async def perform(self, client, op: Op) -> None:
        try:
            reply = await getattr(client, op.kind)(op.subscriber, request_id=op.request_id, **op.payload)
        except asyncio.CancelledError:
            self.complete(op, UNKNOWN, error="cancelled by the test")
            raise
        except Exception as error:  # noqa: BLE001 - every outcome is recorded, none is lost
            self.complete(op, classify(error), error=f"{type(error).__name__}: {error}")
            return
        self.complete(op, OK, reply=reply)

    def counts(self) -> dict:
        tally = collections.Counter(op.outcome or UNKNOWN for op in self.ops)
        return {OK: tally[OK], UNKNOWN: tally[UNKNOWN], FAIL: tally[FAIL], "total": len(self.ops)}

    def ok_count(self) -> int:
        return sum(1 for op in self.ops if op.outcome == OK)


class Checker:
    """Checks a History against the grid it ran on; collects violations."""

    def __init__(self, history: History, subscribers: list[str], *, context: str = "") -> None:
        self.history = history
        self.subscribers = list(subscribers)
        self.context = context
        self.violations: list[str] = []
        self.resolved_unknown = {"applied": 0, "not_applied": 0}
        self.retries = {"replayed": 0, "applied_now": 0}

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def assert_clean(self, stage: str = "") -> None:
        if self.violations:
            shown = "\n  ".join(self.violations[:40])
            more = f"\n  ... and {len(self.violations) - 40} more" if len(self.violations) > 40 else ""
            raise AssertionError(
                f"history check failed{' (' + stage + ')' if stage else ''}: {len(self.violations)} violation(s); "
                f"seed {self.history.seed} (replay: GRID_FAULT_SEED_BASE={self.history.seed}) {self.context}\n  "
                f"{shown}{more}")

    # ------------------------------------------------------------ resolution

    async def _gather(self, coroutines, width: int = 64) -> list:
        results = []
        for start in range(0, len(coroutines), width):
            results += await asyncio.gather(*coroutines[start:start + width])
        return results

    async def _transaction(self, client, op: Op):
        try:
            return await client.get_transaction(op.subscriber, op.request_id)
        except GridError as error:
            self.violation(f"GetTransaction failed after the faults for {op.describe()}: {error}")
            return None

    async def resolve(self, client) -> None:
        """GetTransaction for every op: ok ops found with their reply, failed ops absent,
        unknown ops resolved, earlier answers unchanged."""
        ops = list(self.history.ops)
        answers = await self._gather([self._transaction(client, op) for op in ops])
        for op, answer in zip(ops, answers):
            if answer is None:
                continue
            field = REPLY_FIELD[op.kind]
            found = getattr(answer, field) if answer.found else None
            if answer.found and answer.WhichOneof("reply") != field:
                self.violation(f"GetTransaction of {op.describe()} answered a {answer.WhichOneof('reply')}")
                continue
            if op.resolved:  # answered before: the answer never changes (invariant 7)
                if op.applied is None and found is not None:
                    self.violation(f"an op that had not taken effect took effect later: {op.describe()} "
                                   f"recorded {short(found)}")
                elif op.applied is not None and found is None:
                    self.violation(f"applied op lost: {op.describe()} was found before, not any more")
                elif op.applied is not None and without_replayed(found) != without_replayed(op.applied):
                    self.violation(f"GetTransaction changed its answer for {op.describe()}: "
                                   f"{short(op.applied)} then {short(found)}")
                continue
            if op.outcome == OK:
                if found is None:
                    self.violation(f"acknowledged op lost: {op.describe()}")
                elif without_replayed(found) != without_replayed(op.reply):
                    self.violation(f"acknowledged reply differs from the recorded one: {op.describe()} "
                                   f"recorded {short(found)}")
                op.applied = found
                op.resolved = found is not None
            elif op.outcome == FAIL:
                if found is not None:
                    self.violation(f"an op refused with a definite error took effect: {op.describe()} "
                                   f"recorded {short(found)}")
                op.resolved = True  # nothing applied, and it must stay so (checked by the fold)
            else:
                if found is not None:
                    op.applied = found
                    op.resolved = True
                    self.resolved_unknown["applied"] += 1
                else:
                    self.resolved_unknown["not_applied"] += 1

    async def retry_unknown(self, client, *, strict_replayed: bool = True) -> None:
        """Retry every unknown op once with its request id and payload. Applied: the
        reply is the recorded one, marked replayed. Not applied: it takes effect now.
        strict_replayed=False where faults still strike: then the front door may have
        resent our retry's own batch, and a first application comes back replayed."""
        ops = [op for op in self.history.ops if op.outcome != OK and op.outcome != FAIL and not op.retried]

        async def one(op: Op):
            op.retried = True
            try:
                reply = await getattr(client, op.kind)(op.subscriber, request_id=op.request_id, **op.payload)
            except GridError as error:
                self.violation(f"retry of unknown op failed once the faults were over: {op.describe()}: {error}")
                return
            if op.applied is not None:
                if not reply.replayed:
                    self.violation(f"applied twice: retry of {op.describe()} was not a replay: {short(reply)} "
                                   f"(recorded {short(op.applied)})")
                elif without_replayed(reply) != without_replayed(op.applied):
                    self.violation(f"replay differs from the recorded reply: {op.describe()}: {short(reply)} vs "
                                   f"{short(op.applied)}")
                self.retries["replayed"] += 1
            else:
                if reply.replayed and strict_replayed:
                    self.violation(f"retry of {op.describe()} replayed although GetTransaction did not find it: "
                                   f"{short(reply)}")
                op.applied = without_replayed(reply)
                op.resolved = True
                self.retries["applied_now"] += 1

        await self._gather([one(op) for op in ops])

    # ------------------------------------------------------------ state

    async def check_state(self, client, *, expiry_possible: bool = False) -> dict:
        """Fold the applied ops and compare with balances and holds."""
        applied = [op for op in self.history.ops if op.applied is not None]
        expected = collections.Counter({subscriber: 0 for subscriber in self.subscribers})
        overdrawable = set()
        charges: dict[str, tuple[str, int]] = {}
        refunded = collections.Counter()
        holds: dict[str, dict] = {}
        seen_reservations: dict[str, Op] = {}
        for op in applied:
            reply = op.applied
            if reply.result != pb.SUCCESS:
                continue
            if op.kind == "top_up":
                expected[op.subscriber] += op.payload["amount_micros"]
            elif op.kind == "debit":
                expected[op.subscriber] -= reply.charged_micros
                if reply.charge_id in charges:
                    self.violation(f"charge id {reply.charge_id} given twice: {op.describe()}")
                charges[reply.charge_id] = (op.subscriber, reply.charged_micros)
                if reply.overage or reply.overage_micros or reply.late:
                    overdrawable.add(op.subscriber)
            elif op.kind == "refund":
                expected[op.subscriber] += reply.refunded_micros
                refunded[op.payload["charge_id"]] += reply.refunded_micros
                if reply.refunded_micros != op.payload["amount_micros"]:
                    self.violation(f"refund refunded another amount than asked: {op.describe()}")
            elif op.kind == "reserve":
                if reply.reservation_id in seen_reservations:
                    self.violation(f"reservation id {reply.reservation_id} given twice: {op.describe()} and "
                                   f"{seen_reservations[reply.reservation_id].describe()}")
                seen_reservations[reply.reservation_id] = op
                holds[reply.reservation_id] = {"subscriber": op.subscriber, "held": reply.held_micros,
                                               "drawn": 0, "returned": None}
        for op in applied:  # second pass: what debits and releases did to the holds
            reply = op.applied
            if reply.result != pb.SUCCESS or op.kind not in ("debit", "release"):
                continue
            reservation_id = op.payload.get("reservation_id", "")
            if not reservation_id:
                continue
            hold = holds.get(reservation_id)
            if hold is None:
                self.violation(f"{op.kind} succeeded on a reservation no applied reserve made: {op.describe()}")
                continue
            if op.kind == "debit" and reply.late:
                continue  # its hold had expired: charged as a late direct debit
            if op.kind == "debit":
                hold["drawn"] += reply.charged_micros - reply.overage_micros
            if op.kind == "release" or op.payload.get("final"):
                if hold["returned"] is not None:
                    self.violation(f"reservation {reservation_id} resolved twice: {op.describe()}")
                hold["returned"] = reply.released_micros
        for charge_id, amount in refunded.items():
            if charge_id not in charges:
                self.violation(f"refund of charge {charge_id} that no applied debit made")
            elif amount > charges[charge_id][1]:
                self.violation(f"charge {charge_id} refunded {amount} micros, more than its {charges[charge_id][1]}")
        for reservation_id, hold in holds.items():
            if hold["returned"] is not None and hold["drawn"] + hold["returned"] != hold["held"]:
                self.violation(f"reservation {reservation_id}: held {hold['held']} but drew {hold['drawn']} and "
                               f"returned {hold['returned']}")

        async def observe(subscriber):
            return subscriber, await client.balance(subscriber), await client.get_account(subscriber)

        observed = await self._gather([observe(s) for s in self.subscribers], width=16)
        expected_active = collections.defaultdict(dict)
        for reservation_id, hold in holds.items():
            if hold["returned"] is None:
                expected_active[hold["subscriber"]][reservation_id] = hold["held"] - hold["drawn"]
        for subscriber, balance, account in observed:
            where = f"{subscriber}:"
            if balance.balance_micros != expected[subscriber]:
                self.violation(f"{where} balance {balance.balance_micros} but the applied ops fold to "
                               f"{expected[subscriber]} (diff {balance.balance_micros - expected[subscriber]})")
            listed = {r.reservation_id: r.held_micros for r in account.reservations}
            if sum(listed.values()) != account.account.reserved_micros:
                self.violation(f"{where} holds listed sum to {sum(listed.values())}, reserved_micros is "
                               f"{account.account.reserved_micros}")
            if balance.reserved_micros != account.account.reserved_micros:
                self.violation(f"{where} GetBalance reserved {balance.reserved_micros} != GetAccount "
                               f"{account.account.reserved_micros}")
            if account.account.balance_micros != balance.balance_micros:
                self.violation(f"{where} GetBalance and GetAccount disagree on the balance")
            model = expected_active[subscriber]
            for reservation_id, held in listed.items():
                if reservation_id not in model:
                    self.violation(f"{where} hold {reservation_id} ({held}) is active but the history resolved "
                                   "it or never made it")
                elif model[reservation_id] != held:
                    self.violation(f"{where} hold {reservation_id} holds {held}, the history says "
                                   f"{model[reservation_id]}")
            if not expiry_possible:
                for reservation_id in set(model) - set(listed):
                    self.violation(f"{where} hold {reservation_id} vanished (history: still holds "
                                   f"{model[reservation_id]})")
            if (balance.available_micros < 0 and subscriber not in overdrawable
                    and balance.credit_limit_micros == 0):
                self.violation(f"{where} prepaid account available {balance.available_micros} < 0 with no "
                               "overage or late debit applied")
        return {"subscribers": len(observed), "holds": sum(len(m) for m in expected_active.values()),
                "charges": len(charges)}

    # ------------------------------------------------------------ all together

    async def run(self, client, retry_client=None, *, strict_replayed: bool = True,
                  expiry_possible: bool = False) -> dict:
        await self.resolve(client)
        self.assert_clean("resolution")
        await self.check_state(client, expiry_possible=expiry_possible)
        self.assert_clean("state after resolution")
        await self.retry_unknown(retry_client or client, strict_replayed=strict_replayed)
        self.assert_clean("retries of unknown ops")
        await self.resolve(client)  # what the retries applied is now recorded, once
        stats = await self.check_state(client, expiry_possible=expiry_possible)
        self.assert_clean("state after retries")
        return stats


async def check_history(target: str, history: History, subscribers: list[str], *, context: str = "",
                        strict_replayed: bool = True, expiry_possible: bool = False,
                        retry_policy: RetryPolicy = RetryPolicy(attempts=1, timeout_s=30.0)) -> Checker:
    from grid_client import AsyncChargingClient

    checker = Checker(history, subscribers, context=context)
    async with AsyncChargingClient(target, retry=CHECK_RETRY) as client, \
            AsyncChargingClient(target, retry=retry_policy) as retry_client:
        await checker.run(client, retry_client, strict_replayed=strict_replayed, expiry_possible=expiry_possible)
    return checker
