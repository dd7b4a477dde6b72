"""Enumerations shared by the core and the wire: results, states, units, errors.

The numbers equal the proto enums of charging.v1 and are never reused
(a test holds the two in step).
"""

import enum


class Result(enum.IntEnum):
    """Business outcome of an operation (an outcome is data, not an exception)."""

    RESULT_UNSPECIFIED = 0
    SUCCESS = 1  # Diameter 2001
    CREDIT_LIMIT_REACHED = 2  # 4012
    USER_UNKNOWN = 3  # 5030
    RATING_FAILED = 4  # 5031
    END_USER_SERVICE_DENIED = 5  # 4010
    RESERVATION_NOT_FOUND = 6  # 5002
    RESERVATION_ALREADY_RESOLVED = 7  # 5002
    RESERVATION_EXPIRED = 8  # 4011
    CHARGE_NOT_FOUND = 9  # 5003
    REFUND_EXCEEDS_CHARGE = 10  # 5003
    ACCOUNT_ALREADY_EXISTS = 11  # 5012
    TARIFF_PLAN_UNKNOWN = 12  # 5012
    BALANCE_LIMIT_EXCEEDED = 13  # 5012
    TOO_MANY_RESERVATIONS = 14  # 5012
    SESSION_NOT_FOUND = 15  # 5002
    SESSION_ALREADY_RELEASED = 16  # 5002
    TOO_MANY_SESSIONS = 17  # 5012
    COUNTER_UNKNOWN = 18  # 5012


# Diameter Result-Code of each outcome (RFC 4006 section 9, RFC 6733 7.1).
DIAMETER_RESULT_CODE = {
    Result.SUCCESS: 2001,
    Result.CREDIT_LIMIT_REACHED: 4012,
    Result.USER_UNKNOWN: 5030,
    Result.RATING_FAILED: 5031,
    Result.END_USER_SERVICE_DENIED: 4010,
    Result.RESERVATION_NOT_FOUND: 5002,
    Result.RESERVATION_ALREADY_RESOLVED: 5002,
    Result.RESERVATION_EXPIRED: 4011,
    Result.CHARGE_NOT_FOUND: 5003,
    Result.REFUND_EXCEEDS_CHARGE: 5003,
    Result.ACCOUNT_ALREADY_EXISTS: 5012,
    Result.TARIFF_PLAN_UNKNOWN: 5012,
    Result.BALANCE_LIMIT_EXCEEDED: 5012,
    Result.TOO_MANY_RESERVATIONS: 5012,
    Result.SESSION_NOT_FOUND: 5002,
    Result.SESSION_ALREADY_RELEASED: 5002,
    Result.TOO_MANY_SESSIONS: 5012,
    Result.COUNTER_UNKNOWN: 5012,
}


class Unit(enum.IntEnum):
    UNIT_UNSPECIFIED = 0
    SECONDS = 1
    BYTES = 2
    EVENTS = 3


class BucketUnit(enum.IntEnum):
    """What a bucket holds: money (a sub-balance, micros) or units of usage."""

    BUCKET_UNIT_UNSPECIFIED = 0
    MONEY = 1
    SECONDS = 2
    BYTES = 3
    EVENTS = 4


class AccountState(enum.IntEnum):
    ACCOUNT_STATE_UNSPECIFIED = 0
    ACTIVE = 1
    SUSPENDED = 2
    CLOSED = 3


class ReservationState(enum.IntEnum):
    RESERVATION_STATE_UNSPECIFIED = 0
    ACTIVE = 1
    COMMITTED = 2
    RELEASED = 3
    EXPIRED = 4
    # A session update's new grant took the hold's place (TS 32.299 6.3.8).
    REPLACED = 5


class SessionState(enum.IntEnum):
    SESSION_STATE_UNSPECIFIED = 0
    SESSION_STATE_ACTIVE = 1
    SESSION_STATE_RELEASED = 2
    # Closed by the grid: no update within the supervision time (RFC 4006 Tcc).
    SESSION_STATE_ABNORMALLY_RELEASED = 3


