"""A micro-batcher per shard: one frame on the shard's stream carries many operations.

Callers `submit` an operation and await its reply. A sender task drains the
queue into batches of at most batch_operations_max operations and keeps at
most batches_in_flight_max batches outstanding on the shard's stream
(grid.dataplane.shard_link), which delivers frames in the order they were
sent, so per-subscriber order holds. The queue is
bounded: when it is full the caller is told RESOURCE_EXHAUSTED at once rather
than waiting without bound. An operation whose deadline passed before it was
sent is dropped unapplied (DEADLINE_EXCEEDED; GetTransaction will say unknown).

When a shard dies mid-batch, or the connection to it breaks, the batch may or
may not have been committed: the batcher resends it with the same request ids
until the shard (restarted, perhaps at another address) answers or the retry
window closes; idempotency makes the replies exact.
"""

import asyncio
import collections
import logging
import time

from grid import tracing
from grid.dataplane.shard_link import RETRYABLE_ERRORS, ShardLink
from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode

log = logging.getLogger("grid.batcher")

_RETRY_BACKOFF_FIRST_S = 0.05
_RETRY_BACKOFF_MAX_S = 1.0
# Resends of a whole batch after which its operations are tried one by one.
RESENDS_BEFORE_ISOLATING = 2
# Tries of one operation on its own before it alone is answered UNAVAILABLE.
SINGLE_ATTEMPTS_MAX = 3

OVERLOADED = Rejection(ErrorCode.RESOURCE_EXHAUSTED, "", "the shard's queue is full; retry with backoff")
DEADLINE_PASSED = Rejection(ErrorCode.DEADLINE_EXCEEDED, "", "the deadline passed before the operation was sent")
SHUTTING_DOWN = Rejection(ErrorCode.UNAVAILABLE, "", "the front door is shutting down; retry with the same request_id")


def _unavailable(error: BaseException) -> Rejection:
    return Rejection(
        ErrorCode.UNAVAILABLE, "",
        f"the shard did not answer ({type(error).__name__}); the outcome is unknown: "
        "retry with the same request_id or ask GetTransaction",
    )


