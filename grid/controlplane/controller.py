"""The shard map's owner: one named Ray actor per grid holding the map and its
epoch, each shard's data-plane endpoint, and moving slots between shards.

Shards register their endpoint (address, incarnation) when they start and are
sent the map whenever it changes, so each shard's public listener knows which
slots it serves; GetShardMap answers the same map to clients.

Front doors (one or many, on any node) read the map from it at start and poll
it for changes, so every front door routes a subscriber to the same shard and
a changed map reaches them all; the epoch says which map a front door routes
by. A slot move (grid.domain.slot_rules) is driven from here: export at the
source, import at the target, switch the map, drop at the source; each step
is one operation in the shard's own order, and a move run again after a
failure finishes what the first left.

A move is written down (the map file's "moving") before its first step and
crossed out after its last, so a controller that dies midway (its node lost,
its process killed) finishes the move itself when Ray restarts it: the slots
it froze are served again within seconds, without an operator. Until a move
is finished no other move starts: running the same move again finishes it, any
other is refused (a second move could undo the first, or leave its slots
frozen with nothing written down).
"""

import json
import logging
import os
import pathlib
import threading
import time

from grid.routing import ShardMap

NAMESPACE = "charging-grid"


MAP_FILE = "shard-map.json"
# A restarted controller finishing a move retries while shards restart too: at
# most this many tries, this far apart.
RESUME_TRIES_MAX = 150
RESUME_PAUSE_S = 2.0
# A move goes this many slots at a time (export, import, switch, drop): each
# step's records are one Ray call and one synced batch at the target, and a
# slot is frozen only for its own step, not for the whole move.
SLOTS_PER_STEP = 32

log = logging.getLogger("grid.controller")


class MoveUnfinished(ValueError):
    """Another move is written down and not finished: finish it first."""


