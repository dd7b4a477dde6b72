"""OpenTelemetry for the front door: a server span per call whose trace id
travels with the operation into the shard, the journal and the reply.

A W3C traceparent sent by the client in gRPC metadata continues the client's
trace. Exporters are the OpenTelemetry SDK's, configured by the standard
OTEL_* variables once an exporter package is installed (the tracing issue
adds OTLP export, batch spans and sampling policy).
"""

import contextlib

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider

_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        _tracer = TracerProvider().get_tracer("charging.grid.frontdoor")
    return _tracer


@contextlib.contextmanager
def server_span(method: str, metadata):
    """A span for one RPC, continuing a client's traceparent when one was sent.
    Yields the trace id as 32 hex characters."""
    carrier = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    context = propagate.extract(carrier) if "traceparent" in carrier else None
    with tracer().start_as_current_span(
        method, context=context, kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": method.rsplit("/", 1)[0], "rpc.method": method},
    ) as span:
        yield span, trace.format_trace_id(span.get_span_context().trace_id)
