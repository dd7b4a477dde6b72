"""`grid`: serve the grid, run a demo, and operate it through the Python client.

    grid serve --plaintext | --tls-cert F --tls-key F [--tls-client-ca F] [--auth-file F] [--data-dir grid-data] [--port 50051] [--shards 2]
    grid demo
    grid auth new-key --name N --tenant T --scope grid:charging
    grid tariff put PLAN --rate RATING_GROUP:UNIT:PRICE_MICROS:RATE_UNITS:INCREMENT_UNITS ...
    grid account create SUBSCRIBER --currency EUR --tariff PLAN [--credit-limit-micros N]
    grid topup SUBSCRIBER AMOUNT_MICROS
    grid reserve SUBSCRIBER RATING_GROUP UNITS [--session ID]
    grid debit SUBSCRIBER UNITS (--reservation ID [--final] | --rating-group N)
    grid release SUBSCRIBER RESERVATION_ID
    grid refund SUBSCRIBER CHARGE_ID AMOUNT_MICROS
    grid balance SUBSCRIBER
    grid tx SUBSCRIBER REQUEST_ID
    grid snapshot create [--label TEXT] | list [--data-dir DIR] | restore ID --into NEW_DIR [--data-dir DIR]
"""

import argparse
import asyncio
import json
import logging
import os
import pathlib
import sys

from google.protobuf import json_format

from grid.config import GridConfig
from grid.domain.limits import CoreLimits
from grid import security
from grid.tracing import TracingPolicy

UNITS = {"SECONDS": 1, "BYTES": 2, "EVENTS": 3}


