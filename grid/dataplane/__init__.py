"""The data plane: how an operation travels from a caller to a shard's synced write.

Front doors route each operation by slot (router), queue it per shard
(batcher) and send many at a time over one long-lived gRPC stream per shard
(shard_link). Inside each shard actor's process a listener (shard_server)
takes those frames, and direct calls from clients that hold the shard map
(local_router), into one group commit (group_commit). No Ray call is on this
path: Ray only places, restarts and moves shards (grid.controlplane).
"""
