"""Rating scenarios written out by hand (TESTING.md layer 1: pure core, no Ray, no gRPC).

Every expected amount below was worked out on paper from the tariff and the
rules of the rating engine (grid/domain/pricing.py), never by calling it: each
row carries a one-line comment with the arithmetic. The tests drive a real
ShardState the way the shard shell does (one apply_batch per mutating step)
and end with the core's invariants and a conservation audit computed from the
replies alone (top-ups - charges + refunds == balance).

Units: money in micros (1 EUR = 1_000_000), time in ms, MB = 1_000_000 bytes.
Calendar: 2025-01-15 is a Wednesday, 2025-01-17 a Friday, 2025-01-18 a
Saturday, 2025-01-01 (a holiday) a Wednesday; Berlin is UTC+1 in January and
UTC+2 in July.
"""

import dataclasses
import datetime
import itertools
import zoneinfo

import pytest

from grid.domain import operations as ops
from grid.domain.outcomes import CounterPeriod, ErrorCode, Result, Unit
from grid.domain.rating import CapAction, Rate, Rounding, TariffPlan, Tier, TimeBand
from grid.domain.shard_state import ShardState

T = ops.DEFAULT_TENANT
ALICE = "alice"
S, CLR, RF = Result.SUCCESS, Result.CREDIT_LIMIT_REACHED, Result.RATING_FAILED
MB = 1_000_000  # bytes
SECOND = 1_000  # ms
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
BALANCE_MICROS = 100_000_000  # every scenario's account starts with 100 EUR

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def berlin(text: str) -> int:
    """The instant (ms) of a Berlin wall-clock time, e.g. "2025-01-15 17:59:00"."""
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp() * 1000)


