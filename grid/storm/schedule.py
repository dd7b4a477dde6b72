"""Arrival schedules of the open-loop generator, and the skewed choice of a subscriber.

Pure: no clock, no I/O. A schedule is a generator of *intended* send times,
in seconds from the start of the run, ascending, bounded both by a count and
by a duration (so a mistake in a rate can never make an endless run). The
generator sends at these times whatever the replies do; a request that goes
out late is measured from its intended time (recorder.py).

- poisson: independent arrivals at a mean rate (exponential gaps, seeded);
- constant: one arrival every 1/rate seconds;
- bursts: `size` arrivals at the top of each period (IoT devices whose clocks
  are synchronised report at the same second), optionally spread evenly over a
  short window after the top.

Probabilities here are floats; money never is.
"""

import bisect
import dataclasses
import itertools
import random
from collections.abc import Iterator

# Hard bounds whatever the caller asks: a run is at most 10 minutes and a
# schedule never yields more than this many arrivals.
DURATION_MAX_S = 600.0
ARRIVALS_MAX = 100_000_000
BURST_SIZE_MAX = 10_000_000
KINDS = ("poisson", "constant", "bursts")


def _check_bounds(duration_s: float, count_max: int) -> None:
    if not 0 < duration_s <= DURATION_MAX_S:
        raise ValueError(f"duration_s must be in (0, {DURATION_MAX_S:g}]")
    if not 1 <= count_max <= ARRIVALS_MAX:
        raise ValueError(f"count_max must be in [1, {ARRIVALS_MAX}]")


def poisson(rate_per_s: float, duration_s: float, count_max: int, seed: int) -> Iterator[float]:
    """A Poisson process: gaps are exponential with mean 1/rate, from a seeded
    generator, so a run is repeatable."""
    _check_bounds(duration_s, count_max)
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0")
    rng = random.Random(seed)
    at_s = 0.0
    for _ in range(count_max):
        at_s += rng.expovariate(rate_per_s)
        if at_s >= duration_s:
            return
        yield at_s


def constant(rate_per_s: float, duration_s: float, count_max: int) -> Iterator[float]:
    """Evenly spaced arrivals, the first at 0 (computed by index: no drift)."""
    _check_bounds(duration_s, count_max)
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0")
    for index in range(count_max):
        at_s = index / rate_per_s
        if at_s >= duration_s:
            return
        yield at_s


def bursts(size: int, period_s: float, duration_s: float, count_max: int, spread_s: float = 0.0,
           first_at_s: float = 0.0) -> Iterator[float]:
    """`size` arrivals at first_at_s + k * period_s for k = 0, 1, ...; with
    spread_s > 0 a burst's arrivals are spaced evenly over [top, top + spread_s)
    instead of all at the top. Deterministic: every run has the same storm."""
    _check_bounds(duration_s, count_max)
    if not 1 <= size <= BURST_SIZE_MAX:
        raise ValueError(f"size must be in [1, {BURST_SIZE_MAX}]")
    if period_s <= 0:
        raise ValueError("period_s must be > 0")
    if not 0 <= spread_s < period_s:
        raise ValueError("spread_s must be in [0, period_s)")
    if first_at_s < 0:
        raise ValueError("first_at_s must be >= 0")
    yielded = 0
    for burst in itertools.count():
        top_s = first_at_s + burst * period_s
        if top_s >= duration_s:
            return
        for index in range(size):
            at_s = top_s + spread_s * index / size
            if at_s >= duration_s or yielded >= count_max:
                return
            yield at_s
            yielded += 1


def next_top_of_period_s(now_epoch_s: float, period_s: float) -> float:
    """Seconds from now to the next wall-clock multiple of period_s (the top of
    the minute for 60): where NTP-synchronised devices all wake up."""
    if period_s <= 0:
        raise ValueError("period_s must be > 0")
    return (-now_epoch_s) % period_s


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """Which schedule a run uses, with its parameters (one place for the CLI,
    the scenarios' defaults and the report)."""

    # poisson | constant | bursts
    kind: str = "poisson"
    # Arrivals per second (poisson, constant).
    rate_per_s: float = 100.0
    # Arrivals at the top of each period, the period, and the window they are spread over (bursts).
    burst_size: int = 1000
    burst_period_s: float = 60.0
    burst_spread_s: float = 1.0
    # The first burst's top, seconds after the start (bursts).
    first_burst_at_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"schedule must be one of {', '.join(KINDS)}")

    def times(self, duration_s: float, count_max: int, seed: int) -> Iterator[float]:
        if self.kind == "poisson":
            return poisson(self.rate_per_s, duration_s, count_max, seed)
        if self.kind == "constant":
            return constant(self.rate_per_s, duration_s, count_max)
        return bursts(self.burst_size, self.burst_period_s, duration_s, count_max, self.burst_spread_s,
                      self.first_burst_at_s)


class Zipf:
    """Index k in [0, n) drawn with probability proportional to 1 / (k + 1)^s:
    a few hot subscribers take most of the traffic (s = 0 is uniform; s ~ 1 is
    what call and data records usually show). Seeded; O(log n) per draw."""

    N_MAX = 10_000_000

    def __init__(self, n: int, s: float, seed: int) -> None:
        if not 1 <= n <= self.N_MAX:
            raise ValueError(f"n must be in [1, {self.N_MAX}]")
        if not 0 <= s <= 10:
            raise ValueError("s must be in [0, 10]")
        self.n = n
        self.s = s
        self._cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
        self._rng = random.Random(seed)

    def __call__(self) -> int:
        point = self._rng.random() * self._cumulative[-1]
        return min(bisect.bisect_right(self._cumulative, point), self.n - 1)

    def share_of_top(self, count: int) -> float:
        """The probability mass of the `count` hottest indexes (for the report)."""
        count = max(0, min(count, self.n))
        return self._cumulative[count - 1] / self._cumulative[-1] if count else 0.0