def _as_dict(message) -> dict:
    """A response as plain JSON with integers kept integers (proto JSON quotes int64)."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )

    def fix(value, key=""):
        if isinstance(value, dict):
            return {k: fix(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v, key) for v in value]
        if isinstance(value, str) and (key.endswith(("_micros", "_units", "_ms")) or key in ("epoch", "journal_sequence")) \
                and value.lstrip("-").isdigit():
            return int(value)
        return value

    return fix(data)


def _print(message) -> None:
    print(json.dumps(_as_dict(message), indent=2))


FINAL_UNIT_ACTIONS = {"TERMINATE": 1, "REDIRECT": 2, "RESTRICT_ACCESS": 3}


def _parse_rate(text: str) -> dict:
    try:
        rating_group, unit, price, rate_units, increment, *final = text.split(":", 6)
        rate = {
            "rating_group": int(rating_group), "unit": UNITS[unit.upper()], "price_micros": int(price),
            "rate_units": int(rate_units), "increment_units": int(increment),
        }
        if final:
            rate["final_unit_action"] = FINAL_UNIT_ACTIONS[final[0].upper()]
            if len(final) > 1:
                rate["redirect_server_address"] = final[1]
        return rate
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"--rate {text!r}: expected RATING_GROUP:UNIT:PRICE_MICROS:RATE_UNITS:INCREMENT_UNITS"
            "[:FINAL_UNIT_ACTION[:REDIRECT_ADDRESS]], UNIT one of SECONDS, BYTES, EVENTS, FINAL_UNIT_ACTION one of "
            "TERMINATE, REDIRECT, RESTRICT_ACCESS (e.g. 1:SECONDS:1000:1:60 or 2:BYTES:1000:1000000:1000:REDIRECT:"
            "https://top.up)"
        ) from None


COUNTER_PERIODS = {"DAY": 1, "WEEK": 2, "MONTH": 3}


def _parse_counter(text: str) -> dict:
    """ID:WHAT:PERIOD:BASE_STATUS:AT=STATUS[,AT=STATUS...]; WHAT is RG=10+20 (units
    of those rating groups), SPEND (money on any) or SPEND=10+20."""
    try:
        counter_id, what, period, base_status, thresholds = text.split(":")
        kind, _, groups = what.partition("=")
        if kind.upper() not in ("RG", "SPEND"):
            raise ValueError
        return {
            "counter_id": counter_id, "spend": kind.upper() == "SPEND",
            "rating_groups": [int(group) for group in groups.split("+")] if groups else [],
            "period": COUNTER_PERIODS[period.upper()], "base_status": base_status,
            "thresholds": [{"at_least": int(at), "status": status}
                           for at, status in (item.split("=") for item in thresholds.split(","))],
        }
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"--counter {text!r}: expected ID:WHAT:PERIOD:BASE_STATUS:AT=STATUS[,AT=STATUS], WHAT one of RG=10+20, "
            "SPEND, SPEND=10+20, PERIOD one of DAY, WEEK, MONTH (e.g. data:RG=10:MONTH:normal:800000000=slowed,"
            "1000000000=capped)"
        ) from None


CONTROL_KINDS = {"SPEND_VELOCITY": 1, "USAGE_VELOCITY": 2, "LOW_BALANCE": 3, "CONCURRENT_SESSIONS": 4}
CONTROL_ACTIONS = {"NOTIFY": 1, "DENY_GRANTS": 2, "SUSPEND": 3, "REAUTHORIZE": 4}


def _parse_control(text: str) -> dict:
    """ID:KIND:LIMIT:WINDOW_S:ACTION[:RG+RG]."""
    try:
        control_id, kind, limit, window_s, action, *groups = text.split(":")
        if len(groups) > 1:
            raise ValueError
        return {"control_id": control_id, "kind": CONTROL_KINDS[kind.upper()], "limit": int(limit),
                "window_s": int(window_s), "action": CONTROL_ACTIONS[action.upper()],
                "rating_groups": [int(group) for group in groups[0].split("+")] if groups else []}
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"--control {text!r}: expected ID:KIND:LIMIT:WINDOW_S:ACTION[:RG+RG], KIND one of "
            f"{', '.join(CONTROL_KINDS)}, ACTION one of {', '.join(CONTROL_ACTIONS)} (e.g. "
            "burst:SPEND_VELOCITY:5000000:600:DENY_GRANTS or low:LOW_BALANCE:1000000:0:NOTIFY)"
        ) from None


def _parse_unit(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(part) for part in text.split(":")]
        if not 2 <= len(parts) <= 3:
            raise ValueError
        rating_group, requested, used = (parts + [0])[:3]
        return rating_group, requested, used
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--unit {text!r}: expected RATING_GROUP:REQUESTED_UNITS[:USED_UNITS] (e.g. 10:50000000:1200000)"
        ) from None


def _config(args) -> GridConfig:
    return GridConfig(
        data_dir=pathlib.Path(args.data_dir), host=args.host, port=args.port, shards=args.shards,
        ray_address=args.ray_address, shard_resource=args.shard_resource,
        batch_operations_max=args.batch_operations_max,
        batches_in_flight_max=args.batches_in_flight_max, queue_operations_max=args.queue_operations_max,
        shard_port_base=args.shard_port_base, shard_listeners_public=args.shard_listeners_public,
        sweep_interval_s=args.sweep_interval_s, snapshot_interval_s=args.snapshot_interval_s,
        snapshot_retention_count=args.snapshot_retention_count, metrics_port=args.metrics_port,
        jaeger_url=args.jaeger_url,
        tracing=TracingPolicy(export_ratio=args.trace_export_ratio, subscriber_ids=args.span_subscriber_ids,
                              subscriber_id_salt=os.environ.get("GRID_SUBSCRIBER_ID_SALT", "")),
        limits=CoreLimits(validity_time_s=args.validity_time_s, expiry_grace_s=args.expiry_grace_s),
        tls=security.TlsFiles(pathlib.Path(args.tls_cert), pathlib.Path(args.tls_key),
                              pathlib.Path(args.tls_client_ca) if args.tls_client_ca else None)
        if args.tls_cert or args.tls_key else None,
        plaintext=args.plaintext, plaintext_any_host=args.plaintext_any_host,
        auth=security.load_auth(pathlib.Path(args.auth_file)) if args.auth_file else security.AuthConfig(),
        anonymous_any_host=args.anonymous_any_host,
        tenant_rate=security.RateLimit.of(args.tenant_requests_per_s, args.tenant_burst),
        subscriber_rate=security.RateLimit.of(args.subscriber_requests_per_s, args.subscriber_burst),
        calls_max=args.calls_max,
    )


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_serve(args) -> int:
    from grid.server import Grid

    if bool(args.tls_cert) != bool(args.tls_key):
        print("grid serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        config = _config(args)
        security.check_listener(config.host, config.tls, config.plaintext, config.plaintext_any_host,
                                config.auth.enabled, config.anonymous_any_host)
    except security.ConfigError as error:
        print(f"grid serve: {error}", file=sys.stderr)
        return 2
    _install_uvloop()

    def ready(grid) -> None:
        print(
            f"grid listening on {config.host}:{grid.port} (data: {config.data_dir}, shards: {config.shards}); "
            "Ctrl-C or SIGTERM stops it",
            flush=True,
        )

    asyncio.run(Grid(config).serve_until_signalled(on_ready=ready))
    print("grid stopped", flush=True)
    return 0


def cmd_demo(args) -> int:
    from grid import demo

    return demo.run(pathlib.Path(args.data_dir) if args.data_dir else None)


def cmd_bench(args) -> int:
    from grid import bench

    if not 0 < args.seconds <= 600:
        print("grid bench: --seconds must be in (0, 600]", file=sys.stderr)
        return 2
    result = bench.run(args.seconds, args.concurrency, args.accounts, args.stream_operations, set(args.only))
    bench.print_table(result["rows"])
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    audits = [report.get("conservation_audit", "ok") for report in result["reports"].values()]
    return 0 if all(audit == "ok" for audit in audits) else 1


def cmd_auth_new_key(args) -> int:
    """A random 256-bit key; only its SHA-256 goes into the auth file."""
    import secrets

    key = "grid_" + secrets.token_urlsafe(32)
    entry = {"name": args.name, "tenant": args.tenant, "key_sha256": security.hash_key(key), "scopes": args.scope}
    print(f"API key (shown once; give it to {args.name} as GRID_API_KEY or x-api-key): {key}")
    print("auth file entry, under api_keys:")
    print(json.dumps(entry))
    return 0


def _client(args):
    from grid_client import ChargingClient, Credentials

    return ChargingClient(args.target, credentials=Credentials.from_environment())


def cmd_client(args) -> int:
    from grid_client import GridError

    with _client(args) as client:
        try:
            _print(args.call(client, args))
        except GridError as error:
            print(f"error: {error}" + (f" (field: {error.field})" if error.field else ""), file=sys.stderr)
            return 2
    return 0


def cmd_cluster_stop(args) -> int:
    from grid.controlplane import cluster

    config = GridConfig(data_dir=pathlib.Path(args.data_dir), shards=args.shards, ray_address=args.ray_address)
    cluster.start_ray(config)
    try:
        print(f"stopped {cluster.stop_grid_actors(config)} actors")
    finally:
        cluster.stop_ray()
    return 0


def _parse_slots(text: str) -> list[int]:
    slots = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        slots.extend(range(int(low), int(high or low) + 1))
    return slots


def cmd_cluster_move(args) -> int:
    from grid.controlplane import cluster

    config = GridConfig(data_dir=pathlib.Path(args.data_dir), ray_address=args.ray_address)
    cluster.start_ray(config)
    try:
        print(json.dumps(cluster.move_slots(config, _parse_slots(args.slots), args.target)))
    except cluster.RETRYABLE_ERRORS as error:
        print(f"error: the controller stopped during the move ({type(error).__name__}); restarted, it finishes "
              "the move itself (`grid cluster move-slots` again waits for it and reports)", file=sys.stderr)
        return 1
    finally:
        cluster.stop_ray()
    return 0


def cmd_catalog_apply(args) -> int:
    from grid import catalog
    from grid.frontdoor import convert
    from grid_client import GridError

    try:
        plans = catalog.load_file(args.file)
    except catalog.CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for plan in plans:
            print(f"{plan.tariff_plan_id}: valid, {len(plan.rates)} rates")
        return 0
    with _client(args) as client:
        for plan in plans:
            try:
                reply = client.put_tariff_request(convert.put_tariff_request(plan))
            except GridError as error:
                print(f"error: plan {plan.tariff_plan_id!r}: {error}"
                      + (f" (field: {error.field})" if error.field else ""), file=sys.stderr)
                return 2
            print(f"{plan.tariff_plan_id}: version {reply.version}")
    return 0


def cmd_catalog_get(args) -> int:
    import yaml

    from grid import catalog
    from grid.frontdoor import convert
    from grid_client import GridError

    plans = []
    with _client(args) as client:
        for plan_id in args.plans:
            try:
                reply = client.get_tariff(plan_id, args.version)
            except GridError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            if not reply.HasField("plan"):
                print(f"error: plan {plan_id!r}: {pb_result_name(reply.result)}", file=sys.stderr)
                return 2
            plans.append(convert.plan_from_message(reply.plan, "default"))
    document = catalog.dump_document(plans)
    print(json.dumps(document, indent=2) if args.json else yaml.safe_dump(document, sort_keys=False), end="")
    return 0


def pb_result_name(result: int) -> str:
    from charging.v1 import charging_pb2 as pb

    return pb.Result.Name(result)


def _snapshot_dict(info) -> dict:
    return {
        "snapshot_id": info.snapshot_id, "created_at_ms": info.created_at_ms, "label": info.label,
        "path": str(info.path),
        "shards": [{"shard_id": p.shard_id, "epoch": p.epoch, "journal_sequence": p.journal_sequence}
                   for p in info.shards],
    }


def cmd_snapshot_list(args) -> int:
    if args.data_dir is None:
        args.call = lambda client, a: client.list_snapshots()
        return cmd_client(args)
    from grid.storage import snapshots

    print(json.dumps([_snapshot_dict(info) for info in snapshots.list_snapshots(pathlib.Path(args.data_dir))],
                     indent=2))
    return 0


def cmd_snapshot_restore(args) -> int:
    if args.data_dir is None:
        args.call = lambda client, a: client.restore_snapshot(a.snapshot_id, str(pathlib.Path(a.into).resolve()))
        return cmd_client(args)
    from grid.storage import snapshots

    try:
        info = snapshots.restore(pathlib.Path(args.data_dir), args.snapshot_id, pathlib.Path(args.into))
    except snapshots.SnapshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"snapshot": _snapshot_dict(info), "target_data_dir": args.into}, indent=2))
    return 0


def _parse_time_ms(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 instant (UTC unless it says)."""
    import datetime

    if text.isdigit():
        return int(text)
    try:
        instant = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected milliseconds or an ISO 8601 time") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=datetime.timezone.utc)
    return int(instant.timestamp() * 1000)