def utc(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


# Plans are put (and accounts opened) here, before any scenario's usage.
PLANS_PUT_AT_MS = utc("2024-12-01 00:00:00")
WED_10 = berlin("2025-01-15 10:00:00")  # a weekday, peak hours

# ====================================================================== tariffs

# Rating groups.
VOICE = 1  # seconds
SMS = 2  # events
SECONDS_1 = 3  # seconds, per-second billing: 1_000 per 60 s
ONE_TIER = 4  # seconds: the v1 VOICE rate of plan "minute" written as one tier
STEP = 5  # seconds: three tiers
MINIMUM = 6  # seconds with a minimum charge
DATA_STOP = 7  # bytes with a cap, CAP_STOP_CHARGING
DATA_DENY = 8  # bytes with a connect fee and a cap, CAP_DENY_QUOTA
DATA_CAP_UNSET = 9  # bytes with a cap, cap_action unset (= stop charging)
SMS_QUARTER = 10  # events at 1.25 micros
PEAK_ONLY = 11  # seconds priced only in the peak band
DATA = 12  # bytes, volume tiers
UNRATED = 99  # in no plan

SECONDS_GROUPS = {VOICE, SECONDS_1, ONE_TIER, STEP, MINIMUM, PEAK_ONLY}

MINUTE_PLAN = TariffPlan("minute", (
    Rate(VOICE, Unit.SECONDS, 1_000, 60, 60),  # 1_000 per started minute
    Rate(SECONDS_1, Unit.SECONDS, 1_000, 60, 1),  # 1_000 per minute, per second: 16.666... a second
    Rate(ONE_TIER, Unit.SECONDS, 0, 0, 0, tiers=(Tier(0, 1_000, 60, 60),)),
))

TIER_PLAN = TariffPlan("tiers", (
    # "60/1": the first minute is billed whole, then per second, 1_000 per minute throughout.
    Rate(VOICE, Unit.SECONDS, 0, 0, 0, tiers=(Tier(0, 1_000, 60, 60), Tier(60, 1_000, 60, 1))),
    # First minute 1_200 (billed whole); then 600 a minute per second (10/s) to 10 min;
    # then 300 a started minute (5/s billed in minutes).
    Rate(STEP, Unit.SECONDS, 0, 0, 0, tiers=(Tier(0, 1_200, 60, 60), Tier(60, 600, 60, 1), Tier(600, 300, 60, 60))),
))

FEE_PLAN = TariffPlan("fees", (
    Rate(VOICE, Unit.SECONDS, 1_000, 60, 60, connect_fee_micros=10_000),
    Rate(MINIMUM, Unit.SECONDS, 1_000, 60, 1, minimum_charge_micros=5_000),
    # 1_000 per MB, billed per byte, at most 10_000.
    Rate(DATA_STOP, Unit.BYTES, 1_000, MB, 1, maximum_cost_micros=10_000, cap_action=CapAction.CAP_STOP_CHARGING),
    Rate(DATA_DENY, Unit.BYTES, 1_000, MB, 1, connect_fee_micros=1_000, maximum_cost_micros=10_000,
         cap_action=CapAction.CAP_DENY_QUOTA),
    Rate(DATA_CAP_UNSET, Unit.BYTES, 1_000, MB, 1, maximum_cost_micros=10_000),
))


def _rounding_plan(plan_id: str, rounding: Rounding) -> TariffPlan:
    return TariffPlan(plan_id, (
        Rate(SMS, Unit.EVENTS, 3, 2, 1),  # 1.5 micros an event: a .5 to round
        Rate(SMS_QUARTER, Unit.EVENTS, 5, 4, 1),  # 1.25 micros an event
    ), rounding=rounding)


ROUND_DEFAULT = _rounding_plan("round-default", Rounding.ROUNDING_UNSPECIFIED)
ROUND_UP = _rounding_plan("round-up", Rounding.ROUNDING_UP)
ROUND_HALF_EVEN = _rounding_plan("round-half-even", Rounding.ROUNDING_HALF_EVEN)
ROUND_DOWN = _rounding_plan("round-down", Rounding.ROUNDING_DOWN)

PREFIX_PLAN = TariffPlan("prefixes", (
    Rate(VOICE, Unit.SECONDS, 10_000, 60, 60),  # any destination: 10_000 a started minute
    Rate(VOICE, Unit.SECONDS, 5_000, 60, 60, destination_prefix="49"),
    Rate(VOICE, Unit.SECONDS, 2_000, 60, 60, destination_prefix="4930"),
    Rate(VOICE, Unit.SECONDS, 1_000, 60, 60, destination_prefix="49301"),
    Rate(VOICE, Unit.SECONDS, 20_000, 60, 60, roaming_zone="EU"),  # EU, any destination
    Rate(VOICE, Unit.SECONDS, 30_000, 60, 60, roaming_zone="WORLD", destination_prefix="49"),
    Rate(SMS, Unit.EVENTS, 100, 1, 1, destination_prefix="49"),  # SMS only to 49...
))

# Europe/Berlin. The first band listed that holds the instant wins: lunch (listed
# before peak) wins 12:00-13:00, happy hour (listed after peak) never does.
BANDS = (
    TimeBand("holiday", (8,), 0, 1440),
    TimeBand("weekend", (6, 7), 0, 1440),
    TimeBand("lunch", (1, 2, 3, 4, 5), 12 * 60, 13 * 60),
    TimeBand("peak", (1, 2, 3, 4, 5), 8 * 60, 18 * 60),
    TimeBand("happy", (1, 2, 3, 4, 5), 17 * 60, 17 * 60 + 30),
)
BAND_PLAN = TariffPlan("bands", (
    Rate(VOICE, Unit.SECONDS, 30_000, 60, 1),  # off-peak (no band): 500/s
    Rate(VOICE, Unit.SECONDS, 60_000, 60, 1, time_band="peak", connect_fee_micros=5_000),  # 1_000/s + fee 5_000
    Rate(VOICE, Unit.SECONDS, 24_000, 60, 1, time_band="lunch"),  # 400/s
    Rate(VOICE, Unit.SECONDS, 12_000, 60, 1, time_band="weekend"),  # 200/s
    Rate(VOICE, Unit.SECONDS, 6_000, 60, 1, time_band="holiday"),  # 100/s
    Rate(VOICE, Unit.SECONDS, 60, 60, 1, time_band="happy"),  # 1/s (never chosen)
    Rate(VOICE, Unit.SECONDS, 3_000, 60, 1, destination_prefix="49"),  # any time, to 49...: 50/s
    Rate(VOICE, Unit.SECONDS, 90_000, 60, 1, roaming_zone="EU"),  # any time in EU: 1_500/s
    Rate(SMS, Unit.EVENTS, 100, 1, 1),
    Rate(SMS, Unit.EVENTS, 200, 1, 1, time_band="peak"),
    Rate(PEAK_ONLY, Unit.SECONDS, 60_000, 60, 1, time_band="peak"),  # 1_000/s, and no off-peak rate at all
), time_zone="Europe/Berlin", time_bands=BANDS, holidays=("2025-01-01", "2025-12-25"))

# First GB of the (UTC) month at 10_000 per MB, then 1_000 per MB; billed per MB.
VOLUME_PLAN = TariffPlan("volume", (
    Rate(DATA, Unit.BYTES, 0, 0, 0, tiers=(Tier(0, 10_000, MB, MB), Tier(1_000 * MB, 1_000, MB, MB)),
         volume_period=CounterPeriod.COUNTER_PERIOD_MONTH),
), time_zone="Europe/Berlin")  # the zone of bands; volume periods are UTC months regardless

VERSIONED_V1 = TariffPlan("versioned", (Rate(SMS, Unit.EVENTS, 1_000, 1, 1),))

PLANS = (MINUTE_PLAN, TIER_PLAN, FEE_PLAN, ROUND_DEFAULT, ROUND_UP, ROUND_HALF_EVEN, ROUND_DOWN, PREFIX_PLAN,
         BAND_PLAN, VOLUME_PLAN, VERSIONED_V1)


# ====================================================================== world


class World:
    """One shard holding every plan above, and alice on `plan_id` with 100 EUR."""

    def __init__(self, plan_id: str) -> None:
        self.shard = ShardState(3)
        self.now = PLANS_PUT_AT_MS
        self.ledger = 0  # top-ups - charges + refunds, from the replies
        self._ids = itertools.count(1)
        for plan in PLANS:
            assert self.shard.apply(ops.PutTariff(plan), self.now) == ops.PutTariffReply(S, version=1)
        assert self.do(ops.CreateAccount(T, ALICE, self.rid(), "EUR", 0, plan_id)).result == S
        assert self.do(ops.TopUp(T, ALICE, self.rid(), BALANCE_MICROS)).result == S

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def do(self, operation):
        [reply] = self.shard.apply_batch([operation], self.now)
        if isinstance(reply, ops.TopUpReply) and reply.result == S:
            self.ledger += operation.amount_micros
        elif isinstance(reply, ops.DebitReply) and reply.result == S:
            self.ledger -= reply.charged_micros
        elif isinstance(reply, ops.RefundReply) and reply.result == S:
            self.ledger += reply.refunded_micros
        elif isinstance(reply, ops.SessionReply):
            self.ledger -= sum(info.charged_micros for info in reply.multiple_unit_information)
        return reply

    def read(self, operation):
        return self.shard.apply(operation, self.now)

    def debit(self, rating_group: int, used_units: int, **fields) -> ops.DebitReply:
        return self.do(ops.Debit(T, ALICE, self.rid(), "", rating_group, used_units, False, **fields))

    def reserve(self, rating_group: int, requested_units: int, **fields) -> ops.ReserveReply:
        return self.do(ops.Reserve(T, ALICE, self.rid(), "s-reserve", rating_group, requested_units, **fields))

    def session(self, kind, session_id: str, sequence: int, *usages: ops.UnitUsage) -> ops.SessionReply:
        reply = self.do(kind(T, ALICE, session_id, sequence, usages))
        assert reply.result == S, reply
        return reply

    def balance(self) -> ops.BalanceReply:
        return self.read(ops.GetBalance(T, ALICE))

    def audit(self) -> None:
        self.shard.check_invariants()
        assert self.balance().balance_micros == self.ledger, "conservation: top-ups - charges + refunds"


def unit_of(reply: ops.SessionReply) -> ops.UnitInformation:
    [info] = reply.multiple_unit_information
    return info


# ====================================================================== the table: direct debits


@dataclasses.dataclass(frozen=True)
class Row:
    """One direct debit: `used_units` of `rating_group` on `plan`, begun at
    `start_ms`. Seconds are reported as they end (now = start + used, no
    usage_started_at_ms); other units at start. With `reported_at_ms`, the
    debit names usage_started_at_ms=start and is applied at reported_at_ms."""

    plan: str
    rating_group: int
    used_units: int
    start_ms: int
    expected_micros: int
    destination: str = ""
    zone: str = ""
    reported_at_ms: int = 0
    residue_picos: int | None = None


def row(name, *args, **kwargs):
    return pytest.param(Row(*args, **kwargs), id=name)


TABLE = [
    # --- increments: plan "minute", VOICE 1_000 per started minute
    row("minute-1s", "minute", VOICE, 1, WED_10, 1_000),  # 1 s -> 1 started minute x 1_000
    row("minute-exactly-60s", "minute", VOICE, 60, WED_10, 1_000),  # exactly one increment: 1 x 1_000, not 2
    row("minute-61s", "minute", VOICE, 61, WED_10, 2_000),  # 61 s -> 2 started minutes x 1_000
    row("minute-120s", "minute", VOICE, 120, WED_10, 2_000),  # exactly 2 increments: 2 x 1_000
    row("minute-183s", "minute", VOICE, 183, WED_10, 4_000),  # 183 s -> 4 started minutes x 1_000
    row("one-tier-61s", "minute", ONE_TIER, 61, WED_10, 2_000),  # Tier(0, 1_000, 60, 60) == the v1 rate: 2 x 1_000
    row("per-second-1s", "minute", SECONDS_1, 1, WED_10, 17,
        residue_picos=333_333),  # 1_000/60 = 16.666.. -> up 17; 17 - 16.666.. = 0.333.. micro = 333_333 picos
    row("per-second-3s", "minute", SECONDS_1, 3, WED_10, 50, residue_picos=0),  # 3 x 1_000/60 = 50 exactly
    # --- tiers "60/1": Tier(0, 1_000, 60, 60), Tier(60, 1_000, 60, 1)
    row("60/1-1s", "tiers", VOICE, 1, WED_10, 1_000),  # last unit in tier 0: billed 60 -> 60 x 1_000/60
    row("60/1-59s", "tiers", VOICE, 59, WED_10, 1_000),  # billed 60 -> 1_000
    row("60/1-60s", "tiers", VOICE, 60, WED_10, 1_000, residue_picos=0),  # unit 59 still in tier 0: billed 60
    row("60/1-61s", "tiers", VOICE, 61, WED_10, 1_017,
        residue_picos=333_333),  # unit 60 in tier 1 (1-s steps): billed 61 -> 61_000/60 = 1_016.66.. -> 1_017
    row("60/1-120s", "tiers", VOICE, 120, WED_10, 2_000),  # billed 120 -> 120 x 1_000/60
    # --- three tiers STEP: [0,60) 1_200/60 in 60 s; [60,600) 600/60 = 10/s; [600,..) 300/60 in 60 s
    row("step-1s", "tiers", STEP, 1, WED_10, 1_200),  # billed 60: 60 x 1_200/60
    row("step-60s", "tiers", STEP, 60, WED_10, 1_200),  # billed 60: 1_200
    row("step-61s", "tiers", STEP, 61, WED_10, 1_210),  # 1_200 + 1 s x 10
    row("step-90s", "tiers", STEP, 90, WED_10, 1_500),  # 1_200 + 30 s x 10
    row("step-600s", "tiers", STEP, 600, WED_10, 6_600),  # 1_200 + 540 s x 10 (unit 599 is in tier 1)
    row("step-601s", "tiers", STEP, 601, WED_10, 6_900),  # 6_600 + billed to 660 in tier 2: 60 x 300/60 = 300
    row("step-661s", "tiers", STEP, 661, WED_10, 7_200),  # 6_600 + billed to 720: 120 x 5 = 600
    # --- connect fee (once per direct debit), minimum, maximum: plan "fees"
    row("fee-30s", "fees", VOICE, 30, WED_10, 11_000),  # fee 10_000 + 1 started minute 1_000
    row("fee-60s", "fees", VOICE, 60, WED_10, 11_000),  # fee 10_000 + 1 x 1_000
    row("fee-61s", "fees", VOICE, 61, WED_10, 12_000),  # fee 10_000 + 2 x 1_000
    row("minimum-10s", "fees", MINIMUM, 10, WED_10, 5_000,
        residue_picos=0),  # 10 x 1_000/60 = 166.66.. < minimum -> exactly 5_000, residue 0
    row("minimum-300s", "fees", MINIMUM, 300, WED_10, 5_000),  # 300 x 1_000/60 = 5_000 = the minimum
    row("minimum-301s", "fees", MINIMUM, 301, WED_10, 5_017,
        residue_picos=333_333),  # 301_000/60 = 5_016.66.. > minimum -> up 5_017
    row("stop-8MB", "fees", DATA_STOP, 8 * MB, WED_10, 8_000),  # 8 MB x 1_000
    row("stop-10MB", "fees", DATA_STOP, 10 * MB, WED_10, 10_000),  # 10 x 1_000 = exactly the cap
    row("stop-20MB", "fees", DATA_STOP, 20 * MB, WED_10, 10_000),  # 20 x 1_000 = 20_000 -> cap 10_000
    row("cap-unset-20MB", "fees", DATA_CAP_UNSET, 20 * MB, WED_10, 10_000),  # unset = stop: 20_000 -> 10_000
    row("deny-3MB", "fees", DATA_DENY, 3 * MB, WED_10, 4_000),  # fee 1_000 + 3 x 1_000
    row("deny-20MB", "fees", DATA_DENY, 20 * MB, WED_10,
        10_000),  # used already (no grant to deny): 1_000 + 20_000 = 21_000 -> cap 10_000
    # --- rounding of a .5 (SMS 3 micros per 2 events = 1.5 an event), once per charge
    row("round-default-1", "round-default", SMS, 1, WED_10, 2, residue_picos=500_000),  # 1.5 up -> 2; +0.5
    row("round-up-1", "round-up", SMS, 1, WED_10, 2, residue_picos=500_000),  # 1.5 -> 2; +0.5 micro
    row("round-up-3", "round-up", SMS, 3, WED_10, 5, residue_picos=500_000),  # 4.5 -> 5; +0.5
    row("round-half-even-1", "round-half-even", SMS, 1, WED_10, 2,
        residue_picos=500_000),  # 1.5 -> nearest even 2; +0.5
    row("round-half-even-3", "round-half-even", SMS, 3, WED_10, 4,
        residue_picos=-500_000),  # 4.5 -> nearest even 4; -0.5
    row("round-half-even-5", "round-half-even", SMS, 5, WED_10, 8, residue_picos=500_000),  # 7.5 -> even 8; +0.5
    row("round-down-1", "round-down", SMS, 1, WED_10, 1, residue_picos=-500_000),  # 1.5 -> 1; -0.5
    row("round-down-3", "round-down", SMS, 3, WED_10, 4, residue_picos=-500_000),  # 4.5 -> 4; -0.5
    row("round-up-quarter", "round-up", SMS_QUARTER, 1, WED_10, 2, residue_picos=750_000),  # 1.25 -> 2; +0.75
    row("round-half-even-quarter-1", "round-half-even", SMS_QUARTER, 1, WED_10, 1,
        residue_picos=-250_000),  # 1.25 -> nearest 1; -0.25
    row("round-half-even-quarter-3", "round-half-even", SMS_QUARTER, 3, WED_10, 4,
        residue_picos=250_000),  # 3.75 -> nearest 4; +0.25
    row("round-down-quarter-3", "round-down", SMS_QUARTER, 3, WED_10, 3, residue_picos=-750_000),  # 3.75 -> 3
    # --- longest destination prefix: "" 10_000, 49 5_000, 4930 2_000, 49301 1_000 a started minute
    row("prefix-4930-number", "prefixes", VOICE, 60, WED_10, 2_000, destination="4930876543"),  # 4930, not 49301: 2_000
    row("prefix-49301-number", "prefixes", VOICE, 60, WED_10, 1_000, destination="4930112233"),  # 49301 longest
    row("prefix-4930-exact", "prefixes", VOICE, 60, WED_10, 2_000, destination="4930"),  # "4930" itself
    row("prefix-493", "prefixes", VOICE, 60, WED_10, 5_000, destination="493"),  # shorter than 4930: 49 -> 5_000
    row("prefix-49-munich", "prefixes", VOICE, 120, WED_10, 10_000, destination="4989123"),  # 49: 2 x 5_000
    row("prefix-france", "prefixes", VOICE, 60, WED_10, 10_000, destination="33612345678"),  # only "" matches
    row("prefix-none", "prefixes", VOICE, 60, WED_10, 10_000),  # no destination: "" -> 10_000
    # --- roaming zone before prefix: zone EU ("" prefix) 20_000, zone WORLD (49) 30_000
    row("zone-eu-beats-prefix", "prefixes", VOICE, 60, WED_10, 20_000, destination="4930112233",
        zone="EU"),  # EU's rate (any destination) before zone ""'s 49301
    row("zone-world-49", "prefixes", VOICE, 60, WED_10, 30_000, destination="4930", zone="WORLD"),  # WORLD 49
    row("zone-world-falls-back", "prefixes", VOICE, 60, WED_10, 10_000, destination="33",
        zone="WORLD"),  # WORLD has no rate for 33: zone "" -> "" prefix 10_000
    row("zone-unknown-falls-back", "prefixes", VOICE, 60, WED_10, 1_000, destination="49301",
        zone="US"),  # no US rates: zone "" -> 49301 1_000
    # --- time bands (Europe/Berlin): off 500/s, peak 1_000/s + fee 5_000, lunch 400/s, weekend 200/s,
    #     holiday 100/s; the connect fee comes from the rate in force when the call started
    row("peak", "bands", VOICE, 60, WED_10, 65_000),  # Wed 10:00 peak: 5_000 + 60 x 1_000
    row("off-peak-evening", "bands", VOICE, 60, berlin("2025-01-15 20:00:00"), 30_000),  # 60 x 500
    row("off-peak-07:59", "bands", VOICE, 60, berlin("2025-01-15 07:59:00"), 30_000),  # 07:59-08:00: 60 x 500
    row("peak-from-08:00", "bands", VOICE, 60, berlin("2025-01-15 08:00:00"), 65_000),  # 5_000 + 60 x 1_000
    row("peak-to-off-peak", "bands", VOICE, 120, berlin("2025-01-15 17:59:00"),
        95_000),  # 17:59-18:00 60 x 1_000 + 18:00-18:01 60 x 500 + peak fee 5_000
    row("off-peak-to-peak", "bands", VOICE, 120, berlin("2025-01-15 07:59:00"),
        90_000),  # 60 x 500 + 60 x 1_000; started off-peak: no fee
    row("peak-to-off-peak-summer", "bands", VOICE, 120, berlin("2025-07-16 17:59:00"),
        95_000),  # the same at UTC+2: 60_000 + 30_000 + 5_000
    row("peak-to-off-peak-started-at", "bands", VOICE, 120, berlin("2025-01-15 17:59:00"), 95_000,
        reported_at_ms=berlin("2025-01-15 18:30:00")),  # usage_started_at_ms 17:59 places it the same
    row("peak-into-lunch", "bands", VOICE, 60, berlin("2025-01-15 11:59:30"),
        47_000),  # 30 x 1_000 + 30 x 400 (lunch listed first) + peak fee 5_000
    row("happy-hour-listed-after-peak", "bands", VOICE, 60, berlin("2025-01-15 17:15:00"),
        65_000),  # 17:15 is in both; peak is listed first: 5_000 + 60 x 1_000
    row("weekend", "bands", VOICE, 60, berlin("2025-01-18 10:00:00"), 12_000),  # Saturday: 60 x 200
    row("friday-into-weekend", "bands", VOICE, 120, berlin("2025-01-17 23:59:00"),
        42_000),  # Fri 23:59 off-peak 60 x 500 + Sat 00:00 weekend 60 x 200
    row("holiday", "bands", VOICE, 60, berlin("2025-01-01 10:00:00"), 6_000),  # a Wednesday, but day 8: 60 x 100
    row("holiday-in-plan-zone", "bands", VOICE, 60, berlin("2025-01-01 00:30:00"),
        6_000),  # 00:30 Jan 1 in Berlin (still Dec 31 in UTC): holiday 60 x 100
    row("prefix-off-peak", "bands", VOICE, 60, berlin("2025-01-15 20:00:00"), 3_000,
        destination="4930"),  # no band: the any-time 49 rate, 60 x 50
    row("prefix-before-band-peak", "bands", VOICE, 60, WED_10, 3_000,
        destination="4930"),  # the longer prefix 49 (any time) before peak's "" rate: 60 x 50
    row("zone-before-band", "bands", VOICE, 60, WED_10, 90_000, zone="EU"),  # EU any-time rate before peak: 60 x 1_500
    row("unknown-zone-uses-bands", "bands", VOICE, 60, WED_10, 65_000, zone="US"),  # zone "" -> peak
    row("sms-peak", "bands", SMS, 1, berlin("2025-01-15 17:59:59"), 200),  # events at now's band: peak 200
    row("sms-off-peak", "bands", SMS, 1, berlin("2025-01-15 18:00:00"), 100),  # 18:00 is off-peak: 100
    row("sms-priced-at-now", "bands", SMS, 2, berlin("2025-01-15 17:30:00"), 200,
        reported_at_ms=berlin("2025-01-15 18:30:00")),  # not seconds: band at now (off-peak), 2 x 100
]


@pytest.mark.parametrize("case", TABLE)
def test_direct_debit_costs(case: Row):
    world = World(case.plan)
    fields = {"destination": case.destination, "roaming_zone": case.zone}
    if case.reported_at_ms:
        world.now = case.reported_at_ms
        fields["usage_started_at_ms"] = case.start_ms
    elif case.rating_group in SECONDS_GROUPS:
        world.now = case.start_ms + case.used_units * SECOND  # the seconds ended now
    else:
        world.now = case.start_ms
    reply = world.debit(case.rating_group, case.used_units, **fields)
    assert reply.result == S, reply
    assert reply.charged_micros == case.expected_micros
    if case.residue_picos is not None:
        assert reply.rounding_residue_picos == case.residue_picos
    assert world.balance().balance_micros == BALANCE_MICROS - case.expected_micros
    world.audit()


@pytest.mark.parametrize("plan, rating_group, destination", [
    pytest.param("prefixes", SMS, "33612345678", id="no-prefix-matches"),  # SMS rates only for 49...
    pytest.param("prefixes", SMS, "", id="no-destination-no-any-rate"),  # "" is not a prefix of anything here
    pytest.param("prefixes", UNRATED, "49", id="unknown-rating-group"),
    pytest.param("bands", PEAK_ONLY, "", id="no-rate-in-this-band"),  # 20:00 is off-peak: no rate
])
def test_no_rate_is_rating_failed_and_charges_nothing(plan, rating_group, destination):
    world = World(plan)
    world.now = berlin("2025-01-15 20:00:00")
    assert world.debit(rating_group, 1, destination=destination).result == RF
    assert world.reserve(rating_group, 1, destination=destination).result == RF
    assert world.read(ops.Quote(T, ALICE, rating_group, 1, destination)).result == RF
    balance = world.balance()
    assert (balance.balance_micros, balance.reserved_micros) == (BALANCE_MICROS, 0)
    world.audit()


# PEAK_ONLY (1_000/s, no fee) has a rate only in "peak". Usage that starts in peak and runs past
# 18:00 goes on at the rate it started with (pricing.Pricer._rate_of): a call is never left
# unpriced midway. (At commit 1e346ca this raised pricing.RatingError out of ShardState.apply.)


def test_usage_running_into_a_band_without_a_rate_goes_on_at_its_starting_rate():
    world = World("bands")
    world.now = berlin("2025-01-15 17:57:00")
    # Lifetime to 18:02:30 crosses 18:00; the rates in the window are peak's only: 60 x 1_000.
    hold = world.reserve(PEAK_ONLY, 60)
    assert (hold.result, hold.granted_units, hold.held_micros) == (S, 60, 60_000)
    assert hold.tariff_time_change_ms == berlin("2025-01-15 18:00:00")
    world.do(ops.Release(T, ALICE, world.rid(), hold.reservation_id))
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(PEAK_ONLY, requested_units=60)))
    assert (created.result, created.held_micros) == (S, 60_000)  # 60 x 1_000
    quote = world.read(ops.Quote(T, ALICE, PEAK_ONLY, 300))
    assert quote.cost_micros == 300_000  # 17:57-18:00 180 x 1_000 + 18:00-18:02 120 x 1_000 (peak goes on)
    world.now = berlin("2025-01-15 18:01:00")
    debit = world.debit(PEAK_ONLY, 120, usage_started_at_ms=berlin("2025-01-15 17:59:00"))
    assert (debit.result, debit.charged_micros) == (S, 120_000)  # 60 x 1_000 + 60 x 1_000
    world.audit()


