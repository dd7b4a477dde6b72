"""The grid process: a grpc.aio front door over shards placed by Ray.

`Grid.start` starts (or joins) Ray, checks the data directory, creates the
controller and the shard actors (the control plane), opens one data-plane
stream per shard and serves gRPC with health checking and reflection. `stop` is
graceful: the server stops taking calls, in-flight calls and batches finish,
then the shards close their stores and Ray stops (if this process started it).
"""

import asyncio
import gc
import logging
import signal
import threading
import time

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grid import security, tracing
from grid.controlplane import cluster
from grid.admin_log import AdminLog
from grid.config import GridConfig
from grid.domain.operations import DEFAULT_TENANT
from grid.dataplane.batcher import ShardBatcher
from grid.dataplane.router import Router
from grid.dataplane.shard_link import ShardLink
from grid.frontdoor.guard import Guard
from grid.frontdoor.admin import AdminServicer
from grid.frontdoor.servicers import AccountServicer, CatalogServicer, ChargingServicer, SpendingLimitServicer
from grid.routing import ShardMap
from grid.storage import snapshots

log = logging.getLogger("grid.server")

SERVICE_NAMES = [descriptor.full_name for descriptor in pb.DESCRIPTOR.services_by_name.values()]


class Grid:
    def __init__(self, config: GridConfig) -> None:
        self.config = config
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._router: Router | None = None
        self._health: health.aio.HealthServicer | None = None
        self._handles: list = []
        self._owns_ray = False
        self._stats_task: asyncio.Task | None = None
        self._snapshot_task: asyncio.Task | None = None
        self._snapshot_lock = asyncio.Lock()
        self.tracing = tracing.Tracing("charging-grid")
        self.metrics = None
        self._metrics_task: asyncio.Task | None = None
        self._map_task: asyncio.Task | None = None
        self._map_fetch: asyncio.Future | None = None
        self._controller = None

    async def start(self) -> int:
        config = self.config
        # Before anything starts: a front door open by accident never serves.
        security.check_listener(config.host, config.tls, config.plaintext, config.plaintext_any_host,
                                config.auth.enabled, config.anonymous_any_host)
        tls_material = config.tls.read() if config.tls is not None else None
        cluster.check_manifest(config)
        self._owns_ray = cluster.start_ray(config)
        self.tracing = tracing.Tracing.from_environment("charging-grid", config.tracing)
        if self.tracing.enabled and config.tracing.subscriber_ids == "hashed" and not config.tracing.subscriber_id_salt:
            log.warning("subscriber ids in spans are hashed without a salt (set GRID_SUBSCRIBER_ID_SALT): "
                        "anyone who can list subscriber ids can reverse them")
        # The shard map is the controller's: every front door and shard routes by the same one.
        self._controller = cluster.controller(config)
        self._handles = await asyncio.to_thread(cluster.create_shards, config, cluster.controller_name(config))
        batchers = [
            ShardBatcher(
                shard_id, ShardLink(shard_id, handle, config.message_bytes_max),
                batch_operations_max=config.batch_operations_max,
                queue_operations_max=config.queue_operations_max,
                batches_in_flight_max=config.batches_in_flight_max,
                sweep_interval_s=config.sweep_interval_s,
                retry_window_s=config.shard_retry_window_s,
                tracer=self.tracing,
            )
            for shard_id, handle in enumerate(self._handles)
        ]
        for batcher in batchers:
            batcher.start()
        self._router = Router(*_parse_view(await cluster.shard_map_view(self._controller)), batchers,
                              config.limits, self.tracing)
        self._map_task = asyncio.get_running_loop().create_task(self._follow_map())
        self._router.refresh_map = self._refresh_map
        self._router.guard = Guard(
            security.Authenticator(config.auth),
            security.RateLimiter(config.tenant_rate, config.subscriber_rate, config.auth.tenant_rates),
            AdminLog(config.data_dir / config.admin_log_name))
        if not config.auth.enabled:
            log.warning("no credentials configured: every caller is tenant %r with every scope", DEFAULT_TENANT)
        if config.metrics_port:
            from grid.metrics import Metrics

            self.metrics = Metrics(config.host, config.metrics_port, batchers)
            self._router.metrics = self.metrics
            for batcher in batchers:
                batcher.metrics = self.metrics
            self._metrics_task = asyncio.get_running_loop().create_task(self._poll_shard_metrics())
        server = grpc.aio.server(maximum_concurrent_rpcs=config.calls_max, options=[
            ("grpc.max_receive_message_length", config.message_bytes_max),
            ("grpc.max_concurrent_streams", config.streams_per_connection_max),
            ("grpc.so_reuseport", 0),
        ])
        charging = ChargingServicer(self._router, config.stream_operations_max, watchers_max=config.watchers_max,
                                    notification_poll_interval_s=config.notification_poll_interval_s,
                                    batch_operations_max=config.charge_batch_operations_max)
        pb_grpc.add_ChargingServiceServicer_to_server(charging, server)
        # One bound on watchers for both kinds of notification stream.
        pb_grpc.add_SpendingLimitServiceServicer_to_server(SpendingLimitServicer(self._router, charging._watchers),
                                                           server)
        pb_grpc.add_AccountServiceServicer_to_server(AccountServicer(self._router), server)
        pb_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(self._router), server)
        pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(self), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(SERVICE_NAMES + [reflection.SERVICE_NAME, health.SERVICE_NAME], server)
        address = f"{config.host}:{config.port}"
        if tls_material is not None:
            cert, key, client_ca = tls_material
            self.port = server.add_secure_port(address, grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None))
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {config.host}:{config.port}")
        await server.start()
        self._stats_task = asyncio.get_running_loop().create_task(self._log_stats())
        if config.snapshot_interval_s > 0:
            self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshot_on_schedule())
        for name in SERVICE_NAMES + [""]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        # Everything made so far (Ray, gRPC, protobuf modules: hundreds of thousands of
        # objects) lives as long as the process: keep the collector from rescanning it
        # on every full collection, which showed up as pauses in the call path.
        gc.collect()
        gc.freeze()
        return self.port

    def shard_for(self, tenant: str, subscriber_id: str) -> int:
        return self._router.shard_map.shard_for(tenant, subscriber_id)

    def shard_handle(self, shard: int):
        return self._handles[shard]

    def shard_handles(self) -> list:
        return list(self._handles)

    async def _poll_shard_metrics(self, interval_s: float = 5.0) -> None:
        """Holds, expiries and sessions per shard for the metrics (a shard's own counters)."""
        while True:
            for shard_id, handle in enumerate(self._handles):
                try:
                    self.metrics.shard_info[shard_id] = await handle.info.remote()
                except Exception:  # noqa: BLE001 - a restarting shard answers next time
                    log.debug("shard %d gave no metrics", shard_id, exc_info=True)
            await asyncio.sleep(interval_s)

    async def _log_stats(self, interval_s: float = 10.0) -> None:
        """Batching at a glance (grid serve -v); metrics proper come with OpenTelemetry."""
        previous = {}
        while True:
            await asyncio.sleep(interval_s)
            for batcher in self.router.batchers:
                batches, operations, seconds = batcher.batches_sent, batcher.operations_sent, batcher.batch_seconds
                last_batches, last_operations, last_seconds = previous.get(batcher.shard_id, (0, 0, 0.0))
                previous[batcher.shard_id] = (batches, operations, seconds)
                if batches > last_batches:
                    log.info("shard %d: %.0f operations/s in %.0f batches/s (%.1f per batch, %.2f ms each), "
                             "queue %d", batcher.shard_id, (operations - last_operations) / interval_s,
                             (batches - last_batches) / interval_s,
                             (operations - last_operations) / (batches - last_batches),
                             1000 * (seconds - last_seconds) / (batches - last_batches), batcher.queue_depth)

    async def create_snapshot(self, label: str = "") -> snapshots.SnapshotInfo:
        """Checkpoint every shard into one snapshot, then keep only the newest ones."""
        async with self._snapshot_lock:
            created_at_ms = time.time_ns() // 1_000_000
            snapshot_id = snapshots.new_snapshot_id(self.config.data_dir, created_at_ms)
            partial = snapshots.begin(self.config.data_dir, snapshot_id)
            try:
                positions = await cluster.checkpoint_shards(self._handles, str(partial.resolve()))
            except BaseException:
                snapshots.abandon(partial)
                raise
            info = snapshots.commit(partial, snapshot_id, created_at_ms, label,
                                    [snapshots.ShardPosition(**position) for position in positions])
            deleted = snapshots.prune(self.config.data_dir, self.config.snapshot_retention_count)
        log.info("snapshot %s taken (%s); pruned %s", snapshot_id, label or "no label", deleted or "none")
        return info

    async def _snapshot_on_schedule(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval_s)
            try:
                await self.create_snapshot("scheduled")
            except Exception:  # noqa: BLE001 - a failed snapshot must not stop serving
                log.exception("scheduled snapshot failed")

    @property
    def router(self) -> Router:
        assert self._router is not None
        return self._router

    async def _follow_map(self) -> None:
        """Pick up a new shard map (a new epoch) from the controller."""
        while True:
            await asyncio.sleep(self.config.map_poll_interval_s)
            await self._refresh_map()

    async def _refresh_map(self) -> None:
        """Ask the controller for its map now (also when a shard answered SlotMoved);
        concurrent askers share one question."""
        if self._map_fetch is None:
            self._map_fetch = asyncio.ensure_future(self._fetch_map())
        fetch = self._map_fetch
        try:
            await asyncio.shield(fetch)
        finally:
            if self._map_fetch is fetch and fetch.done():
                self._map_fetch = None

    async def _fetch_map(self) -> None:
        try:
            latest, endpoints = _parse_view(await cluster.shard_map_view(self._controller))
        except Exception:  # the controller restarting: ask again next time
            log.warning("the controller did not answer; routing by map epoch %d", self._router.shard_map.epoch)
            return
        router = self._router
        if router is None:
            return
        router.endpoints = endpoints
        if latest.epoch <= router.shard_map.epoch:
            return
        if latest.shards > len(router.batchers):
            log.error("shard map epoch %d names shard %d, which this front door does not know", latest.epoch,
                      latest.shards - 1)
            return
        log.warning("shard map epoch %d -> %d", router.shard_map.epoch, latest.epoch)
        router.shard_map = latest

    async def stop(self) -> None:
        for task in (self._stats_task, self._snapshot_task, self._metrics_task, self._map_task):
            if task is not None:
                task.cancel()
        self._stats_task = self._snapshot_task = self._metrics_task = self._map_task = None
        if self._server is not None:
            for name in SERVICE_NAMES + [""]:
                await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            # Stops accepting calls; calls in flight get the grace period to finish.
            await self._server.stop(self.config.shutdown_grace_s)
            self._server = None
        if self._router is not None:
            await self._router.close()
            self._router = None
        if self._handles and not cluster.attached(self.config):
            await asyncio.to_thread(cluster.stop_shards, self._handles)
            if self._controller is not None:
                cluster.stop_controller(self._controller)
        self._controller = None
        # On a joined cluster the shards and the controller serve other front doors
        # and the next one: they stay (`grid cluster stop` ends them).
        self._handles = []
        if self._owns_ray:
            cluster.stop_ray()
            self._owns_ray = False
        self.tracing.shutdown()  # flushes the spans not yet exported
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics = None

    async def serve_until_signalled(self, on_ready=None) -> None:
        await self.start()
        # After start: ray.init installs its own SIGTERM handler, which would exit at once.
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop_requested.set)
        if on_ready is not None:
            on_ready(self)
        await stop_requested.wait()
        log.info("stopping: finishing calls in flight")
        await self.stop()


def _parse_view(view: dict) -> tuple[ShardMap, dict[int, dict]]:
    """The controller's map view as a ShardMap and each shard's public endpoint."""
    return (ShardMap(view["slots"], tuple(view["shard_of_slot"]), view["epoch"]),
            {int(shard_id): endpoint for shard_id, endpoint in view["endpoints"].items()})


class EmbeddedGrid:
    """A grid serving from a background thread with its own event loop: for
    tests, `grid demo` and benchmarks that drive it from the same process."""

    def __init__(self, config: GridConfig) -> None:
        self.grid = Grid(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grid-loop", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.grid.start(), self._loop).result(timeout=120)

    @property
    def target(self) -> str:
        return f"{self.grid.config.host}:{self.grid.port}"

    def run(self, coroutine, timeout_s: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout_s)

    def stop(self) -> None:
        try:
            self.run(self.grid.stop(), timeout_s=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