def cmd_dispute(args) -> int:
    """The journal chain as a tree (or JSON), each line with its trace and Jaeger link."""
    from grid import dispute
    from grid.domain.outcomes import JournalKind, Result
    from grid.domain.records import JournalRecord
    from grid_client import GridError

    with _client(args) as client:
        try:
            response = client.dispute(args.subscriber, args.request_id, args.charge_id, args.from_ms, args.to_ms,
                                      args.limit)
        except GridError as error:
            print(f"error: {error}" + (f" (field: {error.field})" if error.field else ""), file=sys.stderr)
            return 2
    events = []
    for e in response.events:
        record = JournalRecord(
            sequence=e.sequence, at_ms=e.at_ms, kind=JournalKind(e.kind), tenant="", subscriber_id=args.subscriber,
            request_id=e.request_id, result=Result(e.result), reference_id=e.reference_id,
            rating_group=e.rating_group, units=e.units, amount_micros=e.amount_micros,
            balance_before_micros=e.balance_before_micros, balance_after_micros=e.balance_after_micros,
            reserved_before_micros=e.reserved_before_micros, reserved_after_micros=e.reserved_after_micros,
            rounding_residue_picos=e.rounding_residue_picos, tariff_plan_id=e.tariff_plan_id,
            tariff_version=e.tariff_version, late=e.late, overage_micros=e.overage_micros, trace_id=e.trace_id,
            session_id=e.session_id, span_id=e.span_id, reservation_id=e.reservation_id, status=e.status,
            bucket_draws=tuple((draw.bucket_id, draw.amount) for draw in e.bucket_draws),
            bucket_units=e.bucket_units, bucket_micros=e.bucket_micros,
        )
        events.append(dispute.Event(record, e.depth, e.parent_sequence))
    base_url = args.jaeger_url if args.jaeger_url is not None else ""
    if args.json:
        urls = {e.sequence: e.trace_url for e in response.events}
        out = dispute.as_dicts(events, base_url)
        for item in out:
            item["trace_url"] = item["trace_url"] or urls.get(item["sequence"], "")
            del item["tenant"]  # the grid answers for the caller's tenant
        print(json.dumps({"subscriber_id": args.subscriber, "events": out, "truncated": response.truncated},
                         indent=2))
    else:
        text = dispute.render_text(events, base_url)
        if args.jaeger_url is None:  # the grid's own link for each line
            lines = text.splitlines()
            text = "\n".join(f"{line} {e.trace_url}" if e.trace_url else line
                             for line, e in zip(lines, response.events))
        print(text or "no journal records match")
        if response.truncated:
            print("(truncated: narrow the window)")
    return 0


