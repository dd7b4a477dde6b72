"""The storm's arrival schedules, subscriber skew and latency recorder (grid.storm),
without a grid: schedules stay inside their bounds, a seeded Poisson process
has the rate it was asked for, bursts land on the top of each period, a late
send is measured from its intended time (coordinated omission), and zipf
choice is as skewed as its exponent says."""

import collections
import statistics

import pytest

from grid.storm import schedule
from grid.storm.recorder import SHED_KEY, Recorder
from grid.storm.schedule import ScheduleSpec, Zipf


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize("make", [
    lambda d, n: schedule.poisson(500.0, d, n, seed=7),
    lambda d, n: schedule.constant(500.0, d, n),
    lambda d, n: schedule.bursts(300, 0.5, d, n, spread_s=0.1),
])
def test_every_schedule_stops_at_its_duration_and_its_count(make):
    by_time = list(make(2.0, 10**6))
    assert by_time and all(0 <= t < 2.0 for t in by_time)
    assert by_time == sorted(by_time)
    assert len(list(make(2.0, 37))) == 37  # the count cuts first here
    assert len(by_time) < 10**6  # the duration cut first there


@pytest.mark.parametrize("call", [
    lambda: schedule.poisson(10.0, 601.0, 10, seed=1),  # longer than a run may be
    lambda: schedule.poisson(0.0, 1.0, 10, seed=1),
    lambda: schedule.constant(10.0, 1.0, 0),
    lambda: schedule.constant(10.0, 1.0, schedule.ARRIVALS_MAX + 1),
    lambda: schedule.bursts(10, 1.0, 5.0, 100, spread_s=1.0),  # spread as long as the period
    lambda: schedule.bursts(0, 1.0, 5.0, 100),
])
def test_out_of_bounds_schedules_are_refused(call):
    with pytest.raises(ValueError):
        next(iter(call()))


def test_a_schedule_spec_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="schedule must be one of"):
        ScheduleSpec("sinusoid")


# ---------------------------------------------------------------- poisson and constant


def test_a_seeded_poisson_process_has_the_rate_asked_for_and_repeats():
    times = list(schedule.poisson(1_000.0, 20.0, 10**6, seed=42))
    # 20,000 expected; the count's standard deviation is sqrt(20,000) ~ 141: 3% is > 4 sigma.
    assert abs(len(times) - 20_000) < 600
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.fmean(gaps) == pytest.approx(1 / 1_000, rel=0.03)
    # Exponential gaps: the standard deviation equals the mean (a constant schedule's would be 0).
    assert statistics.pstdev(gaps) == pytest.approx(1 / 1_000, rel=0.05)
    assert times == list(schedule.poisson(1_000.0, 20.0, 10**6, seed=42))
    assert times != list(schedule.poisson(1_000.0, 20.0, 10**6, seed=43))


def test_a_constant_schedule_is_evenly_spaced_without_drift():
    times = list(schedule.constant(3.0, 10.0, 10**6))
    assert len(times) == 30
    assert times[0] == 0.0 and times[-1] == pytest.approx(29 / 3)
    assert all(t == pytest.approx(i / 3) for i, t in enumerate(times))


# ---------------------------------------------------------------- bursts


def test_bursts_land_on_the_top_of_each_period():
    times = list(schedule.bursts(1_000, 60.0, 181.0, 10**6))
    assert collections.Counter(times) == {0.0: 1_000, 60.0: 1_000, 120.0: 1_000, 180.0: 1_000}


def test_a_spread_burst_stays_inside_its_window_evenly():
    times = list(schedule.bursts(4, 10.0, 30.0, 10**6, spread_s=2.0, first_at_s=3.0))
    assert times == [3.0, 3.5, 4.0, 4.5, 13.0, 13.5, 14.0, 14.5, 23.0, 23.5, 24.0, 24.5]


def test_bursts_are_cut_by_the_count_and_the_duration_mid_burst():
    assert len(list(schedule.bursts(100, 1.0, 10.0, 250))) == 250
    assert list(schedule.bursts(4, 1.0, 1.5, 100, spread_s=0.8)) == pytest.approx([0.0, 0.2, 0.4, 0.6, 1.0, 1.2, 1.4])


