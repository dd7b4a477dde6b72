"""Metrics through OpenTelemetry, scraped by Prometheus from /metrics.

Operations by type and result, their latency, batch sizes, queue depths per
shard, and from the shards (polled every few seconds): holds outstanding,
holds expired and sessions active. Off unless a port is configured
(`grid serve --metrics-port 9464`).
"""

import logging
import time

log = logging.getLogger("grid.metrics")

# Latency buckets in milliseconds: a synced write is ~1 ms, a saturated grid tens.
_LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, host: str, port: int, batchers: list) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from opentelemetry.sdk.resources import Resource
        from prometheus_client import start_http_server

        self._batchers = batchers
        # shard id -> its last info() (holds, expiries, sessions); filled by Grid's poll.
        self.shard_info: dict[int, dict] = {}
        reader = PrometheusMetricReader()
        provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": "charging-grid"}),
            views=[
                View(instrument_name="grid.operation.duration",
                     aggregation=ExplicitBucketHistogramAggregation(_LATENCY_BUCKETS_MS)),
                View(instrument_name="grid.batch.operations",
                     aggregation=ExplicitBucketHistogramAggregation(_BATCH_BUCKETS)),
            ],
        )
        self._provider = provider
        meter = provider.get_meter("charging.grid")
        self.operations = meter.create_counter(
            "grid.operations", unit="{operation}", description="operations answered, by type and result")
        self.duration = meter.create_histogram(
            "grid.operation.duration", unit="ms", description="front door latency of an operation")
        self.batch_operations = meter.create_histogram(
            "grid.batch.operations", unit="{operation}", description="operations carried by one batch")

        def per_shard(key):
            def callback(options):
                return [Observation(info.get(key, 0), {"shard": shard}) for shard, info in self.shard_info.items()]
            return callback

        meter.create_observable_gauge(
            "grid.queue.depth", unit="{operation}", description="operations waiting per shard",
            callbacks=[lambda options: [Observation(b.queue_depth, {"shard": b.shard_id}) for b in self._batchers]])
        meter.create_observable_gauge("grid.holds.outstanding", unit="{hold}", description="active holds per shard",
                                      callbacks=[per_shard("holds_outstanding")])
        meter.create_observable_counter("grid.holds.expired", unit="{hold}",
                                        description="holds expired since the shard incarnation started",
                                        callbacks=[per_shard("holds_expired")])
        meter.create_observable_gauge("grid.sessions.active", unit="{session}", description="active sessions per shard",
                                      callbacks=[per_shard("sessions_active")])
        self._server, self._thread = start_http_server(port, addr=host)
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def record(self, operation: str, outcome: str, started_monotonic: float) -> None:
        attributes = {"operation": operation, "result": outcome}
        self.operations.add(1, attributes)
        self.duration.record((time.monotonic() - started_monotonic) * 1000, {"operation": operation})

    def shutdown(self) -> None:
        self._server.shutdown()
        self._provider.shutdown()
