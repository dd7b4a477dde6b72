"""`grid load SCENARIO`: run an event storm against a grid and print its report.

    grid load sms --embedded --seconds 5
    grid load data-sessions --target 127.0.0.1:50051 --rate 50 --seconds 30 --json out.json --plot out.png
    grid load iot-storm --devices 1000000 --accounts 10000 --burst-period-s 60 --seconds 120

Every scenario takes the common flags (target, length, bounds, transport,
output) and its own parameters (`grid load SCENARIO --help`). --embedded
starts a grid in this process on a scratch directory (plaintext, loopback,
an ephemeral port) and stops it afterwards. Exit status: 0 when the run passed
(conservation audit and the scenario's checks), 1 when it did not, 2 for a
usage error (including a non-loopback target without --allow-remote).
Runnable on its own as `python -m grid.storm.cli SCENARIO ...`; `register`
adds it to the `grid` command.
"""

import argparse
import asyncio
import dataclasses
import importlib.util
import pathlib
import sys
import tempfile

from grid.storm import report as storm_report
from grid.storm.generator import LoadSettings, TargetRefused
from grid.storm.progress import make_progress
from grid.storm.runner import run_storm
from grid.storm.scenarios import SCENARIOS
from grid.storm.schedule import KINDS

DEFAULT_TARGET = "127.0.0.1:50051"
# Common schedule flags; a scenario whose parameters already hold one leaves it to them.
_SCHEDULE_FLAGS = {"rate_per_s": "--rate", "burst_size": "--burst-size", "burst_period_s": "--burst-period-s",
                   "burst_spread_s": "--burst-spread-s"}


def _flag(name: str) -> str:
    return "--rate" if name == "rate_per_s" else "--" + name.replace("_", "-")


def _add_common(parser: argparse.ArgumentParser, params_type) -> None:
    defaults = LoadSettings()
    where = parser.add_argument_group("where and how long")
    where.add_argument("--target", dest="storm_target", default=None,
                       help=f"grid address (default {DEFAULT_TARGET}); only loopback unless --allow-remote")
    where.add_argument("--allow-remote", action="store_true",
                       help="allow a target that is not on this machine (only a grid you may load)")
    where.add_argument("--embedded", action="store_true",
                       help="start a grid in this process on a scratch directory and load it")
    where.add_argument("--shards", type=int, default=2, help="shards of the --embedded grid")
    where.add_argument("--validity-time-s", type=int, default=None,
                       help="validity of a grant in the --embedded grid (default: the grid's 300 s)")
    where.add_argument("--seconds", type=float, default=defaults.seconds, help="length of the load (at most 600)")
    where.add_argument("--max-requests", type=int, default=defaults.max_requests,
                       help="requests the load may send")
    where.add_argument("--seed", type=int, default=defaults.seed, help="seeds the schedule and every flow")
    schedule = parser.add_argument_group("arrivals")
    schedule.add_argument("--schedule", choices=KINDS, default=None, help="arrival schedule (scenario's default)")
    fields = {field.name for field in dataclasses.fields(params_type)}
    for name, flag in _SCHEDULE_FLAGS.items():
        if name not in fields:
            schedule.add_argument(flag, dest=f"schedule_{name}", type=int if name == "burst_size" else float,
                                  default=None, help=f"schedule {name.replace('_', ' ')}")
    transport = parser.add_argument_group("transport and bounds")
    transport.add_argument("--in-flight-max", type=int, default=defaults.in_flight_max,
                           help="requests in flight before new arrivals are shed")
    transport.add_argument("--flows-max", type=int, default=defaults.flows_max,
                           help="flows (sessions, calls) alive before new arrivals are shed")
    transport.add_argument("--timeout-s", type=float, default=defaults.timeout_s, help="deadline of each request")
    transport.add_argument("--drain-s", type=float, default=defaults.drain_s,
                           help="time the flows alive at the end get to close")
    transport.add_argument("--channels", type=int, default=defaults.channels, help="unary channels (connections)")
    transport.add_argument("--stream", action="store_true", help="send through Charge streams instead of unary calls")
    transport.add_argument("--streams", type=int, default=defaults.streams, help="Charge streams with --stream")
    output = parser.add_argument_group("output")
    output.add_argument("--json", type=pathlib.Path, default=None, help="write the report as JSON here ('-': stdout)")
    output.add_argument("--plot", type=pathlib.Path, default=None,
                        help="write a PNG of rate and latency over time here (needs matplotlib)")
    output.add_argument("--quiet", action="store_true", help="no live progress on stderr")


def _add_params(parser: argparse.ArgumentParser, params_type) -> None:
    group = parser.add_argument_group("scenario parameters")
    for field in dataclasses.fields(params_type):
        help_text = field.metadata.get("help", "")
        if field.type is bool:
            group.add_argument(_flag(field.name), dest=f"param_{field.name}", action=argparse.BooleanOptionalAction,
                               default=field.default, help=help_text)
        else:
            group.add_argument(_flag(field.name), dest=f"param_{field.name}", type=field.type, default=field.default,
                               help=f"{help_text} (default {field.default:,})" if isinstance(field.default, int)
                               else f"{help_text} (default {field.default})")


