"""Policy counters for policy functions (TS 29.594 spending limits, Sy).

Part of the shard state machine (ShardState mixes this in). A tariff plan
defines counters: units of some rating groups, or money spent, within a
period (UTC day, week from Monday, calendar month), with thresholds naming the
status. Every charge passes through `_count_charge` as it is recorded, so a
status change is journaled and notified in the same synced write as the
charge that caused it. A counter resets at its period's end: lazily when the
next charge comes, and by the sweep when its status must change back, so a
policy function hears of the reset when it happens. A status that will change
at a known time (the reset) is announced as pending with its activation time.
"""

import calendar
import datetime
import heapq

from grid.domain import operations as ops
from grid.domain.outcomes import CounterPeriod, ErrorCode, JournalKind, NotificationReason, NotificationType, Result
from grid.domain.rating import PolicyCounter
from grid.domain.records import POLICY_CHANNEL, Account, CounterState, Notification, Subscription

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_FIRST_MONDAY_MS = 4 * DAY_MS  # 1970-01-05, the first Monday after the epoch
USAGE, PERIOD_RESET = "USAGE", "PERIOD_RESET"


def period_bounds(period: CounterPeriod, at_ms: int) -> tuple[int, int]:
    """[start, end) in ms of the period holding at_ms (UTC)."""
    if period == CounterPeriod.COUNTER_PERIOD_DAY:
        start = at_ms - at_ms % DAY_MS
        return start, start + DAY_MS
    if period == CounterPeriod.COUNTER_PERIOD_WEEK:
        start = (at_ms - _FIRST_MONDAY_MS) // WEEK_MS * WEEK_MS + _FIRST_MONDAY_MS
        return start, start + WEEK_MS
    if period == CounterPeriod.COUNTER_PERIOD_MONTH:
        day = datetime.datetime.fromtimestamp(at_ms // 1000, datetime.timezone.utc)
        following = (day.year + day.month // 12, day.month % 12 + 1)
        start = calendar.timegm((day.year, day.month, 1, 0, 0, 0)) * 1000
        return start, calendar.timegm((*following, 1, 0, 0, 0)) * 1000
    raise AssertionError(f"unknown period {period!r}")


class CounterRules:
    """The policy-counter half of ShardState (uses its accounts, tariffs, journal,
    marks and notifications)."""

    def _init_counters(self) -> None:
        self.counters: dict[tuple[str, str, str], CounterState] = {}
        self.subscriptions: dict[tuple[str, str, str], Subscription] = {}
        self._account_subscriptions: dict[tuple[str, str], dict[str, Subscription]] = {}
        # (period end, counter key) of counters whose status must change back at the reset.
        self._reset_heap: list[tuple[int, tuple[str, str, str]]] = []
        self._deleted_subscriptions: list[tuple[str, str, str]] = []

    def _plan_counters(self, account: Account) -> tuple[PolicyCounter, ...]:
        plan = self.tariffs.get((account.tenant, account.tariff_plan_id))
        return plan.policy_counters if plan is not None else ()

    # ------------------------------------------------------------ counting

    def _count_charge(self, account: Account, rating_group: int, used_units: int, charged_micros: int,
                      now_ms: int, request_id: str, trace_id: str) -> None:
        for counter in self._plan_counters(account):
            if not counter.counts(rating_group):
                continue
            amount = charged_micros if counter.spend else used_units
            if amount <= 0:
                continue
            state = self._counter_state(account, counter, now_ms)
            state.value += amount
            self._mark("counter", state.key, state)
            self._set_status(account, counter, state, counter.status_of(state.value), now_ms, USAGE, request_id,
                             trace_id)

    def _counter_state(self, account: Account, counter: PolicyCounter, now_ms: int) -> CounterState:
        """The counter in the current period (a new period starts from zero)."""
        key = (account.tenant, account.subscriber_id, counter.counter_id)
        start, _ = period_bounds(counter.period, now_ms)
        state = self.counters.get(key)
        if state is None:
            state = CounterState(account.tenant, account.subscriber_id, counter.counter_id, 0, start,
                                 counter.base_status)
            self.counters[key] = state
            self._mark("counter", key, state)
        elif state.period_start_ms < start:
            state.value, state.period_start_ms = 0, start
            self._mark("counter", key, state)
            self._set_status(account, counter, state, counter.base_status, now_ms, PERIOD_RESET, "", "")
        return state

    def _set_status(self, account: Account, counter: PolicyCounter, state: CounterState, status: str, now_ms: int,
                    cause: str, request_id: str, trace_id: str) -> None:
        if status == state.status:
            return
        previous, state.status = state.status, status
        self._mark("counter", state.key, state)
        self._journal(JournalKind.POLICY_STATUS, account, request_id, Result.SUCCESS, now_ms, trace_id,
                      reference_id=counter.counter_id, units=state.value, status=status)
        _, end = period_bounds(counter.period, state.period_start_ms)
        if status != counter.base_status:
            heapq.heappush(self._reset_heap, (end, state.key))
        view = self._view_of(counter, state, now_ms)
        for subscription in self._account_subscriptions.get(account.key, {}).values():
            if subscription.covers(counter.counter_id):
                self._notify_policy(subscription, view, previous, now_ms, cause, request_id, trace_id)

    def _notify_policy(self, subscription: Subscription, view: ops.CounterStatusView, previous: str, now_ms: int,
                       cause: str, request_id: str, trace_id: str) -> None:
        sequence = self.meta.next_notification_sequence
        self.meta.next_notification_sequence += 1
        notification = Notification(
            sequence=sequence, at_ms=now_ms, tenant=subscription.tenant, client_id=subscription.client_id,
            subscriber_id=subscription.subscriber_id, session_id="",
            type=NotificationType.NOTIFICATION_TYPE_UNSPECIFIED,
            reason=NotificationReason.NOTIFICATION_REASON_UNSPECIFIED, trace_id=trace_id, channel=POLICY_CHANNEL,
            counter_id=view.counter_id, status=view.status, previous_status=previous, value=view.value,
            period_start_ms=view.period_start_ms, period_end_ms=view.period_end_ms,
            pending_status=view.pending_status, cause=cause, request_id=request_id,
        )
        self._index_notification(notification)
        self._mark("notification", sequence, notification)

    def _reset_due(self, now_ms: int) -> None:
        """Counters whose period ended while their status was not the base one go
        back to it now (and their policy functions hear of it)."""
        while self._reset_heap and self._reset_heap[0][0] <= now_ms:
            _, key = heapq.heappop(self._reset_heap)
            state = self.counters.get(key)
            account = self.accounts.get(key[:2])
            if state is None or account is None:
                continue
            plan = self.tariffs.get((account.tenant, account.tariff_plan_id))
            counter = plan.counter(key[2]) if plan is not None else None
            if counter is not None:
                self._counter_state(account, counter, now_ms)  # resets when the period has ended

    # ------------------------------------------------------------ views

    def _view_of(self, counter: PolicyCounter, state: CounterState | None, now_ms: int) -> ops.CounterStatusView:
        start, end = period_bounds(counter.period, now_ms)
        if state is None or state.period_start_ms < start:
            value, status = 0, counter.base_status  # a new period, not yet counted in
        else:
            value, status = state.value, state.status
            start, end = period_bounds(counter.period, state.period_start_ms)
        pending = (counter.base_status, end) if status != counter.base_status else ("", 0)
        return ops.CounterStatusView(counter.counter_id, status, value, start, end, *pending)

    def _views(self, account: Account, counter_ids: tuple[str, ...], now_ms: int) -> tuple:
        return tuple(
            self._view_of(counter, self.counters.get((account.tenant, account.subscriber_id, counter.counter_id)),
                          now_ms)
            for counter in self._plan_counters(account)
            if not counter_ids or counter.counter_id in counter_ids
        )

    # ------------------------------------------------------------ operations

    def _subscribe(self, op: ops.Subscribe, now_ms: int):
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            result = Result.USER_UNKNOWN
        elif any(counter_id not in {c.counter_id for c in self._plan_counters(account)}
                 for counter_id in op.counter_ids):
            result = Result.COUNTER_UNKNOWN
        else:
            result = Result.SUCCESS
        if result != Result.SUCCESS:
            self._denied(JournalKind.SUBSCRIBED, op, result, now_ms, account)
            return ops.SubscribeReply(result, trace_id=op.trace_id)
        existing = self._account_subscriptions.get(account.key, {})
        if op.client_id not in existing and len(existing) >= self.limits.subscriptions_per_account_max:
            return ops.Rejection(ErrorCode.RESOURCE_EXHAUSTED, "client_id",
                                 f"{self.limits.subscriptions_per_account_max} policy functions already subscribe "
                                 "to this subscriber")
        subscription = Subscription(op.tenant, op.subscriber_id, op.client_id, tuple(op.counter_ids), now_ms)
        self._add_subscription(subscription)
        self._mark("subscription", subscription.key, subscription)
        self._journal(JournalKind.SUBSCRIBED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                      reference_id=op.client_id)
        return ops.SubscribeReply(Result.SUCCESS, statuses=self._views(account, op.counter_ids, now_ms),
                                  trace_id=op.trace_id)

    def _add_subscription(self, subscription: Subscription) -> None:
        self.subscriptions[subscription.key] = subscription
        self._account_subscriptions.setdefault(subscription.key[:2], {})[subscription.client_id] = subscription

    def _unsubscribe(self, op: ops.Unsubscribe, now_ms: int) -> ops.UnsubscribeReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            self._denied(JournalKind.UNSUBSCRIBED, op, Result.USER_UNKNOWN, now_ms)
            return ops.UnsubscribeReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        key = (op.tenant, op.subscriber_id, op.client_id)
        if self.subscriptions.pop(key, None) is not None:
            del self._account_subscriptions[account.key][op.client_id]
            self._dirty.pop(("subscription", key), None)
            self._deleted_subscriptions.append(key)
        self._journal(JournalKind.UNSUBSCRIBED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                      reference_id=op.client_id)
        return ops.UnsubscribeReply(Result.SUCCESS, trace_id=op.trace_id)

    def _get_counters(self, op: ops.GetCounters, now_ms: int) -> ops.CountersReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return ops.CountersReply(Result.USER_UNKNOWN)
        return ops.CountersReply(Result.SUCCESS, statuses=self._views(account, (), now_ms))

    # ------------------------------------------------------------ recovery

    def _restore_counters(self) -> None:
        for subscription in list(self.subscriptions.values()):
            self._add_subscription(subscription)
        for key, state in self.counters.items():
            account = self.accounts.get(key[:2])
            plan = self.tariffs.get((account.tenant, account.tariff_plan_id)) if account is not None else None
            counter = plan.counter(key[2]) if plan is not None else None
            if counter is not None and state.status != counter.base_status:
                self._reset_heap.append((period_bounds(counter.period, state.period_start_ms)[1], key))
        heapq.heapify(self._reset_heap)
