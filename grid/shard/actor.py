"""The shard actor: applies a batch to the pure core, writes one synced batch,
and only then replies (DESIGN.md sections 7 and 8).

It is a plain (threaded, max_concurrency=1) actor, so no two batches ever
interleave: there is no await between a balance check and its write. A restart
(by Ray, or of the whole grid) rebuilds the state from RocksDB in the
constructor and takes a new epoch.
"""

import dataclasses
import gc
import logging
import os
import pathlib
import time

from grid import tracing
from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.shard_state import ShardState
from grid.shard.faults import FaultPoints
from grid.storage import codec
from grid.storage.shard_store import ShardStore

log = logging.getLogger("grid.shard")


# Journal records past the retention are dropped by the shard this often (bounded work per call).
JOURNAL_PRUNE_INTERVAL_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _node_id() -> str:
    """The Ray node this shard runs on (placement checks; empty outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # not in a Ray worker
        return ""


class ShardActor:
    def __init__(self, shard_id: int, data_dir: str, limits: CoreLimits,
                 policy: tracing.TracingPolicy = tracing.TracingPolicy()) -> None:
        started = time.monotonic()
        self.shard_id = shard_id
        self.tracing = tracing.Tracing.from_environment("charging-grid-shard", policy)
        path = pathlib.Path(data_dir) / f"shard-{shard_id}"
        path.mkdir(parents=True, exist_ok=True)
        self.store = ShardStore(path, shard_id)
        self.state = ShardState.restore(shard_id, self.store.load_records(), limits)
        # A new incarnation takes a new epoch before it serves (fencing, issue 5 builds on it).
        self.state.meta.epoch += 1
        self.store.put_synced(self.state.meta)
        self.faults = FaultPoints.from_environment(shard_id, self.state.meta.epoch)
        if self.faults.armed:
            log.warning("shard %d: fault points armed: %s", shard_id, self.faults)
        self._next_journal_prune_ms = 0
        self.load_seconds = time.monotonic() - started
        # The loaded state and the modules live as long as the actor: a full
        # collection need not rescan them (a million accounts would make each one long).
        gc.collect()
        gc.freeze()
        log.info(
            "shard %d epoch %d loaded %d accounts in %.2fs",
            shard_id, self.state.meta.epoch, len(self.state.accounts), self.load_seconds,
        )

    def apply_batch(self, payload: bytes, trace: dict | None = None) -> bytes:
        """Operations in, replies out, both packed by the codec (see codec.pack_batch).
        With a trace context (tracing on) each operation gets its span."""
        try:
            now = now_ms() + self.faults.clock_offset_ms
            operations = codec.unpack_batch(payload)
            self.faults.before_apply(operations)
            traced = trace is not None and self.tracing.enabled
            if traced:
                applied_at_ns = time.time_ns()
                replies, spans = self._apply_traced(operations, trace, now)
            else:
                # No spans, but every journal record still names the span that applied it.
                operations = [dataclasses.replace(op, span_id=tracing.hex_span_id(tracing.new_span_id()))
                              if hasattr(op, "span_id") else op for op in operations]
                replies = self.state.apply_batch(operations, now)
            writes = self.state.take_writes()
            commit_started_ns = time.time_ns()
            if writes:
                self.faults.before_commit()
                self.store.commit(writes)
                self.faults.after_commit()
            if traced:
                self._record_spans(trace, spans, applied_at_ns, commit_started_ns, len(writes.puts))
            if self.state.prepare_indexes():
                # A new plan version: its index (tens of thousands of prefixes) lives until
                # the next one; freezing it keeps full collections from rescanning it.
                gc.collect()
                gc.freeze()
            if now >= self._next_journal_prune_ms:
                self._next_journal_prune_ms = now + JOURNAL_PRUNE_INTERVAL_MS
                self.store.forget_journal_before(now - self.state.limits.charge_retention_s * 1000)
        except BaseException:
            # Memory may now be ahead of disk: never serve from it. Die, and let the
            # restarted actor rebuild from RocksDB; the front door retries with the
            # same request ids, so nothing applies twice.
            log.exception("shard %d failed applying a batch; exiting to reload from storage", self.shard_id)
            os._exit(70)
        # The shard's newest notification sequence rides after the replies: front
        # doors wake their watchers when it moves instead of waiting for a poll.
        return codec.pack_batch([*replies, self.state.meta.next_notification_sequence - 1])

    def _apply_traced(self, operations: list, trace: dict, now: int) -> tuple[list, list]:
        """ShardState.apply_batch, one operation at a time, noting for each its span
        id (journaled), its times and the account before and after."""
        state = self.state
        state.expire_due(now)
        replies, spans = [], []
        for operation, parent in zip(operations, trace["parents"]):
            span_id = None
            parsed = tracing.parse_traceparent(parent)
            if parsed is not None and hasattr(operation, "span_id"):
                trace_id, parent_span_id, forced = parsed
                span_id = tracing.new_span_id()
                operation = dataclasses.replace(operation, span_id=tracing.hex_span_id(span_id))
            account = state.accounts.get((getattr(operation, "tenant", ""), getattr(operation, "subscriber_id", "")))
            before = (account.balance_micros, account.reserved_micros) if account is not None else None
            started_ns = time.time_ns()
            reply = state.apply(operation, now)
            ended_ns = time.time_ns()
            replies.append(reply)
            if span_id is not None:
                spans.append((operation, reply, trace_id, span_id, parent_span_id, forced, before, started_ns,
                              ended_ns))
        return replies, spans

    def _record_spans(self, trace: dict, spans: list, applied_at_ns: int, commit_started_ns: int,
                      records_written: int) -> None:
        """The shard's spans: one per operation (a child of its call's server span),
        the batch (a child of the front door's batch span) and its storage commit."""
        committed_ns = time.time_ns()
        policy, state = self.tracing.policy, self.state
        batch_span_id, commit_span_id = tracing.new_span_id(), tracing.new_span_id()
        exported_any = False
        links = []
        for operation, reply, trace_id, span_id, parent_span_id, forced, before, started_ns, ended_ns in spans:
            export = forced or tracing.interesting(reply)
            exported_any = exported_any or export
            links.append(self.tracing.link(trace_id, span_id))
            attributes = {
                **tracing.operation_attributes(policy, operation), **tracing.reply_attributes(reply),
                "grid.shard": self.shard_id, "grid.epoch": state.meta.epoch, "grid.attempt": trace["attempt"],
            }
            account = state.accounts.get((getattr(operation, "tenant", ""), getattr(operation, "subscriber_id", "")))
            if before is not None:
                attributes["grid.balance_before_micros"], attributes["grid.reserved_before_micros"] = before
            if account is not None:
                attributes["grid.balance_after_micros"] = account.balance_micros
                attributes["grid.reserved_after_micros"] = account.reserved_micros
                plan = state.tariffs.get((account.tenant, account.tariff_plan_id))
                attributes["grid.tariff_plan_id"] = account.tariff_plan_id
                attributes["grid.tariff_version"] = plan.version if plan is not None else 0
            if isinstance(reply, ops.Rejection):
                attributes["grid.rejected"] = True
            self.tracing.record(
                f"grid.shard.apply {type(operation).__name__}", trace_id=trace_id, span_id=span_id,
                parent_span_id=parent_span_id, start_ns=started_ns, end_ns=ended_ns, attributes=attributes,
                export=export,
            )
        batch_attributes = {"grid.shard": self.shard_id, "grid.epoch": state.meta.epoch,
                            "grid.attempt": trace["attempt"], "grid.batch.operations": len(trace["parents"])}
        self.tracing.record(
            f"grid.shard.batch shard-{self.shard_id}", trace_id=trace["trace_id"], span_id=batch_span_id,
            parent_span_id=trace["span_id"], start_ns=applied_at_ns, end_ns=committed_ns,
            attributes=batch_attributes, export=exported_any, links=links,
        )
        self.tracing.record(
            "grid.storage.commit", trace_id=trace["trace_id"], span_id=commit_span_id, parent_span_id=batch_span_id,
            start_ns=commit_started_ns, end_ns=committed_ns,
            attributes={**batch_attributes, "db.system": "rocksdb", "grid.records_written": records_written,
                        "grid.synced": True},
            export=exported_any,
        )

    def info(self) -> dict:
        return {
            "shard_id": self.shard_id,
            "epoch": self.state.meta.epoch,
            "accounts": len(self.state.accounts),
            "pid": os.getpid(),
            "node_id": _node_id(),
            "load_seconds": self.load_seconds,
            "holds_outstanding": sum(len(holds) for holds in self.state._active_holds.values()),
            "holds_expired": self.state.expired_total,
            "sessions_active": sum(len(sessions) for sessions in self.state._account_sessions.values()),
        }

    def checkpoint(self, snapshot_dir: str) -> dict:
        """Checkpoint between two batches (this actor runs one call at a time, so
        traffic pauses for at most the batch being applied)."""
        self.store.checkpoint(pathlib.Path(snapshot_dir) / f"shard-{self.shard_id}")
        return {
            "shard_id": self.shard_id,
            "epoch": self.state.meta.epoch,
            "journal_sequence": self.state.meta.next_journal_sequence - 1,
        }

    def dispute_records(self, tenant: str, subscriber_id: str, from_ms: int, to_ms: int,
                        scanned_max: int) -> tuple[bytes, bool]:
        """A subscriber's journal records in a window (a dispute). Runs between two
        batches like everything here: bounded by scanned_max."""
        records, truncated = self.store.subscriber_journal(tenant, subscriber_id, from_ms, to_ms, scanned_max)
        return codec.pack_batch(records), truncated

    def audit(self) -> dict:
        """Reconcile this shard's journal with its state (grid.audit). Reads the whole
        journal between two batches: the shard pauses meanwhile."""
        from grid import audit

        report = audit.audit_shard(self.shard_id, list(self.store.load_records()), self.store.journal())
        return dataclasses.asdict(report)

    def journal_page(self, from_sequence: int, limit: int) -> bytes:
        """Journal records from a sequence on, packed (CDR export pages)."""
        return codec.pack_batch(self.store.journal(from_sequence, limit))

    def journal(self, from_sequence: int = 1, limit: int = 1000) -> list:
        return self.store.journal(from_sequence, limit)

    def close(self) -> None:
        """Release the RocksDB lock before the actor is killed (a clean stop)."""
        self.store.close()
        self.tracing.shutdown()  # flushes the spans not yet exported
