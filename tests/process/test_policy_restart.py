"""Policy counters across a restart of a real `grid serve` process (issue 11).

A DAY counter crosses its two thresholds while a policy function watches; the
grid stops (SIGTERM) and comes back on the same data directory with its shards'
clock moved past the day's end (GRID_FAULTS="clock_offset_ms=..."): the sweep
resets the counter. The policy function that reconnects with its last cursor
hears the reset once and nothing twice; one that was subscribed but never
watched connects with an empty cursor. The journal (AdminService.Dispute)
shows each status change with the trace id of the charge behind it.

Two jumps: a full day (86_400_000 ms, as an operator's clock jump or a grid down
for a day would be: notifications older than the 24 h retention are gone), and
just past midnight (a short outage across the period end: nothing is lost).
"""

import dataclasses
import datetime
import queue
import threading
import time

import pytest

from grid_client import ChargingClient, pb
from server_process import ServerProcess

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
RATING_GROUP = 7
PRICE = {"rating_group": RATING_GROUP, "unit": pb.EVENTS, "price_micros": 1_000, "rate_units": 1,
         "increment_units": 1}
DAILY = {"counter_id": "daily", "rating_groups": [RATING_GROUP], "spend": False, "period": pb.COUNTER_PERIOD_DAY,
         "base_status": "normal", "thresholds": [{"at_least": 50, "status": "slowed"},
                                                 {"at_least": 100, "status": "capped"}]}
SUBSCRIBER = "alice"
ARRIVAL_TIMEOUT_S = 20.0  # a restarted grid sweeps every second; allow a slow machine
QUIET_S = 1.5
SLOWED = ("daily", "normal", "slowed", 60, "USAGE")
CAPPED = ("daily", "slowed", "capped", 110, "USAGE")
RESET = ("daily", "capped", "normal", 0, "PERIOD_RESET")


class StatusWatcher:
    """A policy function: the real client's watch_status, pumped into a queue."""

    def __init__(self, target: str, client_id: str, cursor: str = "") -> None:
        self.client_id = client_id
        self.client = ChargingClient(target)
        self.received: queue.Queue = queue.Queue()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._pump, args=(cursor,), daemon=True)
        self.thread.start()

    def _pump(self, cursor: str) -> None:
        try:
            for notification in self.client.watch_status(self.client_id, cursor):
                self.received.put(notification)
        except Exception as error:  # noqa: BLE001 - the channel closes under it at the end
            if not self.closed.is_set():
                self.received.put(error)

    def _next(self, timeout_s: float):
        item = self.received.get(timeout=timeout_s)
        assert not isinstance(item, Exception), f"the watch of {self.client_id} ended: {item!r}"
        return item

    def take(self, count: int, timeout_s: float = ARRIVAL_TIMEOUT_S, quiet_s: float = QUIET_S) -> list:
        """Exactly `count` notifications within the timeout, then nothing for quiet_s."""
        got, give_up = [], time.monotonic() + timeout_s
        while len(got) < count:
            try:
                got.append(self._next(max(0.0, give_up - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: {len(got)} of {count} arrived: "
                                     f"{[brief(n) for n in got]}") from None
        try:
            extra = self._next(quiet_s)
        except queue.Empty:
            return got
        raise AssertionError(f"{self.client_id}: an unexpected {brief(extra)} after {[brief(n) for n in got]}")

    def take_until_quiet(self, timeout_s: float = ARRIVAL_TIMEOUT_S, quiet_s: float = QUIET_S) -> list:
        """At least one notification within the timeout, then all until quiet_s passes without one."""
        got = [self._next(timeout_s)]
        while True:
            try:
                got.append(self._next(quiet_s))
            except queue.Empty:
                return got

    def close(self) -> None:
        self.closed.set()
        self.client.close()
        self.thread.join(timeout=10)


def brief(n) -> tuple:
    return (n.status.counter_id, n.previous_status, n.status.status, n.status.value, n.cause)


def day_bounds_ms(at_ms: int) -> tuple[int, int]:
    day = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.timezone.utc).date()
    start = int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp()) * 1000
    return start, start + DAY_MS


