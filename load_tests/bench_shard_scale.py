"""A shard with a million idle accounts: memory per account and time back in service.

Builds one shard's RocksDB the way the grid does (ShardState applying
CreateAccount and TopUp operations, ShardStore committing each batch with a
synced write), then, in a fresh process each time, reopens it as a restarted
shard actor would (open the store, load every state record, restore the
state) and reports the seconds that took and the resident memory it added per
account. The accounts are created 30 days in the past and a sweep then forgets
their request ids (past the idempotency horizon): idle accounts, as a shard
holds most of them most of the time.

    .venv/bin/python load_tests/bench_shard_scale.py --accounts 1000000
"""

import argparse
import gc
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import psutil

from grid.domain import operations as ops
from grid.domain.outcomes import Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.storage.shard_store import ShardStore

ACCOUNTS_MAX = 5_000_000
BATCH = 10_000
DAY_MS = 86_400_000


def build(path: pathlib.Path, accounts: int) -> float:
    """Create the accounts; returns the seconds it took."""
    started = time.monotonic()
    store = ShardStore(path, 0)
    state = ShardState(0)
    now_ms = time.time_ns() // 1_000_000 - 30 * DAY_MS
    state.apply(ops.PutTariff(TariffPlan("idle", (Rate(1, Unit.SECONDS, 1_000, 60, 1),))), now_ms)
    store.commit(state.take_writes())
    for first in range(0, accounts, BATCH):
        batch = []
        for index in range(first, min(accounts, first + BATCH)):
            subscriber = f"sub-{index:09d}"
            batch.append(ops.CreateAccount(ops.DEFAULT_TENANT, subscriber, f"c-{index}", "EUR", 0, "idle", "t"))
            batch.append(ops.TopUp(ops.DEFAULT_TENANT, subscriber, f"f-{index}", 5_000_000, "t"))
        state.apply_batch(batch, now_ms)
        store.commit(state.take_writes())
    # Today's sweep forgets the month-old request ids, as a running shard's sweep would have.
    state.expire_due(time.time_ns() // 1_000_000)
    store.commit(state.take_writes())
    store.close()
    return time.monotonic() - started


def restart(path: pathlib.Path) -> dict:
    """In this (fresh) process: reopen the shard as a restarted actor would."""
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    started = time.monotonic()
    store = ShardStore(path, 0)
    state = ShardState.restore(0, store.load_records())
    restore_s = time.monotonic() - started
    gc.collect()
    rss_after = process.memory_info().rss
    accounts = len(state.accounts)
    store.close()
    return {"accounts": accounts, "restore_s": round(restore_s, 2),
            "rss_added_bytes": rss_after - rss_before,
            "bytes_per_account": round((rss_after - rss_before) / max(1, accounts))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--restarts", type=int, default=3, help="fresh-process restarts measured (median reported)")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--restart-only", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart_only:
        print(json.dumps(restart(args.restart_only)))
        return 0
    assert 0 < args.accounts <= ACCOUNTS_MAX, f"--accounts must be in (0, {ACCOUNTS_MAX}]"
    with tempfile.TemporaryDirectory(prefix="grid-scale-") as scratch:
        path = pathlib.Path(scratch) / "shard-0"
        path.mkdir()
        build_s = build(path, args.accounts)
        runs = []
        for _ in range(max(1, args.restarts)):
            out = subprocess.run([sys.executable, __file__, "--restart-only", str(path)], check=True,
                                 capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        disk_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    runs.sort(key=lambda run: run["restore_s"])
    median = runs[len(runs) // 2]
    report = {
        "benchmark": "one shard, idle accounts: memory and restart",
        "accounts": args.accounts, "build_s": round(build_s, 1), "disk_bytes_per_account": disk_bytes // args.accounts,
        "restore_s_median": median["restore_s"], "restore_s_all": [run["restore_s"] for run in runs],
        "bytes_per_account_median": median["bytes_per_account"],
        "targets": {"bytes_per_account_max": 1024, "restore_s_max": 20},
    }
    report["met"] = {"memory": report["bytes_per_account_median"] <= 1024, "restart": report["restore_s_median"] <= 20}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
