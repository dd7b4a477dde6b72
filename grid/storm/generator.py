"""The open-loop engine: arrivals at their scheduled times, whatever the replies do.

For each intended time of the schedule the engine starts the scenario's next
flow (a session, a call, an SMS, an IoT event) as a task and goes on to the
next arrival without waiting: overload shows up as latency and shed requests
instead of a generator that politely slows down with the grid. A flow's own
follow-up requests (a session's updates, a call's hang-up) are due at times
of their own; a follow-up can only leave after the previous reply of the same
flow (the protocol needs it), and its latency counts from its due time.

Bounds, all named: the run's length (seconds, at most 600) and the requests it
may send (max_requests); requests in flight and flows alive (past either cap a
new arrival is shed by the generator, counted and recorded, never queued);
each call's deadline; the drain after the load. When the load ends (deadline
or max_requests) flows skip what is left and send only their closing request
(release, hang-up), which is counted apart (`wind_down_results`).

Transport: unary calls over `channels` grpc.aio channels (round robin), or the
Charge stream (`streams` of them, operations matched by correlation_tag).
Load goes to loopback unless the caller says --allow-remote.
"""

import asyncio
import dataclasses
import ipaddress
import itertools
import random

import grpc
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from grid.storm.ledger import Ledger
from grid.storm.recorder import Recorder

SECONDS_MAX = 600.0
REQUESTS_MAX = 100_000_000
IN_FLIGHT_MAX = 50_000
FLOWS_MAX = 2_000_000
CHANNELS_MAX = 64
STREAMS_MAX = 64
# Flow exceptions kept for the report (each is a bug in a scenario: the run fails).
FLOW_ERRORS_LISTED_MAX = 20
# When arrivals are due faster than they can be made, yield to the flows every this many.
BEHIND_YIELD_EVERY = 64
# Lead before the first arrival, so the first ones are not late by set-up time.
START_LEAD_S = 0.05

# ChargeRequest's oneof field for each method the stream carries.
STREAM_FIELDS = {
    "Reserve": "reserve", "Debit": "debit", "Release": "release", "Refund": "refund", "TopUp": "top_up",
    "CreateSession": "create_session", "UpdateSession": "update_session", "ReleaseSession": "release_session",
}


class TargetRefused(ValueError):
    """Load would leave this machine and --allow-remote was not given."""


def _host_of(target: str) -> str | None:
    """The host part of a gRPC target, or None for a unix socket (local by nature)."""
    if target.startswith(("unix:", "unix-abstract:")):
        return None
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(prefix):
            target = target[len(prefix):]
            break
    if target.startswith("["):
        return target[1:target.index("]")] if "]" in target else target
    if target.count(":") > 1:  # a bare IPv6 address without a port
        return target
    return target.rsplit(":", 1)[0] if ":" in target else target


def is_loopback(target: str) -> bool:
    """127.0.0.0/8, ::1, localhost or a unix socket. Other names are not resolved
    (a name may point anywhere), so they count as remote."""
    host = _host_of(target)
    if host is None:
        return True
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_target(target: str, allow_remote: bool) -> None:
    if not target:
        raise TargetRefused("a target is required")
    if not allow_remote and not is_loopback(target):
        raise TargetRefused(f"{target} is not a loopback address: load goes to 127.0.0.1 unless --allow-remote "
                            "names a grid you are allowed to load")


@dataclasses.dataclass(frozen=True)
class LoadSettings:
    """How hard, how long and where a storm goes."""

    # host:port of the grid; loopback unless allow_remote.
    target: str = "127.0.0.1:50051"
    allow_remote: bool = False
    # Length of the load (arrivals and their follow-ups), seconds.
    seconds: float = 10.0
    # Requests the load may send (the closing requests of the wind-down come on top, one per flow alive).
    max_requests: int = 1_000_000
    # Past either, a new arrival is shed by the generator.
    in_flight_max: int = 4_000
    flows_max: int = 200_000
    # Deadline of each request, seconds; past it the outcome is unknown until GetTransaction says.
    timeout_s: float = 10.0
    # Unary: channels used round robin (one HTTP/2 connection each). Stream: Charge streams.
    channels: int = 4
    stream: bool = False
    streams: int = 1
    # How long the flows alive at the end get to finish their closing requests, seconds.
    drain_s: float = 60.0
    # Seeds the schedule and every flow's choices: a run is repeatable.
    seed: int = 1

    def __post_init__(self) -> None:
        check_target(self.target, self.allow_remote)
        if not 0 < self.seconds <= SECONDS_MAX:
            raise ValueError(f"seconds must be in (0, {SECONDS_MAX:g}]")
        if not 1 <= self.max_requests <= REQUESTS_MAX:
            raise ValueError(f"max_requests must be in [1, {REQUESTS_MAX}]")
        if not 1 <= self.in_flight_max <= IN_FLIGHT_MAX:
            raise ValueError(f"in_flight_max must be in [1, {IN_FLIGHT_MAX}]")
        if not 1 <= self.flows_max <= FLOWS_MAX:
            raise ValueError(f"flows_max must be in [1, {FLOWS_MAX}]")
        if not 0 < self.timeout_s <= 120:
            raise ValueError("timeout_s must be in (0, 120]")
        if not 1 <= self.channels <= CHANNELS_MAX or not 1 <= self.streams <= STREAMS_MAX:
            raise ValueError(f"channels and streams must be in [1, {CHANNELS_MAX}]")
        if not 0 < self.drain_s <= 600:
            raise ValueError("drain_s must be in (0, 600]")


