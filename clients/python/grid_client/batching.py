"""The asyncio client's batcher (batch_window_s > 0): concurrent charging operations
gathered into ChargeBatch messages, each caller still answered with its own reply
or exactly the exception its unary call would have raised."""

import asyncio
import dataclasses
import time
import typing

import grpc
from charging.v1 import charging_pb2 as pb
from google.rpc import status_pb2

from grid_client.errors import GridError, StatusError, from_rpc_error, retry_delay_s
from grid_client.calls import _Call
from grid_client.retries import _retryable
from grid_client.routing import _SHARD_DOWN_CODES, _SHARD_TRIES, _routing_key, _stale_map

if typing.TYPE_CHECKING:  # the batcher is the client's; it only calls back into it
    from grid_client.client import AsyncChargingClient

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
        await self._answer_with(held, self._client._resolve(held.call, last_error))

    async def _unary(self, held: _Held) -> None:
        await self._answer_with(held, self._client._execute(held.call))

    async def _answer_with(self, held: _Held, outcome) -> None:
        """The caller's reply or error from one awaited unary outcome."""
        try:
            reply = await outcome
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
