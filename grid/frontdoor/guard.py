"""The front door's gatekeeper: every call is authenticated and checked for its
scope (the tenant comes from the credential, never from the request), held to
its tenant's and subscriber's request rates, and, when it is an administrative
call, written to the admin audit log with who made it and its trace id.
"""

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from grid import security
from grid.admin_log import ADMIN_METHODS, AdminLog
from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode
from grid.frontdoor import errors


class Denied(Exception):
    """The call may not go on; status is what the caller gets."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def _status(code: grpc.StatusCode, reason: str, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code.value[0], message=message, details=[errors.packed(
        error_details_pb2.ErrorInfo(reason=reason, domain=errors.ERROR_DOMAIN))])


def rate_limited_status(which: str, wait_s: float) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED with RetryInfo (when to try again) and QuotaFailure (which limit)."""
    field = "subscriber_id" if which == "subscriber" else "tenant"
    status = errors.status_of(Rejection(ErrorCode.RESOURCE_EXHAUSTED, field,
                                        f"request rate of this {which} exceeded; retry after {wait_s:.3f} s"))
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(max(1, int(wait_s * 1000 + 0.999)))
    status.details.append(errors.packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    status.details.append(errors.packed(error_details_pb2.QuotaFailure(violations=[
        error_details_pb2.QuotaFailure.Violation(subject=which, description=f"{which} requests per second")])))
    return status


class Guard:
    def __init__(self, authenticator: security.Authenticator, rates: security.RateLimiter,
                 admin_log: AdminLog | None) -> None:
        self.authenticator = authenticator
        self.rates = rates
        self.admin_log = admin_log

    def authenticate(self, metadata) -> security.Principal:
        try:
            return self.authenticator.authenticate(metadata)
        except security.Unauthenticated as error:
            raise Denied(_status(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", str(error))) from None

    def principal(self, metadata, method: str) -> security.Principal:
        """Who is calling, if they may call method; else Denied."""
        principal = self.authenticate(metadata)
        self.scope(principal, method)
        return principal

    def scope(self, principal: security.Principal, method: str) -> None:
        """A further method on an authenticated stream (a Charge stream's operations)."""
        needed = security.scope_for(method)
        if needed not in principal.scopes:
            raise Denied(_status(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
                                 f"{method.rsplit('/', 1)[-1]} needs scope {needed}"))

    def admit(self, principal: security.Principal, subscriber_id: str) -> None:
        limited = self.rates.admit(principal.tenant, subscriber_id)
        if limited is not None:
            raise Denied(rate_limited_status(*limited))

    async def enter(self, context, method: str, request) -> security.Principal:
        """principal() and admit() for a unary call; aborts the call when denied. A
        refused admin call is logged too: who tried what is half of an audit."""
        principal = None
        try:
            principal = self.authenticate(context.invocation_metadata())
            self.scope(principal, method)
            self.admit(principal, getattr(request, "subscriber_id", ""))
        except Denied as denied:
            if self.admin_log is not None and method in ADMIN_METHODS:
                who = principal or _UNAUTHENTICATED
                await self.log(who, method, request, code_name(denied.status.code), "", context.peer())
            await context.abort_with_status(rpc_status.to_status(denied.status))
        return principal

    async def log(self, principal: security.Principal, method: str, request, outcome: str, trace_id: str,
                  peer: str = "") -> None:
        if self.admin_log is None or method not in ADMIN_METHODS:
            return
        await self.admin_log.record(principal=principal, method=method, target=_target(request),
                                    outcome=outcome, trace_id=trace_id, peer=peer)


_UNAUTHENTICATED = security.Principal("", "unauthenticated", frozenset())
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


# What an admin call acted on: identifiers only, never amounts' context or secrets.
_TARGET_FIELDS = ("subscriber_id", "request_id", "tariff_plan_id", "state", "amount_micros", "charge_id",
                  "snapshot_id", "label", "target_data_dir", "cursor", "limit")


def _target(request) -> dict:
    found = {}
    for field in _TARGET_FIELDS:
        if field in type(request).DESCRIPTOR.fields_by_name:
            value = getattr(request, field)
            if value:
                found[field] = value
    return found
