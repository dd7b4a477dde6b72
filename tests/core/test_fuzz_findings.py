"""Core-level reproducers of what the fuzz campaigns found (tests/e2e/test_e2e_fuzz.py,
load_tests/fuzz_codec_atheris.py), plus the properties they broke: strict xfails
while a finding is open, plain regression tests once it is fixed. Pure core: no
Ray, no gRPC.

- (fixed in 07c880d) GetBillingCycle with an at_ms that validation accepted
  (0..INT64_MAX) but that lay in or after December 9999 raised ValueError inside
  ShardState.apply; in a shard actor any exception there is os._exit(70), so one
  request killed the shard on every resend and the caller got UNAVAILABLE.
- (fixed in e02dcf9) validate() raised TypeError (not InvalidArgument) when a plan's
  control or policy counter listed an unhashable rating group: set() ran before each
  element was checked. Not reachable from gRPC (repeated uint32 gives ints).
"""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from grid.domain import operations as ops
from grid.domain.limits import INT64_MAX, CoreLimits
from grid.domain.outcomes import ControlAction, ControlKind, CounterPeriod, Result, Unit
from grid.domain.rating import Control, CounterThreshold, PolicyCounter, Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.domain.validation import InvalidArgument, validate

T = ops.DEFAULT_TENANT
LIMITS = CoreLimits()
NOW_MS = 1_700_000_000_000
# 9999-12-01T00:00:00Z: from here on the month's end would be in year 10000.
BILLING_CYCLE_AT_MS_CRASH = 253_399_622_400_000
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _shard_with_an_account() -> ShardState:
    state = ShardState(0, LIMITS)
    state.apply(ops.PutTariff(TariffPlan("p", (Rate(1, Unit.SECONDS, 1000, 60, 1),))), NOW_MS)
    assert state.apply(ops.CreateAccount(T, "s", "c", "EUR", 0, "p"), NOW_MS).result == Result.SUCCESS
    assert state.apply(ops.TopUp(T, "s", "t", 10_000), NOW_MS).result == Result.SUCCESS
    assert state.apply(ops.Debit(T, "s", "d", "", 1, 60, False), NOW_MS).result == Result.SUCCESS
    return state


@FUZZ
@given(at_ms=st.integers(0, BILLING_CYCLE_AT_MS_CRASH - 1))
@example(0)
@example(BILLING_CYCLE_AT_MS_CRASH - 1)
def test_billing_cycle_of_any_instant_before_december_9999_is_answered(at_ms):
    reply = _shard_with_an_account().apply(ops.GetBillingCycle(T, "s", at_ms), NOW_MS)
    assert reply.result == Result.SUCCESS


# Was: ValueError ('year 10000 is out of range') from grid/domain/policy_counters.py period_bounds via
# grid/domain/controls.py _get_billing_cycle, for any at_ms >= 253399622400000 (fixed in 07c880d).
@FUZZ
@given(at_ms=st.integers(0, INT64_MAX))
@example(BILLING_CYCLE_AT_MS_CRASH)
@example(INT64_MAX)
def test_billing_cycle_of_any_valid_at_ms_is_answered_or_rejected_by_validation(at_ms):
    reply = _shard_with_an_account().apply(ops.GetBillingCycle(T, "s", at_ms), NOW_MS)
    assert isinstance(reply, ops.Rejection) or reply.result == Result.SUCCESS


def _plan(controls=(), counters=()) -> ops.PutTariff:
    return ops.PutTariff(TariffPlan("p", (Rate(1, Unit.EVENTS, 1, 1, 1),), policy_counters=counters,
                                    controls=controls))


UNHASHABLE_RATING_GROUPS = [
    pytest.param(_plan(controls=(Control("c", ControlKind.SPEND_VELOCITY, 1, 1, ControlAction.NOTIFY, ([1],)),)),
                 "controls[0].rating_groups", id="control"),
    pytest.param(_plan(counters=(PolicyCounter("c", ([1],), False, CounterPeriod.COUNTER_PERIOD_DAY, "n",
                                               (CounterThreshold(1, "x"),)),)),
                 "policy_counters[0].rating_groups", id="policy-counter"),
]


