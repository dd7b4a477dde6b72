"""Every Ray API call of the grid, behind one small wrapper (the control plane).

Starts (or joins) Ray, checks the data directory's manifest, creates the
controller and one shard actor per shard, and stops them cleanly. Shard actors
restart on failure (max_restarts) but their tasks are never retried by Ray
(max_task_retries=0). No operation of a charge comes through here: front doors
ask a shard for its data-plane endpoint over Ray, then stream operations to it
over gRPC (grid.dataplane).
"""

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import pathlib

import ray

from grid.config import GridConfig
from grid.controlplane.shard_actor import ShardActor
from grid.storage import codec

log = logging.getLogger("grid.cluster")

NAMESPACE = "charging-grid"
MANIFEST_FILE = "grid.json"
MANIFEST_FORMAT = 1


class ManifestMismatch(Exception):
    """The data directory was created with another shape (shards, slots)."""


def check_manifest(config: GridConfig) -> None:
    """Refuse to serve a data directory with a different shape: changing the
    number of shards or slots would route subscribers away from their data."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    manifest = config.data_dir / MANIFEST_FILE
    wanted = {"format": MANIFEST_FORMAT, "shards": config.shards, "slots": config.slots}
    if manifest.exists():
        found = json.loads(manifest.read_text())
        for field in ("format", "shards", "slots"):
            if found.get(field) != wanted[field]:
                raise ManifestMismatch(
                    f"{config.data_dir} was created with {field}={found.get(field)}, not {wanted[field]}"
                )
        return
    if any(config.data_dir.glob("shard-*")):
        raise ManifestMismatch(f"{config.data_dir} holds shards but no {MANIFEST_FILE}: refusing to guess its shape")
    manifest.write_text(json.dumps(wanted))


def start_ray(config: GridConfig) -> bool:
    """Start a new local Ray (the embedded default) or join config.ray_address.
    Returns True when this process started Ray and so must stop it."""
    if ray.is_initialized():
        return False
    if config.ray_address:
        ray.init(address=config.ray_address, namespace=NAMESPACE, logging_level=logging.WARNING)
        return True
    # Ray starts workers at niceness 15; shard actors are the latency-critical path
    # of every charge, so on a busy machine they must not yield to everything else.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # address="local": never join a leftover cluster named by ray_current_cluster.
    ray.init(
        address="local",
        namespace=NAMESPACE,
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    return True


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def _actor_prefix(data_dir: pathlib.Path) -> str:
    return hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=6).hexdigest()


def _shared_options(config: GridConfig) -> dict:
    """On a joined cluster the grid's actors outlive any one front door (several
    front doors share them; a front door restarting leaves them serving): they
    are detached, and a front door attaches to them by name."""
    if not config.ray_address:
        return {}
    return {"lifetime": "detached", "get_if_exists": True}


def create_shards(config: GridConfig, controller_name: str = "") -> list:
    """The shard actors: created, or on a joined cluster found by name. With
    config.shard_resource each needs one unit of that Ray resource, so shards
    run only on the nodes meant for them; on a joined cluster they are spread
    over those nodes. A shard whose node is lost is restarted by Ray on another
    such node and reopens its data by path (DESIGN: node loss, README)."""
    remote_class = ray.remote(ShardActor)
    prefix = _actor_prefix(config.data_dir)
    otel_env = {key: value for key, value in os.environ.items() if key.startswith("OTEL_")}
    placement = {}
    if config.shard_resource:
        placement["resources"] = {config.shard_resource: 1}
    if config.ray_address:
        placement["scheduling_strategy"] = "SPREAD"
    handles = [
        remote_class.options(
            name=f"grid-{prefix}-shard-{shard_id}",
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=1,
            num_cpus=0,
            # Exporter settings reach the shard processes even on a cluster Ray did not start here.
            **({"runtime_env": {"env_vars": otel_env}} if otel_env else {}),
            **placement,
            **_shared_options(config),
        ).remote(shard_id, dataclasses.replace(config, data_dir=config.data_dir.resolve()), controller_name)
        for shard_id in range(config.shards)
    ]
    # Wait until every shard has loaded its state: fail now, not on the first call.
    infos = ray.get([handle.info.remote() for handle in handles])
    for info in infos:
        log.info("shard %(shard_id)d epoch %(epoch)d: %(accounts)d accounts", info)
    return handles


def controller_name(config: GridConfig) -> str:
    return f"grid-{_actor_prefix(config.data_dir)}-controller"


def controller(config: GridConfig):
    """The grid's controller actor (grid.controller): created, or found by name."""
    from grid.controlplane.controller import ControllerActor

    prefix = _actor_prefix(config.data_dir)
    return ray.remote(ControllerActor).options(
        name=f"grid-{prefix}-controller", max_restarts=-1, max_task_retries=0, num_cpus=0, max_concurrency=8,
        **({"lifetime": "detached", "get_if_exists": True} if config.ray_address else {}),
    ).remote(config.slots, config.shards, prefix, str(config.data_dir.resolve()))


