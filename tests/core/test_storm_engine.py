"""The storm's engine and books without a grid (a fake transport whose replies
take their time): arrivals leave on schedule whatever the replies do (open
loop), the outstanding cap sheds arrivals instead of queueing them, the
request budget ends the load, a failed call stays unknown until settled, a
replay is never booked twice, and load only goes to loopback unless allowed."""

import asyncio
import json

import pytest
from charging.v1 import charging_pb2 as pb

from grid.storm import generator
from grid.storm.generator import CallFailed, Engine, LoadSettings, TargetRefused, check_target, is_loopback
from grid.storm.ledger import Ledger
from grid.storm.schedule import bursts, constant


class SlowSender:
    """Answers every debit after reply_s, charging 10 micros; records when each left."""

    def __init__(self, reply_s: float, fail_every: int = 0) -> None:
        self.reply_s = reply_s
        self.fail_every = fail_every
        self.sent_at: list[float] = []
        self.in_flight = 0
        self.in_flight_max = 0
        self.engine: Engine | None = None

    async def send(self, method, request, timeout_s):
        self.sent_at.append(self.engine.now_s())
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            await asyncio.sleep(self.reply_s)
        finally:
            self.in_flight -= 1
        if self.fail_every and len(self.sent_at) % self.fail_every == 0:
            raise CallFailed("DEADLINE_EXCEEDED")
        return pb.DebitResponse(result=pb.SUCCESS, charged_micros=10, charge_id=f"C{len(self.sent_at)}")


class OneDebit:
    """A scenario whose every arrival is one direct debit on subscriber s<index mod 3>."""

    async def flow(self, f) -> None:
        await f.call("Debit", pb.DebitRequest(request_id=f"{f.run_id}-{f.index}", subscriber_id=f"s{f.index % 3}",
                                              rating_group=3, used_units=1), f.start_s)


class Broken:
    async def flow(self, f) -> None:
        raise KeyError("a scenario bug")


def run(settings: LoadSettings, sender: SlowSender, rate_per_s: float, scenario=None) -> Engine:
    engine = Engine(settings, scenario or OneDebit(), sender, run_id="t")
    sender.engine = engine
    asyncio.run(engine.load(constant(rate_per_s, settings.seconds, settings.max_requests)))
    return engine


def test_arrivals_leave_on_schedule_however_slow_the_replies():
    sender = SlowSender(reply_s=0.3)
    engine = run(LoadSettings(seconds=1.0), sender, rate_per_s=40)
    assert len(sender.sent_at) == 40
    # Each left within a few ms of its slot (i / 40 s) although every reply took 0.3 s:
    # a closed loop of one worker would have sent 4.
    lateness = [sent - index / 40 for index, sent in enumerate(sender.sent_at)]
    assert max(lateness) < 0.03, lateness
    assert sender.in_flight_max >= 10
    summary = engine.recorder.summary(engine.load_s)
    assert summary["requests"]["replied"] == 40 and summary["requests"]["shed_by_generator"] == 0
    assert summary["latency_ms"]["p50"] == pytest.approx(300, abs=30)
    assert sum(engine.ledger.charged.values()) == 400


def test_past_the_in_flight_cap_arrivals_are_shed_and_counted_never_queued():
    sender = SlowSender(reply_s=0.3)
    engine = run(LoadSettings(seconds=1.0, in_flight_max=5), sender, rate_per_s=40)
    assert sender.in_flight_max <= 5
    shed = engine.recorder.shed_total
    assert shed > 0 and len(sender.sent_at) + shed == engine.arrivals == 40
    summary = engine.recorder.summary(engine.load_s)
    assert summary["results"]["arrival SHED_BY_GENERATOR"] == shed
    assert summary["requests"]["offered"] == 40  # shed arrivals were offered too
    # What was sent still left on time: nothing waited for room.
    assert all(sent - int(sent * 40) / 40 < 0.03 for sent in sender.sent_at)