@dataclasses.dataclass
class Run:
    start: int  # the day of the first run (shard time)
    end: int
    slowed_debit: object
    capped_debit: object
    heard: list  # pcf-live, first run
    counters_before: tuple
    reset: list  # pcf-live, reconnected with its last cursor
    late: list  # pcf-late, first connection (empty cursor), after the restart
    counters_after: tuple
    dispute: list  # every event of the subscriber
    chain: list  # the events behind the request "use-50"


def _status(counters) -> tuple:
    [s] = counters.statuses
    return (s.status, s.value, s.period_start_ms, s.period_end_ms, s.pending_status, s.pending_activation_ms)


def run_restart(data_dir, first_offset_ms: int, jump_ms: int) -> Run:
    """First run with the shards' clock at first_offset_ms, the second at
    first_offset_ms + jump_ms; returns what the clients saw."""
    wall_ms = time.time_ns() // 1_000_000
    start, end = day_bounds_ms(wall_ms + first_offset_ms)
    server = ServerProcess(data_dir)
    try:
        server.env = {"GRID_FAULTS": f"clock_offset_ms={first_offset_ms}"} if first_offset_ms else {}
        server.start()
        with ChargingClient(server.target) as client:
            assert client.put_tariff("daily-plan", [PRICE], [DAILY]).result == pb.SUCCESS
            assert client.create_account(SUBSCRIBER, "EUR", "daily-plan").result == pb.SUCCESS
            assert client.top_up(SUBSCRIBER, 10_000_000).result == pb.SUCCESS
            assert client.subscribe(SUBSCRIBER, "pcf-live").result == pb.SUCCESS
            assert client.subscribe(SUBSCRIBER, "pcf-late", ["daily"]).result == pb.SUCCESS
            live = StatusWatcher(server.target, "pcf-live")
            slowed_debit = client.debit(SUBSCRIBER, 60, rating_group=RATING_GROUP, request_id="use-60")
            capped_debit = client.debit(SUBSCRIBER, 50, rating_group=RATING_GROUP, request_id="use-50")
            heard = live.take(2)
            live.close()
            counters_before = _status(client.get_counters(SUBSCRIBER))
        assert server.terminate() == 0

        server.env = {"GRID_FAULTS": f"clock_offset_ms={first_offset_ms + jump_ms}"}
        server.start()
        with ChargingClient(server.target) as client:
            back = StatusWatcher(server.target, "pcf-live", heard[-1].cursor)
            reset = back.take(1)
            back.close()
            late = StatusWatcher(server.target, "pcf-late")
            late_heard = late.take_until_quiet()
            late.close()
            counters_after = _status(client.get_counters(SUBSCRIBER))
            # Shard time runs ahead of the front door's clock: a window wide enough for it.
            to_ms = wall_ms + first_offset_ms + jump_ms + DAY_MS
            dispute = list(client.dispute(SUBSCRIBER, to_ms=to_ms).events)
            chain = list(client.dispute(SUBSCRIBER, request_id="use-50", to_ms=to_ms).events)
        assert server.terminate() == 0
    finally:
        server.kill()
    return Run(start, end, slowed_debit, capped_debit, heard, counters_before, reset, late_heard, counters_after,
               dispute, chain)


