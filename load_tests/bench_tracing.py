"""The cost of tracing: unary Reserve+Debit through the grid with tracing off,
then on (OTLP over gRPC to a counting sink on 127.0.0.1), same generator, one run.

Tracing on means: every operation gets its trace and span ids, spans are built
for what the export policy keeps (denials, errors, overages, late usage and
replays always; the rest by --export-ratio), and exported in batches. Reported:
calls per second and latency percentiles for each, the ratio on/off, the spans
the sink received, and a conservation audit of each grid.

    .venv/bin/python load_tests/bench_tracing.py --seconds 10 --concurrency 64 --export-ratio 0.01
"""

import argparse
import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import uvloop

from bench_unary import HERE, _audit, _provision, drive
from server_process import ServerProcess, free_port


def _run_grid(subscribers, seconds, concurrency, shards, env, label, export_ratio) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"grid-bench-{label}-") as scratch:
        grid = ServerProcess(pathlib.Path(scratch) / "grid-data", shards=shards, env=env)
        grid.extra_args = ["--trace-export-ratio", str(export_ratio)]
        grid.start()
        try:
            _provision(grid.target, subscribers)
            measured = asyncio.run(drive(grid.target, subscribers, seconds, concurrency, label))
            measured["audit"] = "ok" if _audit(grid.target, subscribers, measured.pop("charged")) else "FAILED"
        finally:
            grid.terminate()  # graceful: the shards flush their spans
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--subscribers", type=int, default=256)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--export-ratio", type=float, default=0.01)
    args = parser.parse_args()
    assert 0 < args.seconds <= 600, "--seconds must be in (0, 600]"
    uvloop.install()
    subscribers = [f"bench-{i}" for i in range(args.subscribers)]
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(HERE / "otlp_sink.py"), "--port", str(sink_port)],
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert "otlp sink listening" in sink.stdout.readline().decode()
        off = _run_grid(subscribers, args.seconds, args.concurrency, args.shards,
                        {"OTEL_TRACES_EXPORTER": "none"}, "off", args.export_ratio)
        on = _run_grid(subscribers, args.seconds, args.concurrency, args.shards,
                       {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}, "on", args.export_ratio)
    finally:
        os.killpg(sink.pid, signal.SIGTERM)
        spans = sink.communicate(timeout=30)[0].decode().strip().splitlines()
    report = {
        "benchmark": "unary Reserve+Debit, tracing off then on",
        "export_ratio": args.export_ratio, "concurrency": args.concurrency, "seconds": args.seconds,
        "off": off, "on": on, "on_over_off": round(on["calls_per_s"] / off["calls_per_s"], 3),
        "sink": spans[-1] if spans else "",
    }
    print(json.dumps(report, indent=2))
    return 0 if off["audit"] == on["audit"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
