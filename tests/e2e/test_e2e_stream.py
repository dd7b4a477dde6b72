"""The Charge bidirectional stream: many operations in flight on one stream,
replies tagged and in completion order, errors as google.rpc.Status inside the
reply, replays flagged."""

import collections
import queue
import random
import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import (
    FUNDS,
    SMS,
    SMS_MICROS,
    VOICE,
    VOICE_MICROS_PER_S,
    debit_request,
    new_id,
    refund_request,
    release_request,
    reserve_request,
    top_up_request,
    view_status,
    without_replayed,
)

pytestmark = pytest.mark.slow

FIELD_OF = {pb.ReserveRequest: "reserve", pb.DebitRequest: "debit", pb.ReleaseRequest: "release",
            pb.RefundRequest: "refund", pb.TopUpRequest: "top_up"}


def tagged(tag: int, request) -> pb.ChargeRequest:
    message = pb.ChargeRequest(correlation_tag=tag)
    getattr(message, FIELD_OF[type(request)]).CopyFrom(request)
    return message


def exchange(stubs, messages, timeout_s: float = 60) -> dict[int, list[pb.ChargeResponse]]:
    """Send all messages on one stream; every reply, grouped by tag."""
    replies = collections.defaultdict(list)
    for response in stubs.charging.Charge(iter(messages), timeout=timeout_s):
        replies[response.correlation_tag].append(response)
    return replies


def test_many_operations_in_flight_every_tag_answered_once(calls, new_subscriber):
    subscribers = [new_subscriber() for _ in range(6)]
    rng = random.Random(7)
    messages, expected_field, expected_error = [], {}, {}
    topped = collections.Counter()
    tag = 1000
    for subscriber in subscribers:
        for index in range(20):
            amount = rng.randint(1, 10_000)
            topped[subscriber.id] += amount
            messages.append(tagged(tag, top_up_request(subscriber.id, amount)))
            expected_field[tag] = "top_up"
            tag += 7
        for _ in range(10):
            messages.append(tagged(tag, debit_request(subscriber.id, 1, rating_group=SMS)))
            expected_field[tag] = "debit"
            tag += 7
        for _ in range(5):
            messages.append(tagged(tag, reserve_request(subscriber.id, 10)))
            expected_field[tag] = "reserve"
            tag += 7
        messages.append(tagged(tag, top_up_request(subscriber.id, 0)))  # bad input, in the middle
        expected_field[tag], expected_error[tag] = "error", "amount_micros"
        tag += 7
    rng.shuffle(messages)

    replies = exchange(calls.stubs, messages)

    assert set(replies) == set(expected_field), "every tag answered, no invented tags"
    assert all(len(answers) == 1 for answers in replies.values()), "every tag answered exactly once"
    for tag, (reply,) in replies.items():
        assert reply.WhichOneof("reply") == expected_field[tag], (tag, reply)
        if tag in expected_error:
            error = view_status(reply.error)
            assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, expected_error[tag])
        else:
            assert getattr(reply, expected_field[tag]).result == pb.SUCCESS, reply
            assert not getattr(reply, expected_field[tag]).replayed
    for subscriber in subscribers:
        money = calls.money(subscriber.id)
        assert money.balance == FUNDS + topped[subscriber.id] - 10 * SMS_MICROS
        assert money.reserved == 5 * 10 * VOICE_MICROS_PER_S


def test_errors_come_back_as_statuses_and_the_stream_goes_on(calls, subscriber):
    reused = top_up_request(subscriber.id, 100, request_id=new_id("reused-"))
    assert calls.stubs.charging.TopUp(reused).result == pb.SUCCESS
    mismatched = top_up_request(subscriber.id, 101, request_id=reused.request_id)
    messages = [
        pb.ChargeRequest(correlation_tag=1),  # no operation at all
        tagged(2, reserve_request(subscriber.id, 10, rating_group=0)),
        tagged(3, debit_request(subscriber.id, 1, rating_group=SMS, final=True)),
        tagged(4, refund_request(subscriber.id, "C0-1", -1)),
        tagged(5, release_request(subscriber.id, "x" * 129)),
        tagged(6, mismatched),
        tagged(7, reserve_request(new_id("ghost-"), 10)),  # an outcome, not an error
        tagged(8, top_up_request(subscriber.id, 1)),
    ]
    replies = {tag: answers for tag, answers in exchange(calls.stubs, messages).items()}
    assert sorted(replies) == list(range(1, 9))
    errors = {tag: view_status(answers[0].error) for tag, answers in replies.items()
              if answers[0].WhichOneof("reply") == "error"}
    assert {tag: (e.code, e.field) for tag, e in errors.items() if e.code == grpc.StatusCode.INVALID_ARGUMENT} == {
        1: (grpc.StatusCode.INVALID_ARGUMENT, "operation"),
        2: (grpc.StatusCode.INVALID_ARGUMENT, "rating_group"),
        3: (grpc.StatusCode.INVALID_ARGUMENT, "final"),
        4: (grpc.StatusCode.INVALID_ARGUMENT, "amount_micros"),
        5: (grpc.StatusCode.INVALID_ARGUMENT, "reservation_id"),
    }
    assert errors[6].code == grpc.StatusCode.ALREADY_EXISTS
    assert (errors[6].info.reason, errors[6].info_field) == ("REQUEST_ID_REUSED", "amount_micros")
    assert replies[7][0].reserve.result == pb.USER_UNKNOWN
    assert replies[8][0].top_up.result == pb.SUCCESS
    assert calls.money(subscriber.id).balance == FUNDS + 100 + 1


