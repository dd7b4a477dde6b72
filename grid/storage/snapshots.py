"""Snapshots of a grid's data directory: RocksDB checkpoints of every shard.

Layout, under the data directory:

    snapshots/<snapshot_id>/SNAPSHOT.json      id, time, label, each shard's position
    snapshots/<snapshot_id>/grid.json          the grid's shape (shards, slots)
    snapshots/<snapshot_id>/shard-N/db         a RocksDB checkpoint (hard links)
    snapshots/<snapshot_id>/shard-N/SHARD.json

A snapshot is built under `<snapshot_id>.partial` and renamed when every shard
has written its checkpoint, so a listed snapshot is always whole. Restoring
copies one into a fresh data directory, which `grid serve` then starts from.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import re
import shutil

SNAPSHOTS_DIRECTORY = "snapshots"
MANIFEST_FILE = "SNAPSHOT.json"
PARTIAL_SUFFIX = ".partial"
SNAPSHOT_FORMAT = 1
_SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{9}Z(-[0-9]+)?")


class SnapshotError(Exception):
    """A snapshot that is incomplete or cannot be restored there."""


class SnapshotNotFound(SnapshotError):
    """No snapshot with that id."""


@dataclasses.dataclass(frozen=True)
class ShardPosition:
    shard_id: int
    epoch: int
    journal_sequence: int


@dataclasses.dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    created_at_ms: int
    label: str
    shards: tuple[ShardPosition, ...]
    path: pathlib.Path


def snapshots_root(data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / SNAPSHOTS_DIRECTORY


def new_snapshot_id(data_dir: pathlib.Path, now_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.timezone.utc)
    base = f"{moment:%Y%m%dT%H%M%S}{now_ms % 1000:03d}Z"
    root = snapshots_root(data_dir)
    candidate, suffix = base, 1
    while (root / candidate).exists() or (root / (candidate + PARTIAL_SUFFIX)).exists():
        candidate, suffix = f"{base}-{suffix}", suffix + 1
    return candidate


def begin(data_dir: pathlib.Path, snapshot_id: str) -> pathlib.Path:
    """The directory the shards write their checkpoints into."""
    partial = snapshots_root(data_dir) / (snapshot_id + PARTIAL_SUFFIX)
    partial.mkdir(parents=True)
    shutil.copy2(data_dir / "grid.json", partial / "grid.json")
    return partial


def commit(partial: pathlib.Path, snapshot_id: str, created_at_ms: int, label: str,
           positions: list[ShardPosition]) -> SnapshotInfo:
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "snapshot_id": snapshot_id,
        "created_at_ms": created_at_ms,
        "label": label,
        "shards": [dataclasses.asdict(position) for position in sorted(positions, key=lambda p: p.shard_id)],
    }
    (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    final = partial.with_name(snapshot_id)
    os.replace(partial, final)
    return read(final)


def abandon(partial: pathlib.Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


def read(path: pathlib.Path) -> SnapshotInfo:
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as error:
        raise SnapshotError(f"{path} is not a whole snapshot: {error}") from error
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path}: unknown snapshot format {manifest.get('format')}")
    return SnapshotInfo(
        snapshot_id=manifest["snapshot_id"], created_at_ms=manifest["created_at_ms"], label=manifest["label"],
        shards=tuple(ShardPosition(**shard) for shard in manifest["shards"]), path=path,
    )


def list_snapshots(data_dir: pathlib.Path) -> list[SnapshotInfo]:
    """Whole snapshots, oldest first (partial ones are never listed)."""
    root = snapshots_root(data_dir)
    if not root.is_dir():
        return []
    found = [read(path) for path in root.iterdir() if path.is_dir() and _SNAPSHOT_ID.fullmatch(path.name)]
    return sorted(found, key=lambda info: (info.created_at_ms, info.snapshot_id))


def find(data_dir: pathlib.Path, snapshot_id: str) -> SnapshotInfo:
    if not _SNAPSHOT_ID.fullmatch(snapshot_id):
        raise SnapshotNotFound(f"snapshot_id {snapshot_id!r} is not a snapshot id")
    path = snapshots_root(data_dir) / snapshot_id
    if not path.is_dir():
        raise SnapshotNotFound(f"no snapshot {snapshot_id} under {snapshots_root(data_dir)}")
    return read(path)


def restore(data_dir: pathlib.Path, snapshot_id: str, target: pathlib.Path) -> SnapshotInfo:
    """Copy a snapshot into a fresh data directory (never over existing data)."""
    info = find(data_dir, snapshot_id)
    if target.exists() and any(target.iterdir()):
        raise SnapshotError(f"{target} is not empty: restore into a fresh data directory")
    if target.resolve() == data_dir.resolve() or data_dir.resolve() in target.resolve().parents:
        raise SnapshotError(f"{target} lies inside the grid's own data directory")
    staging = target.with_name(target.name + PARTIAL_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(info.path, staging, ignore=shutil.ignore_patterns(MANIFEST_FILE))
    if target.exists():
        target.rmdir()
    os.replace(staging, target)
    return info


def prune(data_dir: pathlib.Path, keep: int) -> list[str]:
    """Delete the oldest snapshots beyond `keep`; returns the ids deleted."""
    assert keep >= 1
    snapshots = list_snapshots(data_dir)
    doomed = snapshots[: max(0, len(snapshots) - keep)]
    for info in doomed:
        shutil.rmtree(info.path)
    return [info.snapshot_id for info in doomed]
