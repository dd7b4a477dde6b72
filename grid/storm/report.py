"""The storm's final report: one dict (written as JSON for machines), a table
for people (rich when installed, plain text otherwise) and a PNG plot of rate
and latency over time (only when matplotlib is installed: it is not a
dependency of the grid, so without it the plot is skipped with a note).

`ok` is the verdict: the conservation audit passed, every scenario check
passed, and no flow raised. Money is integer micros throughout; the table
prints it in currency units by integer arithmetic, never through a float.
"""

import dataclasses
import json
import pathlib
import sys

REPORT_VERSION = 1


def build(*, scenario, settings, spec, run_id: str, provisioned: dict, engine, audit: dict) -> dict:
    summary = engine.recorder.summary(engine.load_s)
    stats = engine.stats()
    failed_checks = [name for name, check in scenario.checks.items() if not check.get("ok")]
    return {
        "report_version": REPORT_VERSION,
        "scenario": scenario.name,
        "summary": scenario.summary,
        "run_id": run_id,
        "target": settings.target,
        "parameters": dataclasses.asdict(scenario.params),
        "settings": {key: value for key, value in dataclasses.asdict(settings).items() if key != "target"},
        "schedule": dataclasses.asdict(spec),
        "load_s": stats["load_s"],
        "arrivals": {"offered": stats["arrivals"], "shed_by_generator": stats["arrivals_shed_by_generator"],
                     "admitted": stats["arrivals"] - stats["arrivals_shed_by_generator"],
                     "generator_lag_ms": stats["arrival_lag_ms"]},
        **summary,
        "flows": {"cancelled_by_drain": stats["flows_cancelled_by_drain"], "errors_total": stats["flow_errors_total"],
                  "errors": stats["flow_errors"]},
        "provisioning": provisioned,
        "audit": audit,
        "checks": scenario.checks,
        "details": scenario.details,
        "series": engine.recorder.series(),
        "ok": audit["ok"] and not failed_checks and stats["flow_errors_total"] == 0,
    }