def test_replays_on_the_stream_are_flagged_and_charged_once(calls, subscriber):
    unary = debit_request(subscriber.id, 1, rating_group=SMS)
    original = calls.stubs.charging.Debit(unary)
    twice = top_up_request(subscriber.id, 777)
    messages = [tagged(1, unary), tagged(2, twice), tagged(3, twice), tagged(4, twice)]
    replies = exchange(calls.stubs, messages)
    assert replies[1][0].debit.replayed and without_replayed(replies[1][0].debit) == original
    top_ups = [replies[tag][0].top_up for tag in (2, 3, 4)]
    assert sorted(reply.replayed for reply in top_ups) == [False, True, True]
    assert len({without_replayed(reply).SerializeToString() for reply in top_ups}) == 1
    assert calls.money(subscriber.id).balance == FUNDS - SMS_MICROS + 777
    # The stream's operations are ordinary transactions.
    assert calls.transaction(subscriber.id, twice.request_id).top_up.balance_micros == FUNDS - SMS_MICROS + 777


def test_a_session_driven_interactively_on_one_stream(calls, subscriber):
    """Reserve, then debit against the grant the stream just returned, then release."""
    outbox: queue.Queue = queue.Queue()

    def requests():
        while (message := outbox.get()) is not None:
            yield message

    responses = calls.stubs.charging.Charge(requests(), timeout=60)
    outbox.put(tagged(1, reserve_request(subscriber.id, 300, VOICE)))
    grant = next(responses)
    assert grant.correlation_tag == 1 and grant.reserve.granted_units == 300
    outbox.put(tagged(2, debit_request(subscriber.id, 120, reservation_id=grant.reserve.reservation_id)))
    used = next(responses)
    assert used.correlation_tag == 2 and used.debit.charged_micros == 120 * VOICE_MICROS_PER_S
    outbox.put(tagged(3, release_request(subscriber.id, grant.reserve.reservation_id)))
    released = next(responses)
    assert released.correlation_tag == 3 and released.release.released_micros == 180 * VOICE_MICROS_PER_S
    outbox.put(tagged(4, refund_request(subscriber.id, used.debit.charge_id, 20_000)))
    refunded = next(responses)
    assert refunded.refund.refundable_micros == 100_000
    outbox.put(None)
    assert list(responses) == []
    assert calls.money(subscriber.id).balance == FUNDS - 100_000


def test_a_stream_cut_short_leaves_nothing_half_known(calls, subscriber):
    """The client cancels mid-stream: whatever was applied is exactly what
    GetTransaction reports, now and later, and the balance agrees."""
    requests = [top_up_request(subscriber.id, 1 << index) for index in range(40)]
    outbox: queue.Queue = queue.Queue()
    for tag, request in enumerate(requests):
        outbox.put(tagged(tag, request))

    def stream():
        while (message := outbox.get()) is not None:
            yield message

    call = calls.stubs.charging.Charge(stream(), timeout=60)
    first = next(call)
    assert first.top_up.result == pb.SUCCESS
    call.cancel()
    outbox.put(None)
    with pytest.raises(grpc.RpcError) as raised:
        list(call)
    assert raised.value.code() == grpc.StatusCode.CANCELLED

    def applied():
        return {r.request_id for r in requests if calls.transaction(subscriber.id, r.request_id).found}

    now = applied()
    assert requests[first.correlation_tag].request_id in now
    assert calls.money(subscriber.id).balance == FUNDS + sum(r.amount_micros for r in requests if r.request_id in now)
    time.sleep(0.5)
    assert applied() == now
    assert calls.money(subscriber.id).balance == FUNDS + sum(r.amount_micros for r in requests if r.request_id in now)