def test_call_reported_at_its_end_is_priced_like_the_same_call_with_its_start():
    world = World("bands")
    world.now = berlin("2025-01-15 18:01:00")
    reply = world.debit(PEAK_ONLY, 120)  # started 18:01 - 120 s = 17:59, in peak
    assert (reply.result, reply.charged_micros) == (S, 120_000)  # as above: 120 x 1_000
    world.audit()


# ====================================================================== zero usage


def test_zero_usage_costs_nothing_not_even_the_connect_fee():
    world = World("fees")
    world.now = WED_10
    # Quote of no usage: 0 (the fee is charged only when usage starts).
    assert world.read(ops.Quote(T, ALICE, VOICE, 0)).cost_micros == 0
    # A hold of 60 s: fee 10_000 + 1 x 1_000 = 11_000; used 0 -> charged 0, all 11_000 back.
    hold = world.reserve(VOICE, 60)
    assert (hold.result, hold.granted_units, hold.held_micros) == (S, 60, 11_000)
    debit = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, VOICE, 0, True))
    assert (debit.result, debit.charged_micros, debit.released_micros) == (S, 0, 11_000)
    # A session that reports no usage: charged 0, its 11_000 hold returned.
    world.session(ops.CreateSession, "s0", 1, ops.UnitUsage(VOICE, requested_units=60))
    released = unit_of(world.session(ops.ReleaseSession, "s0", 2, ops.UnitUsage(VOICE, used_units=0)))
    assert (released.charged_micros, released.released_micros) == (0, 11_000)
    balance = world.balance()
    assert (balance.balance_micros, balance.reserved_micros) == (BALANCE_MICROS, 0)
    world.audit()


