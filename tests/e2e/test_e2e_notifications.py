"""WatchNotifications over the wire (issue 4): re-authorisations and aborts
reach the network function that owns the session, and only it; a watcher that
reconnects with its last cursor gets exactly what it missed.

Every wait is bounded: a watcher is a server stream with a deadline, pumped by a
thread into a queue that the test reads with timeouts. The shared grid polls
the shards every 0.2 s (GridConfig.notification_poll_interval_s), so "nothing
arrives" is checked over several poll intervals.
"""

import dataclasses
import queue
import threading
import time

import grpc
import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import RATES, VOICE, failing, new_id, open_account, put_plan, set_state_request, top_up_request

pytestmark = pytest.mark.slow

# Long enough to see notifications that did not come: 5 poll intervals.
QUIET_S = 1.0
ARRIVAL_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 60.0


class Watcher:
    """One WatchNotifications stream, read by a thread into a queue."""

    def __init__(self, stub, client_id: str, cursor: str = "") -> None:
        self.client_id = client_id
        self.received: queue.Queue = queue.Queue()
        self.call = stub.WatchNotifications(pb.WatchNotificationsRequest(client_id=client_id, cursor=cursor),
                                            timeout=STREAM_DEADLINE_S)
        self.thread = threading.Thread(target=self._pump, daemon=True, name=f"watch-{client_id}")
        self.thread.start()

    def _pump(self) -> None:
        try:
            for notification in self.call:
                self.received.put(notification)
        except grpc.RpcError as error:
            self.received.put(error)

    def _next(self, timeout_s: float) -> pb.Notification:
        item = self.received.get(timeout=timeout_s)
        if isinstance(item, grpc.RpcError):
            raise AssertionError(f"the watch of {self.client_id} ended: {item.code()} {item.details()}")
        return item

    def take(self, count: int, timeout_s: float = ARRIVAL_TIMEOUT_S, quiet_s: float = QUIET_S) -> list[pb.Notification]:
        """Exactly `count` notifications within the timeout, then nothing more for quiet_s."""
        got, give_up = [], time.monotonic() + timeout_s
        while len(got) < count:
            try:
                got.append(self._next(max(0.0, give_up - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: {len(got)} of {count} notifications arrived: "
                                     f"{[summary(n) for n in got]}") from None
        self.assert_quiet(quiet_s)
        return got

    def assert_quiet(self, seconds: float = QUIET_S) -> None:
        try:
            extra = self._next(seconds)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: an unexpected notification {summary(extra)}")

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def summary(notification: pb.Notification) -> tuple:
    return (pb.NotificationType.Name(notification.type), pb.NotificationReason.Name(notification.reason),
            notification.session_id)


@pytest.fixture
def watchers(stubs):
    """Opens watchers on the shared grid and closes them after the test."""
    opened = []

    def watch(client_id: str, cursor: str = "") -> Watcher:
        watcher = Watcher(stubs.charging, client_id, cursor)
        opened.append(watcher)
        return watcher

    yield watch
    for watcher in opened:
        watcher.close()


def open_session(client, subscriber_id: str, notify_client_id: str = "") -> str:
    session_id = new_id("sess-")
    reply = client.create_session(subscriber_id, session_id, [(VOICE, 60, 0)], invocation_sequence_number=1,
                                  notify_client_id=notify_client_id)
    assert reply.result == pb.SUCCESS and reply.multiple_unit_information[0].result == pb.SUCCESS, reply
    return session_id


def changed_rates(voice_price_micros: int) -> list[pb.RatingGroupRate]:
    rates = []
    for rate in RATES:
        copy = pb.RatingGroupRate()
        copy.CopyFrom(rate)
        if copy.rating_group == VOICE:
            copy.price_micros = voice_price_micros
        rates.append(copy)
    return rates


@dataclasses.dataclass
class Events:
    """The four kinds of event that reach a session's owner, on one subscriber's plan."""

    stubs: object
    subscriber_id: str
    plan_id: str
    price: int = 60_000

    def top_up(self) -> pb.TopUpResponse:
        reply = self.stubs.charging.TopUp(top_up_request(self.subscriber_id, 1_000), timeout=30)
        assert reply.result == pb.SUCCESS
        return reply

    def change_tariff(self) -> None:
        self.price += 6_000
        reply = self.stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=self.plan_id,
                                                                 rates=changed_rates(self.price)), timeout=30)
        assert reply.result == pb.SUCCESS and reply.version > 1

    def set_state(self, state) -> pb.SetAccountStateResponse:
        reply = self.stubs.account.SetAccountState(set_state_request(self.subscriber_id, state), timeout=30)
        assert reply.result == pb.SUCCESS
        return reply


