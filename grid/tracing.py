"""OpenTelemetry traces for the grid: a span per charging operation at the front
door, a span per batch, a span per operation applied in the shard and one per
storage commit (DESIGN.md section 9).

Every operation gets a trace id and span ids whether or not anything is
exported: they go into the reply and the journal. Exporting is decided when an
operation's outcome is known (a tail decision, made the same way in every
process from the trace id and the outcome):
- denials, errors, overages, late usage and replays are always exported;
- an operation whose client sent a sampled traceparent is exported;
- the rest when the trace id falls in `export_ratio` (a deterministic cut of
  the trace id, so the front door and the shard agree without talking).
A span is recorded with explicit start and end times once its outcome is
known, so an operation nobody will export costs no span at all in the shard.

Exporters are configured by the standard OTEL_* variables: OTEL_TRACES_EXPORTER
(otlp, console or none) and OTEL_EXPORTER_OTLP_ENDPOINT (e.g.
http://127.0.0.1:4317 for a collector or Jaeger). With neither set, tracing is
off: the ids are still made and journaled, no span is built.
"""

import dataclasses
import hashlib
import hmac
import os
import random
import threading
import time

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags  # noqa: F401 (SpanKind re-exported)

from grid.domain import operations as ops
from grid.domain.outcomes import Result

EXPORT_ATTRIBUTE = "grid.export"
_RATIO_SCALE = 1 << 64
SUBSCRIBER_ID_POLICIES = ("plain", "hashed", "none")


@dataclasses.dataclass(frozen=True)
class TracingPolicy:
    """What is exported and how subscribers appear in spans (the same in every process)."""

    # Share of ordinary (successful, unremarkable) operations exported, 0..1.
    export_ratio: float = 0.01
    # Subscriber ids in spans: plain, hashed (HMAC-SHA256 with the salt, 16 hex) or none.
    subscriber_ids: str = "hashed"
    # Secret salt for hashed ids (GRID_SUBSCRIBER_ID_SALT); the same salt gives the same hash.
    subscriber_id_salt: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.export_ratio <= 1:
            raise ValueError("export_ratio must be between 0 and 1")
        if self.subscriber_ids not in SUBSCRIBER_ID_POLICIES:
            raise ValueError(f"subscriber_ids must be one of {', '.join(SUBSCRIBER_ID_POLICIES)}")

    def in_ratio(self, trace_id: int) -> bool:
        # The low 64 bits of a W3C trace id are random (the same rule as TraceIdRatioBased).
        return (trace_id & (_RATIO_SCALE - 1)) < int(self.export_ratio * _RATIO_SCALE)

    def subscriber(self, subscriber_id: str) -> str | None:
        if self.subscriber_ids == "plain":
            return subscriber_id
        if self.subscriber_ids == "hashed":
            digest = hmac.new(self.subscriber_id_salt.encode(), subscriber_id.encode(), hashlib.sha256)
            return digest.hexdigest()[:16]
        return None


def interesting(reply) -> bool:
    """An outcome whose trail is always kept: a denial, an error, overage, late
    usage or a replay."""
    if reply is None or isinstance(reply, ops.Rejection):
        return True
    if getattr(reply, "replayed", False):
        return True
    result = getattr(reply, "result", Result.SUCCESS)
    if result != Result.SUCCESS:
        return True
    if getattr(reply, "overage_micros", 0) or getattr(reply, "overage", False) or getattr(reply, "late", False):
        return True
    for info in getattr(reply, "multiple_unit_information", ()):
        if info.result != Result.SUCCESS or info.late or info.overage_micros:
            return True
    return False


# ---------------------------------------------------------------- ids