# ====================================================================== sessions: cumulative rating


def test_session_reported_in_pieces_costs_what_it_costs_at_once():
    # plan "minute", VOICE 1_000 per started minute; 1 s + 61 s + 121 s = 183 s.
    world = World("minute")
    world.now = WED_10
    granted = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(VOICE, requested_units=300)))
    assert (granted.granted_units, granted.held_micros) == (300, 5_000)  # 5 minutes x 1_000
    charges = []
    for sequence, used, kind in ((2, 1, ops.UpdateSession), (3, 61, ops.UpdateSession), (4, 121, ops.ReleaseSession)):
        world.now += used * SECOND
        usage = ops.UnitUsage(VOICE, requested_units=300 if kind is ops.UpdateSession else 0, used_units=used)
        charges.append(unit_of(world.session(kind, "s1", sequence, usage)).charged_micros)
    # 1 s -> billed 60: 1_000; 62 s -> billed 120: 2_000 - 1_000; 183 s -> billed 240: 4_000 - 2_000.
    assert charges == [1_000, 1_000, 2_000]
    assert sum(charges) == 4_000  # == the "minute-183s" row: 4 started minutes
    assert world.balance().balance_micros == BALANCE_MICROS - 4_000
    world.audit()


def test_session_is_rounded_once_not_per_report():
    # SECONDS_1: 1_000/60 = 16.666.. a second. Reported 1 s at a time: cumulative 16.67 -> 17,
    # 33.33 -> 34, 50 -> 50: charges 17, 17, 16 (three direct debits of 1 s would be 3 x 17 = 51).
    world = World("minute")
    world.now = WED_10
    world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(SECONDS_1, requested_units=60))
    replies = []
    for sequence in (2, 3, 4):
        world.now += SECOND
        replies.append(unit_of(world.session(ops.UpdateSession, "s1", sequence,
                                             ops.UnitUsage(SECONDS_1, requested_units=60, used_units=1))))
    assert [info.charged_micros for info in replies] == [17, 17, 16]
    # Residue = change of (charged - exact): 0.333.. -> 333_333; 0.666.. -> 666_666 - 333_333; 0 - 666_666.
    assert [info.rounding_residue_picos for info in replies] == [333_333, 333_333, -666_666]
    world.audit()