def cmd_audit(args) -> int:
    """The reconciliation and leakage report as JSON; exit 1 when a check failed.
    Online through the grid, or offline over a stopped grid's (or a restored
    snapshot's) data directory."""
    if args.data_dir is None:
        from grid_client import GridError

        with _client(args) as client:
            try:
                response = client.audit()
            except GridError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        report = json.loads(response.report_json)
    else:
        from grid import audit
        from grid.storage.shard_store import ShardStore, StoreRefused

        data_dir = pathlib.Path(args.data_dir)
        shards = []
        for shard_id in range(json.loads((data_dir / "grid.json").read_text())["shards"]):
            try:
                store = ShardStore(data_dir / f"shard-{shard_id}", shard_id)
            except StoreRefused as error:
                print(f"error: {error} (stop the grid, or audit a restored snapshot)", file=sys.stderr)
                return 2
            try:
                shards.append(audit.audit_shard(shard_id, list(store.load_records()), store.journal()))
            finally:
                store.close()
        report = audit.overall(shards)
    if args.cdrs is not None:
        report["cdr_problems"] = _check_cdr_file(args)
        report["ok"] = report["ok"] and not report["cdr_problems"]
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def _check_cdr_file(args) -> list[str]:
    """An exported CDR file (JSON lines or CSV) against the CDRs the journals give now."""
    import csv

    from grid import audit, cdr

    text = pathlib.Path(args.cdrs).read_text()
    if text.startswith("cdr_id,"):
        exported = list(csv.DictReader(text.splitlines()))
    else:
        exported = [json.loads(line) for line in text.splitlines() if line.strip()]
    journal_cdrs: list[dict] = []
    if args.data_dir is None:
        with _client(args) as client:
            cursor = ""
            while True:
                page = client.export_cdrs(cursor)
                journal_cdrs += [cdr.from_message(c) for c in page.cdrs]
                cursor = page.next_cursor
                if not page.more:
                    break
    else:
        from grid.storage.shard_store import ShardStore

        data_dir = pathlib.Path(args.data_dir)
        for shard_id in range(json.loads((data_dir / "grid.json").read_text())["shards"]):
            store = ShardStore(data_dir / f"shard-{shard_id}", shard_id)
            try:
                journal_cdrs += [c for c in (cdr.cdr_of(shard_id, r) for r in store.journal()) if c is not None]
            finally:
                store.close()
    return audit.check_cdrs(exported, journal_cdrs)


def cmd_cdr_export(args) -> int:
    """CDRs as JSON lines or CSV on stdout, page after page, until the journals'
    end or --limit; the cursor to resume from goes to stderr as `cursor: ...`."""
    from grid import cdr
    from grid_client import GridError

    cursor, written = args.since, 0
    with _client(args) as client:
        while written < args.limit:
            try:
                page = client.export_cdrs(cursor, min(10_000, args.limit - written))
            except GridError as error:
                print(f"error: {error}" + (f" (field: {error.field})" if error.field else ""), file=sys.stderr)
                return 2
            records = [cdr.from_message(c) for c in page.cdrs]
            if args.format == "csv":
                sys.stdout.write(cdr.to_csv(records, header=written == 0))
            else:
                for record in records:
                    print(json.dumps({**record, "kind": cdr.KIND_NAMES.get(record["kind"], record["kind"])}))
            written += len(records)
            cursor = page.next_cursor
            if not page.more:
                break
    sys.stdout.flush()
    print(f"cursor: {cursor}", file=sys.stderr)
    return 0


def cmd_watch(args) -> int:
    """Print notifications as JSON lines until --count arrived or --timeout-s passed."""
    import threading

    from grid_client import GridError

    finished, timed_out = threading.Event(), threading.Event()
    with _client(args) as client:
        def stop_at_timeout() -> None:
            if not finished.wait(args.timeout_s):
                timed_out.set()
                client.close()  # ends the blocked stream

        threading.Thread(target=stop_at_timeout, daemon=True).start()
        printed = 0
        try:
            for notification in getattr(client, args.stream)(args.client_id, args.cursor):
                print(json.dumps(_as_dict(notification)), flush=True)
                printed += 1
                if printed >= args.count:
                    break
        except (GridError, ValueError) as error:  # ValueError: the stream's channel closed at the timeout
            if not timed_out.is_set():
                print(f"error: {error}", file=sys.stderr)
                return 2
        finally:
            finished.set()
    return 0


