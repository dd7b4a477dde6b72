"""The shard state machine: every rule money obeys, applied one operation at a time.

Theory of operation. A shard owns the accounts of its slots. `apply_batch`
takes operations in arrival order and a `now_ms`, first expires the holds that
are due (a journaled sweep), then applies each operation to completion before
the next: no operation observes another half-done, so per-subscriber order and
the balance checks hold without locks. Each operation returns a reply (an
outcome, or a Rejection when the caller erred and nothing changed). Every
changed record is collected; `take_writes` hands them to the shell, which
persists them in one synced write before any reply leaves the shard.

Idempotency (DESIGN.md section 5): the first reply to a (tenant, subscriber,
request id) is recorded with the operation's payload, denials included; the
same payload later gets that reply marked replayed, another payload a
Rejection ALREADY_EXISTS naming the first differing field.
"""

import collections
import dataclasses
import heapq
import sys
from fractions import Fraction

from grid.domain import operations as ops
from grid.domain import pricing, rating
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import (
    AccountState,
    ErrorCode,
    JournalKind,
    NotificationReason,
    NotificationType,
    ReservationState,
    Result,
    Unit,
)
from grid.domain.records import (
    Account,
    AccountKey,
    BillingCycle,
    Charge,
    ControlState,
    CounterState,
    IdempotencyRecord,
    JournalRecord,
    Notification,
    NotificationFloor,
    Reservation,
    Session,
    ShardMeta,
    Subscription,
    VolumeCounter,
)
from grid.domain.bucket_rules import BucketRules, draws_tuple
from grid.domain.rating_rules import Progress, RatingRules
from grid.domain.pool_rules import PoolRules
from grid.domain.slot_rules import SlotRules
from grid.domain.reservations import ReservationEvent, next_state
from grid.domain.controls import ControlRules
from grid.domain.policy_counters import CounterRules
from grid.domain.sessions import SessionRules
from grid.domain.validation import rejection_for

IdempotencyKey = tuple[str, str, str]


@dataclasses.dataclass(slots=True)
class Writes:
    """What one batch changed: records to put and idempotency keys to delete."""

    puts: list
    deleted_idempotency_keys: list[IdempotencyKey]
    # Charges and resolved holds past their retention (journal records past it are
    # the store's to drop: the core does not hold the journal).
    deleted_charge_ids: list[str] = dataclasses.field(default_factory=list)
    deleted_reservation_ids: list[str] = dataclasses.field(default_factory=list)
    # Closed sessions and notifications past their retention.
    deleted_session_keys: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    deleted_notification_sequences: list[int] = dataclasses.field(default_factory=list)
    deleted_subscription_keys: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    # Records whose keys go (a slot moved away): deleted before the puts are written.
    deleted_records: list = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deleted_idempotency_keys or self.deleted_charge_ids
                    or self.deleted_reservation_ids or self.deleted_session_keys
                    or self.deleted_notification_sequences or self.deleted_subscription_keys
                    or self.deleted_records)


