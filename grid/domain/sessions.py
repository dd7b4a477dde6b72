"""Charging sessions on top of the holds: several rating groups per request,
re-grants that replace the remaining hold, supervision, and notifications.

Part of the shard state machine (ShardState mixes this in): a session request
applies as one operation, so all its rating groups, journal records and its
idempotency record go into the batch's one synced write. Everything that can
refuse the request with no effect (sequence numbers, a too costly report) is
checked before anything changes.

Behaviour follows RFC 4006 and 3GPP TS 32.299 where they speak:
- a request carries rating groups that succeed or fail independently;
- an update charges each group's used units against its hold, then a new
  grant replaces what is left of the hold (TS 32.299 6.3.8), never adds to it;
- the idempotency key is (session, invocation sequence number): a repeated
  number gets the original answer, an older unseen one is refused;
- a session with no update for its supervision time (Tcc) is closed by the
  grid; usage reported afterwards, or for a session the grid never saw (after
  a failover), is charged as late usage: never refused, never lost.
"""

import bisect
import heapq
import zlib

from fractions import Fraction

from grid.domain import operations as ops
from grid.domain import pricing, rating
from grid.domain.bucket_rules import Consumption, draws_tuple
from grid.domain.rating_rules import Progress
from grid.domain.outcomes import (
    AccountState,
    ErrorCode,
    FinalUnitAction,
    JournalKind,
    NotificationReason,
    NotificationType,
    ReservationState,
    Result,
    SessionState,
    Unit,
)
from grid.domain.records import Account, Notification, NotificationFloor, Reservation, Session, SessionKey
from grid.domain.reservations import ReservationEvent, next_state

_ACTIVE = SessionState.SESSION_STATE_ACTIVE
_RELEASED = SessionState.SESSION_STATE_RELEASED
_ABNORMAL = SessionState.SESSION_STATE_ABNORMALLY_RELEASED


