"""WatchNotifications: follows one client's notifications on every shard.

Notifications are made and kept (durably, for the retention) by the shard that
owns the session, so any front door can serve any watcher, and a watcher that
reconnects resumes from its cursor: the position reached on every shard. The
follower asks each shard through its batcher (the reads ride in the normal
batches); when none had anything new it waits until a batch answer says a
shard made a notification (through this front door), or at most a poll
interval (for notifications made through another front door).
"""

import asyncio

from grid.domain import operations as ops
from grid.domain.limits import UINT64_MAX
from grid.domain.outcomes import ErrorCode
from grid.domain.validation import InvalidArgument
from grid.frontdoor import convert
from grid.dataplane.router import Router

_CURSOR_VERSION = "c1"
# After a wake-up, wait this long so that a burst of notifications is read in one round.
_COALESCE_S = 0.005
# Shard errors a follower waits out (the next poll asks again) rather than ending the stream on.
_TRANSIENT = (ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.DEADLINE_EXCEEDED)


def encode_cursor(positions: list[int]) -> str:
    return ".".join([_CURSOR_VERSION, *map(str, positions)])


def decode_cursor(cursor: str, shards: int) -> list[int]:
    """Positions per shard; empty means from the oldest kept."""
    if not cursor:
        return [0] * shards
    version, *parts = cursor.split(".")
    # ASCII digits only (str.isdigit also takes superscripts int() refuses), within uint64.
    if (version != _CURSOR_VERSION or len(parts) != shards
            or not all(part.isascii() and part.isdigit() and len(part) <= 20 for part in parts)
            or any(int(part) > UINT64_MAX for part in parts)):
        raise InvalidArgument("cursor", "is not a cursor this grid gave out; pass one from a Notification, or none")
    return [int(part) for part in parts]


class Rejected(Exception):
    def __init__(self, rejection: ops.Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


async def follow(router: Router, tenant: str, client_id: str, cursor: str, poll_interval_s: float,
                 read_max: int, channel: str = "sessions", to_message=None):
    """Yield to_message(notification, cursor, lost) for client_id's notifications
    on the channel, oldest first per shard, without end. Raises InvalidArgument
    for a bad cursor, Rejected for a shard's refusal."""
    to_message = to_message or convert.session_notification
    shards = len(router.batchers)
    positions = decode_cursor(cursor, shards)
    lost_pending = False
    fresh = not cursor  # a first subscription has lost nothing it could have known of
    while True:
        more = False
        woken = router.notified  # taken before reading: a notification made meanwhile wakes us
        for shard in range(shards):
            reply = await router.submit_to_shard(
                shard, ops.ReadNotifications(tenant, client_id, positions[shard], read_max, channel))
            if isinstance(reply, ops.Rejection):
                if reply.code in _TRANSIENT:
                    continue
                raise Rejected(reply)
            lost_pending = lost_pending or (reply.lost and not fresh)
            for notification in reply.notifications:
                positions[shard] = notification.sequence
                yield to_message(notification, encode_cursor(positions), lost_pending)
                lost_pending = False
            if len(reply.notifications) >= read_max:
                more = True
            else:  # nothing more of ours up to the shard's newest: skip past it next time
                positions[shard] = max(positions[shard], reply.last_sequence)
        fresh = False
        if not more:
            try:
                await asyncio.wait_for(woken.wait(), poll_interval_s)
                await asyncio.sleep(_COALESCE_S)  # one read round for a burst of notifications
            except asyncio.TimeoutError:
                pass
