"""Cost of the shard's retention sweep: forget N idempotency records over S sweeps.

Pure core, no Ray or disk: fills one ShardState with N top-ups recorded over
N/100 ms, then sweeps forward in steps until every record is past a 1 s
horizon, and reports the seconds spent sweeping (it was quadratic once).

    .venv/bin/python load_tests/bench_retention.py --records 200000
"""

import argparse
import time

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    assert 0 < args.records <= 5_000_000
    state = ShardState(0, CoreLimits(idempotency_horizon_s=1, charge_retention_s=1))
    state.apply(ops.PutTariff(TariffPlan("p", (Rate(1, Unit.EVENTS, 1, 1, 1),))), 0)
    state.apply(ops.CreateAccount(ops.DEFAULT_TENANT, "a", "c", "EUR", 0, "p"), 0)
    for n in range(args.records):
        state.apply(ops.TopUp(ops.DEFAULT_TENANT, "a", f"t{n}", 1), n // 100)
    state.take_writes()
    last_ms = args.records // 100 + 2_000
    sweeps = 0
    started = time.perf_counter()
    for now_ms in range(0, last_ms, 10):
        state.apply_batch([], now_ms)
        sweeps += 1
    elapsed_s = time.perf_counter() - started
    assert not state.idempotency
    print(f"forgot {args.records} idempotency records in {sweeps} sweeps: {elapsed_s:.3f} s")


if __name__ == "__main__":
    main()
