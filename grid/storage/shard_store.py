"""One shard's RocksDB: every batch of effects lands in one synced WriteBatch.

rocksdict is opened in raw mode (bytes in, bytes out: the codec decides the
format, never pickle) and every write is synced (WAL fsync) before the shard
replies: group commit, one fsync per batch (DESIGN.md section 8).
"""

import json
import logging
import os
import pathlib

from rocksdict import Checkpoint, Options, Rdict, WriteBatch, WriteOptions

from grid.domain.records import JournalRecord
from grid.storage import codec

log = logging.getLogger("grid.store")

MARKER_FILE = "SHARD.json"


class StoreRefused(Exception):
    """The store will not open: it would start empty where data existed, or it
    belongs to another shard."""


class ShardStore:
    def __init__(self, path: pathlib.Path, shard_id: int) -> None:
        self.path = path
        self.shard_id = shard_id
        marker = path / MARKER_FILE
        database = path / "db"
        if marker.exists():
            recorded = json.loads(marker.read_text())
            if recorded["shard_id"] != shard_id:
                raise StoreRefused(f"{path} holds shard {recorded['shard_id']}, not shard {shard_id}")
            if not (database / "CURRENT").exists():
                raise StoreRefused(f"{path} held shard {shard_id} but its database is gone: refusing to start empty")
        options = Options(raw_mode=True)
        options.create_if_missing(not marker.exists())
        try:
            self._db = Rdict(str(database), options)
        except Exception as error:  # rocksdict raises a bare Exception for RocksDB's IO errors
            if "lock" in str(error).lower():
                # Fencing: one incarnation of a shard at a time. A stale one (paused,
                # not yet dead) still holds RocksDB's lock, so a new one cannot commit.
                raise StoreRefused(f"{path}: another incarnation of shard {shard_id} holds it: {error}") from error
            raise
        self._sync = WriteOptions()
        # GRID_UNSAFE_NO_SYNC=1 exists only to measure what durability costs (grid bench):
        # an acknowledged charge could then be lost with the machine. Never in service.
        self._sync.sync = os.environ.get("GRID_UNSAFE_NO_SYNC", "") != "1"
        if not self._sync.sync:
            log.warning("shard %d: GRID_UNSAFE_NO_SYNC=1: writes are NOT synced; acknowledged charges can be "
                        "lost in a crash (benchmarking only)", shard_id)
        if not marker.exists():
            marker.write_text(json.dumps({"shard_id": shard_id, "format": codec.CODEC_VERSION}))

    def commit(self, writes) -> None:
        """Persist one batch's effects atomically and durably (synced WAL)."""
        batch = WriteBatch(raw_mode=True)
        for record in writes.deleted_records:  # a moved slot's records (never put again in the same batch)
            batch.delete(codec.key_of(record))
        for record in writes.puts:
            batch.put(codec.key_of(record), codec.encode(record))
            if type(record) is JournalRecord and record.subscriber_id:
                batch.put(codec.subscriber_journal_key(record), b"")
        for key in writes.deleted_idempotency_keys:
            batch.delete(codec.idempotency_key(key))
        for charge_id in writes.deleted_charge_ids:
            batch.delete(codec.CHARGE + charge_id.encode())
        for reservation_id in writes.deleted_reservation_ids:
            batch.delete(codec.RESERVATION + reservation_id.encode())
        for key in writes.deleted_session_keys:
            batch.delete(codec.session_key(key))
        for sequence in writes.deleted_notification_sequences:
            batch.delete(codec.notification_key(sequence))
        for key in writes.deleted_subscription_keys:
            batch.delete(codec.subscription_key(key))
        self._db.write(batch, self._sync)

    def forget_journal_before(self, oldest_kept_ms: int, records_max: int = 1000) -> int:
        """Delete journal records older than the retention, oldest first, at most
        records_max per call (the sweep calls it again). A record inside the
        retention is never deleted: the walk stops at the first one."""
        iterator = self._db.iter()
        iterator.seek(codec.JOURNAL)
        batch = WriteBatch(raw_mode=True)
        deleted = 0
        while deleted < records_max and iterator.valid() and iterator.key()[:1] == codec.JOURNAL:
            record = self._decode(iterator.key(), iterator.value())
            if record.at_ms >= oldest_kept_ms:
                break
            batch.delete(iterator.key())
            if record.subscriber_id:
                batch.delete(codec.subscriber_journal_key(record))
            deleted += 1
            iterator.next()
        if deleted:
            self._db.write(batch, self._sync)
        return deleted

    def put_synced(self, record) -> None:
        self._db.put(codec.key_of(record), codec.encode(record), self._sync)

    def load_records(self):
        """Every state record (journal excluded), decoded and checked."""
        iterator = self._db.iter()
        iterator.seek_to_first()
        while iterator.valid():
            key = iterator.key()
            if key[:1] in (codec.JOURNAL, codec.SUBSCRIBER_JOURNAL):  # not state: skip the family
                iterator.seek(bytes([key[0] + 1]))
                continue
            yield self._decode(key, iterator.value())
            iterator.next()

    def journal(self, from_sequence: int = 1, limit: int | None = None) -> list[JournalRecord]:
        out = []
        iterator = self._db.iter()
        iterator.seek(codec.journal_key(from_sequence))
        while iterator.valid() and iterator.key()[:1] == codec.JOURNAL:
            out.append(self._decode(iterator.key(), iterator.value()))
            if limit is not None and len(out) >= limit:
                break
            iterator.next()
        return out

    def subscriber_journal(self, tenant: str, subscriber_id: str, from_ms: int, to_ms: int,
                           scanned_max: int) -> tuple[list[JournalRecord], bool]:
        """A subscriber's journal records with from_ms <= at_ms <= to_ms, oldest
        first, looking at no more than scanned_max of them (True when cut)."""
        prefix = codec.subscriber_journal_prefix(tenant, subscriber_id)
        iterator = self._db.iter()
        iterator.seek(prefix)
        found, scanned = [], 0
        while iterator.valid() and iterator.key().startswith(prefix):
            if scanned >= scanned_max:
                return found, True
            scanned += 1
            key = codec.journal_key(codec.sequence_of_index_key(iterator.key()))
            value = self._db.get(key)
            if value is not None:
                record = self._decode(key, value)
                if from_ms <= record.at_ms <= to_ms:
                    found.append(record)
            iterator.next()
        return found, False

    def _decode(self, key: bytes, value: bytes):
        try:
            return codec.decode(value)
        except codec.CorruptRecord as error:
            raise codec.CorruptRecord(f"shard {self.shard_id} key {key!r}: {error}") from error

    def checkpoint(self, target: pathlib.Path) -> None:
        """A consistent copy of this shard's database (hard-linked SST files and
        the WAL up to now) plus its marker, for a snapshot."""
        target.mkdir(parents=True)
        Checkpoint(self._db).create_checkpoint(str(target / "db"))
        (target / MARKER_FILE).write_text((self.path / MARKER_FILE).read_text())

    def close(self) -> None:
        self._db.close()
