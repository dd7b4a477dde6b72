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
    # Rates one tariff plan may hold (rating groups x destination prefixes x
    # time bands x zones: tens of thousands of prefixes are common).
    rates_per_plan_max: int = 100_000
    # Sessions: supervision time (RFC 4006 Tcc) is this many validity times,
    # give or take the jitter, so that supervision never fires as one wave.
    supervision_validity_times: int = 2
    supervision_jitter_percent: int = 10
    # Rating groups in one session request (3GPP allows many; 64 is generous).
    units_per_session_request_max: int = 64
    # Sessions (active) one account may have at once.
    sessions_per_account_max: int = 1000
    # Told to the network function: report after this long without traffic.
    quota_holding_time_s: int = 60
    # Report when this share of a grant is left (volume/time quota threshold).
    quota_threshold_percent: int = 20
    # Notifications a shard keeps for reconnecting watchers (and at most the
    # idempotency horizon long); older ones are dropped, and a watcher behind
    # them is told it lost some.
    notifications_retained_max: int = 100_000
    notifications_per_read_max: int = 512
    # Policy functions subscribed to one subscriber's counters at once.
    subscriptions_per_account_max: int = 16
    # Policy counters one plan may define, thresholds one counter may have.
    counters_per_plan_max: int = 32
    thresholds_per_counter_max: int = 16

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
        assert self.supervision_validity_times >= 1 and 0 <= self.supervision_jitter_percent < 50
        assert 0 <= self.quota_threshold_percent < 100
