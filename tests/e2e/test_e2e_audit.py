"""`grid audit` and AdminService.Audit over a live grid: the journal of every
shard reconciles with its balances and holds, and the leakage report counts
what a scripted history did (late usage is tested in the core; here: unrated
usage, a refund, an expired hold on a grid whose holds expire in a second)."""

import json
import subprocess
import sys
import time

import pytest
from charging.v1 import charging_pb2 as pb

from e2e_support import SMS, VOICE, ServingGrid, open_account, put_plan
from grid_client import ChargingClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def audited_grid(embedded, tmp_path_factory):
    """A grid of its own (so the report counts only this module's history), holds expiring after 1 s."""
    from grid.domain.limits import CoreLimits

    grid = ServingGrid(tmp_path_factory.mktemp("grid-audit") / "grid-data", shards=2, sweep_interval_s=0.1,
                       limits=CoreLimits(validity_time_s=1, expiry_grace_s=0))
    yield grid
    grid.stop()


def test_a_live_grid_reconciles_and_reports_its_leakage(audited_grid):
    grid = audited_grid
    subscriber = open_account(grid.stubs, put_plan(grid.stubs))
    direct = grid.calls.debit(subscriber.id, 2, rating_group=SMS)
    grid.calls.refund(subscriber.id, direct.charge_id, 1_000)
    assert grid.calls.debit(subscriber.id, 3, rating_group=77).result == pb.RATING_FAILED
    hold = grid.calls.reserve(subscriber.id, 10, VOICE)
    with ChargingClient(grid.target) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.balance(subscriber.id).reserved_micros:
            time.sleep(0.1)
        time.sleep(0.5)  # the sweep has journaled the expiry
        response = client.audit()
    report = json.loads(response.report_json)
    assert response.ok and report["ok"], report
    assert report["leakage"]["unrated_usage"] == {"count": 1, "units": 3}
    assert report["leakage"]["refunds"] == {"count": 1, "micros": 1_000}
    assert report["leakage"]["expired_holds"] == {"count": 1, "micros": hold.held_micros}
    assert report["top_ups_micros"] - report["charges_micros"] + report["refunds_micros"] == report["balances_micros"]
    assert report["charges_micros"] == direct.charged_micros
    assert len(report["shards"]) == 2


def test_the_cli_prints_the_report_and_exits_0_when_it_reconciles(audited_grid):
    done = subprocess.run([sys.executable, "-m", "grid.cli", "--target", audited_grid.target, "audit"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_offline_audit_refuses_a_running_grids_data(audited_grid):
    done = subprocess.run([sys.executable, "-m", "grid.cli", "audit", "--data-dir",
                           str(audited_grid.grid.grid.config.data_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "audit a restored snapshot" in done.stderr


def test_an_exported_cdr_file_reconciles_and_a_missing_line_is_found(audited_grid, tmp_path):
    grid = audited_grid
    subscriber = open_account(grid.stubs, put_plan(grid.stubs))
    for _ in range(2):
        grid.calls.debit(subscriber.id, 1, rating_group=SMS)
    cli = [sys.executable, "-m", "grid.cli", "--target", grid.target]
    exported = subprocess.run(cli + ["cdr", "export", "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    whole = tmp_path / "cdrs.csv"
    whole.write_text(exported.stdout)
    done = subprocess.run(cli + ["audit", "--cdrs", str(whole)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["cdr_problems"] == [], done.stdout
    lines = exported.stdout.splitlines()
    mine = next(i for i, line in enumerate(lines) if subscriber.id in line)
    holed = tmp_path / "holed.csv"
    holed.write_text("\n".join(lines[:mine] + lines[mine + 1:]) + "\n")
    done = subprocess.run(cli + ["audit", "--cdrs", str(holed)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert any("not in the export" in p for p in json.loads(done.stdout)["cdr_problems"])
