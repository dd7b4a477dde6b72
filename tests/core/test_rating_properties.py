"""Properties of rating (DESIGN.md section 3), checked against exact rationals.

The reference here is written from the formula, not from rating.py:
cost(u) = ceil(ceil(u / inc) * inc * price / rate_units), in micros, rounded once.
"""

import math
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st

from grid.domain.outcomes import Unit
from grid.domain.rating import Rate, affordable_units, billed_units, cost

prices = st.one_of(st.integers(0, 10), st.integers(0, 10**15))
rate_units = st.one_of(st.sampled_from([1, 60, 1_000, 1_000_000, 3, 7]), st.integers(1, 2**64 - 1))
increments = st.one_of(st.sampled_from([1, 6, 60, 100_000]), st.integers(1, 10**6))


@st.composite
def rates(draw, priced: bool | None = None):
    price = draw(prices)
    if priced is True:
        price = max(price, 1)
    elif priced is False:
        price = 0
    return Rate(
        rating_group=draw(st.integers(1, 2**32 - 1)),
        unit=draw(st.sampled_from([Unit.SECONDS, Unit.BYTES, Unit.EVENTS])),
        price_micros=price,
        rate_units=draw(rate_units),
        increment_units=draw(increments),
    )


usage = st.one_of(st.integers(0, 1_000), st.integers(0, 10**15))


def exact_cost(rate: Rate, units: int) -> Fraction:
    billed = math.ceil(Fraction(units, rate.increment_units)) * rate.increment_units
    return Fraction(billed * rate.price_micros, rate.rate_units)


@settings(max_examples=300)
@given(rates(), usage)
@example(Rate(1, Unit.SECONDS, 1_000, 60, 1), 1)
def test_cost_is_a_non_negative_integer_rounded_up_once(rate, units):
    charged = cost(rate, units)
    exact = exact_cost(rate, units)
    assert type(charged.charged_micros) is int and type(charged.rounding_residue_picos) is int
    assert charged.charged_micros >= 0
    assert charged.charged_micros == math.ceil(exact)
    assert 0 <= charged.charged_micros - exact < 1
    assert charged.rounding_residue_picos == math.floor((charged.charged_micros - exact) * 10**6)
    assert 0 <= charged.rounding_residue_picos < 10**6


@settings(max_examples=300)
@given(rates(), usage, st.one_of(st.integers(1, 100), st.integers(1, 10**12)))
def test_cost_is_monotone_in_usage(rate, units, more):
    assert cost(rate, units).charged_micros <= cost(rate, units + more).charged_micros


@given(rates(), usage)
def test_billed_units_are_whole_increments_covering_the_usage(rate, units):
    billed = billed_units(rate, units)
    assert billed % rate.increment_units == 0
    assert units <= billed < units + rate.increment_units


@given(rates())
def test_nothing_used_costs_nothing(rate):
    assert cost(rate, 0).charged_micros == 0 and cost(rate, 0).rounding_residue_picos == 0


@given(rates(priced=False), usage)
def test_a_free_rate_costs_nothing(rate, units):
    assert cost(rate, units).charged_micros == 0


available_money = st.one_of(st.integers(-10**6, 10**6), st.integers(-10**17, 10**17))
caps = st.one_of(st.integers(0, 1_000), st.integers(0, 10**15))


@settings(max_examples=500)
@given(rates(priced=True), available_money, caps)
@example(Rate(1, Unit.SECONDS, 1_000, 60, 60), 2_999, 1_000)
@example(Rate(1, Unit.EVENTS, 1, 3, 1), 1, 100)
def test_affordable_units_fit_the_money_and_one_more_increment_would_not(rate, available, cap):
    granted = affordable_units(rate, available, cap)
    assert type(granted) is int
    assert 0 <= granted <= cap
    assert granted == cap or granted % rate.increment_units == 0
    assert cost(rate, granted).charged_micros <= max(available, 0)
    if available <= 0:
        assert granted == 0
    if granted < cap:
        # The cap did not bind: the money did. The next whole increment is out of reach.
        next_whole = (granted // rate.increment_units + 1) * rate.increment_units
        assert exact_cost(rate, next_whole) > available
        assert cost(rate, next_whole).charged_micros > available


@settings(max_examples=300)
@given(
    st.builds(
        Rate, rating_group=st.just(1), unit=st.just(Unit.EVENTS), price_micros=st.integers(1, 50),
        rate_units=st.integers(1, 20), increment_units=st.integers(1, 5),
    ),
    st.integers(-5, 300),
    st.integers(0, 40),
)
def test_affordable_units_is_the_largest_grant_by_brute_force(rate, available, cap):
    """Among 0..cap, the largest grant that is whole increments (or exactly the cap)
    and whose exact cost, rounded up, fits the money."""
    candidates = [u for u in range(cap + 1) if u == cap or u % rate.increment_units == 0]
    best = max([u for u in candidates if math.ceil(exact_cost(rate, u)) <= available] or [0])
    assert affordable_units(rate, available, cap) == best


@given(rates(priced=False), available_money, caps)
def test_a_free_rate_affords_the_whole_cap(rate, available, cap):
    assert affordable_units(rate, available, cap) == cap