class ShardState(SessionRules, CounterRules, ControlRules, RatingRules, BucketRules, SlotRules, PoolRules):
    def __init__(self, shard_id: int, limits: CoreLimits = CoreLimits()) -> None:
        self.limits = limits
        self.meta = ShardMeta(shard_id=shard_id)
        self.accounts: dict[AccountKey, Account] = {}
        self.reservations: dict[str, Reservation] = {}
        self.charges: dict[str, Charge] = {}
        self.tariffs: dict[tuple[str, str], rating.TariffPlan] = {}  # (tenant, plan id)
        self.idempotency: dict[IdempotencyKey, IdempotencyRecord] = {}
        # Derived indexes, rebuilt on restore. The *_order deques list records oldest
        # first for retention: popping the front of a dict is quadratic in CPython
        # (deleted slots are scanned again by every next(iter(...))).
        self._idempotency_order: collections.deque[tuple[int, IdempotencyKey]] = collections.deque()
        self._charge_order: collections.deque[tuple[int, str]] = collections.deque()
        self._reservation_order: collections.deque[tuple[int, str]] = collections.deque()
        self._active_holds: dict[AccountKey, dict[str, Reservation]] = {}
        self._expiry_heap: list[tuple[int, str]] = []
        # Changes since the last take_writes, keyed so a record changed twice is written once.
        self._dirty: dict[tuple[str, object], object] = {}
        self._deleted_idempotency: list[IdempotencyKey] = []
        self._deleted_charges: list[str] = []
        self._deleted_reservations: list[str] = []
        self._span_id = ""
        self._uncounted: list[tuple] = []
        self.expired_total = 0  # holds expired by this incarnation (a metric)
        self._init_sessions()
        self._init_counters()
        self._init_controls()
        self._init_rating()
        self._init_slots()

    # ------------------------------------------------------------ batches

    def apply_batch(self, operations, now_ms: int, span_ids=None) -> list:
        """span_ids: the span that applies each operation (journaled with its records),
        for operations that do not carry one themselves."""
        self.expire_due(now_ms)
        if span_ids is None:
            return [self.apply(operation, now_ms) for operation in operations]
        return [self.apply(operation, now_ms, span_id) for operation, span_id in zip(operations, span_ids)]

    def apply(self, operation, now_ms: int, span_id: str | None = None):
        # Journal records made by this operation carry the span that applied it.
        self._span_id = getattr(operation, "span_id", "") if span_id is None else span_id
        rejection = rejection_for(operation, self.limits)
        if rejection is not None:
            return rejection
        if self._slots_out and (moved := self.slot_moved(operation)) is not None:
            return moved  # its subscriber is another shard's now: nothing applies here
        handler = _HANDLERS[type(operation)]
        if not isinstance(operation, ops.MUTATING_OPERATIONS):
            return handler(self, operation, now_ms)
        key = (operation.tenant, operation.subscriber_id, operation.request_id)
        recorded = self.idempotency.get(key)
        if recorded is not None:
            differing = ops.first_differing_field(recorded.operation, operation)
            if differing is not None:
                if isinstance(operation, ops.SESSION_OPERATIONS):
                    used = (f"invocation_sequence_number {operation.invocation_sequence_number} of session "
                            f"{operation.session_id!r}")
                else:
                    used = f"request_id {operation.request_id!r}"
                return ops.Rejection(ErrorCode.ALREADY_EXISTS, differing, f"{used} was used for another {differing}")
            return dataclasses.replace(recorded.reply, replayed=True)
        self._expire_account_holds((operation.tenant, operation.subscriber_id), now_ms, operation.trace_id)
        reply = handler(self, operation, now_ms)
        if isinstance(reply, ops.Rejection):
            assert not self._uncounted, "a rejected operation charged something"
            return reply
        for account, rating_group, used_units, charged_micros, request_id, trace_id in self._uncounted:
            self._count_charge(account, rating_group, used_units, charged_micros, now_ms, request_id, trace_id)
            self._check_charge_controls(account, rating_group, used_units, charged_micros, now_ms, request_id,
                                        trace_id)
            self._bill(account, now_ms, rating_group, used_units, charged_micros)
        self._uncounted.clear()
        record = IdempotencyRecord(
            tenant=operation.tenant,
            subscriber_id=operation.subscriber_id,
            request_id=operation.request_id,
            operation=operation,
            reply=reply,
            recorded_at_ms=now_ms,
        )
        self.idempotency[key] = record
        self._idempotency_order.append((now_ms, key))
        self._mark("idempotency", key, record)
        return reply

    def take_writes(self) -> Writes:
        if self._dirty:
            self._mark("meta", 0, self.meta)
        # A key forgotten and recorded anew in one batch must survive: deletes only
        # of keys the batch does not also put (the store applies deletes after puts).
        deleted = [key for key in self._deleted_idempotency if ("idempotency", key) not in self._dirty]
        writes = Writes(
            puts=list(self._dirty.values()), deleted_idempotency_keys=deleted,
            deleted_charge_ids=self._deleted_charges, deleted_reservation_ids=self._deleted_reservations,
            # A session forgotten and adopted anew in one batch must survive, like a request id.
            deleted_session_keys=[key for key in self._deleted_sessions if ("session", key) not in self._dirty],
            deleted_notification_sequences=self._deleted_notifications,
            deleted_subscription_keys=[key for key in self._deleted_subscriptions
                                       if ("subscription", key) not in self._dirty],
            deleted_records=self.deleted_records,
        )
        self.deleted_records = []
        self._dirty = {}
        self._deleted_idempotency = []
        self._deleted_charges = []
        self._deleted_reservations = []
        self._deleted_sessions = []
        self._deleted_notifications = []
        self._deleted_subscriptions = []
        return writes

    # ------------------------------------------------------------ expiry

    def expire_due(self, now_ms: int) -> int:
        """Expire every hold past validity + grace, close sessions past their
        supervision time, forget what is past its retention. Returns the number
        of holds expired."""
        expired = 0
        while self._expiry_heap and self._expiry_heap[0][0] <= now_ms:
            _, reservation_id = heapq.heappop(self._expiry_heap)
            reservation = self.reservations.get(reservation_id)
            if reservation is not None and reservation.state == ReservationState.ACTIVE:
                assert reservation.expires_at_ms <= now_ms
                self._expire(reservation, now_ms, trace_id="")
                expired += 1
        self._supervise_due(now_ms)
        self._reset_due(now_ms)
        self._forget_old_requests(now_ms)
        self._forget_old_charges_and_holds(now_ms)
        self._forget_old_sessions(now_ms)
        self._forget_old_notifications(now_ms)
        return expired

    def _forget_old_charges_and_holds(self, now_ms: int) -> None:
        """Charges and resolved holds past the retention are dropped: a refund or a
        debit naming one then finds nothing."""
        oldest_kept_ms = now_ms - self.limits.charge_retention_s * 1000
        while self._charge_order and self._charge_order[0][0] < oldest_kept_ms:
            _, charge_id = self._charge_order.popleft()
            if self.charges.pop(charge_id, None) is None:
                continue  # moved away with its slot
            self._dirty.pop(("charge", charge_id), None)
            self._deleted_charges.append(charge_id)
        while self._reservation_order and self._reservation_order[0][0] < oldest_kept_ms:
            _, reservation_id = self._reservation_order.popleft()
            if reservation_id not in self.reservations:
                continue  # moved away with its slot
            # Past its expiry an active hold was expired by the sweep above.
            assert self.reservations[reservation_id].state != ReservationState.ACTIVE, reservation_id
            del self.reservations[reservation_id]
            self._dirty.pop(("reservation", reservation_id), None)
            self._deleted_reservations.append(reservation_id)

    def _forget_old_requests(self, now_ms: int) -> None:
        oldest_kept_ms = now_ms - self.limits.idempotency_horizon_s * 1000
        while self._idempotency_order and self._idempotency_order[0][0] < oldest_kept_ms:
            recorded_at_ms, key = self._idempotency_order.popleft()
            record = self.idempotency.get(key)
            if record is None or record.recorded_at_ms != recorded_at_ms:
                continue  # forgotten before and recorded anew: a later entry stands for it
            del self.idempotency[key]
            self._dirty.pop(("idempotency", key), None)
            self._deleted_idempotency.append(key)

    def _expire_account_holds(self, key: AccountKey, now_ms: int, trace_id: str) -> None:
        holds = self._active_holds.get(key)
        if not holds:
            return
        for reservation in [r for r in holds.values() if r.expires_at_ms <= now_ms]:
            self._expire(reservation, now_ms, trace_id)

    def _expire(self, reservation: Reservation, now_ms: int, trace_id: str) -> None:
        self.expired_total += 1
        account = self.accounts[reservation.account_key]
        given_back = reservation.bucket_holds  # what it still held in buckets goes back with it
        returned = self._resolve(reservation, ReservationEvent.EXPIRE, account)
        self._journal(
            JournalKind.EXPIRE, account, reservation.request_id, Result.SUCCESS, now_ms, trace_id,
            reference_id=reservation.reservation_id, rating_group=reservation.rating_group,
            amount_micros=returned, reserved_before_micros=account.reserved_micros + returned,
            bucket_draws=given_back,
        )

    def _resolve(self, reservation: Reservation, event: ReservationEvent, account: Account) -> int:
        """Move a hold to an absorbing state and return what it still held."""
        reservation.state = next_state(reservation.state, event)
        assert reservation.state != ReservationState.ACTIVE
        returned = reservation.held_micros
        reservation.held_micros = 0
        account.reserved_micros -= returned
        self._return_bucket_holds(account, reservation)
        assert account.reserved_micros >= 0
        holds = self._active_holds[account.key]
        del holds[reservation.reservation_id]
        if not holds:  # most accounts hold nothing most of the time: keep no empty dict for them
            del self._active_holds[account.key]
        self._mark("reservation", reservation.reservation_id, reservation)
        self._mark("account", account.key, account)
        return returned

    def reserved_at(self, account: Account, now_ms: int) -> int:
        """Held money not counting holds already past expiry (reads never show
        an expired hold, even before the sweep has journaled it)."""
        holds = self._active_holds.get(account.key, {})
        expired = sum(r.held_micros for r in holds.values() if r.expires_at_ms <= now_ms)
        return account.reserved_micros - expired

    # ------------------------------------------------------------ helpers

    def _mark(self, kind: str, key, record) -> None:
        self._dirty[(kind, key)] = record

    def _next_id(self, prefix: str) -> str:
        number = self.meta.next_object_id
        self.meta.next_object_id += 1
        return f"{prefix}{self.meta.shard_id}-{number}"

    def _journal(self, kind, account, request_id, result, now_ms, trace_id, **fields) -> JournalRecord:
        sequence = self.meta.next_journal_sequence
        self.meta.next_journal_sequence += 1
        if account is not None:
            tenant, subscriber_id = account.tenant, account.subscriber_id
            balance, reserved = account.balance_micros, account.reserved_micros
        else:
            tenant, subscriber_id = fields.pop("tenant"), fields.pop("subscriber_id")
            balance = reserved = 0
        fields.setdefault("span_id", self._span_id if trace_id else "")
        fields.setdefault("balance_before_micros", balance)
        fields.setdefault("reserved_before_micros", reserved)
        record = JournalRecord(
            sequence=sequence, at_ms=now_ms, kind=kind, tenant=tenant, subscriber_id=subscriber_id,
            request_id=request_id, result=result, balance_after_micros=balance,
            reserved_after_micros=reserved, trace_id=trace_id, **fields,
        )
        self._mark("journal", sequence, record)
        return record

    def _denied(self, kind, operation, result, now_ms, account=None, **fields):
        """Journal a denial: the trail shows what was refused and why."""
        if account is None:
            fields.update(tenant=operation.tenant, subscriber_id=operation.subscriber_id)
        self._journal(kind, account, operation.request_id, result, now_ms, operation.trace_id, **fields)

    def _lifetime_ms(self) -> int:
        """How long a grant can be used: its validity and the grace after it."""
        return (self.limits.validity_time_s + self.limits.expiry_grace_s) * 1000

    def _balance_fits(self, new_balance_micros: int) -> bool:
        return -self.limits.balance_max_micros <= new_balance_micros <= self.limits.balance_max_micros

    def _too_costly(self, cost: rating.Cost) -> ops.Rejection | None:
        if cost.charged_micros > self.limits.charge_max_micros:
            return ops.Rejection(
                ErrorCode.INVALID_ARGUMENT, "used_units",
                f"the usage would cost more than {self.limits.charge_max_micros} micros in one charge",
            )
        return None

    # ------------------------------------------------------------ accounts

    def _create_account(self, op: ops.CreateAccount, now_ms: int) -> ops.CreateAccountReply:
        key = (op.tenant, op.subscriber_id)
        if key in self.accounts:
            result = Result.ACCOUNT_ALREADY_EXISTS
        elif (op.tenant, op.tariff_plan_id) not in self.tariffs:
            result = Result.TARIFF_PLAN_UNKNOWN
        else:
            result = Result.SUCCESS
        if result != Result.SUCCESS:
            self._denied(JournalKind.ACCOUNT_CREATED, op, result, now_ms, self.accounts.get(key))
            return ops.CreateAccountReply(result, trace_id=op.trace_id)
        account = Account(
            tenant=op.tenant, subscriber_id=op.subscriber_id, currency=op.currency,
            credit_limit_micros=op.credit_limit_micros, tariff_plan_id=op.tariff_plan_id,
            state=AccountState.ACTIVE, balance_micros=0, reserved_micros=0, created_at_ms=now_ms,
        )
        self.accounts[key] = account
        self._mark("account", key, account)
        self._journal(JournalKind.ACCOUNT_CREATED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id)
        for grant in op.buckets:  # validated: at most BUCKETS_PER_ACCOUNT_MAX
            self._add_bucket(account, grant, op, now_ms)
        return ops.CreateAccountReply(Result.SUCCESS, trace_id=op.trace_id)

    def _set_account_state(self, op: ops.SetAccountState, now_ms: int) -> ops.SetAccountStateReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            result = Result.USER_UNKNOWN
        elif account.state == AccountState.CLOSED and op.state != AccountState.CLOSED:
            result = Result.END_USER_SERVICE_DENIED  # closed is final
        else:
            result = Result.SUCCESS
            was, account.state = account.state, op.state
            self._mark("account", account.key, account)
            if was == AccountState.ACTIVE and op.state != AccountState.ACTIVE:
                reason = (NotificationReason.ACCOUNT_SUSPENDED if op.state == AccountState.SUSPENDED
                          else NotificationReason.ACCOUNT_CLOSED)
                self._notify_sessions(account, NotificationType.ABORT_CHARGING, reason, now_ms, op.trace_id)
            elif was != AccountState.ACTIVE and op.state == AccountState.ACTIVE:
                self._notify_sessions(account, NotificationType.REAUTHORIZATION,
                                      NotificationReason.ACCOUNT_REACTIVATED, now_ms, op.trace_id)
        self._journal(
            JournalKind.ACCOUNT_STATE, account, op.request_id, result, now_ms, op.trace_id, units=int(op.state),
            **({} if account else {"tenant": op.tenant, "subscriber_id": op.subscriber_id}),
        )
        return ops.SetAccountStateReply(result, trace_id=op.trace_id)

    # ------------------------------------------------------------ money

    def _top_up(self, op: ops.TopUp, now_ms: int) -> ops.TopUpReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            result = Result.USER_UNKNOWN
        elif account.state == AccountState.CLOSED:
            result = Result.END_USER_SERVICE_DENIED
        elif op.bucket is not None:
            bucket = self._add_bucket(account, op.bucket, op, now_ms)
            if bucket is not None:
                self._notify_sessions(account, NotificationType.REAUTHORIZATION, NotificationReason.TOP_UP, now_ms,
                                      op.trace_id)
                return ops.TopUpReply(Result.SUCCESS, balance_micros=account.balance_micros, trace_id=op.trace_id,
                                      bucket_id=bucket.bucket_id)
            result = Result.BALANCE_LIMIT_EXCEEDED  # too many buckets
        elif not self._balance_fits(account.balance_micros + op.amount_micros):
            result = Result.BALANCE_LIMIT_EXCEEDED
        else:
            before = account.balance_micros
            account.balance_micros += op.amount_micros
            self._mark("account", account.key, account)
            self._journal(
                JournalKind.TOP_UP, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                amount_micros=op.amount_micros, balance_before_micros=before,
            )
            # More money may lift a final unit indication: the sessions ask again.
            self._notify_sessions(account, NotificationType.REAUTHORIZATION, NotificationReason.TOP_UP, now_ms,
                                  op.trace_id)
            return ops.TopUpReply(Result.SUCCESS, balance_micros=account.balance_micros, trace_id=op.trace_id)
        self._denied(JournalKind.TOP_UP, op, result, now_ms, account, amount_micros=op.amount_micros)
        return ops.TopUpReply(result, balance_micros=account.balance_micros if account else 0, trace_id=op.trace_id)

    def _reserve(self, op: ops.Reserve, now_ms: int) -> ops.ReserveReply:
        """grant = min(requested, what the available money buys); a real hold."""
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            result = Result.USER_UNKNOWN
        elif account.state != AccountState.ACTIVE or self._grants_denied(account, now_ms):
            result = Result.END_USER_SERVICE_DENIED
        elif (pricer := self._pricer(account, op.rating_group, op.destination, op.roaming_zone, now_ms,
                                     service_identifier=op.service_identifier)) is None:
            result = Result.RATING_FAILED
        elif len(self._active_holds.get(account.key, ())) >= self.limits.reservations_per_account_max:
            result = Result.TOO_MANY_RESERVATIONS
        else:
            grant, unit_draws, money_draws, bucket_units = self._grant_with_buckets(
                account, pricer, Progress.start(now_ms), op.destination, op.requested_units, now_ms,
                self._lifetime_ms())
            result = Result.SUCCESS if grant.granted_units > 0 else Result.CREDIT_LIMIT_REACHED
        if result != Result.SUCCESS:
            self._denied(
                JournalKind.RESERVE, op, result, now_ms, account,
                rating_group=op.rating_group, units=op.requested_units,
            )
            return ops.ReserveReply(result, trace_id=op.trace_id)
        granted = grant.granted_units
        bucket_micros = sum(amount for _, amount in money_draws)
        held = grant.held_micros - bucket_micros  # the main balance's part
        # A free rating group grants even to an overdrawn account; anything priced fits the money.
        assert 0 <= held <= max(account.available_micros(), 0)
        validity_time_s = self.limits.validity_time_s
        reserved_before = account.reserved_micros
        plan = pricer.index.plan
        reservation = self._new_hold(
            account, op.request_id, op.session_id, op.rating_group, granted, held, now_ms,
            now_ms + self._lifetime_ms(), pricer=pricer, destination=op.destination, roaming_zone=op.roaming_zone,
            service_identifier=op.service_identifier,
        )
        self._hold_in_buckets(account, reservation, unit_draws + money_draws, bucket_units)
        self._journal(
            JournalKind.RESERVE, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=reservation.reservation_id, rating_group=op.rating_group, units=granted,
            amount_micros=held, reserved_before_micros=reserved_before,
            tariff_plan_id=plan.tariff_plan_id, tariff_version=plan.version,
            bucket_draws=reservation.bucket_holds,
        )
        return ops.ReserveReply(
            Result.SUCCESS, reservation_id=reservation.reservation_id, granted_units=granted,
            final_unit_indication=grant.final, validity_time_s=validity_time_s,
            held_micros=held, trace_id=op.trace_id, tariff_time_change_ms=grant.tariff_time_change_ms,
            tariff_version=plan.version, bucket_units=bucket_units, bucket_micros=bucket_micros,
        )

    def _new_hold(self, account, request_id, session_id, rating_group, granted, held, now_ms,
                  expires_at_ms, *, pricer: pricing.Pricer, destination: str, roaming_zone: str,
                  progress: Progress | None = None, service_identifier: int = 0) -> Reservation:
        progress = progress or Progress.start(now_ms)
        reservation = Reservation(
            reservation_id=self._next_id("R"), tenant=account.tenant, subscriber_id=account.subscriber_id,
            session_id=session_id, rating_group=rating_group, granted_units=granted, used_units=0,
            held_micros=held, state=ReservationState.ACTIVE, granted_at_ms=now_ms, expires_at_ms=expires_at_ms,
            request_id=request_id, tariff_version=pricer.index.plan.version, destination=destination,
            roaming_zone=roaming_zone, anchor_ms=progress.anchor_ms, base_units=progress.used_units,
            exact_numerator=progress.exact.numerator, exact_denominator=progress.exact.denominator,
            service_identifier=service_identifier,
        )
        account.reserved_micros += held
        self.reservations[reservation.reservation_id] = reservation
        self._reservation_order.append((reservation.expires_at_ms, reservation.reservation_id))
        self._active_holds.setdefault(account.key, {})[reservation.reservation_id] = reservation
        heapq.heappush(self._expiry_heap, (reservation.expires_at_ms, reservation.reservation_id))
        self._mark("reservation", reservation.reservation_id, reservation)
        self._mark("account", account.key, account)
        return reservation

    def _debit(self, op: ops.Debit, now_ms: int):
        if not op.reservation_id:
            return self._direct_debit(op, now_ms)
        account = self.accounts.get((op.tenant, op.subscriber_id))
        reservation = self.reservations.get(op.reservation_id)
        if account is None:
            return self._debit_denied(op, Result.USER_UNKNOWN, now_ms, None)
        if reservation is None or reservation.account_key != account.key:
            return self._debit_denied(op, Result.RESERVATION_NOT_FOUND, now_ms, account)
        if op.rating_group not in (0, reservation.rating_group):
            return ops.Rejection(
                ErrorCode.INVALID_ARGUMENT, "rating_group",
                f"reservation {op.reservation_id} is for rating group {reservation.rating_group}",
            )
        if reservation.state in (ReservationState.EXPIRED, ReservationState.REPLACED):
            # The service was used: charge it as a late direct debit (RFC 4006 failover;
            # a hold a session update replaced is gone the same way).
            return self._charge_late(op, reservation.rating_group, account, now_ms, reservation)
        if reservation.state != ReservationState.ACTIVE:
            return self._debit_denied(op, Result.RESERVATION_ALREADY_RESOLVED, now_ms, account)
        pricer = self._hold_pricer(account, reservation, now_ms)
        if pricer is None:
            return self._debit_denied(op, Result.RATING_FAILED, now_ms, account)
        progress = self._hold_progress(pricer, reservation)
        used = self._consume_on_hold(account, reservation, pricer, progress, op.used_units,
                                     reservation.granted_at_ms + reservation.used_units * 1000, now_ms)
        cost = used.cost
        if (rejection := self._too_costly(cost)) is not None:
            return rejection
        overage_micros = used.overage_micros
        if not self._balance_fits(account.balance_micros - used.balance_micros):
            return self._debit_denied(op, Result.BALANCE_LIMIT_EXCEEDED, now_ms, account)
        before, reserved_before = account.balance_micros, account.reserved_micros
        self._apply_consumption(account, reservation, used)
        reservation.used_units += op.used_units
        self._set_hold_progress(reservation, cost.exact_after)
        self._count_volume(account, pricer, used.money_units, now_ms)
        reservation.state = next_state(reservation.state, ReservationEvent.DEBIT_PARTIAL)
        self._mark("reservation", reservation.reservation_id, reservation)
        self._mark("account", account.key, account)
        draws = draws_tuple(used.unit_draws + used.money_draws)
        charge = self._record_charge(op, account, reservation.rating_group, cost, now_ms, reservation.reservation_id,
                                     tariff_version=pricer.index.plan.version, balance_micros=used.balance_micros,
                                     bucket_draws=draws)
        released = self._resolve(reservation, ReservationEvent.DEBIT_FINAL, account) if op.final else 0
        overage = overage_micros > 0 or reservation.used_units > reservation.granted_units
        self._journal(
            JournalKind.DEBIT, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=charge.charge_id, rating_group=reservation.rating_group, units=op.used_units,
            amount_micros=used.balance_micros, balance_before_micros=before, reserved_before_micros=reserved_before,
            rounding_residue_picos=cost.rounding_residue_picos, overage_micros=overage_micros,
            reservation_id=reservation.reservation_id, bucket_draws=draws, bucket_units=used.bucket_units,
            bucket_micros=used.bucket_micros, **self._tariff_fields(pricer),
        )
        return ops.DebitReply(
            Result.SUCCESS, charge_id=charge.charge_id, charged_micros=cost.charged_micros, overage=overage,
            overage_micros=overage_micros, released_micros=released,
            rounding_residue_picos=cost.rounding_residue_picos, trace_id=op.trace_id,
            tariff_version=pricer.index.plan.version, bucket_micros=used.bucket_micros,
            bucket_units=used.bucket_units,
        )

    def _direct_debit(self, op: ops.Debit, now_ms: int):
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return self._debit_denied(op, Result.USER_UNKNOWN, now_ms, None)
        if account.state != AccountState.ACTIVE:
            return self._debit_denied(op, Result.END_USER_SERVICE_DENIED, now_ms, account)
        pricer, start_ms = self._direct_pricer(op, account, op.rating_group, now_ms)
        if pricer is None:
            return self._debit_denied(op, Result.RATING_FAILED, now_ms, account)
        unit_draws = self._unit_draws(account, pricer.unit, op.rating_group, op.destination, op.used_units, now_ms)
        money_units = op.used_units - sum(amount for _, amount in unit_draws)
        cost = self._rate_more(account, pricer, Progress.start(start_ms), money_units, start_ms, now_ms)
        if (rejection := self._too_costly(cost)) is not None:
            return rejection
        money_draws = self._money_draws(account, op.rating_group, op.destination, cost.charged_micros, now_ms)
        if cost.charged_micros - sum(amount for _, amount in money_draws) > account.available_micros():
            return self._debit_denied(op, Result.CREDIT_LIMIT_REACHED, now_ms, account)
        return self._apply_charge(op, account, op.rating_group, cost, now_ms, pricer, late=False, overage_micros=0,
                                  unit_draws=unit_draws, money_draws=money_draws, money_units=money_units)

    def _direct_pricer(self, op: ops.Debit, account: Account, rating_group: int, now_ms: int):
        """The pricer of a direct debit and when its usage began: as given, else
        seconds of usage ended now, other units happened now."""
        if op.usage_started_at_ms:
            start_ms = min(op.usage_started_at_ms, now_ms)
        elif self._unit_of(account, rating_group, now_ms) == Unit.SECONDS:
            start_ms = now_ms - op.used_units * 1000
        else:
            start_ms = now_ms
        pricer = self._pricer(account, rating_group, op.destination, op.roaming_zone, now_ms, anchor_ms=start_ms,
                              service_identifier=op.service_identifier)
        return pricer, start_ms

    def _charge_late(self, op: ops.Debit, rating_group: int, account: Account, now_ms: int,
                     reservation: Reservation | None = None):
        """Usage reported after its hold expired was consumed already: charge it
        whatever the balance, flagged late, and count what the money did not cover
        as overage. It continues the hold's rating (no second connect fee)."""
        if reservation is not None:
            pricer = self._hold_pricer(account, reservation, now_ms)
            progress = self._hold_progress(pricer, reservation) if pricer is not None else None
            start_ms = reservation.granted_at_ms + reservation.used_units * 1000
        else:
            pricer, start_ms = self._direct_pricer(op, account, rating_group, now_ms)
            progress = Progress.start(start_ms)
        if pricer is None:
            return self._debit_denied(op, Result.RATING_FAILED, now_ms, account)
        # Buckets valid now pay first, as for any usage (the hold gave its part back when it expired).
        destination = reservation.destination if reservation is not None else op.destination
        unit_draws = self._unit_draws(account, pricer.unit, rating_group, destination, op.used_units, now_ms)
        money_units = op.used_units - sum(amount for _, amount in unit_draws)
        cost = self._rate_more(account, pricer, progress, money_units, start_ms, now_ms)
        if (rejection := self._too_costly(cost)) is not None:
            return rejection
        money_draws = self._money_draws(account, rating_group, destination, cost.charged_micros, now_ms)
        balance_part = cost.charged_micros - sum(amount for _, amount in money_draws)
        if not self._balance_fits(account.balance_micros - balance_part):
            return self._debit_denied(op, Result.BALANCE_LIMIT_EXCEEDED, now_ms, account)
        overage_micros = max(0, balance_part - max(0, account.available_micros()))
        return self._apply_charge(op, account, rating_group, cost, now_ms, pricer, late=True,
                                  overage_micros=overage_micros, unit_draws=unit_draws, money_draws=money_draws,
                                  money_units=money_units)

    def _apply_charge(self, op, account, rating_group, cost, now_ms, pricer, *, late, overage_micros,
                      unit_draws=(), money_draws=(), money_units=None) -> ops.DebitReply:
        """A charge with no hold: the unit and money bucket draws, then the main balance."""
        before = account.balance_micros
        draws = list(unit_draws) + list(money_draws)
        self._take(account, draws)
        bucket_micros = sum(amount for _, amount in money_draws)
        balance_micros = cost.charged_micros - bucket_micros
        account.balance_micros -= balance_micros
        self._mark("account", account.key, account)
        self._count_volume(account, pricer, op.used_units if money_units is None else money_units, now_ms)
        charge = self._record_charge(op, account, rating_group, cost, now_ms, op.reservation_id,
                                     tariff_version=pricer.index.plan.version, balance_micros=balance_micros,
                                     bucket_draws=draws_tuple(draws))
        self._journal(
            JournalKind.DEBIT, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=charge.charge_id, rating_group=rating_group, units=op.used_units,
            amount_micros=balance_micros, balance_before_micros=before,
            rounding_residue_picos=cost.rounding_residue_picos, late=late, overage_micros=overage_micros,
            reservation_id=op.reservation_id, bucket_draws=charge.bucket_draws,
            bucket_units=sum(amount for _, amount in unit_draws), bucket_micros=bucket_micros,
            **self._tariff_fields(pricer),
        )
        return ops.DebitReply(
            Result.SUCCESS, charge_id=charge.charge_id, charged_micros=cost.charged_micros,
            overage=overage_micros > 0, overage_micros=overage_micros, late=late,
            rounding_residue_picos=cost.rounding_residue_picos, trace_id=op.trace_id,
            tariff_version=pricer.index.plan.version, bucket_micros=bucket_micros,
            bucket_units=sum(amount for _, amount in unit_draws),
        )

    @staticmethod
    def _tariff_fields(pricer: pricing.Pricer) -> dict:
        plan = pricer.index.plan
        return {"tariff_plan_id": plan.tariff_plan_id, "tariff_version": plan.version}

    def _record_charge(self, op, account, rating_group, cost, now_ms, reservation_id, used_units=None, *,
                       tariff_version: int, balance_micros: int | None = None, bucket_draws=()) -> Charge:
        charge = Charge(
            charge_id=self._next_id("C"), tenant=account.tenant, subscriber_id=account.subscriber_id,
            amount_micros=cost.charged_micros if balance_micros is None else balance_micros, refunded_micros=0,
            reservation_id=reservation_id, rating_group=rating_group,
            used_units=op.used_units if used_units is None else used_units, charged_at_ms=now_ms,
            tariff_version=tariff_version, bucket_draws=tuple(bucket_draws),
        )
        self.charges[charge.charge_id] = charge
        self._charge_order.append((now_ms, charge.charge_id))
        self._mark("charge", charge.charge_id, charge)
        # Policy counters move with the charge, in the same write, once the operation's
        # own journal records are written (each record's balance follows the previous one).
        self._uncounted.append((account, rating_group, charge.used_units, charge.amount_micros, op.request_id,
                                op.trace_id))
        return charge

    def _debit_denied(self, op: ops.Debit, result: Result, now_ms: int, account) -> ops.DebitReply:
        self._denied(
            JournalKind.DEBIT, op, result, now_ms, account,
            reference_id=op.reservation_id, rating_group=op.rating_group, units=op.used_units,
        )
        return ops.DebitReply(result, trace_id=op.trace_id)

    def _release(self, op: ops.Release, now_ms: int) -> ops.ReleaseReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        reservation = self.reservations.get(op.reservation_id)
        if account is None:
            result = Result.USER_UNKNOWN
        elif reservation is None or reservation.account_key != account.key:
            result = Result.RESERVATION_NOT_FOUND
        elif reservation.state == ReservationState.EXPIRED:
            result = Result.RESERVATION_EXPIRED
        elif reservation.state != ReservationState.ACTIVE:
            result = Result.RESERVATION_ALREADY_RESOLVED
        else:
            reserved_before = account.reserved_micros
            given_back = reservation.bucket_holds
            released = self._resolve(reservation, ReservationEvent.RELEASE, account)
            self._journal(
                JournalKind.RELEASE, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                reference_id=reservation.reservation_id, rating_group=reservation.rating_group,
                amount_micros=released, reserved_before_micros=reserved_before, bucket_draws=given_back,
            )
            return ops.ReleaseReply(Result.SUCCESS, released_micros=released, trace_id=op.trace_id)
        self._denied(JournalKind.RELEASE, op, result, now_ms, account, reference_id=op.reservation_id)
        return ops.ReleaseReply(result, trace_id=op.trace_id)

    def _refund(self, op: ops.Refund, now_ms: int) -> ops.RefundReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        charge = self.charges.get(op.charge_id)
        refundable = 0
        if account is None:
            result = Result.USER_UNKNOWN
        elif charge is None or (charge.tenant, charge.subscriber_id) != account.key:
            result = Result.CHARGE_NOT_FOUND
        elif op.amount_micros > (refundable := charge.amount_micros - charge.refunded_micros):
            result = Result.REFUND_EXCEEDS_CHARGE
        elif not self._balance_fits(account.balance_micros + op.amount_micros):
            result = Result.BALANCE_LIMIT_EXCEEDED
        else:
            before = account.balance_micros
            account.balance_micros += op.amount_micros
            charge.refunded_micros += op.amount_micros
            assert 0 <= charge.refunded_micros <= charge.amount_micros
            self._bill(account, now_ms, refunded_micros=op.amount_micros)
            self._mark("account", account.key, account)
            self._mark("charge", charge.charge_id, charge)
            self._journal(
                JournalKind.REFUND, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                reference_id=charge.charge_id, rating_group=charge.rating_group,
                amount_micros=op.amount_micros, balance_before_micros=before,
            )
            return ops.RefundReply(
                Result.SUCCESS, refunded_micros=op.amount_micros,
                refundable_micros=charge.amount_micros - charge.refunded_micros, trace_id=op.trace_id,
            )
        self._denied(JournalKind.REFUND, op, result, now_ms, account, reference_id=op.charge_id,
                     amount_micros=op.amount_micros)
        return ops.RefundReply(result, refundable_micros=refundable, trace_id=op.trace_id)

    # ------------------------------------------------------------ catalog

    def _put_tariff(self, op: ops.PutTariff, now_ms: int) -> ops.PutTariffReply:
        """A new version when the content (or the requested effective time)
        differs from the latest; effective now unless a time is given."""
        current = self.tariffs.get(op.plan.key)
        # The same content at the same time is a retry; "now" (0) matches a version already in force.
        if current is not None and current.content == op.plan.content and (
                op.plan.effective_from_ms == current.effective_from_ms if op.plan.effective_from_ms
                else current.effective_from_ms <= now_ms):
            return ops.PutTariffReply(Result.SUCCESS, version=current.version)
        plan = dataclasses.replace(op.plan, version=(current.version if current else 0) + 1,
                                   effective_from_ms=op.plan.effective_from_ms or now_ms)
        self._hold_version(plan)
        self._mark("tariff", (plan.key, plan.version), plan)
        self._journal(
            JournalKind.TARIFF, None, "", Result.SUCCESS, now_ms, op.trace_id, tenant=plan.tenant, subscriber_id="",
            tariff_plan_id=plan.tariff_plan_id, tariff_version=plan.version,
        )
        # Grants under the old prices: the sessions on the plan ask again (a version
        # that starts later applies to grants made from then on).
        if current is not None and plan.effective_from_ms <= now_ms:
            for key, sessions in self._account_sessions.items():
                account = self.accounts[key]
                if (account.tenant, account.tariff_plan_id) == plan.key:
                    self._notify_sessions(account, NotificationType.REAUTHORIZATION,
                                          NotificationReason.TARIFF_CHANGED, now_ms, op.trace_id)
        return ops.PutTariffReply(Result.SUCCESS, version=plan.version)

    def _get_tariff(self, op: ops.GetTariff, now_ms: int) -> ops.TariffReply:
        key = (op.tenant, op.tariff_plan_id)
        plan = self._plan_in_force(key, now_ms, op.version) if op.version else self.tariffs.get(key)
        if plan is None or (op.version and plan.version != op.version):
            return ops.TariffReply(Result.TARIFF_PLAN_UNKNOWN)
        versions = tuple((p.version, p.effective_from_ms) for p in self.tariff_versions.get(key, ()))
        return ops.TariffReply(Result.SUCCESS, plan=plan, versions=versions)

    def _quote(self, op: ops.Quote, now_ms: int) -> ops.QuoteReply:
        """Advice of charge: the cost of the usage starting at at_ms (the version in
        force then) and the units the available money buys at that rate."""
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return ops.QuoteReply(Result.USER_UNKNOWN)
        at_ms = op.at_ms or now_ms
        pricer = self._pricer(account, op.rating_group, op.destination, op.roaming_zone, at_ms,
                              service_identifier=op.service_identifier)
        if pricer is None:
            return ops.QuoteReply(Result.RATING_FAILED)
        # Unit buckets cover what they can; the rest is priced, and paid by monetary buckets first.
        unit_draws = self._unit_draws(account, pricer.unit, op.rating_group, op.destination, op.used_units, at_ms)
        covered = sum(amount for _, amount in unit_draws)
        rated = self._rate_more(account, pricer, Progress.start(at_ms), op.used_units - covered, at_ms, at_ms)
        if (rejection := self._too_costly(rated)) is not None:
            return rejection  # the same bound as a direct debit of this usage
        available = (account.available_micros(self.reserved_at(account, now_ms))
                     + self._bucket_money(account, op.rating_group, op.destination, at_ms))
        spare_units = sum(amount for _, amount in self._unit_draws(
            account, pricer.unit, op.rating_group, op.destination, self.limits.usage_max_units, at_ms))
        # Priced at the rate in force at at_ms throughout: fast, and what a user is told.
        affordable = spare_units + pricer.affordable(
            0, Fraction(0), available, self.limits.usage_max_units, at_ms, at_ms,
            self._volume_units(account, pricer, now_ms), dearest=(pricer.anchor,))
        plan, rate = pricer.index.plan, pricer.anchor
        return ops.QuoteReply(
            Result.SUCCESS, cost_micros=rated.charged_micros, rounding_residue_picos=rated.rounding_residue_picos,
            affordable_units=min(affordable, self.limits.usage_max_units), available_micros=available,
            tariff_plan_id=plan.tariff_plan_id,
            tariff_version=plan.version, destination_prefix=rate.destination_prefix, time_band=rate.time_band,
            roaming_zone=rate.roaming_zone, currency=account.currency, service_identifier=rate.service_identifier,
        )

    # ------------------------------------------------------------ reads

    def _get_balance(self, op: ops.GetBalance, now_ms: int) -> ops.BalanceReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return ops.BalanceReply(Result.USER_UNKNOWN)
        reserved = self.reserved_at(account, now_ms)
        return ops.BalanceReply(
            Result.SUCCESS, balance_micros=account.balance_micros, reserved_micros=reserved,
            available_micros=account.available_micros(reserved), credit_limit_micros=account.credit_limit_micros,
            currency=account.currency, buckets=self._bucket_views(account, now_ms),
        )

    def _get_account(self, op: ops.GetAccount, now_ms: int) -> ops.AccountReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return ops.AccountReply(Result.USER_UNKNOWN)
        reserved = self.reserved_at(account, now_ms)
        views = tuple(self._view(r) for r in self._active_holds.get(account.key, {}).values() if r.expires_at_ms > now_ms)
        return ops.AccountReply(
            Result.SUCCESS, subscriber_id=account.subscriber_id, currency=account.currency, state=account.state,
            credit_limit_micros=account.credit_limit_micros, tariff_plan_id=account.tariff_plan_id,
            balance_micros=account.balance_micros, reserved_micros=reserved,
            available_micros=account.available_micros(reserved), reservations=views,
            buckets=self._bucket_views(account, now_ms),
        )

    @staticmethod
    def _view(r: Reservation) -> ops.ReservationView:
        return ops.ReservationView(
            reservation_id=r.reservation_id, session_id=r.session_id, rating_group=r.rating_group,
            granted_units=r.granted_units, used_units=r.used_units, held_micros=r.held_micros,
            state=r.state, granted_at_ms=r.granted_at_ms, expires_at_ms=r.expires_at_ms,
            tariff_version=r.tariff_version, destination=r.destination, roaming_zone=r.roaming_zone,
            service_identifier=r.service_identifier,
        )

    def _get_transaction(self, op: ops.GetTransaction, now_ms: int) -> ops.TransactionReply:
        record = self.idempotency.get((op.tenant, op.subscriber_id, op.request_id))
        if record is None:
            return ops.TransactionReply(found=False)
        return ops.TransactionReply(found=True, reply=record.reply)

    # ------------------------------------------------------------ recovery

    @classmethod
    def restore(cls, shard_id: int, records, limits: CoreLimits = CoreLimits()) -> "ShardState":
        """Rebuild a shard from its persisted records (journal records are not
        needed: the state records are the journal's fold)."""
        state = cls(shard_id, limits)
        idempotency = []
        records = list(records)
        for record in records:  # the meta record first: it says which slots moved out
            if isinstance(record, ShardMeta):
                assert record.shard_id == shard_id, f"records of shard {record.shard_id} given to shard {shard_id}"
                state.meta = record
                state._refresh_slots_out()
        for record in records:
            if not state.owns_slot_of(record):
                state.park(record)  # exported, not yet dropped: never live here again
                continue
            if isinstance(record, Account):
                # Interned: a million accounts share a handful of tenants, currencies and plans.
                record.tenant = sys.intern(record.tenant)
                record.currency = sys.intern(record.currency)
                record.tariff_plan_id = sys.intern(record.tariff_plan_id)
                state.accounts[record.key] = record
            elif isinstance(record, Reservation):
                state.reservations[record.reservation_id] = record
            elif isinstance(record, Charge):
                state.charges[record.charge_id] = record
            elif isinstance(record, IdempotencyRecord):
                idempotency.append(record)
            elif isinstance(record, rating.TariffPlan):
                state._hold_version(record)
            elif isinstance(record, VolumeCounter):
                state.volume_counters[record.key] = record
            elif isinstance(record, ShardMeta):
                assert record.shard_id == shard_id, f"records of shard {record.shard_id} given to shard {shard_id}"
                state.meta = record
            elif isinstance(record, Session):
                state.sessions[record.key] = record
            elif isinstance(record, Notification):
                state.notifications[record.sequence] = record
            elif isinstance(record, NotificationFloor):
                state._notification_floors[record.key] = record
            elif isinstance(record, BillingCycle):
                state.billing_cycles[record.key] = record
            elif isinstance(record, ControlState):
                state.control_states[record.key] = record
            elif isinstance(record, CounterState):
                state.counters[record.key] = record
            elif isinstance(record, Subscription):
                state.subscriptions[record.key] = record
            elif isinstance(record, JournalRecord):
                pass
            else:
                raise AssertionError(f"unknown record {type(record).__name__}")
        idempotency.sort(key=lambda r: r.recorded_at_ms)
        for record in idempotency:
            key = (record.tenant, record.subscriber_id, record.request_id)
            state.idempotency[key] = record
            state._idempotency_order.append((record.recorded_at_ms, key))
        state._charge_order.extend(sorted((c.charged_at_ms, c.charge_id) for c in state.charges.values()))
        state._reservation_order.extend(
            sorted((r.expires_at_ms, r.reservation_id) for r in state.reservations.values()))
        for reservation in state.reservations.values():
            if reservation.state == ReservationState.ACTIVE:
                state._active_holds.setdefault(reservation.account_key, {})[reservation.reservation_id] = reservation
                state._expiry_heap.append((reservation.expires_at_ms, reservation.reservation_id))
        heapq.heapify(state._expiry_heap)
        state._restore_sessions()
        state._restore_counters()
        state.prepare_indexes()
        state.check_invariants()
        return state

    def check_invariants(self) -> None:
        """Holds add up per account and nothing is negative where it must not be
        (DESIGN.md invariants 2 and 5). Cheap enough for tests after every step."""
        for key, account in self.accounts.items():
            holds = self._active_holds.get(key, {})
            assert all(r.state == ReservationState.ACTIVE for r in holds.values())
            assert all(r.held_micros >= 0 for r in holds.values())
            assert account.reserved_micros == sum(r.held_micros for r in holds.values()), key
            assert account.reserved_micros >= 0
            if account.buckets or any(r.bucket_holds for r in holds.values()):
                in_holds = collections.Counter()
                for reservation in holds.values():
                    for bucket_id, amount in reservation.bucket_holds:
                        in_holds[bucket_id] += amount
                for bucket in account.buckets:
                    assert 0 <= bucket.reserved <= bucket.remaining, (key, bucket)
                    assert bucket.reserved == in_holds.pop(bucket.bucket_id, 0), (key, bucket)
                assert not in_holds, (key, in_holds)
        for charge in self.charges.values():
            assert 0 <= charge.refunded_micros <= charge.amount_micros
        self._check_session_invariants()


