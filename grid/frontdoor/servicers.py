"""Thin gRPC servicers: translate, trace, route, translate back. No business rules.

Every handler follows one path (`_unary`): take the call's trace ids (the
client's traceparent continued), convert the request into a domain operation
carrying the trace id, submit it with the call's deadline, record the server
span once the outcome is known, and either return the converted reply or
abort with the status the error table gives.
"""

import asyncio
import time

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from grpc_status import rpc_status

from grid import tracing
from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode
from grid.domain.validation import InvalidArgument
from grid.frontdoor import convert, errors, notifications, pools
from grid.frontdoor.guard import Denied, code_name
from grid.dataplane.router import Router, outcome_of


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    remaining_s = context.time_remaining()
    return None if remaining_s is None else time.monotonic() + remaining_s


class _Base:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def _unary(self, context, method: str, request, to_operation, to_response, *, traced: bool = True):
        started = time.monotonic()
        guard = self._router.guard
        principal = await guard.enter(context, method, request)  # the tenant is the credential's
        trace_id = ""
        if traced:
            call = tracing.begin_call(self._router.tracing.policy, context.invocation_metadata())
            trace_id = call.trace_id_hex
            operation = to_operation(request, principal.tenant, trace_id)
            reply = await self._router.submit(operation, deadline_of(context), call)
            tracing.end_call(self._router.tracing, call, method, reply, operation,
                             int(reply.code) if isinstance(reply, Rejection) else 0)
        else:
            reply = await self._router.submit(to_operation(request, principal.tenant), deadline_of(context))
        self._router.count(method, reply, started)
        if guard.admin_log is not None:
            await guard.log(principal, method, request, outcome_of(reply), trace_id, context.peer())
        if isinstance(reply, Rejection):
            await context.abort_with_status(rpc_status.to_status(errors.status_of(reply)))
        return to_response(reply)


class Watchers:
    """Server streams of notifications (sessions' and policy counters'): bounded in
    watchers per front door (RESOURCE_EXHAUSTED past it)."""

    def __init__(self, router: Router, watchers_max: int, poll_interval_s: float) -> None:
        self._router = router
        self._max = watchers_max
        self._count = 0
        self._poll_interval_s = poll_interval_s

    async def watch(self, context, request, channel: str, to_message, method: str):
        principal = await self._router.guard.enter(context, method, request)
        if not request.client_id:
            await _abort(context, Rejection(ErrorCode.INVALID_ARGUMENT, "client_id", "is required"))
        if self._count >= self._max:
            await _abort(context, Rejection(ErrorCode.RESOURCE_EXHAUSTED, "", f"{self._max} watchers already; "
                                            "retry with backoff"))
        self._count += 1
        try:
            async for message in notifications.follow(
                    self._router, principal.tenant, request.client_id, request.cursor, self._poll_interval_s,
                    self._router.limits.notifications_per_read_max, channel, to_message):
                yield message
        except InvalidArgument as error:
            await _abort(context, Rejection(ErrorCode.INVALID_ARGUMENT, error.field, error.message))
        except notifications.Rejected as error:
            await _abort(context, error.rejection)
        finally:
            self._count -= 1


async def _abort(context, rejection: Rejection) -> None:
    await context.abort_with_status(rpc_status.to_status(errors.status_of(rejection)))


