"""Latency of a unary Reserve at half the grid's maximum rate, open loop.

One run: a provisioned `grid serve` (its own Ray, synced RocksDB) is first
driven closed-loop (bench_unary's generator) to find its maximum rate of
Reserve+Debit calls; then Reserve+Debit pairs arrive open-loop (Poisson, from
grid/storm/schedule.py) at half that call rate, and each Reserve's latency is
measured from its intended send time (so a generator or grid falling behind
shows, never hides). Ends with the conservation audit and the grid's own.

    .venv/bin/python load_tests/bench_latency.py --seconds 10
"""

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time

import grpc
import uvloop
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from hdrh.histogram import HdrHistogram

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_unary  # noqa: E402
from grid.storm import schedule  # noqa: E402

# Pairs in flight at once; past it an arrival is shed (counted), never queued.
IN_FLIGHT_MAX = 2_000


async def open_loop(target: str, subscribers: list[str], pairs_per_s: float, seconds: float) -> dict:
    reserve = HdrHistogram(1, 60_000_000, 3)
    debit = HdrHistogram(1, 60_000_000, 3)
    charged = {s: 0 for s in subscribers}
    results: dict[str, int] = {}
    shed = 0
    lag_max_s = 0.0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ChargingServiceStub(channel)
        in_flight: set[asyncio.Task] = set()

        async def pair(n: int, intended: float) -> None:
            subscriber = subscribers[n % len(subscribers)]
            hold = await stub.Reserve(pb.ReserveRequest(
                request_id=f"l-{n}-r", subscriber_id=subscriber, session_id=f"l{n}",
                rating_group=bench_unary.RATING_GROUP, requested_units=60), timeout=30)
            reserved_at = time.monotonic()
            reserve.record_value(max(1, int((reserved_at - intended) * 1e6)))
            used = await stub.Debit(pb.DebitRequest(
                request_id=f"l-{n}-d", subscriber_id=subscriber, reservation_id=hold.reservation_id,
                used_units=42, final=True), timeout=30)
            debit.record_value(max(1, int((time.monotonic() - reserved_at) * 1e6)))
            charged[subscriber] += used.charged_micros
            key = f"{pb.Result.Name(hold.result)}/{pb.Result.Name(used.result)}"
            results[key] = results.get(key, 0) + 1

        started = time.monotonic()
        for n, offset_s in enumerate(schedule.poisson(pairs_per_s, seconds, 10_000_000, seed=7)):
            intended = started + offset_s
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_max_s = max(lag_max_s, time.monotonic() - intended)
            if len(in_flight) >= IN_FLIGHT_MAX:
                shed += 1
                continue
            task = asyncio.get_running_loop().create_task(pair(n, intended))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*list(in_flight))
        elapsed_s = time.monotonic() - started
    return {
        "offered_pairs_per_s": round(pairs_per_s, 1), "achieved_pairs_per_s": round(sum(results.values()) / elapsed_s, 1),
        "reserve_latency_ms": {f"p{p}": reserve.get_value_at_percentile(p) / 1000 for p in (50, 90, 99, 99.9)},
        "debit_service_ms": {f"p{p}": debit.get_value_at_percentile(p) / 1000 for p in (50, 99)},
        "shed": shed, "generator_lag_max_ms": round(lag_max_s * 1000, 1), "results": results, "charged": charged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64, help="of the closed-loop maximum-rate phase")
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum rate, for the open loop")
    args = parser.parse_args()
    assert 0 < args.seconds <= 600 and 0 < args.fraction <= 1
    uvloop.install()
    subscribers = [f"bench-{i}" for i in range(args.subscribers)]
    with bench_unary.provisioned_grid(args.shards, subscribers) as target:
        maximum = asyncio.run(bench_unary.drive(target, subscribers, args.seconds, args.concurrency, "m"))
        rate = maximum["pairs_per_s"] * args.fraction
        measured = asyncio.run(open_loop(target, subscribers, rate, args.seconds))
        for subscriber, micros in maximum["charged"].items():
            measured["charged"][subscriber] += micros
        audit_ok = bench_unary._audit(target, subscribers, measured["charged"])
    report = {
        "benchmark": "unary Reserve latency at a fraction of the maximum rate, open loop",
        "cpus": os.cpu_count(), "fraction": args.fraction, "seconds": args.seconds,
        "maximum_calls_per_s": maximum["calls_per_s"],
        "open_loop": {k: v for k, v in measured.items() if k != "charged"},
        "reserve_p99_ms": measured["reserve_latency_ms"]["p99"],
        "conservation_audit": "ok" if audit_ok else "FAILED",
    }
    print(json.dumps(report, indent=2))
    return 0 if audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
