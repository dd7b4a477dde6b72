"""The front door's router: each operation to its shard's batcher by subscriber
key; catalog writes go to every shard (each keeps its own durable copy of the
catalog). An operation answered SlotMoved is sent again by the newer map."""

import asyncio
import time

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import ErrorCode, Result
from grid.domain.validation import rejection_for
from grid.tracing import Tracing
from grid.dataplane.batcher import ShardBatcher
from grid.routing import ShardMap


def outcome_of(reply) -> str:
    """A reply's outcome in one word (metrics, the admin log)."""
    if isinstance(reply, ops.Rejection):
        return reply.code.name
    result = getattr(reply, "result", None)
    return Result(result).name if result is not None else "FOUND" if getattr(reply, "found", False) else "OK"


# How often, and how long at most, an operation for a moving slot is tried again.
SLOT_POLL_S = 0.05
SLOT_WAIT_MAX_S = 10.0


class Router:
    def __init__(self, shard_map: ShardMap, endpoints: dict[int, dict], batchers: list[ShardBatcher],
                 limits: CoreLimits, tracing: Tracing | None = None) -> None:
        assert len(batchers) == shard_map.shards
        self.shard_map = shard_map
        # shard id -> its public endpoint ("public" address, "shard_epoch"), from the controller.
        self.endpoints = endpoints
        self.batchers = batchers
        # Set by the grid: fetch the controller's map now (a slot moved).
        self.refresh_map = None
        self.limits = limits
        self.tracing = tracing or Tracing("charging-grid")
        self.metrics = None  # grid.metrics.Metrics when a scrape port is configured
        # Authentication, scopes, request rates and the admin log (grid.frontdoor.guard);
        # the default lets everyone in as the default tenant, as the embedded grid does.
        from grid import security
        from grid.frontdoor.guard import Guard

        self.guard = Guard(security.Authenticator(security.AuthConfig()),
                           security.RateLimiter(security.RateLimit(), security.RateLimit()), None)
        # Set (and replaced) whenever a shard made a notification: watchers wake on it.
        self.notified = asyncio.Event()
        for batcher in batchers:
            batcher.on_notifications = self._notifications_made

    def _notifications_made(self) -> None:
        self.notified.set()
        self.notified = asyncio.Event()

    def map_view(self) -> tuple[ShardMap, dict[int, dict]]:
        return self.shard_map, self.endpoints

    def count(self, method: str, reply, started_monotonic: float) -> None:
        if self.metrics is None:
            return
        self.metrics.record(method.rsplit("/", 1)[-1], outcome_of(reply), started_monotonic)

    async def submit(self, operation, deadline_monotonic: float | None = None, call=None):
        """Validate, then hand to the owning shard. Bad input never reaches a shard.
        `call` (a tracing.CallTrace) makes the shard's spans children of the call's."""
        rejection = rejection_for(operation, self.limits)
        if rejection is not None:
            return rejection
        if isinstance(operation, ops.PutTariff):
            return await self._put_tariff_everywhere(operation, deadline_monotonic, call)
        if isinstance(operation, ops.GetTariff):
            return await self.batchers[0].submit(operation, deadline_monotonic)
        shard = self.shard_map.shard_for(operation.tenant, operation.subscriber_id)
        reply = await self.batchers[shard].submit(operation, deadline_monotonic, call)
        if isinstance(reply, ops.SlotMoved):
            reply = await self._follow_moved(operation, reply, deadline_monotonic, call)
        return reply

    async def submit_many(self, operations: list, deadline_monotonic: float | None = None, call=None) -> list:
        """Replies to many operations (a ChargeBatch), each on its own: queued at
        their shards at once, in their order, without a task each."""
        replies: list = [None] * len(operations)
        queued = []
        for position, operation in enumerate(operations):
            rejection = rejection_for(operation, self.limits)
            if rejection is not None:
                replies[position] = rejection
                continue
            shard = self.shard_map.shard_for(operation.tenant, operation.subscriber_id)
            queued.append((position, operation, self.batchers[shard].enqueue(operation, deadline_monotonic, call)))
        for position, operation, future in queued:
            reply = await future
            if isinstance(reply, ops.SlotMoved):
                reply = await self._follow_moved(operation, reply, deadline_monotonic, call)
            replies[position] = reply
        return replies

    async def _follow_moved(self, operation, reply: ops.SlotMoved, deadline_monotonic, call):
        """The slot is moving or moved: wait for the map that routes it elsewhere,
        then send the same operation (same request id) there."""
        waited_s = 0.0
        while isinstance(reply, ops.SlotMoved):
            if waited_s >= SLOT_WAIT_MAX_S or (deadline_monotonic is not None
                                               and time.monotonic() + SLOT_POLL_S >= deadline_monotonic):
                return ops.Rejection(ErrorCode.UNAVAILABLE, "subscriber_id",
                                     f"slot {reply.slot} is moving between shards; retry with the same request id")
            await asyncio.sleep(SLOT_POLL_S)
            waited_s += SLOT_POLL_S
            if self.refresh_map is not None:
                await self.refresh_map()
            shard = self.shard_map.shard_for(operation.tenant, operation.subscriber_id)
            reply = await self.batchers[shard].submit(operation, deadline_monotonic, call)
        return reply

    async def submit_to_shard(self, shard: int, operation, deadline_monotonic: float | None = None):
        """An operation about a shard rather than a subscriber (reading its notifications)."""
        rejection = rejection_for(operation, self.limits)
        if rejection is not None:
            return rejection
        return await self.batchers[shard].submit(operation, deadline_monotonic)

    async def _put_tariff_everywhere(self, operation: ops.PutTariff, deadline_monotonic, call):
        replies = await asyncio.gather(*(b.submit(operation, deadline_monotonic, call) for b in self.batchers))
        for reply in replies:
            if isinstance(reply, ops.Rejection):
                return reply  # some shard did not take it: the caller retries (the put is idempotent)
        return max(replies, key=lambda reply: reply.version)

    async def close(self) -> None:
        for batcher in self.batchers:
            await batcher.close()