_HANDLERS = {
    ops.CreateAccount: ShardState._create_account,
    ops.SetAccountState: ShardState._set_account_state,
    ops.TopUp: ShardState._top_up,
    ops.Reserve: ShardState._reserve,
    ops.Debit: ShardState._debit,
    ops.Release: ShardState._release,
    ops.Refund: ShardState._refund,
    ops.PutTariff: ShardState._put_tariff,
    ops.GetTariff: ShardState._get_tariff,
    ops.GetBalance: ShardState._get_balance,
    ops.GetAccount: ShardState._get_account,
    ops.GetTransaction: ShardState._get_transaction,
    ops.CreateSession: ShardState._session_request,
    ops.UpdateSession: ShardState._session_request,
    ops.ReleaseSession: ShardState._session_request,
    ops.GetSession: ShardState._get_session,
    ops.ReadNotifications: ShardState._read_notifications,
    ops.Subscribe: ShardState._subscribe,
    ops.Unsubscribe: ShardState._unsubscribe,
    ops.GetCounters: ShardState._get_counters,
    ops.GetBillingCycle: ShardState._get_billing_cycle,
    ops.Quote: ShardState._quote,
    ops.ExportSlots: ShardState._export_slots,
    ops.ImportSlots: ShardState._import_slots,
    ops.DropSlots: ShardState._drop_slots,
    ops.PoolTake: ShardState._pool_take,
    ops.PoolGive: ShardState._pool_give,
    ops.PoolReclaim: ShardState._pool_reclaim,
}
