"""Rating cost per operation with a 50,000-prefix plan (100,000 rates), in one process.

No Ray, no gRPC, no disk: the pure rating engine (grid/domain/pricing.py) and
the shard state machine (grid/domain/shard_state.py) on this machine's CPU.

The plan: 50,000 distinct destination prefixes (digits, lengths 2..8, from a
seeded random.Random), each priced twice, in the "peak" band (Mon-Fri
08:00-18:00) and at any time (""), in Europe/Berlin, with a "weekend" band
(days 6 and 7) that has no rates of its own (it falls back to any time):
100,000 voice rates (the core's rates_per_plan_max), "60/1" tiers, and a
connect fee on about one prefix in ten. The v1 plan it is compared with has
one plain rate per rating group (no prefixes, bands, tiers or fees).

What is measured, each step over the same generated usages (random 12-digit
numbers that match some prefix, random instants in one week, durations
1..3600 s, a share of them started just before 18:00 on a weekday so that
they cross from peak to off-peak):

  1. PlanIndex(plan): build time (once) and memory (tracemalloc), and the
     time PutTariff takes to validate and hold the plan in a shard;
  2. selection only: index.select(group, number, "", index.band_at(t));
  3. select + price: Pricer(index, Usage(group, number), t).charge(0,
     Fraction(0), seconds, t, t), and the same with the v1 plan;
  4. direct debits through ShardState.apply(ops.Debit(...)) on a shard with
     1,000 topped-up accounts: rating plus idempotency record, charge,
     journal, billing cycle; the same with the v1 plan, interleaved batch by
     batch, and their ratio.

Timing: time.perf_counter_ns around batches of --batch operations, divided
(the median and p99 over batches, in microseconds per operation); every
other batch also times each operation alone into an HdrHistogram (per-op
p50..max, the timer's own cost shown beside it), and the full (generation 2)
garbage collections in each step are counted and timed. Every step is
bounded by --iterations and --seconds (about 35 s in all by default on 2
cores). Results are checked: the shard charged what the pricer says, and
top-ups - charges == balances (conservation). Steps slower than
--profile-above-us per operation are then profiled with cProfile and their
hot functions printed.

    /work/venv/bin/python load_tests/bench_rating.py
    /work/venv/bin/python load_tests/bench_rating.py --iterations 100000 --seconds 20 --json [PATH]

With --json alone, stdout is one JSON object (the table goes to stderr);
with --json PATH the object is also written to PATH.
"""

import argparse
import cProfile
import datetime
import gc
import json
import os
import pathlib
import platform
import pstats
import random
import statistics
import sys
import time
import tracemalloc
import zoneinfo
from fractions import Fraction

from hdrh.histogram import HdrHistogram

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from grid.domain import operations as ops  # noqa: E402
from grid.domain import rating  # noqa: E402
from grid.domain.limits import CoreLimits  # noqa: E402
from grid.domain.outcomes import Result, Unit  # noqa: E402
from grid.domain.pricing import PlanIndex, Pricer, Usage  # noqa: E402
from grid.domain.rating import Rate, TariffPlan, Tier, TimeBand  # noqa: E402
from grid.domain.shard_state import ShardState  # noqa: E402

VOICE = 1  # the rating group of every voice rate
ZONE = "Europe/Berlin"
PEAK = TimeBand("peak", (1, 2, 3, 4, 5), 8 * 60, 18 * 60)
WEEKEND = TimeBand("weekend", (6, 7), 0, 1440)
PREFIX_LENGTHS = (2, 3, 4, 5, 6, 7, 8)
PREFIX_WEIGHTS = (1, 2, 4, 8, 16, 16, 16)  # short prefixes are few (90 of length 2 at most)
NUMBER_DIGITS = 12
# A week without a daylight-saving change in Europe/Berlin, from Monday 00:00.
WEEK_START_MS = int(datetime.datetime(2024, 3, 4, tzinfo=zoneinfo.ZoneInfo(ZONE)).timestamp() * 1000)
WEEK_S = 7 * 86_400
CALL_S_MAX = 3600
ACCOUNTS = 1_000
TOP_UP_MICROS = 10**12  # each account: far more than 100,000 hour-long calls cost
ITERATIONS_MAX = 1_000_000
SECONDS_MAX = 600
LIMITS = CoreLimits()


