"""Rate selection by service (RFC 4006 Service-Identifier), written out by hand
(TESTING.md layer 1: pure core). A rate may name a service of its rating
group: usage naming that service is rated by the service's rates first, then
by the group's (any service); a service no rate names is rated as any service
of its group. The service is chosen before the destination prefix: a zero-
rated service stays free whatever number it reaches.

Every figure below carries its arithmetic. Units: micros, ms, MB = 1_000_000 bytes.
"""

import itertools

import pytest

from grid.domain import operations as ops
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import ErrorCode, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.domain.validation import InvalidArgument, validate

T = ops.DEFAULT_TENANT
ALICE = "alice"
S, RF = Result.SUCCESS, Result.RATING_FAILED
MB = 1_000_000
NOW = 1_750_000_000_000
BALANCE = 100_000_000

DATA = 20  # bytes: 1_000 a started MB; service 7 (messaging) free; service 8 (video) 5_000 a started MB
VOICE = 21  # seconds: 1_000 a second, to 44... 2_000; service 3 (VoLTE) 500 a second to anywhere
ONLY_SERVICE = 22  # events: a rate for service 9 only, 100 each
MESSAGING, VIDEO, VOLTE, NINE = 7, 8, 3, 9

PLAN = TariffPlan("services", (
    Rate(DATA, Unit.BYTES, 1_000, MB, MB),
    Rate(DATA, Unit.BYTES, 0, MB, MB, service_identifier=MESSAGING),
    Rate(DATA, Unit.BYTES, 5_000, MB, MB, service_identifier=VIDEO),
    Rate(VOICE, Unit.SECONDS, 60_000, 60, 1),
    Rate(VOICE, Unit.SECONDS, 120_000, 60, 1, destination_prefix="44"),
    Rate(VOICE, Unit.SECONDS, 30_000, 60, 1, service_identifier=VOLTE),
    Rate(ONLY_SERVICE, Unit.EVENTS, 100, 1, 1, service_identifier=NINE),
))


class World:
    def __init__(self) -> None:
        self.shard = ShardState(0)
        self.now = NOW
        self._ids = itertools.count(1)
        assert self.shard.apply(ops.PutTariff(PLAN), self.now).result == S
        assert self.do(ops.CreateAccount(T, ALICE, self.rid(), "EUR", 0, PLAN.tariff_plan_id)).result == S
        assert self.do(ops.TopUp(T, ALICE, self.rid(), BALANCE)).result == S

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def do(self, operation):
        [reply] = self.shard.apply_batch([operation], self.now)
        return reply

    def balance(self) -> int:
        return self.shard.apply(ops.GetBalance(T, ALICE), self.now).balance_micros


@pytest.mark.parametrize("rating_group, service, destination, units, expected, expected_result", [
    pytest.param(DATA, 0, "", 3 * MB, 3_000, S, id="no-service-group-rate"),  # 3 started MB x 1_000
    pytest.param(DATA, MESSAGING, "", 3 * MB, 0, S, id="zero-rated-service"),  # 3 x 0
    pytest.param(DATA, VIDEO, "", 3 * MB, 15_000, S, id="premium-service"),  # 3 x 5_000
    pytest.param(DATA, VIDEO, "", 2 * MB + 1, 15_000, S, id="premium-started-mb"),  # 3 started MB x 5_000
    pytest.param(DATA, 12345, "", 3 * MB, 3_000, S, id="unnamed-service-group-rate"),  # no rate names 12345
    pytest.param(VOICE, 0, "4930", 10, 10_000, S, id="group-any-destination"),  # no 49 rate: 10 x 1_000
    pytest.param(VOICE, 0, "447700", 10, 20_000, S, id="group-uk-prefix"),  # 44...: 10 x 2_000
    pytest.param(VOICE, VOLTE, "447700", 10, 5_000, S, id="service-before-prefix"),  # VoLTE anywhere: 10 x 500
    pytest.param(VOICE, 4, "447700", 10, 20_000, S, id="other-service-prefix"),  # 4 unnamed: UK 10 x 2_000
    pytest.param(ONLY_SERVICE, NINE, "", 2, 200, S, id="service-only-group"),  # 2 x 100
    pytest.param(ONLY_SERVICE, 0, "", 2, 0, RF, id="service-only-group-without-service"),  # no any-service rate
    pytest.param(ONLY_SERVICE, 10, "", 2, 0, RF, id="service-only-group-other-service"),  # 10: no rate, no group rate
])
def test_a_direct_debit_is_rated_by_its_services_rate_before_its_groups(rating_group, service, destination, units,
                                                                       expected, expected_result):
    world = World()
    reply = world.do(ops.Debit(T, ALICE, world.rid(), "", rating_group, units, False, destination=destination,
                               service_identifier=service))
    assert (reply.result, reply.charged_micros) == (expected_result, expected), reply
    assert world.balance() == BALANCE - expected
    world.shard.check_invariants()


