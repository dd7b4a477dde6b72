"""Faults that cross a network: the front door's stream to each shard runs
through a test-owned TCP proxy (tcp_proxy.TcpProxy, set as each ShardLink's
route_through) that cuts it (reset), stalls it and half-closes it.

A cut, or a half-close, breaks the stream with frames in flight that may or may
not have been applied; the batcher resends them with the same request ids over
a new connection and idempotency makes the replies exact. So, under a seeded
bounded load (fault_support.Load, recorded in a fault_history.History):

- no caller ever sees the faults: every try of every call gets a normal reply
  (no UNAVAILABLE, no deadline) and no outcome is unknown;
- the history check passes: every acknowledged operation is recorded once with
  the reply its caller got, balances and holds fold from the applied ones;
- every applied request id, sent again, is a replay that changes nothing;
- AdminService.Audit (conservation) is ok after every fault and at the end;
- the links really reconnected (ShardLink.connections, the proxies' count).

And one cut with exactly one frame in flight, either before the shard saw it
or after it committed with only its reply held back: the caller gets a normal
reply, applied once (replayed in the second case: the resend met the
idempotency record). And a black hole (every byte held both ways, no reset):
the link should be given up within the keepalive (an expected failure for now:
it takes gRPC's 60 s ping timeout; see its marker).
"""

import asyncio
import collections
import concurrent.futures
import json
import random
import time
import types

import grpc
import pytest
import ray
from charging.v1 import charging_pb2_grpc as pb_grpc
from grid_client import AsyncChargingClient, ChargingClient, RetryPolicy, pb
from grid_client.client import RETRYABLE_CODES

from fault_history import History, check_history, short, without_replayed
from fault_support import RATING_GROUP, Load, provision
from grid.config import GridConfig
from grid.domain.operations import DEFAULT_TENANT
from grid.server import EmbeddedGrid
from tcp_proxy import TO_CLIENT, TO_TARGET, TcpProxy

pytestmark = pytest.mark.slow

SHARDS = 2
SUBSCRIBERS = [f"link{i}" for i in range(20)]
# Tries long enough to sit out a stall and a resend: a deadline is not what is tested.
PATIENT = RetryPolicy(attempts=4, timeout_s=20.0)
STALL_S = 2.0  # far longer than a frame takes, shorter than keepalive's 5 s timeout and the 30 s retry window
ACKS_BETWEEN_FAULTS = 40
# Each fault is applied to both shards' links, while the load runs, in this order.
FAULTS = ("cut", "cut_with_replies_held", "stall", "cut", "half_close", "cut_with_replies_held")


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """An EmbeddedGrid whose two shard links dial a TcpProxy each. No idle sweep
    frames (sweep_interval_s 600; holds are valid 300 s, longer than this module
    runs): the only frames on a link are the tests'."""
    grid = EmbeddedGrid(GridConfig(plaintext=True, data_dir=tmp_path_factory.mktemp("grid-link") / "grid-data",
                                   port=0, shards=SHARDS, sweep_interval_s=600))
    proxies = [TcpProxy(f"shard-{shard}") for shard in range(SHARDS)]
    try:
        grid.start()
        batchers = grid.grid.router.batchers
        for batcher, proxy in zip(batchers, proxies):
            batcher.link.route_through = proxy.route
            grid.run(batcher.link.close())  # a stream opened before goes to the shard: the next frame dials the proxy
        yield types.SimpleNamespace(embedded=grid, target=grid.target, batchers=batchers,
                                    links=[batcher.link for batcher in batchers], proxies=proxies)
    finally:
        try:
            grid.stop()
        finally:
            for proxy in proxies:
                proxy.close()


class CountingClient(AsyncChargingClient):
    """An AsyncChargingClient that counts every try the grid refused, by method and status code."""

    def __init__(self, target: str, *, refused: collections.Counter, **kwargs) -> None:
        super().__init__(target, **kwargs)
        self._refused = refused

    async def _once(self, call):
        try:
            return await super()._once(call)
        except grpc.RpcError as error:
            self._refused[(call.method, error.code())] += 1
            raise


