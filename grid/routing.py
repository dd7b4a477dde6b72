"""Subscriber -> slot -> shard. A stable hash (blake2b), never Python's salted hash().

The number of slots is fixed when a grid is created; the shard map assigns
contiguous slot ranges to shards and carries an epoch, so that later slot moves
(scale-out) change the map, never the hash.
"""

import dataclasses
import hashlib

SLOTS_DEFAULT = 1024


def slot_of(tenant: str, subscriber_id: str, slots: int) -> int:
    digest = hashlib.blake2b(f"{tenant}\x00{subscriber_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % slots


@dataclasses.dataclass(frozen=True, slots=True)
class ShardMap:
    slots: int
    shard_of_slot: tuple[int, ...]
    epoch: int = 1

    @classmethod
    def even(cls, slots: int, shards: int) -> "ShardMap":
        assert 1 <= shards <= slots
        return cls(slots=slots, shard_of_slot=tuple(slot * shards // slots for slot in range(slots)))

    @property
    def shards(self) -> int:
        return max(self.shard_of_slot) + 1

    def shard_for(self, tenant: str, subscriber_id: str) -> int:
        return self.shard_of_slot[slot_of(tenant, subscriber_id, self.slots)]
