"""Operations a shard applies and the replies it gives, as plain frozen records.

Every operation names its tenant and subscriber (the sharding key). Mutating
operations carry a request_id: the idempotency record keeps the operation's
payload (PAYLOAD_FIELDS) and its reply, so a retry is answered without effect.
`trace_id` and `span_id` travel with the operation but are not payload: a retry
has new ones.
"""

import dataclasses
from typing import ClassVar, Union

from grid.domain.outcomes import (
    AccountState, BucketUnit, ErrorCode, FinalUnitAction, ReservationState, Result, SessionState,
)
from grid.domain.rating import TariffPlan
from grid.domain.records import Bucket

from grid.domain.rating import DEFAULT_TENANT  # noqa: E402,F401 - re-exported


# ---------------------------------------------------------------- mutating


@dataclasses.dataclass(frozen=True, slots=True)
class BucketGrant:
    """A bucket to add: units of usage or a monetary sub-balance (micros)."""

    unit: BucketUnit
    amount: int
    valid_from_ms: int = 0
    # 0: no expiry.
    valid_until_ms: int = 0
    weight: int = 0
    rating_groups: tuple[int, ...] = ()
    destination_prefixes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CreateAccount:
    tenant: str
    subscriber_id: str
    request_id: str
    currency: str
    credit_limit_micros: int
    tariff_plan_id: str
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    buckets: tuple[BucketGrant, ...] = ()
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "currency", "credit_limit_micros", "tariff_plan_id", "buckets")


@dataclasses.dataclass(frozen=True, slots=True)
class SetAccountState:
    tenant: str
    subscriber_id: str
    request_id: str
    state: AccountState
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "state")


@dataclasses.dataclass(frozen=True, slots=True)
class TopUp:
    tenant: str
    subscriber_id: str
    request_id: str
    amount_micros: int
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    # Given: the top-up adds this bucket instead of money (amount_micros is then 0).
    bucket: BucketGrant | None = None
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "amount_micros", "bucket")


@dataclasses.dataclass(frozen=True, slots=True)
class Reserve:
    tenant: str
    subscriber_id: str
    request_id: str
    session_id: str
    rating_group: int
    requested_units: int
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    # E.164 digits of the called party (rate selection by longest prefix), the roaming zone.
    destination: str = ""
    roaming_zone: str = ""
    # The service within the rating group (RFC 4006 Service-Identifier; 0: none).
    service_identifier: int = 0
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "session_id", "rating_group", "requested_units", "destination",
                                "roaming_zone", "service_identifier")


@dataclasses.dataclass(frozen=True, slots=True)
class Debit:
    """Charge used units against a hold, or directly when reservation_id is empty."""

    tenant: str
    subscriber_id: str
    request_id: str
    reservation_id: str
    rating_group: int
    used_units: int
    final: bool
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    # A direct debit: what the usage was (rate selection) and when it began (0:
    # seconds ended now, other units now).
    destination: str = ""
    roaming_zone: str = ""
    usage_started_at_ms: int = 0
    service_identifier: int = 0
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "reservation_id", "rating_group", "used_units", "final",
                                "destination", "roaming_zone", "usage_started_at_ms", "service_identifier")


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    tenant: str
    subscriber_id: str
    request_id: str
    reservation_id: str
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "reservation_id")


@dataclasses.dataclass(frozen=True, slots=True)
class Refund:
    tenant: str
    subscriber_id: str
    request_id: str
    charge_id: str
    amount_micros: int
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "charge_id", "amount_micros")


@dataclasses.dataclass(frozen=True, slots=True)
class PutTariff:
    """Create or replace a plan. Catalog writes are idempotent by content."""

    plan: TariffPlan
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""


# ---------------------------------------------------------------- sessions


@dataclasses.dataclass(frozen=True, slots=True)
class UnitUsage:
    """One rating group of a session request (3GPP multipleUnitUsage)."""

    rating_group: int
    # New quota asked for; 0 asks for none (the group's hold is then closed).
    requested_units: int = 0
    # Units used since the last report, charged against the group's hold.
    used_units: int = 0
    destination: str = ""
    roaming_zone: str = ""
    service_identifier: int = 0


SESSION_PAYLOAD_FIELDS = ("subscriber_id", "session_id", "invocation_sequence_number", "multiple_unit_usage",
                          "notify_client_id")


