"""AdminService: snapshots of every shard, listed and restored (issue: crash-proof)."""

import asyncio
import json
import pathlib
import time

from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from grpc_status import rpc_status

from grid import audit, cdr, dispute, security, tracing
from grid.controlplane import cluster
from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode
from grid.domain.validation import InvalidArgument
from grid.domain.validation import check_identifier as _identifier
from grid.frontdoor import errors
from grid.storage import snapshots

LABEL_LENGTH_MAX = 256
# A dispute answers at most this many events and looks at no more than
# DISPUTE_SCANNED_MAX of the subscriber's journal records (the shard pauses meanwhile).
DISPUTE_EVENTS_MAX = 10_000
DISPUTE_SCANNED_MAX = 100_000
# CDRs in one ExportCdrs page, and journal records read from a shard per Ray call.
CDR_PAGE_MAX = 10_000
_JOURNAL_READ = 2_000


async def _abort(context, code: ErrorCode, field: str, message: str) -> None:
    await context.abort_with_status(rpc_status.to_status(errors.status_of(Rejection(code, field, message))))


def snapshot_message(info: snapshots.SnapshotInfo) -> pb.Snapshot:
    return pb.Snapshot(
        snapshot_id=info.snapshot_id, created_at_ms=info.created_at_ms, label=info.label, path=str(info.path),
        shards=[pb.ShardPosition(shard_id=p.shard_id, epoch=p.epoch, journal_sequence=p.journal_sequence)
                for p in info.shards],
    )


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Every call is authorized by the guard (snapshots and the audit need the
    operator scope; disputes and CDRs are confined to the caller's tenant) and
    written to the admin audit log, whatever its outcome."""

    def __init__(self, grid) -> None:
        self._grid = grid

    async def _guarded(self, context, name: str, request, handler):
        method = f"charging.v1.AdminService/{name}"
        guard = self._grid.router.guard
        principal = await guard.enter(context, method, request)
        trace_id = tracing.begin_call(self._grid.router.tracing.policy, context.invocation_metadata()).trace_id_hex
        outcome = "REJECTED"
        try:
            response = await handler(principal)
            outcome = "OK"
            return response
        finally:
            await guard.log(principal, method, request, outcome, trace_id, context.peer())

    async def CreateSnapshot(self, request, context):
        return await self._guarded(context, "CreateSnapshot", request,
                                   lambda principal: self._create_snapshot(request, context))

    async def ListSnapshots(self, request, context):
        return await self._guarded(context, "ListSnapshots", request,
                                   lambda principal: self._list_snapshots(request, context))

    async def RestoreSnapshot(self, request, context):
        return await self._guarded(context, "RestoreSnapshot", request,
                                   lambda principal: self._restore_snapshot(request, context))

    async def Dispute(self, request, context):
        return await self._guarded(context, "Dispute", request,
                                   lambda principal: self._dispute(request, context, principal.tenant))

    async def Audit(self, request, context):
        return await self._guarded(context, "Audit", request, lambda principal: self._audit(request, context))

    async def ExportCdrs(self, request, context):
        # The operator sees every tenant's CDRs; anyone else only their own tenant's.
        return await self._guarded(context, "ExportCdrs", request, lambda principal: self._export_cdrs(
            request, context, None if security.SCOPE_OPERATOR in principal.scopes else principal.tenant))

    async def _create_snapshot(self, request, context):
        if len(request.label) > LABEL_LENGTH_MAX or not request.label.isprintable():
            await _abort(context, ErrorCode.INVALID_ARGUMENT, "label",
                         f"at most {LABEL_LENGTH_MAX} printable characters")
        return snapshot_message(await self._grid.create_snapshot(request.label))

    async def _list_snapshots(self, request, context):
        found = snapshots.list_snapshots(self._grid.config.data_dir)
        return pb.ListSnapshotsResponse(snapshots=[snapshot_message(info) for info in found])

    async def _restore_snapshot(self, request, context):
        if not request.target_data_dir:
            await _abort(context, ErrorCode.INVALID_ARGUMENT, "target_data_dir", "is required")
        target = pathlib.Path(request.target_data_dir)
        try:
            info = snapshots.restore(self._grid.config.data_dir, request.snapshot_id, target)
        except snapshots.SnapshotNotFound as error:
            await _abort(context, ErrorCode.NOT_FOUND, "snapshot_id", str(error))
        except snapshots.SnapshotError as error:
            await _abort(context, ErrorCode.FAILED_PRECONDITION, "target_data_dir", str(error))
        return pb.RestoreSnapshotResponse(snapshot=snapshot_message(info), target_data_dir=str(target))

    async def _dispute(self, request, context, tenant: str):
        limits = self._grid.config.limits
        try:
            _identifier("subscriber_id", request.subscriber_id, limits)
            _identifier("request_id", request.request_id, limits, required=False, length_max=2 * limits.id_length_max)
            _identifier("charge_id", request.charge_id, limits, required=False)
            if request.request_id and request.charge_id:
                raise InvalidArgument("charge_id", "give a request_id or a charge_id, not both")
            if request.from_ms < 0:
                raise InvalidArgument("from_ms", "must be 0 or more (ms since the epoch)")
            if request.to_ms < 0 or (request.to_ms and request.to_ms < request.from_ms):
                raise InvalidArgument("to_ms", "the window must have 0 <= from_ms <= to_ms (to_ms 0: now)")
            if request.limit > DISPUTE_EVENTS_MAX:
                raise InvalidArgument("limit", f"at most {DISPUTE_EVENTS_MAX}")
        except InvalidArgument as error:
            await _abort(context, ErrorCode.INVALID_ARGUMENT, error.field, error.message)
        shard = self._grid.shard_for(tenant, request.subscriber_id)
        to_ms = request.to_ms or time.time_ns() // 1_000_000 + 1
        try:
            records, truncated = await cluster.dispute_records(
                self._grid.shard_handle(shard), tenant, request.subscriber_id, request.from_ms, to_ms,
                DISPUTE_SCANNED_MAX)
        except cluster.RETRYABLE_ERRORS as error:
            await _abort(context, ErrorCode.UNAVAILABLE, "", f"shard {shard} did not answer ({type(error).__name__})")
        events = dispute.tree(dispute.select(records, request.request_id, request.charge_id))
        limit = request.limit or DISPUTE_EVENTS_MAX
        base_url = self._grid.config.jaeger_url
        return pb.DisputeResponse(
            truncated=truncated or len(events) > limit,
            events=[_event(event, base_url, shard) for event in events[:limit]],
        )

    async def _audit(self, request, context):
        reports = await asyncio.gather(*(handle.audit.remote() for handle in self._grid.shard_handles()))
        shards = [audit.ShardAudit(**report) for report in reports]
        return pb.AuditResponse(report_json=json.dumps(audit.overall(shards)), ok=all(s.ok for s in shards))

    async def _export_cdrs(self, request, context, tenant: str | None):
        if request.limit > CDR_PAGE_MAX:
            await _abort(context, ErrorCode.INVALID_ARGUMENT, "limit", f"at most {CDR_PAGE_MAX}")
        try:
            cdrs, next_cursor, more = await export_cdrs(self._grid, request.cursor, request.limit or CDR_PAGE_MAX,
                                                        tenant)
        except cdr.BadCursor as error:
            await _abort(context, ErrorCode.INVALID_ARGUMENT, "cursor", str(error))
        except cluster.RETRYABLE_ERRORS as error:
            await _abort(context, ErrorCode.UNAVAILABLE, "", f"a shard did not answer ({type(error).__name__}); "
                         "ask again with the same cursor")
        return pb.ExportCdrsResponse(cdrs=[_cdr_message(c) for c in cdrs], next_cursor=next_cursor, more=more)


async def export_cdrs(grid, cursor: str, limit: int, tenant: str | None = None) -> tuple[list[dict], str, bool]:
    """A page of at most limit CDRs from every shard's journal, from the cursor on
    (only tenant's, unless tenant is None): the CDRs, the cursor after them, and
    whether more were there."""
    positions = cdr.decode_cursor(cursor, grid.config.shards)
    cdrs: list[dict] = []
    more = False
    for shard in range(grid.config.shards):
        found, positions[shard], finished = await _shard_cdrs(grid, shard, positions[shard], limit - len(cdrs),
                                                              tenant)
        cdrs += found
        more = more or not finished
    return cdrs, cdr.encode_cursor(positions), more


async def _shard_cdrs(grid, shard: int, position: int, room: int, tenant: str | None
                      ) -> tuple[list[dict], int, bool]:
    """One shard's CDRs after position, at most room of them: (CDRs, the position
    after the last record taken, whether the journal's end was reached)."""
    found: list[dict] = []
    while True:
        records = await cluster.journal_page(grid.shard_handle(shard), position + 1, _JOURNAL_READ)
        for record in records:
            made = cdr.cdr_of(shard, record) if tenant is None or record.tenant == tenant else None
            if made is not None:
                if len(found) == room:
                    return found, position, False
                found.append(made)
            position = record.sequence
        if len(records) < _JOURNAL_READ:
            return found, position, True


def _cdr_message(made: dict) -> pb.Cdr:
    draws = [pb.BucketDraw(bucket_id=draw["bucket_id"], amount=draw["amount"]) for draw in made["bucket_draws"]]
    return pb.Cdr(**{**made, "bucket_draws": draws})


def _event(event: dispute.Event, base_url: str, shard: int) -> pb.DisputeEvent:
    r = event.record
    return pb.DisputeEvent(
        sequence=r.sequence, at_ms=r.at_ms, kind=int(r.kind), result=int(r.result), request_id=r.request_id,
        reference_id=r.reference_id, reservation_id=r.reservation_id, session_id=r.session_id,
        rating_group=r.rating_group, units=r.units, amount_micros=r.amount_micros,
        balance_before_micros=r.balance_before_micros, balance_after_micros=r.balance_after_micros,
        reserved_before_micros=r.reserved_before_micros, reserved_after_micros=r.reserved_after_micros,
        rounding_residue_picos=r.rounding_residue_picos, tariff_plan_id=r.tariff_plan_id,
        tariff_version=r.tariff_version, late=r.late, overage_micros=r.overage_micros, trace_id=r.trace_id,
        span_id=r.span_id, trace_url=dispute.trace_url(base_url, r.trace_id), depth=event.depth,
        parent_sequence=event.parent_sequence, shard_id=shard, status=r.status, bucket_units=r.bucket_units,
        bucket_micros=r.bucket_micros,
        bucket_draws=[pb.BucketDraw(bucket_id=bucket_id, amount=amount) for bucket_id, amount in r.bucket_draws],
    )