class ControllerActor:
    def __init__(self, slots: int, shards: int, actor_prefix: str = "", data_dir: str = "") -> None:
        # The map lives beside the shards' data (on a cluster: the shared volume), so a
        # restarted controller, or grid, routes moved slots where they went.
        self._path = pathlib.Path(data_dir) / MAP_FILE if data_dir else None
        self._map, self._moving = (_load(self._path) if self._path is not None and self._path.exists()
                                   else (ShardMap.even(slots, shards), None))
        if self._map.slots != slots:
            raise ValueError(f"{self._path} maps {self._map.slots} slots, the grid has {slots}")
        self._shards = shards
        self._prefix = actor_prefix
        self._lock = threading.Lock()  # the actor is threaded: polls are answered during a move
        # shard id -> the endpoint its current incarnation registered (grid.dataplane.shard_server).
        self._endpoints: dict[int, dict] = {}
        self._move_lock = threading.Lock()
        if self._moving is not None:
            threading.Thread(target=self._resume, args=(self._moving,), name="resume-move", daemon=True).start()

    def _resume(self, moving: dict) -> None:
        """Finish the move a previous incarnation of this controller left midway."""
        for attempt in range(1, RESUME_TRIES_MAX + 1):
            try:
                self.move_slots(moving["slots"], moving["target"], _resuming=True)
                log.warning("finished the move of %d slots to shard %d a controller left unfinished",
                            len(moving["slots"]), moving["target"])
                return
            except Exception:  # a shard restarting too: try again shortly
                log.warning("finishing an unfinished move failed (try %d)", attempt, exc_info=True)
                time.sleep(RESUME_PAUSE_S)
        log.error("gave up finishing the move to shard %d: run `grid cluster move-slots` again",
                  moving["target"])

    def unfinished_move(self) -> dict | None:
        """The move written down and not yet finished, if any."""
        with self._lock:
            return None if self._moving is None else dict(self._moving)

    def shard_map(self) -> tuple[int, int, tuple[int, ...]]:
        """(epoch, slots, shard of each slot)."""
        with self._lock:
            return self._map.epoch, self._map.slots, self._map.shard_of_slot

    def register_shard(self, endpoint: dict) -> dict:
        """A shard (re)started and listens at endpoint; answers the map it serves by."""
        with self._lock:
            self._endpoints[int(endpoint["shard_id"])] = dict(endpoint)
            view = self._view()
        self._push(view, but=int(endpoint["shard_id"]))
        return view

    def shard_map_view(self) -> dict:
        """The map with every shard's public endpoint (GetShardMap, front doors)."""
        missing = [shard_id for shard_id in range(self._shards) if shard_id not in self._endpoints]
        if missing:  # a restarted controller: ask the shards themselves, once
            self._gather_endpoints(missing)
        with self._lock:
            return self._view()

    def _gather_endpoints(self, shard_ids: list[int]) -> None:
        import ray

        for shard_id in shard_ids:
            try:
                endpoint = ray.get(self._shard(shard_id).data_plane_endpoint.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - restarting: it registers itself when up
                continue
            with self._lock:
                self._endpoints.setdefault(shard_id, endpoint)

    def _view(self) -> dict:
        """(Under the lock.) What shards and front doors route by; no secrets in it."""
        return {"epoch": self._map.epoch, "slots": self._map.slots, "shard_of_slot": list(self._map.shard_of_slot),
                "endpoints": {shard_id: {"public": endpoint.get("public", ""),
                                         "shard_epoch": endpoint.get("shard_epoch", 0)}
                              for shard_id, endpoint in self._endpoints.items()}}

    def _shard(self, shard_id: int):
        import ray

        return ray.get_actor(f"grid-{self._prefix}-shard-{shard_id}", namespace=NAMESPACE)

    def _push(self, view: dict, but: int = -1) -> None:
        """Send the map to every shard (not waited for: a shard restarting gets it when it registers)."""
        for shard_id in range(self._shards):
            if shard_id == but:
                continue
            try:
                self._shard(shard_id).set_shard_map.remote(view)
            except Exception:  # noqa: BLE001 - not started yet, or restarting
                log.debug("shard %d not told of map epoch %d", shard_id, view["epoch"], exc_info=True)

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

    def _replace(self, new_map: ShardMap, moving: dict | None | bool = False) -> None:
        """Durably first (synced file, then rename), then in memory. moving: the
        move under way (None: none; False: unchanged)."""
        if moving is False:
            moving = self._moving
        if self._path is not None:
            temporary = self._path.with_suffix(".tmp")
            with open(temporary, "w") as file:
                json.dump({"epoch": new_map.epoch, "slots": new_map.slots,
                           "shard_of_slot": list(new_map.shard_of_slot),
                           **({"moving": moving} if moving is not None else {})}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        changed = new_map.epoch != self._map.epoch
        self._map = new_map
        self._moving = moving
        if changed:
            self._push(self._view())

    def move_slots(self, slots: list[int], target: int, _resuming: bool = False) -> dict:
        """Move slots (from whichever shards hold them) to the target shard while
        traffic flows. Returns what moved. Run again after a failure (or by a
        restarted controller) it finishes what the first run left."""

        from grid.domain import operations as ops
        from grid.dataplane import faults

        if not 0 <= target < self._shards:
            raise ValueError(f"no shard {target}")
        # A test's fault point: die between import and switch (a first run only).
        exit_after_import = not _resuming and faults.FaultPoints.from_environment(-1, 0).controller_exit_after_import
        with self._move_lock:
            epoch, count, owners = self.shard_map()
            if any(not 0 <= slot < count for slot in slots):
                raise ValueError(f"slots are 0..{count - 1}")
            wanted = sorted(set(slots))
            if not wanted:
                return {"accounts": 0, "slots": 0, "epochs": []}
            unfinished = self._moving
            if unfinished is not None and (unfinished["slots"], unfinished["target"]) != (wanted, target):
                raise MoveUnfinished(
                    f"the move of {len(unfinished['slots'])} slots ({unfinished['slots'][0]}..."
                    f"{unfinished['slots'][-1]}) to shard {unfinished['target']} is not finished: run it again "
                    "first (a restarted controller finishes it by itself)")
            by_source: dict[int, list[int]] = {}
            for slot in wanted:
                if owners[slot] != target:
                    by_source.setdefault(owners[slot], []).append(slot)
            # The shards the slots leave, as first written down: a run that died after
            # a switch no longer sees its source in the map, and must still drop there.
            if unfinished is not None and "sources" not in unfinished:  # written without them: any shard may be one
                sources = [shard_id for shard_id in range(self._shards) if shard_id != target]
            else:
                sources = sorted(set(by_source) | set(unfinished["sources"] if unfinished else ()))
            with self._lock:  # written down before the first step: a restarted controller finishes it
                self._replace(self._map, {"slots": wanted, "target": target, "sources": sources})

            shard = self._shard
            moved = {"accounts": 0, "slots": 0, "epochs": []}
            steps = [(source, group[start:start + SLOTS_PER_STEP]) for source, group in by_source.items()
                     for start in range(0, len(group), SLOTS_PER_STEP)]
            for source, group in steps:
                exported = _apply(shard(source), ops.ExportSlots(tuple(group), count))
                _apply(shard(target), ops.ImportSlots(tuple(group), exported.records))
                if exit_after_import:
                    os._exit(faults.EXIT_CODE)
                with self._lock:
                    owners = list(self._map.shard_of_slot)
                    for slot in group:
                        owners[slot] = target
                    self._replace(ShardMap(self._map.slots, tuple(owners), self._map.epoch + 1))
                    moved["epochs"].append(self._map.epoch)
                _apply(shard(source), ops.DropSlots(tuple(group)))
                moved["accounts"] += exported.accounts
                moved["slots"] += len(group)
            # A run that died between a switch and its drop left that step's records
            # parked at its source: every source drops what it may still hold of
            # these slots, all the target's now (a no-op when it holds nothing), so
            # its audit counts them out. Only the sources: a shard the move never
            # touched may be down without stopping it.
            for source in sources:
                if source != target:
                    moved["accounts"] += _apply(shard(source), ops.DropSlots(tuple(wanted))).accounts
            with self._lock:
                self._replace(self._map, None)
            return moved


def _apply(handle, operation):
    """One operation through the shard's own batch path (its order, its synced write)."""
    import ray

    from grid.domain import operations as ops
    from grid.storage import codec

    [reply, _notifications] = codec.unpack_batch(ray.get(handle.apply_control.remote(codec.pack_batch([operation]))))
    if isinstance(reply, ops.Rejection):
        raise RuntimeError(f"{type(operation).__name__} refused: {reply.field}: {reply.message}")
    return reply


def _load(path: pathlib.Path) -> tuple[ShardMap, dict | None]:
    """The map, and the move under way when it was written (or None)."""
    found = json.loads(path.read_text())
    return ShardMap(found["slots"], tuple(found["shard_of_slot"]), found["epoch"]), found.get("moving")