def test_connect_fee_once_per_session():
    # plan "fees", VOICE: fee 10_000 + 1_000 per started minute.
    world = World("fees")
    world.now = WED_10
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(VOICE, requested_units=60)))
    assert created.held_micros == 11_000  # 10_000 + 1 x 1_000
    charges = []
    for sequence, used in ((2, 30), (3, 30), (4, 31)):
        world.now += used * SECOND
        charges.append(unit_of(world.session(ops.UpdateSession, "s1", sequence,
                                             ops.UnitUsage(VOICE, requested_units=60, used_units=used))).charged_micros)
    # 30 s: fee 10_000 + billed 60 (1_000) = 11_000; 60 s: still billed 60 -> 0; 91 s: billed 120 -> + 1_000.
    assert charges == [11_000, 0, 1_000]
    # A second session pays the fee again: 10_000 + 1 x 1_000.
    world.session(ops.CreateSession, "s2", 1, ops.UnitUsage(VOICE, requested_units=60))
    world.now += 20 * SECOND
    second = unit_of(world.session(ops.ReleaseSession, "s2", 2, ops.UnitUsage(VOICE, used_units=20)))
    assert second.charged_micros == 11_000
    # Two direct debits pay it twice: 2 x (10_000 + 1_000).
    assert [world.debit(VOICE, 30).charged_micros for _ in range(2)] == [11_000, 11_000]
    assert world.balance().balance_micros == BALANCE_MICROS - 12_000 - 11_000 - 22_000
    world.audit()


def test_minimum_charge_applies_to_the_session_total():
    # MINIMUM: 1_000/60 per second, at least 5_000 per session.
    world = World("fees")
    world.now = WED_10
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(MINIMUM, requested_units=600)))
    assert created.held_micros == 10_000  # 600 x 1_000/60 = 10_000 > 5_000
    charges = []
    for sequence, used in ((2, 10), (3, 290)):
        world.now += used * SECOND
        charges.append(unit_of(world.session(ops.UpdateSession, "s1", sequence,
                                             ops.UnitUsage(MINIMUM, requested_units=600,
                                                           used_units=used))).charged_micros)
    world.now += 60 * SECOND
    charges.append(unit_of(world.session(ops.ReleaseSession, "s1", 4, ops.UnitUsage(MINIMUM, used_units=60)))
                   .charged_micros)
    # 10 s: 166.67 -> minimum 5_000; 300 s: 5_000 -> 0 more; 360 s: 6_000 -> 1_000 more.
    assert charges == [5_000, 0, 1_000]
    world.audit()