class ShardBatcher:
    def __init__(
        self,
        shard_id: int,
        link: ShardLink,
        *,
        batch_operations_max: int,
        queue_operations_max: int,
        batches_in_flight_max: int,
        sweep_interval_s: float,
        retry_window_s: float,
        tracer: tracing.Tracing | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.link = link
        self._tracing = tracer or tracing.Tracing("charging-grid")
        self._batch_operations_max = batch_operations_max
        self._queue_operations_max = queue_operations_max
        self._sweep_interval_s = sweep_interval_s
        self._retry_window_s = retry_window_s
        self._queue: collections.deque = collections.deque()
        self._wakeup = asyncio.Event()
        self._in_flight = asyncio.Semaphore(batches_in_flight_max)
        self._senders: set[asyncio.Task] = set()
        self._closing = False
        self._task: asyncio.Task | None = None
        # Order across resends: batches are numbered as they are sent; see _call_with_retries.
        self._next_sequence = 0
        self._oldest_unfinished = 0
        self._finished: set[int] = set()
        self._order_changed = asyncio.Event()
        self._recovering = 0
        self._not_recovering = asyncio.Event()
        self._not_recovering.set()
        # Counters for metrics and benchmarks.
        self.batches_sent = 0
        self.operations_sent = 0
        self.batch_seconds = 0.0  # summed round trips of answered batches
        self.metrics = None  # grid.metrics.Metrics when a scrape port is configured
        # The shard's newest notification sequence seen, and who to tell when it moves.
        self.notification_sequence = 0
        self.on_notifications = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.shard_id}")

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def submit(self, operation, deadline_monotonic: float | None = None, call=None):
        """The shard's reply to the operation, or a Rejection (overload, deadline,
        shard unavailable)."""
        return await self.enqueue(operation, deadline_monotonic, call)

    def enqueue(self, operation, deadline_monotonic: float | None = None, call=None) -> asyncio.Future:
        """Queue the operation now; the future answers it (already answered when refused)."""
        future = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_result(SHUTTING_DOWN)
        elif len(self._queue) >= self._queue_operations_max:
            future.set_result(OVERLOADED)
        else:
            self._queue.append((operation, future, deadline_monotonic, call))
            self._wakeup.set()
        return future

    async def close(self) -> None:
        """Stop taking operations; finish everything queued and in flight."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)
        await self.link.close()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._sweep_interval_s)
                except asyncio.TimeoutError:
                    # Idle: an empty batch lets the shard expire due holds (a sweep).
                    await self._in_flight.acquire()
                    await self._not_recovering.wait()
                    self._spawn([])
                    continue
                finally:
                    self._wakeup.clear()
            await self._in_flight.acquire()
            await self._not_recovering.wait()
            batch = self._take_batch()
            if batch:
                self._spawn(batch)
            else:
                self._in_flight.release()

    def _take_batch(self) -> list:
        now = time.monotonic()
        batch = []
        while self._queue and len(batch) < self._batch_operations_max:
            item = self._queue.popleft()
            operation, future, deadline, _ = item
            if future.done():  # the caller went away (cancelled)
                continue
            if deadline is not None and deadline <= now:
                future.set_result(DEADLINE_PASSED)
                continue
            batch.append(item)
        return batch

    def _spawn(self, batch: list) -> None:
        sequence = self._next_sequence
        self._next_sequence += 1
        task = asyncio.get_running_loop().create_task(self._send(batch, sequence))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send(self, batch: list, sequence: int) -> None:
        try:
            operations = [operation for operation, _, _, _ in batch]
            started = time.perf_counter()
            context = self._trace_context(batch)
            try:
                replies = await self._call_with_retries(operations, sequence, context)
            except Exception as error:  # noqa: BLE001 - every caller must hear back
                log.error("shard %d batch of %d failed: %r", self.shard_id, len(batch), error)
                replies = [_unavailable(error)] * len(batch)
            self.batches_sent += 1
            self.operations_sent += len(operations)
            self.batch_seconds += time.perf_counter() - started
            if self.metrics is not None and operations:
                self.metrics.batch_operations.record(len(operations), {"shard": self.shard_id})
            for (_, future, _, _), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
            if context is not None:
                self._record_batch_span(batch, replies, context)
        finally:
            self._finish(sequence)
            self._in_flight.release()

    def _answered(self, answer: tuple[list, int]) -> list:
        replies, newest = answer
        self._note_notifications(newest)
        return replies

    def _note_notifications(self, newest: int) -> None:
        if newest > self.notification_sequence:
            self.notification_sequence = newest
            if self.on_notifications is not None:
                self.on_notifications()

    def _trace_context(self, batch: list) -> dict | None:
        """What the shard needs to make its spans: this batch span's ids, the attempt,
        and per operation the W3C traceparent of its call's server span (flags 01:
        exported whatever the outcome)."""
        if not self._tracing.enabled or not batch:
            return None
        return {
            "trace_id": tracing.new_trace_id(), "span_id": tracing.new_span_id(), "attempt": 1,
            "started_ns": time.time_ns(),
            "parents": [tracing.traceparent(call) if call is not None else "" for _, _, _, call in batch],
        }

    def _record_batch_span(self, batch: list, replies: list, context: dict) -> None:
        exported = any(call is not None and (call.forced or tracing.interesting(reply))
                       for (_, _, _, call), reply in zip(batch, replies))
        links = [self._tracing.link(call.trace_id, call.span_id) for _, _, _, call in batch if call is not None]
        self._tracing.record(
            f"grid.batch shard-{self.shard_id}", trace_id=context["trace_id"], span_id=context["span_id"],
            parent_span_id=None, start_ns=context["started_ns"], end_ns=time.time_ns(),
            attributes={"grid.shard": self.shard_id, "grid.batch.operations": len(batch),
                        "grid.attempt": context["attempt"]},
            export=exported, kind=tracing.SpanKind.CLIENT, links=links,
        )

    async def _one_by_one(self, operations: list, give_up_at: float) -> list:
        """The shard died again and again under this batch: perhaps one operation
        kills it (a bug in the core). Resend the operations one at a time, in
        order, so that one such operation fails alone (UNAVAILABLE) instead of
        taking every other subscriber's operation in the batch with it."""
        log.error("shard %d died %d times under a batch of %d; resending its operations one at a time",
                  self.shard_id, RESENDS_BEFORE_ISOLATING + 1, len(operations))
        replies = []
        for operation in operations:
            for attempt in range(SINGLE_ATTEMPTS_MAX):
                try:
                    answered, newest = await self.link.apply([operation])
                    self._note_notifications(newest)
                    replies.append(answered[0])
                    break
                except RETRYABLE_ERRORS as error:
                    if attempt + 1 == SINGLE_ATTEMPTS_MAX or time.monotonic() > give_up_at:
                        log.error("shard %d: operation %s still fails alone: %r", self.shard_id,
                                  type(operation).__name__, error)
                        replies.append(_unavailable(error))
                        break
                    await asyncio.sleep(_RETRY_BACKOFF_MAX_S)
        return replies

    def _finish(self, sequence: int) -> None:
        self._finished.add(sequence)
        while self._oldest_unfinished in self._finished:
            self._finished.discard(self._oldest_unfinished)
            self._oldest_unfinished += 1
        self._order_changed.set()

    async def _call_with_retries(self, operations: list, sequence: int, context: dict | None = None) -> list:
        """Send a batch; when its shard died, resend it with the same request ids.

        Resends keep the shard's order: while any batch is recovering no new batch
        is sent (the sender loop waits), and a batch is resent only once every
        earlier batch is answered or given up. Otherwise a later batch (say a
        GetTransaction) could reach the restarted shard before an earlier
        operation's resend, and its "not found" would later become untrue."""
        try:
            return self._answered(await self.link.apply(operations, context))
        except RETRYABLE_ERRORS as error:
            first_error = error
        self._recovering += 1
        self._not_recovering.clear()
        try:
            give_up_at = time.monotonic() + self._retry_window_s
            backoff_s = _RETRY_BACKOFF_FIRST_S
            log.warning("shard %d unavailable (%s); resending %d operations", self.shard_id,
                        type(first_error).__name__, len(operations))
            while self._oldest_unfinished < sequence:
                self._order_changed.clear()
                await self._order_changed.wait()
            resends = 0
            while True:
                if time.monotonic() + backoff_s > give_up_at:
                    raise first_error
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _RETRY_BACKOFF_MAX_S)
                if context is not None:
                    context["attempt"] += 1
                try:
                    return self._answered(await self.link.apply(operations, context))
                except RETRYABLE_ERRORS as error:
                    first_error = error
                resends += 1
                if resends >= RESENDS_BEFORE_ISOLATING and len(operations) > 1:
                    return await self._one_by_one(operations, give_up_at)
        finally:
            self._recovering -= 1
            if self._recovering == 0:
                self._not_recovering.set()
