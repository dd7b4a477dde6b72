"""Pooled balances, step by step on two shards: a pool delegates sub-quotas to
members on another shard, the members spend them there (the pool's shard is
not asked), the rest is reclaimed; every step is idempotent, a member that
cannot take a sub-quota gets nothing and the pool its money back, and each
shard's audit adds up."""

import pytest

from grid import audit
from grid.domain import operations as ops
from grid.domain.outcomes import AccountState, JournalKind, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import JournalRecord
from grid.domain.shard_state import ShardState

T = "default"
NOW = 1_800_000_000_000
PLAN = TariffPlan("iot", (Rate(1, Unit.EVENTS, 1_000, 1, 1),))  # 1,000 micros an event


class Shard:
    def __init__(self, shard_id: int) -> None:
        self.state = ShardState(shard_id)
        self.journal: list[JournalRecord] = []
        self.apply(ops.PutTariff(PLAN, "t"))

    def apply(self, operation):
        [reply] = self.state.apply_batch([operation], NOW)
        puts = self.state.take_writes().puts
        self.journal.extend(sorted((r for r in puts if type(r) is JournalRecord), key=lambda r: r.sequence))
        self.state.check_invariants()
        return reply

    def audit(self) -> audit.ShardAudit:
        return audit.audit_shard(0, list(self.state.accounts.values()), self.journal)


@pytest.fixture
def fleet():
    pool_shard, member_shard = Shard(0), Shard(1)
    assert pool_shard.apply(ops.CreateAccount(T, "fleet", "c", "EUR", 0, "iot", "t")).result == Result.SUCCESS
    assert pool_shard.apply(ops.TopUp(T, "fleet", "top", 100_000, "t")).result == Result.SUCCESS
    for device in ("dev-1", "dev-2"):
        assert member_shard.apply(ops.CreateAccount(T, device, "c", "EUR", 0, "iot", "t")).result == Result.SUCCESS
    return pool_shard, member_shard


def delegate(pool_shard, member_shard, member, amount, rid):
    """What grid.frontdoor.pools.delegate does, step by step."""
    taken = pool_shard.apply(ops.PoolTake(T, "fleet", f"{rid}/take", member, amount, "t"))
    if taken.result != Result.SUCCESS:
        return taken, None
    given = member_shard.apply(ops.PoolGive(T, member, f"{rid}/give", "fleet", amount, True, 0, "t"))
    if given.result != Result.SUCCESS:
        pool_shard.apply(ops.PoolGive(T, "fleet", f"{rid}/undo", member, amount, False, 0, "t"))
    return taken, given


def test_members_spend_sub_quotas_on_their_own_shard_and_the_rest_goes_back(fleet):
    pool_shard, member_shard = fleet
    taken, given = delegate(pool_shard, member_shard, "dev-1", 30_000, "d1")
    assert (taken.result, given.result) == (Result.SUCCESS, Result.SUCCESS)
    assert pool_shard.apply(ops.GetBalance(T, "fleet")).balance_micros == 70_000
    # dev-1 spends 12 events (12,000) from its sub-quota: its main balance is 0 and stays 0.
    debit = member_shard.apply(ops.Debit(T, "dev-1", "e1", "", 1, 12, False, "t"))
    assert (debit.result, debit.charged_micros, debit.bucket_micros) == (Result.SUCCESS, 12_000, 12_000)
    # A grant holds 5 events (5,000) of the sub-quota; reclaiming leaves it alone.
    hold = member_shard.apply(ops.Reserve(T, "dev-1", "h1", "s", 1, 5, "t"))
    assert (hold.result, hold.bucket_micros, hold.held_micros) == (Result.SUCCESS, 5_000, 0)
    reclaimed = member_shard.apply(ops.PoolReclaim(T, "dev-1", "r1/reclaim", "fleet", "t"))
    assert (reclaimed.result, reclaimed.amount_micros) == (Result.SUCCESS, 30_000 - 12_000 - 5_000)
    returned = pool_shard.apply(ops.PoolGive(T, "fleet", "r1/return", "dev-1", reclaimed.amount_micros, False, 0, "t"))
    assert (returned.result, pool_shard.apply(ops.GetBalance(T, "fleet")).balance_micros) == (Result.SUCCESS, 83_000)
    # Each step again: answered from its record, nothing moves twice.
    again = member_shard.apply(ops.PoolReclaim(T, "dev-1", "r1/reclaim", "fleet", "t"))
    assert (again.replayed, again.amount_micros) == (True, 13_000)
    assert pool_shard.apply(ops.PoolTake(T, "fleet", "d1/take", "dev-1", 30_000, "t")).replayed
    assert pool_shard.apply(ops.GetBalance(T, "fleet")).balance_micros == 83_000
    # The pool's shard saw one take and one return; the member's, the spending.
    kinds = [r.kind for r in pool_shard.journal if r.request_id]
    assert kinds.count(JournalKind.POOL_OUT) == 1 and kinds.count(JournalKind.POOL_IN) == 1
    for shard in (pool_shard, member_shard):
        report = shard.audit()
        assert report.ok, report.problems
    assert (pool_shard.audit().pool_out_micros, pool_shard.audit().pool_in_micros) == (30_000, 13_000)


def test_a_pool_cannot_delegate_more_than_it_has(fleet):
    pool_shard, member_shard = fleet
    taken, given = delegate(pool_shard, member_shard, "dev-1", 100_001, "big")
    assert (taken.result, given) == (Result.CREDIT_LIMIT_REACHED, None)
    assert pool_shard.apply(ops.GetBalance(T, "fleet")).balance_micros == 100_000


def test_a_member_that_cannot_take_it_gets_nothing_and_the_pool_its_money_back(fleet):
    pool_shard, member_shard = fleet
    assert member_shard.apply(ops.SetAccountState(T, "dev-2", "close", AccountState.CLOSED, "t")).result == \
        Result.SUCCESS
    taken, given = delegate(pool_shard, member_shard, "dev-2", 10_000, "d2")
    assert (taken.result, given.result) == (Result.SUCCESS, Result.END_USER_SERVICE_DENIED)
    assert pool_shard.apply(ops.GetBalance(T, "fleet")).balance_micros == 100_000
    assert pool_shard.audit().ok


def test_pool_steps_are_checked_like_any_other(fleet):
    pool_shard, _ = fleet
    assert pool_shard.apply(ops.PoolTake(T, "fleet", "x", "fleet", 5, "t")).field == "counterparty"
    assert pool_shard.apply(ops.PoolTake(T, "fleet", "x", "dev-1", 0, "t")).field == "amount_micros"