def test_maximum_cost_stop_charging_makes_usage_past_the_cap_free():
    # DATA_STOP: 1_000 per MB, at most 10_000 per session; grants go on past the cap.
    world = World("fees")
    world.now = WED_10
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(DATA_STOP, requested_units=8 * MB)))
    assert (created.granted_units, created.held_micros) == (8 * MB, 8_000)  # 8 x 1_000
    world.now += MINUTE
    first = unit_of(world.session(ops.UpdateSession, "s1", 2,
                                  ops.UnitUsage(DATA_STOP, requested_units=8 * MB, used_units=8 * MB)))
    # 8 MB: 8_000. Next grant: 16_000 capped at 10_000 -> holds 10_000 - 8_000 = 2_000.
    assert (first.charged_micros, first.granted_units, first.held_micros) == (8_000, 8 * MB, 2_000)
    world.now += MINUTE
    second = unit_of(world.session(ops.UpdateSession, "s1", 3,
                                   ops.UnitUsage(DATA_STOP, requested_units=8 * MB, used_units=5 * MB)))
    # 13 MB: 13_000 -> cap 10_000: + 2_000. Next grant: at the cap, free: 8 MB holding 0.
    assert (second.charged_micros, second.result, second.granted_units, second.held_micros) == (2_000, S, 8 * MB, 0)
    world.now += MINUTE
    third = unit_of(world.session(ops.ReleaseSession, "s1", 4, ops.UnitUsage(DATA_STOP, used_units=5 * MB)))
    assert third.charged_micros == 0  # 18 MB: still 10_000
    assert world.balance().balance_micros == BALANCE_MICROS - 10_000
    world.audit()


def test_maximum_cost_deny_quota_grants_no_more_than_the_cap():
    # DATA_DENY: fee 1_000 + 1_000 per MB, cap 10_000, CAP_DENY_QUOTA.
    world = World("fees")
    world.now = WED_10
    # A Reserve of 50 MB: 1_000 + u x 1_000/MB <= 10_000 -> u = 9 MB, holding exactly 10_000.
    hold = world.reserve(DATA_DENY, 50 * MB)
    assert (hold.result, hold.granted_units, hold.held_micros, hold.final_unit_indication) == (S, 9 * MB, 10_000, True)
    debit = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, DATA_DENY, 9 * MB, True))
    assert (debit.charged_micros, debit.released_micros) == (10_000, 0)  # 1_000 + 9 x 1_000

    # In a session the cap is the session's: 9 MB, then 4 MB used -> 5 MB more, then none.
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(DATA_DENY, requested_units=50 * MB)))
    assert (created.granted_units, created.held_micros) == (9 * MB, 10_000)
    world.now += MINUTE
    update = unit_of(world.session(ops.UpdateSession, "s1", 2,
                                   ops.UnitUsage(DATA_DENY, requested_units=50 * MB, used_units=4 * MB)))
    # Charged 1_000 + 4 x 1_000 = 5_000; room left 10_000 - 5_000 -> 5 MB holding 5_000.
    assert (update.charged_micros, update.granted_units, update.held_micros) == (5_000, 5 * MB, 5_000)
    world.now += MINUTE
    capped = unit_of(world.session(ops.UpdateSession, "s1", 3,
                                   ops.UnitUsage(DATA_DENY, requested_units=50 * MB, used_units=5 * MB)))
    # 9 MB: 1_000 + 9_000 = 10_000, + 5_000; the cap is reached: no grant.
    assert (capped.charged_micros, capped.result, capped.granted_units) == (5_000, CLR, 0)
    assert world.balance().balance_micros == BALANCE_MICROS - 20_000
    assert world.balance().reserved_micros == 0
    world.audit()


# ====================================================================== bands: grants and sessions


def test_reserve_across_a_band_change_is_sized_for_the_dearer_side():
    world = World("bands")
    # 07:57 off-peak (500/s, no fee); the 330 s lifetime reaches 08:00 peak (1_000/s):
    # 300 s at the dearer 1_000/s = 300_000, fee of the off-peak rate 0.
    world.now = berlin("2025-01-15 07:57:00")
    hold = world.reserve(VOICE, 300)
    assert (hold.result, hold.granted_units, hold.held_micros) == (S, 300, 300_000)
    assert hold.tariff_time_change_ms == berlin("2025-01-15 08:00:00")
    # Used 240 s from the grant: 07:57-08:00 180 x 500 = 90_000, 08:00-08:01 60 x 1_000 = 60_000.
    world.now = berlin("2025-01-15 08:01:00")
    debit = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, VOICE, 240, True))
    assert (debit.charged_micros, debit.released_micros) == (150_000, 150_000)  # 300_000 - 150_000 back

    # 10:00, no change within 330 s: peak 300 x 1_000 + fee 5_000, no change instant.
    world.now = WED_10
    quiet = world.reserve(VOICE, 300)
    assert (quiet.held_micros, quiet.tariff_time_change_ms) == (305_000, 0)
    world.do(ops.Release(T, ALICE, world.rid(), quiet.reservation_id))

    # 17:57 peak -> 18:00 off-peak: the dearer side is peak, 300 x 1_000 + fee 5_000.
    world.now = berlin("2025-01-15 17:57:00")
    evening = world.reserve(VOICE, 300)
    assert (evening.held_micros, evening.tariff_time_change_ms) == (305_000, berlin("2025-01-15 18:00:00"))
    world.now = berlin("2025-01-15 18:02:00")
    debit = world.do(ops.Debit(T, ALICE, world.rid(), evening.reservation_id, VOICE, 300, True))
    # 17:57-18:00 180 x 1_000 + 18:00-18:02 120 x 500 + fee 5_000 = 180_000 + 60_000 + 5_000.
    assert (debit.charged_micros, debit.released_micros) == (245_000, 60_000)
    assert world.balance().balance_micros == BALANCE_MICROS - 150_000 - 245_000
    world.audit()


def test_session_across_peak_end_is_priced_second_by_second():
    world = World("bands")
    world.now = berlin("2025-01-15 17:58:00")
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(VOICE, requested_units=300)))
    # Dearer side (peak) for 300 s + fee: 300_000 + 5_000; the change at 18:00.
    assert (created.held_micros, created.tariff_time_change_ms) == (305_000, berlin("2025-01-15 18:00:00"))
    world.now = berlin("2025-01-15 18:01:00")
    update = unit_of(world.session(ops.UpdateSession, "s1", 2,
                                   ops.UnitUsage(VOICE, requested_units=300, used_units=180)))
    # 17:58-18:00 120 x 1_000 + 18:00-18:01 60 x 500 + fee 5_000 = 155_000. Next grant at 18:01 (no
    # change within 330 s): 300 x 500 = 150_000, the fee already paid.
    assert (update.charged_micros, update.held_micros, update.tariff_time_change_ms) == (155_000, 150_000, 0)
    world.now = berlin("2025-01-15 18:02:00")
    release = unit_of(world.session(ops.ReleaseSession, "s1", 3, ops.UnitUsage(VOICE, used_units=60)))
    assert release.charged_micros == 30_000  # 18:01-18:02 60 x 500
    # Whole call 240 s: 120 x 1_000 + 120 x 500 + 5_000 = 185_000.
    assert world.balance().balance_micros == BALANCE_MICROS - 185_000
    world.audit()


