"""The reservation lifecycle as one table (TigerBeetle pending transfers,
RFC 4006): ACTIVE -> COMMITTED | RELEASED | EXPIRED | REPLACED, each absorbing state
reached exactly once. A transition not in the table is a bug and fails loudly.
"""

import enum

from grid.domain.outcomes import ReservationState


class ReservationEvent(enum.Enum):
    DEBIT_PARTIAL = "debit_partial"
    DEBIT_FINAL = "debit_final"
    RELEASE = "release"
    EXPIRE = "expire"
    REPLACE = "replace"


TRANSITIONS: dict[tuple[ReservationState, ReservationEvent], ReservationState] = {
    (ReservationState.ACTIVE, ReservationEvent.DEBIT_PARTIAL): ReservationState.ACTIVE,
    (ReservationState.ACTIVE, ReservationEvent.DEBIT_FINAL): ReservationState.COMMITTED,
    (ReservationState.ACTIVE, ReservationEvent.RELEASE): ReservationState.RELEASED,
    (ReservationState.ACTIVE, ReservationEvent.EXPIRE): ReservationState.EXPIRED,
    (ReservationState.ACTIVE, ReservationEvent.REPLACE): ReservationState.REPLACED,
}


class IllegalTransition(AssertionError):
    """A reservation was asked to move where the table does not allow: a bug."""


def next_state(state: ReservationState, event: ReservationEvent) -> ReservationState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{state.name} has no transition on {event.name}") from None