class _PresetIds(IdGenerator):
    """Random ids, except the next span (and root trace) id when preset: spans are
    recorded after the fact with the ids the reply and the journal already carry."""

    def __init__(self) -> None:
        self._local = threading.local()

    def preset(self, span_id: int, trace_id: int | None) -> None:
        self._local.span_id, self._local.trace_id = span_id, trace_id

    def generate_span_id(self) -> int:
        span_id = getattr(self._local, "span_id", None)
        if span_id is not None:
            self._local.span_id = None
            return span_id
        return random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        trace_id = getattr(self._local, "trace_id", None)
        if trace_id is not None:
            self._local.trace_id = None
            return trace_id
        return random.getrandbits(128) or 1


def new_trace_id() -> int:
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    return random.getrandbits(64) or 1


def hex_trace_id(trace_id: int) -> str:
    return format(trace_id, "032x")


def hex_span_id(span_id: int) -> str:
    return format(span_id, "016x")


# ---------------------------------------------------------------- export


class _ExportPolicyProcessor(SpanProcessor):
    """Passes to the exporter only the spans marked for export."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span) -> None:
        if span.attributes.get(EXPORT_ATTRIBUTE):
            self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def exporter_from_environment():
    """The span exporter the OTEL_* variables ask for, or None (tracing off)."""
    name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if name == "none" or (not name and not endpoint):
        return None
    if name in ("", "otlp"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, TLS and headers from the OTEL_EXPORTER_OTLP_* variables
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: the grid knows otlp, console and none")


class Tracing:
    """One process's tracer (front door or shard) and its export policy."""

    def __init__(self, service_name: str, policy: TracingPolicy = TracingPolicy(), exporter=None,
                 simple: bool = False) -> None:
        self.policy = policy
        self.enabled = exporter is not None
        self._ids = _PresetIds()
        self._provider = None
        self._tracer = None
        if self.enabled:
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
            self._provider = TracerProvider(resource=resource, sampler=ALWAYS_ON, id_generator=self._ids)
            inner = SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter)
            self._provider.add_span_processor(_ExportPolicyProcessor(inner))
            self._tracer = self._provider.get_tracer("charging.grid")

    @classmethod
    def from_environment(cls, service_name: str, policy: TracingPolicy) -> "Tracing":
        return cls(service_name, policy, exporter_from_environment())

    def record(self, name: str, *, trace_id: int, span_id: int, parent_span_id: int | None, start_ns: int,
               end_ns: int, attributes: dict, export: bool, kind: SpanKind = SpanKind.INTERNAL,
               links: list | None = None) -> None:
        """Record a finished span with the given ids (a root when parent_span_id is None)."""
        if not self.enabled or not export:
            return
        if parent_span_id:
            parent = SpanContext(trace_id, parent_span_id, is_remote=True, trace_flags=TraceFlags(1))
            ctx = trace.set_span_in_context(NonRecordingSpan(parent))
            self._ids.preset(span_id, None)
        else:
            ctx = otel_context.Context()
            self._ids.preset(span_id, trace_id)
        span = self._tracer.start_span(name, context=ctx, kind=kind, attributes={**attributes, EXPORT_ATTRIBUTE: True},
                                       links=links, start_time=start_ns)
        span.end(end_time=end_ns)

    def link(self, trace_id: int, span_id: int) -> Link:
        return Link(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1)))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


# ---------------------------------------------------------------- the front door's span per call


@dataclasses.dataclass(slots=True)
class CallTrace:
    """One call's ids: the server span (whose id the operation's parent is)."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    # The client asked for this trace (sampled traceparent) or it fell in the ratio.
    forced: bool
    started_ns: int

    @property
    def trace_id_hex(self) -> str:
        return hex_trace_id(self.trace_id)


def traceparent(call: CallTrace) -> str:
    """The W3C traceparent of a call's server span; the sampled flag says forced."""
    return f"00-{call.trace_id:032x}-{call.span_id:016x}-{'01' if call.forced else '00'}"