def test_a_hold_keeps_the_service_it_was_granted_for():
    world = World()
    hold = world.do(ops.Reserve(T, ALICE, world.rid(), "s1", DATA, 4 * MB, service_identifier=VIDEO))
    assert (hold.result, hold.granted_units, hold.held_micros) == (S, 4 * MB, 20_000)  # 4 x 5_000
    assert world.shard.reservations[hold.reservation_id].service_identifier == VIDEO
    [view] = world.shard.apply(ops.GetAccount(T, ALICE), world.now).reservations  # what the hold is rated for
    assert (view.reservation_id, view.service_identifier, view.tariff_version) == (hold.reservation_id, VIDEO, 1)
    charged = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, DATA, 3 * MB, True))
    # Rated as granted: 3 x 5_000 = 15_000; the final debit returns 20_000 - 15_000 = 5_000.
    assert (charged.result, charged.charged_micros, charged.released_micros) == (S, 15_000, 5_000)
    assert world.balance() == BALANCE - 15_000
    again = world.do(ops.Reserve(T, ALICE, world.rid(), "s1", DATA, MB, service_identifier=VIDEO))
    renamed = world.do(ops.Debit(T, ALICE, world.rid(), again.reservation_id, DATA, MB, False,
                                 service_identifier=MESSAGING))
    assert isinstance(renamed, ops.Rejection)
    assert (renamed.code, renamed.field) == (ErrorCode.INVALID_ARGUMENT, "service_identifier")
    assert world.balance() == BALANCE - 15_000  # the refused debit changed nothing
    world.shard.check_invariants()


def test_a_session_rates_each_groups_usage_by_the_service_it_names():
    world = World()
    created = world.do(ops.CreateSession(T, ALICE, "s2", 1, (
        ops.UnitUsage(DATA, requested_units=5 * MB, service_identifier=MESSAGING),
        ops.UnitUsage(VOICE, requested_units=60, destination="447700", service_identifier=VOLTE))))
    assert created.result == S, created
    data, voice = created.multiple_unit_information
    # Messaging is free: 5 MB granted, nothing held. VoLTE: 60 x 500 = 30_000 held (not the UK's 2_000 a second).
    assert (data.granted_units, data.held_micros) == (5 * MB, 0)
    assert (voice.granted_units, voice.held_micros) == (60, 30_000)
    world.now += 40_000
    updated = world.do(ops.UpdateSession(T, ALICE, "s2", 2, (
        ops.UnitUsage(DATA, used_units=5 * MB, service_identifier=MESSAGING),
        ops.UnitUsage(VOICE, used_units=40, destination="447700", service_identifier=VOLTE))))
    data, voice = updated.multiple_unit_information
    assert (data.charged_micros, voice.charged_micros) == (0, 20_000)  # 0; 40 x 500
    assert world.balance() == BALANCE - 20_000
    world.shard.check_invariants()


