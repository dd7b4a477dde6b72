"""Fraud and policy controls over the wire: a plan's controls set with PutTariff
(and `grid tariff put --control`), a spend-velocity control firing under real
debits, its ALERT reaching the session owner on WatchNotifications, new grants
denied, the hit in the dispute with the trace id of the debit that fired it,
and the grid audit still reconciling."""

import json
import queue
import subprocess
import sys
import threading

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import new_id
from grid_client import ChargingClient

pytestmark = pytest.mark.slow

EV = 1


def test_a_spend_velocity_control_fires_alerts_denies_grants_and_is_in_the_dispute(embedded):
    plan, subscriber, owner = new_id("plan-"), new_id("sub-"), new_id("smf-")
    put = subprocess.run(
        [sys.executable, "-m", "grid.cli", "--target", embedded.target, "tariff", "put", plan,
         "--rate", f"{EV}:EVENTS:1000:1:1", "--control", "burst:SPEND_VELOCITY:5000:600:DENY_GRANTS"],
        capture_output=True, text=True, timeout=120)
    assert put.returncode == 0, put.stderr
    with ChargingClient(embedded.target) as client:
        stored = client.get_tariff(plan).plan
        assert [(c.control_id, c.kind, c.limit, c.window_s, c.action) for c in stored.controls] == [
            ("burst", pb.SPEND_VELOCITY, 5_000, 600, pb.DENY_GRANTS)]
        client.create_account(subscriber, "EUR", plan)
        client.top_up(subscriber, 1_000_000)
        session = client.create_session(subscriber, new_id("pdu-"), [(EV, 1, 0)], notify_client_id=owner)
        assert session.multiple_unit_information[0].result == pb.SUCCESS
        alerts: queue.Queue = queue.Queue()
        watcher = ChargingClient(embedded.target)

        def watch() -> None:
            try:
                for notification in watcher.watch_notifications(owner):
                    alerts.put(notification)
            except Exception:  # noqa: BLE001 - the stream ends when the test closes the channel
                pass

        threading.Thread(target=watch, daemon=True).start()
        debits = [client.debit(subscriber, 2, rating_group=EV) for _ in range(3)]  # 6_000 within 600 s
        alert = alerts.get(timeout=15)
        assert (alert.type, alert.reason) == (pb.ALERT, pb.CONTROL_FIRED)
        assert alert.trace_id == debits[2].trace_id
        assert client.reserve(subscriber, new_id("s-"), EV, 1).result == pb.END_USER_SERVICE_DENIED
        assert client.debit(subscriber, 1, rating_group=EV).result == pb.SUCCESS  # usage is still charged
        events = client.dispute(subscriber).events
        hits = [e for e in events if e.kind == pb.JOURNAL_CONTROL_HIT]
        assert [(e.reference_id, e.units, e.status, e.trace_id) for e in hits] == [
            ("burst", 6_000, "DENY_GRANTS", debits[2].trace_id)]
        report = json.loads(client.audit().report_json)
        assert report["ok"], [p for s in report["shards"] for p in s["problems"]]
        watcher.close()
