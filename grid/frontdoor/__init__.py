"""The gRPC front door: validate, route by subscriber key, batch per shard, reply."""
