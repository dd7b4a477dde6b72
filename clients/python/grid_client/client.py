"""Sync and asyncio clients of ChargingService, AccountService and CatalogService.

Requests are built once (`_Requests`, calls.py); the two clients differ only
in how they wait. Mutating calls go through `_execute`: the same request id on
every retry, then GetTransaction to settle an outcome the retries left unclear
(retries.py; DESIGN.md section 5, invariant 7).

Where a call goes is decided per attempt (`_once`): the front door, or with
direct=True the shard that owns the subscriber's slot by the shard map
(`_Routes`, routing.py), falling back to the front door whenever the shard
cannot answer for it. The asyncio client can also gather concurrent charging
operations into ChargeBatch messages (`_Batcher`, batching.py). Neither changes
what a caller gets back.
"""

import asyncio
import threading
import time

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from grid_client.batching import _BATCH_FIELDS, CHARGE_BATCH_OPERATIONS_MAX, _Batcher
# Both clients open their channels through this module's make_channel (tests
# replace grid_client.client.make_channel to tap every channel a client opens).
from grid_client.channels import Credentials, make_channel
from grid_client.errors import GridError, OutcomeUnknown, from_rpc_error, retry_delay_s
from grid_client.calls import _Call, _Requests, session_request_id
from grid_client.retries import RETRYABLE_CODES, RetryPolicy, _retryable, _settled
from grid_client.routing import (_DIRECT_METHODS, _SHARD_DOWN_CODES, _SHARD_TRIES, _Routes, _routing_key,
                                 _shard_credentials, _ShardMap, _stale_map, slot_of)


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
