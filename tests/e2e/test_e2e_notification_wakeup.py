"""Watchers wake when a shard makes a notification, not only at the poll interval.

A grid whose watchers poll only every 120 s still delivers a top-up's
re-authorisation and a counter's status change within seconds: the shard's
answer to the batch that made them tells the front door, which wakes its
watchers (grid/frontdoor/notifications.py). With the wake-up broken, both
waits below run into their bound.
"""

import queue
import threading
import time

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import ServingGrid, new_id
from grid_client import ChargingClient

pytestmark = pytest.mark.slow

POLL_INTERVAL_S = 120.0
DELIVERY_BOUND_S = 10.0  # far below the poll interval, far above a batch round trip


@pytest.fixture(scope="module")
def slow_polling_grid(tmp_path_factory):
    grid = ServingGrid(tmp_path_factory.mktemp("wakeup") / "grid-data", notification_poll_interval_s=POLL_INTERVAL_S)
    yield grid
    grid.stop()


def _first(stream) -> queue.Queue:
    """The stream's first message, read on a thread into a queue."""
    out: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: out.put(next(iter(stream))), daemon=True).start()
    return out


def test_a_reauthorisation_arrives_long_before_the_poll_interval(slow_polling_grid):
    with ChargingClient(slow_polling_grid.target) as client:
        plan = new_id("plan-")
        client.put_tariff(plan, [{"rating_group": 1, "unit": pb.SECONDS, "price_micros": 1000, "rate_units": 60,
                                  "increment_units": 1}])
        subscriber, owner = new_id("sub-"), new_id("smf-")
        client.create_account(subscriber, "EUR", plan)
        client.top_up(subscriber, 1_000_000)
        client.create_session(subscriber, new_id("pdu-"), [(1, 60, 0)], notify_client_id=owner)
        arrived = _first(client.watch_notifications(owner))
        time.sleep(1.0)  # the watcher has made its first (empty) read round and now waits
        started = time.monotonic()
        client.top_up(subscriber, 1_000)
        notification = arrived.get(timeout=DELIVERY_BOUND_S)
        assert notification.type == pb.REAUTHORIZATION and notification.reason == pb.TOP_UP
        assert time.monotonic() - started < DELIVERY_BOUND_S


def test_a_status_change_arrives_long_before_the_poll_interval(slow_polling_grid):
    with ChargingClient(slow_polling_grid.target) as client:
        plan = new_id("plan-")
        client.put_tariff(
            plan, [{"rating_group": 1, "unit": pb.EVENTS, "price_micros": 1000, "rate_units": 1, "increment_units": 1}],
            [{"counter_id": "events", "rating_groups": [1], "period": pb.COUNTER_PERIOD_MONTH, "base_status": "normal",
              "thresholds": [{"at_least": 5, "status": "capped"}]}])
        subscriber, pcf = new_id("sub-"), new_id("pcf-")
        client.create_account(subscriber, "EUR", plan)
        client.top_up(subscriber, 1_000_000)
        client.subscribe(subscriber, pcf)
        arrived = _first(client.watch_status(pcf))
        time.sleep(1.0)
        client.debit(subscriber, 5, rating_group=1)
        notification = arrived.get(timeout=DELIVERY_BOUND_S)
        assert (notification.previous_status, notification.status.status) == ("normal", "capped")