# ---------------------------------------------------------------- the plans


def make_prefixes(count: int, rng: random.Random) -> list[str]:
    """count distinct digit strings of lengths 2..8, first digit 1-9 (E.164 country codes)."""
    chosen: dict[str, None] = {}
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        assert attempts <= 100 * count, "could not draw enough distinct prefixes"
        [length] = rng.choices(PREFIX_LENGTHS, PREFIX_WEIGHTS)
        prefix = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=length - 1))
        chosen.setdefault(prefix)
    return list(chosen)


def sixty_one(price_micros: int) -> tuple[Tier, ...]:
    """"60/1": the first minute billed whole, then per second; price per 60 s."""
    return (Tier(0, price_micros, 60, 60), Tier(60, price_micros, 60, 1))


def make_prefix_plan(prefixes: list[str], rng: random.Random) -> TariffPlan:
    rates = []
    for prefix in prefixes:
        peak = rng.randrange(1_000, 200_001)  # micros per minute
        off_peak = rng.randrange(500, peak + 1)
        fee = rng.randrange(10_000, 100_001) if rng.random() < 0.1 else 0
        for band, price in (("peak", peak), ("", off_peak)):
            rates.append(Rate(VOICE, Unit.SECONDS, 0, 0, 0, destination_prefix=prefix, time_band=band,
                              connect_fee_micros=fee, tiers=sixty_one(price)))
    return TariffPlan("prefixes", tuple(rates), time_zone=ZONE, time_bands=(PEAK, WEEKEND))


V1_PLAN = TariffPlan("v1", (
    Rate(VOICE, Unit.SECONDS, 10_000, 60, 1),
    Rate(2, Unit.BYTES, 2_000, 1_000_000, 100_000),
    Rate(3, Unit.EVENTS, 1_000, 1, 1),
))


# ---------------------------------------------------------------- the usages


class Workload:
    """N usages: number, start instant (ms), duration (s), whether a band changes during it."""

    def __init__(self, n: int, prefixes: list[str], index: PlanIndex, crossing_share: float,
                 rng: random.Random) -> None:
        self.numbers: list[str] = []
        self.starts: list[int] = []
        self.seconds: list[int] = []
        for _ in range(n):
            prefix = rng.choice(prefixes)
            self.numbers.append(prefix + "".join(rng.choices("0123456789", k=NUMBER_DIGITS - len(prefix))))
            if rng.random() < crossing_share:
                # A weekday call started in the last hour of peak that runs past 18:00.
                day = rng.randrange(5)
                second = rng.randrange(17 * 3600 + 1, 18 * 3600)
                duration = rng.randint(18 * 3600 - second + 1, CALL_S_MAX)
            else:
                day, second, duration = 0, rng.randrange(WEEK_S), rng.randint(1, CALL_S_MAX)
            self.starts.append(WEEK_START_MS + (day * 86_400 + second) * 1000 + rng.randrange(1000))
            self.seconds.append(duration)
        band_at = index.band_at
        self.bands = [band_at(t) for t in self.starts]
        self.changes = [band_at(t + d * 1000) != b for t, d, b in zip(self.starts, self.seconds, self.bands)]
        self.peak_to_off = sum(1 for t, d, b in zip(self.starts, self.seconds, self.bands)
                               if b == "peak" and band_at(t + d * 1000) != "peak")

    def debits(self, request_prefix: str, count: int) -> list[ops.Debit]:
        """Direct debits of the first count usages: each ends at start + duration
        (the shard's clock then), so it is rated from its start as the pricer step is."""
        return [ops.Debit(tenant=ops.DEFAULT_TENANT, subscriber_id=subscriber(i), request_id=f"{request_prefix}{i}",
                          reservation_id="", rating_group=VOICE, used_units=self.seconds[i], final=False,
                          destination=self.numbers[i])
                for i in range(count)]

    def end_ms(self, i: int) -> int:
        return self.starts[i] + self.seconds[i] * 1000