class CallFailed(Exception):
    """A request got no reply: `code` is the gRPC status code's name."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# Channel options: a channel of its own (its own connection), so several spread
# the calls over several HTTP/2 connections (the grid caps streams per connection).
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


class UnarySender:
    def __init__(self, target: str, credentials, channels: int) -> None:
        from grid_client import make_channel

        self._channels = [make_channel(target, credentials, aio=True, options=CHANNEL_OPTIONS)
                          for _ in range(channels)]
        self._stubs = itertools.cycle([pb_grpc.ChargingServiceStub(channel) for channel in self._channels])
        self._metadata = credentials.metadata() if credentials is not None else None

    async def send(self, method: str, request, timeout_s: float):
        try:
            return await getattr(next(self._stubs), method)(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise CallFailed(error.code().name) from None

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels))


def _code_name(number: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.name
    return f"CODE_{number}"


class _ChargeStream:
    """One Charge stream: requests from a queue, replies matched to waiting calls
    by correlation_tag. A reply that comes after its call gave up is dropped
    (that call's outcome is left to GetTransaction)."""

    def __init__(self, stub, metadata) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pending: dict[int, asyncio.Future] = {}
        self._tags = itertools.count(1)
        self.closed = False
        self._call = stub.Charge(self._requests(), metadata=metadata)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _requests(self):
        while (message := await self._queue.get()) is not None:
            yield message

    async def _read(self) -> None:
        code = "UNAVAILABLE"
        try:
            async for response in self._call:
                future = self._pending.pop(response.correlation_tag, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except grpc.RpcError as error:
            code = error.code().name
        finally:
            self.closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CallFailed(code))
            self._pending.clear()

    async def send(self, method: str, request, timeout_s: float):
        if self.closed:
            raise CallFailed("UNAVAILABLE")
        tag = next(self._tags)
        future = asyncio.get_running_loop().create_future()
        self._pending[tag] = future
        message = pb.ChargeRequest(correlation_tag=tag)
        getattr(message, STREAM_FIELDS[method]).CopyFrom(request)
        self._queue.put_nowait(message)
        try:
            response = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise CallFailed("DEADLINE_EXCEEDED") from None
        finally:
            self._pending.pop(tag, None)
        kind = response.WhichOneof("reply")
        if kind == "error":
            raise CallFailed(_code_name(response.error.code))
        return getattr(response, kind)

    async def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put_nowait(None)  # the server finishes what it has, then ends the stream
        try:
            await asyncio.wait_for(self._reader, timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            self._call.cancel()


class StreamSender:
    """Operations over `streams` Charge streams (each on its own channel), round
    robin; a stream that broke is opened again for the next operation."""

    def __init__(self, target: str, credentials, streams: int) -> None:
        from grid_client import make_channel

        self._channels = [make_channel(target, credentials, aio=True, options=CHANNEL_OPTIONS)
                          for _ in range(streams)]
        self._stubs = [pb_grpc.ChargingServiceStub(channel) for channel in self._channels]
        self._metadata = credentials.metadata() if credentials is not None else None
        self._streams: list[_ChargeStream | None] = [None] * streams
        self._next = itertools.cycle(range(streams))

    async def send(self, method: str, request, timeout_s: float):
        if method not in STREAM_FIELDS:
            raise ValueError(f"the Charge stream does not carry {method}")
        index = next(self._next)
        stream = self._streams[index]
        if stream is None or stream.closed:
            stream = self._streams[index] = _ChargeStream(self._stubs[index], self._metadata)
        return await stream.send(method, request, timeout_s)

    async def close(self) -> None:
        await asyncio.gather(*(stream.close() for stream in self._streams if stream is not None))
        await asyncio.gather(*(channel.close() for channel in self._channels))


def result_name(reply) -> str:
    return pb.Result.Name(reply.result)


class Flow:
    """What a scenario's flow sees: its index, its arrival time, its own seeded
    random generator, and calls that are recorded and booked."""

    def __init__(self, engine: "Engine", index: int, start_s: float) -> None:
        self._engine = engine
        self.index = index
        self.start_s = start_s
        # The engine counted this flow's first request in flight when it admitted
        # the arrival (a flow not yet run is outstanding work too); the first call takes that slot.
        self.holds_slot = True
        # Seeded by text: the same run seed gives every flow the same choices.
        self.rng = random.Random(f"{engine.settings.seed}/{index}")

    @property
    def run_id(self) -> str:
        return self._engine.run_id

    @property
    def winding_down(self) -> bool:
        return self._engine.winding_down

    def now_s(self) -> float:
        return self._engine.now_s()

    async def wait_until(self, at_s: float) -> bool:
        """Sleep until at_s (seconds from the start). False when the load ended
        first: the flow should go straight to its closing request."""
        return await self._engine.wait_until(at_s)

    async def call(self, method: str, request, at_s: float | None = None, resend: bool = False):
        """Send request when it is due (at_s; now if None or past), and return its
        reply, or None when the call failed (the ledger keeps it as unknown).
        After the load ended it is sent at once, as a wind-down request.
        resend: the same request was sent before (same id); when its reply was
        counted, nothing this one answers is counted again."""
        engine = self._engine
        known_resend = resend and not engine.ledger.is_unknown(method, request)
        if at_s is not None and not engine.winding_down:
            await engine.wait_until(at_s)
        # A request due before the load ended belongs to the load even when it leaves
        # later (its wait is latency: leaving it out would be coordinated omission).
        due_in_load = not engine.winding_down or (at_s is not None and at_s < engine.load_s)
        measured = due_in_load and engine.take_request_budget()
        sent_s = engine.now_s()
        intended_s = sent_s if at_s is None else min(at_s, sent_s)
        if measured:
            engine.recorder.offered(intended_s)
            engine.recorder.sent()
        engine.ledger.sent(method, request)
        if self.holds_slot:
            self.holds_slot = False
        else:
            engine.in_flight += 1
        try:
            reply = await engine.sender.send(method, request, engine.settings.timeout_s)
        except CallFailed as failure:
            if not known_resend:
                engine.ledger.failed(method, request)
            self._record(measured, method, failure.code, True, intended_s, sent_s)
            return None
        except asyncio.CancelledError:
            if not known_resend:
                engine.ledger.failed(method, request)  # the drain gave up on it: unknown
            raise
        finally:
            engine.in_flight -= 1
        if known_resend:
            engine.ledger.replied_again(method, request, reply)
        else:
            engine.ledger.replied(method, request, reply)
        self._record(measured, method, result_name(reply), False, intended_s, sent_s)
        for info in getattr(reply, "multiple_unit_information", ()):
            engine.recorder.unit_result(method, pb.Result.Name(info.result))
        return reply

    def _record(self, measured: bool, method: str, outcome: str, error: bool, intended_s: float,
                sent_s: float) -> None:
        recorder = self._engine.recorder
        if measured:
            recorder.completed(method, outcome, error, intended_s, sent_s, self._engine.now_s())
        else:
            recorder.wind_down(method, outcome, error)


class Engine:
    """Runs one scenario's flows on a schedule (call `load` once)."""

    def __init__(self, settings: LoadSettings, scenario, sender, run_id: str, recorder: Recorder | None = None,
                 ledger: Ledger | None = None, progress=None) -> None:
        self.settings = settings
        self.scenario = scenario
        self.sender = sender
        self.run_id = run_id
        self.recorder = recorder or Recorder()
        self.ledger = ledger or Ledger()
        self.progress = progress
        self.in_flight = 0
        self.flows: set[asyncio.Task] = set()
        self.arrivals = 0
        self.requests_taken = 0
        self.flow_errors: list[str] = []
        self.flow_errors_total = 0
        self.flows_cancelled = 0
        self.arrival_lag_max_s = 0.0
        self.arrival_lag_total_s = 0.0
        self.load_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0
        self._ended: asyncio.Future | None = None

    # ------------------------------------------------------------ time

    def now_s(self) -> float:
        return self._loop.time() - self._start

    @property
    def winding_down(self) -> bool:
        return self._ended is not None and self._ended.done()

    def _end_load(self) -> None:
        if not self._ended.done():
            self.load_s = min(self.now_s(), self.settings.seconds)
            self._ended.set_result(None)

    def take_request_budget(self) -> bool:
        """One more request of the load, or the end of the load when max_requests is spent."""
        if self.requests_taken >= self.settings.max_requests:
            self._end_load()
            return False
        self.requests_taken += 1
        return True

    async def wait_until(self, at_s: float) -> bool:
        delay_s = at_s - self.now_s()
        if self.winding_down:
            return False
        if delay_s > 0:
            await asyncio.wait([self._ended], timeout=delay_s)
        return not self.winding_down

    # ------------------------------------------------------------ the load

    async def load(self, times) -> None:
        """Arrivals at their times until the schedule, the run's length or the
        request budget ends; then the flows alive wind down and drain."""
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time() + START_LEAD_S
        self._ended = self._loop.create_future()
        ticker = self._loop.create_task(self._tick()) if self.progress is not None else None
        try:
            for at_s in times:
                if at_s >= settings.seconds or self.winding_down:
                    break
                delay_s = at_s - self.now_s()
                if delay_s > 0.0005:
                    await asyncio.sleep(delay_s)
                elif self.arrivals % BEHIND_YIELD_EVERY == 0:
                    # Behind the schedule (a burst): let the flows and the replies run
                    # now and then, or a million arrivals would all be admitted first.
                    await asyncio.sleep(0)
                if self.winding_down:
                    break
                self._arrive(at_s)
            # The schedule is over: the flows alive go on until the run's length is up.
            while self.flows and not self.winding_down and self.now_s() < settings.seconds:
                await asyncio.wait([*self.flows, self._ended], timeout=min(1.0, settings.seconds - self.now_s()),
                                   return_when=asyncio.FIRST_COMPLETED)
            self._end_load()
            await self._drain()
        finally:
            if not self._ended.done():
                self._end_load()
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)

    def _arrive(self, at_s: float) -> None:
        index = self.arrivals
        self.arrivals += 1
        # How far behind its own schedule the generator is: a generator that cannot
        # keep up (a million-device burst in one Python process) shows here, apart from the grid.
        lag_s = self.now_s() - at_s
        self.arrival_lag_max_s = max(self.arrival_lag_max_s, lag_s)
        self.arrival_lag_total_s += max(0.0, lag_s)
        if self.in_flight >= self.settings.in_flight_max or len(self.flows) >= self.settings.flows_max:
            self.recorder.shed(at_s)
            return
        self.in_flight += 1  # the new flow's first request, from now on (see Flow.holds_slot)
        task = self._loop.create_task(self._flow(index, at_s))
        self.flows.add(task)
        task.add_done_callback(self.flows.discard)

    async def _flow(self, index: int, at_s: float) -> None:
        flow = Flow(self, index, at_s)
        try:
            await self.scenario.flow(flow)
        except asyncio.CancelledError:
            self.flows_cancelled += 1
            raise
        except Exception as error:  # noqa: BLE001 - a scenario bug: reported, and the run fails
            self.flow_errors_total += 1
            if len(self.flow_errors) < FLOW_ERRORS_LISTED_MAX:
                self.flow_errors.append(f"flow {index}: {type(error).__name__}: {error}")
        finally:
            if flow.holds_slot:  # ended without sending anything
                flow.holds_slot = False
                self.in_flight -= 1

    async def _drain(self) -> None:
        if not self.flows:
            return
        _, pending = await asyncio.wait(list(self.flows), timeout=self.settings.drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _tick(self) -> None:
        """Once a second, the second that just ended to the live display."""
        second = 0
        while True:
            await asyncio.sleep(max(0.0, second + 1 - self.now_s()))
            view = self.recorder.second_view(second)
            view.update(in_flight=self.in_flight, flows=len(self.flows), winding_down=self.winding_down)
            self.progress.update(view)
            second += 1

    def stats(self) -> dict:
        return {"load_s": round(self.load_s, 3), "arrivals": self.arrivals,
                "arrivals_shed_by_generator": self.recorder.shed_total,
                "flows_cancelled_by_drain": self.flows_cancelled,
                "arrival_lag_ms": {"mean": round(1000 * self.arrival_lag_total_s / max(1, self.arrivals), 3),
                                   "max": round(1000 * self.arrival_lag_max_s, 3)},
                "flow_errors_total": self.flow_errors_total, "flow_errors": self.flow_errors}
