"""The internal stream's wire format: frames of operations packed by the codec.

A frame is [sequence, trace context or None, operation...] and its reply
[sequence, the shard's newest notification sequence, reply...], each one
codec batch (msgpack of the same record classes the journal stores: no
pickle, no protobuf on this hop). The sequence pairs a reply with its frame.
"""

from grid.dataplane.group_commit import Frame
from grid.storage import codec

SERVICE = "grid.dataplane.v1.Shard"
METHOD = "Apply"
PATH = f"/{SERVICE}/{METHOD}"
# Metadata carrying the shard incarnation's token (handed out over Ray only).
TOKEN_HEADER = "x-grid-shard-token"
# The TLS name of a shard's internal listener (its certificate is self-signed and pinned).
INTERNAL_TLS_NAME = "grid-shard-internal"
# Keepalive on the internal streams: a front door notices a shard on a lost node
# within about keepalive_time + keepalive_timeout, not at TCP's timeout.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A ping gRPC sends of its own (with a frame) waits this long for its answer, and
    # while it waits no keepalive ping goes out: without it, a black-holed link is
    # noticed at gRPC's default 60 s (found by tests/faults/test_fault_link_cut.py).
    ("grpc.http2.ping_timeout_ms", 5_000),
]
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def pack_frame(sequence: int, trace: dict | None, operations: list) -> bytes:
    return codec.pack_batch([sequence, trace, *operations])


def unpack_frame(payload: bytes) -> tuple[int, dict | None, list]:
    items = codec.unpack_batch(payload)
    if len(items) < 2 or not isinstance(items[0], int):
        raise codec.CorruptRecord("a frame without its sequence")
    return items[0], items[1], items[2:]


def pack_reply(sequence: int, newest_notification: int, replies: list) -> bytes:
    return codec.pack_batch([sequence, newest_notification, *replies])


def unpack_reply(payload: bytes) -> tuple[int, int, list]:
    items = codec.unpack_batch(payload)
    return items[0], items[1], items[2:]


def frame_for(sequence: int, operations: list, trace: dict | None, answer) -> Frame:
    """A committer frame whose answer goes back tagged with the sequence."""
    return Frame(operations, lambda replies, newest: answer(sequence, replies, newest),
                 dict(trace) if trace is not None else None)
