"""Named limits and defaults of the core, with their units (DESIGN.md section 13)."""

import dataclasses

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class CoreLimits:
    """Limits and defaults the shard state machine enforces."""

    # Validity of a grant (RFC 4006 Validity-Time); 300 s is common OCS practice.
    validity_time_s: int = 300
    # Extra time an unresolved hold lives past its validity (RFC 4006 5.7 Tx).
    expiry_grace_s: int = 30
    # How long a request id keeps answering replays (>= any client's retry horizon).
    idempotency_horizon_s: int = 24 * 3600
    # How long charges (what refunds and disputes refer to), resolved holds and
    # journal records are kept; then forgotten by the sweep (DESIGN.md 13: 400 days).
    charge_retention_s: int = 400 * 86_400
    # Active holds one account may have at once.
    reservations_per_account_max: int = 1000
    # Largest balance an account may reach; leaves int64 headroom for overage.
    balance_max_micros: int = 10**17
    # Largest single top-up, refund or credit limit.
    amount_max_micros: int = 10**15
    # Largest usage or request in one operation, in the rating group's unit.
    usage_max_units: int = 10**15
    # Largest charge one operation may produce (rated cost); above: rejected.
    charge_max_micros: int = 10**15
    # Text fields: subscriber, session, request, reservation and charge ids.
    id_length_max: int = 128
    # Rating groups one tariff plan may price.
    rates_per_plan_max: int = 1024

    def __post_init__(self) -> None:
        assert 0 < self.validity_time_s <= UINT32_MAX
        assert 0 <= self.expiry_grace_s <= 86_400
        assert self.idempotency_horizon_s >= 1
        # A charge outlives every retry that could still refer to it.
        assert self.charge_retention_s >= self.idempotency_horizon_s
        assert self.reservations_per_account_max >= 1
        assert 0 < self.amount_max_micros <= self.balance_max_micros
        # Overage may push a balance below zero by at most one charge: stay in int64.
        assert self.balance_max_micros + self.charge_max_micros < INT64_MAX
        assert self.charge_max_micros * 2 < INT64_MAX
