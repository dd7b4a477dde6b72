"""Durable shard storage: an explicit record codec and a RocksDB store per shard."""