class FinalUnitAction(enum.IntEnum):
    """What the network function does when the final granted units are used
    (RFC 4006 Final-Unit-Action; 0 = these are not the final units)."""

    FINAL_UNIT_ACTION_UNSPECIFIED = 0
    TERMINATE = 1
    REDIRECT = 2
    RESTRICT_ACCESS = 3


class NotificationType(enum.IntEnum):
    NOTIFICATION_TYPE_UNSPECIFIED = 0
    # Ask for quota again now (Diameter RAR, Nchf re-authorization).
    REAUTHORIZATION = 1
    # Stop the session and report its final usage (Diameter ASR, Nchf abort).
    ABORT_CHARGING = 2
    # Something the network function may want to act on (a control fired).
    ALERT = 3


class NotificationReason(enum.IntEnum):
    NOTIFICATION_REASON_UNSPECIFIED = 0
    TOP_UP = 1
    TARIFF_CHANGED = 2
    ACCOUNT_SUSPENDED = 3
    ACCOUNT_CLOSED = 4
    ACCOUNT_REACTIVATED = 5
    # A fraud or policy control of the plan fired (its action says what follows).
    CONTROL_FIRED = 6


class ErrorCode(enum.IntEnum):
    """Caller errors the core can answer; the shells map them to gRPC codes.

    Values equal grpc.StatusCode numbers (google.rpc.Code).
    """

    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    UNAVAILABLE = 14


class JournalKind(enum.IntEnum):
    """What a journal record tells: one kind per effect (or denial)."""

    ACCOUNT_CREATED = 1
    TOP_UP = 2
    RESERVE = 3
    DEBIT = 4
    RELEASE = 5
    REFUND = 6
    EXPIRE = 7
    ACCOUNT_STATE = 8
    TARIFF = 9
    SESSION_OPENED = 10
    SESSION_RELEASED = 11
    # Closed by supervision: no update within the supervision time.
    SESSION_SUPERVISED = 12
    # A policy counter's status changed (reference_id: the counter; status: the new one).
    POLICY_STATUS = 13
    SUBSCRIBED = 14
    UNSUBSCRIBED = 15
    # A fraud or policy control fired (reference_id: the control; status: its action).
    CONTROL_HIT = 16
    # A bucket was added (reference_id: the bucket; units: its amount).
    BUCKET_ADDED = 17
    # The account left this shard with its slot (amount: its balance), or arrived.
    SLOT_MOVED_OUT = 18
    SLOT_MOVED_IN = 19
    # Money left (amount: from the balance) or reached an account through a pooled
    # balance's delegation (reference_id: the other account; bucket_draws: a sub-quota bucket).
    POOL_OUT = 20
    POOL_IN = 21


class ControlKind(enum.IntEnum):
    CONTROL_KIND_UNSPECIFIED = 0
    # Money charged within window_s reaches limit.
    SPEND_VELOCITY = 1
    # Units of rating_groups used within window_s reach limit.
    USAGE_VELOCITY = 2
    # A charge takes the available money below limit.
    LOW_BALANCE = 3
    # Opening a session would make more than limit active sessions.
    CONCURRENT_SESSIONS = 4


class ControlAction(enum.IntEnum):
    CONTROL_ACTION_UNSPECIFIED = 0
    NOTIFY = 1
    # No new grant (reserve, session quota, new session) for window_s.
    DENY_GRANTS = 2
    SUSPEND = 3
    REAUTHORIZE = 4


class CounterPeriod(enum.IntEnum):
    COUNTER_PERIOD_UNSPECIFIED = 0
    COUNTER_PERIOD_DAY = 1
    COUNTER_PERIOD_WEEK = 2
    COUNTER_PERIOD_MONTH = 3