def write_json(report: dict, path: pathlib.Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def money(micros: int) -> str:
    """Micros as currency units, exactly (integer arithmetic)."""
    sign = "-" if micros < 0 else ""
    units, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{units:,}.{fraction:06d}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _rows(report: dict) -> list[tuple[str, str]]:
    """The report as (label, value) rows, shared by both renderings."""
    rate, requests, latency, service = (report["rate_per_s"], report["requests"], report["latency_ms"],
                                        report["service_time_ms"])
    audit = report["audit"]
    schedule = report["schedule"]
    if schedule["kind"] == "bursts" and schedule["burst_period_s"] >= report["settings"]["seconds"]:
        shape = f"one burst of {schedule['burst_size']:,}, spread over {schedule['burst_spread_s']:g} s"
    elif schedule["kind"] == "bursts":
        shape = (f"bursts of {schedule['burst_size']:,} every {schedule['burst_period_s']:g} s, "
                 f"spread over {schedule['burst_spread_s']:g} s")
    else:
        shape = f"{schedule['kind']} {schedule['rate_per_s']:g} arrivals/s"
    provisioned = report["provisioning"]
    arrivals = report["arrivals"]
    lag = arrivals["generator_lag_ms"]
    rows = [
        ("scenario", f"{report['scenario']}: {report['summary']}"),
        ("run", f"{report['run_id']} against {report['target']}, load {report['load_s']:g} s"),
        ("schedule", shape),
        ("arrivals", f"{arrivals['offered']:,} offered, {arrivals['shed_by_generator']:,} shed by the generator; "
                     f"the generator ran up to {lag['max']:,.1f} ms behind its schedule (mean {lag['mean']:,.1f} ms)"),
        ("requests", f"{requests['offered']:,} offered, {requests['sent']:,} sent, {requests['replied']:,} replied, "
                     f"{requests['failed']:,} failed"),
        ("rate, requests/s", f"offered {rate['offered']:,.1f}, achieved {rate['achieved']:,.1f}"),
        ("latency ms (from intended send)", "  ".join(f"{k} {_ms(latency[k])}" for k in
                                                     ("p50", "p90", "p99", "p99.9", "max"))),
        ("service time ms (from actual send)", "  ".join(f"{k} {_ms(service[k])}" for k in ("p50", "p99", "max"))),
    ]
    for key, count in report["results"].items():
        rows.append(("  result " + key, f"{count:,}"))
    for key, count in report["wind_down_results"].items():
        rows.append(("  wind-down " + key, f"{count:,}"))
    rows.append(("provisioning", f"{provisioned['subscribers']:,} subscribers on {provisioned['plan']} "
                                 f"({provisioned['accounts_created']:,} created, {provisioned['top_ups_applied']:,} "
                                 f"topped up, {provisioned['top_ups_replayed']:,} replayed) in "
                                 f"{provisioned['seconds']:g} s"))
    settle = audit["settle"]
    rows.append(("settled", f"{settle['unknown_outcomes']:,} unknown outcomes ({settle['resolved_applied']:,} "
                            f"applied, {settle['resolved_not_applied']:,} not, {settle['unresolved']:,} unresolved); "
                            f"released {settle['holds_released']:,} holds, {settle['sessions_released']:,} sessions"))
    rows.append(("conservation audit",
                 f"{'OK' if audit['ok'] else 'FAILED'}: {audit['subscribers_touched']:,} subscribers, "
                 f"before {money(audit['balance_before_micros'])} - charged {money(audit['charged_micros'])} + "
                 f"refunded {money(audit['refunded_micros'])} = after {money(audit['balance_after_micros'])}, "
                 f"held {money(audit['held_after_micros'])}; grid audit "
                 f"{'ok' if audit['grid_audit']['ok'] else 'FAILED'}"))
    for problem in audit["problems"]:
        rows.append(("  audit problem", problem))
    for mismatch in audit["mismatches"][:5]:
        rows.append(("  mismatch", json.dumps(mismatch)))
    for name, check in report["checks"].items():
        rows.append((f"check {name}", ("OK " if check["ok"] else "FAILED ")
                     + ", ".join(f"{k} {v}" for k, v in check.items() if k != "ok")))
    for key, value in report["details"].items():
        rows.append((key.replace("_", " "), str(value)))
    for error in report["flows"]["errors"]:
        rows.append(("  flow error", error))
    rows.append(("verdict", "PASS" if report["ok"] else "FAIL"))
    return rows


def render_plain(report: dict) -> str:
    rows = _rows(report)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def print_report(report: dict, stream=None) -> None:
    """A table on stream (stdout): rich when it is installed, else plain text."""
    stream = stream or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(render_plain(report), file=stream)
        return
    table = Table(title=f"grid load {report['scenario']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in _rows(report):
        style = None
        if label in ("verdict", "conservation audit"):
            style = "green" if report["ok"] else "red"
        table.add_row(label, value, style=style)
    # Not a terminal (a file, a pipe): wide enough that rows do not wrap.
    Console(file=stream, width=None if stream.isatty() else 160).print(table)


def plot(report: dict, path: pathlib.Path) -> str | None:
    """A PNG of rate and latency over time. Returns a note when it was skipped."""
    try:
        import matplotlib
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    series = report["series"]
    # Steps drawn from each second's start: one more edge closes the last second.
    edges = [row["second"] for row in series] + [len(series)]
    figure, (rates, latencies) = pyplot.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    for key, label in (("offered", "offered"), ("achieved", "achieved (replies)"), ("errors", "failed"),
                       ("shed", "shed by generator")):
        values = [row[key] for row in series]
        rates.plot(edges, values + values[-1:], label=label, drawstyle="steps-post")
    rates.set_ylabel("requests / s")
    rates.legend(loc="upper right")
    rate = report["rate_per_s"]
    rates.set_title(f"grid load {report['scenario']} ({report['run_id']}): offered {rate['offered']:,.0f}/s, "
                    f"achieved {rate['achieved']:,.0f}/s, audit {'ok' if report['audit']['ok'] else 'FAILED'}",
                    fontsize=10)
    middles = [row["second"] + 0.5 for row in series]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        # A second with no reply has no latency: a gap in the line, not a made-up value.
        values = [float("nan") if row[key] is None else row[key] for row in series]
        latencies.plot(middles, values, label=label, marker=".")
    latencies.set_ylabel("latency from intended send, ms")
    latencies.set_xlabel("seconds into the run")
    if any(row["p99_ms"] for row in series):
        latencies.set_yscale("log")
    latencies.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return None
