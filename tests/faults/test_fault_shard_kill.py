"""Seeded loop: kill -9 one shard actor's process at random moments under load.

Ray restarts the actor, which reloads from RocksDB and takes a new epoch; the
front door resends the batch it lost with the same request ids; the clients
retry theirs. No server restart: at the end every op is ok or settled by
GetTransaction, and the history check passes (DESIGN.md section 5: "the front
door retries with the same ids"; section 7: a shard restarted by Ray rebuilds
its state from RocksDB)."""

import asyncio
import random
import time

import pytest

from fault_history import History, check_history
from fault_support import loop_timeout, FaultServer, Load, check_shard_stores, provision, sigkill

pytestmark = pytest.mark.slow

SHARDS = 2
SUBSCRIBERS = [f"a{i}" for i in range(24)]


@pytest.mark.timeout(loop_timeout(per_round_s=30))
def test_kill_9_of_one_shard_actor_under_load_is_survived_without_a_restart(tmp_path, seed, rounds, report):
    rng = random.Random(f"{seed}/shard-kill")
    history = History(seed, label="a")
    server = FaultServer(tmp_path / "grid-data", shards=SHARDS, seed=seed)
    kills = []
    load = None
    try:
        server.start()
        provision(server.target, history, SUBSCRIBERS)
        load = Load(server.target, history, SUBSCRIBERS, random.Random(f"{seed}/load"), concurrency=12,
                    max_ops=50_000, max_seconds=30 + 20 * rounds).start()
        load.wait_for_acks(history.ok_count() + 50)
        for kill_number in range(rounds):
            time.sleep(rng.uniform(0.1, 1.5))
            shard_id = rng.randrange(SHARDS)
            victim = server.wait_for_shard(shard_id)
            sigkill(victim)
            kills.append(shard_id)
            server.wait_for_shard(shard_id, not_pid=victim.pid)
            # The load goes on through the restarted shard before the next kill.
            load.wait_for_acks(history.ok_count() + 30, timeout_s=60)
            assert load.running, f"the load ended before kill {kill_number + 1} was survived (seed {seed})"
        load.stop()
        counts_before_check = history.counts()
        checker = asyncio.run(check_history(server.target, history, SUBSCRIBERS, context=f"(kills on {kills})"))
        assert server.terminate() == 0, f"the graceful stop failed; see {server.log_path} (seed {seed})"
        stats = check_shard_stores(server.data_dir, SHARDS, f"after the graceful stop (seed {seed})")
        # Every incarnation took a new epoch: one at start, one per kill, none for anything else.
        assert sum(stats["epochs"].values()) == SHARDS + len(kills), (
            f"epochs {stats['epochs']} after {len(kills)} kills: a shard restarted for another reason; see "
            f"{server.log_path} (seed {seed})")
    finally:
        if load is not None:
            load.request_stop()  # on a failure: no more calls; the thread ends by itself
        server.kill()
    report(kills=len(kills), restarts=0, ops=counts_before_check["total"], ok=counts_before_check["ok"],
           unknown=counts_before_check["unknown"], failed=counts_before_check["fail"],
           unknown_found_applied=checker.resolved_unknown["applied"],
           unknown_not_applied=checker.resolved_unknown["not_applied"], epochs=stats["epochs"], seed=seed)