def test_a_quote_names_the_service_whose_rate_it_used():
    world = World()
    video = world.shard.apply(ops.Quote(T, ALICE, DATA, 3 * MB, service_identifier=VIDEO), world.now)
    # 3 x 5_000; affordable: 100_000_000 / 5_000 = 20_000 MB.
    assert (video.result, video.cost_micros, video.service_identifier) == (S, 15_000, VIDEO)
    assert video.affordable_units == 20_000 * MB
    other = world.shard.apply(ops.Quote(T, ALICE, DATA, 3 * MB, service_identifier=99), world.now)
    assert (other.cost_micros, other.service_identifier) == (3_000, 0)  # the group's rate, for any service
    none = world.shard.apply(ops.Quote(T, ALICE, ONLY_SERVICE, 1), world.now)
    assert none.result == RF


def test_rates_may_differ_by_service_alone_but_not_repeat_a_selector():
    limits = CoreLimits()
    validate(ops.PutTariff(PLAN), limits)  # DATA three times, each with its own service: fine
    twice = TariffPlan("twice", (Rate(DATA, Unit.BYTES, 1, MB, MB, service_identifier=VIDEO),
                                 Rate(DATA, Unit.BYTES, 2, MB, MB, service_identifier=VIDEO)))
    with pytest.raises(InvalidArgument) as raised:
        validate(ops.PutTariff(twice), limits)
    assert raised.value.field == "rates[1].rating_group"
    assert "service 8" in raised.value.message
    huge = TariffPlan("huge", (Rate(DATA, Unit.BYTES, 1, MB, MB, service_identifier=2**32),))
    with pytest.raises(InvalidArgument) as raised:
        validate(ops.PutTariff(huge), limits)
    assert raised.value.field == "rates[0].service_identifier"


@pytest.mark.parametrize("operation, field", [
    (ops.Reserve(T, ALICE, "r", "s", DATA, 1, service_identifier=-1), "service_identifier"),
    (ops.Debit(T, ALICE, "r", "", DATA, 1, False, service_identifier=2**32), "service_identifier"),
    (ops.Quote(T, ALICE, DATA, 1, service_identifier=-5), "service_identifier"),
    (ops.CreateSession(T, ALICE, "s", 1, (ops.UnitUsage(DATA, 1, service_identifier=2**32),)),
     "multiple_unit_usage[0].service_identifier"),
])
def test_a_service_identifier_out_of_range_is_refused_naming_the_field(operation, field):
    world = World()
    reply = world.do(operation) if not isinstance(operation, ops.Quote) else world.shard.apply(operation, world.now)
    assert isinstance(reply, ops.Rejection), reply
    assert (reply.code, reply.field) == (ErrorCode.INVALID_ARGUMENT, field)
    assert world.balance() == BALANCE


def test_the_worked_catalog_prices_premium_sms_by_its_service():
    import pathlib

    from grid import catalog

    plans = {plan.tariff_plan_id: plan
             for plan in catalog.load_file(pathlib.Path(__file__).resolve().parents[2] / "examples" / "catalog.yaml")}
    shard = ShardState(0)
    for plan in plans.values():
        assert shard.apply(ops.PutTariff(plan), NOW).result == S  # each plan of the file is valid
    [created, funded] = shard.apply_batch([ops.CreateAccount(T, ALICE, "c", "EUR", 0, "sms"),
                                           ops.TopUp(T, ALICE, "t", BALANCE)], NOW)
    assert created.result == funded.result == S
    [plain, premium, roaming] = shard.apply_batch([
        ops.Debit(T, ALICE, "d1", "", 300, 1, False),
        ops.Debit(T, ALICE, "d2", "", 300, 1, False, service_identifier=2),
        ops.Debit(T, ALICE, "d3", "", 300, 1, False, roaming_zone="eu", service_identifier=2)], NOW)
    # 0.09; premium 0.50; premium while roaming: the service's rate first, 0.50 (not eu's 0.19).
    assert (plain.charged_micros, premium.charged_micros, roaming.charged_micros) == (90_000, 500_000, 500_000)
