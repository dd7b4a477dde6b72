"""What a storm measured: latencies, rates over time and the result mix.

Latency is measured from the request's INTENDED send time (its place in the
schedule), not from when it actually left: that is the coordinated-omission
correction for an open-loop generator. A request that could not go out on
time (the event loop was busy, the session's previous reply was late) counts
its wait, so an overloaded grid shows up as latency instead of hiding behind a
generator that slowed down with it. The service time (actual send to reply)
is kept as well, so the report shows how much of the latency was waiting.

Per second of the run: requests offered (by intended time), replies received
and errors (by completion time), arrivals shed by the generator, and p50/p99
of the latencies completed in that second, for the live display and the plot.
Result mix: "<method> <Result name>" for replies, "<method> grpc:<CODE>" for
failed calls, "arrival SHED_BY_GENERATOR" for arrivals the generator dropped.
Clock-agnostic: callers pass times in seconds since the run started.
"""

import collections
import dataclasses

# The longest latency recorded exactly: a 600 s run plus its drain. Longer
# values are clamped to it (and counted in `clamped`), never dropped.
LATENCY_MAX_US = 1_200_000_000
SERIES_SECONDS_MAX = 1_200
SHED_KEY = "arrival SHED_BY_GENERATOR"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def _histogram(significant_figures: int):
    # Imported here: `grid load` needs hdrhistogram, the rest of the grid does not.
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, LATENCY_MAX_US, significant_figures)


def percentiles_ms(histogram) -> dict:
    """p50/p90/p99/p99.9/max and the mean, in milliseconds (3 decimals)."""
    if histogram.get_total_count() == 0:
        return {name: None for name, _ in PERCENTILES} | {"max": None, "mean": None}
    values = {name: round(histogram.get_value_at_percentile(p) / 1000, 3) for name, p in PERCENTILES}
    values["max"] = round(histogram.get_max_value() / 1000, 3)
    values["mean"] = round(histogram.get_mean_value() / 1000, 3)
    return values


@dataclasses.dataclass
class Second:
    """One second of the run."""

    offered: int = 0
    shed: int = 0
    completed: int = 0
    errors: int = 0
    # Latencies completed in this second (2 significant figures: 24 KB each).
    latency: object | None = None  # an HdrHistogram once something completed


class Recorder:
    def __init__(self) -> None:
        self.latency = _histogram(3)  # from intended send time (corrected)
        self.service = _histogram(3)  # from actual send time (what a closed loop would report)
        self.results: collections.Counter = collections.Counter()
        self.unit_results: collections.Counter = collections.Counter()
        # Requests sent after the load ended to close what it opened (not in rates or latencies).
        self.wind_down_results: collections.Counter = collections.Counter()
        self.offered_total = 0
        self.shed_total = 0
        self.sent_total = 0
        self.completed_total = 0
        self.errors_total = 0
        self.clamped = 0
        self.last_completion_s = 0.0
        self._seconds: list[Second] = []

    def _second(self, at_s: float) -> Second:
        index = min(max(int(at_s), 0), SERIES_SECONDS_MAX - 1)
        while len(self._seconds) <= index:
            self._seconds.append(Second())
        return self._seconds[index]

    def offered(self, intended_s: float) -> None:
        """A request is due at intended_s (counted whether it is sent or shed)."""
        self.offered_total += 1
        self._second(intended_s).offered += 1

    def shed(self, intended_s: float) -> None:
        """An arrival the generator dropped because its outstanding cap was reached:
        offered, never sent, never silently queued."""
        self.offered(intended_s)
        self.shed_total += 1
        self._second(intended_s).shed += 1
        self.results[SHED_KEY] += 1

    def sent(self) -> None:
        self.sent_total += 1

    def completed(self, method: str, outcome: str, error: bool, intended_s: float, sent_s: float,
                  done_s: float) -> None:
        """A measured request ended: a reply (outcome = its Result name) or a
        failed call (outcome = the gRPC code name, error = True)."""
        key = f"{method} grpc:{outcome}" if error else f"{method} {outcome}"
        self.results[key] += 1
        second = self._second(done_s)
        if error:
            self.errors_total += 1
            second.errors += 1
        else:
            self.completed_total += 1
            second.completed += 1
        self.last_completion_s = max(self.last_completion_s, done_s)
        latency_us = self._clamp(round((done_s - intended_s) * 1e6))
        self.latency.record_value(latency_us)
        self.service.record_value(self._clamp(round((done_s - sent_s) * 1e6)))
        if second.latency is None:
            second.latency = _histogram(2)
        second.latency.record_value(latency_us)

    def wind_down(self, method: str, outcome: str, error: bool) -> None:
        self.wind_down_results[f"{method} grpc:{outcome}" if error else f"{method} {outcome}"] += 1

    def unit_result(self, method: str, name: str) -> None:
        """The result of one rating group of a session reply."""
        self.unit_results[f"{method} {name}"] += 1

    def _clamp(self, value_us: int) -> int:
        if value_us > LATENCY_MAX_US:
            self.clamped += 1
            return LATENCY_MAX_US
        return max(1, value_us)

    # ------------------------------------------------------------ reading

    @property
    def seconds_recorded(self) -> int:
        return len(self._seconds)

    def second_view(self, index: int) -> dict:
        """One second for the live display and the plot."""
        second = self._seconds[index] if 0 <= index < len(self._seconds) else Second()
        view = {"second": index, "offered": second.offered, "achieved": second.completed,
                "errors": second.errors, "shed": second.shed, "p50_ms": None, "p99_ms": None}
        if second.latency is not None:
            view["p50_ms"] = round(second.latency.get_value_at_percentile(50) / 1000, 3)
            view["p99_ms"] = round(second.latency.get_value_at_percentile(99) / 1000, 3)
        return view

    def series(self) -> list[dict]:
        return [self.second_view(index) for index in range(len(self._seconds))]

    def summary(self, load_s: float) -> dict:
        """Totals, rates and percentiles of the measured requests. Offered rate:
        requests due per second of the load; achieved: replies per second from
        the start to the last reply (a grid that falls behind stretches it)."""
        span_s = max(load_s, self.last_completion_s, 1e-9)
        return {
            "requests": {"offered": self.offered_total, "sent": self.sent_total, "replied": self.completed_total,
                         "failed": self.errors_total, "shed_by_generator": self.shed_total},
            "rate_per_s": {"offered": round(self.offered_total / max(load_s, 1e-9), 1),
                           "achieved": round(self.completed_total / span_s, 1)},
            "latency_ms": percentiles_ms(self.latency),
            "service_time_ms": percentiles_ms(self.service),
            "latency_clamped": self.clamped,
            "results": dict(sorted(self.results.items())),
            "unit_results": dict(sorted(self.unit_results.items())),
            "wind_down_results": dict(sorted(self.wind_down_results.items())),
        }