def test_a_burst_is_capped_at_arrival_not_after_every_flow_was_admitted():
    # 200 arrivals due at the same instant: none of their flows has run when the
    # next arrives, yet only in_flight_max are admitted; the rest are shed.
    sender = SlowSender(reply_s=0.2)
    engine = Engine(LoadSettings(seconds=1.0, in_flight_max=10), OneDebit(), sender, run_id="t")
    sender.engine = engine
    asyncio.run(engine.load(bursts(200, 10.0, 1.0, 10**6)))
    assert len(sender.sent_at) == 10 and engine.recorder.shed_total == 190
    assert sender.in_flight_max == 10 and engine.in_flight == 0


def test_the_request_budget_ends_the_load():
    sender = SlowSender(reply_s=0.01)
    engine = run(LoadSettings(seconds=5.0, max_requests=12), sender, rate_per_s=100)
    assert engine.recorder.sent_total == 12
    assert len(sender.sent_at) <= 13  # at most one more, sent as a wind-down request
    assert engine.load_s < 1.0


def test_a_failed_call_is_booked_unknown_and_a_flow_bug_is_reported():
    sender = SlowSender(reply_s=0.01, fail_every=4)
    engine = run(LoadSettings(seconds=0.5), sender, rate_per_s=40)
    failed = engine.recorder.errors_total
    assert failed == len(sender.sent_at) // 4 and len(engine.ledger.unknown) == failed
    assert engine.recorder.summary(engine.load_s)["results"]["Debit grpc:DEADLINE_EXCEEDED"] == failed
    broken = run(LoadSettings(seconds=0.2), SlowSender(reply_s=0.0), rate_per_s=20, scenario=Broken())
    assert broken.flow_errors_total == broken.arrivals > 0
    assert "KeyError" in broken.flow_errors[0]


# ---------------------------------------------------------------- the books


def _debit(request_id: str, subscriber: str = "alice") -> pb.DebitRequest:
    return pb.DebitRequest(request_id=request_id, subscriber_id=subscriber, rating_group=3, used_units=1)


def test_the_books_count_a_charge_once_however_often_it_is_answered():
    ledger = Ledger()
    request = _debit("d1")
    ledger.sent("Debit", request)
    ledger.replied("Debit", request, pb.DebitResponse(result=pb.SUCCESS, charged_micros=90))
    ledger.replied("Debit", request, pb.DebitResponse(result=pb.SUCCESS, charged_micros=90, replayed=True))
    ledger.replied_again("Debit", request, pb.DebitResponse(result=pb.SUCCESS, charged_micros=90))
    assert ledger.charged["alice"] == 90
    # Unknown first, then its replay is the first the books hear of it: counted once.
    lost = _debit("d2")
    ledger.failed("Debit", lost)
    assert ledger.is_unknown("Debit", lost)
    ledger.replied("Debit", lost, pb.DebitResponse(result=pb.SUCCESS, charged_micros=90, replayed=True))
    assert ledger.charged["alice"] == 180 and not ledger.unknown and ledger.replays_counted == 1


def test_settled_outcomes_holds_and_sessions_are_tracked():
    ledger = Ledger()
    applied, never = _debit("d3"), _debit("d4")
    ledger.failed("Debit", applied)
    ledger.failed("Debit", never)
    ledger.resolved("Debit", applied, pb.DebitResponse(result=pb.SUCCESS, charged_micros=7))
    ledger.resolved("Debit", never, None)
    assert ledger.charged["alice"] == 7 and not ledger.unknown
    reserve = pb.ReserveRequest(request_id="r1", subscriber_id="bob", session_id="s", rating_group=1,
                                requested_units=60)
    ledger.replied("Reserve", reserve, pb.ReserveResponse(result=pb.SUCCESS, reservation_id="R0-1"))
    assert ledger.holds == {("bob", "R0-1")}
    final = pb.DebitRequest(request_id="d5", subscriber_id="bob", reservation_id="R0-1", used_units=5, final=True)
    ledger.replied("Debit", final, pb.DebitResponse(result=pb.SUCCESS, charged_micros=5))
    assert not ledger.holds
    refund = pb.RefundRequest(request_id="f1", subscriber_id="bob", charge_id="C1", amount_micros=2)
    ledger.replied("Refund", refund, pb.RefundResponse(result=pb.SUCCESS, refunded_micros=2))
    assert ledger.expected_balance("bob", 1_000) == 1_000 - 5 + 2
    create = pb.CreateSessionRequest(session_id="pdu", subscriber_id="bob", invocation_sequence_number=0)
    ledger.sent("CreateSession", create)
    ledger.replied("CreateSession", create, pb.SessionResponse(result=pb.SUCCESS, multiple_unit_information=[
        pb.MultipleUnitInformation(rating_group=10, charged_micros=0)]))
    update = pb.UpdateSessionRequest(session_id="pdu", subscriber_id="bob", invocation_sequence_number=1)
    ledger.sent("UpdateSession", update)
    ledger.failed("UpdateSession", update)
    assert ledger.unknown == {("bob", "session/pdu/1"): ("UpdateSession", update)}
    assert [(t.session_id, t.last_sequence) for t in ledger.open_sessions()] == [("pdu", 1)]
    release = pb.ReleaseSessionRequest(session_id="pdu", subscriber_id="bob", invocation_sequence_number=2)
    ledger.replied("ReleaseSession", release, pb.SessionResponse(result=pb.SUCCESS, multiple_unit_information=[
        pb.MultipleUnitInformation(rating_group=10, charged_micros=30)]))
    assert not ledger.open_sessions() and ledger.charged["bob"] == 35


