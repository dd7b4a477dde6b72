"""The storms: seven scenarios, each a tariff plan, a population of funded
subscribers, a default arrival schedule and a flow started at every arrival.

| scenario         | an arrival is                                              |
|------------------|------------------------------------------------------------|
| data-sessions    | a 5G PDU session: create, an update every N s with usage on 2-5 rating groups, release |
| voice-calls      | a call: a Reserve per 60 s chunk as it goes, a final Debit per chunk at hang-up |
| sms              | a direct debit (no reservation); some get a delivery failure refund |
| iot-storm        | one device's tiny event; all devices report at the top of each period |
| reauth-wave      | a session among many opened together, re-authorised together when their validity ends |
| failover-replay  | a session whose last request is re-sent after a failover; the grid must answer `replayed` |
| hot-subscribers  | a reserve and a final debit on a subscriber drawn with zipf skew |

Defaults fit a 2-core laptop; every parameter has a named maximum. Flows are
deterministic given the run's seed (flow.rng), and every request id carries
the run id, so a rerun never replays an earlier run's charges (only its
provisioning, on purpose).
"""

import dataclasses
import math
from typing import ClassVar

from charging.v1 import charging_pb2 as pb

from grid.storm import provisioning
from grid.storm.schedule import ScheduleSpec, Zipf, next_top_of_period_s

SUBSCRIBERS_MAX = provisioning.SUBSCRIBERS_MAX
DEVICES_MAX = 1_000_000
FUNDS_DEFAULT_MICROS = 10**10  # 10,000.00 EUR a subscriber: a storm is not about running dry
FUNDS_MAX_MICROS = 10**15

# Rating groups. Data groups are priced per MB, billed per started kB.
DATA_GROUPS = (10, 11, 12, 13, 14)  # internet, video, social, music, cloud
DATA_PRICES_MICROS_PER_MB = {10: 1_000, 11: 500, 12: 2_000, 13: 800, 14: 1_500}
VOICE = 1  # 1,000 micros a second, per second
SMS = 3  # 90,000 micros each
IOT = 40  # 10,000 micros a MB, per started kB: a 200-byte report costs 10 micros


def _data_rates() -> list[dict]:
    return [{"rating_group": group, "unit": pb.BYTES, "price_micros": price, "rate_units": 1_000_000,
             "increment_units": 1_000} for group, price in DATA_PRICES_MICROS_PER_MB.items()]


VOICE_RATE = {"rating_group": VOICE, "unit": pb.SECONDS, "price_micros": 60_000, "rate_units": 60,
              "increment_units": 1}
SMS_RATE = {"rating_group": SMS, "unit": pb.EVENTS, "price_micros": 90_000, "rate_units": 1, "increment_units": 1}
IOT_RATE = {"rating_group": IOT, "unit": pb.BYTES, "price_micros": 10_000, "rate_units": 1_000_000,
            "increment_units": 1_000}


def param(default, help_text: str, low=None, high=None):
    """A scenario parameter: its default, its help, and its bounds (checked at construction)."""
    return dataclasses.field(default=default, metadata={"help": help_text, "low": low, "high": high})


def _check_bounds(params) -> None:
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        low, high = field.metadata.get("low"), field.metadata.get("high")
        if low is not None and value < low or high is not None and value > high:
            raise ValueError(f"--{field.name.replace('_', '-')} must be in [{low}, {high}]")