def _parse_bucket(text: str) -> dict:
    """UNIT,AMOUNT[,WEIGHT[,UNTIL[,RG+RG[,PREFIX+PREFIX]]]] -> BucketGrant fields."""
    parts = text.split(",")
    units = {"money": 1, "seconds": 2, "bytes": 3, "events": 4}
    if len(parts) < 2 or parts[0].lower() not in units:
        raise argparse.ArgumentTypeError("UNIT,AMOUNT with UNIT one of money, seconds, bytes, events")
    try:
        bucket = {"unit": units[parts[0].lower()], "amount": int(parts[1])}
        if len(parts) > 2 and parts[2]:
            bucket["weight"] = int(parts[2])
        if len(parts) > 3 and parts[3]:
            bucket["valid_until_ms"] = _parse_time_ms(parts[3])
        if len(parts) > 4 and parts[4]:
            bucket["rating_groups"] = [int(group) for group in parts[4].split("+")]
        if len(parts) > 5 and parts[5]:
            bucket["destination_prefixes"] = parts[5].split("+")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"bad bucket {text!r}: {error}") from None
    return bucket


# RFC 4006 Service-Identifier: the service within the rating group, for rates that name one.
_SERVICE_FLAG = (("--service",), {"type": int, "default": 0, "help": "service identifier within the rating group "
                                                                      "(default: none)"})


