"""`grid bench`: the speed figures of the grid as ratios, each measured in one run
of one benchmark on this machine against its own ceiling (a no-op gRPC server,
the grid without tracing or without synced writes), with the targets beside
them. It runs the scripts of the repository's load_tests/ one after another
(each bounded in time and count, to 127.0.0.1 only) and prints one table.
"""

import json
import pathlib
import subprocess
import sys
import time

LOAD_TESTS = pathlib.Path(__file__).resolve().parent.parent / "load_tests"
# The longest any one benchmark may run before it is stopped.
STEP_TIMEOUT_S = 1800


def _run(script: str, args: list[str], env: dict | None = None) -> dict:
    """One benchmark script; its report is the JSON object it prints last."""
    import os

    started = time.monotonic()
    print(f"grid bench: {script} {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(LOAD_TESTS / script), *args], capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, env={**os.environ, **(env or {})})
    text = done.stdout
    start = 0 if text.startswith("{") else text.find("\n{") + 1
    if (start == 0 and not text.startswith("{")) or done.returncode not in (0, 1):
        raise RuntimeError(f"{script} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(text[start:])
    report["_exit"] = done.returncode
    report["_seconds"] = round(time.monotonic() - started, 1)
    return report


def _row(name: str, value, target: str, met: bool | None, how: str) -> dict:
    return {"figure": name, "measured": value, "target": target,
            "met": "yes" if met else "no" if met is not None else "-", "command": how}


def run(seconds: float, concurrency: int, accounts: int, stream_operations: int, only: set[str]) -> dict:
    if not LOAD_TESTS.is_dir():
        raise SystemExit("grid bench needs the repository's load_tests/ (run it from a checkout: pip install -e .)")
    rows, reports = [], {}

    def wanted(step: str) -> bool:
        return not only or step in only

    if wanted("dataplane"):
        args = ["--seconds", str(min(seconds, 60)), "--concurrency", str(concurrency)]
        plane = reports["dataplane"] = _run("bench_dataplane.py", args)
        how = "load_tests/bench_dataplane.py " + " ".join(args)
        ratios = plane["ratios"]
        rows.append(_row("unary Reserve+Debit through a front door / no-op gRPC server",
                         ratios["unary_front_door_over_noop"], ">= 0.60", ratios["unary_front_door_over_noop"] >= 0.60,
                         how))
        rows.append(_row("unary Reserve+Debit direct to the shards / no-op gRPC server",
                         ratios["unary_direct_over_noop"], ">= 0.80", ratios["unary_direct_over_noop"] >= 0.80, how))
        rows.append(_row("  calls/s: no-op, front door, direct",
                         f"{plane['unary_noop']['calls_per_s']:.0f}, {plane['unary_front_door']['calls_per_s']:.0f}, "
                         f"{plane['unary_direct']['calls_per_s']:.0f}", "", None, how))
        for n in (100, 1000):
            for where in ("front_door", "direct"):
                rate = plane[f"batch_{n}_{where}"]["operations_per_s"]
                rows.append(_row(f"ChargeBatch of {n:,} durable debits, {where.replace('_', ' ')}, operations/s",
                                 round(rate), ">= 50,000", rate >= 50_000, how))
        for phase in ("unary_front_door", "unary_direct", "batch_1000_direct"):
            cpu = plane[phase]["cpu_us_per_operation"]
            rows.append(_row(f"  CPU us per operation, {phase.replace('_', ' ')}",
                             ", ".join(f"{name} {value}" for name, value in cpu.items()), "(reported)", None, how))
        rows.append(_row("  conservation audit", plane["conservation_audit"], "ok",
                         plane["conservation_audit"] == "ok", how))
    if wanted("unary"):
        args = ["--seconds", str(seconds), "--concurrency", str(concurrency), "--durability-cost"]
        unary = reports["unary"] = _run("bench_unary.py", args)
        how = "load_tests/bench_unary.py " + " ".join(args)
        rows.append(_row("unary Reserve+Debit calls/s, front door / no-op gRPC server", unary["grid_over_noop"],
                         ">= 0.60", unary["grid_over_noop"] >= 0.60, how))
        rows.append(_row("  grid calls/s (no-op calls/s)",
                         f"{unary['grid']['calls_per_s']:.0f} ({unary['noop']['calls_per_s']:.0f})", "", None, how))
        rows.append(_row("  p50 / p99 per call, ms (closed loop)",
                         f"{unary['grid']['latency_us']['p50'] / 1000:.1f} / "
                         f"{unary['grid']['latency_us']['p99'] / 1000:.1f}", "", None, how))
        rows.append(_row("durability cost: synced / unsynced calls/s", unary["synced_over_unsynced"], "(reported)",
                         None, how))
        rows.append(_row("  conservation audit", unary["conservation_audit"], "ok",
                         unary["conservation_audit"] == "ok", how))
    if wanted("latency"):
        args = ["--seconds", str(seconds), "--concurrency", str(concurrency), "--fraction", "0.5"]
        latency = reports["latency"] = _run("bench_latency.py", args)
        how = "load_tests/bench_latency.py " + " ".join(args)
        p99 = latency["reserve_p99_ms"]
        rows.append(_row("unary Reserve p99 at half the maximum rate, ms (open loop)", p99, "<= 5", p99 <= 5, how))
        rows.append(_row("  p50 / p99.9, ms; generator lag max, ms",
                         f"{latency['open_loop']['reserve_latency_ms']['p50']:.1f} / "
                         f"{latency['open_loop']['reserve_latency_ms']['p99.9']:.1f}; "
                         f"{latency['open_loop']['generator_lag_max_ms']}", "", None, how))
    if wanted("stream"):
        args = ["--operations", str(stream_operations), "--window", "4000", "--streams", "4"]
        stream = reports["stream"] = _run("bench_stream.py", args)
        how = "load_tests/bench_stream.py " + " ".join(args)
        ops_per_s = stream["grid"]["operations_per_s"]
        rows.append(_row("Charge stream operations/s, durable, traced at the default ratio", round(ops_per_s),
                         "(reported)", None, how))
        rows.append(_row("  grid / no-op echoing stream", stream["grid_over_noop"], ">= 0.80",
                         stream["grid_over_noop"] >= 0.80, how))
    if wanted("tracing"):
        args = ["--seconds", str(seconds), "--concurrency", str(concurrency), "--export-ratio", "0.01"]
        traced = reports["tracing"] = _run("bench_tracing.py", args)
        rows.append(_row("tracing cost: on / off calls/s (ratio 0.01)", traced["on_over_off"], "(reported)", None,
                         "load_tests/bench_tracing.py " + " ".join(args)))
    if wanted("scale"):
        args = ["--accounts", str(accounts), "--restarts", "3"]
        scale = reports["scale"] = _run("bench_shard_scale.py", args)
        how = "load_tests/bench_shard_scale.py " + " ".join(args)
        rows.append(_row(f"shard memory per idle account, bytes ({accounts:,} accounts)",
                         scale["bytes_per_account_median"], "<= 1,024", scale["bytes_per_account_median"] <= 1024,
                         how))
        rows.append(_row(f"shard back in service after a restart, s ({accounts:,} accounts)",
                         scale["restore_s_median"], "<= 20", scale["restore_s_median"] <= 20, how))
    if wanted("rating"):
        args = ["--iterations", "30000", "--seconds", str(max(seconds, 5)), "--no-profile", "--json"]
        rated = reports["rating"] = _run("bench_rating.py", args)
        how = "load_tests/bench_rating.py " + " ".join(args)
        steps = rated["steps"]
        rows.append(_row("rating: select a rate among 50,000 prefixes, us (p50 / p99)",
                         f"{steps['select']['per_op_us']['p50']:.1f} / {steps['select']['per_op_us']['p99']:.1f}",
                         "(reported)", None, how))
        rows.append(_row("rating: select + price a call, us (p50 / p99)",
                         f"{steps['price']['per_op_us']['p50']:.1f} / {steps['price']['per_op_us']['p99']:.1f}",
                         "(reported)", None, how))
        rows.append(_row("rating: a direct debit in the shard, us (p50 / p99)",
                         f"{steps['debit']['per_op_us']['p50']:.1f} / {steps['debit']['per_op_us']['p99']:.1f}",
                         "(reported)", None, how))
        rows.append(_row("  50,000-prefix plan / one-price plan, shard debit", rated["ratios"]["debit_over_v1"],
                         "(reported)", None, how))
    return {"rows": rows, "reports": reports}


def print_table(rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(f"{row['figure']:<66} {str(row['measured']):>18} {row['target']:>12} {row['met']:>4}")
        return
    table = Table(title="grid bench (ratios measured in one run each)")
    for column in ("figure", "measured", "target", "met"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["figure"], str(row["measured"]), row["target"], row["met"])
    Console(width=max(Console().width, 132)).print(table)
