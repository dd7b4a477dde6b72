"""The Python client against the real grid: generated request ids, explicit
request ids, typed errors naming the field, and retries after a lost reply.

A lost reply is made with a client-side interceptor: it lets an attempt reach
the server, takes the server's reply and hands the caller UNAVAILABLE (or
DEADLINE_EXCEEDED) instead, as if the network had dropped the answer. That is
the ambiguous case the client must settle without moving money twice.
"""

import asyncio

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from grid.config import GridConfig

from e2e_support import LostReply
from e2e_support import FUNDS, SMS, SMS_MICROS, VOICE, VOICE_MICROS_PER_S, new_id, without_replayed
from grid_client import (
    AsyncChargingClient,
    ChargingClient,
    InvalidArgument,
    RequestIdReused,
    RetryPolicy,
    Unavailable,
)

pytestmark = pytest.mark.slow

FAST_RETRIES = RetryPolicy(attempts=3, timeout_s=10, backoff_first_s=0.01, backoff_max_s=0.05)


class ReplyLoser(grpc.UnaryUnaryClientInterceptor):
    """For calls to `method`, attempt n follows plan[n] ("pass" once the plan runs out):
    "pass"  forward, and return the server's reply;
    "lose"  forward, keep the server's reply in `lost`, raise `code` to the caller;
    "drop"  do not forward; raise `code` to the caller."""

    def __init__(self, method: str, plan: list[str], code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.method = method
        self.plan = plan
        self.code = code
        self.attempts: list = []  # the requests the client sent for `method`
        self.lost: list = []  # the server's replies the caller never saw
        self.other_methods: list[str] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        if not method.endswith("/" + self.method):
            self.other_methods.append(method.rsplit("/", 1)[-1])
            return continuation(client_call_details, request)
        index = len(self.attempts)
        self.attempts.append(request)
        action = self.plan[index] if index < len(self.plan) else "pass"
        if action == "pass":
            return continuation(client_call_details, request)
        if action == "lose":
            outcome = continuation(client_call_details, request)
            self.lost.append(outcome.result())  # the server answered (raises if it failed)
            raise LostReply(self.code)
        assert action == "drop", action
        raise LostReply(self.code)


@pytest.fixture
def lossy(embedded):
    """lossy(method, plan, code) -> (ChargingClient over an intercepted channel, its interceptor)."""
    opened = []

    def make(method: str, plan: list[str], code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE):
        interceptor = ReplyLoser(method, plan, code)
        channel = grpc.intercept_channel(grpc.insecure_channel(embedded.target), interceptor)
        client = ChargingClient(retry=FAST_RETRIES, channel=channel)
        opened.append(client)
        return client, interceptor

    yield make
    for client in opened:
        client.close()


# Each money-moving call, made through the client: (method, call(client, subscriber_id), money it moves).
MONEY_CALLS = {
    "TopUp": (lambda c, s: c.top_up(s, 12_345), 12_345),
    "Debit": (lambda c, s: c.debit(s, 1, rating_group=SMS), -SMS_MICROS),
    "Reserve": (lambda c, s: c.reserve(s, "session", VOICE, 30), 0),
}


def _effect(calls, subscriber_id):
    money = calls.money(subscriber_id)
    return money.balance - FUNDS, money.reserved


def _expected_effect(method, delta):
    return (delta, 30 * VOICE_MICROS_PER_S if method == "Reserve" else 0)


# ---------------------------------------------------------------- request ids


def test_the_client_generates_a_request_id_per_call(lossy, calls, subscriber):
    client, seen = lossy("TopUp", [])
    first, second = client.top_up(subscriber.id, 10), client.top_up(subscriber.id, 10)
    assert not first.replayed and not second.replayed
    ids = [request.request_id for request in seen.attempts]
    assert len(ids) == 2 and all(len(request_id) >= 16 for request_id in ids) and ids[0] != ids[1]
    assert calls.money(subscriber.id).balance == FUNDS + 20


def test_an_explicit_request_id_twice_is_replayed(client, calls, subscriber):
    request_id = new_id("mine-")
    first = client.reserve(subscriber.id, "s", VOICE, 60, request_id=request_id)
    again = client.reserve(subscriber.id, "s", VOICE, 60, request_id=request_id)
    assert (first.replayed, again.replayed) == (False, True)
    assert without_replayed(again) == first
    assert calls.money(subscriber.id).reserved == 60 * VOICE_MICROS_PER_S
    assert client.get_transaction(subscriber.id, request_id).reserve == first


# ---------------------------------------------------------------- typed errors


def test_invalid_argument_names_the_field(client, calls, subscriber, plan_id):
    with pytest.raises(InvalidArgument) as raised:
        client.top_up(subscriber.id, 0, request_id="bad-top-up")
    assert (raised.value.field, raised.value.code, raised.value.request_id) == (
        "amount_micros", grpc.StatusCode.INVALID_ARGUMENT, "bad-top-up")
    with pytest.raises(InvalidArgument) as raised:
        client.create_account(new_id("sub-"), "eur", plan_id)
    assert raised.value.field == "currency"
    with pytest.raises(InvalidArgument) as raised:
        client.debit(subscriber.id, 1)  # direct debit without a rating group
    assert raised.value.field == "rating_group"
    with pytest.raises(InvalidArgument) as raised:
        client.put_tariff(new_id("plan-"), [{"rating_group": 1, "unit": pb.EVENTS, "price_micros": 1,
                                             "rate_units": 0, "increment_units": 1}])
    assert raised.value.field == "rates[0].rate_units"
    with pytest.raises(InvalidArgument) as raised:
        client.balance("")
    assert raised.value.field == "subscriber_id"
    assert calls.money(subscriber.id).balance == FUNDS


def test_request_id_reused_names_the_field(client, calls, subscriber):
    client.top_up(subscriber.id, 100, request_id="reused")
    with pytest.raises(RequestIdReused) as raised:
        client.top_up(subscriber.id, 200, request_id="reused")
    assert (raised.value.field, raised.value.request_id, raised.value.code) == (
        "amount_micros", "reused", grpc.StatusCode.ALREADY_EXISTS)
    with pytest.raises(RequestIdReused) as raised:
        client.reserve(subscriber.id, "s", VOICE, 1, request_id="reused")
    assert raised.value.field == "operation"
    assert calls.money(subscriber.id).balance == FUNDS + 100


# ---------------------------------------------------------------- lost replies


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED],
                         ids=lambda code: code.name)
