"""Fuzzing the storage codec: whatever bytes it is handed, decode answers a record
or raises CorruptRecord, never anything else; every record kind round-trips.

Inputs: random bytes; random bodies framed with a valid CRC (so that they get
past the checksum into msgpack and the record table: a checksum collision or a
codec bug); real encodings of every record type in codec.TYPE_CODES (generated
from the dataclass annotations) with bits flipped, cut short, or extended,
with and without the CRC recomputed; nested and unknown extension types.
Batches (pack_batch / unpack_batch) likewise.

Fast (no Ray, no disk). The seed is fixed (derandomize) so that a run replays;
HYPOTHESIS_PROFILE-independent max_examples keep it to a few seconds.
"""

import dataclasses
import enum
import struct
import types
import typing
import zlib

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from grid.domain import operations as ops
from grid.domain import records
from grid.storage import codec

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- generated records

text = st.text(st.characters(codec="utf-8"), max_size=12)
# Everything msgpack can carry as an integer.
integers = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1]))

MUTATING_OPERATIONS = [ops.CreateAccount, ops.SetAccountState, ops.TopUp, ops.Reserve, ops.Debit, ops.Release,
                       ops.Refund, ops.CreateSession, ops.UpdateSession, ops.ReleaseSession, ops.Subscribe,
                       ops.Unsubscribe]
MUTATING_REPLIES = [ops.CreateAccountReply, ops.SetAccountStateReply, ops.TopUpReply, ops.ReserveReply,
                    ops.DebitReply, ops.ReleaseReply, ops.RefundReply, ops.SessionReply, ops.SubscribeReply,
                    ops.UnsubscribeReply]

_cache: dict = {}


def record_of(cls) -> st.SearchStrategy:
    """Instances of a codec record class, every field drawn from its annotation."""
    if cls not in _cache:
        _cache[cls] = st.deferred(lambda: _build(cls))
    return _cache[cls]


# Fields annotated `object` or bare `tuple`: what the core puts there.
_SPECIAL = {
    (records.IdempotencyRecord, "operation"): lambda: st.one_of(*[record_of(c) for c in MUTATING_OPERATIONS]),
    (records.IdempotencyRecord, "reply"): lambda: st.one_of(*[record_of(c) for c in MUTATING_REPLIES]),
    (ops.BillingCycleReply, "cycle"): lambda: st.one_of(st.none(), record_of(records.BillingCycle)),
    (ops.NotificationsReply, "notifications"): lambda: st.lists(record_of(records.Notification),
                                                                max_size=2).map(tuple),
    # A moving slot's records: whatever a subscriber owns.
    (ops.ImportSlots, "records"): lambda: st.lists(st.one_of(record_of(records.Account), record_of(records.Charge)),
                                                   max_size=2).map(tuple),
    (ops.SlotsReply, "records"): lambda: st.lists(st.one_of(record_of(records.Reservation),
                                                            record_of(records.VolumeCounter)), max_size=2).map(tuple),
}


def _build(cls) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        special = _SPECIAL.get((cls, field.name))
        fields[field.name] = special() if special else _for_type(hints[field.name])
    return st.builds(cls, **fields)


def _for_type(annotation) -> st.SearchStrategy:
    if annotation is str:
        return text
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return integers
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation in codec.TYPE_CODES:
        return record_of(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_for_type(args[0]), max_size=3).map(tuple)
        return st.tuples(*[_for_type(arg) for arg in args])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_for_type(arg) for arg in args])
    raise AssertionError(f"no strategy for {annotation!r}")


any_record = st.one_of(*[record_of(cls) for cls in codec.TYPE_CODES])


