"""The shard actor: applies a batch to the pure core, writes one synced batch,
and only then replies (DESIGN.md sections 7 and 8).

It is a plain (threaded, max_concurrency=1) actor, so no two batches ever
interleave: there is no await between a balance check and its write. A restart
(by Ray, or of the whole grid) rebuilds the state from RocksDB in the
constructor and takes a new epoch.
"""

import logging
import os
import pathlib
import time

from grid.domain.limits import CoreLimits
from grid.domain.shard_state import ShardState
from grid.shard.faults import FaultPoints
from grid.storage import codec
from grid.storage.shard_store import ShardStore

log = logging.getLogger("grid.shard")


# Journal records past the retention are dropped by the shard this often (bounded work per call).
JOURNAL_PRUNE_INTERVAL_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ShardActor:
    def __init__(self, shard_id: int, data_dir: str, limits: CoreLimits) -> None:
        started = time.monotonic()
        self.shard_id = shard_id
        path = pathlib.Path(data_dir) / f"shard-{shard_id}"
        path.mkdir(parents=True, exist_ok=True)
        self.store = ShardStore(path, shard_id)
        self.state = ShardState.restore(shard_id, self.store.load_records(), limits)
        # A new incarnation takes a new epoch before it serves (fencing, issue 5 builds on it).
        self.state.meta.epoch += 1
        self.store.put_synced(self.state.meta)
        self.faults = FaultPoints.from_environment(shard_id, self.state.meta.epoch)
        if self.faults.armed:
            log.warning("shard %d: fault points armed: %s", shard_id, self.faults)
        self._next_journal_prune_ms = 0
        self.load_seconds = time.monotonic() - started
        log.info(
            "shard %d epoch %d loaded %d accounts in %.2fs",
            shard_id, self.state.meta.epoch, len(self.state.accounts), self.load_seconds,
        )

    def apply_batch(self, payload: bytes) -> bytes:
        """Operations in, replies out, both packed by the codec (see codec.pack_batch)."""
        try:
            now = now_ms()
            operations = codec.unpack_batch(payload)
            self.faults.before_apply(operations)
            replies = self.state.apply_batch(operations, now)
            writes = self.state.take_writes()
            if writes:
                self.faults.before_commit()
                self.store.commit(writes)
                self.faults.after_commit()
            if now >= self._next_journal_prune_ms:
                self._next_journal_prune_ms = now + JOURNAL_PRUNE_INTERVAL_MS
                self.store.forget_journal_before(now - self.state.limits.charge_retention_s * 1000)
        except BaseException:
            # Memory may now be ahead of disk: never serve from it. Die, and let the
            # restarted actor rebuild from RocksDB; the front door retries with the
            # same request ids, so nothing applies twice.
            log.exception("shard %d failed applying a batch; exiting to reload from storage", self.shard_id)
            os._exit(70)
        return codec.pack_batch(replies)

    def info(self) -> dict:
        return {
            "shard_id": self.shard_id,
            "epoch": self.state.meta.epoch,
            "accounts": len(self.state.accounts),
            "pid": os.getpid(),
            "load_seconds": self.load_seconds,
        }

    def checkpoint(self, snapshot_dir: str) -> dict:
        """Checkpoint between two batches (this actor runs one call at a time, so
        traffic pauses for at most the batch being applied)."""
        self.store.checkpoint(pathlib.Path(snapshot_dir) / f"shard-{self.shard_id}")
        return {
            "shard_id": self.shard_id,
            "epoch": self.state.meta.epoch,
            "journal_sequence": self.state.meta.next_journal_sequence - 1,
        }

    def journal(self, from_sequence: int = 1, limit: int = 1000) -> list:
        return self.store.journal(from_sequence, limit)

    def close(self) -> None:
        """Release the RocksDB lock before the actor is killed (a clean stop)."""
        self.store.close()
