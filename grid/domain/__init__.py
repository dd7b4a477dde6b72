"""The pure charging core: accounts, holds, rating and the shard state machine.

Nothing in this package imports Ray, gRPC, protobuf, RocksDB, OpenTelemetry, a
clock or the OS: time comes in as an argument (`now_ms`) and effects leave as
plain records, so the core is testable at thousands of cases per second and
replayable from its own records.
"""
