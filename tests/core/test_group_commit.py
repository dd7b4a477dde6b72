"""grid/dataplane/group_commit.py without Ray or RocksDB: a real ShardState behind a
store whose synced write the test holds open, so it can see what arrives meanwhile.

The rules: frames that arrive while a write syncs are applied next and written
together in one batch; no frame is answered before its own write returned; two
groups never overlap; the queue is bounded; an idle shard sweeps."""

import asyncio
import threading

import pytest

from grid.dataplane.faults import FaultPoints
from grid.dataplane.group_commit import Frame, GroupCommitter, QueueFull
from grid.domain import operations as ops
from grid.domain.outcomes import Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.tracing import Tracing

T = ops.DEFAULT_TENANT
PLAN = TariffPlan("p", (Rate(1, Unit.EVENTS, 1_000, 1, 1),))


class HeldStore:
    """A store whose commit blocks until the test releases it; records every batch."""

    def __init__(self) -> None:
        self.commits: list[list] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.writing = 0
        self.overlapped = False

    def commit(self, writes) -> None:
        self.writing += 1
        self.overlapped = self.overlapped or self.writing > 1
        self.entered.set()
        self.release.wait(10)
        self.commits.append(list(writes.puts))
        self.writing -= 1

    def forget_journal_before(self, oldest_kept_ms: int) -> int:
        return 0


class FakeShard:
    def __init__(self) -> None:
        self.shard_id = 0
        self.state = ShardState(0)
        self.store = HeldStore()
        self.faults = FaultPoints()
        self.tracing = Tracing("test")
        self.lock = threading.RLock()

    def freeze_memory(self) -> None:
        pass


def run(coroutine_factory, **committer_options):
    shard = FakeShard()

    async def main():
        committer = GroupCommitter(shard, **{"group_operations_max": 1024, "queue_operations_max": 100,
                                             "sweep_interval_s": 30.0, **committer_options})
        committer.start()
        try:
            return await coroutine_factory(shard, committer)
        finally:
            shard.store.release.set()
            await committer.close()

    return asyncio.run(main())


def top_up(subscriber: str, request_id: str, amount: int = 100):
    return ops.TopUp(T, subscriber, request_id, amount)


async def open_accounts(committer, count: int) -> None:
    replies, _ = await committer.apply([ops.PutTariff(PLAN)] + [
        ops.CreateAccount(T, f"s{i}", f"create-{i}", "EUR", 0, "p") for i in range(count)])
    assert all(reply.result == Result.SUCCESS for reply in replies)


def test_frames_arriving_during_a_write_are_written_together_next_and_answered_only_after_it():
    async def scenario(shard, committer):
        await open_accounts(committer, 3)
        writes_before = len(shard.store.commits)
        shard.store.release.clear()
        shard.store.entered.clear()
        first = asyncio.ensure_future(committer.apply([top_up("s0", "a")]))
        while not shard.store.entered.is_set():  # the first group is syncing now
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(committer.apply([top_up(f"s{i}", f"b{i}")])) for i in range(3)]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(f.done() for f in later), "nothing answered before its write"
        assert committer.queue_depth == 3
        shard.store.release.set()
        await asyncio.gather(first, *later)
        groups = shard.store.commits[writes_before:]
        top_ups_per_group = [sum(1 for record in group if type(record).__name__ == "IdempotencyRecord")
                             for group in groups]
        assert top_ups_per_group == [1, 3], "the three that waited were written as one batch"
        assert not shard.store.overlapped
        return [reply.balance_micros for (reply,), _ in [f.result() for f in later]]

    assert run(scenario) == [200, 100, 100]  # s0 had "a" before b0


def test_a_frame_past_the_queue_bound_is_refused_at_once_and_changes_nothing():
    async def scenario(shard, committer):
        await open_accounts(committer, 1)
        shard.store.release.clear()
        shard.store.entered.clear()
        holding = asyncio.ensure_future(committer.apply([top_up("s0", "hold")]))
        while not shard.store.entered.is_set():
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(committer.apply([top_up("s0", f"q{i}") for i in range(8)]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            committer.submit(Frame([top_up("s0", f"r{i}") for i in range(3)], lambda replies, newest: None))
        shard.store.release.set()
        await asyncio.gather(holding, queued)
        [balance], _ = await committer.apply([ops.GetBalance(T, "s0")])
        return balance.balance_micros

    assert run(scenario, queue_operations_max=10) == 9 * 100


def test_a_group_is_bounded_in_operations():
    async def scenario(shard, committer):
        await open_accounts(committer, 1)
        before = len(shard.store.commits)
        shard.store.release.clear()
        shard.store.entered.clear()
        holding = asyncio.ensure_future(committer.apply([top_up("s0", "hold")]))
        while not shard.store.entered.is_set():
            await asyncio.sleep(0.001)
        waiting = [asyncio.ensure_future(committer.apply([top_up("s0", f"w{i}-{k}") for k in range(3)]))
                   for i in range(4)]
        await asyncio.sleep(0.01)
        shard.store.release.set()
        await asyncio.gather(holding, *waiting)
        return len(shard.store.commits) - before

    # 4 frames of 3 with at most 6 operations a group: the held one, then two groups of two frames.
    assert run(scenario, group_operations_max=6) == 3


def test_an_idle_shard_sweeps_expired_holds_by_itself():
    async def scenario(shard, committer):
        await open_accounts(committer, 1)
        [reply], _ = await committer.apply([top_up("s0", "fund", 1_000_000)])
        [hold], _ = await committer.apply([ops.Reserve(T, "s0", "r", "session", 1, 10)])
        assert hold.result == Result.SUCCESS
        shard.faults.clock_offset_ms = 10 ** 9  # the hold's validity and grace are long past
        await asyncio.sleep(0.3)  # no operation arrives: the sweep alone must expire it
        return shard.state.expired_total

    assert run(scenario, sweep_interval_s=0.05) == 1