def add_scenarios(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The scenarios as sub-commands of parser, each with the common flags and its parameters."""
    commands = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, scenario_type in SCENARIOS.items():
        sub = commands.add_parser(name, help=scenario_type.summary, description=scenario_type.summary)
        _add_params(sub, scenario_type.Params)
        _add_common(sub, scenario_type.Params)
    parser.set_defaults(handler=run_from_args)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_scenarios(argparse.ArgumentParser(
        prog="grid load", description="Open-loop event storms against a grid, with a conservation audit."))


def register(commands) -> None:
    """Adds `load` to the `grid` command's sub-commands (its handler is run_from_args)."""
    add_scenarios(commands.add_parser("load", help="event storms: open-loop load with a conservation audit"))


def _scenario_and_spec(args, settings: LoadSettings):
    scenario_type = SCENARIOS[args.scenario]
    params = scenario_type.Params(**{field.name: getattr(args, f"param_{field.name}")
                                     for field in dataclasses.fields(scenario_type.Params)})
    scenario = scenario_type(params, seed=args.seed)
    spec = scenario.schedule(settings)
    overrides = {name: getattr(args, f"schedule_{name}") for name in _SCHEDULE_FLAGS
                 if getattr(args, f"schedule_{name}", None) is not None}
    if args.schedule is not None:
        overrides["kind"] = args.schedule
    return scenario, dataclasses.replace(spec, **overrides)


def _run(coroutine):
    """On uvloop when it is installed (faster sockets and timers), else asyncio's loop."""
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


def _prepare(args, target: str):
    """Settings, scenario and schedule from the flags: every usage error is found
    here, before a grid is started or a request sent."""
    settings = LoadSettings(
        target=target, allow_remote=args.allow_remote, seconds=args.seconds, max_requests=args.max_requests,
        in_flight_max=args.in_flight_max, flows_max=args.flows_max, timeout_s=args.timeout_s,
        channels=args.channels, stream=args.stream, streams=args.streams, drain_s=args.drain_s, seed=args.seed)
    scenario, spec = _scenario_and_spec(args, settings)
    scenario.prepare(settings)  # checks the parameters against the settings (run_storm prepares again)
    next(iter(spec.times(settings.seconds, 1, settings.seed)), None)  # checks the schedule's parameters
    return settings, scenario, spec


def _load(args, settings: LoadSettings, scenario, spec, credentials) -> dict:
    progress = make_progress(not args.quiet)
    try:
        return _run(run_storm(scenario, settings, spec=spec, credentials=credentials, progress=progress))
    finally:
        if progress is not None:
            progress.close()


def _embedded_load(args, settings: LoadSettings, scenario, spec) -> dict:
    from grid.config import GridConfig
    from grid.domain.limits import CoreLimits
    from grid.server import EmbeddedGrid

    limits = CoreLimits() if args.validity_time_s is None else CoreLimits(validity_time_s=args.validity_time_s)
    with tempfile.TemporaryDirectory(prefix="grid-storm-") as scratch:
        grid = EmbeddedGrid(GridConfig(plaintext=True, data_dir=pathlib.Path(scratch), port=0, shards=args.shards,
                                       limits=limits))
        grid.start()
        print(f"embedded grid on {grid.target} ({args.shards} shards, data in {scratch})", file=sys.stderr)
        try:
            return _load(args, dataclasses.replace(settings, target=grid.target), scenario, spec, None)
        finally:
            grid.stop()


def run_from_args(args) -> int:
    if importlib.util.find_spec("hdrh") is None:  # latencies are recorded in HdrHistograms
        print("grid load: needs the hdrhistogram package (pip install hdrhistogram)", file=sys.stderr)
        return 2
    target = args.storm_target or getattr(args, "target", None) or DEFAULT_TARGET
    try:
        if args.embedded and args.storm_target:
            raise ValueError("give --target or --embedded, not both")
        settings, scenario, spec = _prepare(args, "127.0.0.1:0" if args.embedded else target)
    except (TargetRefused, ValueError) as error:
        print(f"grid load: {error}", file=sys.stderr)
        return 2
    if args.embedded:
        result = _embedded_load(args, settings, scenario, spec)
    else:
        from grid_client import Credentials

        result = _load(args, settings, scenario, spec, Credentials.from_environment())
    if args.json is not None and str(args.json) == "-":
        import json

        print(json.dumps(result, indent=2))
    else:
        storm_report.print_report(result)
        if args.json is not None:
            storm_report.write_json(result, args.json)
            print(f"report: {args.json}", file=sys.stderr)
    if args.plot is not None:
        note = storm_report.plot(result, args.plot)
        print(note or f"plot: {args.plot}", file=sys.stderr)
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
