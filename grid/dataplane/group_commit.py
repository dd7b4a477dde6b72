"""Group commit: the one place a shard applies operations and makes them durable.

Frames (a front door's batch, a direct client's call, a slot move's step) are
queued on the shard's data-plane event loop. One task takes everything queued,
up to group_operations_max operations, applies it to the pure core in arrival
order (synchronously: no await between a balance check and its change), hands
the effects to a writer thread as one synced WriteBatch, and only then answers
each frame. While the write syncs, the loop stays free: new frames queue up and
make the next group, so latency stays near one fsync at low load and groups
grow by themselves under load (DESIGN.md 8 and 14). Nothing is answered before
its own write is synced, and no two applies interleave: the committer holds the
shard's lock from the first apply of a group to the end of its write, and every
control-plane read (audit, checkpoint, journal pages) takes the same lock.

The queue is bounded in operations: a frame that would pass queue_operations_max
is refused at once (the caller answers RESOURCE_EXHAUSTED), never parked.

When applying or writing fails, memory may be ahead of disk: the process
exits and Ray restarts the shard, which reloads from RocksDB; callers resend
with the same request ids, so nothing applies twice (DESIGN.md 5).
"""

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import os
import random
import time

from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode

log = logging.getLogger("grid.shard")

# Journal records past the retention are dropped this often (bounded work per group).
JOURNAL_PRUNE_INTERVAL_MS = 60_000
# What the process exits with when a group could not be applied or written.
EXIT_APPLY_FAILED = 70


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(slots=True)
class Frame:
    """Operations that arrived together, answered together: `done(replies,
    newest_notification_sequence)` is called on the loop once their group's
    write is synced. trace: the sender's batch trace context (see
    ShardActor.apply_traced) or None."""

    operations: list
    done: object
    trace: dict | None = None


class QueueFull(Exception):
    """The shard's queue holds queue_operations_max operations already."""


def overloaded(count: int, why: str) -> list:
    """The replies of a frame the shard refused as a whole."""
    return [Rejection(ErrorCode.RESOURCE_EXHAUSTED, "", f"the shard's queue is full ({why}); retry with backoff")
            ] * count


class GroupCommitter:
    """Runs on the shard's data-plane loop (grid.dataplane.shard_server)."""

    def __init__(self, shard, *, group_operations_max: int, queue_operations_max: int,
                 sweep_interval_s: float) -> None:
        self._shard = shard  # grid.controlplane.shard_actor.ShardActor: state, store, faults, tracing, lock
        self._group_operations_max = group_operations_max
        self._queue_operations_max = queue_operations_max
        self._sweep_interval_s = sweep_interval_s
        self._frames: collections.deque[Frame] = collections.deque()
        self._queued_operations = 0
        self._wakeup: asyncio.Event | None = None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"shard-{shard.shard_id}-write")
        self._next_journal_prune_ms = 0
        self._closing = False
        self._task: asyncio.Task | None = None
        # Counters (info(), the bench): groups written and the frames and operations in them.
        self.groups = 0
        self.frames = 0
        self.operations = 0

    def start(self) -> None:
        """On the loop that will run it."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"group-commit-{self._shard.shard_id}")

    @property
    def queue_depth(self) -> int:
        return self._queued_operations

    def submit(self, frame: Frame, bounded: bool = True) -> None:
        """Queue a frame (on the loop); raises QueueFull when it would pass the
        bound. bounded=False: a control-plane step, which a move needs to finish
        under load."""
        if self._closing:
            raise QueueFull("the shard is closing")
        if bounded and self._queued_operations and \
                self._queued_operations + len(frame.operations) > self._queue_operations_max:
            raise QueueFull(f"{self._queued_operations} operations queued")
        self._frames.append(frame)
        self._queued_operations += len(frame.operations)
        self._wakeup.set()

    async def apply(self, operations: list, trace: dict | None = None, bounded: bool = True) -> tuple[list, int]:
        """Operations through the queue and the write, awaited: (replies, newest
        notification sequence)."""
        future = asyncio.get_running_loop().create_future()
        self.submit(Frame(list(operations), lambda replies, newest: future.done() or future.set_result(
            (replies, newest)), trace), bounded)
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._writer.shutdown(wait=True)

    async def _take_group(self) -> list[Frame]:
        while not self._frames:
            if self._closing:
                return []
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._sweep_interval_s)
            except asyncio.TimeoutError:
                # Idle: an empty group lets the shard expire due holds (a sweep).
                return [Frame([], None)]
        group, operations = [], 0
        while self._frames and (not group or operations + len(self._frames[0].operations)
                                <= self._group_operations_max):
            frame = self._frames.popleft()
            operations += len(frame.operations)
            group.append(frame)
        self._queued_operations -= operations
        return group

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = await self._take_group()
            if not group:
                return
            shard = self._shard
            try:
                with shard.lock:
                    answers, traced, writes, times = self._apply(group)
                    if writes:
                        shard.faults.before_commit()
                        # The loop is free while the write syncs: the next group gathers meanwhile.
                        await loop.run_in_executor(self._writer, shard.store.commit, writes)
                        shard.faults.after_commit()
                    self._after_write(traced, writes, times)
            except BaseException:
                log.exception("shard %d failed applying a group; exiting to reload from storage", shard.shard_id)
                os._exit(EXIT_APPLY_FAILED)
            newest = shard.state.meta.next_notification_sequence - 1
            for frame, replies in zip(group, answers):
                if frame.done is not None:
                    frame.done(replies, newest)

    def _apply(self, group: list[Frame]):
        shard = self._shard
        state, faults = shard.state, shard.faults
        now = now_ms() + faults.clock_offset_ms
        answers, traced = [], []
        applied_at_ns = time.time_ns()
        for frame in group:
            faults.before_apply(frame.operations)
            if frame.trace is not None and shard.tracing.enabled:
                replies, spans = shard.apply_traced(frame.operations, frame.trace, now)
                traced.append((frame.trace, spans))
            else:
                # No spans, but every journal record still names the span that applied it.
                replies = state.apply_batch(frame.operations, now, [
                    format(random.getrandbits(64) or 1, "016x") for _ in frame.operations])
            answers.append(replies)
        self.groups += 1
        self.frames += len(group)
        self.operations += sum(len(frame.operations) for frame in group)
        return answers, traced, state.take_writes(), (now, applied_at_ns, time.time_ns())

    def _after_write(self, traced: list, writes, times: tuple[int, int, int]) -> None:
        shard = self._shard
        now, applied_at_ns, commit_started_ns = times
        for trace, spans in traced:
            shard.record_spans(trace, spans, applied_at_ns, commit_started_ns, len(writes.puts))
        if shard.state.prepare_indexes():
            shard.freeze_memory()
        if now >= self._next_journal_prune_ms:
            self._next_journal_prune_ms = now + JOURNAL_PRUNE_INTERVAL_MS
            shard.store.forget_journal_before(now - shard.state.limits.charge_retention_s * 1000)