def test_the_top_of_the_minute_is_found_from_the_wall_clock():
    assert schedule.next_top_of_period_s(1_700_000_040.0, 60.0) == pytest.approx(0.0)  # exactly on the top
    assert schedule.next_top_of_period_s(1_700_000_041.5, 60.0) == pytest.approx(58.5)
    assert schedule.next_top_of_period_s(1_700_000_099.0, 60.0) == pytest.approx(1.0)


# ---------------------------------------------------------------- coordinated omission


def test_a_late_send_is_measured_from_its_intended_time():
    recorder = Recorder()
    # Due at 1.0 s, could only leave at 1.5 s (the generator or the flow was behind), answered at 1.6 s.
    recorder.offered(1.0)
    recorder.completed("Debit", "SUCCESS", False, intended_s=1.0, sent_s=1.5, done_s=1.6)
    assert recorder.latency.get_max_value() == pytest.approx(600_000, rel=0.001)  # microseconds, wait included
    assert recorder.service.get_max_value() == pytest.approx(100_000, rel=0.001)  # what a closed loop would see
    summary = recorder.summary(load_s=2.0)
    assert summary["latency_ms"]["max"] == pytest.approx(600, rel=0.001)
    assert summary["service_time_ms"]["max"] == pytest.approx(100, rel=0.001)
    assert summary["results"] == {"Debit SUCCESS": 1}


def test_shed_arrivals_and_failed_calls_are_counted_not_hidden():
    recorder = Recorder()
    for at_s in (0.1, 0.2, 0.3):
        recorder.offered(at_s)
    recorder.shed(0.4)
    recorder.completed("Reserve", "SUCCESS", False, 0.1, 0.1, 0.15)
    recorder.completed("Reserve", "DEADLINE_EXCEEDED", True, 0.2, 0.2, 1.2)
    recorder.completed("Reserve", "CREDIT_LIMIT_REACHED", False, 0.3, 0.3, 1.3)
    summary = recorder.summary(load_s=1.0)
    assert summary["requests"] == {"offered": 4, "sent": 0, "replied": 2, "failed": 1, "shed_by_generator": 1}
    assert summary["results"] == {SHED_KEY: 1, "Reserve CREDIT_LIMIT_REACHED": 1, "Reserve SUCCESS": 1,
                                  "Reserve grpc:DEADLINE_EXCEEDED": 1}
    assert summary["rate_per_s"]["offered"] == 4.0
    # Achieved: replies over the span to the last reply (1.3 s), not the nominal 1 s.
    assert summary["rate_per_s"]["achieved"] == pytest.approx(2 / 1.3, abs=0.1)
    series = recorder.series()
    assert [row["offered"] for row in series] == [4, 0]
    assert [row["achieved"] for row in series] == [1, 1] and [row["errors"] for row in series] == [0, 1]
    assert series[0]["shed"] == 1 and series[1]["p99_ms"] == pytest.approx(1_000, rel=0.01)


# ---------------------------------------------------------------- zipf


def test_zipf_choice_is_skewed_as_its_exponent_says_and_repeats():
    draws = 50_000
    zipf = Zipf(1_000, 1.1, seed=3)
    counts = collections.Counter(zipf() for _ in range(draws))
    assert counts.most_common(1)[0][0] == 0  # the hottest is index 0
    top_10_share = sum(counts[k] for k in range(10)) / draws
    assert top_10_share == pytest.approx(zipf.share_of_top(10), abs=0.02)
    assert top_10_share > 0.4  # uniform would give 0.01
    assert all(0 <= k < 1_000 for k in counts)
    first, second = Zipf(1_000, 1.1, seed=9), Zipf(1_000, 1.1, seed=9)
    assert [first() for _ in range(500)] == [second() for _ in range(500)]


def test_zipf_with_exponent_zero_is_uniform():
    zipf = Zipf(10, 0.0, seed=5)
    counts = collections.Counter(zipf() for _ in range(20_000))
    assert set(counts) == set(range(10))
    assert max(counts.values()) / min(counts.values()) < 1.15
    assert zipf.share_of_top(1) == pytest.approx(0.1)
