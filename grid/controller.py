"""The shard map's owner: one named Ray actor per grid holding the map and its epoch.

Front doors (one or many, on any node) read the map from it at start and poll
it for changes, so every front door routes a subscriber to the same shard and
a changed map (a later slot move) reaches them all; the epoch says which map a
front door routes by. The map is a pure value (grid.routing.ShardMap); this
actor only keeps it and refuses a change made against a stale epoch.
"""

from grid.routing import ShardMap


class ControllerActor:
    def __init__(self, slots: int, shards: int) -> None:
        self._map = ShardMap.even(slots, shards)
        self._shards = shards

    def shard_map(self) -> tuple[int, int, tuple[int, ...]]:
        """(epoch, slots, shard of each slot)."""
        return self._map.epoch, self._map.slots, self._map.shard_of_slot

    def set_map(self, expected_epoch: int, shard_of_slot: tuple[int, ...]) -> int:
        """Replace the map if it is still at expected_epoch; returns the epoch now
        (unchanged when the caller's view was stale or the map is invalid)."""
        if expected_epoch != self._map.epoch:
            return self._map.epoch
        if len(shard_of_slot) != self._map.slots or not all(0 <= s < self._shards for s in shard_of_slot):
            raise ValueError("a map names every slot once, each with an existing shard")
        self._map = ShardMap(self._map.slots, tuple(shard_of_slot), self._map.epoch + 1)
        return self._map.epoch