def _crc_framed(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def assert_same(decoded, original, where: str = "record") -> None:
    """Equal, and of the same types all the way down (an IntEnum equals its int, so == alone
    does not see an enum come back as a bare int)."""
    assert type(decoded) is type(original), f"{where}: {type(decoded).__name__} != {type(original).__name__}"
    if dataclasses.is_dataclass(original):
        for field in dataclasses.fields(original):
            assert_same(getattr(decoded, field.name), getattr(original, field.name), f"{where}.{field.name}")
    elif isinstance(original, (tuple, list)):
        assert len(decoded) == len(original), where
        for index, (a, b) in enumerate(zip(decoded, original)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert decoded == original, where


def _is_record(value) -> bool:
    return type(value) in codec.TYPE_CODES


def _decode_or_corrupt(value: bytes):
    """decode's whole contract: a value, or CorruptRecord (anything else propagates)."""
    try:
        return codec.decode(value)
    except codec.CorruptRecord:
        return None


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", list(codec.TYPE_CODES), ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_record_type_round_trips(cls, data):
    """Each of the codec's record types on its own (any_record below mixes them)."""
    record = data.draw(record_of(cls))
    assert_same(codec.decode(codec.encode(record)), record)
    assert_same(codec.unpack_batch(codec.pack_batch([record])), [record])


@FUZZ
@given(record=any_record)
def test_every_generated_record_round_trips(record):
    assert_same(codec.decode(codec.encode(record)), record)  # enums come back as enums, not bare ints


@FUZZ
@given(items=st.lists(any_record, max_size=4))
def test_every_generated_batch_round_trips(items):
    assert_same(codec.unpack_batch(codec.pack_batch(items)), items)


# ---------------------------------------------------------------- decode: only CorruptRecord


def _mutate(data: bytes, kind: str, positions: list, tail: bytes, cut: int) -> bytes:
    out = bytearray(data)
    if kind == "flip":
        for position, bit in positions:
            out[position % len(out)] ^= 1 << bit
    elif kind == "set":
        for position, bit in positions:
            out[position % len(out)] = (bit * 37) & 0xFF
    elif kind == "truncate":
        del out[cut % (len(out) + 1):]
    elif kind == "extend":
        out += tail
    elif kind == "insert":
        position = cut % (len(out) + 1)
        out[position:position] = tail
    elif kind == "delete":
        position = cut % max(1, len(out))
        del out[position:position + 1 + len(tail) % 8]
    return bytes(out)


mutation = st.tuples(
    st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=6),
    st.binary(min_size=1, max_size=24),
    st.integers(0, 10_000),
)


@FUZZ
@given(value=st.binary(max_size=256))
@example(b"")
@example(b"\x01\x00\x00\x00\x00")
@example(_crc_framed(b"\x01"))
@example(_crc_framed(b"\x02\xc0"))
def test_decode_of_random_bytes_raises_only_corrupt_record(value):
    _decode_or_corrupt(value)


def _ext(code: int, payload: bytes) -> bytes:
    """A msgpack extension by hand (msgpack.ExtType refuses the negative, reserved codes)."""
    if len(payload) < 256:
        return b"\xc7" + struct.pack(">Bb", len(payload), code) + payload
    if len(payload) < 65536:
        return b"\xc8" + struct.pack(">Hb", len(payload), code) + payload
    return b"\xc9" + struct.pack(">Ib", len(payload), code) + payload


# Bodies that get past the checksum: what a collision or a codec bug would hand msgpack.
_ext_bodies = st.builds(
    lambda code, payload: b"\x01" + _ext(code, payload),
    st.one_of(st.sampled_from(sorted(codec.TYPE_CODES.values())), st.integers(-128, 127)),
    st.one_of(st.binary(max_size=64), st.builds(msgpack.packb, st.lists(st.integers(-5, 300), max_size=25)),
              st.builds(lambda xs: msgpack.packb(tuple(xs), use_bin_type=True),
                        st.lists(st.one_of(integers, text, st.booleans(), st.none(), st.binary(max_size=4)),
                                 max_size=25))),
)


def _nested_ext(depth: int, code: int) -> bytes:
    payload = msgpack.packb([])
    for _ in range(depth):
        payload = _ext(code, payload)
    return b"\x01" + payload


@FUZZ
@given(body=st.one_of(st.binary(min_size=1, max_size=256).map(lambda b: b"\x01" + b), _ext_bodies))
@example(_nested_ext(100, codec.TYPE_CODES[records.ShardMeta]))  # deeper: the segfault below
@example(_nested_ext(100, -1))
@example(b"\x01" + msgpack.packb(msgpack.ExtType(codec.TYPE_CODES[records.Account], b"\x95\x01\x02\x03\x04\x05")))
def test_decode_of_checksummed_garbage_raises_only_corrupt_record(body):
    _decode_or_corrupt(_crc_framed(body))


@FUZZ
@given(record=any_record, mutate=mutation, reframe=st.booleans())
def test_decode_of_a_damaged_record_raises_only_corrupt_record(record, mutate, reframe):
    encoded = codec.encode(record)
    if reframe:  # damage the body, then give it a valid checksum
        damaged = _crc_framed(_mutate(encoded[:-4], *mutate) or b"\x01")
    else:
        damaged = _mutate(encoded, *mutate)
    decoded = _decode_or_corrupt(damaged)
    if not reframe and len(damaged) == len(encoded):
        # CRC-32 detects every error of 1 to 3 bits in values this short (Hamming distance 4).
        bits = sum(bin(a ^ b).count("1") for a, b in zip(damaged, encoded))
        assert not 1 <= bits <= 3 or decoded is None, f"{bits} flipped bits went undetected: {mutate}"


@FUZZ
@given(body=st.one_of(st.binary(min_size=1, max_size=64).map(lambda b: b"\x01" + b), _ext_bodies))
@example(b"\x01" + msgpack.packb(5))
def test_decode_answers_a_record_or_corrupt_record(body):
    decoded = _decode_or_corrupt(_crc_framed(body))
    assert decoded is None or _is_record(decoded), f"decode returned {decoded!r} for body {body!r}"


# Depth 200 of nested extensions overflowed an 8 MiB C stack (measured: 190 passed, 200
# segfaulted) until 07c880d bounded the nesting; the shard actor's worker thread has no more.
_SEGFAULT_SCRIPT = r"""
import struct, sys, zlib
import msgpack
from grid.domain import records
from grid.storage import codec

depth, function = int(sys.argv[1]), sys.argv[2]
code = codec.TYPE_CODES[records.ShardMeta]
payload = msgpack.packb([])
for _ in range(depth):  # ext 8 / ext 16 by hand: <format> <length> <type code> <payload>
    header = struct.pack(">BBb", 0xc7, len(payload), code) if len(payload) < 256 else \
        struct.pack(">BHb", 0xc8, len(payload), code)
    payload = header + payload
body = b"\x01" + payload
try:
    if function == "decode":
        codec.decode(body + struct.pack(">I", zlib.crc32(body)))
    else:
        codec.unpack_batch(body)
except codec.CorruptRecord:
    print("CorruptRecord")
"""


@pytest.mark.parametrize("function", ["decode", "unpack_batch"])
def test_deeply_nested_extensions_are_corrupt_records_not_a_segfault(function):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _SEGFAULT_SCRIPT, "200", function],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the interpreter died: return code {run.returncode}"
    assert run.stdout.strip() == "CorruptRecord"


