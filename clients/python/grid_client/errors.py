"""The client's exceptions: one root, one class per kind of caller action."""

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class GridError(Exception):
    """Root of every error the client raises."""

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, field: str = "",
                 request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.request_id = request_id


class InvalidArgument(GridError):
    """A field is malformed; `field` names it. Nothing changed."""


class RequestIdReused(GridError):
    """The request id was used before with another payload; `field` names the difference."""


class Overloaded(GridError):
    """The grid shed the call (RESOURCE_EXHAUSTED) on every attempt."""


class Unavailable(GridError):
    """The grid could not be reached, and GetTransaction says the operation did not
    take effect (yet): retrying with the same request_id is safe."""


class OutcomeUnknown(GridError):
    """Neither the call nor GetTransaction answered: retry later with the same request_id."""


_CODES = {code.value[0]: code for code in grpc.StatusCode}


class StatusError(grpc.RpcError):
    """A google.rpc.Status that came as data (a ChargeBatch operation's error), shaped
    as the RpcError its unary call would have raised, status details included: one
    conversion (from_rpc_error) and one retry rule serve both paths, so a batched
    caller gets exactly the exception the unary call would have given it."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status

    def code(self) -> grpc.StatusCode:
        return _CODES.get(self.status.code, grpc.StatusCode.UNKNOWN)

    def details(self) -> str:
        return self.status.message

    def trailing_metadata(self):
        return (("grpc-status-details-bin", self.status.SerializeToString()),)


def reason_of(error: grpc.RpcError) -> str:
    """The google.rpc.ErrorInfo reason the grid attached, or "" (e.g. gRPC's own errors)."""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError):
        return ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def from_rpc_error(error: grpc.RpcError, request_id: str = "") -> GridError:
    code = error.code()
    field = ""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                if bad_request.field_violations:
                    field = bad_request.field_violations[0].field
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and not field:
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                field = info.metadata.get("field", "")
    kind = {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.ALREADY_EXISTS: RequestIdReused,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
    }.get(code, GridError)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason_of(error) == "OVERLOADED":
        kind = Overloaded  # the grid shed it; gRPC's own limits (message size) are not overload
    return kind(f"{code.name}: {error.details()}", code=code, field=field, request_id=request_id)


def retry_delay_s(error: grpc.RpcError) -> float:
    """The wait the grid asked for (google.rpc.RetryInfo, sent with a rate limit), or 0."""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return 0.0
