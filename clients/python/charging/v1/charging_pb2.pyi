from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_UNSPECIFIED: _ClassVar[Result]
    SUCCESS: _ClassVar[Result]
    CREDIT_LIMIT_REACHED: _ClassVar[Result]
    USER_UNKNOWN: _ClassVar[Result]
    RATING_FAILED: _ClassVar[Result]
    END_USER_SERVICE_DENIED: _ClassVar[Result]
    RESERVATION_NOT_FOUND: _ClassVar[Result]
    RESERVATION_ALREADY_RESOLVED: _ClassVar[Result]
    RESERVATION_EXPIRED: _ClassVar[Result]
    CHARGE_NOT_FOUND: _ClassVar[Result]
    REFUND_EXCEEDS_CHARGE: _ClassVar[Result]
    ACCOUNT_ALREADY_EXISTS: _ClassVar[Result]
    TARIFF_PLAN_UNKNOWN: _ClassVar[Result]
    BALANCE_LIMIT_EXCEEDED: _ClassVar[Result]
    TOO_MANY_RESERVATIONS: _ClassVar[Result]
    SESSION_NOT_FOUND: _ClassVar[Result]
    SESSION_ALREADY_RELEASED: _ClassVar[Result]
    TOO_MANY_SESSIONS: _ClassVar[Result]
    COUNTER_UNKNOWN: _ClassVar[Result]

class Unit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNIT_UNSPECIFIED: _ClassVar[Unit]
    SECONDS: _ClassVar[Unit]
    BYTES: _ClassVar[Unit]
    EVENTS: _ClassVar[Unit]

class AccountState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATE_UNSPECIFIED: _ClassVar[AccountState]
    ACTIVE: _ClassVar[AccountState]
    SUSPENDED: _ClassVar[AccountState]
    CLOSED: _ClassVar[AccountState]

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_ACTIVE: _ClassVar[ReservationState]
    RESERVATION_COMMITTED: _ClassVar[ReservationState]
    RESERVATION_RELEASED: _ClassVar[ReservationState]
    RESERVATION_EXPIRED_STATE: _ClassVar[ReservationState]
    RESERVATION_REPLACED: _ClassVar[ReservationState]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_ACTIVE: _ClassVar[SessionState]
    SESSION_STATE_RELEASED: _ClassVar[SessionState]
    SESSION_STATE_ABNORMALLY_RELEASED: _ClassVar[SessionState]

class FinalUnitAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINAL_UNIT_ACTION_UNSPECIFIED: _ClassVar[FinalUnitAction]
    TERMINATE: _ClassVar[FinalUnitAction]
    REDIRECT: _ClassVar[FinalUnitAction]
    RESTRICT_ACCESS: _ClassVar[FinalUnitAction]

class NotificationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_TYPE_UNSPECIFIED: _ClassVar[NotificationType]
    REAUTHORIZATION: _ClassVar[NotificationType]
    ABORT_CHARGING: _ClassVar[NotificationType]
    ALERT: _ClassVar[NotificationType]

class NotificationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_REASON_UNSPECIFIED: _ClassVar[NotificationReason]
    TOP_UP: _ClassVar[NotificationReason]
    TARIFF_CHANGED: _ClassVar[NotificationReason]
    ACCOUNT_SUSPENDED: _ClassVar[NotificationReason]
    ACCOUNT_CLOSED: _ClassVar[NotificationReason]
    ACCOUNT_REACTIVATED: _ClassVar[NotificationReason]
    CONTROL_FIRED: _ClassVar[NotificationReason]

class BucketUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUCKET_UNIT_UNSPECIFIED: _ClassVar[BucketUnit]
    BUCKET_MONEY: _ClassVar[BucketUnit]
    BUCKET_SECONDS: _ClassVar[BucketUnit]
    BUCKET_BYTES: _ClassVar[BucketUnit]
    BUCKET_EVENTS: _ClassVar[BucketUnit]

class Rounding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUNDING_UNSPECIFIED: _ClassVar[Rounding]
    ROUNDING_UP: _ClassVar[Rounding]
    ROUNDING_HALF_EVEN: _ClassVar[Rounding]
    ROUNDING_DOWN: _ClassVar[Rounding]

class CapAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAP_ACTION_UNSPECIFIED: _ClassVar[CapAction]
    CAP_STOP_CHARGING: _ClassVar[CapAction]
    CAP_DENY_QUOTA: _ClassVar[CapAction]

class ControlKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_KIND_UNSPECIFIED: _ClassVar[ControlKind]
    SPEND_VELOCITY: _ClassVar[ControlKind]
    USAGE_VELOCITY: _ClassVar[ControlKind]
    LOW_BALANCE: _ClassVar[ControlKind]
    CONCURRENT_SESSIONS: _ClassVar[ControlKind]

class ControlAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_ACTION_UNSPECIFIED: _ClassVar[ControlAction]
    NOTIFY: _ClassVar[ControlAction]
    DENY_GRANTS: _ClassVar[ControlAction]
    SUSPEND: _ClassVar[ControlAction]
    REAUTHORIZE: _ClassVar[ControlAction]

class CounterPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUNTER_PERIOD_UNSPECIFIED: _ClassVar[CounterPeriod]
    COUNTER_PERIOD_DAY: _ClassVar[CounterPeriod]
    COUNTER_PERIOD_WEEK: _ClassVar[CounterPeriod]
    COUNTER_PERIOD_MONTH: _ClassVar[CounterPeriod]

class CdrKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CDR_KIND_UNSPECIFIED: _ClassVar[CdrKind]
    CDR_CHARGE: _ClassVar[CdrKind]
    CDR_REFUND: _ClassVar[CdrKind]
    CDR_EXPIRY: _ClassVar[CdrKind]
    CDR_UNRATED: _ClassVar[CdrKind]

class JournalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOURNAL_KIND_UNSPECIFIED: _ClassVar[JournalKind]
    JOURNAL_ACCOUNT_CREATED: _ClassVar[JournalKind]
    JOURNAL_TOP_UP: _ClassVar[JournalKind]
    JOURNAL_RESERVE: _ClassVar[JournalKind]
    JOURNAL_DEBIT: _ClassVar[JournalKind]
    JOURNAL_RELEASE: _ClassVar[JournalKind]
    JOURNAL_REFUND: _ClassVar[JournalKind]
    JOURNAL_EXPIRE: _ClassVar[JournalKind]
    JOURNAL_ACCOUNT_STATE: _ClassVar[JournalKind]
    JOURNAL_TARIFF: _ClassVar[JournalKind]
    JOURNAL_SESSION_OPENED: _ClassVar[JournalKind]
    JOURNAL_SESSION_RELEASED: _ClassVar[JournalKind]
    JOURNAL_SESSION_SUPERVISED: _ClassVar[JournalKind]
    JOURNAL_POLICY_STATUS: _ClassVar[JournalKind]
    JOURNAL_SUBSCRIBED: _ClassVar[JournalKind]
    JOURNAL_UNSUBSCRIBED: _ClassVar[JournalKind]
    JOURNAL_CONTROL_HIT: _ClassVar[JournalKind]
    JOURNAL_BUCKET_ADDED: _ClassVar[JournalKind]
    JOURNAL_SLOT_MOVED_OUT: _ClassVar[JournalKind]
    JOURNAL_SLOT_MOVED_IN: _ClassVar[JournalKind]
    JOURNAL_POOL_OUT: _ClassVar[JournalKind]
    JOURNAL_POOL_IN: _ClassVar[JournalKind]
