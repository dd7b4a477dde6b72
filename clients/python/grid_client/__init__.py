"""Python client of the charging grid (charging.v1), sync and asyncio.

It generates a request id per logical operation, retries UNAVAILABLE,
DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED with that same id (so a retry never
double-charges), and when retries run out asks GetTransaction whether the
operation took effect.
"""

from grid_client.errors import (
    GridError,
    InvalidArgument,
    OutcomeUnknown,
    Overloaded,
    RequestIdReused,
    Unavailable,
)
from grid_client.channels import Credentials, make_channel
from grid_client.client import AsyncChargingClient, ChargingClient
from grid_client.calls import session_request_id
from grid_client.retries import RetryPolicy
from grid_client.routing import slot_of
from charging.v1 import charging_pb2 as pb

__all__ = [
    "AsyncChargingClient", "ChargingClient", "Credentials", "RetryPolicy", "make_channel", "GridError", "InvalidArgument", "OutcomeUnknown",
    "Overloaded", "RequestIdReused", "Unavailable", "pb", "session_request_id", "slot_of",
]
