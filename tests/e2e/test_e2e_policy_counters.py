"""SpendingLimitService over the wire (issue 11), on the shared grid: a policy
function subscribes to a subscriber's counters, usage crosses thresholds, and
WatchStatus (through the real client's watch_status) delivers exactly the
status changes expected, in order; a reconnect with the last cursor misses
none and sees none twice. Also Subscribe's and GetCounters' views, the `grid
counters` and `grid policy watch` CLI, and bad Subscribe requests.

Every wait is bounded: a watch is pumped by a thread into a queue read with
timeouts; "nothing more arrives" is checked over several poll intervals (the
shared grid polls the shards every 0.2 s). Counters here are MONTH counters
on the wall clock: the expected period bounds are computed with datetime.
"""

import datetime
import json
import os
import queue
import subprocess
import sys
import threading
import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import RATES, SMS, VOICE, failing, new_id, open_account
from grid_client import ChargingClient

pytestmark = pytest.mark.slow

QUIET_S = 1.0
ARRIVAL_TIMEOUT_S = 10.0

# voice: seconds of VOICE this month (1_000 micros a second); spend: money on anything this month.
COUNTERS = [
    {"counter_id": "voice", "rating_groups": [VOICE], "spend": False, "period": pb.COUNTER_PERIOD_MONTH,
     "base_status": "normal", "thresholds": [{"at_least": 60, "status": "slowed"},
                                             {"at_least": 120, "status": "capped"}]},
    {"counter_id": "spend", "rating_groups": [], "spend": True, "period": pb.COUNTER_PERIOD_MONTH,
     "base_status": "ok", "thresholds": [{"at_least": 500_000, "status": "high"},
                                         {"at_least": 900_000, "status": "blocked"}]},
]


def month_bounds_ms() -> tuple[int, int]:
    now = datetime.datetime.now(datetime.timezone.utc)
    start = datetime.datetime(now.year, now.month, 1, tzinfo=datetime.timezone.utc)
    end = datetime.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=datetime.timezone.utc)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