RESULT_UNSPECIFIED: Result
SUCCESS: Result
CREDIT_LIMIT_REACHED: Result
USER_UNKNOWN: Result
RATING_FAILED: Result
END_USER_SERVICE_DENIED: Result
RESERVATION_NOT_FOUND: Result
RESERVATION_ALREADY_RESOLVED: Result
RESERVATION_EXPIRED: Result
CHARGE_NOT_FOUND: Result
REFUND_EXCEEDS_CHARGE: Result
ACCOUNT_ALREADY_EXISTS: Result
TARIFF_PLAN_UNKNOWN: Result
BALANCE_LIMIT_EXCEEDED: Result
TOO_MANY_RESERVATIONS: Result
SESSION_NOT_FOUND: Result
SESSION_ALREADY_RELEASED: Result
TOO_MANY_SESSIONS: Result
COUNTER_UNKNOWN: Result
UNIT_UNSPECIFIED: Unit
SECONDS: Unit
BYTES: Unit
EVENTS: Unit
ACCOUNT_STATE_UNSPECIFIED: AccountState
ACTIVE: AccountState
SUSPENDED: AccountState
CLOSED: AccountState
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_ACTIVE: ReservationState
RESERVATION_COMMITTED: ReservationState
RESERVATION_RELEASED: ReservationState
RESERVATION_EXPIRED_STATE: ReservationState
RESERVATION_REPLACED: ReservationState
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_ACTIVE: SessionState
SESSION_STATE_RELEASED: SessionState
SESSION_STATE_ABNORMALLY_RELEASED: SessionState
FINAL_UNIT_ACTION_UNSPECIFIED: FinalUnitAction
TERMINATE: FinalUnitAction
REDIRECT: FinalUnitAction
RESTRICT_ACCESS: FinalUnitAction
NOTIFICATION_TYPE_UNSPECIFIED: NotificationType
REAUTHORIZATION: NotificationType
ABORT_CHARGING: NotificationType
ALERT: NotificationType
NOTIFICATION_REASON_UNSPECIFIED: NotificationReason
TOP_UP: NotificationReason
TARIFF_CHANGED: NotificationReason
ACCOUNT_SUSPENDED: NotificationReason
ACCOUNT_CLOSED: NotificationReason
ACCOUNT_REACTIVATED: NotificationReason
CONTROL_FIRED: NotificationReason
BUCKET_UNIT_UNSPECIFIED: BucketUnit
BUCKET_MONEY: BucketUnit
BUCKET_SECONDS: BucketUnit
BUCKET_BYTES: BucketUnit
BUCKET_EVENTS: BucketUnit
ROUNDING_UNSPECIFIED: Rounding
ROUNDING_UP: Rounding
ROUNDING_HALF_EVEN: Rounding
ROUNDING_DOWN: Rounding
CAP_ACTION_UNSPECIFIED: CapAction
CAP_STOP_CHARGING: CapAction
CAP_DENY_QUOTA: CapAction
CONTROL_KIND_UNSPECIFIED: ControlKind
SPEND_VELOCITY: ControlKind
USAGE_VELOCITY: ControlKind
LOW_BALANCE: ControlKind
CONCURRENT_SESSIONS: ControlKind
CONTROL_ACTION_UNSPECIFIED: ControlAction
NOTIFY: ControlAction
DENY_GRANTS: ControlAction
SUSPEND: ControlAction
REAUTHORIZE: ControlAction
COUNTER_PERIOD_UNSPECIFIED: CounterPeriod
COUNTER_PERIOD_DAY: CounterPeriod
COUNTER_PERIOD_WEEK: CounterPeriod
COUNTER_PERIOD_MONTH: CounterPeriod
CDR_KIND_UNSPECIFIED: CdrKind
CDR_CHARGE: CdrKind
CDR_REFUND: CdrKind
CDR_EXPIRY: CdrKind
CDR_UNRATED: CdrKind
JOURNAL_KIND_UNSPECIFIED: JournalKind
JOURNAL_ACCOUNT_CREATED: JournalKind
JOURNAL_TOP_UP: JournalKind
JOURNAL_RESERVE: JournalKind
JOURNAL_DEBIT: JournalKind
JOURNAL_RELEASE: JournalKind
JOURNAL_REFUND: JournalKind
JOURNAL_EXPIRE: JournalKind
JOURNAL_ACCOUNT_STATE: JournalKind
JOURNAL_TARIFF: JournalKind
JOURNAL_SESSION_OPENED: JournalKind
JOURNAL_SESSION_RELEASED: JournalKind
JOURNAL_SESSION_SUPERVISED: JournalKind
JOURNAL_POLICY_STATUS: JournalKind
JOURNAL_SUBSCRIBED: JournalKind
JOURNAL_UNSUBSCRIBED: JournalKind
JOURNAL_CONTROL_HIT: JournalKind
JOURNAL_BUCKET_ADDED: JournalKind
JOURNAL_SLOT_MOVED_OUT: JournalKind
JOURNAL_SLOT_MOVED_IN: JournalKind
JOURNAL_POOL_OUT: JournalKind
JOURNAL_POOL_IN: JournalKind

