"""The records a shard keeps and persists: accounts, holds, charges, idempotency
records, journal entries and the shard's meta record.

Accounts, reservations and charges are mutable in memory (the shard owns them
alone); journal and idempotency records are written once and never change.
"""

import dataclasses

from grid.domain.outcomes import (
    AccountState, BucketUnit, JournalKind, NotificationReason, NotificationType, ReservationState, Result, SessionState,
)

AccountKey = tuple[str, str]  # (tenant, subscriber_id)


@dataclasses.dataclass(slots=True)
class Bucket:
    """Free units or a monetary sub-balance, consumed before the main balance in
    a fixed order: weight descending, then expiry ascending (none last), then
    creation. Only within [valid_from, valid_until) and for the rating groups
    and destination prefixes it lists (none listed: any)."""

    bucket_id: str
    unit: BucketUnit
    initial: int
    remaining: int
    # Held by active grants (part of remaining).
    reserved: int
    valid_from_ms: int
    # 0: no expiry.
    valid_until_ms: int
    weight: int
    rating_groups: tuple[int, ...]
    destination_prefixes: tuple[str, ...]
    created_sequence: int
    # A sub-quota delegated by a pooled balance (its account): reclaimed to it.
    pool_id: str = ""

    def usable(self, now_ms: int) -> bool:
        return self.valid_from_ms <= now_ms and (not self.valid_until_ms or now_ms < self.valid_until_ms)

    def applies_to(self, rating_group: int, destination: str) -> bool:
        return ((not self.rating_groups or rating_group in self.rating_groups)
                and (not self.destination_prefixes
                     or any(destination.startswith(prefix) for prefix in self.destination_prefixes)))

    @property
    def order(self) -> tuple[int, int, int]:
        return (-self.weight, self.valid_until_ms or (1 << 62), self.created_sequence)


@dataclasses.dataclass(slots=True)
class Account:
    tenant: str
    subscriber_id: str
    currency: str
    credit_limit_micros: int
    tariff_plan_id: str
    state: AccountState
    # Money on the account, holds included; may go below zero only by overage
    # or late usage, which was consumed before it was reported.
    balance_micros: int
    # Sum of the account's active holds (expired but unswept ones included).
    reserved_micros: int
    created_at_ms: int
    # A DENY_GRANTS control stops new grants until then.
    grants_denied_until_ms: int = 0
    buckets: tuple[Bucket, ...] = ()

    @property
    def key(self) -> AccountKey:
        return (self.tenant, self.subscriber_id)

    def available_micros(self, reserved_micros: int | None = None) -> int:
        held = self.reserved_micros if reserved_micros is None else reserved_micros
        return self.balance_micros - held + self.credit_limit_micros


@dataclasses.dataclass(slots=True)
class Reservation:
    """A real hold of money for granted units of one rating group."""

    reservation_id: str
    tenant: str
    subscriber_id: str
    session_id: str
    rating_group: int
    granted_units: int
    used_units: int
    # What is still held; debits draw it down, resolution returns the rest.
    held_micros: int
    state: ReservationState
    granted_at_ms: int
    expires_at_ms: int
    request_id: str
    # How its usage is rated: the plan version, what was called, when the usage
    # (of the session) began, the units and exact cost (a fraction; 0/0 for
    # holds stored before) the usage had reached when the hold was granted.
    tariff_version: int = 0
    destination: str = ""
    roaming_zone: str = ""
    anchor_ms: int = 0
    base_units: int = 0
    exact_numerator: int = 0
    exact_denominator: int = 0
    # What the grant holds in buckets: (bucket_id, units or micros), and how many
    # of its granted units the unit buckets cover (the rest is priced in money).
    bucket_holds: tuple[tuple[str, int], ...] = ()
    bucket_units: int = 0
    # Of used_units, those unit buckets paid (the rest was priced).
    bucket_used_units: int = 0
    # The service its rate was chosen for (0: none). Last: holds stored before decode with 0.
    service_identifier: int = 0

    @property
    def account_key(self) -> AccountKey:
        return (self.tenant, self.subscriber_id)


SessionKey = tuple[str, str, str]  # (tenant, subscriber_id, session_id)


@dataclasses.dataclass(slots=True)
class Session:
    """A charging session (Gy CCR-I/U/T, Nchf create/update/release): its holds,
    one per rating group, and the sequence numbers it has applied."""

    tenant: str
    subscriber_id: str
    session_id: str
    state: SessionState
    # Who hears of this session's re-authorisations and aborts (WatchNotifications).
    notify_client_id: str
    last_sequence_number: int
    # (rating_group, reservation_id) of the session's active holds, sorted by group.
    holds: tuple[tuple[int, str], ...]
    created_at_ms: int
    updated_at_ms: int
    # No update by then: the grid closes the session (RFC 4006 Tcc).
    supervision_deadline_ms: int
    closed_at_ms: int = 0
    # Per rating group, where the session's rated usage stands:
    # (rating_group, anchor_ms, used_units, exact_numerator, exact_denominator).
    progress: tuple[tuple[int, int, int, int, int], ...] = ()

    @property
    def key(self) -> SessionKey:
        return (self.tenant, self.subscriber_id, self.session_id)

    @property
    def account_key(self) -> AccountKey:
        return (self.tenant, self.subscriber_id)


