"""The one-price fast path of Pricer.charge (integers) against the general path
(exact fractions, tiers, caps): the same charge, residue and exact cost."""

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from grid.domain.outcomes import Unit
from grid.domain.pricing import PlanIndex, Pricer, Usage, billed_end
from grid.domain.rating import Rate, Rounding, TariffPlan


@settings(max_examples=400, deadline=None)
@given(price=st.integers(0, 10**9), per=st.integers(1, 10**6), increment=st.integers(1, 3600),
       rule=st.sampled_from(list(Rounding)), used=st.integers(0, 10**9), more=st.integers(0, 10**9))
def test_the_integer_fast_path_charges_what_the_exact_path_charges(price, per, increment, rule, used, more):
    rate = Rate(1, Unit.BYTES, price, per, increment)
    pricer = Pricer(PlanIndex(TariffPlan("p", (rate,), rounding=rule)), Usage(1), 0)
    assert pricer._simple
    exact = Fraction(billed_end(rate.effective_tiers, used) * price, per)
    fast = pricer.charge(used, exact, more, 0, 0)
    pricer._simple = False
    slow = pricer.charge(used, exact, more, 0, 0)
    assert (fast.charged_micros, fast.rounding_residue_picos, fast.exact_after) == (
        slow.charged_micros, slow.rounding_residue_picos, slow.exact_after)
