"""The storm's own books: what every reply says moved, per subscriber, so the
end of the run can check the grid's balances against them (DESIGN.md
invariant 1, conservation, seen from the client).

Pure: requests and replies (charging.v1 messages) in, sums out. Rules:
- money comes from the replies: charged_micros of debits and of every rating
  group of a session reply, refunded_micros of refunds; integers only;
- a reply marked `replayed` repeats one already counted, so it moves nothing,
  unless the original's outcome was unknown (its call failed): then this is
  the first the books hear of it;
- a call that failed (deadline, unavailable, overload...) may or may not have
  taken effect: it is kept as unknown until GetTransaction settles it;
- a request re-sent on purpose (a failover replay) whose original reply was
  counted moves nothing in the books, whatever its reply says: if the grid
  applied it twice, the balances show it and the audit fails;
- open holds and open sessions are tracked so the end of the run can close
  what the load left open (nothing may stay held when the books are checked).
"""

import collections
import dataclasses

from charging.v1 import charging_pb2 as pb

SESSION_METHODS = frozenset({"CreateSession", "UpdateSession", "ReleaseSession"})
# A released session answers SESSION_ALREADY_RELEASED to a second release: closed either way.
_CLOSED_SESSION_RESULTS = frozenset({pb.SUCCESS, pb.SESSION_ALREADY_RELEASED})


def request_id_of(method: str, request) -> str:
    """The id the grid files the request under (GetTransaction's key)."""
    if method in SESSION_METHODS:
        return f"session/{request.session_id}/{request.invocation_sequence_number}"
    return request.request_id


def charged_micros_of(method: str, reply) -> int:
    if method in SESSION_METHODS:
        return sum(info.charged_micros for info in reply.multiple_unit_information)
    if method == "Debit":
        return reply.charged_micros
    return 0


@dataclasses.dataclass
class SessionTrack:
    subscriber_id: str
    session_id: str
    # The highest invocation sequence number sent (-1: none yet).
    last_sequence: int = -1
    # The grid holds it: a session request of it succeeded.
    exists: bool = False
    released: bool = False


class Ledger:
    def __init__(self) -> None:
        self.charged: collections.Counter = collections.Counter()
        self.refunded: collections.Counter = collections.Counter()
        self.topped_up: collections.Counter = collections.Counter()
        self.touched: set[str] = set()
        # (subscriber_id, request_id) -> (method, request): outcome not known yet.
        self.unknown: dict[tuple[str, str], tuple[str, object]] = {}
        self.holds: set[tuple[str, str]] = set()  # (subscriber_id, reservation_id) still open
        self.sessions: dict[tuple[str, str], SessionTrack] = {}
        self.replays_counted = 0  # replayed replies whose original had been unknown

    def sent(self, method: str, request) -> None:
        self.touched.add(request.subscriber_id)
        if method in SESSION_METHODS:
            track = self._session(request)
            track.last_sequence = max(track.last_sequence, request.invocation_sequence_number)

    def replied(self, method: str, request, reply) -> None:
        key = (request.subscriber_id, request_id_of(method, request))
        was_unknown = self.unknown.pop(key, None) is not None
        if not reply.replayed:
            self._money(method, request, reply)
        elif was_unknown:
            self.replays_counted += 1
            self._money(method, request, reply)
        self._state(method, request, reply)

    def is_unknown(self, method: str, request) -> bool:
        return (request.subscriber_id, request_id_of(method, request)) in self.unknown

    def replied_again(self, method: str, request, reply) -> None:
        """The reply to a re-sent request whose original was counted: no money."""
        self._state(method, request, reply)

    def failed(self, method: str, request) -> None:
        self.unknown[(request.subscriber_id, request_id_of(method, request))] = (method, request)

    def resolved(self, method: str, request, reply) -> None:
        """GetTransaction's answer for an unknown request: its original reply, or
        None when it never took effect (an answer that never changes, invariant 7)."""
        self.unknown.pop((request.subscriber_id, request_id_of(method, request)), None)
        if reply is not None:
            self._money(method, request, reply)
            self._state(method, request, reply)

    def _money(self, method: str, request, reply) -> None:
        subscriber = request.subscriber_id
        self.charged[subscriber] += charged_micros_of(method, reply)
        if method == "Refund":
            self.refunded[subscriber] += reply.refunded_micros
        elif method == "TopUp" and reply.result == pb.SUCCESS:
            self.topped_up[subscriber] += request.amount_micros

    def _state(self, method: str, request, reply) -> None:
        subscriber = request.subscriber_id
        if method == "Reserve" and reply.result == pb.SUCCESS and reply.reservation_id:
            self.holds.add((subscriber, reply.reservation_id))
        elif method == "Debit" and request.reservation_id and request.final:
            self.holds.discard((subscriber, request.reservation_id))
        elif method == "Release":
            self.holds.discard((subscriber, request.reservation_id))
        elif method in SESSION_METHODS:
            track = self._session(request)
            if reply.result == pb.SUCCESS:
                track.exists = True
            if method == "ReleaseSession" and reply.result in _CLOSED_SESSION_RESULTS:
                track.released = True

    def _session(self, request) -> SessionTrack:
        key = (request.subscriber_id, request.session_id)
        track = self.sessions.get(key)
        if track is None:
            track = self.sessions[key] = SessionTrack(request.subscriber_id, request.session_id)
        return track

    def open_sessions(self) -> list[SessionTrack]:
        return [track for track in self.sessions.values() if track.exists and not track.released]

    def expected_balance(self, subscriber_id: str, start_balance_micros: int) -> int:
        return (start_balance_micros + self.topped_up[subscriber_id] - self.charged[subscriber_id]
                + self.refunded[subscriber_id])

    def totals(self) -> dict:
        return {"charged_micros": sum(self.charged.values()), "refunded_micros": sum(self.refunded.values()),
                "topped_up_micros": sum(self.topped_up.values()), "subscribers_touched": len(self.touched)}
