"""What a failed attempt means: which failures are retried with the same request id
(RetryPolicy: how often, how far apart), and what GetTransaction's answer makes of
a call the retries could not finish (DESIGN.md section 5, invariant 7)."""

import dataclasses

import grpc
from charging.v1 import charging_pb2 as pb

from grid_client.errors import Overloaded, Unavailable, reason_of
from grid_client.calls import _Call

# Failures after which the operation may or may not have happened, or did not
# happen but may if tried again: retry with the same request id. CANCELLED is
# here because only the server cancels a call this client made (a server
# shutting down cuts the calls it had not yet taken).
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
})


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
