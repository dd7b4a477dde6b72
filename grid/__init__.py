"""The charging grid: a real-time online charging system on gRPC, Ray and RocksDB."""

__version__ = "0.1.0"