class StatusWatcher:
    """One policy function: the real client's watch_status (it resumes from its
    last cursor by itself), pumped by a thread into a queue."""

    def __init__(self, target: str, client_id: str, cursor: str = "") -> None:
        self.client_id = client_id
        self.client = ChargingClient(target)
        self.received: queue.Queue = queue.Queue()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._pump, args=(cursor,), daemon=True, name=f"watch-{client_id}")
        self.thread.start()

    def _pump(self, cursor: str) -> None:
        try:
            for notification in self.client.watch_status(self.client_id, cursor):
                self.received.put(notification)
        except Exception as error:  # noqa: BLE001 - the channel closes under it at the end
            if not self.closed.is_set():
                self.received.put(error)

    def _next(self, timeout_s: float) -> pb.StatusNotification:
        item = self.received.get(timeout=timeout_s)
        if isinstance(item, Exception):
            raise AssertionError(f"the watch of {self.client_id} ended: {item!r}")
        return item

    def take(self, count: int, timeout_s: float = ARRIVAL_TIMEOUT_S, quiet_s: float = QUIET_S) -> list:
        """Exactly `count` notifications within the timeout, then nothing more for quiet_s."""
        got, give_up = [], time.monotonic() + timeout_s
        while len(got) < count:
            try:
                got.append(self._next(max(0.0, give_up - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: {len(got)} of {count} notifications arrived: "
                                     f"{[brief(n) for n in got]}") from None
        self.assert_quiet(quiet_s)
        return got

    def assert_quiet(self, seconds: float = QUIET_S) -> None:
        try:
            extra = self._next(seconds)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: an unexpected notification {brief(extra)}")

    def close(self) -> None:
        self.closed.set()
        self.client.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def brief(n: pb.StatusNotification) -> tuple:
    return (n.status.counter_id, n.previous_status, n.status.status, n.status.value, n.cause)


def status_tuple(s: pb.CounterStatus) -> tuple:
    return (s.counter_id, s.status, s.value, s.period_start_ms, s.period_end_ms, s.pending_status,
            s.pending_activation_ms)


@pytest.fixture
def watchers(embedded):
    opened = []

    def watch(client_id: str, cursor: str = "") -> StatusWatcher:
        watcher = StatusWatcher(embedded.target, client_id, cursor)
        opened.append(watcher)
        return watcher

    yield watch
    for watcher in opened:
        if not watcher.closed.is_set():
            watcher.close()


@pytest.fixture
def counted(client, stubs):
    """A funded subscriber on a new plan with COUNTERS."""
    plan_id = new_id("plan-pc-")
    reply = client.put_tariff(plan_id, RATES, COUNTERS)
    assert (reply.result, reply.version) == (pb.SUCCESS, 1), reply
    plan = client.get_tariff(plan_id).plan
    assert [c.counter_id for c in plan.policy_counters] == ["voice", "spend"]
    assert [(t.at_least, t.status) for t in plan.policy_counters[1].thresholds] == [(500_000, "high"),
                                                                                    (900_000, "blocked")]
    return open_account(stubs, plan_id)


def cli(target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grid.cli", "--target", target, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ})


def test_a_policy_function_hears_every_status_change_once_in_order_and_resumes_from_its_cursor(
        client, counted, watchers, embedded):
    start, end = month_bounds_ms()
    sub = counted.id
    pcf, pcf_spend = new_id("pcf-"), new_id("pcf-spend-")
    subscribed = client.subscribe(sub, pcf)
    assert (subscribed.result, subscribed.replayed) == (pb.SUCCESS, False) and subscribed.trace_id
    assert [status_tuple(s) for s in subscribed.statuses] == [
        ("voice", "normal", 0, start, end, "", 0), ("spend", "ok", 0, start, end, "", 0)]
    assert client.subscribe(sub, pcf_spend, ["spend"]).result == pb.SUCCESS
    watcher = watchers(pcf)

    request_ids = [new_id(f"v{units}-") for units in (50, 20, 30, 30)]
    debits = [client.debit(sub, 50, rating_group=VOICE, request_id=request_ids[0])]  # 50 s: still normal
    watcher.assert_quiet()
    for units, request_id in zip((20, 30, 30), request_ids[1:]):  # 70 s: slowed; 100 s: -; 130 s: capped
        debits.append(client.debit(sub, units, rating_group=VOICE, request_id=request_id))
    assert all(d.result == pb.SUCCESS for d in debits)
    slowed, capped = watcher.take(2)
    assert [brief(n) for n in (slowed, capped)] == [("voice", "normal", "slowed", 70, "USAGE"),
                                                   ("voice", "slowed", "capped", 130, "USAGE")]
    for n, debit, request_id in ((slowed, debits[1], request_ids[1]), (capped, debits[3], request_ids[3])):
        assert (n.subscriber_id, n.request_id, n.trace_id) == (sub, request_id, debit.trace_id) and n.trace_id
        assert (n.status.period_start_ms, n.status.period_end_ms) == (start, end)
        assert (n.status.pending_status, n.status.pending_activation_ms) == ("normal", end)
        assert n.cursor and not n.notifications_lost and n.at_ms > 0

    # 4 SMS: 400_000 more micros -> 530_000 of spend: high (both policy functions).
    high_debit = client.debit(sub, 4, rating_group=SMS)
    (high,) = watcher.take(1)
    assert brief(high) == ("spend", "ok", "high", 530_000, "USAGE") and high.trace_id == high_debit.trace_id
    watcher.close()

    # While the policy function is away: 4 more SMS -> 930_000: blocked.
    client.debit(sub, 4, rating_group=SMS)
    back = watchers(pcf, high.cursor)
    (blocked,) = back.take(1)
    assert brief(blocked) == ("spend", "high", "blocked", 930_000, "USAGE")
    assert not blocked.notifications_lost
    back.close()
    # From the first cursor: exactly the rest, each once. (A cursor also records how far the other
    # shards were read when the notification was delivered, so the same notification may carry
    # different, equally valid cursors on two streams: compare what they resume, not their text.)
    everything = [slowed, capped, high, blocked]
    rest = watchers(pcf, slowed.cursor).take(3, quiet_s=0.5)
    assert [brief(n) for n in rest] == [brief(n) for n in everything[1:]]
    assert [(n.at_ms, n.trace_id) for n in rest] == [(n.at_ms, n.trace_id) for n in everything[1:]]
    # From the beginning (empty cursor): all four, in order, nothing twice.
    again = watchers(pcf).take(4, quiet_s=0.5)
    assert [(brief(n), n.at_ms, n.trace_id) for n in again] == [
        (brief(n), n.at_ms, n.trace_id) for n in everything]
    assert len({n.cursor for n in again}) == 4
    # The spend-only policy function heard the spend changes only.
    assert [brief(n) for n in watchers(pcf_spend).take(2, quiet_s=0.5)] == [brief(high), brief(blocked)]

    # The current status: GetCounters, a new Subscribe's reply, and `grid counters`.
    expected = [("voice", "capped", 130, start, end, "normal", end),
                ("spend", "blocked", 930_000, start, end, "ok", end)]
    counters = client.get_counters(sub)
    assert counters.result == pb.SUCCESS and [status_tuple(s) for s in counters.statuses] == expected
    resubscribed = client.subscribe(sub, pcf, ["voice"])
    assert [status_tuple(s) for s in resubscribed.statuses] == expected[:1]
    shown = cli(embedded.target, "counters", sub)
    assert shown.returncode == 0, shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["result"] == "SUCCESS"
    assert [(s["counter_id"], s["status"], int(s["value"]), int(s["period_end_ms"]), s["pending_status"])
            for s in printed["statuses"]] == [(c, st, v, e, p) for c, st, v, _, e, p, _ in expected]
    # `grid policy watch` prints the same changes as JSON lines.
    watched = cli(embedded.target, "policy", "watch", pcf, "--cursor", slowed.cursor, "--count", "3",
                  "--timeout-s", "20")
    assert watched.returncode == 0, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [(d["status"]["counter_id"], d["previous_status"], d["status"]["status"], d["cause"])
            for d in lines] == [b[:3] + b[4:] for b in map(brief, everything[1:])]
    assert [d["trace_id"] for d in lines] == [n.trace_id for n in everything[1:]]
    # Resuming from the last cursor the CLI printed: nothing more.
    assert watchers(pcf, lines[-1]["cursor"]).take(0, quiet_s=0.5) == []


def test_subscribe_replays_unsubscribe_and_bad_requests_over_the_wire(client, counted, stubs, watchers):
    spending = pb_grpc.SpendingLimitServiceStub(stubs.channel)
    sub, pcf = counted.id, new_id("pcf-")
    request = pb.SubscribeRequest(request_id=new_id("s-"), subscriber_id=sub, client_id=pcf, counter_ids=["voice"])
    first = spending.Subscribe(request, timeout=30)
    assert first.result == pb.SUCCESS and [s.counter_id for s in first.statuses] == ["voice"]
    client.debit(sub, 60, rating_group=VOICE)  # voice slowed
    replay = spending.Subscribe(request, timeout=30)
    assert replay.replayed and list(replay.statuses) == list(first.statuses)  # the original answer
    watcher = watchers(pcf)
    assert [brief(n) for n in watcher.take(1)] == [("voice", "normal", "slowed", 60, "USAGE")]
    bye_id = new_id("u-")
    bye = client.unsubscribe(sub, pcf, request_id=bye_id)
    assert bye.result == pb.SUCCESS and not bye.replayed
    assert client.unsubscribe(sub, pcf, request_id=bye_id).replayed
    assert spending.Subscribe(request, timeout=30).replayed  # a replay does not subscribe again
    client.debit(sub, 60, rating_group=VOICE)  # voice capped: nobody is told
    watcher.assert_quiet()

    unknown = client.subscribe(sub, pcf, ["voice", "nope"])
    assert (unknown.result, list(unknown.statuses)) == (pb.COUNTER_UNKNOWN, [])
    assert client.subscribe(new_id("nobody-"), pcf).result == pb.USER_UNKNOWN
    # Caller errors: INVALID_ARGUMENT naming the field.
    for bad, field in (
            (pb.SubscribeRequest(request_id=new_id("s-"), subscriber_id=sub, client_id=""), "client_id"),
            (pb.SubscribeRequest(request_id=new_id("s-"), subscriber_id=sub, client_id=pcf,
                                 counter_ids=["voice", "voice"]), "counter_ids"),
            (pb.SubscribeRequest(request_id=new_id("s-"), subscriber_id=sub, client_id=pcf, counter_ids=[""]),
             "counter_ids[0]"),
    ):
        error = failing(spending.Subscribe, bad, timeout=30)
        assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), error
    error = failing(lambda: list(spending.WatchStatus(pb.WatchStatusRequest(client_id=""), timeout=10)))
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "client_id")
    # The same request id with another payload: ALREADY_EXISTS, and nothing changed.
    other = pb.SubscribeRequest(request_id=request.request_id, subscriber_id=sub, client_id=pcf,
                                counter_ids=["spend"])
    error = failing(spending.Subscribe, other, timeout=30)
    assert (error.code, error.info_field) == (grpc.StatusCode.ALREADY_EXISTS, "counter_ids"), error
    watcher.assert_quiet(0.5)

