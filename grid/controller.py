"""The shard map's owner: one named Ray actor per grid holding the map and its
epoch, and moving slots between shards.

Front doors (one or many, on any node) read the map from it at start and poll
it for changes, so every front door routes a subscriber to the same shard and
a changed map reaches them all; the epoch says which map a front door routes
by. A slot move (grid.domain.slot_rules) is driven from here: export at the
source, import at the target, switch the map, drop at the source; each step
is one operation in the shard's own order, and a move run again after a
failure finishes what the first left.
"""

import json
import os
import pathlib
import threading

from grid.routing import ShardMap

NAMESPACE = "charging-grid"


MAP_FILE = "shard-map.json"


class ControllerActor:
    def __init__(self, slots: int, shards: int, actor_prefix: str = "", data_dir: str = "") -> None:
        # The map lives beside the shards' data (on a cluster: the shared volume), so a
        # restarted controller, or grid, routes moved slots where they went.
        self._path = pathlib.Path(data_dir) / MAP_FILE if data_dir else None
        self._map = _load(self._path) if self._path is not None and self._path.exists() else ShardMap.even(slots,
                                                                                                            shards)
        if self._map.slots != slots:
            raise ValueError(f"{self._path} maps {self._map.slots} slots, the grid has {slots}")
        self._shards = shards
        self._prefix = actor_prefix
        self._lock = threading.Lock()  # the actor is threaded: polls are answered during a move
        self._move_lock = threading.Lock()

    def shard_map(self) -> tuple[int, int, tuple[int, ...]]:
        """(epoch, slots, shard of each slot)."""
        with self._lock:
            return self._map.epoch, self._map.slots, self._map.shard_of_slot

    def set_map(self, expected_epoch: int, shard_of_slot: tuple[int, ...]) -> int:
        """Replace the map if it is still at expected_epoch; returns the epoch now
        (unchanged when the caller's view was stale)."""
        with self._lock:
            if expected_epoch != self._map.epoch:
                return self._map.epoch
            if len(shard_of_slot) != self._map.slots or not all(0 <= s < self._shards for s in shard_of_slot):
                raise ValueError("a map names every slot once, each with an existing shard")
            self._replace(ShardMap(self._map.slots, tuple(shard_of_slot), self._map.epoch + 1))
            return self._map.epoch

    def _replace(self, new_map: ShardMap) -> None:
        """Durably first (synced file, then rename), then in memory."""
        if self._path is not None:
            temporary = self._path.with_suffix(".tmp")
            with open(temporary, "w") as file:
                json.dump({"epoch": new_map.epoch, "slots": new_map.slots,
                           "shard_of_slot": list(new_map.shard_of_slot)}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._map = new_map

    def move_slots(self, slots: list[int], target: int) -> dict:
        """Move slots (from whichever shards hold them) to the target shard while
        traffic flows. Returns what moved."""
        import ray

        from grid.domain import operations as ops

        if not 0 <= target < self._shards:
            raise ValueError(f"no shard {target}")
        with self._move_lock:
            epoch, count, owners = self.shard_map()
            if any(not 0 <= slot < count for slot in slots):
                raise ValueError(f"slots are 0..{count - 1}")
            by_source: dict[int, list[int]] = {}
            for slot in sorted(set(slots)):
                if owners[slot] != target:
                    by_source.setdefault(owners[slot], []).append(slot)
            moved = {"accounts": 0, "slots": 0, "epochs": []}
            for source, group in by_source.items():
                source_shard = ray.get_actor(f"grid-{self._prefix}-shard-{source}", namespace=NAMESPACE)
                target_shard = ray.get_actor(f"grid-{self._prefix}-shard-{target}", namespace=NAMESPACE)
                exported = _apply(source_shard, ops.ExportSlots(tuple(group), count))
                _apply(target_shard, ops.ImportSlots(tuple(group), exported.records))
                with self._lock:
                    owners = list(self._map.shard_of_slot)
                    for slot in group:
                        owners[slot] = target
                    self._replace(ShardMap(self._map.slots, tuple(owners), self._map.epoch + 1))
                    moved["epochs"].append(self._map.epoch)
                _apply(source_shard, ops.DropSlots(tuple(group)))
                moved["accounts"] += exported.accounts
                moved["slots"] += len(group)
            return moved


def _apply(handle, operation):
    """One operation through the shard's own batch path (its order, its synced write)."""
    import ray

    from grid.domain import operations as ops
    from grid.storage import codec

    [reply, _notifications] = codec.unpack_batch(ray.get(handle.apply_batch.remote(codec.pack_batch([operation]))))
    if isinstance(reply, ops.Rejection):
        raise RuntimeError(f"{type(operation).__name__} refused: {reply.field}: {reply.message}")
    return reply


def _load(path: pathlib.Path) -> ShardMap:
    found = json.loads(path.read_text())
    return ShardMap(found["slots"], tuple(found["shard_of_slot"]), found["epoch"])