class ObservedLoad(Load):
    """fault_support.Load whose client counts the tries refused: the client's own
    retries with the same request id would hide a front door that gave up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused: collections.Counter = collections.Counter()

    async def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        async with CountingClient(self.target, refused=self.refused, retry=self.retry) as client:
            async def worker():
                while not self._stop.is_set() and self.issued < self.max_ops and time.monotonic() < deadline:
                    self.issued += 1
                    await self._one(client)
                    if self.pace_s:
                        await asyncio.sleep(self.pace_s)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))


def _wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s}s for {what}"
        time.sleep(poll_s)


def _audit(client: ChargingClient, context: str) -> dict:
    response = client.audit()
    report = json.loads(response.report_json)
    assert response.ok and report["ok"], f"the audit failed {context}: {report}"
    moved = report["top_ups_micros"] - report["charges_micros"] + report["refunds_micros"]
    assert moved == report["balances_micros"], f"money is not conserved {context}: {report}"
    return report


async def _replay_everything(target: str, history: History) -> list[str]:
    """Send every applied request id again with its payload: each must be a replay of
    the recorded reply, and no balance or hold may move."""
    problems = []
    applied = [op for op in history.ops if op.applied is not None]
    subscribers = sorted({op.subscriber for op in applied})
    async with AsyncChargingClient(target, retry=PATIENT) as client:
        async def money():
            return {s: (b.balance_micros, b.reserved_micros)
                    for s, b in zip(subscribers, await asyncio.gather(*(client.balance(s) for s in subscribers)))}

        async def again(op):
            reply = await getattr(client, op.kind)(op.subscriber, request_id=op.request_id, **op.payload)
            if "replayed" in type(reply).DESCRIPTOR.fields_by_name and not reply.replayed:
                problems.append(f"sent again, {op.describe()} was not a replay: {short(reply)}")
            elif without_replayed(reply) != without_replayed(op.applied):
                problems.append(f"the replay of {op.describe()} differs: {short(reply)} vs {short(op.applied)}")

        before = await money()
        for start in range(0, len(applied), 32):
            await asyncio.gather(*(again(op) for op in applied[start:start + 32]))
        after = await money()
    problems += [f"{s}: balance/reserved {before[s]} before the replays, {after[s]} after"
                 for s in subscribers if before[s] != after[s]]
    return problems


def _resends(caplog) -> collections.Counter:
    """Frames the batchers resent after a broken stream, per shard (their warnings)."""
    counts = collections.Counter()
    for record in caplog.records:
        if record.name == "grid.batcher" and "resending" in record.getMessage():
            counts[record.args[0]] += 1
    return counts


def _inject(fault: str, proxies: list[TcpProxy]) -> dict:
    """One fault on every link; what each proxy did (connections cut or half-closed)."""
    if fault == "stall":
        for proxy in proxies:
            proxy.stall(STALL_S)
        time.sleep(STALL_S + 0.5)
        return {}
    if fault == "cut_with_replies_held":
        # The frames in flight reach the shard and commit, their replies wait here:
        # the cut then certainly loses applied frames (the ambiguous case).
        for proxy in proxies:
            proxy.stall(10, TO_CLIENT)
        time.sleep(0.3)
        done = {proxy.name: proxy.cut() for proxy in proxies}
        for proxy in proxies:
            proxy.unstall()
        return done
    if fault == "cut":
        return {proxy.name: proxy.cut() for proxy in proxies}
    assert fault == "half_close", fault
    return {proxy.name: proxy.half_close() for proxy in proxies}


@pytest.mark.timeout(300)
def test_cuts_a_stall_and_a_half_close_of_the_shard_links_under_load_lose_and_double_nothing(
        linked, seed, report, caplog):
    caplog.set_level("WARNING", logger="grid")
    rng = random.Random(f"{seed}/link-cut")
    history = History(seed, label="lc")
    where = f"(seed {seed}, replay: GRID_FAULT_SEED_BASE={seed})"
    provision(linked.target, history, SUBSCRIBERS)
    assert all(proxy.opened >= 1 for proxy in linked.proxies), (
        f"a shard link does not go through its proxy: {[p.opened for p in linked.proxies]}")
    connections_before = [link.connections for link in linked.links]
    opened_before = [proxy.opened for proxy in linked.proxies]
    injected = []
    load = ObservedLoad(linked.target, history, SUBSCRIBERS, random.Random(f"{seed}/load"), concurrency=8,
                        max_ops=900, max_seconds=150, retry=PATIENT, pace_s=0.005)
    with ChargingClient(linked.target, retry=PATIENT) as admin:
        load.start()
        try:
            for fault in FAULTS:
                load.wait_for_acks(history.ok_count() + ACKS_BETWEEN_FAULTS, timeout_s=60)
                assert load.running, f"the load ended before the {fault} ({load.issued} issued) {where}"
                time.sleep(rng.uniform(0, 0.05))
                links_before_fault = [link.connections for link in linked.links]
                injected.append((fault, _inject(fault, linked.proxies)))
                if fault == "stall":  # held bytes, no broken stream: a stall alone must not cost a reconnect
                    assert [link.connections for link in linked.links] == links_before_fault, (
                        f"a {STALL_S}s stall broke a link: connections {links_before_fault} -> "
                        f"{[link.connections for link in linked.links]} {where}")
                _audit(admin, f"after the {fault} {where}")
            load.wait_for_acks(history.ok_count() + ACKS_BETWEEN_FAULTS, timeout_s=60)
        finally:
            load.stop()
        counts = history.counts()
        checker = asyncio.run(check_history(linked.target, history, SUBSCRIBERS, context=where))
        replay_problems = asyncio.run(_replay_everything(linked.target, history))
        assert not replay_problems, f"{len(replay_problems)} replays went wrong {where}:\n  " + "\n  ".join(
            replay_problems[:40])
        audit = _audit(admin, f"at the end {where}")
    # After the checks (which show what a lost or doubled operation did): the faults stayed invisible.
    transient = {f"{method} {code.name}": n for (method, code), n in load.refused.items() if code in RETRYABLE_CODES}
    assert not transient, (f"callers saw the link faults: tries refused {transient}; the front door did not resend "
                           f"{injected} {where}")
    assert counts["unknown"] == 0 and counts["fail"] == 0, f"outcomes {counts} {where}"
    reconnects = [link.connections - before for link, before in zip(linked.links, connections_before)]
    opened = [proxy.opened - before for proxy, before in zip(linked.proxies, opened_before)]
    cuts = sum(1 for fault in FAULTS if fault.startswith("cut"))
    assert all(count >= cuts for count in reconnects), f"links reconnected {reconnects} times after {cuts} cuts {where}"
    assert all(count >= cuts for count in opened), f"the proxies saw {opened} new connections {where}"
    resends = _resends(caplog)
    assert all(resends[shard] >= 1 for shard in range(SHARDS)), (
        f"no frame was resent on some shard ({dict(resends)}): the cuts hit no frame in flight {where}")
    report(ops=counts["total"], ok=counts["ok"], faults=len(FAULTS), reconnects=reconnects, proxy_connections=opened,
           resends=dict(resends), refused=dict(load.refused), unknown_found=checker.resolved_unknown["applied"],
           charges=audit["charges_micros"], seed=seed)


def _shard_info(handle) -> dict:
    return ray.get(handle.info.remote(), timeout=30)


class OneDebit:
    """A subscriber of its own on one shard, and a raw stub to the front door (no
    client retry, no GetTransaction: the caller gets what the front door answers)."""

    def __init__(self, linked, shard: int, label: str, seed: int) -> None:
        self.where = f"({label}, shard {shard}, seed {seed})"
        self.subscriber = next(s for s in (f"{label}-{i}" for i in range(1000))
                               if linked.embedded.grid.shard_for(DEFAULT_TENANT, s) == shard)
        provision(linked.target, History(seed, label=f"{label}-"), [self.subscriber])
        self.request = pb.DebitRequest(request_id=f"{label}-s{seed}", subscriber_id=self.subscriber,
                                       rating_group=RATING_GROUP, used_units=4)
        self.channel = grpc.insecure_channel(linked.target)
        self.stub = pb_grpc.ChargingServiceStub(self.channel)
        self.before = self.balance()

    def balance(self) -> pb.GetBalanceResponse:
        return self.stub.GetBalance(pb.GetBalanceRequest(subscriber_id=self.subscriber), timeout=20)

    def check_applied_once(self, reply) -> None:
        """A normal reply, recorded as it was given, charged once; sent again, a replay that changes nothing."""
        where = self.where
        assert reply.result == pb.SUCCESS and reply.charged_micros > 0, f"{short(reply)} {where}"
        found = self.stub.GetTransaction(pb.GetTransactionRequest(subscriber_id=self.subscriber,
                                                                  request_id=self.request.request_id), timeout=20)
        assert found.found, (f"GetTransaction does not know {self.request.request_id}, yet the caller got "
                             f"{short(reply)} {where}")
        assert without_replayed(found.debit) == without_replayed(reply), (
            f"{self.request.request_id} is recorded as {short(found.debit)}, the caller got {short(reply)} {where}")
        after = self.balance()
        assert after.balance_micros == self.before.balance_micros - reply.charged_micros, (
            f"{short(self.before)} -> {short(after)} {where}")
        again = self.stub.Debit(self.request, timeout=20)
        assert again.replayed and without_replayed(again) == without_replayed(reply), f"{short(again)} {where}"
        assert self.balance() == after, where

    def close(self) -> None:
        self.channel.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("held", [TO_TARGET, TO_CLIENT], ids=["before-the-shard", "reply-after-the-commit"])
def test_one_cut_with_one_frame_in_flight_is_resent_and_its_caller_answered_once(linked, held, seed, caplog):
    caplog.set_level("WARNING", logger="grid")
    shard = 0
    one = OneDebit(linked, shard, f"one-{held}", seed)
    where = one.where
    link, batcher, proxy = linked.links[shard], linked.batchers[shard], linked.proxies[shard]
    handle = linked.embedded.grid.shard_handle(shard)
    try:
        # link._pending: the frames sent on the stream and not answered yet.
        _wait_until(lambda: not link._pending and batcher.queue_depth == 0, 20, f"an idle link {where}")
        connections, opened = link.connections, proxy.opened
        applied = _shard_info(handle)["operations_applied"]
        held_bytes = proxy.held_bytes[held]
        proxy.stall(60, held)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            debit = pool.submit(one.stub.Debit, one.request, timeout=60)
            try:
                _wait_until(lambda: len(link._pending) == 1 and batcher.queue_depth == 0, 20,
                            f"the debit's frame in flight {where}")
                if held == TO_TARGET:
                    _wait_until(lambda: proxy.held_bytes[TO_TARGET] > held_bytes, 20, f"the frame at the proxy {where}")
                    time.sleep(0.3)  # all of it
                    assert _shard_info(handle)["operations_applied"] == applied, f"the frame passed the stall {where}"
                else:
                    _wait_until(lambda: _shard_info(handle)["operations_applied"] > applied, 20,
                                f"the shard to commit the debit {where}", poll_s=0.05)
                assert len(link._pending) == 1 and batcher.queue_depth == 0, where
                assert proxy.cut() >= 1, f"no connection to cut {where}"
            finally:
                proxy.unstall()
            reply = debit.result(timeout=90)
        one.check_applied_once(reply)
        # Held before the shard: the resend applied it first. Committed: the resend was a replay.
        assert reply.replayed == (held == TO_CLIENT), f"{short(reply)} {where}"
        assert _resends(caplog)[shard] >= 1, f"the batcher did not resend the frame {where}"
        assert link.connections >= connections + 1 and proxy.opened >= opened + 1, (
            f"no reconnect: link {connections} -> {link.connections}, proxy {opened} -> {proxy.opened} {where}")
    finally:
        one.close()
    with ChargingClient(linked.target, retry=PATIENT) as client:
        _audit(client, where)


class BlackHoleNotNoticed(AssertionError):
    """The front door kept waiting on a connection that carried nothing either way."""


# frames.KEEPALIVE_OPTIONS: keepalive_time 10 s + keepalive_timeout 5 s, and gRPC's own pings
# time out after 5 s (this test found them waiting 60 s by default). Twice that, and more.
NOTICE_WITHIN_S = 25


@pytest.mark.timeout(180)
def test_a_black_holed_link_is_noticed_within_the_keepalive_and_its_frame_answered_once(linked, seed):
    """Everything held both ways, no reset, no FIN (a lost node, a partition): the
    front door should give up on the connection within about keepalive_time +
    keepalive_timeout (frames.py) and resend. Whether it noticed or not, once the
    black hole ends the caller gets one normal reply, applied once."""
    shard = 1
    one = OneDebit(linked, shard, "black-hole", seed)
    where = one.where
    link, batcher, proxy = linked.links[shard], linked.batchers[shard], linked.proxies[shard]
    try:
        _wait_until(lambda: not link._pending and batcher.queue_depth == 0, 20, f"an idle link {where}")
        connections = link.connections
        proxy.stall(120)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            debit = pool.submit(one.stub.Debit, one.request, timeout=120)
            try:
                _wait_until(lambda: len(link._pending) == 1, 20, f"the debit's frame in flight {where}")
                started = time.monotonic()
                while link.connections == connections and time.monotonic() - started < NOTICE_WITHIN_S:
                    time.sleep(0.1)
                noticed_after_s = time.monotonic() - started if link.connections > connections else None
            finally:
                proxy.unstall()
            reply = debit.result(timeout=120)
        one.check_applied_once(reply)
    finally:
        one.close()
    with ChargingClient(linked.target, retry=PATIENT) as client:
        _audit(client, where)
    if noticed_after_s is None:
        raise BlackHoleNotNoticed(f"a black-holed shard link was still in use after {NOTICE_WITHIN_S}s (keepalive: "
                                  f"10 s + 5 s) {where}")
