"""The explicit, versioned record codec (never pickle).

A stored value is: one byte of codec version, the record as msgpack, and a
CRC-32 of both (big-endian), so a flipped byte is detected on read. A record
is a msgpack extension whose type code names the record class (a fixed table:
codes are never reused) and whose body lists the dataclass fields in order.
Enum fields are stored as their integer and restored from the annotations.
"""

import dataclasses
import enum
import operator
import struct
import threading
import typing
import zlib

import msgpack

from grid.domain import operations as ops
from grid.domain import rating, records

CODEC_VERSION = 1
_CRC = struct.Struct(">I")

# Type codes are part of the storage format: add, never renumber or reuse.
TYPE_CODES: dict[type, int] = {
    records.Account: 1,
    records.Reservation: 2,
    records.Charge: 3,
    records.IdempotencyRecord: 4,
    records.JournalRecord: 5,
    records.ShardMeta: 6,
    rating.TariffPlan: 7,
    rating.Rate: 8,
    ops.CreateAccount: 20,
    ops.SetAccountState: 21,
    ops.TopUp: 22,
    ops.Reserve: 23,
    ops.Debit: 24,
    ops.Release: 25,
    ops.Refund: 26,
    ops.CreateAccountReply: 40,
    ops.SetAccountStateReply: 41,
    ops.TopUpReply: 42,
    ops.ReserveReply: 43,
    ops.DebitReply: 44,
    ops.ReleaseReply: 45,
    ops.RefundReply: 46,
    # Carried between the front door and the shards only (never stored):
    ops.PutTariff: 27,
    ops.GetBalance: 28,
    ops.GetAccount: 29,
    ops.GetTransaction: 30,
    ops.GetTariff: 31,
    ops.PutTariffReply: 47,
    ops.BalanceReply: 48,
    ops.AccountReply: 49,
    ops.TransactionReply: 50,
    ops.TariffReply: 51,
    ops.ReservationView: 52,
    ops.Rejection: 53,
    # Sessions (stored: records, requests and replies inside idempotency records).
    records.Session: 9,
    records.Notification: 10,
    ops.UnitUsage: 32,
    ops.CreateSession: 33,
    ops.UpdateSession: 34,
    ops.ReleaseSession: 35,
    ops.UnitInformation: 54,
    ops.SessionReply: 55,
    # Carried only:
    ops.GetSession: 36,
    ops.ReadNotifications: 37,
    ops.SessionInfoReply: 56,
    ops.NotificationsReply: 57,
    # Policy counters.
    records.CounterState: 11,
    records.Subscription: 12,
    rating.PolicyCounter: 13,
    rating.CounterThreshold: 14,
    ops.Subscribe: 38,
    ops.Unsubscribe: 39,
    ops.SubscribeReply: 58,
    ops.UnsubscribeReply: 59,
    ops.CounterStatusView: 60,
    ops.GetCounters: 61,
    ops.CountersReply: 62,
    records.NotificationFloor: 15,
    records.ControlState: 16,
    rating.Control: 17,
    records.BillingCycle: 18,
    ops.GetBillingCycle: 63,
    ops.BillingCycleReply: 64,
    # The rating engine.
    records.VolumeCounter: 19,
    rating.Tier: 65,
    rating.TimeBand: 66,
    ops.Quote: 67,
    ops.QuoteReply: 68,
    records.Bucket: 69,
    ops.BucketGrant: 70,
    # Slot moves (carried only).
    ops.ExportSlots: 71,
    ops.ImportSlots: 72,
    ops.DropSlots: 73,
    ops.SlotsReply: 74,
    ops.SlotMoved: 75,
    # Pooled balances (stored inside idempotency records).
    ops.PoolTake: 76,
    ops.PoolGive: 77,
    ops.PoolReclaim: 78,
    ops.PoolReply: 79,
}
_CLASSES = {code: cls for cls, code in TYPE_CODES.items()}
assert len(_CLASSES) == len(TYPE_CODES), "type codes must be unique"
assert 127 not in _CLASSES, "127 holds integers wider than 64 bits"


class CorruptRecord(Exception):
    """A stored value failed its checksum or could not be decoded: never applied."""


def _enum_fields(cls) -> list[tuple[int, type]]:
    hints = typing.get_type_hints(cls)
    return [
        (index, hints[field.name])
        for index, field in enumerate(dataclasses.fields(cls))
        if isinstance(hints[field.name], type) and issubclass(hints[field.name], enum.Enum)
    ]