def session_request_id(session_id: str, invocation_sequence_number: int) -> str:
    """The idempotency key of a session request: (session, sequence number), so a
    retransmission through any front door finds the original answer. Also what
    GetTransaction takes to resolve an ambiguous session request."""
    return f"session/{session_id}/{invocation_sequence_number}"


@dataclasses.dataclass(frozen=True, slots=True)
class _SessionRequest:
    """What CreateSession, UpdateSession and ReleaseSession carry (3GPP field names)."""

    tenant: str
    subscriber_id: str
    session_id: str
    invocation_sequence_number: int
    multiple_unit_usage: tuple[UnitUsage, ...]
    notify_client_id: str = ""
    trace_id: str = ""
    # The span that applied it (set by the shard shell): journaled beside trace_id.
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = SESSION_PAYLOAD_FIELDS

    @property
    def request_id(self) -> str:
        return session_request_id(self.session_id, self.invocation_sequence_number)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateSession(_SessionRequest):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateSession(_SessionRequest):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseSession(_SessionRequest):
    pass


SESSION_OPERATIONS = (CreateSession, UpdateSession, ReleaseSession)


@dataclasses.dataclass(frozen=True, slots=True)
class UnitInformation:
    """The answer for one rating group (3GPP multipleUnitInformation)."""

    rating_group: int
    result: Result
    granted_units: int = 0
    validity_time_s: int = 0
    quota_holding_time_s: int = 0
    # Report when this many granted units are left (volume/time quota threshold).
    threshold_units: int = 0
    # Set when these are the final units: what to do when they are used up.
    final_unit_action: FinalUnitAction = FinalUnitAction.FINAL_UNIT_ACTION_UNSPECIFIED
    redirect_server_address: str = ""
    reservation_id: str = ""
    held_micros: int = 0
    # The charge for the used units reported for this group.
    used_units: int = 0
    charge_id: str = ""
    charged_micros: int = 0
    late: bool = False
    overage_micros: int = 0
    rounding_residue_picos: int = 0
    # What the closed hold still held and went back to the subscriber.
    released_micros: int = 0
    # The grant may cross this change of time band (ms; 0: none).
    tariff_time_change_ms: int = 0
    bucket_micros: int = 0
    bucket_units: int = 0
    # Of granted_units, those unit buckets cover; the money held in monetary
    # buckets (held_micros is the main balance's part). Last: stored replies
    # written before them decode with 0.
    granted_bucket_units: int = 0
    held_bucket_micros: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SessionReply:
    result: Result
    session_id: str = ""
    invocation_sequence_number: int = 0
    multiple_unit_information: tuple[UnitInformation, ...] = ()
    session_state: SessionState = SessionState.SESSION_STATE_UNSPECIFIED
    # Send an update within this time or the grid closes the session.
    supervision_time_s: int = 0
    replayed: bool = False
    trace_id: str = ""


# ---------------------------------------------------------------- policy counters


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribe:
    tenant: str
    subscriber_id: str
    request_id: str
    client_id: str
    # Empty: every counter of the subscriber's plan.
    counter_ids: tuple[str, ...]
    trace_id: str = ""
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "client_id", "counter_ids")


@dataclasses.dataclass(frozen=True, slots=True)
class Unsubscribe:
    tenant: str
    subscriber_id: str
    request_id: str
    client_id: str
    trace_id: str = ""
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "client_id")


@dataclasses.dataclass(frozen=True, slots=True)
class CounterStatusView:
    counter_id: str
    status: str
    value: int
    period_start_ms: int
    period_end_ms: int
    # Known ahead: at pending_activation_ms the status becomes pending_status.
    pending_status: str = ""
    pending_activation_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SubscribeReply:
    result: Result
    statuses: tuple[CounterStatusView, ...] = ()
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class UnsubscribeReply:
    result: Result
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class CountersReply:
    result: Result
    statuses: tuple[CounterStatusView, ...] = ()


# ---------------------------------------------------------------- reads


@dataclasses.dataclass(frozen=True, slots=True)
class GetBalance:
    tenant: str
    subscriber_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class GetAccount:
    tenant: str
    subscriber_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class GetTransaction:
    tenant: str
    subscriber_id: str
    request_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class GetTariff:
    tariff_plan_id: str
    tenant: str = DEFAULT_TENANT
    # 0: the latest version put.
    version: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PoolTake:
    """At a pooled balance: take money from it for a member's sub-quota."""

    tenant: str
    subscriber_id: str  # the pool
    request_id: str
    counterparty: str  # the member
    amount_micros: int
    trace_id: str = ""
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "counterparty", "amount_micros")


