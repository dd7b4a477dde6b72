"""Fraud and policy controls of a tariff plan, evaluated in the shard at commit.

Part of the shard state machine (ShardState mixes this in). After each charge
(in the same synced write): spend and usage velocity over a sliding window
(kept in tenths of the window, so the state per subscriber is bounded) and a
low-balance threshold (fired when a charge crosses it). When a session opens:
a cap on concurrent sessions. A control that fires is journaled (CONTROL_HIT,
with the trace id of the operation that fired it) and does its action:
NOTIFY (an ALERT to the owners of the subscriber's sessions), REAUTHORIZE,
DENY_GRANTS (no new grant for the control's window) or SUSPEND (the account is
suspended and its sessions are told to stop). A velocity control fires at most
once per window.
"""

from grid.domain.outcomes import (
    AccountState,
    ControlAction,
    ControlKind,
    JournalKind,
    NotificationReason,
    NotificationType,
    Result,
)
from grid.domain import operations as ops
from grid.domain.outcomes import CounterPeriod
from grid.domain.policy_counters import period_bounds
from grid.domain.rating import Control
from grid.domain.records import Account, BillingCycle, ControlState

WINDOW_BUCKETS = 10


class ControlRules:
    """The controls half of ShardState (uses its accounts, tariffs, journal,
    marks and session notifications)."""

    def _init_controls(self) -> None:
        self.control_states: dict[tuple[str, str, str], ControlState] = {}
        self.billing_cycles: dict[tuple[str, str, int], BillingCycle] = {}

    # ------------------------------------------------------------ billing cycles (postpaid invoicing)

    def _bill(self, account: Account, now_ms: int, rating_group: int = 0, units: int = 0, charged_micros: int = 0,
              refunded_micros: int = 0) -> None:
        """Accumulate a charge or a refund into the account's current billing cycle."""
        start, end = period_bounds(CounterPeriod.COUNTER_PERIOD_MONTH, now_ms)
        key = (account.tenant, account.subscriber_id, start)
        cycle = self.billing_cycles.get(key)
        if cycle is None:
            cycle = BillingCycle(account.tenant, account.subscriber_id, start, end, 0, 0, ())
            self.billing_cycles[key] = cycle
        cycle.charged_micros += charged_micros
        cycle.refunded_micros += refunded_micros
        if charged_micros or units:
            usage = {group: (group_units, group_micros) for group, group_units, group_micros in cycle.usage}
            group_units, group_micros = usage.get(rating_group, (0, 0))
            usage[rating_group] = (group_units + units, group_micros + charged_micros)
            cycle.usage = tuple(sorted((group, u, m) for group, (u, m) in usage.items()))
        self._mark("billing_cycle", key, cycle)

    def _get_billing_cycle(self, op: ops.GetBillingCycle, now_ms: int) -> ops.BillingCycleReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            return ops.BillingCycleReply(Result.USER_UNKNOWN)
        start, _ = period_bounds(CounterPeriod.COUNTER_PERIOD_MONTH, op.at_ms or now_ms)
        return ops.BillingCycleReply(Result.SUCCESS, self.billing_cycles.get((op.tenant, op.subscriber_id, start)))

    def _plan_controls(self, account: Account) -> tuple[Control, ...]:
        plan = self.tariffs.get((account.tenant, account.tariff_plan_id))
        return plan.controls if plan is not None else ()

    def _grants_denied(self, account: Account, now_ms: int) -> bool:
        return now_ms < account.grants_denied_until_ms

    # ------------------------------------------------------------ at each charge

    def _check_charge_controls(self, account: Account, rating_group: int, used_units: int, charged_micros: int,
                               now_ms: int, request_id: str, trace_id: str) -> None:
        for control in self._plan_controls(account):
            if control.kind == ControlKind.LOW_BALANCE:
                after = account.available_micros()
                if charged_micros > 0 and after + charged_micros >= control.limit > after:
                    self._fire(account, control, after, now_ms, request_id, trace_id)
                continue
            if control.kind == ControlKind.SPEND_VELOCITY and (
                    not control.rating_groups or rating_group in control.rating_groups):
                amount = charged_micros
            elif control.kind == ControlKind.USAGE_VELOCITY and rating_group in control.rating_groups:
                amount = used_units
            else:
                continue
            if amount <= 0:
                continue
            state = self._window_add(account, control, now_ms, amount)
            total = sum(value for _, value in state.buckets)
            if total >= control.limit and now_ms >= state.quiet_until_ms:
                state.quiet_until_ms = now_ms + control.window_s * 1000
                self._fire(account, control, total, now_ms, request_id, trace_id)

    def _window_add(self, account: Account, control: Control, now_ms: int, amount: int) -> ControlState:
        key = (account.tenant, account.subscriber_id, control.control_id)
        state = self.control_states.get(key)
        if state is None:
            state = ControlState(account.tenant, account.subscriber_id, control.control_id, ())
            self.control_states[key] = state
        window_ms = control.window_s * 1000
        bucket_ms = max(1, window_ms // WINDOW_BUCKETS)
        start = now_ms - now_ms % bucket_ms
        buckets = [(at, value) for at, value in state.buckets if at > now_ms - window_ms]
        if buckets and buckets[-1][0] == start:
            buckets[-1] = (start, buckets[-1][1] + amount)
        else:
            buckets.append((start, amount))
        state.buckets = tuple(buckets)
        self._mark("control", key, state)
        return state

    # ------------------------------------------------------------ when a session opens

    def _session_opening_denied(self, account: Account, now_ms: int, request_id: str, trace_id: str) -> bool:
        """CONCURRENT_SESSIONS: fire when the account already has `limit` active
        sessions; True when the control denies the new one."""
        active = len(self._account_sessions.get(account.key, ()))
        denied = False
        for control in self._plan_controls(account):
            if control.kind == ControlKind.CONCURRENT_SESSIONS and active >= control.limit:
                self._fire(account, control, active + 1, now_ms, request_id, trace_id)
                denied = denied or control.action in (ControlAction.DENY_GRANTS, ControlAction.SUSPEND)
        return denied

    # ------------------------------------------------------------ firing

    def _fire(self, account: Account, control: Control, value: int, now_ms: int, request_id: str,
              trace_id: str) -> None:
        self._journal(JournalKind.CONTROL_HIT, account, request_id, Result.SUCCESS, now_ms, trace_id,
                      reference_id=control.control_id, units=value, status=control.action.name)
        reason = NotificationReason.CONTROL_FIRED
        if control.action == ControlAction.REAUTHORIZE:
            self._notify_sessions(account, NotificationType.REAUTHORIZATION, reason, now_ms, trace_id)
        elif control.action == ControlAction.SUSPEND:
            if account.state == AccountState.ACTIVE:
                account.state = AccountState.SUSPENDED
                self._mark("account", account.key, account)
                self._journal(JournalKind.ACCOUNT_STATE, account, request_id, Result.SUCCESS, now_ms, trace_id,
                              units=int(AccountState.SUSPENDED), reference_id=control.control_id)
                self._notify_sessions(account, NotificationType.ABORT_CHARGING, reason, now_ms, trace_id)
        else:
            if control.action == ControlAction.DENY_GRANTS:
                account.grants_denied_until_ms = max(account.grants_denied_until_ms,
                                                     now_ms + control.window_s * 1000)
                self._mark("account", account.key, account)
            self._notify_sessions(account, NotificationType.ALERT, reason, now_ms, trace_id)