class SessionRules:
    """The session half of ShardState (uses its accounts, holds, journal and marks)."""

    def _init_sessions(self) -> None:
        self.sessions: dict[SessionKey, Session] = {}
        # Derived indexes, rebuilt on restore.
        self._account_sessions: dict[tuple[str, str], dict[SessionKey, Session]] = {}
        self._supervision_heap: list[tuple[int, SessionKey]] = []
        self._closed_sessions: list[tuple[int, SessionKey]] = []  # a heap: (closed_at_ms, key)
        self.notifications: dict[int, Notification] = {}
        self._notification_order: list[int] = []  # sequences oldest first; a prefix is trimmed lazily
        self._notification_start = 0
        # (tenant, channel, client_id) -> its notifications' sequences, oldest first.
        self._client_notifications: dict[tuple[str, str, str], list[int]] = {}
        # (tenant, channel, client_id) -> the newest of its notifications dropped by retention.
        self._notification_floors: dict[tuple[str, str, str], NotificationFloor] = {}
        self._deleted_sessions: list[SessionKey] = []
        self._deleted_notifications: list[int] = []

    # ------------------------------------------------------------ timing

    def supervision_time_ms(self, session_key: SessionKey, sequence_number: int) -> int:
        """Tcc = supervision_validity_times x validity, +- jitter derived from the
        session and sequence number: deterministic (the core has no randomness),
        yet spread, so sessions opened together are not closed together."""
        limits = self.limits
        base_ms = limits.supervision_validity_times * limits.validity_time_s * 1000
        spread_ms = base_ms * limits.supervision_jitter_percent // 100
        if spread_ms == 0:
            return base_ms
        digest = zlib.crc32(f"{session_key}/{sequence_number}".encode())
        return base_ms - spread_ms + digest % (2 * spread_ms + 1)

    # ------------------------------------------------------------ requests

    def _session_request(self, op, now_ms: int):
        key = (op.tenant, op.subscriber_id, op.session_id)
        session = self.sessions.get(key)
        if session is not None and op.invocation_sequence_number <= session.last_sequence_number:
            return ops.Rejection(
                ErrorCode.FAILED_PRECONDITION, "invocation_sequence_number",
                f"session {op.session_id!r} already applied sequence number {session.last_sequence_number}; "
                "an older request has no effect",
            )
        if isinstance(op, ops.CreateSession) and session is not None:
            return ops.Rejection(ErrorCode.ALREADY_EXISTS, "session_id",
                                 f"session {op.session_id!r} exists; send UpdateSession")
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            self._denied(JournalKind.SESSION_OPENED, op, Result.USER_UNKNOWN, now_ms, session_id=op.session_id)
            return ops.SessionReply(Result.USER_UNKNOWN, session_id=op.session_id,
                                    invocation_sequence_number=op.invocation_sequence_number, trace_id=op.trace_id)
        rates = {usage.rating_group: self._group_pricer(session, account, usage, now_ms)
                 for usage in op.multiple_unit_usage}
        for index, usage in enumerate(op.multiple_unit_usage):
            rate = rates[usage.rating_group]
            if rate is not None and usage.used_units:
                progress = self._group_progress(session, rate, usage, now_ms)
                cost = self._rate_more(account, rate, progress, usage.used_units,
                                       self._usage_start(session, rate, usage, now_ms), now_ms)
                if cost.charged_micros > self.limits.charge_max_micros:
                    return ops.Rejection(
                        ErrorCode.INVALID_ARGUMENT, f"multiple_unit_usage[{index}].used_units",
                        f"the usage would cost more than {self.limits.charge_max_micros} micros in one charge",
                    )
        # Nothing below refuses the request: from here on it applies as a whole.
        if isinstance(op, ops.CreateSession):
            if account.state != AccountState.ACTIVE or self._grants_denied(account, now_ms):
                result = Result.END_USER_SERVICE_DENIED
            elif len(self._account_sessions.get(account.key, ())) >= self.limits.sessions_per_account_max:
                result = Result.TOO_MANY_SESSIONS
            elif self._session_opening_denied(account, now_ms, op.request_id, op.trace_id):
                result = Result.TOO_MANY_SESSIONS  # the plan's cap on concurrent sessions
            else:
                result = Result.SUCCESS
            if result != Result.SUCCESS:
                self._denied(JournalKind.SESSION_OPENED, op, result, now_ms, account, session_id=op.session_id)
                return ops.SessionReply(result, session_id=op.session_id,
                                        invocation_sequence_number=op.invocation_sequence_number,
                                        trace_id=op.trace_id)
        if session is None:
            # A create, or an update or release for a session this grid never saw
            # (after a failover): it is adopted, its usage charged as late.
            session = self._open_session(op, account, now_ms)
        was = session.state
        if isinstance(op, ops.UpdateSession) and was == _ABNORMAL:
            # Supervision closed it but the network function still carries traffic.
            self._reopen(session)
        grants_allowed = session.state == _ACTIVE and not isinstance(op, ops.ReleaseSession)
        settled = [
            self._settle_units(op, session, account, usage, rates[usage.rating_group], grants_allowed, now_ms)
            for usage in op.multiple_unit_usage
        ]
        information = tuple(
            ops.UnitInformation(result=result, **info) if result is not None
            else self._grant_units(op, session, account, usage, rates[usage.rating_group], info, now_ms)
            for usage, (info, result) in zip(op.multiple_unit_usage, settled)
        )
        if isinstance(op, ops.ReleaseSession):
            for rating_group, reservation_id in session.holds:  # the groups the release did not report
                reservation = self.reservations.get(reservation_id)
                if reservation is not None and reservation.state == ReservationState.ACTIVE:
                    self._return_hold(op, reservation, account, ReservationEvent.RELEASE, now_ms)
            session.holds = ()
            if was == _ACTIVE:
                self._close_session(session, _RELEASED, now_ms)
            elif was == _ABNORMAL:
                session.state = _RELEASED  # the network function's own release, after ours
            self._journal(JournalKind.SESSION_RELEASED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                          session_id=op.session_id, units=op.invocation_sequence_number)
        session.last_sequence_number = op.invocation_sequence_number
        session.updated_at_ms = now_ms
        if session.state == _ACTIVE:
            if op.notify_client_id:
                session.notify_client_id = op.notify_client_id
            self._supervise(session, now_ms + self.supervision_time_ms(session.key, op.invocation_sequence_number))
        self._mark("session", session.key, session)
        return ops.SessionReply(
            Result.SUCCESS, session_id=op.session_id, invocation_sequence_number=op.invocation_sequence_number,
            multiple_unit_information=information, session_state=session.state,
            supervision_time_s=(session.supervision_deadline_ms - now_ms) // 1000 if session.state == _ACTIVE else 0,
            trace_id=op.trace_id,
        )

    # ------------------------------------------------------------ rating of a group

    def _group_hold(self, session: Session | None, rating_group: int) -> Reservation | None:
        if session is None:
            return None
        reservation = self.reservations.get(dict(session.holds).get(rating_group, ""))
        return reservation if reservation is not None and reservation.state == ReservationState.ACTIVE else None

    def _group_pricer(self, session: Session | None, account: Account, usage: ops.UnitUsage,
                      now_ms: int) -> pricing.Pricer | None:
        """The group's live hold's pricer (its version and destination) for its
        usage; else the plan in force, anchored where the session's usage began."""
        hold = self._group_hold(session, usage.rating_group)
        if hold is not None:
            pricer = self._hold_pricer(account, hold, now_ms)
            if pricer is not None:
                return pricer
        # Late usage on the group's last grant (expired, or closed by supervision) is
        # rated for what that grant was for, where the report does not say again:
        # the number, the zone, the service (a zero-rated service stays free).
        last = self.reservations.get(dict(session.holds).get(usage.rating_group, "")) if session is not None else None
        if last is not None:
            usage = _as_before(usage, last)
        anchor_ms = None
        for entry in (session.progress if session is not None else ()):
            if entry[0] == usage.rating_group:
                anchor_ms = entry[1]
        if anchor_ms is None and usage.used_units:
            anchor_ms = now_ms - usage.used_units * 1000 if self._is_seconds(account, usage, now_ms) else now_ms
        return self._pricer(account, usage.rating_group, usage.destination, usage.roaming_zone, now_ms,
                            anchor_ms=anchor_ms, service_identifier=usage.service_identifier)

    def _is_seconds(self, account: Account, usage: ops.UnitUsage, now_ms: int) -> bool:
        return self._unit_of(account, usage.rating_group, now_ms) == Unit.SECONDS

    def _group_progress(self, session: Session | None, pricer: pricing.Pricer, usage: ops.UnitUsage,
                        now_ms: int) -> Progress:
        """Where the session's rated usage of the group stands."""
        for group, anchor_ms, used, numerator, denominator in (session.progress if session is not None else ()):
            if group == usage.rating_group:
                return Progress(anchor_ms, used, Fraction(numerator, denominator))
        hold = self._group_hold(session, usage.rating_group)
        if hold is not None:  # a session stored before progress was
            return self._hold_progress(pricer, hold)
        return Progress.start(self._usage_start(session, pricer, usage, now_ms))

    def _usage_start(self, session: Session | None, pricer: pricing.Pricer, usage: ops.UnitUsage,
                     now_ms: int) -> int:
        """When the reported seconds began: at the hold's grant (quota is used
        from when it is granted), else they ended now."""
        hold = self._group_hold(session, usage.rating_group)
        if hold is not None:
            return hold.granted_at_ms + hold.used_units * 1000
        return now_ms - usage.used_units * 1000 if pricer.unit == Unit.SECONDS else now_ms

    @staticmethod
    def _set_group_progress(session: Session, rating_group: int, progress: Progress) -> None:
        entries = {entry[0]: entry for entry in session.progress}
        entries[rating_group] = (rating_group, progress.anchor_ms, progress.used_units, progress.exact.numerator,
                                 progress.exact.denominator)
        session.progress = tuple(sorted(entries.values()))

    def _open_session(self, op, account: Account, now_ms: int) -> Session:
        session = Session(
            tenant=op.tenant, subscriber_id=op.subscriber_id, session_id=op.session_id, state=_ACTIVE,
            notify_client_id=op.notify_client_id, last_sequence_number=op.invocation_sequence_number,
            holds=(), created_at_ms=now_ms, updated_at_ms=now_ms, supervision_deadline_ms=0,
        )
        self.sessions[session.key] = session
        self._account_sessions.setdefault(account.key, {})[session.key] = session
        self._journal(JournalKind.SESSION_OPENED, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                      session_id=op.session_id, units=op.invocation_sequence_number,
                      late=not isinstance(op, ops.CreateSession))
        return session

    def _reopen(self, session: Session) -> None:
        session.state = _ACTIVE
        session.closed_at_ms = 0
        self._account_sessions.setdefault(session.account_key, {})[session.key] = session

    def _supervise(self, session: Session, deadline_ms: int) -> None:
        session.supervision_deadline_ms = deadline_ms
        heapq.heappush(self._supervision_heap, (deadline_ms, session.key))

    def _close_session(self, session: Session, state: SessionState, now_ms: int) -> None:
        session.state = state
        session.closed_at_ms = now_ms
        session.supervision_deadline_ms = 0
        self._account_sessions.get(session.account_key, {}).pop(session.key, None)
        heapq.heappush(self._closed_sessions, (now_ms, session.key))
        self._mark("session", session.key, session)

    # ------------------------------------------------------------ one rating group

    def _settle_units(self, op, session: Session, account: Account, usage: ops.UnitUsage, rate, grants_allowed,
                      now_ms: int) -> tuple[dict, Result | None]:
        """First pass, for one group: charge its usage and close its hold.
        Returns the reply fields so far and the group's final result, or None
        when the group goes on to a new grant (second pass)."""
        rating_group = usage.rating_group
        holds = dict(session.holds)
        reservation = self.reservations.get(holds.pop(rating_group, ""))
        if reservation is not None and reservation.state != ReservationState.ACTIVE:
            reservation = None  # expired, or closed by supervision: its usage is late
        info = {"rating_group": rating_group, "used_units": usage.used_units}
        if rate is None:
            if usage.used_units or usage.requested_units:
                self._denied(JournalKind.DEBIT if usage.used_units else JournalKind.RESERVE, op,
                             Result.RATING_FAILED, now_ms, account, rating_group=rating_group,
                             units=usage.used_units or usage.requested_units, session_id=session.session_id)
            if reservation is not None:  # the plan dropped the group: give the money back
                info["released_micros"] = self._return_hold(op, reservation, account, ReservationEvent.RELEASE, now_ms)
                session.holds = tuple(sorted(holds.items()))
            return info, Result.RATING_FAILED
        if usage.used_units:
            charged = self._charge_session_usage(op, session, account, reservation, rate, usage, now_ms)
            if isinstance(charged, Result):
                return info, charged  # the hold stays as it was
            info.update(charged)
        if reservation is not None:
            event = ReservationEvent.REPLACE if usage.requested_units and grants_allowed else (
                ReservationEvent.DEBIT_FINAL if reservation.used_units else ReservationEvent.RELEASE)
            info["released_micros"] = self._return_hold(op, reservation, account, event, now_ms)
        session.holds = tuple(sorted(holds.items()))
        if not usage.requested_units:
            return info, Result.SUCCESS
        if not grants_allowed:  # an update of a released session (a release asks for nothing)
            return info, Result.SESSION_ALREADY_RELEASED
        return info, None

    def _grant_units(self, op, session: Session, account: Account, usage: ops.UnitUsage, rate, info: dict,
                     now_ms: int) -> ops.UnitInformation:
        """Second pass, for one group: the new grant, once every reported hold is
        closed, so the money they free counts whatever the order of the groups."""
        grant = self._session_grant(op, session, account, rate, usage, now_ms)
        if isinstance(grant, Result):
            return ops.UnitInformation(result=grant, **info, **self._final_units(rate.anchor, grant))
        reservation, granted_info = grant
        session.holds = tuple(sorted({**dict(session.holds), usage.rating_group: reservation.reservation_id}.items()))
        info.update(granted_info)
        return ops.UnitInformation(result=Result.SUCCESS, **info)

    def _charge_session_usage(self, op, session, account, reservation, pricer, usage, now_ms):
        """Charge used units against the group's hold (rated cumulatively over the
        session's usage of the group), or, with no live hold, as late usage
        whatever the balance: it was consumed."""
        used_units = usage.used_units
        rate = pricer.anchor
        progress = self._group_progress(session, pricer, usage, now_ms)
        start_ms = self._usage_start(session, pricer, usage, now_ms)
        if reservation is not None:
            used = self._consume_on_hold(account, reservation, pricer, progress, used_units, start_ms, now_ms)
            cost, balance_part = used.cost, used.balance_micros
        else:  # late: buckets valid now pay first, as for any usage with no grant
            unit_draws = self._unit_draws(account, pricer.unit, usage.rating_group, usage.destination, used_units,
                                          now_ms)
            money_units = used_units - sum(amount for _, amount in unit_draws)
            cost = self._rate_more(account, pricer, progress, money_units, start_ms, now_ms)
            money_draws = self._money_draws(account, usage.rating_group, usage.destination, cost.charged_micros,
                                            now_ms)
            used = Consumption(money_units, cost, unit_draws, money_draws, 0, 0)
            balance_part = used.balance_micros
        if not self._balance_fits(account.balance_micros - balance_part):
            self._denied(JournalKind.DEBIT, op, Result.BALANCE_LIMIT_EXCEEDED, now_ms, account,
                         rating_group=rate.rating_group, units=used_units, session_id=session.session_id)
            return Result.BALANCE_LIMIT_EXCEEDED
        late = reservation is None
        if late:
            overage_micros = max(0, balance_part - max(0, account.available_micros()))
        else:
            overage_micros = used.overage_micros
        before, reserved_before = account.balance_micros, account.reserved_micros
        reservation_id = ""
        draws = draws_tuple(used.unit_draws + used.money_draws)
        if reservation is None:
            self._take(account, used.unit_draws + used.money_draws)
            account.balance_micros -= balance_part
        else:
            self._apply_consumption(account, reservation, used)
            reservation.used_units += used_units
            self._set_hold_progress(reservation, cost.exact_after)
            reservation.state = next_state(reservation.state, ReservationEvent.DEBIT_PARTIAL)
            reservation_id = reservation.reservation_id
            self._mark("reservation", reservation_id, reservation)
        money_units = used.money_units
        self._set_group_progress(session, usage.rating_group,
                                 Progress(progress.anchor_ms, progress.used_units + money_units, cost.exact_after))
        self._count_volume(account, pricer, money_units, now_ms)
        self._mark("account", account.key, account)
        charge = self._record_charge(op, account, usage.rating_group, cost, now_ms, reservation_id,
                                     used_units=used_units, tariff_version=pricer.index.plan.version,
                                     balance_micros=balance_part, bucket_draws=draws)
        self._journal(
            JournalKind.DEBIT, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=charge.charge_id, rating_group=rate.rating_group, units=used_units,
            amount_micros=balance_part, balance_before_micros=before, reserved_before_micros=reserved_before,
            rounding_residue_picos=cost.rounding_residue_picos, late=late, overage_micros=overage_micros,
            session_id=session.session_id, reservation_id=reservation_id, bucket_draws=draws,
            bucket_units=used.bucket_units, bucket_micros=used.bucket_micros, **self._tariff_fields(pricer),
        )
        return {"charge_id": charge.charge_id, "charged_micros": cost.charged_micros, "late": late,
                "overage_micros": overage_micros, "rounding_residue_picos": cost.rounding_residue_picos,
                "bucket_micros": cost.charged_micros - balance_part,
                "bucket_units": used.bucket_units}

    def _return_hold(self, op, reservation: Reservation, account: Account, event: ReservationEvent,
                     now_ms: int) -> int:
        reserved_before = account.reserved_micros
        given_back = reservation.bucket_holds  # what it still held in buckets goes back with it
        returned = self._resolve(reservation, event, account)
        self._journal(
            JournalKind.RELEASE, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=reservation.reservation_id, rating_group=reservation.rating_group,
            amount_micros=returned, reserved_before_micros=reserved_before, session_id=reservation.session_id,
            bucket_draws=given_back,
        )
        return returned

    def _session_grant(self, op, session, account, rate, usage, now_ms):
        """A new hold for the group: min(requested, what the money buys), priced by
        the version in force now, continuing the session's rated usage."""
        # The new grant is for what the group's usage was rated for (its last grant's
        # number, zone and service) where the report does not name them again.
        usage = _as_before(usage, rate.usage)
        progress = self._group_progress(session, rate, usage, now_ms)
        pricer = self._pricer(account, usage.rating_group, usage.destination, usage.roaming_zone, now_ms,
                              anchor_ms=progress.anchor_ms, service_identifier=usage.service_identifier)
        grant = None
        if pricer is None:
            result = Result.RATING_FAILED
        elif account.state != AccountState.ACTIVE or self._grants_denied(account, now_ms):
            result = Result.END_USER_SERVICE_DENIED
        elif len(self._active_holds.get(account.key, ())) >= self.limits.reservations_per_account_max:
            result = Result.TOO_MANY_RESERVATIONS
        else:
            grant, unit_draws, money_draws, bucket_units = self._grant_with_buckets(
                account, pricer, progress, usage.destination, usage.requested_units, now_ms, self._lifetime_ms())
            result = Result.SUCCESS if grant.granted_units > 0 else Result.CREDIT_LIMIT_REACHED
        if result != Result.SUCCESS:
            self._denied(JournalKind.RESERVE, op, result, now_ms, account, rating_group=usage.rating_group,
                         units=usage.requested_units, session_id=session.session_id)
            return result
        granted, final = grant.granted_units, grant.final
        held = grant.held_micros - sum(amount for _, amount in money_draws)  # the main balance's part
        assert 0 <= held <= max(account.available_micros(), 0)
        validity_time_s = self.limits.validity_time_s
        reservation = self._new_hold(
            account, op.request_id, session.session_id, usage.rating_group, granted, held, now_ms,
            now_ms + self._lifetime_ms(), pricer=pricer, destination=usage.destination,
            roaming_zone=usage.roaming_zone, progress=progress, service_identifier=usage.service_identifier,
        )
        self._hold_in_buckets(account, reservation, unit_draws + money_draws, bucket_units)
        plan = pricer.index.plan
        rate = pricer.anchor
        self._journal(
            JournalKind.RESERVE, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
            reference_id=reservation.reservation_id, rating_group=rate.rating_group, units=granted,
            amount_micros=held, reserved_before_micros=account.reserved_micros - held,
            tariff_plan_id=plan.tariff_plan_id, tariff_version=plan.version, session_id=session.session_id,
            bucket_draws=reservation.bucket_holds,
        )
        info = {
            "reservation_id": reservation.reservation_id, "granted_units": granted, "held_micros": held,
            "validity_time_s": validity_time_s, "quota_holding_time_s": self.limits.quota_holding_time_s,
            # Final units are not re-asked for: the network function acts when they are used.
            "threshold_units": 0 if final else granted * self.limits.quota_threshold_percent // 100,
            "tariff_time_change_ms": grant.tariff_time_change_ms,
            "granted_bucket_units": bucket_units, "held_bucket_micros": sum(amount for _, amount in money_draws),
        }
        if final:
            info.update(self._final_units(rate, Result.SUCCESS))
        return reservation, info

    @staticmethod
    def _final_units(rate: rating.Rate, result: Result) -> dict:
        """Final unit indication: the plan's action, also on a denial for money, so
        the network function knows what to do now (e.g. redirect to a top-up page)."""
        if result not in (Result.SUCCESS, Result.CREDIT_LIMIT_REACHED):
            return {}
        action = rate.final_unit_action or FinalUnitAction.TERMINATE
        address = rate.redirect_server_address if action == FinalUnitAction.REDIRECT else ""
        return {"final_unit_action": action, "redirect_server_address": address}

    # ------------------------------------------------------------ supervision and retention

    def _supervise_due(self, now_ms: int) -> int:
        """Close sessions with no update within their supervision time: holds
        returned (as expiries, so a late debit by id is still charged), one
        journal record, the session marked abnormally released."""
        closed = 0
        while self._supervision_heap and self._supervision_heap[0][0] <= now_ms:
            deadline_ms, key = heapq.heappop(self._supervision_heap)
            session = self.sessions.get(key)
            if session is None or session.state != _ACTIVE or session.supervision_deadline_ms != deadline_ms:
                continue  # updated since (a later entry stands for it), or closed
            account = self.accounts[session.account_key]
            for _, reservation_id in session.holds:
                reservation = self.reservations.get(reservation_id)
                if reservation is not None and reservation.state == ReservationState.ACTIVE:
                    self._expire(reservation, now_ms, trace_id="")
            # The expired holds stay named: usage the network function reports later
            # is late, and rated for what each group's last grant was for.
            self._close_session(session, _ABNORMAL, now_ms)
            self._journal(JournalKind.SESSION_SUPERVISED, account, "", Result.SUCCESS, now_ms, "",
                          session_id=session.session_id, units=session.last_sequence_number)
            closed += 1
        return closed

    def _forget_old_sessions(self, now_ms: int) -> None:
        """Closed sessions are kept as long as request ids are (late retransmissions
        still meet their session), then dropped."""
        oldest_kept_ms = now_ms - self.limits.idempotency_horizon_s * 1000
        while self._closed_sessions and self._closed_sessions[0][0] < oldest_kept_ms:
            closed_at_ms, key = heapq.heappop(self._closed_sessions)
            session = self.sessions.get(key)
            if session is None or session.state == _ACTIVE or session.closed_at_ms != closed_at_ms:
                continue  # reopened since
            del self.sessions[key]
            self._dirty.pop(("session", key), None)
            self._deleted_sessions.append(key)

    # ------------------------------------------------------------ notifications

    def _notify_sessions(self, account: Account, kind: NotificationType, reason: NotificationReason, now_ms: int,
                         trace_id: str) -> None:
        """Tell the owner of each of the account's active sessions."""
        for session in self._account_sessions.get(account.key, {}).values():
            if session.notify_client_id:
                self._notify(session, kind, reason, now_ms, trace_id)

    def _notify(self, session: Session, kind, reason, now_ms: int, trace_id: str) -> None:
        sequence = self.meta.next_notification_sequence
        self.meta.next_notification_sequence += 1
        notification = Notification(
            sequence=sequence, at_ms=now_ms, tenant=session.tenant, client_id=session.notify_client_id,
            subscriber_id=session.subscriber_id, session_id=session.session_id, type=kind, reason=reason,
            trace_id=trace_id,
        )
        self._index_notification(notification)
        self._mark("notification", sequence, notification)

    def _index_notification(self, notification: Notification) -> None:
        self.notifications[notification.sequence] = notification
        self._notification_order.append(notification.sequence)
        self._client_notifications.setdefault(
            (notification.tenant, notification.channel, notification.client_id), []).append(notification.sequence)

    def _forget_old_notifications(self, now_ms: int) -> None:
        oldest_kept_ms = now_ms - self.limits.idempotency_horizon_s * 1000
        order = self._notification_order
        while self._notification_start < len(order):
            sequence = order[self._notification_start]
            notification = self.notifications[sequence]
            if len(self.notifications) <= self.limits.notifications_retained_max and \
                    notification.at_ms >= oldest_kept_ms:
                break
            self._notification_start += 1
            del self.notifications[sequence]
            client_key = (notification.tenant, notification.channel, notification.client_id)
            client = self._client_notifications[client_key]
            assert client[0] == sequence
            del client[0]  # notifications are rare next to charges: a list is fine
            if not client:
                del self._client_notifications[client_key]
            floor = NotificationFloor(*client_key, dropped_through=sequence)
            self._notification_floors[client_key] = floor
            self._mark("notification_floor", client_key, floor)
            self._dirty.pop(("notification", sequence), None)
            self._deleted_notifications.append(sequence)
        if self._notification_start > 1024 and self._notification_start * 2 > len(order):
            del order[:self._notification_start]
            self._notification_start = 0

    def _read_notifications(self, op: ops.ReadNotifications, now_ms: int) -> ops.NotificationsReply:
        sequences = self._client_notifications.get((op.tenant, op.channel, op.client_id), [])
        start = bisect.bisect_right(sequences, op.after_sequence)
        chosen = sequences[start:start + min(op.limit, self.limits.notifications_per_read_max)]
        return ops.NotificationsReply(
            notifications=tuple(self.notifications[sequence] for sequence in chosen),
            lost=op.after_sequence < self._floor_of((op.tenant, op.channel, op.client_id)),
            last_sequence=self.meta.next_notification_sequence - 1,
        )

    def _floor_of(self, client_key) -> int:
        floor = self._notification_floors.get(client_key)
        return floor.dropped_through if floor is not None else 0

    # ------------------------------------------------------------ reads

    def _get_session(self, op: ops.GetSession, now_ms: int) -> ops.SessionInfoReply:
        session = self.sessions.get((op.tenant, op.subscriber_id, op.session_id))
        if session is None:
            return ops.SessionInfoReply(Result.SESSION_NOT_FOUND)
        views = []
        for _, reservation_id in session.holds:
            reservation = self.reservations.get(reservation_id)
            if reservation is not None and reservation.state == ReservationState.ACTIVE and \
                    reservation.expires_at_ms > now_ms:
                views.append(self._view(reservation))
        return ops.SessionInfoReply(
            Result.SUCCESS, session_id=session.session_id, subscriber_id=session.subscriber_id, state=session.state,
            last_sequence_number=session.last_sequence_number, notify_client_id=session.notify_client_id,
            created_at_ms=session.created_at_ms, updated_at_ms=session.updated_at_ms,
            supervision_deadline_ms=session.supervision_deadline_ms, closed_at_ms=session.closed_at_ms,
            reservations=tuple(views),
        )

    # ------------------------------------------------------------ recovery

    def _restore_sessions(self) -> None:
        """Rebuild the session and notification indexes from the restored records."""
        for session in self.sessions.values():
            if session.state == _ACTIVE:
                self._account_sessions.setdefault(session.account_key, {})[session.key] = session
                self._supervision_heap.append((session.supervision_deadline_ms, session.key))
            else:
                self._closed_sessions.append((session.closed_at_ms, session.key))
        heapq.heapify(self._supervision_heap)
        heapq.heapify(self._closed_sessions)
        restored = sorted(self.notifications.values(), key=lambda n: n.sequence)
        self.notifications = {}
        for notification in restored:
            self._index_notification(notification)


    def _check_session_invariants(self) -> None:
        for key, session in self.sessions.items():
            assert session.key == key
            active = self._account_sessions.get(session.account_key, {})
            assert (key in active) == (session.state == _ACTIVE), key
            assert [rg for rg, _ in session.holds] == sorted({rg for rg, _ in session.holds}), key
            for _, reservation_id in session.holds:
                reservation = self.reservations.get(reservation_id)
                if reservation is not None:
                    assert reservation.session_id == session.session_id


def _as_before(usage: ops.UnitUsage, before) -> ops.UnitUsage:
    """The usage, rated for what `before` (the group's last grant, or its pricer's
    usage) was for wherever the report leaves the number, zone or service out."""
    return ops.UnitUsage(usage.rating_group, usage.requested_units, usage.used_units,
                         usage.destination or before.destination, usage.roaming_zone or before.roaming_zone,
                         usage.service_identifier or before.service_identifier)
