"""The shard actor: the control-plane face of a shard (DESIGN.md 2, 7 and 8).

Ray places it on a node and restarts it when its process dies. Its
constructor rebuilds the state from RocksDB, takes a new epoch, opens the
shard's data-plane listeners (grid.dataplane.shard_server) and registers
their endpoint with the controller; from then on every operation of a charge
reaches the shard there, over gRPC, and is applied by the group committer.
What Ray calls here are control-plane steps: a slot move's export, import and
drop (through the same committer, in the shard's order), the shard map when
it changes, snapshots, audits, dispute and journal reads (under the shard's
lock, between two groups).
"""

import dataclasses
import gc
import logging
import os
import pathlib
import threading
import time

from grid import tracing
from grid.dataplane.faults import FaultPoints
from grid.dataplane.shard_server import ShardServer
from grid.domain import operations as ops
from grid.domain.shard_state import ShardState
from grid.storage import codec
from grid.storage.shard_store import ShardStore

log = logging.getLogger("grid.shard")

NAMESPACE = "charging-grid"


def _node_id() -> str:
    """The Ray node this shard runs on (placement checks; empty outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # not in a Ray worker
        return ""


def listen_host(config) -> str:
    """Where a shard listens: loopback when the grid's front door does (the
    embedded default), else this node's address, which other nodes reach."""
    from grid import security

    if security.is_loopback(config.host):
        return "127.0.0.1"
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray
        return config.host


class ShardActor:
    def __init__(self, shard_id: int, config, controller_name: str = "") -> None:
        started = time.monotonic()
        self.shard_id = shard_id
        self.lock = threading.RLock()  # held by the committer from apply to synced write
        self.tracing = tracing.Tracing.from_environment("charging-grid-shard", config.tracing)
        path = pathlib.Path(config.data_dir).resolve() / f"shard-{shard_id}"
        path.mkdir(parents=True, exist_ok=True)
        self.store = ShardStore(path, shard_id)
        self.state = ShardState.restore(shard_id, self.store.load_records(), config.limits)
        # A new incarnation takes a new epoch before it serves (fencing).
        self.state.meta.epoch += 1
        self.store.put_synced(self.state.meta)
        self.faults = FaultPoints.from_environment(shard_id, self.state.meta.epoch)
        if self.faults.armed:
            log.warning("shard %d: fault points armed: %s", shard_id, self.faults)
        self.load_seconds = time.monotonic() - started
        self.freeze_memory()
        self.server = ShardServer(self, config, listen_host(config))
        self.endpoint = self.server.start()
        if controller_name:
            import ray

            # By name, not a handle among the constructor's arguments: Ray keeps arguments
            # holding handles in its object store, where a restart may no longer find them.
            # The controller answers with the map (and every shard's endpoint) we route by.
            controller = ray.get_actor(controller_name, namespace=NAMESPACE)
            self.server.set_shard_map(ray.get(controller.register_shard.remote(self.endpoint)))
        log.info(
            "shard %d epoch %d loaded %d accounts in %.2fs",
            shard_id, self.state.meta.epoch, len(self.state.accounts), self.load_seconds,
        )

    def freeze_memory(self) -> None:
        """The loaded state (or a new plan version's index) lives as long as the actor:
        a full collection need not rescan it (a million accounts would make each one long)."""
        gc.collect()
        gc.freeze()

    def data_plane_endpoint(self) -> dict:
        """Where and how front doors reach this incarnation (its token: the control plane only)."""
        return self.endpoint

    def set_shard_map(self, view: dict) -> None:
        """The controller's map changed (a slot moved, a shard registered)."""
        self.server.set_shard_map(view)

    def apply_control(self, payload: bytes) -> bytes:
        """Control-plane operations (a slot move's steps), packed by the codec, through
        the same group commit as the data plane: the shard's own order and synced write."""
        replies = self.server.apply_control(codec.unpack_batch(payload))
        return codec.pack_batch([*replies, self.state.meta.next_notification_sequence - 1])

    def apply_traced(self, operations: list, trace: dict, now: int) -> tuple[list, list]:
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

    def record_spans(self, trace: dict, spans: list, applied_at_ns: int, commit_started_ns: int,
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
        with self.lock:
            committer = self.server.committer
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
                "internal_address": self.endpoint["internal"],
                "public_address": self.endpoint["public"],
                "groups_written": committer.groups,
                "frames_applied": committer.frames,
                "operations_applied": committer.operations,
                "queue_operations": committer.queue_depth,
            }

    def checkpoint(self, snapshot_dir: str) -> dict:
        """Checkpoint between two groups (traffic pauses for at most the group being written)."""
        with self.lock:
            self.store.checkpoint(pathlib.Path(snapshot_dir) / f"shard-{self.shard_id}")
            return {
                "shard_id": self.shard_id,
                "epoch": self.state.meta.epoch,
                "journal_sequence": self.state.meta.next_journal_sequence - 1,
            }

    def dispute_records(self, tenant: str, subscriber_id: str, from_ms: int, to_ms: int,
                        scanned_max: int) -> tuple[bytes, bool]:
        """A subscriber's journal records in a window (a dispute), bounded by scanned_max."""
        with self.lock:
            records, truncated = self.store.subscriber_journal(tenant, subscriber_id, from_ms, to_ms, scanned_max)
        return codec.pack_batch(records), truncated

    def audit(self) -> dict:
        """Reconcile this shard's journal with its state (grid.audit). Reads the whole
        journal between two groups: the shard pauses meanwhile."""
        from grid import audit

        with self.lock:
            report = audit.audit_shard(self.shard_id, list(self.store.load_records()), self.store.journal())
        return dataclasses.asdict(report)

    def journal_page(self, from_sequence: int, limit: int) -> bytes:
        """Journal records from a sequence on, packed (CDR export pages)."""
        with self.lock:
            return codec.pack_batch(self.store.journal(from_sequence, limit))

    def journal(self, from_sequence: int = 1, limit: int = 1000) -> list:
        with self.lock:
            return self.store.journal(from_sequence, limit)

    def close(self) -> None:
        """Finish the data plane's queued groups, then release the RocksDB lock
        before the actor is killed (a clean stop)."""
        self.server.stop()
        self.store.close()
        self.tracing.shutdown()  # flushes the spans not yet exported
