"""Data sessions through the grid against a no-op grpc.aio server, one run.

Each worker is a closed loop of whole data sessions (an SMF's PDU session):
CreateSession asking quota for 3 rating groups, `--updates` UpdateSessions
each reporting usage on every group and asking for more (the new grant
replaces the rest of the hold), then ReleaseSession with the final usage.
Both servers run as their own processes on 127.0.0.1 and are driven by the
same generator; reported: session requests per second for each and their
ratio, latency percentiles per request (HdrHistogram, microseconds; closed
loop), the result mix, and a conservation audit of every subscriber touched
(balance == funds - every charge replied, nothing left held).

With --policy-functions P, the plan gets a spend counter with 16 thresholds,
every subscriber is subscribed by one of P policy functions watching
WatchStatus, and the report adds the status notifications received and their
latency (arrival minus the shard's commit time, same machine clock).

    .venv/bin/python load_tests/bench_sessions.py --seconds 10 --concurrency 64
"""

import argparse
import asyncio
import json
import time

import grpc
import uvloop
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from hdrh.histogram import HdrHistogram

from bench_unary import _audit, ceiling_and_grid

RATING_GROUPS = (10, 20, 30)  # data (bytes), video (bytes), voice (seconds)
REQUESTS_MAX = 5_000_000  # a bound on every run, whatever --seconds says


