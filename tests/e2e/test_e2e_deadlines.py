"""Deadlines: a call with a tiny timeout either succeeds or fails with
DEADLINE_EXCEEDED, and GetTransaction then tells the truth: what it reports
applied is exactly what the balance shows, and its answer never changes."""

import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import FUNDS, VOICE_MICROS_PER_S, reserve_request, top_up_request

pytestmark = pytest.mark.slow

TIMEOUTS_S = [0.0001, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.02, 5.0]


def _call_with_deadline(call, request, timeout_s):
    """(reply or None, 'ok' | 'deadline'): nothing else is an acceptable outcome."""
    try:
        return call(request, timeout=timeout_s), "ok"
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (error.code(), error.details())
        return None, "deadline"


def _settle(calls, subscriber_id, sent):
    """GetTransaction of every request: {request_id: found reply or None}."""
    answers = {}
    for request, reply, _ in sent:
        recorded = calls.transaction(subscriber_id, request.request_id)
        field = recorded.WhichOneof("reply")
        answers[request.request_id] = getattr(recorded, field) if recorded.found else None
        if reply is not None:
            assert recorded.found and getattr(recorded, field) == reply, "an acknowledged call is found, as replied"
    return answers


def test_top_ups_with_tiny_deadlines_are_resolved_truthfully(calls, subscriber):
    # Top-up i adds 2^i micros: the balance says exactly which ones were applied.
    sent = []
    for index in range(40):
        request = top_up_request(subscriber.id, 1 << index)
        reply, outcome = _call_with_deadline(calls.stubs.charging.TopUp, request, TIMEOUTS_S[index % len(TIMEOUTS_S)])
        sent.append((request, reply, outcome))
    assert any(outcome == "ok" for _, _, outcome in sent), "the generous deadlines succeed"

    answers = _settle(calls, subscriber.id, sent)
    applied = sum(request.amount_micros for request, _, _ in sent if answers[request.request_id] is not None)
    assert calls.money(subscriber.id).balance == FUNDS + applied

    time.sleep(0.5)  # anything still in flight has landed by now
    assert _settle(calls, subscriber.id, sent) == answers, "GetTransaction's answer never changes"
    assert calls.money(subscriber.id).balance == FUNDS + applied


def test_reserves_with_tiny_deadlines_hold_exactly_what_get_transaction_reports(calls, subscriber):
    assert calls.top_up(subscriber.id, 10**12).result == pb.SUCCESS
    sent = []
    for index in range(24):
        request = reserve_request(subscriber.id, 1 << index)
        reply, outcome = _call_with_deadline(calls.stubs.charging.Reserve, request,
                                             TIMEOUTS_S[index % len(TIMEOUTS_S)])
        sent.append((request, reply, outcome))

    answers = _settle(calls, subscriber.id, sent)
    held = sum(answer.held_micros for answer in answers.values() if answer is not None)
    assert held == VOICE_MICROS_PER_S * sum(
        request.requested_units for request, _, _ in sent if answers[request.request_id] is not None)
    assert calls.money(subscriber.id).reserved == held
    listed = {r.reservation_id for r in calls.get_account(subscriber.id).reservations}
    assert listed == {answer.reservation_id for answer in answers.values() if answer is not None}
    time.sleep(0.5)
    assert _settle(calls, subscriber.id, sent) == answers
    assert calls.money(subscriber.id).reserved == held