# ---------------------------------------------------------------- unpack_batch


def _unpack_or_corrupt(payload: bytes):
    try:
        return codec.unpack_batch(payload)
    except codec.CorruptRecord:
        return None


batch_payloads = st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=256).map(lambda b: b"\x01" + b),
    _ext_bodies,
    st.builds(lambda items, mutate: _mutate(codec.pack_batch(items), *mutate),
              st.lists(any_record, min_size=1, max_size=3), mutation),
)


@FUZZ
@given(payload=batch_payloads)
def test_unpack_batch_of_hostile_bytes_returns_a_list_or_raises_an_exception(payload):
    """The floor: no interpreter crash, nothing outside Exception, a list when it returns."""
    try:
        result = codec.unpack_batch(payload)
    except Exception:  # noqa: BLE001 - test_unpack_batch_raises_only_corrupt_record says which
        return
    assert isinstance(result, list)


@FUZZ
@given(payload=batch_payloads)
@example(b"\x01")
@example(b"\x01\xc1")
@example(b"\x01\x05")
def test_unpack_batch_raises_only_corrupt_record(payload):
    _unpack_or_corrupt(payload)


UNPACK_BATCH_REPRODUCERS = [
    pytest.param(b"\x01", id="incomplete-ValueError"),
    pytest.param(b"\x01\xc1", id="reserved-byte-FormatError"),
    pytest.param(b"\x01\x05", id="not-a-list-TypeError"),
    pytest.param(b"\x01\x91" + msgpack.packb(msgpack.ExtType(codec.TYPE_CODES[records.ShardMeta], msgpack.packb(5))),
                 id="record-body-not-a-list-TypeError"),
    pytest.param(_nested_ext(100, codec.TYPE_CODES[records.Session]), id="nested-100-TypeError"),
    # Found by load_tests/fuzz_codec_atheris.py: a Reserve extension whose body has too few fields.
    pytest.param(b"\x01\xc7\x06\x02\x95\x03Y\n\x0b\x0c", id="short-record-IndexError"),
    pytest.param(b"\x01\xa3\xa3\xa3\xa3", id="bad-utf8-UnicodeDecodeError"),
]


@pytest.mark.parametrize("payload", UNPACK_BATCH_REPRODUCERS)
def test_unpack_batch_reproducer_raises_corrupt_record(payload):
    with pytest.raises(codec.CorruptRecord):
        codec.unpack_batch(payload)


@pytest.mark.parametrize("payload", UNPACK_BATCH_REPRODUCERS)
def test_decode_of_the_same_bodies_checksummed_raises_nothing_but_corrupt_record(payload):
    _decode_or_corrupt(_crc_framed(payload))
