"""The data plane in one run: unary through a front door and direct to the
shards, ChargeBatch at 100 and 1,000 operations a message, each against the
same no-op grpc.aio server driven by the same client, with CPU per operation
in every process (front door, each shard, the client).

One `grid serve` (embedded Ray, real synced RocksDB) and one no-op server run
as their own processes on 127.0.0.1; this process is the client (uvloop,
grpc.aio). Direct calls go to the shard that owns the subscriber's slot, by
the map GetShardMap answers. Every phase is bounded in time and count; the
run ends with a conservation check of every balance and the grid's audit.

    .venv/bin/python load_tests/bench_dataplane.py --seconds 5
"""

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time

import grpc
import psutil
import uvloop
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_unary import FUNDS_MICROS, PAIRS_MAX, RATING_GROUP, _audit, ceiling_and_grid  # noqa: E402

from grid.routing import slot_of  # noqa: E402

BATCH_MESSAGES_MAX = 100_000  # a bound on every batch phase, whatever --seconds says


class Processes:
    """CPU seconds of the grid's processes (front door, shards) and of this client."""

    def __init__(self, grid_target: str) -> None:
        port = int(grid_target.rsplit(":", 1)[1])
        self.front_door = next(p for p in psutil.process_iter(["pid"]) if _listens(p, port))
        session = os.getsid(self.front_door.pid)  # `grid serve` runs in a session of its own
        self.shards = sorted((p for p in psutil.process_iter(["pid", "cmdline"])
                              if "ShardActor" in " ".join(p.info["cmdline"] or []) and _session(p) == session),
                             key=lambda p: p.pid)
        self.client = psutil.Process()

    def cpu(self) -> dict:
        def seconds(process) -> float:
            try:
                times = process.cpu_times()
                return times.user + times.system
            except psutil.Error:
                return 0.0

        return {"front_door": seconds(self.front_door), "client": seconds(self.client),
                **{f"shard_{i}": seconds(p) for i, p in enumerate(self.shards)}}


def _session(process) -> int:
    try:
        return os.getsid(process.pid)
    except OSError:
        return -1


def _listens(process, port: int) -> bool:
    try:
        return any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in process.net_connections())
    except psutil.Error:
        return False


def cpu_per_operation(before: dict, after: dict, operations: int) -> dict:
    return {name: round(1e6 * (after[name] - before[name]) / max(1, operations), 1) for name in after}


async def shard_stubs(grid_target: str, channels: list) -> tuple[pb.GetShardMapResponse, dict]:
    """The map, and a stub per shard on its public listener."""
    front = grpc.aio.insecure_channel(grid_target)
    channels.append(front)
    shard_map = await pb_grpc.ChargingServiceStub(front).GetShardMap(pb.GetShardMapRequest(), timeout=10)
    stubs = {}
    for shard in shard_map.shards:
        channel = grpc.aio.insecure_channel(shard.address)
        channels.append(channel)
        stubs[shard.shard_id] = pb_grpc.ChargingServiceStub(channel)
    return shard_map, stubs


def owner_of(shard_map: pb.GetShardMapResponse):
    owners = {}
    for shard in shard_map.shards:
        for r in shard.slot_ranges:
            for slot in range(r.first, r.last + 1):
                owners[slot] = shard.shard_id
    return lambda subscriber: owners[slot_of(shard_map.tenant, subscriber, shard_map.slots)]


async def unary(stub_for, subscribers: list[str], seconds: float, concurrency: int, label: str,
                charged: dict) -> dict:
    """Closed-loop Reserve then final Debit; stub_for(subscriber) picks where each goes."""
    pairs = 0
    warm_until = time.monotonic() + min(2.0, seconds / 4)
    stop_at = warm_until + seconds

    async def worker(index: int) -> None:
        nonlocal pairs
        subscriber = subscribers[index % len(subscribers)]
        stub = stub_for(subscriber)
        n = 0
        while time.monotonic() < stop_at and pairs < PAIRS_MAX:
            n += 1
            hold = await stub.Reserve(pb.ReserveRequest(
                request_id=f"{label}-{index}-{n}-r", subscriber_id=subscriber, session_id=f"s{index}",
                rating_group=RATING_GROUP, requested_units=60), timeout=10)
            used = await stub.Debit(pb.DebitRequest(
                request_id=f"{label}-{index}-{n}-d", subscriber_id=subscriber,
                reservation_id=hold.reservation_id, used_units=42, final=True), timeout=10)
            charged[subscriber] = charged.get(subscriber, 0) + used.charged_micros
            if time.monotonic() >= warm_until:
                pairs += 1

    began = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    measured_s = time.monotonic() - max(began, warm_until)
    return {"calls_per_s": round(2 * pairs / measured_s, 1), "calls": 2 * pairs}


