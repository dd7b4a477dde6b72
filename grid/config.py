"""Configuration in one place: frozen dataclasses, each field with its unit and
default, read once at start-up from flags or the environment."""

import dataclasses
import os
import pathlib

from grid.domain.limits import CoreLimits
from grid.security import AuthConfig, RateLimit, TlsFiles
from grid.tracing import TracingPolicy
from grid.routing import SLOTS_DEFAULT


@dataclasses.dataclass(frozen=True)
class GridConfig:
    # Where each shard's RocksDB lives (data_dir/shard-N) and the grid manifest.
    data_dir: pathlib.Path = pathlib.Path("grid-data")
    # gRPC listen address; 127.0.0.1 by default: expose deliberately.
    host: str = "127.0.0.1"
    port: int = 50051
    # Shard actors; fixed for a data directory (its manifest records it).
    shards: int = 2
    # Hash slots, fixed at creation (DESIGN.md section 7).
    slots: int = SLOTS_DEFAULT
    # Existing Ray cluster to join ("auto" or host:port); None starts a local one.
    ray_address: str | None = None
    # A custom Ray resource each shard actor takes one of (e.g. "grid_shard", declared
    # by the nodes meant for shards: `ray start --resources '{"grid_shard": 4}'`);
    # empty: shards go anywhere. On a joined cluster shards are spread over nodes.
    shard_resource: str = ""
    # How often a front door asks the controller whether the shard map changed.
    map_poll_interval_s: float = 2.0
    # Operations in one frame of a front door's stream to a shard, and in one of the
    # shard's group commits (bounded messages and synced writes).
    batch_operations_max: int = 1024
    # Operations one ChargeBatch message may carry (INVALID_ARGUMENT past it).
    charge_batch_operations_max: int = 8190
    # Each shard serves the ChargingService on a public listener of its own, for
    # clients that route by the shard map (GetShardMap); off: front doors only.
    shard_listeners_public: bool = True
    # Shard N's listeners: BASE+2N (front doors' streams) and BASE+2N+1 (its public
    # ChargingService), fixed ports a network policy can name; 0: the kernel picks.
    shard_port_base: int = 0
    # Operations waiting per shard before callers get RESOURCE_EXHAUSTED.
    queue_operations_max: int = 10_000
    # Frames sent to one shard and not yet answered (the stream keeps their order).
    batches_in_flight_max: int = 1
    # An idle shard sweeps this often so due holds expire (and a front door sends
    # an idle shard an empty frame as often, which tells it of new notifications).
    sweep_interval_s: float = 1.0
    # How long the front door keeps retrying a batch whose shard died, with the same request ids.
    shard_retry_window_s: float = 30.0
    # Seconds in-flight calls get to finish on SIGTERM / Ctrl-C.
    shutdown_grace_s: float = 10.0
    # Bytes of the largest request message accepted: a catalog of 100,000 rates
    # (50,000 destination prefixes at peak and off-peak, with tiers: 4.3 MiB)
    # fits in one PutTariff.
    message_bytes_max: int = 8 << 20
    # Concurrent operations one Charge stream may have in flight.
    stream_operations_max: int = 10_000
    # WatchNotifications streams one front door serves at once.
    watchers_max: int = 256
    # How often a watcher with nothing new asks the shards again (the delay of a notification).
    notification_poll_interval_s: float = 0.2
    # Seconds between scheduled snapshots of every shard; 0 takes none.
    snapshot_interval_s: float = 0.0
    # Snapshots kept; creating one more deletes the oldest.
    snapshot_retention_count: int = 7
    # Which spans are exported and how subscribers appear in them (exporters: OTEL_* variables).
    tracing: TracingPolicy = TracingPolicy()
    # Base URL of the Jaeger UI for the trace links of disputes (GRID_JAEGER_URL).
    jaeger_url: str = "http://127.0.0.1:16686"
    # Prometheus scrape endpoint (/metrics) on host:metrics_port; 0 serves none.
    metrics_port: int = 0
    limits: CoreLimits = CoreLimits()
    # The front door's listener: TLS (mutual when tls.client_ca_path is set), or
    # plaintext only when asked for, and then only on loopback unless
    # plaintext_any_host (a mesh sidecar encrypting for us) says otherwise.
    tls: TlsFiles | None = None
    plaintext: bool = False
    plaintext_any_host: bool = False
    # API keys and JWT settings (grid/security.py); none configured: every caller is
    # the default tenant with every scope, allowed on loopback only unless this is set.
    auth: AuthConfig = AuthConfig()
    anonymous_any_host: bool = False
    # Requests per second per tenant (overridable per tenant in the auth file) and
    # per subscriber, each with its burst; 0 = unlimited. Past them: RESOURCE_EXHAUSTED
    # with a RetryInfo saying when to come back.
    tenant_rate: RateLimit = RateLimit()
    subscriber_rate: RateLimit = RateLimit()
    # Calls (streams included) the front door serves at once (gRPC answers
    # RESOURCE_EXHAUSTED past it), and HTTP/2 streams one connection may open.
    calls_max: int = 20_000
    streams_per_connection_max: int = 2_000
    # The admin audit log (grid/admin_log.py), one fsynced JSON line per admin call.
    admin_log_name: str = "admin-audit.jsonl"

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= self.slots:
            raise ValueError(f"shards must be between 1 and slots ({self.slots})")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.shard_port_base and not 1024 <= self.shard_port_base <= 65535 - 2 * self.shards:
            raise ValueError(f"shard_port_base must be 0 or between 1024 and {65535 - 2 * self.shards}")
        if not 1 <= self.batch_operations_max <= self.queue_operations_max:
            raise ValueError("batch_operations_max must be between 1 and queue_operations_max")
        if self.snapshot_interval_s < 0 or self.snapshot_retention_count < 1:
            raise ValueError("snapshot_interval_s must be >= 0 and snapshot_retention_count >= 1")
        if self.batches_in_flight_max < 1:
            raise ValueError("batches_in_flight_max must be at least 1")
        if self.calls_max < 1 or self.streams_per_connection_max < 1:
            raise ValueError("calls_max and streams_per_connection_max must be at least 1")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw is None else int(raw)