def _units(requested: int, used: int) -> list:
    return [pb.MultipleUnitUsage(rating_group=group,
                                 requested_units=requested if group != 30 else min(requested, 60),
                                 used_units=used if group != 30 else used // 100_000)
            for group in RATING_GROUPS]


async def drive(target: str, subscribers: list[str], seconds: float, concurrency: int, updates: int,
                label: str) -> dict:
    histogram = HdrHistogram(1, 60_000_000, 3)
    results: dict[str, int] = {}
    charged = {s: 0 for s in subscribers}
    requests = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ChargingServiceStub(channel)
        warm_until = time.monotonic() + min(2.0, seconds / 4)
        stop_at = warm_until + seconds

        async def call(method, request) -> None:
            nonlocal requests
            measuring = time.monotonic() >= warm_until
            started = time.perf_counter_ns()
            reply = await method(request, timeout=10)
            elapsed_us = (time.perf_counter_ns() - started) // 1000
            for info in reply.multiple_unit_information:
                charged[request.subscriber_id] += info.charged_micros
                key = f"{type(request).__name__[:-7]}/{pb.Result.Name(info.result)}"
                results[key] = results.get(key, 0) + 1
            if measuring:
                requests += 1
                histogram.record_value(max(1, elapsed_us))

        async def worker(index: int) -> None:
            subscriber = subscribers[index % len(subscribers)]
            n = 0
            while time.monotonic() < stop_at and requests < REQUESTS_MAX:
                n += 1
                session = f"{label}-{index}-{n}"
                await call(stub.CreateSession, pb.CreateSessionRequest(
                    session_id=session, subscriber_id=subscriber, multiple_unit_usage=_units(10_000_000, 0)))
                for sequence in range(1, updates + 1):
                    await call(stub.UpdateSession, pb.UpdateSessionRequest(
                        session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence,
                        multiple_unit_usage=_units(10_000_000, 7_300_000)))
                await call(stub.ReleaseSession, pb.ReleaseSessionRequest(
                    session_id=session, subscriber_id=subscriber, invocation_sequence_number=updates + 1,
                    multiple_unit_usage=_units(0, 1_100_000)))

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        measured_s = time.monotonic() - max(began, warm_until)
    return {
        "requests_per_s": round(requests / measured_s, 1),
        "requests": requests,
        "latency_us": {f"p{p}": histogram.get_value_at_percentile(p) for p in (50, 90, 99, 99.9)},
        "results": results,
        "charged": charged,
    }


SPEND_STEP_MICROS = 100_000


def _provision_sessions(target: str, subscribers: list[str], policy_functions: int) -> None:
    from grid_client import ChargingClient

    counters = [{"counter_id": "spend", "spend": True, "period": pb.COUNTER_PERIOD_DAY, "base_status": "s0",
                 "thresholds": [{"at_least": SPEND_STEP_MICROS * k, "status": f"s{k}"} for k in range(1, 17)]}]
    with ChargingClient(target) as client:  # replaces the plan bench_unary provisioned (same accounts)
        client.put_tariff("bench", policy_counters=counters if policy_functions else (), rates=[
            {"rating_group": 10, "unit": pb.BYTES, "price_micros": 1_000, "rate_units": 1_000_000,
             "increment_units": 1_000},
            {"rating_group": 20, "unit": pb.BYTES, "price_micros": 500, "rate_units": 1_000_000,
             "increment_units": 1_000},
            {"rating_group": 30, "unit": pb.SECONDS, "price_micros": 1_000, "rate_units": 60, "increment_units": 1},
        ])
        for index, subscriber in enumerate(subscribers[:len(subscribers) if policy_functions else 0]):
            client.subscribe(subscriber, f"pcf-{index % policy_functions}", request_id=f"sub-{subscriber}")


async def _watch_policy(target: str, policy_functions: int, stop: asyncio.Event) -> dict:
    """Each policy function's WatchStatus stream until stop: notifications and latency."""
    from grid_client import AsyncChargingClient

    histogram = HdrHistogram(1, 600_000, 3)
    received = 0

    async def one(client_id: str) -> None:
        nonlocal received
        async with AsyncChargingClient(target) as client:
            async for notification in client.watch_status(client_id):
                histogram.record_value(max(1, time.time_ns() // 1_000_000 - notification.at_ms))
                received += 1

    tasks = [asyncio.create_task(one(f"pcf-{i}")) for i in range(policy_functions)]
    await stop.wait()
    await asyncio.sleep(1.0)  # notifications of the last charges (the watchers poll every 0.2 s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"notifications": received,
            "latency_ms": {f"p{p}": histogram.get_value_at_percentile(p) for p in (50, 90, 99, 99.9)}}


async def _drive_with_policy(target, subscribers, seconds, concurrency, updates, label, policy_functions) -> dict:
    stop = asyncio.Event()
    watching = asyncio.create_task(_watch_policy(target, policy_functions, stop))
    await asyncio.sleep(0.5)  # the watchers are connected before the load starts
    try:
        measured = await drive(target, subscribers, seconds, concurrency, updates, label)
    finally:
        stop.set()
    measured["policy"] = await watching
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--updates", type=int, default=3, help="updates per session between create and release")
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--policy-functions", type=int, default=0,
                        help="policy functions watching the subscribers' spend counters (0: none)")
    args = parser.parse_args()
    uvloop.install()
    subscribers = [f"sess-bench-{i}" for i in range(args.subscribers)]
    with ceiling_and_grid(args.shards, subscribers) as (noop_target, grid_target):
        _provision_sessions(grid_target, subscribers, args.policy_functions)
        ceiling = asyncio.run(drive(noop_target, subscribers, args.seconds, args.concurrency, args.updates, "noop"))
        if args.policy_functions:
            grid = asyncio.run(_drive_with_policy(grid_target, subscribers, args.seconds, args.concurrency,
                                                  args.updates, "grid", args.policy_functions))
        else:
            grid = asyncio.run(drive(grid_target, subscribers, args.seconds, args.concurrency, args.updates,
                                     "grid"))
        audit_ok = _audit(grid_target, subscribers, grid.pop("charged"))
    ceiling.pop("charged")
    report = {
        "noop": ceiling, "grid": grid,
        "ratio_grid_to_noop": round(grid["requests_per_s"] / ceiling["requests_per_s"], 3),
        "audit": "ok" if audit_ok else "FAILED",
        "settings": vars(args),
    }
    print(json.dumps(report, indent=2))
    return 0 if audit_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