def _add_client_command(commands, name, help_text, call, arguments=(), *, request_id=True):
    parser = commands.add_parser(name, help=help_text)
    for flags, options in arguments:
        parser.add_argument(*flags, **options)
    if request_id:
        parser.add_argument("--request-id", default=None, help="reuse to retry a mutating call exactly once")
    parser.set_defaults(handler=cmd_client, call=call)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grid", description="The charging grid: a real-time online charging system")
    parser.add_argument("--target", default="127.0.0.1:50051", help="grid address for client commands")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the grid (embedded local Ray by default)")
    serve.add_argument("--data-dir", default="grid-data")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--shards", type=int, default=2)
    serve.add_argument("--ray-address", default=None, help="join an existing Ray cluster instead of starting one "
                       "(several front doors may join one grid; its shards outlive them)")
    serve.add_argument("--shard-resource", default="", help="a custom Ray resource each shard needs one of "
                       "(e.g. grid_shard, declared by the nodes meant for shards)")
    defaults = GridConfig()
    serve.add_argument("--batch-operations-max", type=int, default=defaults.batch_operations_max,
                       help="operations in one frame of the stream to a shard, and in one group commit")
    serve.add_argument("--batches-in-flight-max", type=int, default=defaults.batches_in_flight_max,
                       help="frames sent to one shard and not yet answered")
    serve.add_argument("--shard-port-base", type=int, default=defaults.shard_port_base,
                       help="shard N listens on BASE+2N (front doors) and BASE+2N+1 (its public ChargingService); "
                            "0: ports the kernel picks")
    serve.add_argument("--no-shard-listeners", dest="shard_listeners_public", action="store_false",
                       help="shards serve no public ChargingService (direct routing off: front doors only)")
    serve.add_argument("--queue-operations-max", type=int, default=defaults.queue_operations_max,
                       help="operations waiting per shard before RESOURCE_EXHAUSTED")
    serve.add_argument("--validity-time-s", type=int, default=defaults.limits.validity_time_s,
                       help="validity of a grant (RFC 4006 Validity-Time)")
    serve.add_argument("--expiry-grace-s", type=int, default=defaults.limits.expiry_grace_s,
                       help="how long an unresolved hold outlives its validity before it expires")
    serve.add_argument("--snapshot-interval-s", type=float, default=defaults.snapshot_interval_s,
                       help="take a snapshot of every shard this often (0: only on request)")
    serve.add_argument("--snapshot-retention-count", type=int, default=defaults.snapshot_retention_count,
                       help="snapshots kept; the oldest beyond this are deleted")
    serve.add_argument("--sweep-interval-s", type=float, default=defaults.sweep_interval_s,
                       help="how often an idle shard is swept for due holds")
    serve.add_argument("--jaeger-url", default=os.environ.get("GRID_JAEGER_URL", defaults.jaeger_url),
                       help="Jaeger UI base URL for the trace links of disputes")
    serve.add_argument("--metrics-port", type=int, default=defaults.metrics_port,
                       help="serve Prometheus metrics on http://HOST:PORT/metrics (0: none; 9464 is usual)")
    serve.add_argument("--trace-export-ratio", type=float, default=defaults.tracing.export_ratio,
                       help="share of ordinary operations whose spans are exported (denials, errors, overages, "
                            "late usage and replays always are); exporters come from the OTEL_* variables")
    serve.add_argument("--span-subscriber-ids", choices=["plain", "hashed", "none"],
                       default=defaults.tracing.subscriber_ids,
                       help="subscriber ids in spans: plain, hashed with GRID_SUBSCRIBER_ID_SALT, or none")
    secure = serve.add_argument_group("security (README: Secure deployment)")
    secure.add_argument("--plaintext", action="store_true",
                        help="serve without TLS (allowed on loopback only, unless --plaintext-any-host)")
    secure.add_argument("--plaintext-any-host", action="store_true",
                        help="allow plaintext on a non-loopback host (a mesh sidecar encrypts)")
    secure.add_argument("--tls-cert", default="", help="PEM certificate chain of the front door")
    secure.add_argument("--tls-key", default="", help="PEM private key of the front door")
    secure.add_argument("--tls-client-ca", default="",
                        help="PEM CA bundle: require client certificates signed by it (mutual TLS)")
    secure.add_argument("--auth-file", default="", help="YAML or JSON with api_keys, jwt and per-tenant rates")
    secure.add_argument("--anonymous-any-host", action="store_true",
                        help="serve a non-loopback host with no credentials configured (everyone trusted)")
    secure.add_argument("--tenant-requests-per-s", type=float, default=0.0,
                        help="requests per second per tenant (0: unlimited; the auth file may override)")
    secure.add_argument("--tenant-burst", type=int, default=0, help="requests above the rate a tenant may burst")
    secure.add_argument("--subscriber-requests-per-s", type=float, default=0.0,
                        help="requests per second per subscriber (0: unlimited)")
    secure.add_argument("--subscriber-burst", type=int, default=0)
    secure.add_argument("--calls-max", type=int, default=defaults.calls_max,
                        help="calls served at once, streams included (RESOURCE_EXHAUSTED past it)")
    serve.set_defaults(handler=cmd_serve)

    auth = commands.add_parser("auth", help="credentials").add_subparsers(dest="auth_command", required=True)
    new_key = auth.add_parser("new-key", help="make an API key: prints the key once, and the auth-file entry")
    new_key.add_argument("--name", required=True, help="who holds it (shown in the admin log)")
    new_key.add_argument("--tenant", required=True)
    new_key.add_argument("--scope", action="append", required=True, choices=sorted(security.ALL_SCOPES))
    new_key.set_defaults(handler=cmd_auth_new_key)

    from grid.storm import cli as storm_cli

    storm_cli.register(commands)  # grid load SCENARIO

    bench = commands.add_parser("bench", help="speed as ratios against ceilings measured in the same run")
    bench.add_argument("--seconds", type=float, default=10.0, help="per measured phase (at most 600)")
    bench.add_argument("--concurrency", type=int, default=64)
    bench.add_argument("--accounts", type=int, default=1_000_000, help="idle accounts in the memory/restart step")
    bench.add_argument("--stream-operations", type=int, default=200_000)
    bench.add_argument("--only", action="append", default=[], choices=["dataplane", "unary", "latency", "stream", "tracing", "scale", "rating"],
                       help="run only these steps (repeatable)")
    bench.add_argument("--json", default="", help="write every figure and each benchmark's report here")
    bench.set_defaults(handler=cmd_bench)

    demo = commands.add_parser("demo", help="serve on a scratch directory, drive a small workload, print it")
    demo.add_argument("--data-dir", default=None, help="default: a temporary directory")
    demo.set_defaults(handler=cmd_demo)

    grid_cluster = commands.add_parser("cluster", help="a grid on a joined Ray cluster").add_subparsers(
        dest="cluster_command", required=True)
    cluster_stop = grid_cluster.add_parser("stop", help="close and stop the grid's shards and controller (they "
                                                        "outlive the front doors on a joined cluster)")
    cluster_stop.add_argument("--ray-address", required=True)
    cluster_stop.add_argument("--data-dir", default="grid-data")
    cluster_stop.add_argument("--shards", type=int, default=2)
    cluster_stop.set_defaults(handler=cmd_cluster_stop)
    move = grid_cluster.add_parser("move-slots", help="move slots to a shard while traffic flows (no "
                                                      "acknowledged operation lost, none applied twice)")
    move.add_argument("--ray-address", required=True)
    move.add_argument("--data-dir", default="grid-data")
    move.add_argument("--slots", required=True, help="e.g. 0-99,512")
    move.add_argument("--to", type=int, required=True, dest="target", help="the shard that takes them")
    move.set_defaults(handler=cmd_cluster_move)

    catalog = commands.add_parser("catalog", help="tariff plans from a YAML or JSON file").add_subparsers(
        dest="catalog_command", required=True)
    apply = catalog.add_parser("apply", help="validate every plan of FILE, then put them (a new version of each "
                                             "plan that changed)")
    apply.add_argument("file", type=pathlib.Path)
    apply.add_argument("--dry-run", action="store_true", help="validate only")
    apply.set_defaults(handler=cmd_catalog_apply)
    catalog_get = catalog.add_parser("get", help="print plans in the file format (YAML; --json for JSON)")
    catalog_get.add_argument("plans", nargs="+", metavar="PLAN")
    catalog_get.add_argument("--version", type=int, default=0, help="a version (default: the latest)")
    catalog_get.add_argument("--json", action="store_true")
    catalog_get.set_defaults(handler=cmd_catalog_get)

    tariff = commands.add_parser("tariff", help="tariff plans").add_subparsers(dest="tariff_command", required=True)
    _add_client_command(
        tariff, "put", "create or replace a plan",
        lambda c, a: c.put_tariff(a.plan, a.rate, a.counter, a.control),
        [(("plan",), {}), (("--rate",), {"type": _parse_rate, "action": "append", "required": True}),
         (("--counter",), {"type": _parse_counter, "action": "append", "default": [],
                           "help": "a policy counter: ID:WHAT:PERIOD:BASE_STATUS:AT=STATUS[,AT=STATUS]"}),
         (("--control",), {"type": _parse_control, "action": "append", "default": [],
                           "help": "a fraud or policy control: ID:KIND:LIMIT:WINDOW_S:ACTION[:RG+RG]"})],
    )
    _add_client_command(tariff, "get", "show a plan", lambda c, a: c.get_tariff(a.plan), [(("plan",), {})])

    account = commands.add_parser("account", help="accounts").add_subparsers(dest="account_command", required=True)
    _add_client_command(
        account, "create", "open an account",
        lambda c, a: c.create_account(a.subscriber, a.currency, a.tariff, a.credit_limit_micros,
                                      request_id=a.request_id),
        [(("subscriber",), {}), (("--currency",), {"required": True}), (("--tariff",), {"required": True}),
         (("--credit-limit-micros",), {"type": int, "default": 0})],
    )
    _add_client_command(account, "bill", "charges, refunds and usage of a billing cycle (calendar month, UTC)",
                        lambda c, a: c.get_billing_cycle(a.subscriber, a.at_ms),
                        [(("subscriber",), {}), (("--at",), {"dest": "at_ms", "type": _parse_time_ms, "default": 0,
                                                              "help": "a time in the cycle (default: now)"})],
                        request_id=False)
    _add_client_command(account, "get", "show an account and its holds",
                        lambda c, a: c.get_account(a.subscriber), [(("subscriber",), {})])
    _add_client_command(
        account, "state", "set ACTIVE, SUSPENDED or CLOSED",
        lambda c, a: c.set_account_state(a.subscriber, {"ACTIVE": 1, "SUSPENDED": 2, "CLOSED": 3}[a.state],
                                         request_id=a.request_id),
        [(("subscriber",), {}), (("state",), {"choices": ["ACTIVE", "SUSPENDED", "CLOSED"]})],
    )

    _add_client_command(
        commands, "topup", "add money, or a bucket (--bucket)",
        lambda c, a: c.top_up(a.subscriber, a.amount_micros, request_id=a.request_id, bucket=a.bucket),
        [(("subscriber",), {}), (("amount_micros",), {"type": int, "nargs": "?", "default": 0}),
         (("--bucket",), {"type": _parse_bucket, "default": None,
                          "help": "UNIT,AMOUNT[,WEIGHT[,UNTIL[,RG+RG[,PREFIX+PREFIX]]]], UNIT one of money "
                                  "(AMOUNT in micros), seconds, bytes, events; UNTIL an ISO instant or ms"})],
    )
    _add_client_command(
        commands, "reserve", "hold money for units of a rating group",
        lambda c, a: c.reserve(a.subscriber, a.session, a.rating_group, a.units, request_id=a.request_id,
                               destination=a.destination, roaming_zone=a.zone, service_identifier=a.service),
        [(("subscriber",), {}), (("rating_group",), {"type": int}), (("units",), {"type": int}),
         (("--session",), {"default": "cli"}), (("--destination",), {"default": "", "help": "E.164 digits"}),
         (("--zone",), {"default": "", "help": "roaming zone"}), _SERVICE_FLAG],
    )
    _add_client_command(
        commands, "quote", "advice of charge: what usage would cost and the units the balance buys",
        lambda c, a: c.quote(a.subscriber, a.rating_group, a.units, destination=a.destination, roaming_zone=a.zone,
                             at_ms=a.at_ms, service_identifier=a.service),
        [(("subscriber",), {}), (("rating_group",), {"type": int}), (("units",), {"type": int, "nargs": "?",
                                                                                  "default": 0}),
         (("--destination",), {"default": ""}), (("--zone",), {"default": ""}), _SERVICE_FLAG,
         (("--at",), {"dest": "at_ms", "type": _parse_time_ms, "default": 0, "help": "when (default: now)"})],
        request_id=False,
    )
    _add_client_command(
        commands, "debit", "charge used units (against a reservation, or directly)",
        lambda c, a: c.debit(a.subscriber, a.units, reservation_id=a.reservation, rating_group=a.rating_group,
                             final=a.final, request_id=a.request_id, destination=a.destination, roaming_zone=a.zone,
                             usage_started_at_ms=a.started_ms, service_identifier=a.service),
        [(("subscriber",), {}), (("units",), {"type": int}), (("--reservation",), {"default": ""}),
         (("--rating-group",), {"type": int, "default": 0}), (("--final",), {"action": "store_true"}),
         (("--destination",), {"default": "", "help": "direct debits: E.164 digits"}),
         (("--zone",), {"default": "", "help": "direct debits: roaming zone"}), _SERVICE_FLAG,
         (("--started",), {"dest": "started_ms", "type": _parse_time_ms, "default": 0,
                           "help": "direct debits: when the usage began (default: it ended now)"})],
    )
    _add_client_command(
        commands, "release", "return a hold",
        lambda c, a: c.release(a.subscriber, a.reservation, request_id=a.request_id),
        [(("subscriber",), {}), (("reservation",), {})],
    )
    _add_client_command(
        commands, "refund", "credit back part or all of a charge",
        lambda c, a: c.refund(a.subscriber, a.charge, a.amount_micros, request_id=a.request_id),
        [(("subscriber",), {}), (("charge",), {}), (("amount_micros",), {"type": int})],
    )
    session = commands.add_parser(
        "session", help="charging sessions: several rating groups per request, re-grants, release"
    ).add_subparsers(dest="session_command", required=True)
    unit_flag = (("--unit",), {"type": _parse_unit, "action": "append", "default": [],
                               "help": "RATING_GROUP:REQUESTED_UNITS[:USED_UNITS], once per rating group"})
    _add_client_command(
        session, "create", "open a session (CCR-I / Nchf create)",
        lambda c, a: c.create_session(a.subscriber, a.session, a.unit, a.sequence, notify_client_id=a.notify),
        [(("subscriber",), {}), (("session",), {}), unit_flag, (("--sequence",), {"type": int, "default": 0}),
         (("--notify",), {"default": "", "help": "client id that receives its notifications (grid watch)"})],
        request_id=False,
    )
    _add_client_command(
        session, "update", "report usage and ask for new quota (CCR-U / Nchf update)",
        lambda c, a: c.update_session(a.subscriber, a.session, a.sequence, a.unit),
        [(("subscriber",), {}), (("session",), {}), (("sequence",), {"type": int}), unit_flag],
        request_id=False,
    )
    _add_client_command(
        session, "release", "report final usage and close (CCR-T / Nchf release); --unit RG:0:USED",
        lambda c, a: c.release_session(a.subscriber, a.session, a.sequence, a.unit),
        [(("subscriber",), {}), (("session",), {}), (("sequence",), {"type": int}), unit_flag],
        request_id=False,
    )
    _add_client_command(session, "get", "show a session and its holds",
                        lambda c, a: c.get_session(a.subscriber, a.session),
                        [(("subscriber",), {}), (("session",), {})], request_id=False)
    audit_command = commands.add_parser(
        "audit", help="reconcile every shard's journal with balances and holds; report leakage (exit 1 on a failure)")
    audit_command.add_argument("--data-dir", default=None,
                               help="audit this stopped grid's (or restored snapshot's) data offline instead")
    audit_command.add_argument("--cdrs", default=None,
                               help="also check this exported CDR file (grid cdr export output) against the journals")
    audit_command.set_defaults(handler=cmd_audit)

    cdrs = commands.add_parser("cdr", help="rated-event records").add_subparsers(dest="cdr_command", required=True)
    export = cdrs.add_parser("export", help="CDRs (charges, refunds, expiries, unrated usage) from every shard's "
                                            "journal; resumable with --since")
    export.add_argument("--since", default="", help="the cursor a previous export printed (default: from the start)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--limit", type=int, default=sys.maxsize, help="at most this many records")
    export.set_defaults(handler=cmd_cdr_export)

    disputes = commands.add_parser(
        "dispute", help="why was this charged: the journal chain behind a request, a charge or a time window")
    disputes.add_argument("subscriber")
    which = disputes.add_mutually_exclusive_group()
    which.add_argument("--request-id", default="")
    which.add_argument("--charge-id", default="")
    disputes.add_argument("--from", dest="from_ms", type=_parse_time_ms, default=0,
                          help="window start: ms since the epoch or ISO 8601 (UTC unless it says)")
    disputes.add_argument("--to", dest="to_ms", type=_parse_time_ms, default=0, help="window end (default: now)")
    disputes.add_argument("--limit", type=int, default=0, help="at most this many events (default 10,000)")
    disputes.add_argument("--json", action="store_true", help="JSON instead of the tree")
    disputes.add_argument("--jaeger-url", default=None,
                          help="Jaeger UI base URL for the links (default: the grid's, from grid serve --jaeger-url)")
    disputes.set_defaults(handler=cmd_dispute)

    _add_client_command(commands, "counters", "a subscriber's policy counters and their status",
                        lambda c, a: c.get_counters(a.subscriber), [(("subscriber",), {})], request_id=False)
    policy = commands.add_parser(
        "policy", help="policy functions: subscribe to a subscriber's counters, watch their status"
    ).add_subparsers(dest="policy_command", required=True)
    _add_client_command(
        policy, "subscribe", "subscribe CLIENT to a subscriber's counters (all unless --counter)",
        lambda c, a: c.subscribe(a.subscriber, a.client_id, a.counter, request_id=a.request_id),
        [(("subscriber",), {}), (("client_id",), {}), (("--counter",), {"action": "append", "default": []})],
    )
    _add_client_command(
        policy, "unsubscribe", "end CLIENT's subscription to a subscriber",
        lambda c, a: c.unsubscribe(a.subscriber, a.client_id, request_id=a.request_id),
        [(("subscriber",), {}), (("client_id",), {})],
    )
    policy_watch = policy.add_parser("watch", help="print CLIENT's counter status changes as JSON lines")
    policy_watch.add_argument("client_id")
    policy_watch.add_argument("--cursor", default="", help="resume after this notification's cursor")
    policy_watch.add_argument("--count", type=int, default=sys.maxsize, help="stop after this many")
    policy_watch.add_argument("--timeout-s", type=float, default=3600.0, help="stop after this long")
    policy_watch.set_defaults(handler=cmd_watch, stream="watch_status")

    watch = commands.add_parser("watch", help="print re-authorisations and aborts for a client's sessions")
    watch.add_argument("client_id")
    watch.add_argument("--cursor", default="", help="resume after this notification's cursor")
    watch.add_argument("--count", type=int, default=sys.maxsize, help="stop after this many")
    watch.add_argument("--timeout-s", type=float, default=3600.0, help="stop after this long")
    watch.set_defaults(handler=cmd_watch, stream="watch_notifications")

    snapshot = commands.add_parser(
        "snapshot", help="snapshots of every shard: create, list, restore into a fresh data directory",
    ).add_subparsers(dest="snapshot_command", required=True)
    _add_client_command(snapshot, "create", "checkpoint every shard of the running grid",
                        lambda c, a: c.create_snapshot(a.label), [(("--label",), {"default": ""})])
    listing = snapshot.add_parser("list", help="snapshots, oldest first")
    listing.add_argument("--data-dir", default=None,
                         help="read them from this data directory (no server needed) instead of --target")
    listing.set_defaults(handler=cmd_snapshot_list)
    restore = snapshot.add_parser("restore", help="copy a snapshot into a fresh data directory")
    restore.add_argument("snapshot_id")
    restore.add_argument("--into", required=True, help="the new data directory (must not exist or be empty)")
    restore.add_argument("--data-dir", default=None,
                         help="restore from this data directory (no server needed) instead of via --target")
    restore.set_defaults(handler=cmd_snapshot_restore)

    _add_client_command(commands, "balance", "balance, held and available money",
                        lambda c, a: c.balance(a.subscriber), [(("subscriber",), {})])
    _add_client_command(commands, "tx", "what became of a request id",
                        lambda c, a: c.get_transaction(a.subscriber, a.request_id_to_find),
                        [(("subscriber",), {}), (("request_id_to_find",), {"metavar": "REQUEST_ID"})])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