_ENUMS = {cls: _enum_fields(cls) for cls in TYPE_CODES}


# Per class: its type code and a getter returning its fields in order (hot path: no
# dataclasses.fields() per record).
def _fields_getter(cls):
    names = [field.name for field in dataclasses.fields(cls)]
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        return lambda value: (getattr(value, names[0]),)
    return operator.attrgetter(*names)


_ENCODERS = {cls: (code, _fields_getter(cls)) for cls, code in TYPE_CODES.items()}


# Integers wider than msgpack's 64 bits (the exact cost fractions of a hold or a
# session can be): an extension holding their decimal digits. Not a record code.
_BIG_INT = 127
_BIG_INT_DIGITS_MAX = 400


def _default(value):
    if type(value) is int:
        return msgpack.ExtType(_BIG_INT, str(value).encode())
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise TypeError(f"no codec for {type(value).__name__}")
    code, fields = encoder
    return msgpack.ExtType(code, msgpack.packb(fields(value), default=_default, use_bin_type=True))


# Records nest a few levels (an idempotency record's reply's unit informations);
# each level is a recursive msgpack.unpackb with tens of KiB of C stack, so a
# hostile value nested a few hundred deep would overflow the C stack (SIGSEGV)
# before Python's recursion limit. Deeper than this is corrupt.
_NESTING_MAX = 32
_nesting = threading.local()


def _ext_hook(code: int, data: bytes):
    if code == _BIG_INT:
        if len(data) > _BIG_INT_DIGITS_MAX:
            raise CorruptRecord("an integer longer than any the grid writes")
        return int(data.decode("ascii"))
    cls = _CLASSES.get(code)
    if cls is None:
        raise CorruptRecord(f"unknown record type code {code}")
    depth = getattr(_nesting, "depth", 0)
    if depth >= _NESTING_MAX:
        raise CorruptRecord(f"records nested deeper than {_NESTING_MAX}")
    _nesting.depth = depth + 1
    try:
        values = list(msgpack.unpackb(data, ext_hook=_ext_hook, use_list=False, raw=False))
    finally:
        _nesting.depth = depth
    for index, enum_class in _ENUMS[cls]:
        values[index] = enum_class(values[index])
    return cls(*values)


def encode(record) -> bytes:
    body = bytes([CODEC_VERSION]) + msgpack.packb(record, default=_default, use_bin_type=True)
    return body + _CRC.pack(zlib.crc32(body))


def decode(value: bytes):
    if len(value) < 1 + _CRC.size:
        raise CorruptRecord("value too short")
    body, checksum = value[: -_CRC.size], value[-_CRC.size:]
    if _CRC.unpack(checksum)[0] != zlib.crc32(body):
        raise CorruptRecord("checksum mismatch")
    if body[0] != CODEC_VERSION:
        raise CorruptRecord(f"unknown codec version {body[0]}")
    try:
        record = msgpack.unpackb(body[1:], ext_hook=_ext_hook, use_list=False, raw=False)
    except CorruptRecord:
        raise
    except Exception as error:  # a checksum collision or a codec bug: never apply it
        raise CorruptRecord(f"undecodable record: {error}") from error
    if type(record) not in _ENCODERS:  # valid msgpack, but not a record: as corrupt
        raise CorruptRecord(f"a stored value decoded to {type(record).__name__}, not a record")
    return record


def pack_batch(items: list) -> bytes:
    """Operations or replies as one bytes payload: a frame of the data plane's
    stream (grid.dataplane.frames) or a control-plane Ray call, far cheaper to
    carry than Python objects pickled."""
    return bytes([CODEC_VERSION]) + msgpack.packb(items, default=_default, use_bin_type=True)


def unpack_batch(payload: bytes) -> list:
    if not payload or payload[0] != CODEC_VERSION:
        raise CorruptRecord("batch of an unknown codec version")
    try:
        items = msgpack.unpackb(payload[1:], ext_hook=_ext_hook, use_list=False, raw=False)
    except CorruptRecord:
        raise
    except Exception as error:  # never half-understood operations or replies
        raise CorruptRecord(f"undecodable batch: {type(error).__name__}: {error}") from error
    if not isinstance(items, tuple):
        raise CorruptRecord(f"a batch decoded to {type(items).__name__}, not a list")
    return list(items)


