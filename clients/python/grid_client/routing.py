"""Routing by the shard map (direct=True): the slot function, the map as fetched,
and where it sends each subscriber's call (`_Routes`). Shared by both clients,
which fetch the map and make the calls; nothing here does I/O or waits."""

import dataclasses
import hashlib

import grpc
from charging.v1 import charging_pb2 as pb

from grid_client.channels import Credentials
from grid_client.errors import reason_of
from grid_client.calls import _Call

# ChargingService calls that name one subscriber: a shard's public listener
# serves them for the subscribers of its slots. Everything else (streams,
# accounts, catalog, admin, ChargeBatch of many subscribers) is a front door's.
_DIRECT_METHODS = frozenset({
    "Reserve", "Debit", "Release", "Refund", "TopUp", "GetBalance", "GetTransaction", "CreateSession",
    "UpdateSession", "ReleaseSession", "GetSession", "Quote",
})

# What a shard answers for a slot it does not own (by its copy of the map).
STALE_MAP_REASON = "SHARD_MAP_STALE"

# A shard's own address failing so says the shard is restarting, moved, or its
# channel was closed for a new map, not that the operation is wrong: the same
# attempt goes to the front door at once, with the same request id (which
# replays the shard's answer if the shard had applied it).
_SHARD_DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

# Shards one attempt tries: the owner by the map, then the owner by a map fetched
# again after the first said SHARD_MAP_STALE; then the front door.
_SHARD_TRIES = 2

# After a shard's address failed, its subscribers' calls go to the front door for
# this long (not each call paying a failed try first).
_SHARD_DOWN_S = 1.0

# After GetShardMap failed, the next try waits this long; meanwhile calls go by
# the old map, or to the front door when the old one is known wrong.
_MAP_RETRY_S = 1.0


def slot_of(tenant: str, subscriber_id: str, slots: int) -> int:
    """A subscriber's slot: the grid's own function (grid.routing.slot_of, which
    GetShardMap's slot_function spells out), copied so the client does not import
    the server. The tenant is the map's: the caller's, from its credential."""
    digest = hashlib.blake2b(f"{tenant}\x00{subscriber_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % slots


def _host_of(target: str) -> str:
    """The host of a gRPC target: "grid.example:443", "dns:///grid.example:443", "[::1]:50051"."""
    host = target.rsplit("/", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _shard_credentials(target: str, credentials: Credentials | None) -> Credentials | None:
    """The credentials of shard channels: the front door's. A shard's public listener
    presents the front door's certificate, so under TLS it is verified as the front
    door's name (server_name, else the target's host), not as the shard's address,
    which a certificate seldom names (a pod IP)."""
    if credentials is None or not credentials.uses_tls or credentials.server_name:
        return credentials
    return dataclasses.replace(credentials, server_name=_host_of(target))


def _routing_key(call: _Call) -> str:
    """The subscriber a shard checks the slot of: the request's own (read-only calls
    do not name it in _Call)."""
    return call.request.subscriber_id


def _stale_map(error: grpc.RpcError) -> bool:
    return error.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(error) == STALE_MAP_REASON


@dataclasses.dataclass(frozen=True)
class _ShardMap:
    """A GetShardMap answer as the client routes by it: the owner of each slot and
    each shard's public address ("" when it serves none)."""

    epoch: int
    slots: int
    tenant: str
    owners: tuple[int, ...]  # owners[slot]: a shard id, -1 when no shard claims the slot
    addresses: dict  # shard id -> host:port
    fetched_at: float  # time.monotonic()

    @classmethod
    def of(cls, reply: pb.GetShardMapResponse, fetched_at: float) -> "_ShardMap":
        if reply.slots < 1:
            raise ValueError(f"a shard map of {reply.slots} slots")
        owners = [-1] * reply.slots
        for shard in reply.shards:
            for slots in shard.slot_ranges:
                for slot in range(slots.first, min(slots.last, reply.slots - 1) + 1):
                    owners[slot] = shard.shard_id
        return cls(reply.epoch, reply.slots, reply.tenant, tuple(owners),
                   {shard.shard_id: shard.address for shard in reply.shards}, fetched_at)

    def slot(self, subscriber_id: str) -> int:
        return slot_of(self.tenant, subscriber_id, self.slots)


class _Routes:
    """What a direct client knows of the shard map and where that sends each call.
    No I/O and no waiting: the clients fetch the map and make the calls; this decides.

    None from `address` means the front door: no usable map yet, the map is known
    to be wrong (a shard said so, or was down) and fetching it again failed, the
    slot's shard disagrees with the front door's map, or the shard is down."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.map: _ShardMap | None = None
        self.stale = False  # the map is known wrong somewhere: fetch it before trusting it again
        self.fetch_not_before = 0.0
        # Slots whose shard said SHARD_MAP_STALE although a map fetched just then still
        # names it (a slot moving; the shard and the front door disagree for a while):
        # front door until the next map, not a failed try and a fetch per call.
        self.front_door_slots: set[int] = set()
        self.down_until: dict[str, float] = {}

    def due(self, now: float) -> bool:
        """Whether to fetch the map before this call: none yet, known wrong, or older than refresh_s."""
        if now < self.fetch_not_before:
            return False
        return self.map is None or self.stale or now - self.map.fetched_at >= self.refresh_s

    def usable(self) -> _ShardMap | None:
        return None if self.stale else self.map

    def install(self, reply: pb.GetShardMapResponse, now: float) -> list[str]:
        """Take a fetched map; returns the addresses it no longer names (their channels to close)."""
        fresh = _ShardMap.of(reply, now)
        before = set(self.map.addresses.values()) if self.map is not None else set()
        self.map, self.stale = fresh, False
        self.front_door_slots.clear()
        return sorted(before - set(fresh.addresses.values()) - {""})

    def fetch_failed(self, now: float, *, map_known_wrong: bool) -> None:
        self.fetch_not_before = now + min(_MAP_RETRY_S, self.refresh_s)
        if map_known_wrong:
            self.stale = True

    def address(self, shard_map: _ShardMap | None, subscriber_id: str, now: float) -> str | None:
        if shard_map is None:
            return None
        slot = shard_map.slot(subscriber_id)
        address = shard_map.addresses.get(shard_map.owners[slot], "")
        if not address or slot in self.front_door_slots or self.down_until.get(address, 0.0) > now:
            return None
        return address

    def rerouted(self, shard_map: _ShardMap | None, subscriber_id: str, stale_address: str, now: float) -> str | None:
        """After `stale_address` said SHARD_MAP_STALE and the map was fetched again: the
        next shard to try, or None (the front door) when the map still names the same
        shard or could not be fetched."""
        address = self.address(shard_map, subscriber_id, now)
        if address is not None and address == stale_address:
            self.front_door_slots.add(shard_map.slot(subscriber_id))
            return None
        return address

    def shard_down(self, address: str, now: float) -> None:
        """The address failed UNAVAILABLE: front door for its calls a while, and the map fetched again."""
        self.down_until[address] = now + _SHARD_DOWN_S
        self.stale = True