# Was: TypeError 'unhashable type: list' from len(set(rating_groups)) in grid/domain/validation.py
# _validate_controls / _validate_counters, before each element was checked (fixed in e02dcf9).
@pytest.mark.parametrize("operation, field", UNHASHABLE_RATING_GROUPS)
def test_a_wrongly_typed_rating_group_is_invalid_argument(operation, field):
    with pytest.raises(InvalidArgument) as raised:
        validate(operation, LIMITS)
    assert raised.value.field.startswith(field)


# What the front door can build from any protobuf request: validation answers
# InvalidArgument naming a field, or lets it through; it never raises anything else.
# Mostly well-formed ids (3 in 4), so that the checks after the ids are reached too.
_good_text = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,20}", fullmatch=True)
wire_text = st.one_of(_good_text, _good_text, _good_text, st.text(st.characters(codec="utf-8"), max_size=20),
                      st.sampled_from(["", " x", "x" * 129, "\x00", "\u2028", "session/x/1"]))


def _edged(low: int, high: int) -> st.SearchStrategy:
    """The range, and its edges and the limits' edges more often than chance would give them."""
    edges = [v for v in (low, low + 1, -1, 0, 1, 2, 10**15, 10**15 + 1, 2**32 - 1, 2**32, high - 1, high)
             if low <= v <= high]
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


uint32 = _edged(0, 2**32 - 1)
uint64 = _edged(0, 2**64 - 1)
int64 = _edged(-(2**63), 2**63 - 1)
enum_number = _edged(-(2**31), 2**31 - 1)
rate = st.builds(Rate, uint32, enum_number, int64, uint64, uint64, enum_number, wire_text)
counter = st.builds(PolicyCounter, wire_text, st.lists(uint32, max_size=3).map(tuple), st.booleans(), enum_number,
                    wire_text, st.lists(st.builds(CounterThreshold, uint64, wire_text), max_size=3).map(tuple))
control = st.builds(Control, wire_text, enum_number, uint64, uint32, enum_number,
                    st.lists(uint32, max_size=3).map(tuple))
usage = st.builds(ops.UnitUsage, uint32, uint64, uint64)
wire_operations = st.one_of(
    st.builds(ops.CreateAccount, st.just(T), wire_text, wire_text, wire_text, int64, wire_text),
    st.builds(ops.SetAccountState, st.just(T), wire_text, wire_text, enum_number),
    st.builds(ops.TopUp, st.just(T), wire_text, wire_text, int64),
    st.builds(ops.Reserve, st.just(T), wire_text, wire_text, wire_text, uint32, uint64),
    st.builds(ops.Debit, st.just(T), wire_text, wire_text, wire_text, uint32, uint64, st.booleans()),
    st.builds(ops.Release, st.just(T), wire_text, wire_text, wire_text),
    st.builds(ops.Refund, st.just(T), wire_text, wire_text, wire_text, int64),
    st.builds(ops.PutTariff, st.builds(TariffPlan, wire_text, st.lists(rate, max_size=3).map(tuple),
                                       policy_counters=st.lists(counter, max_size=2).map(tuple),
                                       controls=st.lists(control, max_size=2).map(tuple))),
    *[st.builds(cls, st.just(T), wire_text, wire_text, uint32, st.lists(usage, max_size=4).map(tuple), wire_text)
      for cls in (ops.CreateSession, ops.UpdateSession)],
    st.builds(ops.ReleaseSession, st.just(T), wire_text, wire_text, uint32, st.lists(usage, max_size=4).map(tuple)),
    st.builds(ops.Subscribe, st.just(T), wire_text, wire_text, wire_text, st.lists(wire_text, max_size=4).map(tuple)),
    st.builds(ops.Unsubscribe, st.just(T), wire_text, wire_text, wire_text),
    st.builds(ops.GetBillingCycle, st.just(T), wire_text, int64),
    st.builds(ops.GetTransaction, st.just(T), wire_text, wire_text),
    st.builds(ops.GetSession, st.just(T), wire_text, wire_text),
    st.builds(ops.GetTariff, wire_text, st.just(T)),
    *[st.builds(cls, st.just(T), wire_text) for cls in (ops.GetBalance, ops.GetAccount, ops.GetCounters)],
)


@settings(max_examples=600, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(operation=wire_operations)
def test_validation_of_wire_shaped_operations_raises_only_invalid_argument(operation):
    try:
        validate(operation, LIMITS)
    except InvalidArgument as error:
        assert error.field and error.message