@pytest.mark.parametrize("method", list(MONEY_CALLS))
def test_a_retry_after_a_lost_reply_returns_the_original_replayed(lossy, calls, subscriber, method, code):
    client, interceptor = lossy(method, ["lose"], code)
    call, delta = MONEY_CALLS[method]
    reply = call(client, subscriber.id)
    (original,) = interceptor.lost
    assert original.result == pb.SUCCESS and not original.replayed
    assert reply.replayed, "the second attempt reached a server that had applied the first"
    assert without_replayed(reply) == original
    first, second = interceptor.attempts
    assert first.SerializeToString() == second.SerializeToString(), "a retry is the same request, same id"
    assert _effect(calls, subscriber.id) == _expected_effect(method, delta), "the money moved once"


@pytest.mark.parametrize("method", list(MONEY_CALLS))
def test_every_attempt_failing_is_settled_by_get_transaction(lossy, calls, subscriber, method):
    client, interceptor = lossy(method, ["lose"] + ["drop"] * 10)
    call, delta = MONEY_CALLS[method]
    reply = call(client, subscriber.id)
    assert len(interceptor.attempts) == FAST_RETRIES.attempts
    assert interceptor.other_methods == ["GetTransaction"]
    (original,) = interceptor.lost
    assert reply == original, "GetTransaction gave back the original reply"
    assert len({request.request_id for request in interceptor.attempts}) == 1
    assert _effect(calls, subscriber.id) == _expected_effect(method, delta)


