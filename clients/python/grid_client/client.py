"""Sync and asyncio clients of ChargingService, AccountService and CatalogService.

Requests are built once (`_Requests`); the two clients differ only in how they
wait. Mutating calls go through `_mutate`: the same request id on every retry,
then GetTransaction to settle an outcome the retries left unclear
(DESIGN.md section 5, invariant 7).
"""

import asyncio
import dataclasses
import os
import time
import uuid

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from grid_client.errors import (GridError, OutcomeUnknown, Overloaded, Unavailable, from_rpc_error, reason_of,
                                retry_delay_s)

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
    """Blocking client. Every method returns the charging.v1 response message."""

    def __init__(self, target: str = "127.0.0.1:50051", *, retry: RetryPolicy = RetryPolicy(),
                 channel: grpc.Channel | None = None, credentials: Credentials | None = None) -> None:
        self.retry = retry
        self._channel = channel or make_channel(target, credentials)
        self._metadata = credentials.metadata() if credentials else None
        self._stubs = _stubs(self._channel)
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
        return getattr(self._stubs[call.service], call.method)(call.request, timeout=self.retry.timeout_s,
                                                                   metadata=self._metadata)

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
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncChargingClient:
    """asyncio client: the same methods as ChargingClient, as coroutines."""

    def __init__(self, target: str = "127.0.0.1:50051", *, retry: RetryPolicy = RetryPolicy(),
                 channel: grpc.aio.Channel | None = None, credentials: Credentials | None = None) -> None:
        self.retry = retry
        self._channel = channel or make_channel(target, credentials, aio=True)
        self._metadata = credentials.metadata() if credentials else None
        self._stubs = _stubs(self._channel)
        for name in ("create_account", "set_account_state", "top_up", "reserve", "debit", "release", "refund",
                     "put_tariff", "get_tariff", "balance", "get_account", "get_transaction", "create_snapshot",
                     "list_snapshots", "restore_snapshot", "create_session", "update_session", "release_session",
                     "get_session", "dispute", "subscribe", "unsubscribe", "get_counters", "export_cdrs", "audit", "get_billing_cycle",
                     "put_tariff_request", "quote", "delegate_from_pool", "reclaim_to_pool"):
            setattr(self, name, self._bind(getattr(_Requests, name)))

    def _bind(self, builder):
        async def method(*args, **kwargs):
            return await self._execute(builder(*args, **kwargs))
        method.__doc__ = builder.__doc__
        method.__name__ = builder.__name__
        return method

    async def _once(self, call: _Call):
        return await getattr(self._stubs[call.service], call.method)(call.request, timeout=self.retry.timeout_s,
                                                                   metadata=self._metadata)

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
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


__all__ = ["AsyncChargingClient", "ChargingClient", "GridError", "RetryPolicy", "session_request_id"]