async def batches(stub_for, subscribers: list[str], seconds: float, per_message: int, in_flight: int, label: str,
                  charged: dict | None) -> dict:
    """ChargeBatch of per_message durable direct debits (1 event... 1 s of RG 1 each)."""
    done = 0
    messages = 0
    stop_at = time.monotonic() + seconds

    async def worker(index: int) -> None:
        nonlocal done, messages
        n = 0
        while time.monotonic() < stop_at and messages < BATCH_MESSAGES_MAX:
            n += 1
            by_stub: dict = {}
            for k in range(per_message):
                subscriber = subscribers[(index * per_message + k) % len(subscribers)]
                by_stub.setdefault(id(stub_for(subscriber)), (stub_for(subscriber), []))[1].append(
                    pb.ChargeRequest(correlation_tag=k, debit=pb.DebitRequest(
                        request_id=f"{label}-{index}-{n}-{k}", subscriber_id=subscriber,
                        rating_group=RATING_GROUP, used_units=1)))
            for stub, operations in by_stub.values():
                response = await stub.ChargeBatch(pb.ChargeBatchRequest(operations=operations), timeout=30)
                messages += 1
                for operation, reply in zip(operations, response.replies):
                    if charged is not None:
                        assert reply.WhichOneof("reply") == "debit", reply
                        charged[operation.debit.subscriber_id] = charged.get(operation.debit.subscriber_id, 0) + \
                            reply.debit.charged_micros
                done += len(operations)

    began = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(in_flight)))
    elapsed = time.monotonic() - began
    return {"operations_per_s": round(done / elapsed, 1), "operations": done, "messages": messages}


async def run(noop_target: str, grid_target: str, subscribers: list[str], args) -> dict:
    processes = Processes(grid_target)
    channels = []
    charged: dict = {}
    report: dict = {}
    try:
        noop_channel = grpc.aio.insecure_channel(noop_target)
        grid_channel = grpc.aio.insecure_channel(grid_target)
        channels += [noop_channel, grid_channel]
        noop, front = pb_grpc.ChargingServiceStub(noop_channel), pb_grpc.ChargingServiceStub(grid_channel)
        shard_map, stubs = await shard_stubs(grid_target, channels)
        owner = owner_of(shard_map)

        async def phase(name: str, coroutine_factory, operations_key: str):
            before = processes.cpu()
            result = await coroutine_factory()
            result["cpu_us_per_operation"] = cpu_per_operation(before, processes.cpu(), result[operations_key])
            report[name] = result
            print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)

        seconds, concurrency = args.seconds, args.concurrency
        await phase("unary_noop", lambda: unary(lambda s: noop, subscribers, seconds, concurrency, "n", {}), "calls")
        await phase("unary_front_door", lambda: unary(lambda s: front, subscribers, seconds, concurrency, "f",
                                                      charged), "calls")
        await phase("unary_direct", lambda: unary(lambda s: stubs[owner(s)], subscribers, seconds, concurrency, "d",
                                                  charged), "calls")
        for per_message in (100, 1000):
            await phase(f"batch_{per_message}_noop", lambda: batches(lambda s: noop, subscribers, seconds, per_message,
                                                                     args.batches_in_flight, f"bn{per_message}",
                                                                     None), "operations")
            await phase(f"batch_{per_message}_front_door", lambda: batches(
                lambda s: front, subscribers, seconds, per_message, args.batches_in_flight, f"bf{per_message}",
                charged), "operations")
            await phase(f"batch_{per_message}_direct", lambda: batches(
                lambda s: stubs[owner(s)], subscribers, seconds, per_message, args.batches_in_flight,
                f"bd{per_message}", charged), "operations")
    finally:
        for channel in channels:
            await channel.close()
    noop_calls = report["unary_noop"]["calls_per_s"]
    report["ratios"] = {
        "unary_front_door_over_noop": round(report["unary_front_door"]["calls_per_s"] / noop_calls, 3),
        "unary_direct_over_noop": round(report["unary_direct"]["calls_per_s"] / noop_calls, 3),
        **{f"batch_{n}_{where}_over_noop": round(report[f"batch_{n}_{where}"]["operations_per_s"]
                                                 / report[f"batch_{n}_noop"]["operations_per_s"], 3)
           for n in (100, 1000) for where in ("front_door", "direct")},
    }
    report["_charged"] = charged
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batches-in-flight", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    assert 0 < args.seconds <= 600, "--seconds must be in (0, 600]"
    uvloop.install()
    subscribers = [f"bench-{i}" for i in range(args.subscribers)]
    with ceiling_and_grid(args.shards, subscribers) as (noop_target, grid_target):
        report = asyncio.run(run(noop_target, grid_target, subscribers, args))
        charged = report.pop("_charged")
        audit_ok = _audit(grid_target, subscribers, {s: charged.get(s, 0) for s in subscribers})
    report.update({"benchmark": "data plane", "cpus": os.cpu_count(), "seconds": args.seconds,
                   "concurrency": args.concurrency, "shards": args.shards, "funds_micros": FUNDS_MICROS,
                   "conservation_audit": "ok" if audit_ok else "FAILED"})
    print(json.dumps(report, indent=2))
    return 0 if audit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