def subscriber(i: int) -> str:
    return f"sub-{i % ACCOUNTS:04d}"


# ---------------------------------------------------------------- measuring


class Series:
    """One step's figures: per-op means of untimed batches, per-op times of timed ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batch_ns_per_op: list[float] = []
        self.histogram = HdrHistogram(1, 10_000_000_000, 3)  # ns
        self.sub_histograms: dict[str, HdrHistogram] = {}
        self.ops = 0
        self.gen2_pauses_ns: list[int] = []

    def record_ops(self, durations: list[int], keys: list[str] | None = None) -> None:
        for position, value in enumerate(durations):
            value = max(1, value)
            self.histogram.record_value(value)
            if keys is not None:
                key = keys[position]
                if key not in self.sub_histograms:
                    self.sub_histograms[key] = HdrHistogram(1, 10_000_000_000, 3)
                self.sub_histograms[key].record_value(value)

    @staticmethod
    def _percentiles(histogram: HdrHistogram) -> dict:
        if not histogram.get_total_count():
            return {}
        figures = {f"p{p:g}": round(histogram.get_value_at_percentile(p) / 1000, 2) for p in (50, 90, 99, 99.9)}
        figures["max"] = round(histogram.get_max_value() / 1000, 2)
        figures["count"] = histogram.get_total_count()
        return figures

    def median_us(self) -> float:
        return statistics.median(self.batch_ns_per_op) / 1000 if self.batch_ns_per_op else float("nan")

    def report(self) -> dict:
        means = sorted(self.batch_ns_per_op)
        figures = {"ops": self.ops, "batches": len(means)}
        if means:
            p99 = means[min(len(means) - 1, int(0.99 * len(means)))]
            figures["batch_us_per_op"] = {"median": round(statistics.median(means) / 1000, 2),
                                          "p99": round(p99 / 1000, 2), "min": round(means[0] / 1000, 2)}
            figures["ops_per_s_at_median"] = round(1e9 / statistics.median(means))
        figures["per_op_us"] = self._percentiles(self.histogram)
        for key, histogram in sorted(self.sub_histograms.items()):
            figures[f"per_op_us_{key}"] = self._percentiles(histogram)
        figures["gc_gen2_collections"] = len(self.gen2_pauses_ns)
        figures["gc_gen2_pause_ms_max"] = round(max(self.gen2_pauses_ns, default=0) / 1e6, 1)
        return figures


class Gen2Pauses:
    """The full (generation 2) collections during a step and how long each took."""

    def __init__(self) -> None:
        self.pauses_ns: list[int] = []
        self._started = 0

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter_ns()
        elif self._started:
            self.pauses_ns.append(time.perf_counter_ns() - self._started)
            self._started = 0


def timer_overhead_ns(samples: int = 20_000) -> int:
    """What timing one operation alone costs (two perf_counter_ns and an append)."""
    now = time.perf_counter_ns
    durations = []
    append = durations.append
    for _ in range(samples):
        started = now()
        append(now() - started)
    return int(statistics.median(durations))


def batches(total: int, batch: int):
    for first in range(0, total, batch):
        yield first, min(total, first + batch)


def run_step(series: list[Series], bodies, total: int, batch: int, seconds: float,
             keys: list[str] | None = None, after=None) -> None:
    """Run each body over the same batches, interleaved, until total ops or seconds.

    A body(first, end, timed) runs operations [first, end); untimed it returns
    nothing (the batch is timed around it), timed it returns each op's ns.
    after(position), if given, runs after the body at that position, outside the timing.
    """
    gc.collect()
    pauses = Gen2Pauses()
    gc.callbacks.append(pauses)
    now = time.perf_counter_ns
    deadline = time.monotonic() + seconds
    for number, (first, end) in enumerate(batches(total, batch)):
        timed = number % 2 == 1
        for position, (each, body) in enumerate(zip(series, bodies)):
            started = now()
            durations = body(first, end, timed)
            elapsed = now() - started
            if timed:
                each.record_ops(durations, keys[first:end] if keys else None)
            else:
                each.batch_ns_per_op.append(elapsed / (end - first))
            each.ops += end - first
            if after is not None:
                after(position)
        if time.monotonic() >= deadline:
            break
    gc.callbacks.remove(pauses)
    for each in series:  # interleaved: the pauses are the step's, shared
        each.gen2_pauses_ns = pauses.pauses_ns


# ---------------------------------------------------------------- the steps


def select_body(index: PlanIndex, work: Workload):
    select, band_at, numbers, starts = index.select, index.band_at, work.numbers, work.starts
    now = time.perf_counter_ns

    def body(first: int, end: int, timed: bool):
        if not timed:
            for i in range(first, end):
                select(VOICE, numbers[i], "", band_at(starts[i]))
            return None
        durations = []
        append = durations.append
        for i in range(first, end):
            started = now()
            select(VOICE, numbers[i], "", band_at(starts[i]))
            append(now() - started)
        return durations
    return body


def price_body(index: PlanIndex, work: Workload, charged: list[int]):
    numbers, starts, seconds = work.numbers, work.starts, work.seconds
    now = time.perf_counter_ns

    def body(first: int, end: int, timed: bool):
        if not timed:
            for i in range(first, end):
                t = starts[i]
                charged[i] = Pricer(index, Usage(VOICE, numbers[i]), t).charge(0, Fraction(0), seconds[i], t,
                                                                              t).charged_micros
            return None
        durations = []
        append = durations.append
        for i in range(first, end):
            started = now()
            t = starts[i]
            charged[i] = Pricer(index, Usage(VOICE, numbers[i]), t).charge(0, Fraction(0), seconds[i], t,
                                                                          t).charged_micros
            append(now() - started)
        return durations
    return body


def debit_body(state: ShardState, debits: list[ops.Debit], ends: list[int], replies: list):
    apply = state.apply
    now = time.perf_counter_ns

    def body(first: int, end: int, timed: bool):
        if not timed:
            for i in range(first, end):
                replies[i] = apply(debits[i], ends[i])
            return None
        durations = []
        append = durations.append
        for i in range(first, end):
            started = now()
            replies[i] = apply(debits[i], ends[i])
            append(now() - started)
        return durations
    return body


def shard_with(plan: TariffPlan, at_ms: int) -> tuple[ShardState, float]:
    """A shard holding the plan and ACCOUNTS topped-up accounts on it; the ms PutTariff took."""
    state = ShardState(0)
    started = time.perf_counter()
    reply = state.apply(ops.PutTariff(plan), at_ms)
    put_ms = (time.perf_counter() - started) * 1000
    assert reply.result == Result.SUCCESS, reply
    for i in range(ACCOUNTS):
        name = subscriber(i)
        assert state.apply(ops.CreateAccount(ops.DEFAULT_TENANT, name, f"c-{i}", "EUR", 0, plan.tariff_plan_id),
                           at_ms).result == Result.SUCCESS
        assert state.apply(ops.TopUp(ops.DEFAULT_TENANT, name, f"t-{i}", TOP_UP_MICROS),
                           at_ms).result == Result.SUCCESS
    state.take_writes()
    return state, put_ms


def first_debit_ms(state: ShardState, number: str, at_ms: int) -> tuple[float, int]:
    """One debit before measuring: the shard builds its PlanIndex for the plan on first use."""
    started = time.perf_counter()
    reply = state.apply(ops.Debit(ops.DEFAULT_TENANT, subscriber(0), "warm-up", "", VOICE, 60, False,
                                  destination=number), at_ms)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert reply.result == Result.SUCCESS, reply
    state.take_writes()
    return elapsed_ms, reply.charged_micros


def conservation(state: ShardState, charged_total: int) -> bool:
    """Top-ups - charges == the sum of balances, from the replies alone."""
    balances = sum(account.balance_micros for account in state.accounts.values())
    return balances == ACCOUNTS * TOP_UP_MICROS - charged_total


def profile(name: str, run, ops_count: int, top: int, top_cumulative: int) -> dict:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = []
    for (path, line, function), (_, calls, tottime, cumtime, _) in stats.items():
        where = os.path.relpath(path, REPO) if path.startswith(str(REPO)) else os.path.basename(path)
        rows.append({"function": f"{where}:{line}({function})" if line else function, "calls_per_op":
                     round(calls / ops_count, 2), "self_us_per_op": round(tottime / ops_count * 1e6, 2),
                     "cumulative_us_per_op": round(cumtime / ops_count * 1e6, 2)})
    rows.sort(key=lambda row: -row["self_us_per_op"])
    total = sum(row["self_us_per_op"] for row in rows)
    return {"step": name, "ops": ops_count, "profiled_us_per_op": round(total, 2), "top_self": rows[:top],
            "top_cumulative": sorted(rows, key=lambda row: -row["cumulative_us_per_op"])[:top_cumulative]}


# ---------------------------------------------------------------- output


def table(report: dict) -> str:
    lines = []
    plan, build = report["plan"], report["build"]
    lines.append(f"rating benchmark: {plan['rates']:,} rates ({plan['prefixes']:,} prefixes, lengths "
                 f"{plan['prefix_lengths']}), {plan['connect_fee_prefixes']:,} with a connect fee, bands "
                 f"{plan['bands']} in {plan['time_zone']}; python {report['python']}, {report['cpus']} cpus")
    lines.append(f"  plan objects            {build['plan_mib']:8.1f} MiB   ({build['plan_bytes_per_rate']} B/rate)")
    lines.append(f"  PlanIndex(plan) build   {build['index_build_ms']:8.1f} ms    memory {build['index_mib']:.1f} MiB "
                 f"({build['index_bytes_per_rate']} B/rate)")
    lines.append(f"  PutTariff in a shard    {build['put_tariff_ms']:8.1f} ms    (validation of every rate; v1 plan: "
                 f"{build['put_tariff_v1_ms']:.2f} ms)")
    lines.append(f"  first debit in a shard  {build['first_debit_ms']:8.1f} ms    (builds the shard's PlanIndex; v1: "
                 f"{build['first_debit_v1_ms']:.2f} ms)")
    work = report["workload"]
    lines.append(f"  usages: {work['usages']:,}, band change during the call {work['band_change_share']:.1%} "
                 f"(peak->off-peak {work['peak_to_off_peak_share']:.1%}); timer cost per timed op "
                 f"{report['timer_overhead_ns']} ns (in per-op figures, not in batch figures)")
    lines.append("")
    header = (f"  {'step (us per operation)':38} {'ops':>8} {'batch med':>10} {'batch p99':>10} {'op p50':>8} "
              f"{'op p99':>8} {'op p99.9':>9} {'op max':>9}  {'gen2 gc (max ms)':>16}")
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for key, label in (("select", "2  select (band_at + longest prefix)"),
                       ("price", "3  Pricer(...).charge, prefix plan"),
                       ("price_v1", "3' Pricer(...).charge, v1 plan"),
                       ("debit", "4  ShardState.apply(Debit), prefix"),
                       ("debit_v1", "4' ShardState.apply(Debit), v1 plan")):
        step = report["steps"][key]
        batch, per_op = step.get("batch_us_per_op", {}), step["per_op_us"]
        lines.append(f"  {label:38} {step['ops']:>8,} {batch.get('median', float('nan')):>10.2f} "
                     f"{batch.get('p99', float('nan')):>10.2f} {per_op.get('p50', 0):>8.2f} "
                     f"{per_op.get('p99', 0):>8.2f} "
                     f"{per_op.get('p99.9', 0):>9.2f} {per_op.get('max', 0):>9.1f}  "
                     f"{step['gc_gen2_collections']:>6} ({step['gc_gen2_pause_ms_max']:>6.1f})")
    for key, label in (("price", "3 "), ("debit", "4 ")):
        step = report["steps"][key]
        for variant in ("band_change", "one_band"):
            figures = step.get(f"per_op_us_{variant}")
            if figures:
                lines.append(f"     {label}{variant:>11}: op p50 {figures['p50']:.2f}  p99 {figures['p99']:.2f}  "
                             f"({figures['count']:,} ops)")
    ratios = report["ratios"]
    lines.append("")
    lines.append(f"  prefix plan / v1 plan (median of per-batch ratios): select+price "
                 f"{ratios['price_over_v1']:.2f}x, shard debit {ratios['debit_over_v1']:.2f}x")
    lines.append(f"  shard overhead beyond rating (debit - price): prefix {ratios['shard_minus_price_us']:.2f} us, "
                 f"v1 {ratios['shard_minus_price_v1_us']:.2f} us")
    checks = report["checks"]
    lines.append(f"  checks: {', '.join(f'{k} {v}' for k, v in checks.items())}")
    for found in report.get("profiles", []):
        lines.append("")
        lines.append(f"  cProfile of {found['step']} ({found['ops']:,} ops, {found['profiled_us_per_op']} us/op "
                     f"under the profiler), by self time:")
        for row in found["top_self"]:
            lines.append(f"    {row['self_us_per_op']:7.2f} self {row['cumulative_us_per_op']:8.2f} cum "
                         f"{row['calls_per_op']:6.2f} calls/op  {row['function']}")
        engine = [row for row in found["top_cumulative"] if row["function"].startswith("grid/")]
        lines.append("    the engine's functions by cumulative time (us/op): " + ", ".join(
            f"{row['function'].split('(')[-1].rstrip(')')} {row['cumulative_us_per_op']:.1f}" for row in engine))
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000, help="operations per step (default 100,000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="bound on each step's time (default 20)")
    parser.add_argument("--batch", type=int, default=1_000, help="operations per timed batch")
    parser.add_argument("--prefixes", type=int, default=50_000, help="destination prefixes (2 rates each)")
    parser.add_argument("--crossing-share", type=float, default=0.1,
                        help="share of calls started in the last hour of a weekday's peak that run past 18:00")
    parser.add_argument("--seed", type=int, default=20240304)
    parser.add_argument("--profile-above-us", type=float, default=20.0,
                        help="profile steps slower than this per op (median); negative: profile every step")
    parser.add_argument("--profile-ops", type=int, default=5_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="print one JSON object on stdout (table to stderr), or write it to PATH")
    args = parser.parse_args()
    assert 0 < args.iterations <= ITERATIONS_MAX, f"--iterations must be in (0, {ITERATIONS_MAX}]"
    assert 0 < args.seconds <= SECONDS_MAX, f"--seconds must be in (0, {SECONDS_MAX}]"
    assert 0 < args.batch <= args.iterations
    assert 0 < 2 * args.prefixes <= LIMITS.rates_per_plan_max, "two rates per prefix must fit rates_per_plan_max"
    assert 0 <= args.crossing_share <= 1
    out = sys.stderr if args.json == "-" else sys.stdout
    started_run = time.monotonic()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # 1. the plan, its index, its memory
    rng = random.Random(args.seed)
    prefixes = make_prefixes(args.prefixes, rng)
    gc.collect()
    tracemalloc.start()
    plan = make_prefix_plan(prefixes, random.Random(args.seed + 1))
    plan_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    started = time.perf_counter()
    index = PlanIndex(plan)
    index_build_ms = (time.perf_counter() - started) * 1000
    del index
    gc.collect()
    tracemalloc.start()
    index = PlanIndex(plan)
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    v1_index = PlanIndex(V1_PLAN)
    say(f"plan: {len(plan.rates):,} rates; PlanIndex built in {index_build_ms:.0f} ms")

    work = Workload(args.iterations, prefixes, index, args.crossing_share, random.Random(args.seed + 2))
    n = args.iterations
    keys = ["band_change" if change else "one_band" for change in work.changes]

    # 2. selection only
    run_step([Series("warm")], [select_body(index, work)], min(n, args.batch), args.batch, args.seconds)
    select = Series("select")
    run_step([select], [select_body(index, work)], n, args.batch, args.seconds)
    say(f"select: {select.median_us():.2f} us/op")

    # 3. select + price, prefix plan and v1 plan interleaved
    price_charged, price_v1_charged = [0] * n, [0] * n
    run_step([Series("warm"), Series("warm")], [price_body(index, work, price_charged),
                                                price_body(v1_index, work, price_v1_charged)],
             min(n, args.batch), args.batch, args.seconds)
    price, price_v1 = Series("price"), Series("price_v1")
    run_step([price, price_v1], [price_body(index, work, price_charged), price_body(v1_index, work, price_v1_charged)],
             n, args.batch, args.seconds, keys)
    say(f"price: {price.median_us():.2f} us/op, v1 {price_v1.median_us():.2f} us/op")

    # 4. direct debits through the shard state machine
    setup_ms = WEEK_START_MS - 86_400_000
    state, put_ms = shard_with(plan, setup_ms)
    state_v1, put_v1_ms = shard_with(V1_PLAN, setup_ms)
    warm_ms, warm_charged = first_debit_ms(state, work.numbers[0], setup_ms + 3_600_000)
    warm_v1_ms, warm_v1_charged = first_debit_ms(state_v1, work.numbers[0], setup_ms + 3_600_000)
    debits = work.debits("d-", n)
    ends = [work.end_ms(i) for i in range(n)]
    debit_replies, debit_v1_replies = [None] * n, [None] * n
    debit, debit_v1 = Series("debit"), Series("debit_v1")
    shards = (state, state_v1)
    # The shard shell hands each batch's writes to the store: done after each batch, outside the timing.
    run_step([debit, debit_v1], [debit_body(state, debits, ends, debit_replies),
                                 debit_body(state_v1, debits, ends, debit_v1_replies)],
             n, args.batch, args.seconds, keys, after=lambda number: shards[number].take_writes())
    say(f"debit: {debit.median_us():.2f} us/op, v1 {debit_v1.median_us():.2f} us/op")

    # checks: every debit succeeded and charged what the pricer says; conservation
    done = debit.ops
    both = min(done, price.ops)

    def charged_of(reply) -> int:
        return reply.charged_micros if getattr(reply, "result", None) == Result.SUCCESS else -1

    debit_charged = [charged_of(reply) for reply in debit_replies[:done]]
    debit_v1_charged = [charged_of(reply) for reply in debit_v1_replies[:done]]
    mismatches = sum(1 for i in range(both) if debit_charged[i] != price_charged[i])
    mismatches += sum(1 for i in range(min(done, price_v1.ops)) if debit_v1_charged[i] != price_v1_charged[i])
    v1_rate = V1_PLAN.rate_for(VOICE)
    v1_wrong = sum(1 for i in range(done)
                   if debit_v1_charged[i] != rating.cost(v1_rate, work.seconds[i]).charged_micros)
    failed = sum(1 for c in debit_charged if c < 0) + sum(1 for c in debit_v1_charged if c < 0)
    audit_ok = (conservation(state, sum(debit_charged[:done]) + warm_charged)
                and conservation(state_v1, sum(debit_v1_charged[:done]) + warm_v1_charged))
    sample = range(0, select.ops, max(1, select.ops // 2_000))
    wrong_prefix = sum(1 for i in sample
                       if not work.numbers[i].startswith(index.select(VOICE, work.numbers[i], "",
                                                                      work.bands[i]).destination_prefix))
    checks = {
        "debits_ok": "yes" if failed == 0 else f"NO ({failed} failed)",
        "shard_charged_as_pricer": "yes" if mismatches == 0 else f"NO ({mismatches} differ)",
        "v1_charged_as_closed_form": "yes" if v1_wrong == 0 else f"NO ({v1_wrong} differ)",
        "selected_prefix_matches": "yes" if wrong_prefix == 0 else f"NO ({wrong_prefix} of {len(sample)})",
        "conservation_audit": "ok" if audit_ok else "FAILED",
    }
    ok = all(value in ("yes", "ok") for value in checks.values())

    def ratio(a: Series, b: Series) -> float:
        pairs = [x / y for x, y in zip(a.batch_ns_per_op, b.batch_ns_per_op) if y]
        return round(statistics.median(pairs), 3) if pairs else float("nan")

    steps = {"select": select, "price": price, "price_v1": price_v1, "debit": debit, "debit_v1": debit_v1}
    report = {
        "benchmark": "rating cost per operation, 50,000-prefix plan",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seed": args.seed,
        "iterations": n,
        "seconds_per_step": args.seconds,
        "batch": args.batch,
        "plan": {
            "prefixes": len(prefixes), "rates": len(plan.rates),
            "prefix_lengths": {length: sum(1 for p in prefixes if len(p) == length) for length in PREFIX_LENGTHS},
            "connect_fee_prefixes": sum(1 for rate in plan.rates if rate.connect_fee_micros) // 2,
            "time_zone": ZONE, "bands": [band.name for band in plan.time_bands],
        },
        "workload": {
            "usages": n, "band_change_share": round(sum(work.changes) / n, 4),
            "peak_to_off_peak_share": round(work.peak_to_off / n, 4),
        },
        "timer_overhead_ns": timer_overhead_ns(),
        "build": {
            "plan_mib": round(plan_bytes / 2**20, 2), "plan_bytes_per_rate": plan_bytes // len(plan.rates),
            "index_build_ms": round(index_build_ms, 1), "index_mib": round(index_bytes / 2**20, 2),
            "index_bytes_per_rate": index_bytes // len(plan.rates),
            "put_tariff_ms": round(put_ms, 1), "put_tariff_v1_ms": round(put_v1_ms, 3),
            "first_debit_ms": round(warm_ms, 1), "first_debit_v1_ms": round(warm_v1_ms, 3),
        },
        "steps": {name: series.report() for name, series in steps.items()},
        "ratios": {
            "price_over_v1": ratio(price, price_v1),
            "debit_over_v1": ratio(debit, debit_v1),
            "shard_minus_price_us": round(debit.median_us() - price.median_us(), 2),
            "shard_minus_price_v1_us": round(debit_v1.median_us() - price_v1.median_us(), 2),
        },
        "checks": checks,
    }
    report["command"] = " ".join([sys.executable, os.path.relpath(__file__, os.getcwd()), *sys.argv[1:]])

    # profiles of the slow steps (after measuring: the profiler slows what it watches)
    profiles = []
    if not args.no_profile:
        count = min(args.profile_ops, n)
        slow = [name for name, series in steps.items()
                if args.profile_above_us < 0 or series.median_us() > args.profile_above_us]
        scratch = [0] * n
        for name in slow:
            if name == "select":
                run = lambda: select_body(index, work)(0, count, False)  # noqa: E731
            elif name in ("price", "price_v1"):
                chosen = index if name == "price" else v1_index
                run = lambda chosen=chosen: price_body(chosen, work, scratch)(0, count, False)  # noqa: E731
            else:
                shard = state if name == "debit" else state_v1
                fresh = work.debits(f"p-{name}-", count)
                body = debit_body(shard, fresh, ends, [None] * count)
                run = lambda body=body: body(0, count, False)  # noqa: E731
            profiles.append(profile(name, run, count, 12, 25))
    if profiles:
        report["profiles"] = profiles
    report["run_s"] = round(time.monotonic() - started_run, 1)

    print(table(report), file=out)
    print(f"  run took {report['run_s']} s", file=out)
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
