"""Sync and asyncio clients of ChargingService, AccountService and CatalogService.

Requests are built once (`_Requests`); the two clients differ only in how they
wait. Mutating calls go through `_execute`: the same request id on every retry,
then GetTransaction to settle an outcome the retries left unclear
(DESIGN.md section 5, invariant 7).

Where a call goes is decided per attempt (`_once`): the front door, or with
direct=True the shard that owns the subscriber's slot by the shard map
(`_Routes`), falling back to the front door whenever the shard cannot answer
for it. The asyncio client can also gather concurrent charging operations into
ChargeBatch messages (`_Batcher`). Neither changes what a caller gets back.
"""

import asyncio
import dataclasses
import hashlib
import os
import threading
import time
import uuid

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from google.rpc import status_pb2

from grid_client.errors import (GridError, OutcomeUnknown, Overloaded, StatusError, Unavailable, from_rpc_error,
                                reason_of, retry_delay_s)

# Failures after which the operation may or may not have happened, or did not
# happen but may if tried again: retry with the same request id. CANCELLED is
# here because only the server cancels a call this client made (a server
# shutting down cuts the calls it had not yet taken).
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
})


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How a client reaches a secured grid: TLS (trusting root_certificates, or the
    system's roots when tls is set without them), a client certificate for mutual
    TLS, and an API key or a bearer token (a signed JWT) naming tenant and scopes."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    api_key: str | None = None
    token: str | None = None
    tls: bool = False
    # The name the grid's certificate was issued to, when it is not the target's host.
    server_name: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.root_certificates is not None

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        if self.api_key:
            return (("x-api-key", self.api_key),)
        if self.token:
            return (("authorization", f"Bearer {self.token}"),)
        return None

    @classmethod
    def from_environment(cls, environ=os.environ) -> "Credentials":
        """GRID_TLS_CA, GRID_TLS_CERT, GRID_TLS_KEY (PEM file paths), GRID_TLS=1 (system
        roots), GRID_TLS_SERVER_NAME, GRID_API_KEY, GRID_TOKEN."""
        def read(name: str) -> bytes | None:
            path = environ.get(name)
            if not path:
                return None
            with open(path, "rb") as file:
                return file.read()

        return cls(read("GRID_TLS_CA"), read("GRID_TLS_CERT"), read("GRID_TLS_KEY"),
                   environ.get("GRID_API_KEY") or None, environ.get("GRID_TOKEN") or None,
                   environ.get("GRID_TLS", "") not in ("", "0"), environ.get("GRID_TLS_SERVER_NAME") or None)


def make_channel(target: str, credentials: Credentials | None = None, *, aio: bool = False, options=()):
    """A channel to the grid: TLS when the credentials say so, else plaintext."""
    module = grpc.aio if aio else grpc
    options = list(options)
    if credentials is None or not credentials.uses_tls:
        return module.insecure_channel(target, options=options)
    if credentials.server_name:
        options.append(("grpc.ssl_target_name_override", credentials.server_name))
    channel_credentials = grpc.ssl_channel_credentials(
        credentials.root_certificates, credentials.private_key, credentials.certificate_chain)
    return module.secure_channel(target, channel_credentials, options=options)


def _retryable(error: grpc.RpcError) -> bool:
    """RESOURCE_EXHAUSTED is worth a retry only when the grid shed load; gRPC's own
    (a message over the size limit) will fail the same way every time."""
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return reason_of(error) == "OVERLOADED"
    return error.code() in RETRYABLE_CODES

# GetTransactionResponse field holding each method's reply.
_TRANSACTION_FIELD = {
    "Reserve": "reserve", "Debit": "debit", "Release": "release", "Refund": "refund", "TopUp": "top_up",
    "CreateAccount": "create_account", "SetAccountState": "set_account_state",
    "CreateSession": "session", "UpdateSession": "session", "ReleaseSession": "session",
    "Subscribe": "subscribe", "Unsubscribe": "unsubscribe",
}


def session_request_id(session_id: str, invocation_sequence_number: int) -> str:
    """The request id the grid files a session request under (for GetTransaction)."""
    return f"session/{session_id}/{invocation_sequence_number}"


def _unit_usage(units) -> list:
    """units: MultipleUnitUsage messages, dicts of their fields, or
    (rating_group, requested_units, used_units) tuples."""
    out = []
    for unit in units:
        if isinstance(unit, pb.MultipleUnitUsage):
            out.append(unit)
        elif isinstance(unit, dict):
            out.append(pb.MultipleUnitUsage(**unit))
        else:
            rating_group, requested_units, used_units = unit
            out.append(pb.MultipleUnitUsage(rating_group=rating_group, requested_units=requested_units,
                                            used_units=used_units))
    return out


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    # Tries of one call, the first included.
    attempts: int = 4
    # Deadline of each try, seconds.
    timeout_s: float = 5.0
    # Wait before the second try, doubled each time up to backoff_max_s.
    backoff_first_s: float = 0.05
    backoff_max_s: float = 1.0

    def backoffs_s(self):
        wait_s = self.backoff_first_s
        for _ in range(self.attempts - 1):
            yield wait_s
            wait_s = min(wait_s * 2, self.backoff_max_s)


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True)
class _Call:
    service: str  # "charging", "account" or "catalog"
    method: str
    request: object
    subscriber_id: str = ""
    request_id: str = ""


# ---------------------------------------------------------------- routing by the shard map (direct=True)

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