class ChargeBatchRequest(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[ChargeRequest]
    def __init__(self, operations: _Optional[_Iterable[_Union[ChargeRequest, _Mapping]]] = ...) -> None: ...

class ChargeBatchResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[ChargeResponse]
    def __init__(self, replies: _Optional[_Iterable[_Union[ChargeResponse, _Mapping]]] = ...) -> None: ...

class GetShardMapRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SlotRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class ShardEndpoint(_message.Message):
    __slots__ = ("shard_id", "slot_ranges", "address", "shard_epoch")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_RANGES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHARD_EPOCH_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    slot_ranges: _containers.RepeatedCompositeFieldContainer[SlotRange]
    address: str
    shard_epoch: int
    def __init__(self, shard_id: _Optional[int] = ..., slot_ranges: _Optional[_Iterable[_Union[SlotRange, _Mapping]]] = ..., address: _Optional[str] = ..., shard_epoch: _Optional[int] = ...) -> None: ...

class GetShardMapResponse(_message.Message):
    __slots__ = ("epoch", "slots", "slot_function", "shards", "tenant")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    slots: int
    slot_function: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardEndpoint]
    tenant: str
    def __init__(self, epoch: _Optional[int] = ..., slots: _Optional[int] = ..., slot_function: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardEndpoint, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class QuoteRequest(_message.Message):
    __slots__ = ("subscriber_id", "rating_group", "used_units", "destination", "roaming_zone", "at_ms", "service_identifier")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    rating_group: int
    used_units: int
    destination: str
    roaming_zone: str
    at_ms: int
    service_identifier: int
    def __init__(self, subscriber_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., used_units: _Optional[int] = ..., destination: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., at_ms: _Optional[int] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class QuoteResponse(_message.Message):
    __slots__ = ("result", "cost_micros", "rounding_residue_picos", "affordable_units", "available_micros", "tariff_plan_id", "tariff_version", "destination_prefix", "time_band", "roaming_zone", "currency", "trace_id", "service_identifier")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_RESIDUE_PICOS_FIELD_NUMBER: _ClassVar[int]
    AFFORDABLE_UNITS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TIME_BAND_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    result: Result
    cost_micros: int
    rounding_residue_picos: int
    affordable_units: int
    available_micros: int
    tariff_plan_id: str
    tariff_version: int
    destination_prefix: str
    time_band: str
    roaming_zone: str
    currency: str
    trace_id: str
    service_identifier: int
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., cost_micros: _Optional[int] = ..., rounding_residue_picos: _Optional[int] = ..., affordable_units: _Optional[int] = ..., available_micros: _Optional[int] = ..., tariff_plan_id: _Optional[str] = ..., tariff_version: _Optional[int] = ..., destination_prefix: _Optional[str] = ..., time_band: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., currency: _Optional[str] = ..., trace_id: _Optional[str] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class MultipleUnitUsage(_message.Message):
    __slots__ = ("rating_group", "requested_units", "used_units", "destination", "roaming_zone", "service_identifier")
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    requested_units: int
    used_units: int
    destination: str
    roaming_zone: str
    service_identifier: int
    def __init__(self, rating_group: _Optional[int] = ..., requested_units: _Optional[int] = ..., used_units: _Optional[int] = ..., destination: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_id", "subscriber_id", "invocation_sequence_number", "multiple_unit_usage", "notify_client_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_UNIT_USAGE_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    subscriber_id: str
    invocation_sequence_number: int
    multiple_unit_usage: _containers.RepeatedCompositeFieldContainer[MultipleUnitUsage]
    notify_client_id: str
    def __init__(self, session_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., invocation_sequence_number: _Optional[int] = ..., multiple_unit_usage: _Optional[_Iterable[_Union[MultipleUnitUsage, _Mapping]]] = ..., notify_client_id: _Optional[str] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("session_id", "subscriber_id", "invocation_sequence_number", "multiple_unit_usage", "notify_client_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_UNIT_USAGE_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    subscriber_id: str
    invocation_sequence_number: int
    multiple_unit_usage: _containers.RepeatedCompositeFieldContainer[MultipleUnitUsage]
    notify_client_id: str
    def __init__(self, session_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., invocation_sequence_number: _Optional[int] = ..., multiple_unit_usage: _Optional[_Iterable[_Union[MultipleUnitUsage, _Mapping]]] = ..., notify_client_id: _Optional[str] = ...) -> None: ...

class ReleaseSessionRequest(_message.Message):
    __slots__ = ("session_id", "subscriber_id", "invocation_sequence_number", "multiple_unit_usage")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_UNIT_USAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    subscriber_id: str
    invocation_sequence_number: int
    multiple_unit_usage: _containers.RepeatedCompositeFieldContainer[MultipleUnitUsage]
    def __init__(self, session_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., invocation_sequence_number: _Optional[int] = ..., multiple_unit_usage: _Optional[_Iterable[_Union[MultipleUnitUsage, _Mapping]]] = ...) -> None: ...

class FinalUnitIndication(_message.Message):
    __slots__ = ("final_unit_action", "redirect_server_address")
    FINAL_UNIT_ACTION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    final_unit_action: FinalUnitAction
    redirect_server_address: str
    def __init__(self, final_unit_action: _Optional[_Union[FinalUnitAction, str]] = ..., redirect_server_address: _Optional[str] = ...) -> None: ...

class MultipleUnitInformation(_message.Message):
    __slots__ = ("rating_group", "result", "granted_units", "validity_time_s", "quota_holding_time_s", "threshold_units", "final_unit_indication", "reservation_id", "held_micros", "used_units", "charge_id", "charged_micros", "late", "overage_micros", "rounding_residue_picos", "released_micros", "tariff_time_change_ms", "bucket_micros", "bucket_units", "granted_bucket_units", "held_bucket_micros")
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    GRANTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_TIME_S_FIELD_NUMBER: _ClassVar[int]
    QUOTA_HOLDING_TIME_S_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_UNITS_FIELD_NUMBER: _ClassVar[int]
    FINAL_UNIT_INDICATION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_MICROS_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGED_MICROS_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_RESIDUE_PICOS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_TIME_CHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    HELD_BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    result: Result
    granted_units: int
    validity_time_s: int
    quota_holding_time_s: int
    threshold_units: int
    final_unit_indication: FinalUnitIndication
    reservation_id: str
    held_micros: int
    used_units: int
    charge_id: str
    charged_micros: int
    late: bool
    overage_micros: int
    rounding_residue_picos: int
    released_micros: int
    tariff_time_change_ms: int
    bucket_micros: int
    bucket_units: int
    granted_bucket_units: int
    held_bucket_micros: int
    def __init__(self, rating_group: _Optional[int] = ..., result: _Optional[_Union[Result, str]] = ..., granted_units: _Optional[int] = ..., validity_time_s: _Optional[int] = ..., quota_holding_time_s: _Optional[int] = ..., threshold_units: _Optional[int] = ..., final_unit_indication: _Optional[_Union[FinalUnitIndication, _Mapping]] = ..., reservation_id: _Optional[str] = ..., held_micros: _Optional[int] = ..., used_units: _Optional[int] = ..., charge_id: _Optional[str] = ..., charged_micros: _Optional[int] = ..., late: _Optional[bool] = ..., overage_micros: _Optional[int] = ..., rounding_residue_picos: _Optional[int] = ..., released_micros: _Optional[int] = ..., tariff_time_change_ms: _Optional[int] = ..., bucket_micros: _Optional[int] = ..., bucket_units: _Optional[int] = ..., granted_bucket_units: _Optional[int] = ..., held_bucket_micros: _Optional[int] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("result", "session_id", "invocation_sequence_number", "multiple_unit_information", "session_state", "supervision_time_s", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_UNIT_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    SESSION_STATE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISION_TIME_S_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    session_id: str
    invocation_sequence_number: int
    multiple_unit_information: _containers.RepeatedCompositeFieldContainer[MultipleUnitInformation]
    session_state: SessionState
    supervision_time_s: int
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., session_id: _Optional[str] = ..., invocation_sequence_number: _Optional[int] = ..., multiple_unit_information: _Optional[_Iterable[_Union[MultipleUnitInformation, _Mapping]]] = ..., session_state: _Optional[_Union[SessionState, str]] = ..., supervision_time_s: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("subscriber_id", "session_id")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    session_id: str
    def __init__(self, subscriber_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("result", "session_id", "subscriber_id", "state", "last_sequence_number", "notify_client_id", "created_at_ms", "updated_at_ms", "supervision_deadline_ms", "closed_at_ms", "reservations")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SUPERVISION_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    session_id: str
    subscriber_id: str
    state: SessionState
    last_sequence_number: int
    notify_client_id: str
    created_at_ms: int
    updated_at_ms: int
    supervision_deadline_ms: int
    closed_at_ms: int
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., session_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., last_sequence_number: _Optional[int] = ..., notify_client_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., supervision_deadline_ms: _Optional[int] = ..., closed_at_ms: _Optional[int] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ...) -> None: ...

class WatchNotificationsRequest(_message.Message):
    __slots__ = ("client_id", "cursor")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    cursor: str
    def __init__(self, client_id: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("type", "reason", "session_id", "subscriber_id", "at_ms", "cursor", "notifications_lost", "trace_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_LOST_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    type: NotificationType
    reason: NotificationReason
    session_id: str
    subscriber_id: str
    at_ms: int
    cursor: str
    notifications_lost: bool
    trace_id: str
    def __init__(self, type: _Optional[_Union[NotificationType, str]] = ..., reason: _Optional[_Union[NotificationReason, str]] = ..., session_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., at_ms: _Optional[int] = ..., cursor: _Optional[str] = ..., notifications_lost: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "session_id", "rating_group", "requested_units", "destination", "roaming_zone", "service_identifier")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    session_id: str
    rating_group: int
    requested_units: int
    destination: str
    roaming_zone: str
    service_identifier: int
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., session_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., requested_units: _Optional[int] = ..., destination: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("result", "reservation_id", "granted_units", "final_unit_indication", "validity_time_s", "replayed", "trace_id", "held_micros", "tariff_time_change_ms", "tariff_version", "bucket_units", "bucket_micros")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    FINAL_UNIT_INDICATION_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_TIME_S_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_TIME_CHANGE_MS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    reservation_id: str
    granted_units: int
    final_unit_indication: bool
    validity_time_s: int
    replayed: bool
    trace_id: str
    held_micros: int
    tariff_time_change_ms: int
    tariff_version: int
    bucket_units: int
    bucket_micros: int
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., reservation_id: _Optional[str] = ..., granted_units: _Optional[int] = ..., final_unit_indication: _Optional[bool] = ..., validity_time_s: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ..., held_micros: _Optional[int] = ..., tariff_time_change_ms: _Optional[int] = ..., tariff_version: _Optional[int] = ..., bucket_units: _Optional[int] = ..., bucket_micros: _Optional[int] = ...) -> None: ...

class DebitRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "reservation_id", "rating_group", "used_units", "final", "destination", "roaming_zone", "usage_started_at_ms", "service_identifier")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    USAGE_STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    reservation_id: str
    rating_group: int
    used_units: int
    final: bool
    destination: str
    roaming_zone: str
    usage_started_at_ms: int
    service_identifier: int
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., used_units: _Optional[int] = ..., final: _Optional[bool] = ..., destination: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., usage_started_at_ms: _Optional[int] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class DebitResponse(_message.Message):
    __slots__ = ("result", "charge_id", "charged_micros", "replayed", "trace_id", "overage", "overage_micros", "late", "released_micros", "rounding_residue_picos", "tariff_version", "bucket_micros", "bucket_units")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_RESIDUE_PICOS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    charge_id: str
    charged_micros: int
    replayed: bool
    trace_id: str
    overage: bool
    overage_micros: int
    late: bool
    released_micros: int
    rounding_residue_picos: int
    tariff_version: int
    bucket_micros: int
    bucket_units: int
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., charge_id: _Optional[str] = ..., charged_micros: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ..., overage: _Optional[bool] = ..., overage_micros: _Optional[int] = ..., late: _Optional[bool] = ..., released_micros: _Optional[int] = ..., rounding_residue_picos: _Optional[int] = ..., tariff_version: _Optional[int] = ..., bucket_micros: _Optional[int] = ..., bucket_units: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "reservation_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    reservation_id: str
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("result", "released_micros", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    released_micros: int
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., released_micros: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "charge_id", "amount_micros")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    charge_id: str
    amount_micros: int
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., charge_id: _Optional[str] = ..., amount_micros: _Optional[int] = ...) -> None: ...

class RefundResponse(_message.Message):
    __slots__ = ("result", "refunded_micros", "replayed", "trace_id", "refundable_micros")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    REFUNDABLE_MICROS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    refunded_micros: int
    replayed: bool
    trace_id: str
    refundable_micros: int
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., refunded_micros: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ..., refundable_micros: _Optional[int] = ...) -> None: ...

class TopUpRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "amount_micros", "bucket")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    amount_micros: int
    bucket: BucketGrant
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., amount_micros: _Optional[int] = ..., bucket: _Optional[_Union[BucketGrant, _Mapping]] = ...) -> None: ...

class TopUpResponse(_message.Message):
    __slots__ = ("result", "balance_micros", "replayed", "trace_id", "bucket_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    balance_micros: int
    replayed: bool
    trace_id: str
    bucket_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., balance_micros: _Optional[int] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ..., bucket_id: _Optional[str] = ...) -> None: ...

class BucketGrant(_message.Message):
    __slots__ = ("unit", "amount", "valid_from_ms", "valid_until_ms", "weight", "rating_groups", "destination_prefixes")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUPS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    unit: BucketUnit
    amount: int
    valid_from_ms: int
    valid_until_ms: int
    weight: int
    rating_groups: _containers.RepeatedScalarFieldContainer[int]
    destination_prefixes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unit: _Optional[_Union[BucketUnit, str]] = ..., amount: _Optional[int] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., weight: _Optional[int] = ..., rating_groups: _Optional[_Iterable[int]] = ..., destination_prefixes: _Optional[_Iterable[str]] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("bucket_id", "unit", "initial", "remaining", "reserved", "valid_from_ms", "valid_until_ms", "weight", "rating_groups", "destination_prefixes", "pool_id")
    BUCKET_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUPS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    bucket_id: str
    unit: BucketUnit
    initial: int
    remaining: int
    reserved: int
    valid_from_ms: int
    valid_until_ms: int
    weight: int
    rating_groups: _containers.RepeatedScalarFieldContainer[int]
    destination_prefixes: _containers.RepeatedScalarFieldContainer[str]
    pool_id: str
    def __init__(self, bucket_id: _Optional[str] = ..., unit: _Optional[_Union[BucketUnit, str]] = ..., initial: _Optional[int] = ..., remaining: _Optional[int] = ..., reserved: _Optional[int] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., weight: _Optional[int] = ..., rating_groups: _Optional[_Iterable[int]] = ..., destination_prefixes: _Optional[_Iterable[str]] = ..., pool_id: _Optional[str] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("subscriber_id",)
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    def __init__(self, subscriber_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance_micros", "reserved_micros", "available_micros", "currency", "result", "credit_limit_micros", "buckets")
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    balance_micros: int
    reserved_micros: int
    available_micros: int
    currency: str
    result: Result
    credit_limit_micros: int
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    def __init__(self, balance_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., available_micros: _Optional[int] = ..., currency: _Optional[str] = ..., result: _Optional[_Union[Result, str]] = ..., credit_limit_micros: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ...) -> None: ...

class GetTransactionRequest(_message.Message):
    __slots__ = ("subscriber_id", "request_id")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    request_id: str
    def __init__(self, subscriber_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetTransactionResponse(_message.Message):
    __slots__ = ("found", "reserve", "debit", "release", "refund", "top_up", "create_account", "set_account_state", "session", "subscribe", "unsubscribe", "pool")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_FIELD_NUMBER: _ClassVar[int]
    CREATE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SET_ACCOUNT_STATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    found: bool
    reserve: ReserveResponse
    debit: DebitResponse
    release: ReleaseResponse
    refund: RefundResponse
    top_up: TopUpResponse
    create_account: CreateAccountResponse
    set_account_state: SetAccountStateResponse
    session: SessionResponse
    subscribe: SubscribeResponse
    unsubscribe: UnsubscribeResponse
    pool: PoolResponse
    def __init__(self, found: _Optional[bool] = ..., reserve: _Optional[_Union[ReserveResponse, _Mapping]] = ..., debit: _Optional[_Union[DebitResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., refund: _Optional[_Union[RefundResponse, _Mapping]] = ..., top_up: _Optional[_Union[TopUpResponse, _Mapping]] = ..., create_account: _Optional[_Union[CreateAccountResponse, _Mapping]] = ..., set_account_state: _Optional[_Union[SetAccountStateResponse, _Mapping]] = ..., session: _Optional[_Union[SessionResponse, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeResponse, _Mapping]] = ..., unsubscribe: _Optional[_Union[UnsubscribeResponse, _Mapping]] = ..., pool: _Optional[_Union[PoolResponse, _Mapping]] = ...) -> None: ...

class ChargeRequest(_message.Message):
    __slots__ = ("correlation_tag", "reserve", "debit", "release", "refund", "top_up", "create_session", "update_session", "release_session")
    CORRELATION_TAG_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_FIELD_NUMBER: _ClassVar[int]
    CREATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_SESSION_FIELD_NUMBER: _ClassVar[int]
    correlation_tag: int
    reserve: ReserveRequest
    debit: DebitRequest
    release: ReleaseRequest
    refund: RefundRequest
    top_up: TopUpRequest
    create_session: CreateSessionRequest
    update_session: UpdateSessionRequest
    release_session: ReleaseSessionRequest
    def __init__(self, correlation_tag: _Optional[int] = ..., reserve: _Optional[_Union[ReserveRequest, _Mapping]] = ..., debit: _Optional[_Union[DebitRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., refund: _Optional[_Union[RefundRequest, _Mapping]] = ..., top_up: _Optional[_Union[TopUpRequest, _Mapping]] = ..., create_session: _Optional[_Union[CreateSessionRequest, _Mapping]] = ..., update_session: _Optional[_Union[UpdateSessionRequest, _Mapping]] = ..., release_session: _Optional[_Union[ReleaseSessionRequest, _Mapping]] = ...) -> None: ...

class ChargeResponse(_message.Message):
    __slots__ = ("correlation_tag", "reserve", "debit", "release", "refund", "top_up", "error", "session")
    CORRELATION_TAG_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    DEBIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    correlation_tag: int
    reserve: ReserveResponse
    debit: DebitResponse
    release: ReleaseResponse
    refund: RefundResponse
    top_up: TopUpResponse
    error: _status_pb2.Status
    session: SessionResponse
    def __init__(self, correlation_tag: _Optional[int] = ..., reserve: _Optional[_Union[ReserveResponse, _Mapping]] = ..., debit: _Optional[_Union[DebitResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., refund: _Optional[_Union[RefundResponse, _Mapping]] = ..., top_up: _Optional[_Union[TopUpResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., session: _Optional[_Union[SessionResponse, _Mapping]] = ...) -> None: ...

class CounterStatus(_message.Message):
    __slots__ = ("counter_id", "status", "value", "period_start_ms", "period_end_ms", "pending_status", "pending_activation_ms")
    COUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_MS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_STATUS_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTIVATION_MS_FIELD_NUMBER: _ClassVar[int]
    counter_id: str
    status: str
    value: int
    period_start_ms: int
    period_end_ms: int
    pending_status: str
    pending_activation_ms: int
    def __init__(self, counter_id: _Optional[str] = ..., status: _Optional[str] = ..., value: _Optional[int] = ..., period_start_ms: _Optional[int] = ..., period_end_ms: _Optional[int] = ..., pending_status: _Optional[str] = ..., pending_activation_ms: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "client_id", "counter_ids")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTER_IDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    client_id: str
    counter_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., client_id: _Optional[str] = ..., counter_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("result", "statuses", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    statuses: _containers.RepeatedCompositeFieldContainer[CounterStatus]
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., statuses: _Optional[_Iterable[_Union[CounterStatus, _Mapping]]] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "client_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    client_id: str
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class UnsubscribeResponse(_message.Message):
    __slots__ = ("result", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("client_id", "cursor")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    cursor: str
    def __init__(self, client_id: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class StatusNotification(_message.Message):
    __slots__ = ("subscriber_id", "status", "previous_status", "at_ms", "cause", "request_id", "trace_id", "cursor", "notifications_lost")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_LOST_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    status: CounterStatus
    previous_status: str
    at_ms: int
    cause: str
    request_id: str
    trace_id: str
    cursor: str
    notifications_lost: bool
    def __init__(self, subscriber_id: _Optional[str] = ..., status: _Optional[_Union[CounterStatus, _Mapping]] = ..., previous_status: _Optional[str] = ..., at_ms: _Optional[int] = ..., cause: _Optional[str] = ..., request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., cursor: _Optional[str] = ..., notifications_lost: _Optional[bool] = ...) -> None: ...

class GetCountersRequest(_message.Message):
    __slots__ = ("subscriber_id",)
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    def __init__(self, subscriber_id: _Optional[str] = ...) -> None: ...

class GetCountersResponse(_message.Message):
    __slots__ = ("result", "statuses")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    result: Result
    statuses: _containers.RepeatedCompositeFieldContainer[CounterStatus]
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., statuses: _Optional[_Iterable[_Union[CounterStatus, _Mapping]]] = ...) -> None: ...

class DelegateFromPoolRequest(_message.Message):
    __slots__ = ("request_id", "pool_id", "member_id", "amount_micros", "valid_until_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    pool_id: str
    member_id: str
    amount_micros: int
    valid_until_ms: int
    def __init__(self, request_id: _Optional[str] = ..., pool_id: _Optional[str] = ..., member_id: _Optional[str] = ..., amount_micros: _Optional[int] = ..., valid_until_ms: _Optional[int] = ...) -> None: ...

class ReclaimToPoolRequest(_message.Message):
    __slots__ = ("request_id", "pool_id", "member_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    pool_id: str
    member_id: str
    def __init__(self, request_id: _Optional[str] = ..., pool_id: _Optional[str] = ..., member_id: _Optional[str] = ...) -> None: ...

class PoolResponse(_message.Message):
    __slots__ = ("result", "amount_micros", "bucket_id", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_ID_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    amount_micros: int
    bucket_id: str
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., amount_micros: _Optional[int] = ..., bucket_id: _Optional[str] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GetBillingCycleRequest(_message.Message):
    __slots__ = ("subscriber_id", "at_ms")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    at_ms: int
    def __init__(self, subscriber_id: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class RatingGroupUsage(_message.Message):
    __slots__ = ("rating_group", "units", "charged_micros")
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_MICROS_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    units: int
    charged_micros: int
    def __init__(self, rating_group: _Optional[int] = ..., units: _Optional[int] = ..., charged_micros: _Optional[int] = ...) -> None: ...

class GetBillingCycleResponse(_message.Message):
    __slots__ = ("result", "period_start_ms", "period_end_ms", "charged_micros", "refunded_micros", "net_micros", "usage")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_MS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_MS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_MICROS_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MICROS_FIELD_NUMBER: _ClassVar[int]
    NET_MICROS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    result: Result
    period_start_ms: int
    period_end_ms: int
    charged_micros: int
    refunded_micros: int
    net_micros: int
    usage: _containers.RepeatedCompositeFieldContainer[RatingGroupUsage]
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., period_start_ms: _Optional[int] = ..., period_end_ms: _Optional[int] = ..., charged_micros: _Optional[int] = ..., refunded_micros: _Optional[int] = ..., net_micros: _Optional[int] = ..., usage: _Optional[_Iterable[_Union[RatingGroupUsage, _Mapping]]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "currency", "credit_limit_micros", "tariff_plan_id", "buckets")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    currency: str
    credit_limit_micros: int
    tariff_plan_id: str
    buckets: _containers.RepeatedCompositeFieldContainer[BucketGrant]
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., currency: _Optional[str] = ..., credit_limit_micros: _Optional[int] = ..., tariff_plan_id: _Optional[str] = ..., buckets: _Optional[_Iterable[_Union[BucketGrant, _Mapping]]] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("result", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("subscriber_id",)
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    def __init__(self, subscriber_id: _Optional[str] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "session_id", "rating_group", "granted_units", "used_units", "held_micros", "state", "granted_at_ms", "expires_at_ms", "tariff_version", "destination", "roaming_zone", "service_identifier")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    GRANTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    HELD_MICROS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    session_id: str
    rating_group: int
    granted_units: int
    used_units: int
    held_micros: int
    state: ReservationState
    granted_at_ms: int
    expires_at_ms: int
    tariff_version: int
    destination: str
    roaming_zone: str
    service_identifier: int
    def __init__(self, reservation_id: _Optional[str] = ..., session_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., granted_units: _Optional[int] = ..., used_units: _Optional[int] = ..., held_micros: _Optional[int] = ..., state: _Optional[_Union[ReservationState, str]] = ..., granted_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., tariff_version: _Optional[int] = ..., destination: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("subscriber_id", "currency", "state", "credit_limit_micros", "tariff_plan_id", "balance_micros", "reserved_micros", "available_micros")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MICROS_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    currency: str
    state: AccountState
    credit_limit_micros: int
    tariff_plan_id: str
    balance_micros: int
    reserved_micros: int
    available_micros: int
    def __init__(self, subscriber_id: _Optional[str] = ..., currency: _Optional[str] = ..., state: _Optional[_Union[AccountState, str]] = ..., credit_limit_micros: _Optional[int] = ..., tariff_plan_id: _Optional[str] = ..., balance_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ..., available_micros: _Optional[int] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("result", "account", "reservations", "buckets")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    account: Account
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., account: _Optional[_Union[Account, _Mapping]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ...) -> None: ...

class SetAccountStateRequest(_message.Message):
    __slots__ = ("request_id", "subscriber_id", "state")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subscriber_id: str
    state: AccountState
    def __init__(self, request_id: _Optional[str] = ..., subscriber_id: _Optional[str] = ..., state: _Optional[_Union[AccountState, str]] = ...) -> None: ...

class SetAccountStateResponse(_message.Message):
    __slots__ = ("result", "replayed", "trace_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    result: Result
    replayed: bool
    trace_id: str
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., replayed: _Optional[bool] = ..., trace_id: _Optional[str] = ...) -> None: ...

class RatingGroupRate(_message.Message):
    __slots__ = ("rating_group", "unit", "price_micros", "rate_units", "increment_units", "final_unit_action", "redirect_server_address", "destination_prefix", "time_band", "roaming_zone", "connect_fee_micros", "tiers", "minimum_charge_micros", "maximum_cost_micros", "cap_action", "volume_period", "service_identifier")
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    RATE_UNITS_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_UNITS_FIELD_NUMBER: _ClassVar[int]
    FINAL_UNIT_ACTION_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TIME_BAND_FIELD_NUMBER: _ClassVar[int]
    ROAMING_ZONE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FEE_MICROS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_CHARGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    CAP_ACTION_FIELD_NUMBER: _ClassVar[int]
    VOLUME_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    rating_group: int
    unit: Unit
    price_micros: int
    rate_units: int
    increment_units: int
    final_unit_action: FinalUnitAction
    redirect_server_address: str
    destination_prefix: str
    time_band: str
    roaming_zone: str
    connect_fee_micros: int
    tiers: _containers.RepeatedCompositeFieldContainer[RateTier]
    minimum_charge_micros: int
    maximum_cost_micros: int
    cap_action: CapAction
    volume_period: CounterPeriod
    service_identifier: int
    def __init__(self, rating_group: _Optional[int] = ..., unit: _Optional[_Union[Unit, str]] = ..., price_micros: _Optional[int] = ..., rate_units: _Optional[int] = ..., increment_units: _Optional[int] = ..., final_unit_action: _Optional[_Union[FinalUnitAction, str]] = ..., redirect_server_address: _Optional[str] = ..., destination_prefix: _Optional[str] = ..., time_band: _Optional[str] = ..., roaming_zone: _Optional[str] = ..., connect_fee_micros: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[RateTier, _Mapping]]] = ..., minimum_charge_micros: _Optional[int] = ..., maximum_cost_micros: _Optional[int] = ..., cap_action: _Optional[_Union[CapAction, str]] = ..., volume_period: _Optional[_Union[CounterPeriod, str]] = ..., service_identifier: _Optional[int] = ...) -> None: ...

class RateTier(_message.Message):
    __slots__ = ("from_units", "price_micros", "rate_units", "increment_units")
    FROM_UNITS_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    RATE_UNITS_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_UNITS_FIELD_NUMBER: _ClassVar[int]
    from_units: int
    price_micros: int
    rate_units: int
    increment_units: int
    def __init__(self, from_units: _Optional[int] = ..., price_micros: _Optional[int] = ..., rate_units: _Optional[int] = ..., increment_units: _Optional[int] = ...) -> None: ...

class TimeBand(_message.Message):
    __slots__ = ("name", "days", "from_minute", "to_minute")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    FROM_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TO_MINUTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    days: _containers.RepeatedScalarFieldContainer[int]
    from_minute: int
    to_minute: int
    def __init__(self, name: _Optional[str] = ..., days: _Optional[_Iterable[int]] = ..., from_minute: _Optional[int] = ..., to_minute: _Optional[int] = ...) -> None: ...

class TariffPlan(_message.Message):
    __slots__ = ("tariff_plan_id", "rates", "version", "policy_counters", "controls", "effective_from_ms", "time_zone", "time_bands", "holidays", "rounding", "description")
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    TIME_BANDS_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    tariff_plan_id: str
    rates: _containers.RepeatedCompositeFieldContainer[RatingGroupRate]
    version: int
    policy_counters: _containers.RepeatedCompositeFieldContainer[PolicyCounter]
    controls: _containers.RepeatedCompositeFieldContainer[PlanControl]
    effective_from_ms: int
    time_zone: str
    time_bands: _containers.RepeatedCompositeFieldContainer[TimeBand]
    holidays: _containers.RepeatedScalarFieldContainer[str]
    rounding: Rounding
    description: str
    def __init__(self, tariff_plan_id: _Optional[str] = ..., rates: _Optional[_Iterable[_Union[RatingGroupRate, _Mapping]]] = ..., version: _Optional[int] = ..., policy_counters: _Optional[_Iterable[_Union[PolicyCounter, _Mapping]]] = ..., controls: _Optional[_Iterable[_Union[PlanControl, _Mapping]]] = ..., effective_from_ms: _Optional[int] = ..., time_zone: _Optional[str] = ..., time_bands: _Optional[_Iterable[_Union[TimeBand, _Mapping]]] = ..., holidays: _Optional[_Iterable[str]] = ..., rounding: _Optional[_Union[Rounding, str]] = ..., description: _Optional[str] = ...) -> None: ...

class PutTariffRequest(_message.Message):
    __slots__ = ("tariff_plan_id", "rates", "policy_counters", "controls", "effective_from_ms", "time_zone", "time_bands", "holidays", "rounding", "description")
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    POLICY_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    TIME_BANDS_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    tariff_plan_id: str
    rates: _containers.RepeatedCompositeFieldContainer[RatingGroupRate]
    policy_counters: _containers.RepeatedCompositeFieldContainer[PolicyCounter]
    controls: _containers.RepeatedCompositeFieldContainer[PlanControl]
    effective_from_ms: int
    time_zone: str
    time_bands: _containers.RepeatedCompositeFieldContainer[TimeBand]
    holidays: _containers.RepeatedScalarFieldContainer[str]
    rounding: Rounding
    description: str
    def __init__(self, tariff_plan_id: _Optional[str] = ..., rates: _Optional[_Iterable[_Union[RatingGroupRate, _Mapping]]] = ..., policy_counters: _Optional[_Iterable[_Union[PolicyCounter, _Mapping]]] = ..., controls: _Optional[_Iterable[_Union[PlanControl, _Mapping]]] = ..., effective_from_ms: _Optional[int] = ..., time_zone: _Optional[str] = ..., time_bands: _Optional[_Iterable[_Union[TimeBand, _Mapping]]] = ..., holidays: _Optional[_Iterable[str]] = ..., rounding: _Optional[_Union[Rounding, str]] = ..., description: _Optional[str] = ...) -> None: ...

class PlanControl(_message.Message):
    __slots__ = ("control_id", "kind", "limit", "window_s", "action", "rating_groups")
    CONTROL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUPS_FIELD_NUMBER: _ClassVar[int]
    control_id: str
    kind: ControlKind
    limit: int
    window_s: int
    action: ControlAction
    rating_groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, control_id: _Optional[str] = ..., kind: _Optional[_Union[ControlKind, str]] = ..., limit: _Optional[int] = ..., window_s: _Optional[int] = ..., action: _Optional[_Union[ControlAction, str]] = ..., rating_groups: _Optional[_Iterable[int]] = ...) -> None: ...

class PolicyCounterThreshold(_message.Message):
    __slots__ = ("at_least", "status")
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    at_least: int
    status: str
    def __init__(self, at_least: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...

class PolicyCounter(_message.Message):
    __slots__ = ("counter_id", "rating_groups", "spend", "period", "base_status", "thresholds")
    COUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SPEND_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    BASE_STATUS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    counter_id: str
    rating_groups: _containers.RepeatedScalarFieldContainer[int]
    spend: bool
    period: CounterPeriod
    base_status: str
    thresholds: _containers.RepeatedCompositeFieldContainer[PolicyCounterThreshold]
    def __init__(self, counter_id: _Optional[str] = ..., rating_groups: _Optional[_Iterable[int]] = ..., spend: _Optional[bool] = ..., period: _Optional[_Union[CounterPeriod, str]] = ..., base_status: _Optional[str] = ..., thresholds: _Optional[_Iterable[_Union[PolicyCounterThreshold, _Mapping]]] = ...) -> None: ...

class PutTariffResponse(_message.Message):
    __slots__ = ("result", "version")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    result: Result
    version: int
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., version: _Optional[int] = ...) -> None: ...

class GetTariffRequest(_message.Message):
    __slots__ = ("tariff_plan_id", "version")
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tariff_plan_id: str
    version: int
    def __init__(self, tariff_plan_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class TariffVersion(_message.Message):
    __slots__ = ("version", "effective_from_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    effective_from_ms: int
    def __init__(self, version: _Optional[int] = ..., effective_from_ms: _Optional[int] = ...) -> None: ...

class GetTariffResponse(_message.Message):
    __slots__ = ("result", "plan", "versions")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    result: Result
    plan: TariffPlan
    versions: _containers.RepeatedCompositeFieldContainer[TariffVersion]
    def __init__(self, result: _Optional[_Union[Result, str]] = ..., plan: _Optional[_Union[TariffPlan, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[TariffVersion, _Mapping]]] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditResponse(_message.Message):
    __slots__ = ("ok", "report_json")
    OK_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    report_json: str
    def __init__(self, ok: _Optional[bool] = ..., report_json: _Optional[str] = ...) -> None: ...

class Cdr(_message.Message):
    __slots__ = ("cdr_id", "shard_id", "sequence", "at_ms", "kind", "subscriber_id", "request_id", "charge_id", "reservation_id", "session_id", "rating_group", "units", "amount_micros", "rounding_residue_picos", "tariff_plan_id", "tariff_version", "late", "overage_micros", "trace_id", "span_id", "tenant", "bucket_units", "bucket_micros", "bucket_draws")
    CDR_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_RESIDUE_PICOS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_DRAWS_FIELD_NUMBER: _ClassVar[int]
    cdr_id: str
    shard_id: int
    sequence: int
    at_ms: int
    kind: CdrKind
    subscriber_id: str
    request_id: str
    charge_id: str
    reservation_id: str
    session_id: str
    rating_group: int
    units: int
    amount_micros: int
    rounding_residue_picos: int
    tariff_plan_id: str
    tariff_version: int
    late: bool
    overage_micros: int
    trace_id: str
    span_id: str
    tenant: str
    bucket_units: int
    bucket_micros: int
    bucket_draws: _containers.RepeatedCompositeFieldContainer[BucketDraw]
    def __init__(self, cdr_id: _Optional[str] = ..., shard_id: _Optional[int] = ..., sequence: _Optional[int] = ..., at_ms: _Optional[int] = ..., kind: _Optional[_Union[CdrKind, str]] = ..., subscriber_id: _Optional[str] = ..., request_id: _Optional[str] = ..., charge_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., session_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., units: _Optional[int] = ..., amount_micros: _Optional[int] = ..., rounding_residue_picos: _Optional[int] = ..., tariff_plan_id: _Optional[str] = ..., tariff_version: _Optional[int] = ..., late: _Optional[bool] = ..., overage_micros: _Optional[int] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., tenant: _Optional[str] = ..., bucket_units: _Optional[int] = ..., bucket_micros: _Optional[int] = ..., bucket_draws: _Optional[_Iterable[_Union[BucketDraw, _Mapping]]] = ...) -> None: ...

class BucketDraw(_message.Message):
    __slots__ = ("bucket_id", "amount")
    BUCKET_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    bucket_id: str
    amount: int
    def __init__(self, bucket_id: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class ExportCdrsRequest(_message.Message):
    __slots__ = ("cursor", "limit")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    limit: int
    def __init__(self, cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ExportCdrsResponse(_message.Message):
    __slots__ = ("cdrs", "next_cursor", "more")
    CDRS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    cdrs: _containers.RepeatedCompositeFieldContainer[Cdr]
    next_cursor: str
    more: bool
    def __init__(self, cdrs: _Optional[_Iterable[_Union[Cdr, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., more: _Optional[bool] = ...) -> None: ...

class DisputeRequest(_message.Message):
    __slots__ = ("subscriber_id", "request_id", "charge_id", "from_ms", "to_ms", "limit")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    request_id: str
    charge_id: str
    from_ms: int
    to_ms: int
    limit: int
    def __init__(self, subscriber_id: _Optional[str] = ..., request_id: _Optional[str] = ..., charge_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class DisputeEvent(_message.Message):
    __slots__ = ("sequence", "at_ms", "kind", "result", "request_id", "reference_id", "reservation_id", "session_id", "rating_group", "units", "amount_micros", "balance_before_micros", "balance_after_micros", "reserved_before_micros", "reserved_after_micros", "rounding_residue_picos", "tariff_plan_id", "tariff_version", "late", "overage_micros", "trace_id", "span_id", "trace_url", "depth", "parent_sequence", "shard_id", "status", "bucket_units", "bucket_micros", "bucket_draws")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_GROUP_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_BEFORE_MICROS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_BEFORE_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_AFTER_MICROS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_RESIDUE_PICOS_FIELD_NUMBER: _ClassVar[int]
    TARIFF_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TARIFF_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MICROS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_URL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PARENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_UNITS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MICROS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_DRAWS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    at_ms: int
    kind: JournalKind
    result: Result
    request_id: str
    reference_id: str
    reservation_id: str
    session_id: str
    rating_group: int
    units: int
    amount_micros: int
    balance_before_micros: int
    balance_after_micros: int
    reserved_before_micros: int
    reserved_after_micros: int
    rounding_residue_picos: int
    tariff_plan_id: str
    tariff_version: int
    late: bool
    overage_micros: int
    trace_id: str
    span_id: str
    trace_url: str
    depth: int
    parent_sequence: int
    shard_id: int
    status: str
    bucket_units: int
    bucket_micros: int
    bucket_draws: _containers.RepeatedCompositeFieldContainer[BucketDraw]
    def __init__(self, sequence: _Optional[int] = ..., at_ms: _Optional[int] = ..., kind: _Optional[_Union[JournalKind, str]] = ..., result: _Optional[_Union[Result, str]] = ..., request_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., session_id: _Optional[str] = ..., rating_group: _Optional[int] = ..., units: _Optional[int] = ..., amount_micros: _Optional[int] = ..., balance_before_micros: _Optional[int] = ..., balance_after_micros: _Optional[int] = ..., reserved_before_micros: _Optional[int] = ..., reserved_after_micros: _Optional[int] = ..., rounding_residue_picos: _Optional[int] = ..., tariff_plan_id: _Optional[str] = ..., tariff_version: _Optional[int] = ..., late: _Optional[bool] = ..., overage_micros: _Optional[int] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., trace_url: _Optional[str] = ..., depth: _Optional[int] = ..., parent_sequence: _Optional[int] = ..., shard_id: _Optional[int] = ..., status: _Optional[str] = ..., bucket_units: _Optional[int] = ..., bucket_micros: _Optional[int] = ..., bucket_draws: _Optional[_Iterable[_Union[BucketDraw, _Mapping]]] = ...) -> None: ...

class DisputeResponse(_message.Message):
    __slots__ = ("events", "truncated")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DisputeEvent]
    truncated: bool
    def __init__(self, events: _Optional[_Iterable[_Union[DisputeEvent, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ShardPosition(_message.Message):
    __slots__ = ("shard_id", "epoch", "journal_sequence")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    epoch: int
    journal_sequence: int
    def __init__(self, shard_id: _Optional[int] = ..., epoch: _Optional[int] = ..., journal_sequence: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("snapshot_id", "created_at_ms", "label", "shards", "path")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    created_at_ms: int
    label: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardPosition]
    path: str
    def __init__(self, snapshot_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., label: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardPosition, _Mapping]]] = ..., path: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: str
    def __init__(self, label: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("snapshot_id", "target_data_dir")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    target_data_dir: str
    def __init__(self, snapshot_id: _Optional[str] = ..., target_data_dir: _Optional[str] = ...) -> None: ...

class RestoreSnapshotResponse(_message.Message):
    __slots__ = ("snapshot", "target_data_dir")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    target_data_dir: str
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., target_data_dir: _Optional[str] = ...) -> None: ...