def test_no_attempt_reaching_the_server_is_unavailable_and_safe_to_retry(lossy, client, calls, subscriber):
    lossy_client, interceptor = lossy("Debit", ["drop"] * 10)
    with pytest.raises(Unavailable) as raised:
        lossy_client.debit(subscriber.id, 1, rating_group=SMS)
    request_id = raised.value.request_id
    assert request_id and len(interceptor.attempts) == FAST_RETRIES.attempts
    assert interceptor.other_methods == ["GetTransaction"]
    assert not calls.transaction(subscriber.id, request_id).found
    assert calls.money(subscriber.id).balance == FUNDS
    retried = client.debit(subscriber.id, 1, rating_group=SMS, request_id=request_id)
    assert (retried.result, retried.replayed) == (pb.SUCCESS, False)
    assert calls.money(subscriber.id).balance == FUNDS - SMS_MICROS


# ---------------------------------------------------------------- asyncio client


class AioReplyLoser(grpc.aio.UnaryUnaryClientInterceptor):
    """The asyncio twin of ReplyLoser: loses the first reply of `method`."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.attempts: list = []
        self.lost: list = []

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        call = await continuation(client_call_details, request)
        if not method.endswith("/" + self.method):
            return call
        self.attempts.append(request)
        if len(self.attempts) > 1:
            return call
        self.lost.append(await call)
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   "injected by the test: the reply was lost")


def test_the_asyncio_client_retries_a_lost_reply_once(embedded, calls, subscriber):
    interceptor = AioReplyLoser("Debit")

    async def scenario():
        channel = grpc.aio.insecure_channel(embedded.target, interceptors=[interceptor])
        async with AsyncChargingClient(retry=FAST_RETRIES, channel=channel) as client:
            return await client.debit(subscriber.id, 3, rating_group=SMS)

    loop = asyncio.new_event_loop()
    try:
        reply = loop.run_until_complete(scenario())
    finally:
        loop.close()
    (original,) = interceptor.lost
    assert reply.replayed and without_replayed(reply) == original
    assert interceptor.attempts[0] == interceptor.attempts[1]
    assert calls.money(subscriber.id).balance == FUNDS - 3 * SMS_MICROS


def test_no_answer_and_no_get_transaction_is_outcome_unknown(embedded, calls, subscriber):
    from grid_client import OutcomeUnknown

    class Blackhole(grpc.UnaryUnaryClientInterceptor):
        """Every call reaches the server; no reply ever comes back."""

        def __init__(self):
            self.methods = []

        def intercept_unary_unary(self, continuation, client_call_details, request):
            self.methods.append(client_call_details.method.rsplit("/", 1)[-1])
            continuation(client_call_details, request).result()
            raise LostReply(grpc.StatusCode.UNAVAILABLE)

    interceptor = Blackhole()
    channel = grpc.intercept_channel(grpc.insecure_channel(embedded.target), interceptor)
    with ChargingClient(retry=FAST_RETRIES, channel=channel) as client:
        with pytest.raises(OutcomeUnknown) as raised:
            client.debit(subscriber.id, 1, rating_group=SMS)
    assert interceptor.methods == ["Debit"] * FAST_RETRIES.attempts + ["GetTransaction"]
    # The truth, asked directly: it was applied once, whatever the client could not tell.
    assert calls.transaction(subscriber.id, raised.value.request_id).debit.charged_micros == SMS_MICROS
    assert calls.money(subscriber.id).balance == FUNDS - SMS_MICROS


def test_a_message_over_the_size_limit_fails_at_once_and_is_not_called_overload(client, subscriber, monkeypatch):
    """gRPC's own RESOURCE_EXHAUSTED (message too large) will fail the same way every
    time: the client must not retry it as if the grid had shed load."""
    import grid_client

    attempts = []
    once = client._once
    monkeypatch.setattr(client, "_once", lambda call: attempts.append(call.method) or once(call))
    with pytest.raises(grid_client.GridError) as raised:
        client.top_up("x" * (GridConfig().message_bytes_max + (1 << 20)), 5)
    assert not isinstance(raised.value, grid_client.Overloaded)
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert attempts == ["TopUp"], "a hopeless call was retried (or settled through GetTransaction)"