# ---------------------------------------------------------------- where load may go


@pytest.mark.parametrize("target", ["127.0.0.1:50051", "127.3.2.1:1", "localhost:50051", "[::1]:50051",
                                    "ipv4:127.0.0.1:9", "dns:///localhost:9", "unix:/tmp/grid.sock"])
def test_loopback_targets_are_allowed(target):
    assert is_loopback(target)
    check_target(target, allow_remote=False)


@pytest.mark.parametrize("target", ["10.0.0.5:50051", "192.168.1.2:50051", "8.8.8.8:443", "grid.example.com:443",
                                    "[2001:db8::1]:50051", "0.0.0.0:50051", ""])
def test_other_targets_need_allow_remote(target):
    assert not is_loopback(target)
    with pytest.raises(TargetRefused):
        LoadSettings(target=target)
    if target:
        assert LoadSettings(target=target, allow_remote=True).target == target


@pytest.mark.parametrize("bad", [{"seconds": 601}, {"seconds": 0}, {"max_requests": 0},
                                 {"max_requests": generator.REQUESTS_MAX + 1}, {"in_flight_max": 0},
                                 {"timeout_s": 0}, {"channels": 0}])
def test_every_bound_of_a_run_is_checked(bad):
    with pytest.raises(ValueError):
        LoadSettings(**bad)


# ---------------------------------------------------------------- settle and audit (a fake grid)


class FakeGrid:
    """The client calls conservation.py makes, answered from a dict of balances."""

    def __init__(self, balances: dict, grid_ok: bool = True, applied: dict | None = None,
                 unreachable: frozenset = frozenset()) -> None:
        self.balances = balances
        self.grid_ok = grid_ok
        self.applied = applied or {}
        self.unreachable = unreachable
        self.released: list[str] = []

    async def balance(self, subscriber_id):
        balance, held = self.balances[subscriber_id]
        return pb.GetBalanceResponse(result=pb.SUCCESS, balance_micros=balance, reserved_micros=held)

    async def audit(self):
        shards = [{"problems": [] if self.grid_ok else ["conservation: broken"]}]
        return pb.AuditResponse(ok=self.grid_ok, report_json=json.dumps(
            {"ok": self.grid_ok, "problems_total": 0 if self.grid_ok else 1, "journal_records": 9, "leakage": {},
             "shards": shards}))

    async def get_transaction(self, subscriber_id, request_id):
        from grid_client import Unavailable

        if request_id in self.unreachable:
            raise Unavailable("no answer")
        reply = self.applied.get(request_id)
        return pb.GetTransactionResponse(found=reply is not None, debit=reply)

    async def release(self, subscriber_id, reservation_id, request_id=None):
        self.released.append(reservation_id)
        return pb.ReleaseResponse(result=pb.SUCCESS, released_micros=1)


def settle_and_audit(ledger: Ledger, grid: FakeGrid, start: dict) -> dict:
    from grid.storm import conservation

    async def both():
        settled = await conservation.settle(ledger, grid, "run")
        return await conservation.audit(ledger, grid, start, settled)

    return asyncio.run(both())