class Scenario:
    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params=None, seed: int = 1) -> None:
        self.params = params if params is not None else self.Params()
        _check_bounds(self.params)
        self.seed = seed
        self.checks: dict[str, dict] = {}  # name -> {"ok": bool, ...}; any not ok fails the run
        self.details: dict = {}  # what else the report should show

    # ------------------------------------------------------------ population

    @property
    def plan_id(self) -> str:
        return f"storm-{self.name}"

    def subscriber_id(self, index: int) -> str:
        return f"storm-{self.name}-{index}"

    def subscriber_count(self) -> int:
        return self.params.subscribers

    def funds_micros(self) -> int:
        return self.params.funds_micros

    def rates(self) -> list[dict]:
        raise NotImplementedError

    async def provision(self, client, progress=None) -> dict:
        return await provisioning.provision(self, client, progress)

    # ------------------------------------------------------------ load

    def schedule(self, settings) -> ScheduleSpec:
        return ScheduleSpec("poisson", rate_per_s=self.params.rate_per_s)

    def prepare(self, settings) -> None:
        """Called before the load with the run's settings (idempotent: the CLI calls it
        once to check the parameters, the runner again before the load)."""

    def arrivals(self, times, settings):
        """The schedule's times this scenario takes (all, unless it says otherwise)."""
        return times

    async def flow(self, flow) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after the load: fill in checks and details."""


def _usage(group: int, requested: int, used: int) -> pb.MultipleUnitUsage:
    return pb.MultipleUnitUsage(rating_group=group, requested_units=requested, used_units=used)


def _granted(reply, previous: dict[int, int]) -> dict[int, int]:
    """Each rating group's grant from a session reply; the previous ones when the
    call failed (the network function assumes its quota until told otherwise)."""
    if reply is None:
        return previous
    return {**previous, **{info.rating_group: info.granted_units for info in reply.multiple_unit_information}}


def _used(rng, granted: dict[int, int]) -> dict[int, int]:
    """Usage since the last report: 30-100% of the grant of each group."""
    return {group: rng.randint(units * 3 // 10, units) if units else 0 for group, units in granted.items()}


# ---------------------------------------------------------------- 5G data sessions


@dataclasses.dataclass(frozen=True)
class DataSessionsParams:
    subscribers: int = param(1_000, "subscribers provisioned; each session picks one", 1, SUBSCRIBERS_MAX)
    rate_per_s: float = param(20.0, "sessions started per second", 0.001, 100_000)
    rating_groups_min: int = param(2, "rating groups per session, at least", 1, len(DATA_GROUPS))
    rating_groups_max: int = param(5, "rating groups per session, at most", 1, len(DATA_GROUPS))
    update_interval_s: float = param(2.0, "seconds between a session's updates", 0.01, 600)
    updates: int = param(3, "updates between create and release", 0, 1_000)
    requested_bytes: int = param(5_000_000, "quota asked per rating group", 1, 10**12)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class DataSessions(Scenario):
    name = "data-sessions"
    summary = "5G data sessions: create, an update every N s with usage on 2-5 rating groups, release"
    Params = DataSessionsParams

    def rates(self) -> list[dict]:
        return _data_rates()

    async def flow(self, f) -> None:
        p = self.params
        rng = f.rng
        subscriber = self.subscriber_id(rng.randrange(p.subscribers))
        count = rng.randint(min(p.rating_groups_min, p.rating_groups_max), p.rating_groups_max)
        groups = sorted(rng.sample(DATA_GROUPS, count))
        session = f"{f.run_id}-ds-{f.index}"
        reply = await f.call("CreateSession", pb.CreateSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=0,
            multiple_unit_usage=[_usage(group, p.requested_bytes, 0) for group in groups]), f.start_s)
        if reply is not None and reply.result != pb.SUCCESS:
            return  # denied: nothing was opened
        granted = _granted(reply, {group: p.requested_bytes for group in groups})
        sequence = 0
        for update in range(1, p.updates + 1):
            if not await f.wait_until(f.start_s + update * p.update_interval_s):
                break  # the load ended: release now
            sequence += 1
            used = _used(rng, granted)
            reply = await f.call("UpdateSession", pb.UpdateSessionRequest(
                session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence,
                multiple_unit_usage=[_usage(group, p.requested_bytes, used[group]) for group in groups]))
            granted = _granted(reply, granted)
        used = _used(rng, granted)
        await f.call("ReleaseSession", pb.ReleaseSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence + 1,
            multiple_unit_usage=[_usage(group, 0, used[group]) for group in groups]),
            f.start_s + (p.updates + 1) * p.update_interval_s)


# ---------------------------------------------------------------- voice calls


@dataclasses.dataclass(frozen=True)
class VoiceCallsParams:
    subscribers: int = param(1_000, "subscribers provisioned; each call picks one", 1, SUBSCRIBERS_MAX)
    rate_per_s: float = param(20.0, "calls started per second", 0.001, 100_000)
    call_seconds_mean: float = param(90.0, "mean talk time (exponential), in call seconds", 1, 86_400)
    chunk_s: int = param(60, "seconds of voice reserved at a time", 1, 3_600)
    chunk_interval_s: float = param(1.0, "real seconds one chunk lasts (60 s chunks in 1 s: 60x speed-up)",
                                     0.01, 3_600)
    chunks_max: int = param(10, "chunks a call may reserve (longer calls are cut)", 1, 1_000)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class VoiceCalls(Scenario):
    name = "voice-calls"
    summary = "voice calls: Reserve 60 s chunks as the call goes, a final Debit per chunk at hang-up"
    Params = VoiceCallsParams

    def rates(self) -> list[dict]:
        return [VOICE_RATE]

    async def flow(self, f) -> None:
        p = self.params
        rng = f.rng
        subscriber = self.subscriber_id(rng.randrange(p.subscribers))
        talk_s = max(1, min(round(rng.expovariate(1 / p.call_seconds_mean)), p.chunk_s * p.chunks_max))
        chunks = math.ceil(talk_s / p.chunk_s)
        call_id = f"{f.run_id}-call-{f.index}"
        holds: list[tuple[str, int]] = []  # (reservation_id, granted seconds)
        cut_short = False
        for chunk in range(chunks):
            due_s = f.start_s + chunk * p.chunk_interval_s
            if chunk and not await f.wait_until(due_s):
                cut_short = True  # the load ended: hang up now
                break
            reply = await f.call("Reserve", pb.ReserveRequest(
                request_id=f"{call_id}-r{chunk}", subscriber_id=subscriber, session_id=call_id,
                rating_group=VOICE, requested_units=p.chunk_s), due_s)
            if reply is None or reply.result != pb.SUCCESS:
                cut_short = True  # no quota (or no answer: GetTransaction settles that hold): the call drops
                break
            holds.append((reply.reservation_id, reply.granted_units))
            if reply.granted_units < p.chunk_s:
                cut_short = True  # money ran out: these are the final seconds
                break
        talked_s = min(talk_s, sum(granted for _, granted in holds))
        hang_up_s = None if cut_short else f.start_s + talk_s / p.chunk_s * p.chunk_interval_s
        if not cut_short and not await f.wait_until(hang_up_s):
            hang_up_s = None
        # At hang-up each chunk's hold is debited with its share of the talk and closed.
        for chunk, (reservation_id, granted) in enumerate(holds):
            used = min(granted, talked_s)
            talked_s -= used
            await f.call("Debit", pb.DebitRequest(
                request_id=f"{call_id}-d{chunk}", subscriber_id=subscriber, reservation_id=reservation_id,
                used_units=used, final=True), hang_up_s)


# ---------------------------------------------------------------- SMS


@dataclasses.dataclass(frozen=True)
class SmsParams:
    subscribers: int = param(1_000, "subscribers provisioned; each SMS picks one", 1, SUBSCRIBERS_MAX)
    rate_per_s: float = param(200.0, "SMS per second", 0.001, 100_000)
    refund_percent: float = param(5.0, "SMS refunded after a failed delivery report", 0, 100)
    delivery_report_s: float = param(0.5, "seconds from the debit to the delivery report", 0, 600)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class Sms(Scenario):
    name = "sms"
    summary = "SMS: direct debits (no reservation), a few refunded after a failed delivery"
    Params = SmsParams

    def rates(self) -> list[dict]:
        return [SMS_RATE]

    async def flow(self, f) -> None:
        p = self.params
        rng = f.rng
        subscriber = self.subscriber_id(rng.randrange(p.subscribers))
        sms_id = f"{f.run_id}-sms-{f.index}"
        refund = rng.random() * 100 < p.refund_percent
        # A direct debit: no reservation_id, the rating group says what is charged.
        reply = await f.call("Debit", pb.DebitRequest(request_id=sms_id, subscriber_id=subscriber, rating_group=SMS,
                                                      used_units=1), f.start_s)
        if refund and reply is not None and reply.result == pb.SUCCESS and reply.charged_micros > 0:
            await f.call("Refund", pb.RefundRequest(
                request_id=f"{sms_id}-refund", subscriber_id=subscriber, charge_id=reply.charge_id,
                amount_micros=reply.charged_micros), f.start_s + p.delivery_report_s)


# ---------------------------------------------------------------- IoT storm


@dataclasses.dataclass(frozen=True)
class IotStormParams:
    devices: int = param(10_000, "devices; each reports once per burst", 1, DEVICES_MAX)
    accounts: int = param(1_000, "accounts the devices belong to (device i -> account i mod accounts)", 1,
                          SUBSCRIBERS_MAX)
    event_bytes: int = param(200, "bytes one report uses", 1, 10**9)
    burst_period_s: float = param(60.0, "seconds between bursts (the top of the minute)", 0.1, 3_600)
    burst_spread_s: float = param(1.0, "the window a burst's reports are spread over, seconds", 0, 3_599)
    align_wall_clock: bool = param(False, "bursts at wall-clock multiples of the period (else the first at once)")
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each account", 1, FUNDS_MAX_MICROS)


class IotStorm(Scenario):
    name = "iot-storm"
    summary = "IoT storm: every device reports a tiny event at the top of each period"
    Params = IotStormParams

    def subscriber_count(self) -> int:
        return self.params.accounts

    def rates(self) -> list[dict]:
        return [IOT_RATE]

    def schedule(self, settings) -> ScheduleSpec:
        import time

        p = self.params
        if p.burst_spread_s >= p.burst_period_s:
            raise ValueError("--burst-spread-s must be shorter than --burst-period-s")
        first_s = next_top_of_period_s(time.time(), p.burst_period_s) if p.align_wall_clock else 0.0
        return ScheduleSpec("bursts", burst_size=p.devices, burst_period_s=p.burst_period_s,
                            burst_spread_s=p.burst_spread_s, first_burst_at_s=first_s)

    async def flow(self, f) -> None:
        p = self.params
        device = f.index % p.devices
        burst = f.index // p.devices
        subscriber = self.subscriber_id(device % p.accounts)
        await f.call("Debit", pb.DebitRequest(request_id=f"{f.run_id}-iot-{device}-{burst}", subscriber_id=subscriber,
                                              rating_group=IOT, used_units=p.event_bytes), f.start_s)


# ---------------------------------------------------------------- re-authorisation wave


@dataclasses.dataclass(frozen=True)
class ReauthWaveParams:
    sessions: int = param(1_000, "sessions opened together", 1, DEVICES_MAX)
    subscribers: int = param(1_000, "subscribers they belong to (session i -> subscriber i mod subscribers)", 1,
                             SUBSCRIBERS_MAX)
    rating_groups: int = param(2, "rating groups per session", 1, len(DATA_GROUPS))
    create_spread_s: float = param(0.5, "the window the sessions are opened in, seconds", 0, 60)
    wave_interval_s: float = param(4.0, "seconds to each re-authorisation wave (at most the granted validity)",
                                   0.1, 3_600)
    waves: int = param(2, "re-authorisation waves before the release", 1, 100)
    requested_bytes: int = param(5_000_000, "quota asked per rating group", 1, 10**12)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class ReauthWave(Scenario):
    """All sessions open in one short window, so their grants' validity times
    run out together and every one asks again at the same moment: the wave.
    The wave comes at min(wave_interval_s, the validity the grid granted); run
    `grid serve --validity-time-s T` with T inside --seconds to ride the real one."""

    name = "reauth-wave"
    summary = "re-authorisation wave: many sessions whose validity times expire together re-authorise together"
    Params = ReauthWaveParams
    ONE_BURST_PERIOD_S = 10_000.0  # longer than any run: the sessions open once

    def rates(self) -> list[dict]:
        return _data_rates()

    def schedule(self, settings) -> ScheduleSpec:
        p = self.params
        return ScheduleSpec("bursts", burst_size=p.sessions, burst_period_s=self.ONE_BURST_PERIOD_S,
                            burst_spread_s=p.create_spread_s)

    def prepare(self, settings) -> None:
        self.details["validity_time_s_granted"] = None
        self.details["wave_interval_s"] = None

    async def flow(self, f) -> None:
        p = self.params
        subscriber = self.subscriber_id(f.index % p.subscribers)
        groups = DATA_GROUPS[:p.rating_groups]
        session = f"{f.run_id}-rw-{f.index}"
        reply = await f.call("CreateSession", pb.CreateSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=0,
            multiple_unit_usage=[_usage(group, p.requested_bytes, 0) for group in groups]), f.start_s)
        if reply is not None and reply.result != pb.SUCCESS:
            return
        validities = [info.validity_time_s for info in (reply.multiple_unit_information if reply else ())
                      if info.validity_time_s]
        interval_s = min([p.wave_interval_s, *validities])
        if validities:
            self.details["validity_time_s_granted"] = min(validities)
        self.details["wave_interval_s"] = interval_s
        granted = _granted(reply, {group: p.requested_bytes for group in groups})
        sequence = 0
        for wave in range(1, p.waves + 1):
            if not await f.wait_until(f.start_s + wave * interval_s):
                break
            sequence += 1
            used = _used(f.rng, granted)
            reply = await f.call("UpdateSession", pb.UpdateSessionRequest(
                session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence,
                multiple_unit_usage=[_usage(group, p.requested_bytes, used[group]) for group in groups]))
            granted = _granted(reply, granted)
        used = _used(f.rng, granted)
        await f.call("ReleaseSession", pb.ReleaseSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence + 1,
            multiple_unit_usage=[_usage(group, 0, used[group]) for group in groups]),
            f.start_s + (p.waves + 0.5) * interval_s)


# ---------------------------------------------------------------- failover replay


@dataclasses.dataclass(frozen=True)
class FailoverReplayParams:
    subscribers: int = param(500, "subscribers provisioned; each session picks one", 1, SUBSCRIBERS_MAX)
    rate_per_s: float = param(50.0, "sessions started per second until the failover", 0.001, 100_000)
    rating_groups: int = param(3, "rating groups per session", 1, len(DATA_GROUPS))
    update_after_s: float = param(0.5, "seconds from a session's create to its update", 0.01, 600)
    failover_at_s: float = param(0.0, "when the failover happens, seconds into the run (0: half way)", 0, 600)
    release_after_s: float = param(1.0, "seconds from the replay to the release", 0.01, 600)
    requested_bytes: int = param(5_000_000, "quota asked per rating group", 1, 10**12)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class FailoverReplay(Scenario):
    """A network function failed over: its standby re-sends the last request of
    every session it carries, with the same invocation sequence number. The
    grid must answer each with the original reply marked replayed (nothing moves
    twice); a replay that applied again, or answered differently, fails the run."""

    name = "failover-replay"
    summary = "failover replay: every active session re-sends its last request; every reply must say replayed"
    Params = FailoverReplayParams

    def __init__(self, params=None, seed: int = 1) -> None:
        super().__init__(params, seed)
        self.failover_at_s = 0.0
        self.tally = {"replays_sent": 0, "replayed_as_original": 0, "not_replayed": 0, "different_reply": 0,
                      "original_unknown": 0, "replay_failed": 0}

    def rates(self) -> list[dict]:
        return _data_rates()

    def prepare(self, settings) -> None:
        self.failover_at_s = self.params.failover_at_s or settings.seconds / 2
        if self.failover_at_s >= settings.seconds:
            raise ValueError("--failover-at-s must fall inside --seconds")
        self.details["failover_at_s"] = self.failover_at_s

    def arrivals(self, times, settings):
        return (at_s for at_s in times if at_s < self.failover_at_s)

    async def flow(self, f) -> None:
        p = self.params
        subscriber = self.subscriber_id(f.rng.randrange(p.subscribers))
        groups = DATA_GROUPS[:p.rating_groups]
        session = f"{f.run_id}-fo-{f.index}"
        last = ("CreateSession", pb.CreateSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=0,
            multiple_unit_usage=[_usage(group, p.requested_bytes, 0) for group in groups]))
        reply = await f.call(*last, f.start_s)
        if reply is not None and reply.result != pb.SUCCESS:
            return
        granted = _granted(reply, {group: p.requested_bytes for group in groups})
        update_s = f.start_s + p.update_after_s
        if update_s < self.failover_at_s and await f.wait_until(update_s):
            used = _used(f.rng, granted)
            last = ("UpdateSession", pb.UpdateSessionRequest(
                session_id=session, subscriber_id=subscriber, invocation_sequence_number=1,
                multiple_unit_usage=[_usage(group, p.requested_bytes, used[group]) for group in groups]))
            reply = await f.call(*last)
            granted = _granted(reply, granted)
        if await f.wait_until(self.failover_at_s):
            self._judge(reply, await f.call(*last, self.failover_at_s, resend=True))
        used = _used(f.rng, granted)
        sequence = last[1].invocation_sequence_number + 1
        await f.call("ReleaseSession", pb.ReleaseSessionRequest(
            session_id=session, subscriber_id=subscriber, invocation_sequence_number=sequence,
            multiple_unit_usage=[_usage(group, 0, used[group]) for group in groups]),
            self.failover_at_s + p.release_after_s)

    def _judge(self, original, replay) -> None:
        tally = self.tally
        tally["replays_sent"] += 1
        if replay is None:
            tally["replay_failed"] += 1
        elif original is None:
            tally["original_unknown"] += 1  # the first attempt's fate was unknown: either answer is right
        elif not replay.replayed:
            tally["not_replayed"] += 1  # applied a second time: money may have moved twice
        else:
            again = type(replay)()
            again.CopyFrom(replay)
            again.replayed = False
            tally["replayed_as_original" if again == original else "different_reply"] += 1

    def finish(self) -> None:
        tally = self.tally
        self.checks["replays_answered_as_originals"] = {
            "ok": tally["not_replayed"] == 0 and tally["different_reply"] == 0 and tally["replayed_as_original"] > 0,
            **tally}


# ---------------------------------------------------------------- hot subscribers


@dataclasses.dataclass(frozen=True)
class HotSubscribersParams:
    subscribers: int = param(1_000, "subscribers provisioned", 1, SUBSCRIBERS_MAX)
    rate_per_s: float = param(200.0, "reserve+debit pairs started per second", 0.001, 100_000)
    zipf_s: float = param(1.1, "zipf exponent of the subscriber choice (0: uniform)", 0, 10)
    requested_s: int = param(60, "seconds of voice reserved", 1, 86_400)
    hold_s: float = param(0.5, "seconds from the reserve to the final debit", 0, 600)
    funds_micros: int = param(FUNDS_DEFAULT_MICROS, "funds of each subscriber", 1, FUNDS_MAX_MICROS)


class HotSubscribers(Scenario):
    name = "hot-subscribers"
    summary = "hot subscribers: reserve then final debit, subscribers drawn with zipf skew"
    Params = HotSubscribersParams

    def __init__(self, params=None, seed: int = 1) -> None:
        super().__init__(params, seed)
        self.zipf = Zipf(self.params.subscribers, self.params.zipf_s, seed)
        self.hits: dict[int, int] = {}

    def rates(self) -> list[dict]:
        return [VOICE_RATE]

    async def flow(self, f) -> None:
        p = self.params
        index = self.zipf()  # drawn before any await: arrival order fixes the sequence
        self.hits[index] = self.hits.get(index, 0) + 1
        subscriber = self.subscriber_id(index)
        event = f"{f.run_id}-hot-{f.index}"
        reply = await f.call("Reserve", pb.ReserveRequest(
            request_id=f"{event}-r", subscriber_id=subscriber, session_id=event, rating_group=VOICE,
            requested_units=p.requested_s), f.start_s)
        if reply is None or reply.result != pb.SUCCESS:
            return
        used = f.rng.randint(1, reply.granted_units) if reply.granted_units else 0
        await f.call("Debit", pb.DebitRequest(
            request_id=f"{event}-d", subscriber_id=subscriber, reservation_id=reply.reservation_id,
            used_units=used, final=True), f.start_s + p.hold_s)

    def finish(self) -> None:
        total = sum(self.hits.values())
        top = max(1, self.params.subscribers // 100)
        hottest = sorted(self.hits.values(), reverse=True)
        self.details.update({
            "arrivals_drawn": total,
            "hottest_subscriber_share": round(hottest[0] / total, 4) if total else None,
            "top_1_percent_share": round(sum(hottest[:top]) / total, 4) if total else None,
            "top_1_percent_share_expected": round(self.zipf.share_of_top(top), 4),
            "subscribers_hit": len(self.hits),
        })


SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (
    DataSessions, VoiceCalls, Sms, IotStorm, ReauthWave, FailoverReplay, HotSubscribers)}
