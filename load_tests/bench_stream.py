"""Direct debits over one Charge stream: the grid against the no-op server's echo, one run.

Both servers run as their own processes on 127.0.0.1; one asyncio client keeps
`window` operations in flight over `streams` bidirectional streams (each on
its own channel) and sends a bounded number of debits to each server. Reported: operations per second for each,
their ratio, the result mix, and a conservation audit of the grid afterwards.

    .venv/bin/python load_tests/bench_stream.py --operations 20000 --window 4000
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

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_unary  # noqa: E402

OPERATIONS_MAX = 1_000_000
SECONDS_MAX = 300


async def streams(target: str, subscribers: list[str], operations: int, window: int, label: str,
                  count: int) -> dict:
    """`count` concurrent streams sharing the operations and the window."""
    started = time.perf_counter()
    parts = await asyncio.gather(*(
        stream(target, subscribers, operations // count, max(1, window // count), f"{label}{index}")
        for index in range(count)))
    elapsed_s = time.perf_counter() - started
    results: dict[str, int] = {}
    charged = {s: 0 for s in subscribers}
    for part in parts:
        for key, value in part["results"].items():
            results[key] = results.get(key, 0) + value
        for key, value in part["charged"].items():
            charged[key] += value
    done = sum(part["operations"] for part in parts)
    return {"operations_per_s": round(done / elapsed_s, 1), "operations": done, "streams": count,
            "seconds": round(elapsed_s, 2), "results": results, "charged": charged}


async def stream(target: str, subscribers: list[str], operations: int, window: int, label: str) -> dict:
    results: dict[str, int] = {}
    charged = {s: 0 for s in subscribers}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ChargingServiceStub(channel)
        slots = asyncio.Semaphore(window)
        sent_subscriber: dict[int, str] = {}

        async def requests():
            for tag in range(operations):
                await slots.acquire()
                subscriber = subscribers[tag % len(subscribers)]
                sent_subscriber[tag] = subscriber
                yield pb.ChargeRequest(correlation_tag=tag, debit=pb.DebitRequest(
                    request_id=f"{label}-{tag}", subscriber_id=subscriber, rating_group=bench_unary.RATING_GROUP,
                    used_units=1))

        started = time.perf_counter()
        call = stub.Charge(requests(), timeout=SECONDS_MAX)
        async for response in call:
            slots.release()
            kind = response.WhichOneof("reply")
            key = pb.Result.Name(response.debit.result) if kind == "debit" else kind
            results[key] = results.get(key, 0) + 1
            if kind == "debit":
                charged[sent_subscriber[response.correlation_tag]] += response.debit.charged_micros
        elapsed_s = time.perf_counter() - started
    return {"operations_per_s": round(operations / elapsed_s, 1), "operations": operations,
            "seconds": round(elapsed_s, 2), "results": results, "charged": charged}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=4_000)
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams, each on its own channel")
    args = parser.parse_args()
    assert 0 < args.operations <= OPERATIONS_MAX and 0 < args.window <= 10_000 and 1 <= args.streams <= 64
    uvloop.install()
    subscribers = [f"bench-{i}" for i in range(args.subscribers)]
    with bench_unary.ceiling_and_grid(args.shards, subscribers) as (noop_target, grid_target):
        ceiling = asyncio.run(streams(noop_target, subscribers, args.operations, args.window, "n", args.streams))
        measured = asyncio.run(streams(grid_target, subscribers, args.operations, args.window, "g", args.streams))
        audit_ok = bench_unary._audit(grid_target, subscribers, measured["charged"])
    report = {
        "benchmark": "Charge stream, direct debits",
        "cpus": os.cpu_count(), "window": args.window, "shards": args.shards,
        "noop": {k: v for k, v in ceiling.items() if k != "charged"},
        "grid": {k: v for k, v in measured.items() if k != "charged"},
        "grid_over_noop": round(measured["operations_per_s"] / ceiling["operations_per_s"], 3),
        "conservation_audit": "ok" if audit_ok else "FAILED",
    }
    print(json.dumps(report, indent=2))
    return 0 if audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