def test_reauthorisations_and_aborts_reach_the_owner_and_nobody_else(client, stubs, watchers):
    plan_id = put_plan(stubs)
    subscriber = open_account(stubs, plan_id)
    owner, bystander, nobody = new_id("smf-a-"), new_id("smf-b-"), new_id("smf-c-")
    session_id = open_session(client, subscriber.id, owner)
    open_session(client, subscriber.id)  # nobody to tell
    released = open_session(client, subscriber.id, owner)
    client.release_session(subscriber.id, released, 2)  # no longer told anything
    # The bystander owns a session of another subscriber on another plan.
    other = open_account(stubs, put_plan(stubs))
    open_session(client, other.id, bystander)
    events = Events(stubs, subscriber.id, plan_id)
    watch_owner, watch_bystander, watch_nobody = watchers(owner), watchers(bystander), watchers(nobody)

    topped_request_id = new_id("top-")
    topped = stubs.charging.TopUp(top_up_request(subscriber.id, 1_000, request_id=topped_request_id), timeout=30)
    assert topped.result == pb.SUCCESS
    (n,) = watch_owner.take(1)
    assert (n.type, n.reason, n.session_id, n.subscriber_id) == (
        pb.REAUTHORIZATION, pb.TOP_UP, session_id, subscriber.id)
    assert n.at_ms > 0 and n.cursor and not n.notifications_lost
    assert n.trace_id == topped.trace_id and n.trace_id

    # A retransmitted top-up and a PutTariff that changes nothing are no news;
    # a PutTariff that changes the plan is.
    replayed = stubs.charging.TopUp(top_up_request(subscriber.id, 1_000, request_id=topped_request_id), timeout=30)
    assert replayed.replayed
    reply = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES), timeout=30)
    assert reply.version == 1
    watch_owner.assert_quiet()
    events.change_tariff()
    (n,) = watch_owner.take(1)
    assert (n.type, n.reason, n.session_id) == (pb.REAUTHORIZATION, pb.TARIFF_CHANGED, session_id)

    suspended = events.set_state(pb.SUSPENDED)
    (n,) = watch_owner.take(1)
    assert (n.type, n.reason, n.session_id, n.trace_id) == (
        pb.ABORT_CHARGING, pb.ACCOUNT_SUSPENDED, session_id, suspended.trace_id)
    events.set_state(pb.ACTIVE)
    (n,) = watch_owner.take(1)
    assert (n.type, n.reason, n.session_id) == (pb.REAUTHORIZATION, pb.ACCOUNT_REACTIVATED, session_id)

    watch_bystander.assert_quiet(0)
    watch_nobody.assert_quiet(0)
    # The bystander's own news does reach it (its stream works).
    Events(stubs, other.id, "").top_up()
    (n,) = watch_bystander.take(1)
    assert (n.subscriber_id, n.reason) == (other.id, pb.TOP_UP)
    watch_owner.assert_quiet(0)
    watch_nobody.assert_quiet(0)


def test_an_update_hands_the_session_to_a_new_owner(client, stubs, watchers):
    """UpdateSession's notify_client_id moves the session (a failover to another network function)."""
    subscriber = open_account(stubs, put_plan(stubs))
    old_owner, new_owner = new_id("nf-old-"), new_id("nf-new-")
    session_id = open_session(client, subscriber.id, old_owner)
    watch_old, watch_new = watchers(old_owner), watchers(new_owner)
    events = Events(stubs, subscriber.id, "")
    events.top_up()
    assert [summary(n) for n in watch_old.take(1)] == [("REAUTHORIZATION", "TOP_UP", session_id)]
    client.update_session(subscriber.id, session_id, 2, [(VOICE, 60, 10)], notify_client_id=new_owner)
    events.top_up()
    assert [summary(n) for n in watch_new.take(1)] == [("REAUTHORIZATION", "TOP_UP", session_id)]
    watch_old.assert_quiet(0)
    # An update that names no owner keeps the current one.
    client.update_session(subscriber.id, session_id, 3, [(VOICE, 60, 10)])
    events.top_up()
    assert [summary(n) for n in watch_new.take(1)] == [("REAUTHORIZATION", "TOP_UP", session_id)]
    watch_old.assert_quiet(0)
    assert client.get_session(subscriber.id, session_id).notify_client_id == new_owner