def test_unknown_outcomes_are_settled_before_the_books_are_checked():
    ledger = Ledger()
    for request_id in ("d1", "d2"):
        ledger.sent("Debit", _debit(request_id))
        ledger.failed("Debit", _debit(request_id))
    hold = pb.ReserveRequest(request_id="r1", subscriber_id="alice", session_id="s", rating_group=1,
                             requested_units=1)
    ledger.replied("Reserve", hold, pb.ReserveResponse(result=pb.SUCCESS, reservation_id="R1"))
    # d1 took effect (90 micros), d2 never did; the hold is still open.
    grid = FakeGrid({"alice": (910, 0)}, applied={"d1": pb.DebitResponse(result=pb.SUCCESS, charged_micros=90)})
    audit = settle_and_audit(ledger, grid, {"alice": (1_000, 0)})
    assert audit["ok"], audit["problems"]
    assert audit["settle"]["resolved_applied"] == 1 and audit["settle"]["resolved_not_applied"] == 1
    assert grid.released == ["R1"] and audit["charged_micros"] == 90


def test_the_audit_fails_on_a_difference_an_open_hold_an_unsettled_outcome_or_the_grids_own_audit():
    def audit_of(balances, start=(1_000, 0), **grid):
        ledger = Ledger()
        request = _debit("d1")
        ledger.sent("Debit", request)
        ledger.replied("Debit", request, pb.DebitResponse(result=pb.SUCCESS, charged_micros=100))
        lost = _debit("d2")
        ledger.sent("Debit", lost)
        ledger.failed("Debit", lost)
        return settle_and_audit(ledger, FakeGrid({"alice": balances}, **grid), {"alice": start})

    assert audit_of((900, 0))["ok"]
    differs = audit_of((899, 0))
    assert not differs["ok"] and differs["mismatches"][0]["difference_micros"] == -1
    assert not audit_of((900, 5))["ok"]  # a hold left open
    unsettled = audit_of((900, 0), unreachable=frozenset({"d2"}))
    assert not unsettled["ok"] and "could not be resolved" in " ".join(unsettled["problems"])
    grid_broken = audit_of((900, 0), grid_ok=False)
    assert not grid_broken["ok"] and "the grid's own audit" in " ".join(grid_broken["problems"])


def test_a_remote_target_is_a_usage_error_before_anything_is_sent(capsys):
    from grid.storm import cli

    assert cli.main(["sms", "--target", "10.1.2.3:50051", "--quiet"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert cli.main(["failover-replay", "--seconds", "2", "--failover-at-s", "3", "--quiet"]) == 2


def test_the_report_prints_money_exactly_and_says_the_verdict():
    from grid.storm import report
    from grid.storm.scenarios import Sms

    assert report.money(-1_234_567) == "-1.234567" and report.money(10**15 + 1) == "1,000,000,000.000001"
    sender = SlowSender(reply_s=0.01)
    engine = run(LoadSettings(seconds=0.3), sender, rate_per_s=20)
    audit = {"ok": False, "problems": ["1 of 3 subscribers do not add up"], "subscribers_touched": 3,
             "charged_micros": 60, "refunded_micros": 0, "topped_up_micros": 0, "balance_before_micros": 3_000,
             "balance_after_micros": 2_941, "held_after_micros": 0, "mismatches_total": 1, "mismatches": [],
             "settle": {"unknown_outcomes": 0, "resolved_applied": 0, "resolved_not_applied": 0, "holds_released": 0,
                        "sessions_released": 0, "unresolved": 0},
             "replays_of_unknown_counted": 0, "grid_audit": {"ok": True}}
    provisioned = {"plan": "p", "subscribers": 3, "accounts_created": 3, "top_ups_applied": 3,
                   "top_ups_replayed": 0, "seconds": 0.1}
    built = report.build(scenario=Sms(), settings=engine.settings, spec=Sms().schedule(engine.settings),
                         run_id="t", provisioned=provisioned, engine=engine, audit=audit)
    assert not built["ok"] and json.loads(json.dumps(built)) == built  # plain JSON
    text = report.render_plain(built)
    assert "FAILED" in text and "verdict" in text and text.rstrip().endswith("FAIL")
    assert "before 0.003000 - charged 0.000060" in text
