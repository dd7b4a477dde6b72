"""The one table from caller and system errors to gRPC status codes with details.

Outcomes (a denied reserve) are replies with a `result`; only errors come here.
Every error carries google.rpc details: BadRequest naming the field for
INVALID_ARGUMENT, ErrorInfo with a stable reason for the rest (DESIGN.md 6).
"""

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode

ERROR_DOMAIN = "charging.grid"

# code -> (gRPC status code, ErrorInfo reason, what the caller should do)
ERROR_TABLE: dict[ErrorCode, tuple[grpc.StatusCode, str]] = {
    ErrorCode.INVALID_ARGUMENT: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    ErrorCode.NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    ErrorCode.ALREADY_EXISTS: (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED"),
    ErrorCode.RESOURCE_EXHAUSTED: (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED"),
    ErrorCode.FAILED_PRECONDITION: (grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    ErrorCode.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, "SHARD_UNAVAILABLE"),
    ErrorCode.DEADLINE_EXCEEDED: (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
}


def packed(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_of(rejection: Rejection) -> status_pb2.Status:
    grpc_code, reason = ERROR_TABLE[rejection.code]
    message = f"{rejection.field}: {rejection.message}" if rejection.field else rejection.message
    metadata = {"field": rejection.field} if rejection.field else {}
    metadata.update(rejection.metadata)
    details = [
        packed(error_details_pb2.ErrorInfo(reason=rejection.reason or reason, domain=ERROR_DOMAIN, metadata=metadata))
    ]
    if rejection.code == ErrorCode.INVALID_ARGUMENT:
        details.append(packed(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=rejection.field, description=rejection.message)
        ])))
    return status_pb2.Status(code=grpc_code.value[0], message=message, details=details)


assert all(ERROR_TABLE[code][0].value[0] == int(code) for code in ErrorCode), "ErrorCode numbers are gRPC codes"
assert code_pb2.INVALID_ARGUMENT == ErrorCode.INVALID_ARGUMENT