@dataclasses.dataclass(frozen=True, slots=True)
class PoolGive:
    """Money from a pool's delegation: to a member as a sub-quota (a monetary bucket
    tagged with the pool), or back to the pool's balance."""

    tenant: str
    subscriber_id: str
    request_id: str
    counterparty: str
    amount_micros: int
    as_bucket: bool
    valid_until_ms: int = 0
    trace_id: str = ""
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "counterparty", "amount_micros", "as_bucket", "valid_until_ms")


@dataclasses.dataclass(frozen=True, slots=True)
class PoolReclaim:
    """At a member: take back what its sub-quotas from the pool still hold (not held by grants)."""

    tenant: str
    subscriber_id: str  # the member
    request_id: str
    counterparty: str  # the pool
    trace_id: str = ""
    span_id: str = ""
    PAYLOAD_FIELDS: ClassVar = ("subscriber_id", "counterparty")


@dataclasses.dataclass(frozen=True, slots=True)
class PoolReply:
    result: Result
    amount_micros: int = 0
    bucket_id: str = ""
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ExportSlots:
    """Freeze slots at their source shard and hand over what their subscribers own."""

    slots: tuple[int, ...]
    slot_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class ImportSlots:
    """Adopt an exported slot's records at the target shard (durably, idempotently)."""

    slots: tuple[int, ...]
    records: tuple


@dataclasses.dataclass(frozen=True, slots=True)
class DropSlots:
    """At the source, once the map routes the slots to the target: forget them."""

    slots: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SlotsReply:
    accounts: int
    records: tuple = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SlotMoved:
    """The operation's subscriber is in a slot this shard moved out: nothing was
    applied; route by a newer shard map and send it again."""

    slot: int


@dataclasses.dataclass(frozen=True, slots=True)
class Quote:
    """Advice of charge: what the usage costs now and how many units the
    balance buys; holds and charges nothing."""

    tenant: str
    subscriber_id: str
    rating_group: int
    used_units: int
    destination: str = ""
    roaming_zone: str = ""
    # When the usage would start (0: now).
    at_ms: int = 0
    service_identifier: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class GetSession:
    tenant: str
    subscriber_id: str
    session_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReadNotifications:
    """The notifications for client_id after a shard sequence number (one shard:
    the front door asks each shard and keeps a cursor of positions)."""

    tenant: str
    client_id: str
    after_sequence: int
    limit: int
    channel: str = "sessions"  # or "policy" (records.POLICY_CHANNEL)


@dataclasses.dataclass(frozen=True, slots=True)
class GetBillingCycle:
    """The billing cycle holding at_ms (0: now)."""

    tenant: str
    subscriber_id: str
    at_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class BillingCycleReply:
    result: Result
    cycle: object = None  # records.BillingCycle, or None when nothing was charged in it


@dataclasses.dataclass(frozen=True, slots=True)
class GetCounters:
    tenant: str
    subscriber_id: str


# ---------------------------------------------------------------- replies


