"""Event storms against the session's real grid (grid.storm): every scenario runs
for a few seconds at a low rate and must pass its conservation audit with
replies received; a rerun provisions nothing twice and its audit still adds
up; money moved behind the generator's back fails the audit; the CLI writes
its report and exits 0, or 1 when the run failed."""

import asyncio
import json
import uuid

import pytest
from charging.v1 import charging_pb2 as pb

from grid.storm import cli, provisioning, scenarios
from grid.storm.generator import LoadSettings
from grid.storm.runner import run_storm
from grid_client import AsyncChargingClient

pytestmark = pytest.mark.slow


def storm(embedded, scenario, seconds: float = 2.5, before_audit=None, **settings) -> dict:
    load = LoadSettings(target=embedded.target, seconds=seconds, **settings)
    with asyncio.Runner() as runner:
        return runner.run(run_storm(scenario, load, before_audit=before_audit))


def assert_passed(report: dict) -> None:
    audit = report["audit"]
    assert audit["ok"], (audit["problems"], audit["mismatches"])
    assert report["ok"], (report["checks"], report["flows"])
    assert report["rate_per_s"]["achieved"] > 0 and report["requests"]["replied"] > 0
    assert audit["grid_audit"]["ok"] and audit["held_after_micros"] == 0
    assert audit["subscribers_touched"] > 0 and audit["charged_micros"] > 0
    assert audit["balance_after_micros"] == (audit["balance_before_micros"] - audit["charged_micros"]
                                             + audit["refunded_micros"])


def unique(scenario_type):
    """The scenario under a name of its own: its own plan and subscribers on the shared grid."""
    return type(scenario_type.__name__, (scenario_type,), {"name": f"{scenario_type.name}-{uuid.uuid4().hex[:6]}"})


def test_data_sessions(embedded):
    report = storm(embedded, scenarios.DataSessions(scenarios.DataSessionsParams(
        subscribers=20, rate_per_s=10, update_interval_s=0.5, updates=2)), seconds=3)
    assert_passed(report)
    results = report["results"]
    creates = results["CreateSession SUCCESS"]
    assert creates > 10 and results["UpdateSession SUCCESS"] > creates
    # Each session asked for 2 to 5 rating groups, each answered on its own.
    assert 2 * creates <= report["unit_results"]["CreateSession SUCCESS"] <= 5 * creates
    assert results.get("ReleaseSession SUCCESS", 0) + report["wind_down_results"].get("ReleaseSession SUCCESS", 0) \
        == creates


def test_voice_calls(embedded):
    report = storm(embedded, scenarios.VoiceCalls(scenarios.VoiceCallsParams(
        subscribers=20, rate_per_s=10, chunk_interval_s=0.3)))
    assert_passed(report)
    reserves = report["results"]["Reserve SUCCESS"]
    debits = report["results"].get("Debit SUCCESS", 0) + report["wind_down_results"].get("Debit SUCCESS", 0)
    assert reserves > report["arrivals"]["offered"]  # calls longer than a chunk reserved again
    assert debits == reserves  # a final debit per chunk at hang-up


def test_sms_over_charge_streams(embedded):
    report = storm(embedded, scenarios.Sms(scenarios.SmsParams(
        subscribers=20, rate_per_s=40, refund_percent=30, delivery_report_s=0.2)), stream=True, streams=2)
    assert_passed(report)
    assert report["results"]["Debit SUCCESS"] == report["arrivals"]["offered"]
    assert report["audit"]["refunded_micros"] > 0 and report["audit"]["refunded_micros"] % 90_000 == 0


def test_iot_storm(embedded):
    report = storm(embedded, scenarios.IotStorm(scenarios.IotStormParams(
        devices=300, accounts=20, burst_period_s=1.0, burst_spread_s=0.3)))
    assert_passed(report)
    assert report["schedule"]["kind"] == "bursts" and report["arrivals"]["offered"] == 900  # 3 bursts
    served = report["results"].get("Debit SUCCESS", 0)
    assert served + report["arrivals"]["shed_by_generator"] + report["requests"]["failed"] == 900
    assert report["audit"]["charged_micros"] == 10 * served  # 200 bytes: one started kB, 10 micros


def test_reauth_wave(embedded):
    report = storm(embedded, scenarios.ReauthWave(scenarios.ReauthWaveParams(
        sessions=100, subscribers=20, wave_interval_s=0.8, waves=2)), seconds=3)
    assert_passed(report)
    assert report["results"]["CreateSession SUCCESS"] == 100
    assert report["results"]["UpdateSession SUCCESS"] == 200  # two waves of every session
    assert report["details"]["wave_interval_s"] == 0.8