def parse_traceparent(value: str) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, forced), or None for an empty or malformed one."""
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        return int(parts[1], 16), int(parts[2], 16), bool(int(parts[3], 16) & 1)
    except ValueError:
        return None


def begin_call(policy: TracingPolicy, metadata) -> CallTrace:
    """Ids for a call, continuing a client's W3C traceparent when one was sent."""
    trace_id = parent = None
    client_sampled = False
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            span_context = trace.get_current_span(propagate.extract({"traceparent": value})).get_span_context()
            if span_context.is_valid:
                trace_id, parent = span_context.trace_id, span_context.span_id
                client_sampled = span_context.trace_flags.sampled
            break
    if trace_id is None:
        trace_id = new_trace_id()
    return CallTrace(trace_id, new_span_id(), parent, client_sampled or policy.in_ratio(trace_id), time.time_ns())


def end_call(tracing: Tracing, call: CallTrace, method: str, reply, operation=None, status_code: int = 0) -> None:
    """Record the server span of a call (RPC semantic conventions) once its reply is known."""
    if not tracing.enabled:
        return
    service, _, short = method.rpartition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": short.split(".")[0],
                  "rpc.grpc.status_code": status_code}
    if operation is not None:
        attributes.update(operation_attributes(tracing.policy, operation))
    attributes.update(reply_attributes(reply))
    tracing.record(method, trace_id=call.trace_id, span_id=call.span_id, parent_span_id=call.parent_span_id,
                   start_ns=call.started_ns, end_ns=time.time_ns(), attributes=attributes,
                   export=call.forced or interesting(reply), kind=SpanKind.SERVER)


# ---------------------------------------------------------------- attributes


def operation_attributes(policy: TracingPolicy, operation) -> dict:
    attributes = {"grid.operation": type(operation).__name__}
    request_id = getattr(operation, "request_id", "")
    if request_id:
        attributes["grid.request_id"] = request_id
    subscriber_id = getattr(operation, "subscriber_id", "")
    if subscriber_id:
        shown = policy.subscriber(subscriber_id)
        if shown is not None:
            attributes["grid.subscriber"] = shown
    for name, key in (("rating_group", "grid.rating_group"), ("requested_units", "grid.units.requested"),
                      ("used_units", "grid.units.used"), ("amount_micros", "grid.amount_micros"),
                      ("reservation_id", "grid.reservation_id"), ("charge_id", "grid.charge_id"),
                      ("session_id", "grid.session_id"),
                      ("invocation_sequence_number", "grid.invocation_sequence_number")):
        value = getattr(operation, name, None)
        if value not in (None, ""):
            attributes[key] = value
    return attributes


def reply_attributes(reply) -> dict:
    if reply is None:
        return {}
    if isinstance(reply, ops.Rejection):
        return {"grid.error": reply.code.name, "grid.error.field": reply.field}
    attributes = {}
    result = getattr(reply, "result", None)
    if result is not None:
        attributes["grid.result"] = Result(result).name
    for name, key in (("replayed", "grid.replayed"), ("granted_units", "grid.units.granted"),
                      ("charged_micros", "grid.amount_micros"), ("held_micros", "grid.held_micros"),
                      ("rounding_residue_picos", "grid.rounding_residue_picos"), ("overage_micros",
                      "grid.overage_micros"), ("late", "grid.late"), ("charge_id", "grid.charge_id"),
                      ("reservation_id", "grid.reservation_id"), ("refunded_micros", "grid.amount_micros"),
                      ("released_micros", "grid.released_micros")):
        value = getattr(reply, name, None)
        if value not in (None, "", 0, False) or name == "replayed":
            attributes[key] = value
    infos = getattr(reply, "multiple_unit_information", ())
    if infos:
        attributes["grid.rating_groups"] = [info.rating_group for info in infos]
        attributes["grid.results"] = [Result(info.result).name for info in infos]
        attributes["grid.units.granted"] = [info.granted_units for info in infos]
        attributes["grid.units.used"] = [info.used_units for info in infos]
        attributes["grid.amount_micros"] = sum(info.charged_micros for info in infos)
    return attributes