@dataclasses.dataclass(frozen=True, slots=True)
class CreateAccountReply:
    result: Result
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class SetAccountStateReply:
    result: Result
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TopUpReply:
    result: Result
    balance_micros: int = 0
    replayed: bool = False
    trace_id: str = ""
    # The bucket a bucket top-up added.
    bucket_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveReply:
    result: Result
    reservation_id: str = ""
    granted_units: int = 0
    final_unit_indication: bool = False
    validity_time_s: int = 0
    held_micros: int = 0
    replayed: bool = False
    trace_id: str = ""
    # The grant may cross this change of time band (ms; 0: none): report usage by then.
    tariff_time_change_ms: int = 0
    tariff_version: int = 0
    # Of the grant, the units unit buckets cover, and the money held in monetary
    # buckets (held_micros is the main balance's part).
    bucket_units: int = 0
    bucket_micros: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DebitReply:
    result: Result
    charge_id: str = ""
    charged_micros: int = 0
    overage: bool = False
    overage_micros: int = 0
    late: bool = False
    released_micros: int = 0
    rounding_residue_picos: int = 0
    replayed: bool = False
    trace_id: str = ""
    tariff_version: int = 0
    # Of charged_micros, what monetary buckets paid (the rest the main balance);
    # and the units unit buckets covered (not priced).
    bucket_micros: int = 0
    bucket_units: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseReply:
    result: Result
    released_micros: int = 0
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class RefundReply:
    result: Result
    refunded_micros: int = 0
    refundable_micros: int = 0
    replayed: bool = False
    trace_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class PutTariffReply:
    result: Result
    version: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class BalanceReply:
    result: Result
    balance_micros: int = 0
    reserved_micros: int = 0
    available_micros: int = 0
    credit_limit_micros: int = 0
    currency: str = ""
    buckets: tuple[Bucket, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ReservationView:
    reservation_id: str
    session_id: str
    rating_group: int
    granted_units: int
    used_units: int
    held_micros: int
    state: ReservationState
    granted_at_ms: int
    expires_at_ms: int
    # What its usage is rated for, as the grant was priced.
    tariff_version: int = 0
    destination: str = ""
    roaming_zone: str = ""
    service_identifier: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class AccountReply:
    result: Result
    subscriber_id: str = ""
    currency: str = ""
    state: AccountState = AccountState.ACCOUNT_STATE_UNSPECIFIED
    credit_limit_micros: int = 0
    tariff_plan_id: str = ""
    balance_micros: int = 0
    reserved_micros: int = 0
    available_micros: int = 0
    reservations: tuple[ReservationView, ...] = ()
    buckets: tuple[Bucket, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfoReply:
    result: Result
    session_id: str = ""
    subscriber_id: str = ""
    state: SessionState = SessionState.SESSION_STATE_UNSPECIFIED
    last_sequence_number: int = 0
    notify_client_id: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    supervision_deadline_ms: int = 0
    closed_at_ms: int = 0
    reservations: tuple[ReservationView, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class NotificationsReply:
    notifications: tuple = ()
    # True when notifications after the asked sequence were dropped by retention.
    lost: bool = False
    # The shard's newest sequence: a watcher with nothing of its own advances to it.
    last_sequence: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class TariffReply:
    result: Result
    plan: TariffPlan | None = None
    # Every version held, oldest first (version, effective_from_ms).
    versions: tuple[tuple[int, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class QuoteReply:
    result: Result
    cost_micros: int = 0
    rounding_residue_picos: int = 0
    # Units the available money buys at this rate now (whole increments).
    affordable_units: int = 0
    available_micros: int = 0
    tariff_plan_id: str = ""
    tariff_version: int = 0
    # The rate chosen: its destination prefix, time band and zone.
    destination_prefix: str = ""
    time_band: str = ""
    roaming_zone: str = ""
    currency: str = ""
    service_identifier: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """A caller error: nothing changed. `field` names the offending field.
    reason overrides the error table's ErrorInfo reason (SHARD_MAP_STALE) and
    metadata adds (key, value) pairs to the ErrorInfo."""

    code: ErrorCode
    field: str
    message: str
    reason: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


MutatingReply = Union[
    CreateAccountReply, SetAccountStateReply, TopUpReply, ReserveReply, DebitReply, ReleaseReply, RefundReply,
    SessionReply, SubscribeReply, UnsubscribeReply, PoolReply,
]


@dataclasses.dataclass(frozen=True, slots=True)
class TransactionReply:
    found: bool
    reply: MutatingReply | None = None


MUTATING_OPERATIONS = (CreateAccount, SetAccountState, TopUp, Reserve, Debit, Release, Refund, *SESSION_OPERATIONS,
                       Subscribe, Unsubscribe, PoolTake, PoolGive, PoolReclaim)
Operation = Union[
    CreateAccount, SetAccountState, TopUp, Reserve, Debit, Release, Refund, PutTariff,
    CreateSession, UpdateSession, ReleaseSession, Subscribe, Unsubscribe,
    GetBalance, GetAccount, GetTransaction, GetTariff, GetSession, ReadNotifications, GetCounters, GetBillingCycle,
    Quote,
]
Reply = Union[
    MutatingReply, PutTariffReply, BalanceReply, AccountReply, TransactionReply, TariffReply, SessionInfoReply, QuoteReply,
    NotificationsReply, CountersReply, BillingCycleReply, Rejection,
]


def first_differing_field(stored, incoming) -> str | None:
    """The first payload field in which a retry differs from the original."""
    if type(stored) is not type(incoming):
        return "operation"
    for name in type(stored).PAYLOAD_FIELDS:
        if getattr(stored, name) != getattr(incoming, name):
            return name
    return None