# ====================================================================== volume tiers


def test_volume_tiers_count_the_month_and_reset_in_the_next():
    # First 1_000 MB of a UTC month at 10_000/MB, then 1_000/MB.
    world = World("volume")
    steps = [
        ("2025-01-10 12:00:00", 600, 6_000_000),  # 600 x 10_000
        ("2025-01-20 12:00:00", 600, 4_200_000),  # 400 x 10_000 (to 1 GB) + 200 x 1_000
        ("2025-01-31 23:30:00", 100, 100_000),  # past 1 GB: 100 x 1_000 (00:30 Feb 1 in Berlin: still January UTC)
        ("2025-02-01 00:00:00", 100, 1_000_000),  # new month, counted from 0: 100 x 10_000
        ("2025-02-15 12:00:00", 950, 9_050_000),  # 900 x 10_000 (100 -> 1_000) + 50 x 1_000
    ]
    for index, (at, megabytes, expected_micros) in enumerate(steps):
        world.now = utc(at)
        if index == 1:
            # A quote at 600 MB into the month prices the crossing the same way, and charges nothing.
            quote = world.read(ops.Quote(T, ALICE, DATA, 600 * MB))
            assert quote.cost_micros == 4_200_000
            assert world.balance().balance_micros == BALANCE_MICROS - 6_000_000
        assert world.debit(DATA, megabytes * MB).charged_micros == expected_micros, at
    assert world.balance().balance_micros == BALANCE_MICROS - 20_350_000  # 6 + 4.2 + 0.1 + 1 + 9.05 EUR
    world.audit()


# ====================================================================== plan versions


def test_version_in_force_before_and_after_effective_from():
    world = World("versioned")  # v1: 1_000 an SMS, effective since PLANS_PUT_AT_MS
    t0 = utc("2025-03-03 09:00:00")
    world.now = t0
    v2 = dataclasses.replace(VERSIONED_V1, rates=(Rate(SMS, Unit.EVENTS, 2_000, 1, 1),), effective_from_ms=t0 + HOUR)
    assert world.read(ops.PutTariff(v2)) == ops.PutTariffReply(S, version=2)
    assert world.read(ops.PutTariff(v2)) == ops.PutTariffReply(S, version=2)  # same content and time: no v3

    world.now = t0 + HOUR - 1
    before = world.debit(SMS, 1)
    assert (before.charged_micros, before.tariff_version) == (1_000, 1)  # 1 ms before: v1, 1 x 1_000
    quote = world.read(ops.Quote(T, ALICE, SMS, 1, at_ms=t0 + HOUR))
    assert (quote.cost_micros, quote.tariff_version) == (2_000, 2)  # a quote for the hour: v2
    world.now = t0 + HOUR
    after = world.debit(SMS, 1)
    assert (after.charged_micros, after.tariff_version) == (2_000, 2)  # from effective_from on: v2, 1 x 2_000

    latest = world.read(ops.GetTariff("versioned"))
    assert (latest.result, latest.plan.version) == (S, 2)
    assert latest.versions == ((1, PLANS_PUT_AT_MS), (2, t0 + HOUR))
    first = world.read(ops.GetTariff("versioned", version=1))
    assert (first.plan.version, first.plan.rates[0].price_micros) == (1, 1_000)
    assert world.read(ops.GetTariff("versioned", version=3)).result == Result.TARIFF_PLAN_UNKNOWN
    world.audit()


def test_putting_a_scheduled_plan_again_effective_now_brings_it_forward():
    world = World("versioned")  # v1: 1_000 an SMS
    t0 = utc("2025-03-03 09:00:00")
    world.now = t0
    v2 = dataclasses.replace(VERSIONED_V1, rates=(Rate(SMS, Unit.EVENTS, 2_000, 1, 1),), effective_from_ms=t0 + HOUR)
    assert world.read(ops.PutTariff(v2)).result == S
    assert world.read(ops.PutTariff(dataclasses.replace(v2, effective_from_ms=0))).result == S  # now, please
    assert world.debit(SMS, 1).charged_micros == 2_000  # 1 x 2_000 from now on
    world.audit()


def test_a_hold_keeps_the_version_it_was_granted_with():
    world = World("versioned")  # v1: 1_000 an SMS
    world.now = utc("2025-03-03 09:00:00")
    hold = world.reserve(SMS, 5)
    assert (hold.held_micros, hold.tariff_version) == (5_000, 1)  # 5 x 1_000
    created = unit_of(world.session(ops.CreateSession, "s1", 1, ops.UnitUsage(SMS, requested_units=5)))
    assert created.held_micros == 5_000

    world.now += 10 * SECOND
    v2 = dataclasses.replace(VERSIONED_V1, rates=(Rate(SMS, Unit.EVENTS, 2_000, 1, 1),))  # effective now
    assert world.read(ops.PutTariff(v2)) == ops.PutTariffReply(S, version=2)

    debit = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, SMS, 5, True))
    assert (debit.charged_micros, debit.tariff_version, debit.released_micros) == (5_000, 1, 0)  # 5 x 1_000 (v1)
    update = unit_of(world.session(ops.UpdateSession, "s1", 2, ops.UnitUsage(SMS, requested_units=5, used_units=5)))
    # The usage on the v1 hold: 5 x 1_000; the new grant under v2: 5 x 2_000.
    assert (update.charged_micros, update.held_micros) == (5_000, 10_000)
    direct = world.debit(SMS, 1)
    assert (direct.charged_micros, direct.tariff_version) == (2_000, 2)
    fresh = world.reserve(SMS, 5)
    assert (fresh.held_micros, fresh.tariff_version) == (10_000, 2)
    world.audit()


# ====================================================================== quote and refund


def test_quote_prices_and_holds_nothing():
    world = World("fees")
    world.now = WED_10
    quote = world.read(ops.Quote(T, ALICE, VOICE, 61))
    # 61 s: fee 10_000 + 2 started minutes = 12_000. Affordable: 10_000 + m x 1_000 <= 100_000_000
    # -> m = 99_990 minutes = 5_999_400 s.
    assert (quote.result, quote.cost_micros, quote.available_micros) == (S, 12_000, BALANCE_MICROS)
    assert quote.affordable_units == 5_999_400
    hold = world.reserve(VOICE, 300)
    assert hold.held_micros == 15_000  # 10_000 + 5 x 1_000
    quote = world.read(ops.Quote(T, ALICE, VOICE, 61))
    # Available 100_000_000 - 15_000 = 99_985_000: 10_000 + m x 1_000 <= 99_985_000 -> m = 99_975 -> 5_998_500 s.
    assert (quote.available_micros, quote.affordable_units) == (99_985_000, 5_998_500)
    balance = world.balance()
    assert (balance.balance_micros, balance.reserved_micros) == (BALANCE_MICROS, 15_000)  # the quotes took nothing
    world.audit()


