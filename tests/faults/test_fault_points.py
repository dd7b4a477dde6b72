"""Fault points between the storage write and the reply (grid/dataplane/faults.py).

exit_after_commit: the shard dies (as kill -9 would) after its batch is synced
and before the reply leaves: the effect is durable, the reply is lost; the
front door resends with the same request ids and must get the recorded
replies. exit_before_commit: the shard dies with the batch applied in memory
only; the resend must apply it once. Under a concurrent load with the client's
default retries: every op ends ok or settled, the history check passes and
nothing is applied twice."""

import asyncio
import random
import time

import pytest
from grid_client import RetryPolicy

from fault_history import History, check_history
from fault_support import loop_timeout, FaultServer, Load, check_shard_stores, provision

pytestmark = pytest.mark.slow

SHARDS = 2
SUBSCRIBERS = [f"f{i}" for i in range(16)]


@pytest.mark.timeout(loop_timeout(per_round_s=30))
@pytest.mark.parametrize("fault_point, probability", [("exit_after_commit", 0.05), ("exit_before_commit", 0.02)])
def test_a_shard_dying_around_its_commit_loses_and_doubles_nothing(tmp_path, seed, rounds, report, fault_point,
                                                                    probability):
    history = History(seed, label="x" + fault_point.split("_")[1][0])
    server = FaultServer(tmp_path / "grid-data", shards=SHARDS,
                         env={"GRID_FAULTS": f"{fault_point}={probability}", "GRID_FAULT_SEED": str(seed)}, seed=seed)
    wanted_deaths = rounds
    load = None
    try:
        server.start()
        provision(server.target, history, SUBSCRIBERS)
        load = Load(server.target, history, SUBSCRIBERS, random.Random(f"{seed}/{fault_point}"), concurrency=8,
                    max_ops=20_000, max_seconds=20 + 10 * rounds).start()
        # Watch the shard processes: each new pid is an incarnation after a death at the fault point.
        seen = {proc.pid for proc in server.shard_processes().values()}
        while load.running:
            seen |= {proc.pid for proc in server.shard_processes().values()}
            if len(seen) - SHARDS >= wanted_deaths and history.ok_count() > 200:
                break
            time.sleep(0.1)
        load.stop()
        counts_before_check = history.counts()
        # Faults still strike while we check: a retry's own batch may be resent, so a first
        # application may come back marked replayed (the fold still proves it applied once).
        checker = asyncio.run(check_history(
            server.target, history, SUBSCRIBERS, context=f"({fault_point}={probability})", strict_replayed=False,
            retry_policy=RetryPolicy(attempts=4, timeout_s=30)))
        assert server.terminate() == 0, f"the graceful stop failed; see {server.log_path} (seed {seed})"
        stats = check_shard_stores(server.data_dir, SHARDS, f"after the graceful stop (seed {seed})")
    finally:
        if load is not None:
            load.request_stop()  # on a failure: no more calls; the thread ends by itself
        server.kill()
    deaths = sum(stats["epochs"].values()) - SHARDS
    assert deaths >= 1, (f"{fault_point}={probability} never fired in {counts_before_check['total']} ops: the test "
                         f"proved nothing (seed {seed})")
    report(fault=f"{fault_point}={probability}", shard_deaths=deaths, restarts=0, ops=counts_before_check["total"],
           ok=counts_before_check["ok"], unknown=counts_before_check["unknown"], failed=counts_before_check["fail"],
           unknown_found_applied=checker.resolved_unknown["applied"],
           unknown_not_applied=checker.resolved_unknown["not_applied"], seed=seed)