def move_slots(config: GridConfig, slots: list[int], target: int) -> dict:
    """Move slots to the target shard through the grid's controller (`grid cluster move-slots`)."""
    handle = ray.get_actor(f"grid-{_actor_prefix(config.data_dir)}-controller", namespace=NAMESPACE)
    return ray.get(handle.move_slots.remote(list(slots), target))


async def shard_map(controller_handle):
    from grid.routing import ShardMap

    epoch, slots, shard_of_slot = await controller_handle.shard_map.remote()
    return ShardMap(slots, tuple(shard_of_slot), epoch)


def stop_controller(handle) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # already gone
        log.warning("the controller did not stop cleanly", exc_info=True)


def attached(config: GridConfig) -> bool:
    """Whether this front door shares the grid's actors with others (a joined cluster)."""
    return bool(config.ray_address)


def stop_grid_actors(config: GridConfig) -> int:
    """Close and stop a joined cluster's shards and controller (`grid cluster stop`).
    Returns how many actors were stopped."""
    prefix = _actor_prefix(config.data_dir)
    stopped = 0
    for shard_id in range(config.shards):
        try:
            handle = ray.get_actor(f"grid-{prefix}-shard-{shard_id}", namespace=NAMESPACE)
        except ValueError:
            continue
        stop_shards([handle])
        stopped += 1
    try:
        ray.kill(ray.get_actor(f"grid-{prefix}-controller", namespace=NAMESPACE), no_restart=True)
        stopped += 1
    except ValueError:
        pass
    return stopped


def stop_shards(handles: list) -> None:
    try:
        ray.get([handle.close.remote() for handle in handles], timeout=30)
    except Exception:  # a dead shard has nothing to close
        log.warning("a shard did not close cleanly", exc_info=True)
    for handle in handles:
        ray.kill(handle, no_restart=True)


async def data_plane_endpoint(handle) -> dict:
    """Where a shard's current incarnation listens, its token and certificate
    (waits while Ray restarts it)."""
    return await handle.data_plane_endpoint.remote()


async def shard_map_view(controller_handle) -> dict:
    """The controller's map with each shard's public endpoint (GetShardMap)."""
    return await controller_handle.shard_map_view.remote()


async def dispute_records(handle, tenant: str, subscriber_id: str, from_ms: int, to_ms: int,
                          scanned_max: int) -> tuple[list, bool]:
    payload, truncated = await handle.dispute_records.remote(tenant, subscriber_id, from_ms, to_ms, scanned_max)
    return codec.unpack_batch(payload), truncated


async def journal_page(handle, from_sequence: int, limit: int) -> list:
    return codec.unpack_batch(await handle.journal_page.remote(from_sequence, limit))


async def checkpoint_shards(handles: list, snapshot_dir: str) -> list[dict]:
    return list(await asyncio.gather(*(handle.checkpoint.remote(snapshot_dir) for handle in handles)))


# Errors of a Ray call to a shard that died or is restarting: ask again.
RETRYABLE_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