# ---------------------------------------------------------------- keys
# One RocksDB per shard; the first byte of a key names the record family.

ACCOUNT, RESERVATION, CHARGE, IDEMPOTENCY, JOURNAL, META, TARIFF = b"a", b"r", b"c", b"i", b"j", b"m", b"t"
SESSION, NOTIFICATION = b"s", b"n"
COUNTER, SUBSCRIPTION, NOTIFICATION_FLOOR, CONTROL, BILLING_CYCLE = b"p", b"u", b"f", b"v", b"b"
VOLUME = b"w"
# Index of each subscriber's journal records (empty values): disputes by subscriber.
SUBSCRIBER_JOURNAL = b"x"
_SEPARATOR = b"\x00"  # ids are printable, so NUL never occurs inside one
_SEQUENCE = struct.Struct(">Q")


def idempotency_key(key: tuple[str, str, str]) -> bytes:
    return IDEMPOTENCY + _SEPARATOR.join(part.encode() for part in key)


def journal_key(sequence: int) -> bytes:
    return JOURNAL + _SEQUENCE.pack(sequence)


def subscriber_journal_prefix(tenant: str, subscriber_id: str) -> bytes:
    return SUBSCRIBER_JOURNAL + tenant.encode() + _SEPARATOR + subscriber_id.encode() + _SEPARATOR


def subscriber_journal_key(record) -> bytes:
    return subscriber_journal_prefix(record.tenant, record.subscriber_id) + _SEQUENCE.pack(record.sequence)


def sequence_of_index_key(key: bytes) -> int:
    return _SEQUENCE.unpack(key[-_SEQUENCE.size:])[0]


def session_key(key: tuple[str, str, str]) -> bytes:
    return SESSION + _SEPARATOR.join(part.encode() for part in key)


def subscription_key(key: tuple[str, str, str]) -> bytes:
    return SUBSCRIPTION + _SEPARATOR.join(part.encode() for part in key)


def notification_key(sequence: int) -> bytes:
    return NOTIFICATION + _SEQUENCE.pack(sequence)


def key_of(record) -> bytes:
    if isinstance(record, records.Account):
        return ACCOUNT + record.tenant.encode() + _SEPARATOR + record.subscriber_id.encode()
    if isinstance(record, records.Reservation):
        return RESERVATION + record.reservation_id.encode()
    if isinstance(record, records.Charge):
        return CHARGE + record.charge_id.encode()
    if isinstance(record, records.IdempotencyRecord):
        return idempotency_key((record.tenant, record.subscriber_id, record.request_id))
    if isinstance(record, records.JournalRecord):
        return journal_key(record.sequence)
    if isinstance(record, records.ShardMeta):
        return META
    if isinstance(record, rating.TariffPlan):
        # One record per version. (Stores from before versions hold one plan
        # record under TARIFF + [tenant NUL] plan id; restore reads both forms.)
        return TARIFF + record.tenant.encode() + _SEPARATOR + record.tariff_plan_id.encode() + _SEPARATOR \
            + _SEQUENCE.pack(record.version)
    if isinstance(record, records.VolumeCounter):
        return VOLUME + record.tenant.encode() + _SEPARATOR + record.subscriber_id.encode() + _SEPARATOR \
            + _SEQUENCE.pack(record.rating_group)
    if isinstance(record, records.Session):
        return session_key(record.key)
    if isinstance(record, records.Notification):
        return notification_key(record.sequence)
    if isinstance(record, records.CounterState):
        return COUNTER + _SEPARATOR.join(part.encode() for part in record.key)
    if isinstance(record, records.Subscription):
        return subscription_key(record.key)
    if isinstance(record, records.BillingCycle):
        return BILLING_CYCLE + record.tenant.encode() + _SEPARATOR + record.subscriber_id.encode() + _SEPARATOR \
            + _SEQUENCE.pack(record.period_start_ms)
    if isinstance(record, records.ControlState):
        return CONTROL + _SEPARATOR.join(part.encode() for part in record.key)
    if isinstance(record, records.NotificationFloor):
        return NOTIFICATION_FLOOR + _SEPARATOR.join(part.encode() for part in record.key)
    raise TypeError(f"no key for {type(record).__name__}")