@dataclasses.dataclass(slots=True)
class CounterState:
    """One policy counter of one account: its value in the current period."""

    tenant: str
    subscriber_id: str
    counter_id: str
    value: int
    period_start_ms: int
    status: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.subscriber_id, self.counter_id)


@dataclasses.dataclass(slots=True)
class ControlState:
    """A velocity control's recent amounts (in tenths of its window) and when it
    may fire again."""

    tenant: str
    subscriber_id: str
    control_id: str
    # (bucket start ms, amount), oldest first, within the window.
    buckets: tuple[tuple[int, int], ...]
    quiet_until_ms: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.subscriber_id, self.control_id)


@dataclasses.dataclass(slots=True)
class BillingCycle:
    """An account's charges, refunds and usage in one billing cycle (a calendar
    month, UTC): what a downstream invoice is made from."""

    tenant: str
    subscriber_id: str
    period_start_ms: int
    period_end_ms: int
    charged_micros: int
    refunded_micros: int
    # (rating_group, units, charged_micros), sorted by rating group.
    usage: tuple[tuple[int, int, int], ...]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.tenant, self.subscriber_id, self.period_start_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription:
    """A policy function's subscription to some counters of one subscriber."""

    tenant: str
    subscriber_id: str
    client_id: str
    # Empty: every counter of the subscriber's plan.
    counter_ids: tuple[str, ...]
    created_at_ms: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.subscriber_id, self.client_id)

    def covers(self, counter_id: str) -> bool:
        return not self.counter_ids or counter_id in self.counter_ids


# Notification channels: session owners (WatchNotifications) and policy functions (WatchStatus).
SESSIONS_CHANNEL, POLICY_CHANNEL = "sessions", "policy"


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """An event for the network function that owns a session, kept so a watcher
    that reconnects with its cursor misses nothing."""

    sequence: int
    at_ms: int
    tenant: str
    client_id: str
    subscriber_id: str
    session_id: str
    type: NotificationType
    reason: NotificationReason
    trace_id: str = ""
    # A policy counter's status change (channel "policy"); session_id, type and reason unused.
    channel: str = SESSIONS_CHANNEL
    counter_id: str = ""
    status: str = ""
    previous_status: str = ""
    value: int = 0
    period_start_ms: int = 0
    period_end_ms: int = 0
    pending_status: str = ""
    cause: str = ""
    request_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class NotificationFloor:
    """The newest of a client's notifications dropped by retention: a watcher whose
    cursor is behind it has lost some (persisted, so a restart still knows)."""

    tenant: str
    channel: str
    client_id: str
    dropped_through: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.channel, self.client_id)


@dataclasses.dataclass(slots=True)
class Charge:
    """Money taken from an account: what refunds are bounded by."""

    charge_id: str
    tenant: str
    subscriber_id: str
    amount_micros: int
    refunded_micros: int
    reservation_id: str
    rating_group: int
    used_units: int
    charged_at_ms: int
    # The plan version that priced it.
    tariff_version: int = 0
    # Drawn from buckets: (bucket_id, units or micros). amount_micros is the main
    # balance's part (what a refund can return).
    bucket_draws: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A request id's operation and the reply it got: answers every retry."""

    tenant: str
    subscriber_id: str
    request_id: str
    operation: object
    reply: object
    recorded_at_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class JournalRecord:
    """One effect (or denial), in shard order: the trail a dispute is settled from."""

    sequence: int
    at_ms: int
    kind: JournalKind
    tenant: str
    subscriber_id: str
    request_id: str
    result: Result
    # The reservation or charge this record is about, if any.
    reference_id: str = ""
    rating_group: int = 0
    units: int = 0
    amount_micros: int = 0
    balance_before_micros: int = 0
    balance_after_micros: int = 0
    reserved_before_micros: int = 0
    reserved_after_micros: int = 0
    rounding_residue_picos: int = 0
    tariff_plan_id: str = ""
    tariff_version: int = 0
    late: bool = False
    overage_micros: int = 0
    trace_id: str = ""
    session_id: str = ""
    # The span that made the record (a dispute links to it), and for a debit
    # the hold it was charged against.
    span_id: str = ""
    reservation_id: str = ""
    # A policy counter's new status (POLICY_STATUS records).
    status: str = ""
    # Drawn from (or, for BUCKET_ADDED, put in) buckets: (bucket_id, units or micros).
    bucket_draws: tuple[tuple[str, int], ...] = ()
    # For a DEBIT: of units, those unit buckets covered; the money monetary buckets
    # paid (amount_micros is the main balance's part). Added last: records written
    # before them decode with 0.
    bucket_units: int = 0
    bucket_micros: int = 0


@dataclasses.dataclass(slots=True)
class ShardMeta:
    """Counters that must survive a restart, written with every batch."""

    shard_id: int
    epoch: int = 0
    next_journal_sequence: int = 1
    next_object_id: int = 1
    next_notification_sequence: int = 1
    # Slots moved (or moving) out of this shard, of slot_count: operations for
    # their subscribers are answered SlotMoved, never applied here.
    slots_out: tuple[int, ...] = ()
    slot_count: int = 0


@dataclasses.dataclass(slots=True)
class VolumeCounter:
    """Usage of one rating group in the current period: where volume tiers stand."""

    tenant: str
    subscriber_id: str
    rating_group: int
    period_start_ms: int
    units: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.tenant, self.subscriber_id, self.rating_group)