def test_quote_and_reserve_respect_caps_and_minimum():
    world = World("fees")
    world.now = WED_10
    deny = world.read(ops.Quote(T, ALICE, DATA_DENY, 1 * MB))
    # 1 MB: fee 1_000 + 1_000 = 2_000; affordable stops at the cap: 1_000 + u x 1_000/MB <= 10_000 -> 9 MB.
    assert (deny.cost_micros, deny.affordable_units) == (2_000, 9 * MB)
    stop = world.read(ops.Quote(T, ALICE, DATA_STOP, 20 * MB))
    # 20 x 1_000 capped at 10_000; past the cap usage is free, so the money buys the most a usage may be.
    assert (stop.cost_micros, stop.affordable_units) == (10_000, 10**15)
    # A 10 s hold on MINIMUM: 10 x 1_000/60 = 166.67 < 5_000 -> holds the minimum.
    hold = world.reserve(MINIMUM, 10)
    assert (hold.granted_units, hold.held_micros) == (10, 5_000)
    world.audit()


def test_quote_at_a_time_prices_that_time():
    world = World("bands")
    world.now = berlin("2025-01-15 09:00:00")
    quote = world.read(ops.Quote(T, ALICE, VOICE, 120, at_ms=berlin("2025-01-15 17:59:00")))
    # As the "peak-to-off-peak" row: 60 x 1_000 + 60 x 500 + fee 5_000. Affordable at peak:
    # 5_000 + s x 1_000 <= 100_000_000 -> s = 99_995.
    assert (quote.cost_micros, quote.time_band, quote.affordable_units) == (95_000, "peak", 99_995)
    weekend = world.read(ops.Quote(T, ALICE, VOICE, 60, at_ms=berlin("2025-01-18 10:00:00")))
    # 60 x 200; affordable 100_000_000 / 200 = 500_000 s.
    assert (weekend.cost_micros, weekend.time_band, weekend.affordable_units) == (12_000, "weekend", 500_000)
    to_berlin = world.read(ops.Quote(T, ALICE, VOICE, 60, destination="4930", at_ms=berlin("2025-01-15 20:00:00")))
    assert (to_berlin.cost_micros, to_berlin.destination_prefix, to_berlin.time_band) == (3_000, "49", "")  # 60 x 50
    balance = world.balance()
    assert (balance.balance_micros, balance.reserved_micros) == (BALANCE_MICROS, 0)
    world.audit()


def test_refund_after_a_tiered_debit_refunds_up_to_the_charge():
    world = World("tiers")
    world.now = WED_10
    debit = world.debit(STEP, 90)
    assert debit.charged_micros == 1_500  # 1_200 (first minute) + 30 x 10
    refund = world.do(ops.Refund(T, ALICE, world.rid(), debit.charge_id, 1_000))
    assert (refund.result, refund.refunded_micros, refund.refundable_micros) == (S, 1_000, 500)
    too_much = world.do(ops.Refund(T, ALICE, world.rid(), debit.charge_id, 501))
    assert (too_much.result, too_much.refundable_micros) == (Result.REFUND_EXCEEDS_CHARGE, 500)
    rest = world.do(ops.Refund(T, ALICE, world.rid(), debit.charge_id, 500))
    assert (rest.result, rest.refundable_micros) == (S, 0)
    assert world.do(ops.Refund(T, ALICE, world.rid(), debit.charge_id, 1)).result == Result.REFUND_EXCEEDS_CHARGE
    assert world.balance().balance_micros == BALANCE_MICROS  # - 1_500 + 1_000 + 500
    world.audit()


# ====================================================================== validation


GOOD_TIERS = (Tier(0, 1_000, 60, 60), Tier(60, 1_000, 60, 1))
GOOD_RATE = Rate(SMS, Unit.EVENTS, 100, 1, 1)


def _tiered(*tiers, **fields) -> Rate:
    return Rate(VOICE, Unit.SECONDS, fields.pop("price_micros", 0), fields.pop("rate_units", 0),
                fields.pop("increment_units", 0), tiers=tiers, **fields)


@pytest.mark.parametrize("plan, field", [
    pytest.param(TariffPlan("bad", (GOOD_RATE, _tiered(Tier(1, 1_000, 60, 60)))), "rates[1].tiers[0].from_units",
                 id="tiers-not-from-0"),
    pytest.param(TariffPlan("bad", (_tiered(Tier(0, 1_000, 60, 60), Tier(90, 1_000, 60, 1)),)),
                 "rates[0].tiers[1].from_units", id="tier-not-whole-increments"),  # 90 % 60 != 0
    pytest.param(TariffPlan("bad", (_tiered(Tier(0, 1_000, 60, 60), Tier(0, 1_000, 60, 1)),)),
                 "rates[0].tiers[1].from_units", id="tiers-not-ascending"),
    pytest.param(TariffPlan("bad", (GOOD_RATE, Rate(VOICE, Unit.SECONDS, 1, 1, 1, time_band="night")),
                            time_bands=BANDS), "rates[1].time_band", id="unknown-time-band"),
    pytest.param(TariffPlan("bad", (GOOD_RATE,), time_zone="Europe/Atlantis"), "time_zone", id="bad-time-zone"),
    pytest.param(TariffPlan("bad", (GOOD_RATE,), holidays=("2025-01-01", "2025-02-30")), "holidays[1]",
                 id="bad-holiday"),
    pytest.param(TariffPlan("bad", (GOOD_RATE,), holidays=("2025-1-1",)), "holidays[0]", id="short-holiday"),
    pytest.param(TariffPlan("bad", (_tiered(*GOOD_TIERS, price_micros=1_000),)), "rates[0].price_micros",
                 id="price-with-tiers"),
    pytest.param(TariffPlan("bad", (_tiered(*GOOD_TIERS, rate_units=60),)), "rates[0].rate_units",
                 id="rate-units-with-tiers"),
    pytest.param(TariffPlan("bad", (_tiered(*GOOD_TIERS, increment_units=1),)), "rates[0].increment_units",
                 id="increment-with-tiers"),
    pytest.param(TariffPlan("bad", (Rate(VOICE, Unit.SECONDS, 1, 1, 1, cap_action=CapAction.CAP_DENY_QUOTA),)),
                 "rates[0].cap_action", id="cap-action-without-maximum"),
])
def test_put_tariff_rejects_naming_the_field(plan, field):
    shard = ShardState(3)
    reply = shard.apply(ops.PutTariff(plan), WED_10)
    assert isinstance(reply, ops.Rejection), reply
    assert (reply.code, reply.field) == (ErrorCode.INVALID_ARGUMENT, field)
    assert shard.apply(ops.GetTariff("bad"), WED_10).result == Result.TARIFF_PLAN_UNKNOWN  # nothing stored
    assert not shard.take_writes()
