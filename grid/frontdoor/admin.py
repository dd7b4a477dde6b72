"""AdminService: snapshots of every shard, listed and restored (issue: crash-proof)."""

import pathlib

from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from grpc_status import rpc_status

from grid.domain.operations import Rejection
from grid.domain.outcomes import ErrorCode
from grid.frontdoor import errors
from grid.storage import snapshots

LABEL_LENGTH_MAX = 256


async def _abort(context, code: ErrorCode, field: str, message: str) -> None:
    await context.abort_with_status(rpc_status.to_status(errors.status_of(Rejection(code, field, message))))


def snapshot_message(info: snapshots.SnapshotInfo) -> pb.Snapshot:
    return pb.Snapshot(
        snapshot_id=info.snapshot_id, created_at_ms=info.created_at_ms, label=info.label, path=str(info.path),
        shards=[pb.ShardPosition(shard_id=p.shard_id, epoch=p.epoch, journal_sequence=p.journal_sequence)
                for p in info.shards],
    )


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, grid) -> None:
        self._grid = grid

    async def CreateSnapshot(self, request, context):
        if len(request.label) > LABEL_LENGTH_MAX or not request.label.isprintable():
            await _abort(context, ErrorCode.INVALID_ARGUMENT, "label",
                         f"at most {LABEL_LENGTH_MAX} printable characters")
        return snapshot_message(await self._grid.create_snapshot(request.label))

    async def ListSnapshots(self, request, context):
        found = snapshots.list_snapshots(self._grid.config.data_dir)
        return pb.ListSnapshotsResponse(snapshots=[snapshot_message(info) for info in found])

    async def RestoreSnapshot(self, request, context):
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
