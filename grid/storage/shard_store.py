"""One shard's RocksDB: every batch of effects lands in one synced WriteBatch.

rocksdict is opened in raw mode (bytes in, bytes out: the codec decides the
format, never pickle) and every write is synced (WAL fsync) before the shard
replies: group commit, one fsync per batch (DESIGN.md section 8).
"""

import json
import pathlib

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from grid.domain.records import JournalRecord
from grid.storage import codec

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
        self._db = Rdict(str(database), options)
        self._sync = WriteOptions()
        self._sync.sync = True
        if not marker.exists():
            marker.write_text(json.dumps({"shard_id": shard_id, "format": codec.CODEC_VERSION}))

    def commit(self, writes) -> None:
        """Persist one batch's effects atomically and durably (synced WAL)."""
        batch = WriteBatch(raw_mode=True)
        for record in writes.puts:
            batch.put(codec.key_of(record), codec.encode(record))
        for key in writes.deleted_idempotency_keys:
            batch.delete(codec.idempotency_key(key))
        self._db.write(batch, self._sync)

    def put_synced(self, record) -> None:
        self._db.put(codec.key_of(record), codec.encode(record), self._sync)

    def load_records(self):
        """Every state record (journal excluded), decoded and checked."""
        iterator = self._db.iter()
        iterator.seek_to_first()
        while iterator.valid():
            key = iterator.key()
            if key[:1] == codec.JOURNAL:
                iterator.seek(codec.JOURNAL + b"\xff" * 9)
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

    def _decode(self, key: bytes, value: bytes):
        try:
            return codec.decode(value)
        except codec.CorruptRecord as error:
            raise codec.CorruptRecord(f"shard {self.shard_id} key {key!r}: {error}") from error

    def close(self) -> None:
        self._db.close()
