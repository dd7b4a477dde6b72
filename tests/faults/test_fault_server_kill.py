"""Seeded loop: kill -9 the whole server (front door, Ray, every shard) at a random
moment under a concurrent mix of top-ups, reserves, partial and final debits,
direct debits, releases and refunds; check each shard's RocksDB offline while
the server is down (a prefix of its journal, no torn batch); restart on the same
data directory and check the history: every acknowledged op is there with its
reply, every unknown op is settled by GetTransaction and by one retry with the
same request id, and the balances and holds are the fold of the applied ops
(DESIGN.md section 11, invariants 1-5 and 7)."""

import asyncio
import random
import time

import pytest

from fault_history import History, check_history
from fault_support import loop_timeout, FaultServer, Load, check_shard_stores, provision

pytestmark = pytest.mark.slow

SHARDS = 2
SUBSCRIBERS = [f"w{i}" for i in range(24)]


@pytest.mark.timeout(loop_timeout(per_round_s=40))
def test_kill_9_of_the_whole_server_under_load_loses_and_doubles_nothing(tmp_path, seed, rounds, report):
    rng = random.Random(f"{seed}/server-kill")
    history = History(seed, label="k")
    server = FaultServer(tmp_path / "grid-data", shards=SHARDS, seed=seed)
    totals = {"kills": 0, "restarts": 0, "applied_unknown": 0, "not_applied_unknown": 0, "replayed": 0,
              "applied_on_retry": 0, "journal_records": 0}
    previous_load = None
    load = None
    try:
        server.start()
        provision(server.target, history, SUBSCRIBERS)
        for round_number in range(rounds):
            context = f"round {round_number + 1}/{rounds}, seed {seed}"
            load = Load(server.target, history, SUBSCRIBERS, random.Random(f"{seed}/load/{round_number}"),
                        concurrency=16, max_ops=5_000, max_seconds=30)
            if previous_load is not None:  # holds and charges made before the last crash are used after it
                load.inherit(previous_load)
            acknowledged_before = history.ok_count()
            load.start()
            load.wait_for_acks(acknowledged_before + rng.randint(10, 300))
            time.sleep(rng.uniform(0.0, 0.5))
            load.request_stop()  # the ops in flight now are the ones the kill cuts
            server.kill()  # SIGKILL to every process of the server's session, Ray's included
            totals["kills"] += 1
            load.stop()
            assert history.ok_count() > acknowledged_before, f"no op acknowledged before the kill ({context})"

            stats = check_shard_stores(server.data_dir, SHARDS, f"after kill ({context})")
            totals["journal_records"] = stats["journal_records"]

            server.start()
            totals["restarts"] += 1
            checker = asyncio.run(check_history(server.target, history, SUBSCRIBERS, context=context))
            totals["applied_unknown"] += checker.resolved_unknown["applied"]
            totals["not_applied_unknown"] += checker.resolved_unknown["not_applied"]
            totals["replayed"] += checker.retries["replayed"]
            totals["applied_on_retry"] += checker.retries["applied_now"]
            previous_load = load
        assert server.terminate() == 0, f"the graceful stop failed; see {server.log_path} (seed {seed})"
        check_shard_stores(server.data_dir, SHARDS, f"after the last graceful stop (seed {seed})")
    finally:
        if load is not None:
            load.request_stop()  # on a failure: no more calls; the thread ends by itself
        server.kill()
    counts = history.counts()
    report(kills=totals["kills"], restarts=totals["restarts"], ops=counts["total"], ok=counts["ok"],
           unknown=counts["unknown"], failed=counts["fail"],
           unknown_found_applied=totals["applied_unknown"], unknown_not_applied=totals["not_applied_unknown"],
           retries_replayed=totals["replayed"], retries_applied_now=totals["applied_on_retry"],
           journal_records=totals["journal_records"], seed=seed)
