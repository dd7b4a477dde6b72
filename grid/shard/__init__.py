"""The shard shell: a Ray actor around the pure ShardState and its RocksDB."""
