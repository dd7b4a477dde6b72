"""Postpaid usage accumulated per billing cycle (a calendar month, UTC) per
account (issue 10): every charge (its units per rating group) and refund goes
into the cycle of its instant, in the same write; cycles survive a restore."""

from grid.domain import operations as ops
from grid.domain.outcomes import Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.storage import codec

T = ops.DEFAULT_TENANT
OCT_31_2359 = 1_793_491_140_000  # 2026-10-31T23:59:00Z
NOV_1_0000 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_1_0000 = 1_796_083_200_000  # 2026-12-01T00:00:00Z
EV, DATA = 1, 2


def shard() -> tuple[ShardState, list]:
    state, puts = ShardState(0), []
    plan = TariffPlan("post", (Rate(EV, Unit.EVENTS, 1_000, 1, 1), Rate(DATA, Unit.BYTES, 1, 1_000, 1)))
    for operation in (ops.PutTariff(plan), ops.CreateAccount(T, "a", "open", "EUR", 10_000_000, "post")):
        assert state.apply_batch([operation], OCT_31_2359 - 60_000)[0].result == Result.SUCCESS
    puts += state.take_writes().puts
    return state, puts


def run(state, puts, operation, at_ms):
    [reply] = state.apply_batch([operation], at_ms)
    puts += state.take_writes().puts
    return reply


def test_charges_and_refunds_fall_into_the_cycle_of_their_instant():
    state, puts = shard()
    october = run(state, puts, ops.Debit(T, "a", "d1", "", EV, 3, False), OCT_31_2359)  # 3_000 (credit)
    run(state, puts, ops.Debit(T, "a", "d2", "", DATA, 5_000, False), NOV_1_0000)  # 5 micros
    run(state, puts, ops.Debit(T, "a", "d3", "", EV, 2, False), NOV_1_0000 + 1)  # 2_000
    run(state, puts, ops.Refund(T, "a", "r1", october.charge_id, 1_000), NOV_1_0000 + 2)  # refunded in November
    oct_cycle = state.apply(ops.GetBillingCycle(T, "a", OCT_31_2359), NOV_1_0000 + 3).cycle
    nov_cycle = state.apply(ops.GetBillingCycle(T, "a"), NOV_1_0000 + 3).cycle
    assert (oct_cycle.period_end_ms, oct_cycle.charged_micros, oct_cycle.refunded_micros, oct_cycle.usage) == (
        NOV_1_0000, 3_000, 0, ((EV, 3, 3_000),))
    assert (nov_cycle.period_start_ms, nov_cycle.period_end_ms) == (NOV_1_0000, DEC_1_0000)
    assert (nov_cycle.charged_micros, nov_cycle.refunded_micros) == (2_005, 1_000)
    assert nov_cycle.usage == ((EV, 2, 2_000), (DATA, 5_000, 5))
    # A denied charge adds nothing; an account that never paid anything has no cycle.
    assert run(state, puts, ops.Debit(T, "a", "d4", "", 99, 1, False), NOV_1_0000 + 4).result == Result.RATING_FAILED
    assert state.apply(ops.GetBillingCycle(T, "a"), NOV_1_0000 + 5).cycle == nov_cycle
    assert state.apply(ops.GetBillingCycle(T, "a", DEC_1_0000), DEC_1_0000).cycle is None
    assert state.apply(ops.GetBillingCycle(T, "nobody"), NOV_1_0000).result == Result.USER_UNKNOWN
    # Restored from what was written: the same cycles.
    latest = {codec.key_of(record): record for record in puts}
    restored = ShardState.restore(0, [codec.decode(codec.encode(r)) for r in latest.values()
                                      if type(r).__name__ != "JournalRecord"])
    assert restored.apply(ops.GetBillingCycle(T, "a"), NOV_1_0000 + 5).cycle == nov_cycle


def test_session_usage_is_billed_per_rating_group():
    state, puts = shard()
    run(state, puts, ops.CreateSession(T, "a", "s", 0, (ops.UnitUsage(DATA, 10_000),)), NOV_1_0000)
    run(state, puts, ops.ReleaseSession(T, "a", "s", 1, (ops.UnitUsage(DATA, 0, 7_000),)), NOV_1_0000 + 1)
    cycle = state.apply(ops.GetBillingCycle(T, "a"), NOV_1_0000 + 2).cycle
    assert (cycle.charged_micros, cycle.usage) == (7, ((DATA, 7_000, 7),))