def test_failover_replay(embedded):
    scenario = scenarios.FailoverReplay(scenarios.FailoverReplayParams(
        subscribers=20, rate_per_s=20, update_after_s=0.3, failover_at_s=1.5, release_after_s=0.5))
    report = storm(embedded, scenario)
    assert_passed(report)
    check = report["checks"]["replays_answered_as_originals"]
    assert check["ok"] and check["replays_sent"] == report["arrivals"]["offered"] > 10
    assert check["replayed_as_original"] == check["replays_sent"]


def test_hot_subscribers(embedded):
    report = storm(embedded, scenarios.HotSubscribers(scenarios.HotSubscribersParams(
        subscribers=100, rate_per_s=60, zipf_s=1.2, hold_s=0.2)))
    assert_passed(report)
    assert report["details"]["hottest_subscriber_share"] > 0.1  # uniform would give 0.01


def test_calls_cut_off_by_their_deadline_are_settled_and_the_books_still_add_up(embedded):
    # Deadlines shorter than the grid's reply time: many calls end unknown, some of them
    # applied. GetTransaction settles each, the holds they left are released, and the
    # audit must still add up to the micro.
    # The grid's reply time varies with the machine: shorter deadlines until some calls are
    # cut off and some of those were applied (every run's books must add up all the same).
    for timeout_s in (0.008, 0.004, 0.002, 0.001):
        report = storm(embedded, unique(scenarios.VoiceCalls)(scenarios.VoiceCallsParams(
            subscribers=10, rate_per_s=40, chunk_interval_s=0.2)), seconds=2, timeout_s=timeout_s)
        assert_passed(report)
        settle = report["audit"]["settle"]
        if report["requests"]["failed"] > 0 and settle["resolved_applied"] > 0:
            break
    assert report["requests"]["failed"] > 0 and settle["unknown_outcomes"] > 0
    assert settle["resolved_applied"] > 0 and settle["holds_released"] > 0 and settle["unresolved"] == 0
    assert_passed(report)


def test_a_rerun_provisions_nothing_twice_and_still_adds_up(embedded):
    scenario = unique(scenarios.Sms)(scenarios.SmsParams(subscribers=10, rate_per_s=30, funds_micros=5_000_000))
    ids = [scenario.subscriber_id(index) for index in range(10)]

    async def provision_twice():
        async with AsyncChargingClient(embedded.target) as client:
            first = await scenario.provision(client)
            second = await scenario.provision(client)
            return first, second, await provisioning.balances(client, ids)

    with asyncio.Runner() as runner:
        first, second, balances = runner.run(provision_twice())
    assert (first["accounts_created"], first["top_ups_applied"]) == (10, 10)
    assert (second["accounts_created"], second["accounts_replayed"]) == (0, 10)
    assert (second["top_ups_applied"], second["top_ups_replayed"]) == (0, 10)
    assert set(balances.values()) == {(5_000_000, 0)}  # funded once
    # A whole run again: provisioning replays, and the audit starts from the balances the first left.
    one, two = storm(embedded, scenario, seconds=1.5), storm(embedded, scenario, seconds=1.5)
    assert_passed(one)
    assert_passed(two)
    assert two["provisioning"]["top_ups_applied"] == 0
    assert two["audit"]["balance_before_micros"] < 10 * 5_000_000


def test_money_moved_behind_the_generators_back_fails_the_audit(embedded):
    moved = {}

    async def tamper(ledger, client):
        victim, holder = sorted(ledger.touched)[:2]
        await client.top_up(victim, 1_234)  # money nobody in the run asked for
        hold = await client.reserve(holder, "behind-the-back", scenarios.SMS, 2)  # and a hold left open
        assert hold.result == pb.SUCCESS
        moved.update(victim=victim, holder=holder)

    report = storm(embedded, unique(scenarios.Sms)(scenarios.SmsParams(subscribers=5, rate_per_s=30)), seconds=1.5,
                   before_audit=tamper)
    audit = report["audit"]
    assert not report["ok"] and not audit["ok"]
    assert audit["mismatches_total"] == 2
    found = {m["subscriber_id"]: m for m in audit["mismatches"]}
    assert found[moved["victim"]]["difference_micros"] == 1_234
    assert found[moved["holder"]]["held_micros"] == 180_000
    assert audit["grid_audit"]["ok"]  # the grid's books are consistent: only the run's books see the difference


def test_the_cli_writes_its_report_and_exits_by_the_verdict(embedded, tmp_path, capsys):
    out = tmp_path / "report.json"
    plot = tmp_path / "report.png"
    code = cli.main(["sms", "--target", embedded.target, "--seconds", "1.5", "--rate", "30", "--subscribers", "10",
                     "--quiet", "--json", str(out), "--plot", str(plot)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["ok"] and report["scenario"] == "sms" and report["series"]
    printed = capsys.readouterr()
    assert "conservation audit" in printed.out and "PASS" in printed.out
    assert plot.exists() or "matplotlib is not installed" in printed.err