def check_usage_reset_and_journal(run: Run) -> None:
    """What both jumps have in common."""
    start, end = run.start, run.end
    assert [brief(n) for n in run.heard] == [SLOWED, CAPPED]
    assert [(n.request_id, n.trace_id) for n in run.heard] == [
        ("use-60", run.slowed_debit.trace_id), ("use-50", run.capped_debit.trace_id)]
    assert all(n.trace_id for n in run.heard)
    assert run.counters_before == ("capped", 110, start, end, "normal", end)

    # The policy function that reconnects with its last cursor: the reset, once, and nothing else.
    [reset] = run.reset
    assert brief(reset) == RESET
    assert (reset.request_id, reset.trace_id, reset.subscriber_id) == ("", "", SUBSCRIBER)
    assert (reset.status.period_start_ms, reset.status.period_end_ms) == (end, end + DAY_MS)
    assert (reset.status.pending_status, reset.status.pending_activation_ms) == ("", 0)
    assert reset.cursor not in {n.cursor for n in run.heard}
    assert run.counters_after[:2] == ("normal", 0) and run.counters_after[2] >= end
    assert run.counters_after[4:] == ("", 0)

    # The journal shows why: each status record with the trace id of the charge behind it (a reset has none).
    policy = [(e.status, e.reference_id, e.units, e.request_id, e.trace_id) for e in run.dispute
              if e.kind == pb.JOURNAL_POLICY_STATUS]
    assert policy == [("slowed", "daily", 60, "use-60", run.slowed_debit.trace_id),
                      ("capped", "daily", 110, "use-50", run.capped_debit.trace_id),
                      ("normal", "daily", 0, "", "")]
    [reset_event] = [e for e in run.dispute if e.kind == pb.JOURNAL_POLICY_STATUS and e.status == "normal"]
    assert reset_event.at_ms >= end
    assert [(pb.JournalKind.Name(e.kind), e.trace_id, e.status) for e in run.chain] == [
        ("JOURNAL_DEBIT", run.capped_debit.trace_id, ""),
        ("JOURNAL_POLICY_STATUS", run.capped_debit.trace_id, "capped")]
    debit, status_event = run.chain
    assert status_event.sequence == debit.sequence + 1
    assert status_event.balance_before_micros == status_event.balance_after_micros == debit.balance_after_micros
    assert debit.balance_after_micros == 10_000_000 - 110_000


def _first_run_offset_ms() -> int:
    """0, unless a UTC midnight is near: then an hour back, so the first run stays within one day."""
    now_ms = time.time_ns() // 1_000_000
    return -3_600_000 if day_bounds_ms(now_ms)[1] - now_ms < 10 * 60_000 else 0


@pytest.fixture(scope="module")
def a_day_later(tmp_path_factory) -> Run:
    return run_restart(tmp_path_factory.mktemp("policy-day") / "grid-data", _first_run_offset_ms(), DAY_MS)


def test_a_restart_a_day_later_resets_the_counter_and_its_policy_function_hears_it_once(a_day_later):
    check_usage_reset_and_journal(a_day_later)
    # The threshold changes happened a day before the shards' clock now: past the 24 h
    # notification retention (CoreLimits.idempotency_horizon_s), so the policy function
    # that connects for the first time only hears the reset (its Subscribe reply had the
    # status at the time; GetCounters has it now).
    assert [brief(n) for n in a_day_later.late] == [RESET]


def test_a_reconnect_with_the_last_cursor_is_not_told_it_lost_notifications(a_day_later):
    [reset] = a_day_later.reset
    assert not reset.notifications_lost


def test_a_restart_across_midnight_loses_nothing_for_either_policy_function(tmp_path):
    # Shard clock 10 minutes before the next UTC midnight for the first run, just past it for the second.
    wall_ms = time.time_ns() // 1_000_000
    first_offset_ms = day_bounds_ms(wall_ms)[1] - wall_ms - 10 * 60_000
    run = run_restart(tmp_path / "grid-data", first_offset_ms, 11 * 60_000)
    check_usage_reset_and_journal(run)
    [reset] = run.reset
    assert not reset.notifications_lost  # nothing was dropped
    # The policy function connecting for the first time after the restart: every change, once, in order.
    assert [brief(n) for n in run.late] == [SLOWED, CAPPED, RESET]
    assert [n.request_id for n in run.late] == ["use-60", "use-50", ""]
    assert [n.trace_id for n in run.late][:2] == [run.slowed_debit.trace_id, run.capped_debit.trace_id]
    assert len({n.cursor for n in run.late}) == 3 and not any(n.notifications_lost for n in run.late)