def test_a_watcher_that_reconnects_with_its_cursor_gets_exactly_what_it_missed(client, stubs, watchers):
    plan_id = put_plan(stubs)
    subscriber = open_account(stubs, plan_id)
    owner = new_id("smf-")
    sessions = sorted([open_session(client, subscriber.id, owner), open_session(client, subscriber.id, owner)])
    events = Events(stubs, subscriber.id, plan_id)

    first = watchers(owner)
    events.top_up()
    before = first.take(2)
    assert sorted(n.session_id for n in before) == sessions
    cursor = before[-1].cursor
    first.close()

    # While it is away: four events, each for both sessions.
    events.change_tariff()
    events.set_state(pb.SUSPENDED)
    events.set_state(pb.ACTIVE)
    events.top_up()
    missed_reasons = ["TARIFF_CHANGED", "ACCOUNT_SUSPENDED", "ACCOUNT_REACTIVATED", "TOP_UP"]

    again = watchers(owner, cursor)
    missed = again.take(8)
    assert [pb.NotificationReason.Name(n.reason) for n in missed] == [r for r in missed_reasons for _ in sessions]
    assert [pb.NotificationType.Name(n.type) for n in missed][2:4] == ["ABORT_CHARGING"] * 2
    for pair in zip(missed[0::2], missed[1::2]):
        assert sorted(n.session_id for n in pair) == sessions
    assert not any(n.notifications_lost for n in missed)
    cursors = [n.cursor for n in before + missed]
    assert len(set(cursors)) == len(cursors), "a notification came twice"
    # Still live after the catch-up.
    events.top_up()
    live = again.take(2)
    assert [pb.NotificationReason.Name(n.reason) for n in live] == ["TOP_UP", "TOP_UP"]

    # From the oldest kept: everything, once, in order; and resuming from any
    # cursor of that list yields exactly the rest.
    everything = watchers(owner).take(12)
    assert [(n.type, n.reason, n.session_id, n.at_ms) for n in everything] == [
        (n.type, n.reason, n.session_id, n.at_ms) for n in before + missed + live]
    resumed = {index: watchers(owner, everything[index].cursor) for index in (0, 5, 10, 11)}
    for index, watcher in resumed.items():
        rest = watcher.take(11 - index, quiet_s=0)
        # Compared by content: a cursor also records how far the other shards had been read,
        # so two streams may give the same notification different (equally valid) cursors.
        assert [(n.reason, n.session_id, n.at_ms) for n in rest] == [
            (n.reason, n.session_id, n.at_ms) for n in everything[index + 1:]], index
    time.sleep(QUIET_S)  # bounded: then nobody may have received anything more
    for watcher in resumed.values():
        watcher.assert_quiet(0)


def test_the_client_watch_yields_the_notifications_of_its_sessions(stubs, embedded):
    """The real client's watch_notifications (sync): the owner's notifications, in order."""
    from grid_client import ChargingClient

    subscriber = open_account(stubs, put_plan(stubs))
    owner = new_id("nf-")
    received: queue.Queue = queue.Queue()
    with ChargingClient(embedded.target) as client:
        session_id = open_session(client, subscriber.id, owner)
        for amount in (1, 2, 3):
            client.top_up(subscriber.id, amount)

        def pump():
            try:
                for notification in client.watch_notifications(owner):
                    received.put(notification)
            except Exception as error:  # noqa: BLE001 - the channel closes under it at the end
                received.put(error)

        threading.Thread(target=pump, daemon=True).start()
        got = [received.get(timeout=ARRIVAL_TIMEOUT_S) for _ in range(3)]
        assert [summary(n) for n in got] == [("REAUTHORIZATION", "TOP_UP", session_id)] * 3
        with pytest.raises(queue.Empty):
            received.get(timeout=QUIET_S)


@pytest.mark.parametrize("cursor", ["garbage", "c1", "c1.1", "c1.1.2.3", "c1.x.1", "c1.-1.0", "c2.0.0", "c1..0"])
def test_a_cursor_the_grid_did_not_give_out_is_invalid_argument(stubs, cursor):
    request = pb.WatchNotificationsRequest(client_id=new_id("nf-"), cursor=cursor)
    error = failing(lambda: list(stubs.charging.WatchNotifications(request, timeout=10)))
    assert (error.code, error.field, error.info_field) == (grpc.StatusCode.INVALID_ARGUMENT, "cursor", "cursor")


def test_a_cursor_with_a_digit_int_cannot_read_is_invalid_argument(stubs):
    request = pb.WatchNotificationsRequest(client_id=new_id("nf-"), cursor="c1.\u00b2.0")
    error = failing(lambda: list(stubs.charging.WatchNotifications(request, timeout=10)))
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "cursor")


def test_a_cursor_position_out_of_range_names_the_cursor(stubs):
    request = pb.WatchNotificationsRequest(client_id=new_id("nf-"), cursor=f"c1.{2**64}.0")
    error = failing(lambda: list(stubs.charging.WatchNotifications(request, timeout=10)))
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "cursor")


def test_a_watch_needs_a_client_id(stubs):
    request = pb.WatchNotificationsRequest(cursor="")
    error = failing(lambda: list(stubs.charging.WatchNotifications(request, timeout=10)))
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "client_id")
