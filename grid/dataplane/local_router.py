"""The router of a shard's public listener: the front door's Router, but the
only shard it reaches is its own.

Clients that hold the shard map send a subscriber's operations straight to
the shard that owns its slot. Validation, credentials and limits are the
front door's (the same servicers run here); what differs is ownership: an
operation for a slot this shard does not own by its copy of the map, or that
the core answers SlotMoved (the slot is moving or moved), is refused with
FAILED_PRECONDITION, reason SHARD_MAP_STALE, naming the slot and the map epoch:
the client fetches the map again (GetShardMap) or goes through a front door.
"""

import asyncio
import time

from grid import security, tracing
from grid.admin_log import AdminLog
from grid.dataplane.group_commit import QueueFull, overloaded
from grid.domain import operations as ops
from grid.domain.outcomes import ErrorCode
from grid.domain.validation import rejection_for
from grid.frontdoor.guard import Guard
from grid.routing import ShardMap, slot_of

STALE_MAP_REASON = "SHARD_MAP_STALE"


def stale_map(slot: int, epoch: int) -> ops.Rejection:
    return ops.Rejection(ErrorCode.FAILED_PRECONDITION, "subscriber_id",
                         f"slot {slot} is not served by this shard (shard map epoch {epoch}): fetch the map "
                         "again (GetShardMap) or call a front door", reason=STALE_MAP_REASON,
                         metadata=(("slot", str(slot)), ("map_epoch", str(epoch))))


class LocalRouter:
    def __init__(self, shard_id: int, committer, config, tracing) -> None:
        self.shard_id = shard_id
        self._committer = committer
        self.limits = config.limits
        self.tracing = tracing
        self.metrics = None
        self.shard_map: ShardMap | None = None  # set by the controller (set_map) before any call is served
        self.endpoints: dict[int, dict] = {}
        self.guard = Guard(
            security.Authenticator(config.auth),
            security.RateLimiter(config.tenant_rate, config.subscriber_rate, config.auth.tenant_rates),
            AdminLog(config.data_dir / f"shard-{shard_id}" / config.admin_log_name))
        self.notified = asyncio.Event()

    def set_map(self, view: dict) -> None:
        """The controller's map (epoch, slots, owner of each slot, endpoints), when newer."""
        if self.shard_map is not None and view["epoch"] < self.shard_map.epoch:
            return
        self.shard_map = ShardMap(view["slots"], tuple(view["shard_of_slot"]), view["epoch"])
        self.endpoints = {int(shard): endpoint for shard, endpoint in view.get("endpoints", {}).items()}

    def map_view(self) -> tuple[ShardMap | None, dict[int, dict]]:
        return self.shard_map, self.endpoints

    def count(self, method: str, reply, started_monotonic: float) -> None:
        """Metrics are the front door's; a shard's counters are in its info()."""

    async def submit(self, operation, deadline_monotonic: float | None = None, call=None):
        rejection = rejection_for(operation, self.limits)
        if rejection is not None:
            return rejection
        if isinstance(operation, (ops.PutTariff, ops.GetTariff)):  # every shard's: a front door's call
            return ops.Rejection(ErrorCode.FAILED_PRECONDITION, "", "catalog calls go through a front door")
        shard_map = self.shard_map
        slot = slot_of(operation.tenant, operation.subscriber_id, shard_map.slots) if shard_map else -1
        if shard_map is None or shard_map.shard_of_slot[slot] != self.shard_id:
            return stale_map(slot, shard_map.epoch if shard_map else 0)
        if deadline_monotonic is not None and deadline_monotonic <= time.monotonic():
            return ops.Rejection(ErrorCode.DEADLINE_EXCEEDED, "", "the deadline passed before the operation was "
                                 "applied")
        try:
            [reply], _ = await self._committer.apply([operation], self._trace(call, 1))
        except QueueFull as full:
            [reply] = overloaded(1, str(full))
        if isinstance(reply, ops.SlotMoved):
            return stale_map(reply.slot, shard_map.epoch)
        return reply

    async def submit_many(self, operations: list, deadline_monotonic: float | None = None, call=None) -> list:
        """A ChargeBatch's operations as one frame: one queue entry and one wake-up
        for all of them; each answered on its own."""
        shard_map = self.shard_map
        replies: list = [None] * len(operations)
        mine, positions = [], []
        for position, operation in enumerate(operations):
            rejection = rejection_for(operation, self.limits)
            if rejection is None:
                slot = slot_of(operation.tenant, operation.subscriber_id, shard_map.slots) if shard_map else -1
                if shard_map is None or shard_map.shard_of_slot[slot] != self.shard_id:
                    rejection = stale_map(slot, shard_map.epoch if shard_map else 0)
            if rejection is not None:
                replies[position] = rejection
                continue
            mine.append(operation)
            positions.append(position)
        if mine and deadline_monotonic is not None and deadline_monotonic <= time.monotonic():
            for position in positions:
                replies[position] = ops.Rejection(ErrorCode.DEADLINE_EXCEEDED, "", "the deadline passed before the "
                                                  "operation was applied")
            mine = []
        if mine:
            try:
                answered, _ = await self._committer.apply(mine, self._trace(call, len(mine)))
            except QueueFull as full:
                answered = overloaded(len(mine), str(full))
            for position, reply in zip(positions, answered):
                replies[position] = stale_map(reply.slot, shard_map.epoch) if isinstance(reply, ops.SlotMoved) \
                    else reply
        return replies

    def _trace(self, call, count: int) -> dict | None:
        """The shard's spans for a direct call: children of its server span."""
        if call is None or not self.tracing.enabled:
            return None
        parent = tracing.traceparent(call)
        return {"trace_id": call.trace_id, "span_id": call.span_id, "attempt": 1, "parents": (parent,) * count}

    async def submit_to_shard(self, shard: int, operation, deadline_monotonic: float | None = None):
        return ops.Rejection(ErrorCode.FAILED_PRECONDITION, "", "notifications are watched through a front door")