class _Requests:
    """Builds each call's request; shared by both clients."""

    @staticmethod
    def create_account(subscriber_id, currency, tariff_plan_id, credit_limit_micros=0, request_id=None,
                       buckets=()):
        request_id = request_id or new_request_id()
        request = pb.CreateAccountRequest(
            request_id=request_id, subscriber_id=subscriber_id, currency=currency,
            credit_limit_micros=credit_limit_micros, tariff_plan_id=tariff_plan_id,
            buckets=[b if isinstance(b, pb.BucketGrant) else pb.BucketGrant(**b) for b in buckets],
        )
        return _Call("account", "CreateAccount", request, subscriber_id, request_id)

    @staticmethod
    def set_account_state(subscriber_id, state, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.SetAccountStateRequest(request_id=request_id, subscriber_id=subscriber_id, state=state)
        return _Call("account", "SetAccountState", request, subscriber_id, request_id)

    @staticmethod
    def top_up(subscriber_id, amount_micros, request_id=None, bucket=None):
        """bucket: a BucketGrant message or a dict of its fields (amount_micros then 0)."""
        request_id = request_id or new_request_id()
        request = pb.TopUpRequest(request_id=request_id, subscriber_id=subscriber_id, amount_micros=amount_micros)
        if bucket is not None:
            request.bucket.CopyFrom(bucket if isinstance(bucket, pb.BucketGrant) else pb.BucketGrant(**bucket))
        return _Call("charging", "TopUp", request, subscriber_id, request_id)

    @staticmethod
    def reserve(subscriber_id, session_id, rating_group, requested_units, request_id=None, destination="",
                roaming_zone="", service_identifier=0):
        request_id = request_id or new_request_id()
        request = pb.ReserveRequest(
            request_id=request_id, subscriber_id=subscriber_id, session_id=session_id,
            rating_group=rating_group, requested_units=requested_units, destination=destination,
            roaming_zone=roaming_zone, service_identifier=service_identifier,
        )
        return _Call("charging", "Reserve", request, subscriber_id, request_id)

    @staticmethod
    def debit(subscriber_id, used_units, reservation_id="", rating_group=0, final=False, request_id=None,
              destination="", roaming_zone="", usage_started_at_ms=0, service_identifier=0):
        request_id = request_id or new_request_id()
        request = pb.DebitRequest(
            request_id=request_id, subscriber_id=subscriber_id, reservation_id=reservation_id,
            rating_group=rating_group, used_units=used_units, final=final, destination=destination,
            roaming_zone=roaming_zone, usage_started_at_ms=usage_started_at_ms, service_identifier=service_identifier,
        )
        return _Call("charging", "Debit", request, subscriber_id, request_id)

    @staticmethod
    def release(subscriber_id, reservation_id, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.ReleaseRequest(request_id=request_id, subscriber_id=subscriber_id, reservation_id=reservation_id)
        return _Call("charging", "Release", request, subscriber_id, request_id)

    @staticmethod
    def refund(subscriber_id, charge_id, amount_micros, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.RefundRequest(
            request_id=request_id, subscriber_id=subscriber_id, charge_id=charge_id, amount_micros=amount_micros
        )
        return _Call("charging", "Refund", request, subscriber_id, request_id)

    @staticmethod
    def create_session(subscriber_id, session_id, units, invocation_sequence_number=0, notify_client_id=""):
        """units: (rating_group, requested_units, used_units) tuples, dicts or MultipleUnitUsage."""
        request = pb.CreateSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units), notify_client_id=notify_client_id,
        )
        return _Call("charging", "CreateSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def update_session(subscriber_id, session_id, invocation_sequence_number, units, notify_client_id=""):
        request = pb.UpdateSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units), notify_client_id=notify_client_id,
        )
        return _Call("charging", "UpdateSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def release_session(subscriber_id, session_id, invocation_sequence_number, units=()):
        request = pb.ReleaseSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units),
        )
        return _Call("charging", "ReleaseSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def get_session(subscriber_id, session_id):
        return _Call("charging", "GetSession", pb.GetSessionRequest(subscriber_id=subscriber_id, session_id=session_id))

    @staticmethod
    def put_tariff(tariff_plan_id, rates, policy_counters=(), controls=()):
        """rates: RatingGroupRate messages or dicts of their fields; policy_counters:
        PolicyCounter messages or dicts (thresholds as dicts of at_least and status);
        controls: PlanControl messages or dicts."""
        messages = [rate if isinstance(rate, pb.RatingGroupRate) else pb.RatingGroupRate(**rate) for rate in rates]
        counters = [c if isinstance(c, pb.PolicyCounter) else pb.PolicyCounter(
            **{**c, "thresholds": [pb.PolicyCounterThreshold(**t) if isinstance(t, dict) else t
                                   for t in c.get("thresholds", ())]}) for c in policy_counters]
        plan_controls = [c if isinstance(c, pb.PlanControl) else pb.PlanControl(**c) for c in controls]
        return _Call("catalog", "PutTariff", pb.PutTariffRequest(tariff_plan_id=tariff_plan_id, rates=messages,
                                                                 policy_counters=counters, controls=plan_controls))

    @staticmethod
    def subscribe(subscriber_id, client_id, counter_ids=(), request_id=None):
        """Subscribe a policy function to a subscriber's counters (all when none named)."""
        request_id = request_id or new_request_id()
        request = pb.SubscribeRequest(request_id=request_id, subscriber_id=subscriber_id, client_id=client_id,
                                      counter_ids=list(counter_ids))
        return _Call("spending", "Subscribe", request, subscriber_id, request_id)

    @staticmethod
    def unsubscribe(subscriber_id, client_id, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.UnsubscribeRequest(request_id=request_id, subscriber_id=subscriber_id, client_id=client_id)
        return _Call("spending", "Unsubscribe", request, subscriber_id, request_id)

    @staticmethod
    def get_billing_cycle(subscriber_id, at_ms=0):
        """Charges, refunds and usage of the billing cycle (calendar month) holding at_ms (0: now)."""
        return _Call("account", "GetBillingCycle", pb.GetBillingCycleRequest(subscriber_id=subscriber_id, at_ms=at_ms))

    @staticmethod
    def get_counters(subscriber_id):
        return _Call("spending", "GetCounters", pb.GetCountersRequest(subscriber_id=subscriber_id))

    @staticmethod
    def get_tariff(tariff_plan_id, version=0):
        return _Call("catalog", "GetTariff", pb.GetTariffRequest(tariff_plan_id=tariff_plan_id, version=version))

    @staticmethod
    def put_tariff_request(request):
        """A whole PutTariffRequest (what `grid catalog apply` sends)."""
        return _Call("catalog", "PutTariff", request)

    @staticmethod
    def delegate_from_pool(pool_id, member_id, amount_micros, valid_until_ms=0, request_id=None):
        """A sub-quota of a pooled balance for a member (a monetary bucket on the member's shard)."""
        request = pb.DelegateFromPoolRequest(request_id=request_id or new_request_id(), pool_id=pool_id,
                                             member_id=member_id, amount_micros=amount_micros,
                                             valid_until_ms=valid_until_ms)
        # Retried with the same request id (each step is idempotent); no GetTransaction to settle by.
        return _Call("account", "DelegateFromPool", request)

    @staticmethod
    def reclaim_to_pool(pool_id, member_id, request_id=None):
        """What a member's sub-quotas from the pool still hold goes back to the pool."""
        request = pb.ReclaimToPoolRequest(request_id=request_id or new_request_id(), pool_id=pool_id,
                                          member_id=member_id)
        return _Call("account", "ReclaimToPool", request)

    @staticmethod
    def quote(subscriber_id, rating_group, used_units=0, destination="", roaming_zone="", at_ms=0,
              service_identifier=0):
        """Advice of charge: the cost of the usage and the units the balance buys."""
        return _Call("charging", "Quote", pb.QuoteRequest(
            subscriber_id=subscriber_id, rating_group=rating_group, used_units=used_units, destination=destination,
            roaming_zone=roaming_zone, at_ms=at_ms, service_identifier=service_identifier))

    @staticmethod
    def balance(subscriber_id):
        return _Call("charging", "GetBalance", pb.GetBalanceRequest(subscriber_id=subscriber_id))

    @staticmethod
    def get_account(subscriber_id):
        return _Call("account", "GetAccount", pb.GetAccountRequest(subscriber_id=subscriber_id))

    @staticmethod
    def create_snapshot(label=""):
        return _Call("admin", "CreateSnapshot", pb.CreateSnapshotRequest(label=label))

    @staticmethod
    def list_snapshots():
        return _Call("admin", "ListSnapshots", pb.ListSnapshotsRequest())

    @staticmethod
    def restore_snapshot(snapshot_id, target_data_dir):
        return _Call("admin", "RestoreSnapshot",
                     pb.RestoreSnapshotRequest(snapshot_id=snapshot_id, target_data_dir=target_data_dir))

    @staticmethod
    def dispute(subscriber_id, request_id="", charge_id="", from_ms=0, to_ms=0, limit=0):
        """The journal chain behind a request id, a charge id, or a time window."""
        return _Call("admin", "Dispute", pb.DisputeRequest(
            subscriber_id=subscriber_id, request_id=request_id, charge_id=charge_id, from_ms=from_ms, to_ms=to_ms,
            limit=limit))

    @staticmethod
    def audit():
        """Every shard's journal reconciled with its state, and the leakage report."""
        return _Call("admin", "Audit", pb.AuditRequest())

    @staticmethod
    def export_cdrs(cursor="", limit=0):
        """A page of rated-event records; pass the reply's next_cursor to go on."""
        return _Call("admin", "ExportCdrs", pb.ExportCdrsRequest(cursor=cursor, limit=limit))

    @staticmethod
    def get_transaction(subscriber_id, request_id):
        return _Call("charging", "GetTransaction",
                     pb.GetTransactionRequest(subscriber_id=subscriber_id, request_id=request_id))


def _settled(call: _Call, transaction: pb.GetTransactionResponse, last_error: grpc.RpcError):
    """What GetTransaction says of a call the retries could not finish."""
    if transaction.found:
        return getattr(transaction, _TRANSACTION_FIELD[call.method])
    if last_error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        raise Overloaded(f"shed on every attempt: {last_error.details()}", code=last_error.code(),
                         request_id=call.request_id)
    raise Unavailable(
        f"{call.method} did not take effect ({last_error.code().name}); retrying with request_id "
        f"{call.request_id} is safe", code=last_error.code(), request_id=call.request_id,
    )


def _stubs(channel):
    return {
        "charging": pb_grpc.ChargingServiceStub(channel),
        "account": pb_grpc.AccountServiceStub(channel),
        "catalog": pb_grpc.CatalogServiceStub(channel),
        "admin": pb_grpc.AdminServiceStub(channel),
        "spending": pb_grpc.SpendingLimitServiceStub(channel),
    }


class ChargingClient:
    """Blocking client. Every method returns the charging.v1 response message.

    direct=True sends the subscriber-keyed ChargingService calls (Reserve, Debit,
    Release, Refund, TopUp, GetBalance, GetTransaction, the session calls, Quote)
    straight to the shard that owns the subscriber's slot, saving the front
    door's hop. The map comes from the front door (GetShardMap) at the first such
    call, again at most every map_refresh_s, and at once when a shard answers
    SHARD_MAP_STALE; shard channels take the front door's credentials and TLS
    (the shard's certificate verified as the front door's name).
    A shard that says the map is stale sends the call on, with a fresh map, to
    the new owner, or to the front door when the map still names that shard; an
    unreachable shard sends it to the front door. Either way it is the same
    request, same request id: retries and GetTransaction settlement are those of
    the front-door path, wherever each attempt goes. Everything else (streams,
    accounts, catalog, admin) always goes to the front door.

    It is off by default: it needs every shard's address reachable from the
    client (inside the cluster, not through one load balancer or port-forward),
    while the front door is the one address that always works. `direct_calls`
    counts the calls shards answered directly, `front_door_fallbacks` those that
    went to the front door after a shard could not answer, `map_refreshes` the
    maps fetched."""

    def __init__(self, target: str = "127.0.0.1:50051", *, retry: RetryPolicy = RetryPolicy(),
                 channel: grpc.Channel | None = None, credentials: Credentials | None = None,
                 direct: bool = False, map_refresh_s: float = 30.0) -> None:
        self.retry = retry
        self._channel = channel or make_channel(target, credentials)
        self._shard_credentials = _shard_credentials(target, credentials)
        self._metadata = credentials.metadata() if credentials else None
        self._stubs = _stubs(self._channel)
        self._routes = _Routes(map_refresh_s) if direct else None
        self._map_lock = threading.Lock()  # one GetShardMap at a time, however many threads call
        self._channels_lock = threading.Lock()
        self._shard_channels: dict[str, grpc.Channel] = {}
        self._shard_stubs: dict[str, pb_grpc.ChargingServiceStub] = {}
        self.direct_calls = 0
        self.front_door_fallbacks = 0
        self.map_refreshes = 0
        for name in ("create_account", "set_account_state", "top_up", "reserve", "debit", "release", "refund",
                     "put_tariff", "get_tariff", "balance", "get_account", "get_transaction", "create_snapshot",
                     "list_snapshots", "restore_snapshot", "create_session", "update_session", "release_session",
                     "get_session", "dispute", "subscribe", "unsubscribe", "get_counters", "export_cdrs", "audit", "get_billing_cycle",
                     "put_tariff_request", "quote", "delegate_from_pool", "reclaim_to_pool"):
            builder = getattr(_Requests, name)
            setattr(self, name, self._bind(builder))

    def _bind(self, builder):
        def method(*args, **kwargs):
            return self._execute(builder(*args, **kwargs))
        method.__doc__ = builder.__doc__
        method.__name__ = builder.__name__
        return method

    def _once(self, call: _Call):
        """One attempt, wherever it goes (a shard with direct=True, else the front door)."""
        if self._routes is not None and call.service == "charging" and call.method in _DIRECT_METHODS:
            return self._direct_once(call)
        return self._front_door_once(call)

    def _front_door_once(self, call: _Call):
        return getattr(self._stubs[call.service], call.method)(call.request, timeout=self.retry.timeout_s,
                                                                   metadata=self._metadata)

    def _direct_once(self, call: _Call):
        """One attempt at the owning shard; at the front door, same request, when there
        is no usable map, or the shards tried said the map is stale or were down.
        Any other failure is the attempt's, for `_execute` to retry or raise."""
        routes = self._routes
        shard_map = self._current_map()
        address = routes.address(shard_map, _routing_key(call), time.monotonic())
        tried = False
        for _ in range(_SHARD_TRIES):
            if address is None:
                break
            tried = True
            try:
                reply = getattr(self._shard_stub(address), call.method)(call.request, timeout=self.retry.timeout_s,
                                                                        metadata=self._metadata)
            except grpc.RpcError as error:
                if _stale_map(error):
                    shard_map = self._refreshed_map(shard_map)
                    address = routes.rerouted(shard_map, _routing_key(call), address, time.monotonic())
                    continue
                if error.code() in _SHARD_DOWN_CODES:
                    routes.shard_down(address, time.monotonic())
                    break
                raise
            self.direct_calls += 1
            return reply
        if tried:
            self.front_door_fallbacks += 1
        return self._front_door_once(call)

    def _current_map(self) -> _ShardMap | None:
        """The map to route by, fetched first when due; None: use the front door.
        A caller with a usable map does not wait for another's periodic fetch."""
        routes = self._routes
        if routes.due(time.monotonic()) and self._map_lock.acquire(blocking=routes.usable() is None):
            try:
                if routes.due(time.monotonic()):  # not fetched by another thread meanwhile
                    self._fetch_map(map_known_wrong=routes.stale)
            finally:
                self._map_lock.release()
        return routes.usable()

    def _refreshed_map(self, used: _ShardMap | None) -> _ShardMap | None:
        """The map after a shard said `used` is stale: fetched again, unless another
        thread fetched a newer one meanwhile (one fetch for a burst of stale answers)."""
        routes = self._routes
        with self._map_lock:
            if routes.map is used:
                if time.monotonic() >= routes.fetch_not_before:
                    self._fetch_map(map_known_wrong=True)
                else:
                    routes.stale = True
        return routes.usable()

    def _fetch_map(self, *, map_known_wrong: bool) -> None:
        try:
            reply = self._stubs["charging"].GetShardMap(pb.GetShardMapRequest(), timeout=self.retry.timeout_s,
                                                        metadata=self._metadata)
            dropped = self._routes.install(reply, time.monotonic())
        except (grpc.RpcError, ValueError):
            self._routes.fetch_failed(time.monotonic(), map_known_wrong=map_known_wrong)
            return
        self.map_refreshes += 1
        for address in dropped:  # calls still on them fail CANCELLED and go to the front door
            with self._channels_lock:
                self._shard_stubs.pop(address, None)
                channel = self._shard_channels.pop(address, None)
            if channel is not None:
                channel.close()

    def _shard_stub(self, address: str) -> pb_grpc.ChargingServiceStub:
        stub = self._shard_stubs.get(address)
        if stub is None:
            with self._channels_lock:
                stub = self._shard_stubs.get(address)
                if stub is None:
                    channel = make_channel(address, self._shard_credentials)
                    self._shard_channels[address] = channel
                    stub = self._shard_stubs[address] = pb_grpc.ChargingServiceStub(channel)
        return stub

    def _execute(self, call: _Call):
        backoffs = self.retry.backoffs_s()
        while True:
            try:
                return self._once(call)
            except grpc.RpcError as error:
                if not _retryable(error):
                    raise from_rpc_error(error, call.request_id) from None
                wait_s = next(backoffs, None)
                if wait_s is None:
                    if not call.request_id:
                        raise from_rpc_error(error) from None
                    return self._resolve(call, error)
                time.sleep(max(wait_s, retry_delay_s(error)))

    def _resolve(self, call: _Call, last_error: grpc.RpcError):
        try:
            transaction = self._once(_Requests.get_transaction(call.subscriber_id, call.request_id))
        except grpc.RpcError as error:
            raise OutcomeUnknown(
                f"{call.method} {call.request_id}: no answer ({last_error.code().name}) and GetTransaction failed "
                f"({error.code().name}); retry with the same request_id", code=last_error.code(),
                request_id=call.request_id,
            ) from None
        return _settled(call, transaction, last_error)

    def watch_notifications(self, client_id: str, cursor: str = ""):
        """Yield the Notification messages of client_id's sessions, without end.
        A broken stream is resumed from the last cursor received (nothing is
        missed); after the retry policy's attempts fail in a row, the error is raised."""
        return self._watch("charging", "WatchNotifications", pb.WatchNotificationsRequest, client_id, cursor)

    def watch_status(self, client_id: str, cursor: str = ""):
        """Yield the StatusNotification messages of client_id's subscriptions (policy
        counters), without end, resumed from the last cursor like watch_notifications."""
        return self._watch("spending", "WatchStatus", pb.WatchStatusRequest, client_id, cursor)

    def _watch(self, service: str, method: str, request_type, client_id: str, cursor: str):
        backoffs = self.retry.backoffs_s()
        while True:
            stream = getattr(self._stubs[service], method)(request_type(client_id=client_id, cursor=cursor),
                                                         metadata=self._metadata)
            try:
                for notification in stream:
                    cursor = notification.cursor
                    backoffs = self.retry.backoffs_s()
                    yield notification
                return
            except grpc.RpcError as error:
                wait_s = next(backoffs, None) if error.code() in RETRYABLE_CODES else None
                if wait_s is None:
                    raise from_rpc_error(error) from None
                time.sleep(wait_s)
            finally:
                stream.cancel()

    def close(self) -> None:
        with self._channels_lock:
            channels = list(self._shard_channels.values())
            self._shard_channels.clear()
            self._shard_stubs.clear()
        for channel in channels:
            channel.close()
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- batching (AsyncChargingClient)

# ChargeRequest's operation field for each call a ChargeBatch carries.
_BATCH_FIELDS = {
    "Reserve": "reserve", "Debit": "debit", "Release": "release", "Refund": "refund", "TopUp": "top_up",
    "CreateSession": "create_session", "UpdateSession": "update_session", "ReleaseSession": "release_session",
}

# What one ChargeBatch message may carry (the grid answers INVALID_ARGUMENT past it).
CHARGE_BATCH_OPERATIONS_MAX = 8190

# ChargeBatch messages of one client in flight at once; more wait for one to finish.
_BATCHES_IN_FLIGHT_MAX = 4


def _charge_request(call: _Call, tag: int) -> pb.ChargeRequest:
    message = pb.ChargeRequest(correlation_tag=tag)
    getattr(message, _BATCH_FIELDS[call.method]).CopyFrom(call.request)
    return message


@dataclasses.dataclass(eq=False)
class _Held:
    """One caller's operation in the batcher, until its caller has an answer."""

    call: _Call
    future: asyncio.Future
    backoffs: object  # the operation's own retries (RetryPolicy.backoffs_s), for errors of it alone
    holds_room: bool = True


class _Batcher:
    """Gathers concurrent charging operations into ChargeBatch messages (see
    AsyncChargingClient). Every operation taken gets exactly one answer: its reply
    or its exception, set on its caller's future (`_finish`), whatever happens to
    the messages that carried it."""

    def __init__(self, client: "AsyncChargingClient", window_s: float, operations_max: int) -> None:
        self._client = client
        self._window_s = window_s
        self._operations_max = operations_max
        # Operations held: one message collecting, and each in flight full.
        self._room = asyncio.Semaphore(operations_max * (_BATCHES_IN_FLIGHT_MAX + 1))
        self._in_flight = asyncio.Semaphore(_BATCHES_IN_FLIGHT_MAX)
        self._collecting: list[_Held] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._retrying: set[_Held] = set()  # waiting out a backoff before a later message

    async def submit(self, call: _Call):
        await self._room.acquire()
        held = _Held(call, asyncio.get_running_loop().create_future(), self._client.retry.backoffs_s())
        self._collect(held)
        return await held.future

    def _collect(self, held: _Held) -> None:
        self._retrying.discard(held)
        self._collecting.append(held)
        if len(self._collecting) >= self._operations_max:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._collecting:
            chunk = self._collecting[:self._operations_max]
            del self._collecting[:self._operations_max]
            self._spawn(self._dispatch(chunk))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, held: _Held, reply=None, error: BaseException | None = None) -> None:
        if not held.future.done():
            if error is None:
                held.future.set_result(reply)
            else:
                held.future.set_exception(error)
        if held.holds_room:
            held.holds_room = False
            self._room.release()

    async def _dispatch(self, chunk: list[_Held]) -> None:
        """One message's worth of operations: one ChargeBatch per destination (the
        front door, or each owning shard), submission order kept within each."""
        live = []
        for held in chunk:
            if held.future.done():  # its caller gave up before it was sent
                self._finish(held)
            else:
                live.append(held)
        client = self._client
        groups: dict[str | None, list[_Held]] = {}
        shard_map = None
        try:
            if client._routes is not None:
                shard_map = await client._current_map()
            now = time.monotonic()
            for held in live:
                address = client._routes.address(shard_map, _routing_key(held.call), now) \
                    if client._routes is not None else None
                groups.setdefault(address, []).append(held)
        except BaseException as error:
            self._abandon(live, error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        await asyncio.gather(*(self._send(address, members, shard_map, _SHARD_TRIES)
                               for address, members in groups.items()))

    def _abandon(self, members: list[_Held], error: BaseException) -> None:
        """Answer operations whose message broke with something no call raises (a closed channel...)."""
        for held in members:
            if isinstance(error, asyncio.CancelledError):
                held.future.cancel()
                self._finish(held)
            else:
                self._finish(held, error=error)

    async def _send(self, address: str | None, members: list[_Held], shard_map, shard_tries: int) -> None:
        """The members' ChargeBatch at `address` (None: the front door); the operations
        a shard said are not its own are sent on again by a map fetched afresh."""
        client = self._client
        groups: dict[str | None, list[_Held]] = {}
        try:
            async with self._in_flight:
                address, stale = await self._attempts(address, members)
            if stale:  # the in-flight place is given back first: sending on takes another
                shard_map = await client._refreshed_map(shard_map)
                now = time.monotonic()
                for held in stale:
                    destination = client._routes.rerouted(shard_map, _routing_key(held.call), address, now) \
                        if shard_tries > 1 else None
                    groups.setdefault(destination, []).append(held)
        except BaseException as error:
            self._abandon(members, error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        if None in groups:
            client.front_door_fallbacks += 1
        await asyncio.gather(*(self._send(destination, again, shard_map, shard_tries - 1)
                               for destination, again in groups.items()))

    async def _attempts(self, address: str | None, members: list[_Held]):
        """The ChargeBatch, retried whole with the same request ids per the retry policy;
        then each operation answered. Returns the address that answered and the
        members it said SHARD_MAP_STALE for (to send on)."""
        client = self._client
        request = pb.ChargeBatchRequest(operations=[_charge_request(held.call, tag)
                                                    for tag, held in enumerate(members)])
        backoffs = client.retry.backoffs_s()
        while True:
            try:
                response = await client._charge_batch(address, request)
            except grpc.RpcError as error:
                if address is not None and error.code() in _SHARD_DOWN_CODES:
                    client._routes.shard_down(address, time.monotonic())
                    client.front_door_fallbacks += 1
                    address = None  # the same message, at once, to the front door
                    continue
                if address is not None and _stale_map(error):
                    return address, members
                if error.code() == grpc.StatusCode.UNIMPLEMENTED or (
                        error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not _retryable(error)):
                    # A grid without ChargeBatch, or a message over gRPC's size limit
                    # that each operation alone is not: each the unary way.
                    await asyncio.gather(*(self._unary(held) for held in members))
                    return address, []
                if not _retryable(error):
                    for held in members:
                        self._finish(held, error=from_rpc_error(error, held.call.request_id))
                    return address, []
                wait_s = next(backoffs, None)
                if wait_s is None:
                    await asyncio.gather(*(self._settle(held, error) for held in members))
                    return address, []
                await asyncio.sleep(max(wait_s, retry_delay_s(error)))
                continue
            return address, self._answered(address, members, response)

    def _answered(self, address: str | None, members: list[_Held], response: pb.ChargeBatchResponse) -> list[_Held]:
        """Each operation's reply to its caller, or its error as the unary call would
        have raised it; its own retryable error goes into a later message after its
        backoff. Returns the operations a shard said are not its own."""
        stale = []
        for position, held in enumerate(members):
            kind = response.replies[position].WhichOneof("reply") if position < len(response.replies) else None
            if kind is None:  # no answer for it (a grid bug): settled like a lost reply
                self._spawn(self._settle(held, StatusError(status_pb2.Status(
                    code=grpc.StatusCode.UNAVAILABLE.value[0], message="no reply for the operation in the batch"))))
                continue
            reply = response.replies[position]
            if kind != "error":
                self._finish(held, getattr(reply, kind))
                continue
            error = StatusError(reply.error)
            if address is not None and _stale_map(error):
                stale.append(held)
            elif _retryable(error):
                wait_s = next(held.backoffs, None)
                if wait_s is None:
                    self._spawn(self._settle(held, error))
                else:
                    self._retrying.add(held)
                    asyncio.get_running_loop().call_later(max(wait_s, retry_delay_s(error)), self._collect, held)
            else:
                self._finish(held, error=from_rpc_error(error, held.call.request_id))
        return stale

    async def _settle(self, held: _Held, last_error: grpc.RpcError) -> None:
        """GetTransaction, as the unary path asks when retries ran out."""
        try:
            reply = await self._client._resolve(held.call, last_error)
        except GridError as error:
            self._finish(held, error=error)
        except BaseException as error:
            self._abandon([held], error)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            self._finish(held, reply)

    async def _unary(self, held: _Held) -> None:
        try:
            reply = await self._client._execute(held.call)
        except GridError as error:
            self._finish(held, error=error)
        except BaseException as error:
            self._abandon([held], error)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            self._finish(held, reply)

    async def drain(self) -> None:
        """Send what is collecting now and wait until every operation held is answered."""
        while self._collecting or self._tasks or self._retrying:
            self._flush()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                await asyncio.sleep(self._window_s)


class AsyncChargingClient:
    """asyncio client: the same methods as ChargingClient, as coroutines; direct and
    map_refresh_s as there (off by default for the same reason).

    batch_window_s > 0 gathers concurrent reserve, debit, release, refund, top_up,
    create_session, update_session and release_session calls (what a ChargeRequest
    carries) for at most that long, or until batch_operations_max wait, and sends
    them as one ChargeBatch: to the front door, or with direct=True one per owning
    shard. Fewer messages and group commits per operation, for up to
    batch_window_s more latency; hence off (0) by default. Each caller still gets
    its own reply or exactly the exception its unary call would have raised; an
    operation's own retryable error (shed, UNAVAILABLE) is retried in a later
    batch, a failed message whole with the same request ids, then settled by
    GetTransaction, per the retry policy as for a unary call. A subscriber's
    operations keep their submission order within a message; operations in
    different messages are as concurrent as unary calls are.

    Bounded: at most batch_operations_max operations a message (8,190 at most),
    at most 4 messages in flight, and at most batch_operations_max * 5 operations
    held (waiting or in flight); past that callers wait for room, nothing queues
    without bound. `batches_sent`, `batched_operations` and `largest_batch` count
    the ChargeBatch messages answered (`direct_calls` counts a message a shard
    answered as one call)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, retry: RetryPolicy = RetryPolicy(),
                 channel: grpc.aio.Channel | None = None, credentials: Credentials | None = None,
                 direct: bool = False, map_refresh_s: float = 30.0, batch_window_s: float = 0.0,
                 batch_operations_max: int = 1000) -> None:
        if batch_window_s < 0:
            raise ValueError(f"batch_window_s must be >= 0, not {batch_window_s}")
        if not 1 <= batch_operations_max <= CHARGE_BATCH_OPERATIONS_MAX:
            raise ValueError(f"batch_operations_max must be between 1 and {CHARGE_BATCH_OPERATIONS_MAX}")
        self.retry = retry
        self._channel = channel or make_channel(target, credentials, aio=True)
        self._shard_credentials = _shard_credentials(target, credentials)
        self._metadata = credentials.metadata() if credentials else None
        self._stubs = _stubs(self._channel)
        self._routes = _Routes(map_refresh_s) if direct else None
        self._map_lock = asyncio.Lock()  # one GetShardMap at a time, however many calls wait for it
        self._shard_channels: dict[str, grpc.aio.Channel] = {}
        self._shard_stubs: dict[str, pb_grpc.ChargingServiceStub] = {}
        self._closing: set[asyncio.Task] = set()  # channels of addresses a new map dropped, closing with grace
        self._batcher = _Batcher(self, batch_window_s, batch_operations_max) if batch_window_s > 0 else None
        self.direct_calls = 0
        self.front_door_fallbacks = 0
        self.map_refreshes = 0
        self.batches_sent = 0
        self.batched_operations = 0
        self.largest_batch = 0
        for name in ("create_account", "set_account_state", "top_up", "reserve", "debit", "release", "refund",
                     "put_tariff", "get_tariff", "balance", "get_account", "get_transaction", "create_snapshot",
                     "list_snapshots", "restore_snapshot", "create_session", "update_session", "release_session",
                     "get_session", "dispute", "subscribe", "unsubscribe", "get_counters", "export_cdrs", "audit", "get_billing_cycle",
                     "put_tariff_request", "quote", "delegate_from_pool", "reclaim_to_pool"):
            setattr(self, name, self._bind(getattr(_Requests, name)))

    def _bind(self, builder):
        async def method(*args, **kwargs):
            call = builder(*args, **kwargs)
            if self._batcher is not None and call.method in _BATCH_FIELDS:
                return await self._batcher.submit(call)
            return await self._execute(call)
        method.__doc__ = builder.__doc__
        method.__name__ = builder.__name__
        return method

    async def _once(self, call: _Call):
        """One attempt, wherever it goes (a shard with direct=True, else the front door)."""
        if self._routes is not None and call.service == "charging" and call.method in _DIRECT_METHODS:
            return await self._direct_once(call)
        return await self._front_door_once(call)

    async def _front_door_once(self, call: _Call):
        return await getattr(self._stubs[call.service], call.method)(call.request, timeout=self.retry.timeout_s,
                                                                   metadata=self._metadata)

    async def _direct_once(self, call: _Call):
        """One attempt at the owning shard, else at the front door (see ChargingClient._direct_once)."""
        routes = self._routes
        shard_map = await self._current_map()
        address = routes.address(shard_map, _routing_key(call), time.monotonic())
        tried = False
        for _ in range(_SHARD_TRIES):
            if address is None:
                break
            tried = True
            try:
                reply = await getattr(self._shard_stub(address), call.method)(
                    call.request, timeout=self.retry.timeout_s, metadata=self._metadata)
            except grpc.RpcError as error:
                if _stale_map(error):
                    shard_map = await self._refreshed_map(shard_map)
                    address = routes.rerouted(shard_map, _routing_key(call), address, time.monotonic())
                    continue
                if error.code() in _SHARD_DOWN_CODES:
                    routes.shard_down(address, time.monotonic())
                    break
                raise
            self.direct_calls += 1
            return reply
        if tried:
            self.front_door_fallbacks += 1
        return await self._front_door_once(call)

    async def _current_map(self) -> _ShardMap | None:
        """The map to route by, fetched first when due; None: use the front door.
        A call with a usable map does not wait for another's periodic fetch."""
        routes = self._routes
        if routes.due(time.monotonic()) and not (self._map_lock.locked() and routes.usable() is not None):
            async with self._map_lock:
                if routes.due(time.monotonic()):  # not fetched by another call meanwhile
                    await self._fetch_map(map_known_wrong=routes.stale)
        return routes.usable()

    async def _refreshed_map(self, used: _ShardMap | None) -> _ShardMap | None:
        """The map after a shard said `used` is stale: fetched again, unless another
        call fetched a newer one meanwhile (one fetch for a burst of stale answers)."""
        routes = self._routes
        async with self._map_lock:
            if routes.map is used:
                if time.monotonic() >= routes.fetch_not_before:
                    await self._fetch_map(map_known_wrong=True)
                else:
                    routes.stale = True
        return routes.usable()

    async def _fetch_map(self, *, map_known_wrong: bool) -> None:
        try:
            reply = await self._stubs["charging"].GetShardMap(pb.GetShardMapRequest(), timeout=self.retry.timeout_s,
                                                              metadata=self._metadata)
            dropped = self._routes.install(reply, time.monotonic())
        except (grpc.RpcError, ValueError):
            self._routes.fetch_failed(time.monotonic(), map_known_wrong=map_known_wrong)
            return
        self.map_refreshes += 1
        for address in dropped:
            self._shard_stubs.pop(address, None)
            channel = self._shard_channels.pop(address, None)
            if channel is not None:  # calls still on it get a deadline's grace, then go to the front door
                task = asyncio.get_running_loop().create_task(channel.close(grace=self.retry.timeout_s))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def _shard_stub(self, address: str) -> pb_grpc.ChargingServiceStub:
        stub = self._shard_stubs.get(address)
        if stub is None:
            channel = self._shard_channels[address] = make_channel(address, self._shard_credentials, aio=True)
            stub = self._shard_stubs[address] = pb_grpc.ChargingServiceStub(channel)
        return stub

    async def _charge_batch(self, address: str | None, request: pb.ChargeBatchRequest) -> pb.ChargeBatchResponse:
        """One ChargeBatch message, at a shard's address or (None) the front door."""
        stub = self._stubs["charging"] if address is None else self._shard_stub(address)
        reply = await stub.ChargeBatch(request, timeout=self.retry.timeout_s, metadata=self._metadata)
        self.batches_sent += 1
        self.batched_operations += len(request.operations)
        self.largest_batch = max(self.largest_batch, len(request.operations))
        if address is not None:
            self.direct_calls += 1
        return reply

    async def _execute(self, call: _Call):
        backoffs = self.retry.backoffs_s()
        while True:
            try:
                return await self._once(call)
            except grpc.RpcError as error:
                if not _retryable(error):
                    raise from_rpc_error(error, call.request_id) from None
                wait_s = next(backoffs, None)
                if wait_s is None:
                    if not call.request_id:
                        raise from_rpc_error(error) from None
                    return await self._resolve(call, error)
                await asyncio.sleep(max(wait_s, retry_delay_s(error)))

    async def _resolve(self, call: _Call, last_error: grpc.RpcError):
        try:
            transaction = await self._once(_Requests.get_transaction(call.subscriber_id, call.request_id))
        except grpc.RpcError as error:
            raise OutcomeUnknown(
                f"{call.method} {call.request_id}: no answer ({last_error.code().name}) and GetTransaction failed "
                f"({error.code().name}); retry with the same request_id", code=last_error.code(),
                request_id=call.request_id,
            ) from None
        return _settled(call, transaction, last_error)

    def watch_notifications(self, client_id: str, cursor: str = ""):
        """Async iterator of the Notification messages of client_id's sessions; a
        broken stream is resumed from the last cursor received (see ChargingClient)."""
        return self._watch("charging", "WatchNotifications", pb.WatchNotificationsRequest, client_id, cursor)

    def watch_status(self, client_id: str, cursor: str = ""):
        """Async iterator of the StatusNotification messages of client_id's subscriptions."""
        return self._watch("spending", "WatchStatus", pb.WatchStatusRequest, client_id, cursor)

    async def _watch(self, service: str, method: str, request_type, client_id: str, cursor: str):
        backoffs = self.retry.backoffs_s()
        while True:
            stream = getattr(self._stubs[service], method)(request_type(client_id=client_id, cursor=cursor),
                                                         metadata=self._metadata)
            try:
                async for notification in stream:
                    cursor = notification.cursor
                    backoffs = self.retry.backoffs_s()
                    yield notification
                return
            except grpc.RpcError as error:
                wait_s = next(backoffs, None) if error.code() in RETRYABLE_CODES else None
                if wait_s is None:
                    raise from_rpc_error(error) from None
                await asyncio.sleep(wait_s)
            finally:
                stream.cancel()

    async def close(self) -> None:
        """Answers what the batcher holds first, then closes every channel."""
        if self._batcher is not None:
            await self._batcher.drain()
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        for channel in list(self._shard_channels.values()):
            await channel.close()
        self._shard_channels.clear()
        self._shard_stubs.clear()
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


__all__ = ["AsyncChargingClient", "ChargingClient", "GridError", "RetryPolicy", "session_request_id", "slot_of"]
