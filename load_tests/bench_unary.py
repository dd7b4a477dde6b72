"""Unary Reserve+Debit through the grid against a no-op grpc.aio server, one run.

Both servers run as their own processes on 127.0.0.1 (`grid serve` with its
embedded Ray and real, synced RocksDB; load_tests/noop_server.py) and are
driven by the same asyncio generator in this process: `concurrency` workers,
each a closed loop of Reserve then final Debit, for a bounded time and count.
Reported: pairs and calls per second for each, their ratio, latency
percentiles per call (HdrHistogram, microseconds; closed loop, so the
percentiles are those of served calls, not corrected for coordinated
omission), and a conservation audit of the grid's balances afterwards, with
the grid's own reconciliation of every shard's journal (grid audit).

    .venv/bin/python load_tests/bench_unary.py --seconds 10 --concurrency 64
"""

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import uvloop
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from hdrh.histogram import HdrHistogram

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "process"))
from server_process import ServerProcess, free_port  # noqa: E402

RATING_GROUP = 1
FUNDS_MICROS = 10**12
PAIRS_MAX = 5_000_000  # a bound on every run, whatever --seconds says


async def drive(target: str, subscribers: list[str], seconds: float, concurrency: int, label: str) -> dict:
    histogram = HdrHistogram(1, 60_000_000, 3)
    results: dict[str, int] = {}
    charged = {s: 0 for s in subscribers}
    pairs = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ChargingServiceStub(channel)
        warm_until = time.monotonic() + min(2.0, seconds / 4)
        stop_at = warm_until + seconds

        async def worker(index: int) -> None:
            nonlocal pairs
            subscriber = subscribers[index % len(subscribers)]
            n = 0
            while time.monotonic() < stop_at and pairs < PAIRS_MAX:
                n += 1
                measuring = time.monotonic() >= warm_until
                started = time.perf_counter_ns()
                hold = await stub.Reserve(pb.ReserveRequest(
                    request_id=f"{label}-{index}-{n}-r", subscriber_id=subscriber, session_id=f"s{index}",
                    rating_group=RATING_GROUP, requested_units=60), timeout=10)
                middle = time.perf_counter_ns()
                used = await stub.Debit(pb.DebitRequest(
                    request_id=f"{label}-{index}-{n}-d", subscriber_id=subscriber,
                    reservation_id=hold.reservation_id, used_units=42, final=True), timeout=10)
                ended = time.perf_counter_ns()
                charged[subscriber] += used.charged_micros
                key = f"{pb.Result.Name(hold.result)}/{pb.Result.Name(used.result)}"
                results[key] = results.get(key, 0) + 1
                if measuring:
                    pairs += 1
                    histogram.record_value(max(1, (middle - started) // 1000))
                    histogram.record_value(max(1, (ended - middle) // 1000))

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        measured_s = time.monotonic() - max(began, warm_until)
    return {
        "pairs_per_s": round(pairs / measured_s, 1),
        "calls_per_s": round(2 * pairs / measured_s, 1),
        "pairs": pairs,
        "latency_us": {f"p{p}": histogram.get_value_at_percentile(p) for p in (50, 90, 99, 99.9)},
        "results": results,
        "charged": charged,
    }


def _provision(target: str, subscribers: list[str]) -> None:
    from grid_client import ChargingClient

    with ChargingClient(target) as client:
        client.put_tariff("bench", [{"rating_group": RATING_GROUP, "unit": pb.SECONDS, "price_micros": 1_000,
                                      "rate_units": 1, "increment_units": 1}])
        for subscriber in subscribers:
            client.create_account(subscriber, "EUR", "bench", request_id=f"create-{subscriber}")
            client.top_up(subscriber, FUNDS_MICROS, request_id=f"fund-{subscriber}")


def _audit(target: str, subscribers: list[str], charged: dict) -> bool:
    from grid_client import ChargingClient, RetryPolicy

    ok = True
    # The grid's audit reads every shard's whole journal: hundreds of thousands of records after a run.
    with ChargingClient(target, retry=RetryPolicy(timeout_s=300)) as client:
        for subscriber in subscribers:
            balance = client.balance(subscriber)
            expected = FUNDS_MICROS - charged[subscriber]
            if balance.balance_micros != expected or balance.reserved_micros != 0:
                print(f"AUDIT FAILED {subscriber}: balance {balance.balance_micros} expected {expected}, "
                      f"held {balance.reserved_micros}")
                ok = False
        # The grid's own reconciliation of every shard's journal (grid audit).
        report = json.loads(client.audit().report_json)
        print(f"grid audit: ok={report['ok']} journal records {report['journal_records']}, "
              f"leakage {json.dumps(report['leakage'])}", file=sys.stderr)
        if not report["ok"]:
            print("GRID AUDIT FAILED: " + "; ".join(p for s in report["shards"] for p in s["problems"][:5]))
            ok = False
    return ok


@contextlib.contextmanager
def provisioned_grid(shards: int, subscribers: list[str], env: dict | None = None):
    """A provisioned `grid serve` on scratch data, killed whatever happens: yields its target."""
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as scratch:
        grid = ServerProcess(pathlib.Path(scratch) / "grid-data", shards=shards, env=env).start()
        try:
            _provision(grid.target, subscribers)
            yield grid.target
        finally:
            grid.kill()


@contextlib.contextmanager
def ceiling_and_grid(shards: int, subscribers: list[str]):
    """The no-op server and a provisioned `grid serve` (scratch data), both on
    127.0.0.1 as their own processes, ended whatever happens: yields their targets."""
    noop_port = free_port()
    noop = subprocess.Popen([sys.executable, str(HERE / "noop_server.py"), "--port", str(noop_port)],
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert "noop listening" in noop.stdout.readline().decode()
        with provisioned_grid(shards, subscribers) as grid_target:
            yield f"127.0.0.1:{noop_port}", grid_target
    finally:
        os.killpg(noop.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--durability-cost", action="store_true",
                        help="also drive a grid whose writes are not synced (GRID_UNSAFE_NO_SYNC) and report "
                             "synced/unsynced")
    args = parser.parse_args()
    assert 0 < args.seconds <= 600, "--seconds must be in (0, 600]"
    uvloop.install()
    subscribers = [f"bench-{i}" for i in range(args.subscribers)]
    with ceiling_and_grid(args.shards, subscribers) as (noop_target, grid_target):
        ceiling = asyncio.run(drive(noop_target, subscribers, args.seconds, args.concurrency, "n"))
        measured = asyncio.run(drive(grid_target, subscribers, args.seconds, args.concurrency, "g"))
        audit_ok = _audit(grid_target, subscribers, measured["charged"])
    unsynced = None
    if args.durability_cost:
        with provisioned_grid(args.shards, subscribers, env={"GRID_UNSAFE_NO_SYNC": "1"}) as unsynced_target:
            unsynced = asyncio.run(drive(unsynced_target, subscribers, args.seconds, args.concurrency, "u"))
            audit_ok = _audit(unsynced_target, subscribers, unsynced["charged"]) and audit_ok
    report = {
        "benchmark": "unary Reserve+Debit",
        "cpus": os.cpu_count(),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "shards": args.shards,
        "noop": {k: v for k, v in ceiling.items() if k != "charged"},
        "grid": {k: v for k, v in measured.items() if k != "charged"},
        "grid_over_noop": round(measured["calls_per_s"] / ceiling["calls_per_s"], 3),
        "conservation_audit": "ok" if audit_ok else "FAILED",
    }
    if unsynced is not None:
        report["grid_unsynced"] = {k: v for k, v in unsynced.items() if k != "charged"}
        report["synced_over_unsynced"] = round(measured["calls_per_s"] / unsynced["calls_per_s"], 3)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
