"""Every enumeration the core shares with the wire has the proto's numbers: a
reply converted field by field carries the same meaning on both sides."""

import pytest
from charging.v1 import charging_pb2 as pb

from grid.domain import outcomes, rating

PAIRS = [
    (outcomes.Result, pb.Result, ""), (outcomes.Unit, pb.Unit, ""), (outcomes.AccountState, pb.AccountState, ""),
    (outcomes.ReservationState, pb.ReservationState, "RESERVATION_"), (outcomes.SessionState, pb.SessionState, ""),
    (outcomes.FinalUnitAction, pb.FinalUnitAction, ""), (outcomes.NotificationType, pb.NotificationType, ""),
    (outcomes.NotificationReason, pb.NotificationReason, ""), (outcomes.JournalKind, pb.JournalKind, "JOURNAL_"),
    (outcomes.CounterPeriod, pb.CounterPeriod, ""), (outcomes.ControlKind, pb.ControlKind, ""),
    (outcomes.ControlAction, pb.ControlAction, ""), (outcomes.BucketUnit, pb.BucketUnit, "BUCKET_"),
    (rating.Rounding, pb.Rounding, ""), (rating.CapAction, pb.CapAction, ""),
]


@pytest.mark.parametrize("domain, wire, prefix", PAIRS, ids=[pair[0].__name__ for pair in PAIRS])
def test_the_core_and_the_proto_number_each_member_alike(domain, wire, prefix):
    names = set(wire.keys())
    for member in domain:
        # The wire's names carry a prefix where C++ scoping needs one (RESERVATION_EXPIRED_STATE).
        candidates = [member.name, prefix + member.name, prefix + member.name + "_STATE"]
        name = next((candidate for candidate in candidates if candidate in names), None)
        assert name is not None, f"{domain.__name__}.{member.name} has no {wire.DESCRIPTOR.name} value"
        assert wire.Value(name) == member.value, f"{domain.__name__}.{member.name}"
    # Beyond an UNSPECIFIED zero the core need not name, the wire has nothing the core does not know.
    unknown = {wire.Value(name) for name in names} - {member.value for member in domain} - {0}
    assert not unknown, f"{wire.DESCRIPTOR.name} has values the core does not know: {sorted(unknown)}"