class ChargingServicer(_Base, pb_grpc.ChargingServiceServicer):
    def __init__(self, router: Router, stream_operations_max: int, *, watchers_max: int = 256,
                 notification_poll_interval_s: float = 0.2, batch_operations_max: int = 8190) -> None:
        super().__init__(router)
        self._stream_operations_max = stream_operations_max
        self._batch_operations_max = batch_operations_max
        self._watchers = Watchers(router, watchers_max, notification_poll_interval_s)

    async def Reserve(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/Reserve", request, convert.reserve,
                                 convert.reserve_reply)

    async def Debit(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/Debit", request, convert.debit,
                                 convert.debit_reply)

    async def Release(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/Release", request, convert.release,
                                 convert.release_reply)

    async def Refund(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/Refund", request, convert.refund,
                                 convert.refund_reply)

    async def TopUp(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/TopUp", request, convert.top_up,
                                 convert.top_up_reply)

    async def Quote(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/Quote", request, convert.quote,
                                 convert.quote_reply, traced=False)

    async def GetBalance(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/GetBalance", request, convert.get_balance,
                                 convert.balance_reply, traced=False)

    async def GetTransaction(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/GetTransaction", request,
                                 convert.get_transaction, convert.transaction_reply, traced=False)

    async def CreateSession(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/CreateSession", request,
                                 convert.create_session, convert.session_reply)

    async def UpdateSession(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/UpdateSession", request,
                                 convert.update_session, convert.session_reply)

    async def ReleaseSession(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/ReleaseSession", request,
                                 convert.release_session, convert.session_reply)

    async def GetSession(self, request, context):
        return await self._unary(context, "charging.v1.ChargingService/GetSession", request, convert.get_session,
                                 convert.session_info_reply, traced=False)

    async def WatchNotifications(self, request, context):
        """Streams the client's notifications until the client goes away."""
        async for message in self._watchers.watch(context, request, "sessions", convert.session_notification,
                                                  "charging.v1.ChargingService/WatchNotifications"):
            yield message

    async def Charge(self, request_iterator, context):
        """Many operations in flight on one stream; replies tagged, in completion order.

        At most stream_operations_max operations of one stream are in flight:
        past that, the reader waits (HTTP/2 flow control pushes back on the client)."""
        replies: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(self._stream_operations_max)
        pending: set[asyncio.Task] = set()
        metadata = context.invocation_metadata()
        guard = self._router.guard
        try:  # once per stream: its credential does not change
            principal = guard.principal(metadata, "charging.v1.ChargingService/Charge")
        except Denied as denied:
            await context.abort_with_status(rpc_status.to_status(denied.status))
        peer = context.peer()

        async def one(message: pb.ChargeRequest) -> None:
            try:
                response = await self._stream_operation(message, metadata, principal, peer)
            except Exception as error:  # noqa: BLE001 - every tag must get an answer
                rejection = Rejection(ErrorCode.UNAVAILABLE, "", f"internal error {type(error).__name__}; "
                                      "retry with the same request_id or ask GetTransaction")
                response = pb.ChargeResponse(correlation_tag=message.correlation_tag,
                                             error=errors.status_of(rejection))
            finally:
                slots.release()
            replies.put_nowait(response)

        async def read_all() -> None:
            async for message in request_iterator:
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(one(message))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*list(pending), return_exceptions=True)
            replies.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read_all())
        try:
            while (response := await replies.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _stream_operation(self, message: pb.ChargeRequest, metadata, principal, peer: str
                                ) -> pb.ChargeResponse:
        admitted = await self._admit(message, principal, peer, "Charge")
        if isinstance(admitted, pb.ChargeResponse):
            return admitted
        method, request, kind = admitted
        started = time.monotonic()
        call = tracing.begin_call(self._router.tracing.policy, metadata)
        operation = convert.STREAM_REQUESTS[kind](request, principal.tenant, call.trace_id_hex)
        reply = await self._router.submit(operation, None, call)
        tracing.end_call(self._router.tracing, call, method, reply, operation,
                         int(reply.code) if isinstance(reply, Rejection) else 0)
        self._router.count(method, reply, started)
        return await self._answer(message, method, request, reply, principal, call.trace_id_hex, peer)

    async def _admit(self, message: pb.ChargeRequest, principal, peer: str, rpc: str):
        """(method, request, kind) of one operation of a stream or batch, or the
        ChargeResponse that refuses it (no operation, scope, request rates)."""
        kind = message.WhichOneof("operation")
        if kind is None:
            status = errors.status_of(Rejection(ErrorCode.INVALID_ARGUMENT, "operation", "one operation is required"))
            return pb.ChargeResponse(correlation_tag=message.correlation_tag, error=status)
        method = f"charging.v1.ChargingService/{rpc}.{kind}"
        request = getattr(message, kind)
        guard = self._router.guard
        try:
            guard.scope(principal, method)
            guard.admit(principal, request.subscriber_id)
        except Denied as denied:
            if guard.admin_log is not None:  # a refused money-in attempt is logged like a unary one
                await guard.log(principal, method, request, code_name(denied.status.code), "", peer)
            return pb.ChargeResponse(correlation_tag=message.correlation_tag, error=denied.status)
        return method, request, kind

    async def _answer(self, message: pb.ChargeRequest, method: str, request, reply, principal, trace_id: str,
                      peer: str) -> pb.ChargeResponse:
        guard = self._router.guard
        if guard.admin_log is not None:
            await guard.log(principal, method, request, outcome_of(reply), trace_id, peer)
        if isinstance(reply, Rejection):
            return pb.ChargeResponse(correlation_tag=message.correlation_tag, error=errors.status_of(reply))
        field, to_response = convert.REPLY_FIELDS[type(reply)]
        response = pb.ChargeResponse(correlation_tag=message.correlation_tag)
        getattr(response, field).CopyFrom(to_response(reply))
        return response

    async def ChargeBatch(self, request, context):
        """Many operations in one message, each answered on its own, in order.

        One server span for the message; each operation carries its trace id
        (journal records name it). Operations are validated and admitted one by
        one, then submitted together: in a shard's own listener as one frame."""
        started = time.monotonic()
        rpc_method = "charging.v1.ChargingService/ChargeBatch"
        guard = self._router.guard
        metadata = context.invocation_metadata()
        try:
            principal = guard.principal(metadata, rpc_method)
        except Denied as denied:
            await context.abort_with_status(rpc_status.to_status(denied.status))
        count = len(request.operations)
        if count > self._batch_operations_max:
            await _abort(context, Rejection(ErrorCode.INVALID_ARGUMENT, "operations",
                                            f"{count} operations; at most {self._batch_operations_max} a message"))
        peer = context.peer()
        call = tracing.begin_call(self._router.tracing.policy, metadata)
        trace_id = call.trace_id_hex
        responses: list = [None] * count
        admitted = []  # (position, method, request, operation)
        for position, message in enumerate(request.operations):
            entry = await self._admit(message, principal, peer, "ChargeBatch")
            if isinstance(entry, pb.ChargeResponse):
                responses[position] = entry
                continue
            method, operation_request, kind = entry
            try:
                operation = convert.STREAM_REQUESTS[kind](operation_request, principal.tenant, trace_id)
            except InvalidArgument as error:
                responses[position] = pb.ChargeResponse(correlation_tag=message.correlation_tag, error=errors.status_of(
                    Rejection(ErrorCode.INVALID_ARGUMENT, error.field, error.message)))
                continue
            admitted.append((position, method, operation_request, operation))
        replies = await self._router.submit_many([operation for _, _, _, operation in admitted],
                                                 deadline_of(context), call)
        for (position, method, operation_request, _), reply in zip(admitted, replies):
            responses[position] = await self._answer(request.operations[position], method, operation_request, reply,
                                                     principal, trace_id, peer)
        tracing.end_call(self._router.tracing, call, rpc_method, None, None, 0)
        self._router.count(rpc_method, None, started)
        return pb.ChargeBatchResponse(replies=responses)

    async def GetShardMap(self, request, context):
        """The map a client routes by: slots, the slot function, each shard's public address."""
        principal = await self._router.guard.enter(context, "charging.v1.ChargingService/GetShardMap", request)
        shard_map, endpoints = self._router.map_view()
        if shard_map is None:
            await _abort(context, Rejection(ErrorCode.UNAVAILABLE, "", "the shard map is not known yet; retry"))
        return convert.shard_map_reply(shard_map, endpoints, principal.tenant)


class ShardChargingServicer(ChargingServicer):
    """The ChargingService of a shard's public listener (grid.dataplane.shard_server):
    the front door's, over the shard's LocalRouter. Notifications span shards, so
    they are watched through a front door."""

    def __init__(self, router, config) -> None:
        super().__init__(router, config.stream_operations_max, watchers_max=0,
                         batch_operations_max=config.charge_batch_operations_max)

    async def WatchNotifications(self, request, context):
        await _abort(context, Rejection(ErrorCode.FAILED_PRECONDITION, "", "notifications are watched through a "
                                        "front door (they span shards)"))
        yield  # an async generator, as the front door's


class AccountServicer(_Base, pb_grpc.AccountServiceServicer):
    async def _pool(self, context, method: str, request, flow):
        """A pooled-balance call: its steps (grid.frontdoor.pools) under one trace."""
        started = time.monotonic()
        guard = self._router.guard
        principal = await guard.enter(context, method, request)
        call = tracing.begin_call(self._router.tracing.policy, context.invocation_metadata())
        reply = await flow(self._router, principal.tenant, request, call.trace_id_hex, deadline_of(context), call)
        tracing.end_call(self._router.tracing, call, method, reply, None,
                         int(reply.code) if isinstance(reply, Rejection) else 0)
        self._router.count(method, reply, started)
        if guard.admin_log is not None:
            await guard.log(principal, method, request, outcome_of(reply), call.trace_id_hex, context.peer())
        if isinstance(reply, Rejection):
            await context.abort_with_status(rpc_status.to_status(errors.status_of(reply)))
        return convert.pool_reply(reply)

    async def DelegateFromPool(self, request, context):
        return await self._pool(context, "charging.v1.AccountService/DelegateFromPool", request, pools.delegate)

    async def ReclaimToPool(self, request, context):
        return await self._pool(context, "charging.v1.AccountService/ReclaimToPool", request, pools.reclaim)

    async def CreateAccount(self, request, context):
        return await self._unary(context, "charging.v1.AccountService/CreateAccount", request,
                                 convert.create_account, convert.create_account_reply)

    async def GetAccount(self, request, context):
        return await self._unary(context, "charging.v1.AccountService/GetAccount", request, convert.get_account,
                                 convert.account_reply, traced=False)

    async def GetBillingCycle(self, request, context):
        return await self._unary(context, "charging.v1.AccountService/GetBillingCycle", request,
                                 convert.get_billing_cycle, convert.billing_cycle_reply, traced=False)

    async def SetAccountState(self, request, context):
        return await self._unary(context, "charging.v1.AccountService/SetAccountState", request,
                                 convert.set_account_state, convert.set_account_state_reply)


class CatalogServicer(_Base, pb_grpc.CatalogServiceServicer):
    async def PutTariff(self, request, context):
        return await self._unary(context, "charging.v1.CatalogService/PutTariff", request,
                                 convert.put_tariff,
                                 convert.put_tariff_reply)

    async def GetTariff(self, request, context):
        return await self._unary(context, "charging.v1.CatalogService/GetTariff", request,
                                 convert.get_tariff, convert.tariff_reply, traced=False)


class SpendingLimitServicer(_Base, pb_grpc.SpendingLimitServiceServicer):
    """Policy counters for policy functions (TS 29.594): subscribe, watch, unsubscribe."""

    def __init__(self, router: Router, watchers: Watchers) -> None:
        super().__init__(router)
        self._watchers = watchers

    async def Subscribe(self, request, context):
        return await self._unary(context, "charging.v1.SpendingLimitService/Subscribe", request, convert.subscribe,
                                 convert.subscribe_reply)

    async def Unsubscribe(self, request, context):
        return await self._unary(context, "charging.v1.SpendingLimitService/Unsubscribe", request,
                                 convert.unsubscribe, convert.unsubscribe_reply)

    async def GetCounters(self, request, context):
        return await self._unary(context, "charging.v1.SpendingLimitService/GetCounters", request,
                                 convert.get_counters, convert.counters_reply, traced=False)

    async def WatchStatus(self, request, context):
        async for message in self._watchers.watch(context, request, "policy", convert.status_notification,
                                                  "charging.v1.SpendingLimitService/WatchStatus"):
            yield message
