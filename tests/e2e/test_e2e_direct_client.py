"""Clients that route by the shard map (direct=True) and that gather concurrent
operations into ChargeBatch messages (batch_window_s), against the real grid.

Where each call really went is seen on the wire: the client's make_channel is
replaced by one whose channels record every call with the address it was sent
to (and can lose a reply after the server applied it, or rewrite the map
GetShardMap answers). Balances are read through the front door with raw stubs,
so a charge applied twice, or not at all, shows.
"""

import asyncio
import dataclasses
import math
import time

import grpc
import pytest
import trustme
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

import grid_client
import grid_client.client
from e2e_support import LostReply
from e2e_support import FUNDS, RATES, SMS, SMS_MICROS, VOICE, VOICE_MICROS_PER_S, failing, new_id
from grid import security
from grid.config import GridConfig
from grid.routing import slot_of as grid_slot_of
from grid.server import EmbeddedGrid
from grid_client import (AsyncChargingClient, ChargingClient, Credentials, GridError, InvalidArgument,
                         RequestIdReused, RetryPolicy)

pytestmark = pytest.mark.slow

FAST_RETRIES = RetryPolicy(attempts=3, timeout_s=10, backoff_first_s=0.01, backoff_max_s=0.05)
WINDOW_S = 0.005


# ---------------------------------------------------------------- the wire


class Wire:
    """Channels for the client (in place of make_channel) that record each call as
    (target, method, request); `lose[(target, method)] = n` loses the next n replies
    there after the server applied the call; `rewrite_map(reply)`, when set, edits
    every GetShardMap answer in place before the client sees it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object]] = []
        self.lose: dict[tuple[str, str], int] = {}
        self.rewrite_map = None

    def channel(self, target, credentials=None, *, aio=False, options=()):
        assert credentials is None, "the e2e grid is plaintext"
        if aio:
            return grpc.aio.insecure_channel(target, options=list(options), interceptors=[_AioTap(self, target)])
        return grpc.intercept_channel(grpc.insecure_channel(target, options=list(options)), _Tap(self, target))

    def record(self, target: str, method) -> tuple[str, bool]:
        method = (method.decode() if isinstance(method, bytes) else method).rsplit("/", 1)[-1]
        left = self.lose.get((target, method), 0)
        if left:
            self.lose[(target, method)] = left - 1
        return method, bool(left)

    def calls(self, method: str) -> list[tuple[str, object]]:
        return [(target, request) for target, name, request in self.sent if name == method]

    def targets(self, method: str) -> list[str]:
        return [target for target, _ in self.calls(method)]


class _Tap(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, wire: Wire, target: str) -> None:
        self.wire, self.target = wire, target

    def intercept_unary_unary(self, continuation, client_call_details, request):
        method, lose = self.wire.record(self.target, client_call_details.method)
        self.wire.sent.append((self.target, method, request))
        outcome = continuation(client_call_details, request)
        if lose:
            outcome.result()  # the server answered: it applied the call
            raise LostReply()
        if method == "GetShardMap" and self.wire.rewrite_map is not None and outcome.exception() is None:
            self.wire.rewrite_map(outcome.result())
        return outcome


class _AioTap(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, wire: Wire, target: str) -> None:
        self.wire, self.target = wire, target

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        method, lose = self.wire.record(self.target, client_call_details.method)
        self.wire.sent.append((self.target, method, request))
        call = await continuation(client_call_details, request)
        if lose:
            await call  # the server answered: it applied the call
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "injected by the test: the reply was lost")
        if method == "GetShardMap" and self.wire.rewrite_map is not None:
            self.wire.rewrite_map(await call)
        return call


@pytest.fixture
def wire(monkeypatch) -> Wire:
    """Every client made in the test opens its channels (front door and shards) on the wire."""
    tapped = Wire()
    monkeypatch.setattr(grid_client.client, "make_channel", tapped.channel)
    return tapped


@pytest.fixture
def direct(embedded, wire):
    """direct(**options) -> a ChargingClient with direct=True on the wire, closed at the end."""
    opened = []

    def make(**options) -> ChargingClient:
        client = ChargingClient(embedded.target, retry=FAST_RETRIES, direct=True, **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


class Aio:
    """An event loop of the test's own; `open(**options)` makes an AsyncChargingClient
    on it (on the wire), closed with the loop at the end."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.clients: list[AsyncChargingClient] = []

    def run(self, coroutine, timeout_s: float = 60):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout_s))

    def open(self, **options) -> AsyncChargingClient:
        async def make():
            return AsyncChargingClient(self.target, retry=FAST_RETRIES, **options)
        client = self.run(make())
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            self.run(client.close())
        self.loop.close()


@pytest.fixture
def aio(embedded, wire):
    harness = Aio(embedded.target)
    try:
        yield harness
    finally:
        harness.close()


# ---------------------------------------------------------------- the map, as the tests read it


def owner(shard_map: pb.GetShardMapResponse, subscriber_id: str, tenant: str | None = None) -> pb.ShardEndpoint:
    """The shard the grid's own slot function and the map's ranges give the subscriber
    (of the map's tenant unless told)."""
    slot = grid_slot_of(shard_map.tenant if tenant is None else tenant, subscriber_id, shard_map.slots)
    (shard,) = [shard for shard in shard_map.shards
                if any(slots.first <= slot <= slots.last for slots in shard.slot_ranges)]
    return shard


def other(shard_map: pb.GetShardMapResponse, subscriber_id: str) -> pb.ShardEndpoint:
    mine = owner(shard_map, subscriber_id).shard_id
    return next(shard for shard in shard_map.shards if shard.shard_id != mine)


@pytest.fixture
def shard_map(stubs) -> pb.GetShardMapResponse:
    return stubs.charging.GetShardMap(pb.GetShardMapRequest(), timeout=30)


def swap_addresses(reply: pb.GetShardMapResponse) -> None:
    """Edit a GetShardMap answer in place: shard 0 and shard 1 trade addresses."""
    first, second = reply.shards[0].address, reply.shards[1].address
    reply.shards[0].address, reply.shards[1].address = second, first


def swapped(cached):
    """A client's cached map with the two shards' addresses traded: every subscriber misrouted."""
    return dataclasses.replace(cached, addresses={0: cached.addresses[1], 1: cached.addresses[0]})


def subscribers_on_both_shards(new_subscriber, shard_map, count: int, **account) -> list:
    """count accounts, at least one owned by each shard (drawn until so)."""
    accounts = [new_subscriber(**account) for _ in range(count)]
    while len({owner(shard_map, s.id).shard_id for s in accounts}) < 2:
        accounts.append(new_subscriber(**account))
    return accounts


# ---------------------------------------------------------------- the shard map


def test_the_shard_map_covers_every_slot_exactly_once(stubs, embedded):
    reply = stubs.charging.GetShardMap(pb.GetShardMapRequest(), timeout=30)
    assert reply.epoch >= 1 and reply.slots >= 2 and reply.tenant == "default"
    assert "blake2b" in reply.slot_function
    assert sorted(shard.shard_id for shard in reply.shards) == [0, 1]
    owners = [[] for _ in range(reply.slots)]
    for shard in reply.shards:
        assert shard.slot_ranges, f"shard {shard.shard_id} owns no slot"
        for slots in shard.slot_ranges:
            assert 0 <= slots.first <= slots.last < reply.slots, slots
            for slot in range(slots.first, slots.last + 1):
                owners[slot].append(shard.shard_id)
    assert all(len(claims) == 1 for claims in owners), "a slot owned by no shard, or by two"
    addresses = [shard.address for shard in reply.shards]
    assert all(addresses) and len(set(addresses)) == 2 and embedded.target not in addresses
    for shard in reply.shards:  # each address is a live ChargingService that knows the map
        with grpc.insecure_channel(shard.address) as channel:
            assert pb_grpc.ChargingServiceStub(channel).GetShardMap(pb.GetShardMapRequest(), timeout=30).slots \
                == reply.slots


def test_the_client_slot_function_is_the_grids():
    ids = [new_id("sub-") for _ in range(300)] + ["", "x", "é-ü-中文", "a\x00b", "+4917012345678"]
    for tenant in ("default", "acme", "tenant-ü"):
        for slots in (1024, 7, 1):
            assert [grid_client.slot_of(tenant, i, slots) for i in ids] == [grid_slot_of(tenant, i, slots)
                                                                           for i in ids]
    assert len({grid_client.slot_of("default", i, 1024) for i in ids}) > 200, "the slots are spread"


# ---------------------------------------------------------------- direct unary calls


def test_a_direct_client_charges_at_the_owning_shard(embedded, client, calls, new_subscriber, shard_map, direct,
                                                     wire):
    direct_client = direct()
    mine, theirs = new_subscriber(), new_subscriber()

    def round_trip(charging_client, subscriber_id):
        held = charging_client.reserve(subscriber_id, new_id("session-"), VOICE, 60)
        used = charging_client.debit(subscriber_id, 45, reservation_id=held.reservation_id, final=True)
        charged = charging_client.debit(subscriber_id, 2, rating_group=SMS)
        balance = charging_client.balance(subscriber_id)
        return [held.result, held.granted_units, used.result, used.charged_micros, charged.charged_micros,
                balance.balance_micros, balance.reserved_micros, balance.available_micros]

    assert round_trip(direct_client, mine.id) == round_trip(client, theirs.id)
    assert calls.money(mine.id).balance == calls.money(theirs.id).balance == \
        FUNDS - 45 * VOICE_MICROS_PER_S - 2 * SMS_MICROS
    # The read-only calls too, for a subscriber of each shard.
    for subscriber in [mine] + subscribers_on_both_shards(new_subscriber, shard_map, 2):
        request_id = new_id("top-")
        topped = direct_client.top_up(subscriber.id, 10, request_id=request_id)
        assert direct_client.get_transaction(subscriber.id, request_id).top_up == topped
        assert direct_client.quote(subscriber.id, SMS, 1) == client.quote(subscriber.id, SMS, 1)
        assert direct_client.balance(subscriber.id).balance_micros == calls.money(subscriber.id).balance

    methods = {name for _, name, _ in wire.sent}
    assert methods == {"GetShardMap", "Reserve", "Debit", "GetBalance", "TopUp", "GetTransaction", "Quote"}
    for target, method, request in wire.sent:
        if method != "GetShardMap":
            assert target == owner(shard_map, request.subscriber_id).address, (method, target)
    assert wire.targets("GetShardMap") == [embedded.target], "the map comes from the front door, once"
    assert direct_client.front_door_fallbacks == 0 and direct_client.map_refreshes == 1
    assert direct_client.direct_calls == len(wire.sent) - 1
    home, away = owner(shard_map, mine.id).address, other(shard_map, mine.id).address
    # The shard it went to is the one that answers for the subscriber; the other refuses.
    with grpc.insecure_channel(home) as channel:
        assert pb_grpc.ChargingServiceStub(channel).GetBalance(
            pb.GetBalanceRequest(subscriber_id=mine.id), timeout=30).balance_micros == calls.money(mine.id).balance
    with grpc.insecure_channel(away) as channel:
        refused = failing(pb_grpc.ChargingServiceStub(channel).GetBalance, pb.GetBalanceRequest(subscriber_id=mine.id),
                          timeout=30)
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (refused.info.reason, refused.info.domain) == ("SHARD_MAP_STALE", "charging.grid")
    assert refused.info.metadata["slot"] == str(grid_slot_of("default", mine.id, shard_map.slots))
    assert refused.info.metadata["map_epoch"] == str(shard_map.epoch)


def test_direct_calls_that_are_not_subscriber_keyed_go_to_the_front_door(embedded, calls, plan_id, direct, wire):
    direct_client = direct()
    subscriber_id = new_id("sub-")
    direct_client.create_account(subscriber_id, "EUR", plan_id)
    direct_client.top_up(subscriber_id, 1_000)
    assert direct_client.get_account(subscriber_id).result == pb.SUCCESS
    assert direct_client.get_tariff(plan_id).result == pb.SUCCESS
    assert wire.targets("CreateAccount") == wire.targets("GetAccount") == wire.targets("GetTariff") \
        == [embedded.target]
    assert wire.targets("TopUp") != [embedded.target] and direct_client.direct_calls == 1
    # Errors are the unary path's, wherever they come from.
    with pytest.raises(InvalidArgument) as raised:
        direct_client.top_up(subscriber_id, 0, request_id="bad-direct-top-up")
    assert (raised.value.field, raised.value.request_id) == ("amount_micros", "bad-direct-top-up")
    assert calls.money(subscriber_id).balance == 1_000


def test_a_wrong_cached_map_is_fetched_again_and_nothing_charges_twice(calls, new_subscriber, shard_map, direct,
                                                                       wire):
    direct_client = direct()
    subscriber = new_subscriber()
    assert direct_client.balance(subscriber.id).balance_micros == FUNDS  # the map is fetched
    direct_client._routes.map = swapped(direct_client._routes.map)
    wire.sent.clear()
    charged = direct_client.debit(subscriber.id, 3, rating_group=SMS, request_id=new_id("dbt-"))
    assert (charged.result, charged.replayed, charged.charged_micros) == (pb.SUCCESS, False, 3 * SMS_MICROS)
    home, away = owner(shard_map, subscriber.id).address, other(shard_map, subscriber.id).address
    debits = wire.calls("Debit")
    assert [target for target, _ in debits] == [away, home], "refused by the wrong shard, then the right one"
    assert debits[0][1].SerializeToString() == debits[1][1].SerializeToString(), "the same request, same id"
    assert [name for _, name, _ in wire.sent] == ["Debit", "GetShardMap", "Debit"]
    assert (direct_client.map_refreshes, direct_client.front_door_fallbacks) == (2, 0)
    assert calls.money(subscriber.id).balance == FUNDS - 3 * SMS_MICROS
    # The map is right again: the next call goes to the owner at the first try.
    direct_client.top_up(subscriber.id, 7)
    assert wire.targets("TopUp") == [home]
    assert calls.money(subscriber.id).balance == FUNDS - 3 * SMS_MICROS + 7


def test_a_shard_that_a_fresh_map_still_names_sends_the_call_to_the_front_door(embedded, calls, new_subscriber,
                                                                               shard_map, direct, wire):
    """The front door's map and the shard's disagree (as while a slot moves): the call
    goes to the front door, same request, and the slot stays there until the next map."""
    wire.rewrite_map = swap_addresses  # every map the client fetches is wrong
    direct_client = direct()
    subscriber = new_subscriber()
    request_id = new_id("dbt-")
    charged = direct_client.debit(subscriber.id, 1, rating_group=SMS, request_id=request_id)
    assert (charged.result, charged.replayed) == (pb.SUCCESS, False)
    away = other(shard_map, subscriber.id).address
    assert [(target, name) for target, name, _ in wire.sent] == [
        (embedded.target, "GetShardMap"), (away, "Debit"), (embedded.target, "GetShardMap"),
        (embedded.target, "Debit")]
    assert {request.request_id for _, request in wire.calls("Debit")} == {request_id}
    assert direct_client.front_door_fallbacks == 1
    wire.sent.clear()
    direct_client.debit(subscriber.id, 1, rating_group=SMS)
    assert [(target, name) for target, name, _ in wire.sent] == [(embedded.target, "Debit")], \
        "the slot goes to the front door now, not to a shard that refuses it"
    assert calls.money(subscriber.id).balance == FUNDS - 2 * SMS_MICROS


def test_a_lost_reply_from_a_shard_is_asked_again_at_the_front_door(embedded, calls, new_subscriber, shard_map,
                                                                    direct, wire):
    direct_client = direct()
    subscriber = new_subscriber()
    direct_client.balance(subscriber.id)
    home = owner(shard_map, subscriber.id).address
    wire.lose[(home, "Debit")] = 1
    wire.sent.clear()
    charged = direct_client.debit(subscriber.id, 2, rating_group=SMS)
    assert charged.replayed, "the front door had the shard's answer under the same request id"
    assert [(target, name) for target, name, _ in wire.sent] == [(home, "Debit"), (embedded.target, "Debit")]
    first, second = (request for _, request in wire.calls("Debit"))
    assert first.SerializeToString() == second.SerializeToString()
    assert direct_client.front_door_fallbacks == 1
    assert calls.money(subscriber.id).balance == FUNDS - 2 * SMS_MICROS
    # UNAVAILABLE marks the map for a refresh: the next call fetches it first.
    wire.sent.clear()
    direct_client.balance(subscriber.id)
    assert [name for _, name, _ in wire.sent][0] == "GetShardMap"


def test_an_unreachable_shard_address_falls_back_to_the_front_door(embedded, calls, new_subscriber, shard_map, direct,
                                                                   wire):
    def dead_addresses(reply):
        for shard in reply.shards:
            shard.address = "127.0.0.1:9"  # nothing listens there: UNAVAILABLE at once
    wire.rewrite_map = dead_addresses
    direct_client = direct(map_refresh_s=0.5)
    subscriber = new_subscriber()
    charged = direct_client.top_up(subscriber.id, 11)
    assert (charged.result, charged.replayed) == (pb.SUCCESS, False)
    assert wire.targets("TopUp") == ["127.0.0.1:9", embedded.target]
    assert (direct_client.direct_calls, direct_client.front_door_fallbacks) == (0, 1)
    # The dead address is left alone a while: the next calls go to the front door directly.
    wire.sent.clear()
    direct_client.top_up(subscriber.id, 11)
    assert wire.targets("TopUp") == [embedded.target]
    assert calls.money(subscriber.id).balance == FUNDS + 22
    # The shards are back at their real addresses: the next map (map_refresh_s) says so,
    # the dead address's channel is closed, and calls go to the owner again.
    wire.rewrite_map = None
    time.sleep(1.1)
    wire.sent.clear()
    direct_client.top_up(subscriber.id, 11)
    assert [(target, name) for target, name, _ in wire.sent] == [
        (embedded.target, "GetShardMap"), (owner(shard_map, subscriber.id).address, "TopUp")]
    assert "127.0.0.1:9" not in direct_client._shard_channels
    assert calls.money(subscriber.id).balance == FUNDS + 33


# ---------------------------------------------------------------- batching (asyncio)


def unary_failure(client: ChargingClient, method: str, *args, **kwargs):
    """What the unary call raises: (type, code, field)."""
    with pytest.raises(GridError) as raised:
        getattr(client, method)(*args, **kwargs)
    return type(raised.value), raised.value.code, raised.value.field


def batched_failure(outcome, request_id: str = ""):
    assert isinstance(outcome, GridError), outcome
    if request_id:
        assert outcome.request_id == request_id
    return type(outcome), outcome.code, outcome.field


def test_concurrent_calls_share_charge_batches_and_each_gets_its_own_answer(aio, client, calls, new_subscriber,
                                                                            wire):
    batching = aio.open(batch_window_s=WINDOW_S)
    accounts = [new_subscriber() for _ in range(20)]
    reused_id = new_id("reused-")
    client.top_up(accounts[0].id, 5, request_id=reused_id)
    wire.sent.clear()
    units = [(accounts[i % 20].id, i % 3 + 1, new_id(f"dbt-{i}-")) for i in range(200)]
    bad_rating_group = new_id("bad-")
    bad_amount = new_id("bad-")

    async def scenario():
        good = [batching.debit(subscriber_id, n, rating_group=SMS, request_id=request_id)
                for subscriber_id, n, request_id in units]
        bad = [batching.debit(accounts[1].id, 1, request_id=bad_rating_group),  # no rating group: INVALID_ARGUMENT
               batching.top_up(accounts[2].id, 0, request_id=bad_amount),  # INVALID_ARGUMENT
               batching.top_up(accounts[0].id, 6, request_id=reused_id),  # ALREADY_EXISTS
               batching.debit(new_id("nobody-"), 1, rating_group=SMS)]  # a reply: USER_UNKNOWN
        return await asyncio.gather(*good, *bad, return_exceptions=True)

    outcomes = aio.run(scenario())
    good, (no_rating_group, no_amount, reused, unknown) = outcomes[:200], outcomes[200:]
    for (subscriber_id, n, request_id), reply in zip(units, good):
        assert isinstance(reply, pb.DebitResponse), reply
        assert (reply.result, reply.charged_micros, reply.replayed) == (pb.SUCCESS, n * SMS_MICROS, False)
    assert len({reply.charge_id for reply in good}) == 200, "each caller got its own reply"
    for subscriber_id, _, request_id in units[:5]:
        assert calls.transaction(subscriber_id, request_id).debit == good[[u[2] for u in units].index(request_id)]
    for index, account in enumerate(accounts):
        spent = sum(n for subscriber_id, n, _ in units if subscriber_id == account.id) * SMS_MICROS
        assert calls.money(account.id).balance == FUNDS - spent + (5 if index == 0 else 0), account
    # The bad ones failed alone, each exactly as its unary call does.
    assert batched_failure(no_rating_group, bad_rating_group) == unary_failure(client, "debit", accounts[1].id, 1) \
        == (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "rating_group")
    assert batched_failure(no_amount, bad_amount) == unary_failure(client, "top_up", accounts[2].id, 0) \
        == (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "amount_micros")
    assert batched_failure(reused, reused_id) == unary_failure(client, "top_up", accounts[0].id, 6,
                                                                request_id=reused_id)
    assert type(reused) is RequestIdReused
    assert isinstance(unknown, pb.DebitResponse) and unknown.result == pb.USER_UNKNOWN
    # Shared messages, not one call each.
    assert wire.targets("Debit") == [] and wire.targets("TopUp") == []
    assert batching.largest_batch > 1 and batching.batches_sent < 204 / 2
    assert sum(len(request.operations) for _, request in wire.calls("ChargeBatch")) == 204
    assert batching.batched_operations == 204


def test_a_batch_holds_at_most_batch_operations_max(aio, calls, new_subscriber, wire):
    batching = aio.open(batch_window_s=WINDOW_S, batch_operations_max=8)
    accounts = [new_subscriber() for _ in range(4)]

    async def scenario():
        return await asyncio.gather(*(batching.top_up(accounts[i % 4].id, i + 1) for i in range(60)))

    replies = aio.run(scenario())
    assert [reply.result for reply in replies] == [pb.SUCCESS] * 60
    sizes = [len(request.operations) for _, request in wire.calls("ChargeBatch")]
    assert sum(sizes) == 60 and max(sizes) <= 8 and len(sizes) >= math.ceil(60 / 8)
    assert batching.largest_batch == max(sizes) > 1
    for index, account in enumerate(accounts):
        assert calls.money(account.id).balance == FUNDS + sum(i + 1 for i in range(index, 60, 4))
    with pytest.raises(ValueError):
        aio.open(batch_window_s=WINDOW_S, batch_operations_max=8191)


def test_batching_holds_a_bounded_number_of_operations_and_messages(aio, calls, new_subscriber):
    """With a slow grid, 200 callers at once: at most 4 messages in flight, and at most
    batch_operations_max * 5 operations held; the other callers wait their turn."""
    batching = aio.open(batch_window_s=WINDOW_S, batch_operations_max=8)
    batcher = batching._batcher
    account = new_subscriber()
    in_flight, seen = [0], {"messages": 0, "held": 0}
    held: set = set()
    send, collect = batching._charge_batch, batcher._collect

    async def slow_send(address, request):
        in_flight[0] += 1
        seen["messages"] = max(seen["messages"], in_flight[0])
        try:
            await asyncio.sleep(0.03)
            return await send(address, request)
        finally:
            in_flight[0] -= 1

    def counting_collect(entry):
        held.add(entry)
        seen["held"] = max(seen["held"], sum(not e.future.done() for e in held))
        collect(entry)

    batching._charge_batch, batcher._collect = slow_send, counting_collect

    async def scenario():
        return await asyncio.gather(*(batching.top_up(account.id, 1) for _ in range(200)))

    replies = aio.run(scenario())
    assert [reply.result for reply in replies] == [pb.SUCCESS] * 200
    assert seen["messages"] == 4, seen
    assert 8 < seen["held"] <= 8 * 5, seen
    assert calls.money(account.id).balance == FUNDS + 200


def test_a_subscribers_operations_keep_their_order_in_a_batch(aio, calls, new_subscriber):
    """300,000 micros buy 300 s of VOICE: asked first, 300 s gets it all and 100 s nothing;
    the other way round, 100 s and 200 s."""
    batching = aio.open(batch_window_s=0.05)
    accounts = [new_subscriber(funds=300 * VOICE_MICROS_PER_S) for _ in range(4)]

    async def scenario():
        calls_ = []
        for account in accounts:
            calls_.append(batching.reserve(account.id, new_id("session-"), VOICE, 300))
            calls_.append(batching.reserve(account.id, new_id("session-"), VOICE, 100))
        return await asyncio.gather(*calls_)

    replies = aio.run(scenario())
    assert batching.batches_sent == 1
    for index in range(len(accounts)):
        first, second = replies[2 * index], replies[2 * index + 1]
        assert (first.result, first.granted_units) == (pb.SUCCESS, 300), first
        assert second.granted_units == 0 and second.result != pb.SUCCESS, second
        assert calls.money(accounts[index].id).reserved == 300 * VOICE_MICROS_PER_S


def test_a_lost_batch_reply_is_retried_whole_with_the_same_request_ids(aio, embedded, calls, new_subscriber, wire):
    batching = aio.open(batch_window_s=WINDOW_S)
    accounts = [new_subscriber() for _ in range(3)]
    wire.lose[(embedded.target, "ChargeBatch")] = 1

    async def scenario():
        return await asyncio.gather(*(batching.debit(account.id, 2, rating_group=SMS) for account in accounts * 2))

    replies = aio.run(scenario())
    assert all(reply.result == pb.SUCCESS and reply.replayed for reply in replies), replies
    first, second = (request for _, request in wire.calls("ChargeBatch"))
    assert first.SerializeToString() == second.SerializeToString(), "the same message, same request ids"
    for account in accounts:
        assert calls.money(account.id).balance == FUNDS - 2 * 2 * SMS_MICROS


def test_a_batch_whose_every_reply_is_lost_is_settled_by_get_transaction(aio, embedded, calls, new_subscriber,
                                                                         wire):
    batching = aio.open(batch_window_s=WINDOW_S)
    accounts = [new_subscriber() for _ in range(3)]
    wire.lose[(embedded.target, "ChargeBatch")] = FAST_RETRIES.attempts

    async def scenario():
        return await asyncio.gather(*(batching.top_up(account.id, 100 + i) for i, account in enumerate(accounts)))

    replies = aio.run(scenario())
    assert [reply.result for reply in replies] == [pb.SUCCESS] * 3
    assert len(wire.calls("ChargeBatch")) == FAST_RETRIES.attempts
    assert len({request.SerializeToString() for _, request in wire.calls("ChargeBatch")}) == 1
    assert sorted(request.request_id for _, request in wire.calls("GetTransaction")) == sorted(
        operation.top_up.request_id for operation in wire.calls("ChargeBatch")[0][1].operations)
    for i, account in enumerate(accounts):
        assert calls.money(account.id).balance == FUNDS + 100 + i, "applied once, by the first message"


# ---------------------------------------------------------------- direct and batching together


def test_direct_batches_go_one_per_owning_shard(aio, embedded, client, calls, new_subscriber, shard_map, wire):
    batching = aio.open(direct=True, batch_window_s=WINDOW_S)
    accounts = subscribers_on_both_shards(new_subscriber, shard_map, 20)
    wire.sent.clear()
    work = [(accounts[i % len(accounts)].id, i % 2 + 1) for i in range(200)]
    bad_id = new_id("bad-")

    async def scenario():
        return await asyncio.gather(*(batching.debit(s, n, rating_group=SMS) for s, n in work),
                                    batching.debit(accounts[0].id, 1, request_id=bad_id), return_exceptions=True)

    *replies, bad = aio.run(scenario())
    assert [(reply.result, reply.charged_micros) for reply in replies] == [(pb.SUCCESS, n * SMS_MICROS)
                                                                          for _, n in work]
    assert batched_failure(bad, bad_id) == unary_failure(client, "debit", accounts[0].id, 1)
    for account in accounts:
        assert calls.money(account.id).balance == FUNDS - sum(n for s, n in work if s == account.id) * SMS_MICROS
    homes = {shard.address for shard in shard_map.shards}
    batches = wire.calls("ChargeBatch")
    assert {target for target, _ in batches} == homes, "to each shard, never the front door"
    for target, request in batches:  # each message holds only its shard's subscribers
        kinds = [operation.WhichOneof("operation") for operation in request.operations]
        assert {owner(shard_map, getattr(o, k).subscriber_id).address
                for o, k in zip(request.operations, kinds)} == {target}
    assert batching.direct_calls == len(batches) and batching.front_door_fallbacks == 0
    assert batching.largest_batch > 1
    assert wire.targets("GetShardMap") == [embedded.target]


def test_direct_batches_with_a_wrong_map_are_sent_on_to_the_owners(aio, embedded, calls, new_subscriber, shard_map,
                                                                   wire):
    batching = aio.open(direct=True, batch_window_s=WINDOW_S)
    accounts = subscribers_on_both_shards(new_subscriber, shard_map, 6)
    aio.run(batching.balance(accounts[0].id))  # the map is fetched
    batching._routes.map = swapped(batching._routes.map)
    wire.sent.clear()

    async def scenario():
        return await asyncio.gather(*(batching.debit(account.id, 1, rating_group=SMS, request_id=new_id("dbt-"))
                                      for account in accounts * 3))

    replies = aio.run(scenario())
    assert all((reply.result, reply.replayed) == (pb.SUCCESS, False) for reply in replies), replies
    for account in accounts:
        assert calls.money(account.id).balance == FUNDS - 3 * SMS_MICROS, "charged once each"
    assert wire.targets("GetShardMap") == [embedded.target], "one fetch for every stale answer of the burst"
    sent_to = {}
    for target, request in wire.calls("ChargeBatch"):
        for operation in request.operations:
            sent_to.setdefault(operation.debit.request_id, []).append((target, operation.debit.subscriber_id))
    assert len(sent_to) == len(replies)
    for tries in sent_to.values():
        subscriber_id = tries[0][1]
        assert [target for target, _ in tries] == [other(shard_map, subscriber_id).address,
                                                   owner(shard_map, subscriber_id).address]
    assert batching.front_door_fallbacks == 0 and batching.map_refreshes == 2


def test_direct_batched_sessions_round_trip(aio, calls, new_subscriber, shard_map, wire):
    """Session requests ride ChargeBatch too (answered as SessionResponse); GetSession goes to the shard."""
    batching = aio.open(direct=True, batch_window_s=WINDOW_S)
    accounts = subscribers_on_both_shards(new_subscriber, shard_map, 4)
    sessions = {account.id: new_id("session-") for account in accounts}

    async def scenario():
        created = await asyncio.gather(*(batching.create_session(s, sessions[s], [(VOICE, 60, 0)], 1)
                                         for s in sessions))
        updated = await asyncio.gather(*(batching.update_session(s, sessions[s], 2, [(VOICE, 60, 30)])
                                         for s in sessions))
        released = await asyncio.gather(*(batching.release_session(s, sessions[s], 3, [(VOICE, 0, 10)])
                                          for s in sessions))
        looked_up = await asyncio.gather(*(batching.get_session(s, sessions[s]) for s in sessions))
        return created, updated, released, looked_up

    created, updated, released, looked_up = aio.run(scenario())
    for replies in (created, updated, released):
        assert [(reply.result, reply.replayed) for reply in replies] == [(pb.SUCCESS, False)] * len(sessions)
    assert [reply.session_id for reply in looked_up] == list(sessions.values())
    for account in accounts:
        money = calls.money(account.id)
        assert (money.balance, money.reserved) == (FUNDS - 40 * VOICE_MICROS_PER_S, 0)
    assert {target for target, _ in wire.calls("ChargeBatch")} == {shard.address for shard in shard_map.shards}
    assert {owner(shard_map, request.subscriber_id).address == target
            for target, request in wire.calls("GetSession")} == {True}
    assert batching.front_door_fallbacks == 0


# ---------------------------------------------------------------- mutual TLS and a tenant's credential


TLS_TENANT = "tenant-direct"
TLS_KEY = "grid-test-key-direct-0123456789abcdef"


@pytest.fixture(scope="module")
def secure(embedded, tmp_path_factory):
    """A second grid (it joins the session's Ray): 2 shards, mutual TLS with a certificate
    issued to "localhost" only (not to the 127.0.0.1 its shards listen on), and an API
    key of TLS_TENANT. Yields (front door target by name, client Credentials)."""
    directory = tmp_path_factory.mktemp("grid-e2e-direct-tls")
    ca = trustme.CA()
    server, client_leaf = ca.issue_cert("localhost"), ca.issue_cert("smf-1.example.test")
    server.private_key_pem.write_to_path(str(directory / "server-key.pem"))
    (directory / "server-cert.pem").write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    auth = security.parse_auth({"api_keys": [{"name": "direct", "tenant": TLS_TENANT,
                                              "key_sha256": security.hash_key(TLS_KEY),
                                              "scopes": sorted(security.ALL_SCOPES)}]})
    grid = EmbeddedGrid(GridConfig(data_dir=directory / "data", port=0, shards=2, auth=auth, tls=security.TlsFiles(
        directory / "server-cert.pem", directory / "server-key.pem", directory / "client-ca.pem")))
    grid.start()
    credentials = Credentials(root_certificates=ca.cert_pem.bytes(),
                              certificate_chain=b"".join(blob.bytes() for blob in client_leaf.cert_chain_pems),
                              private_key=client_leaf.private_key_pem.bytes(), api_key=TLS_KEY)
    try:
        yield f"localhost:{grid.target.rsplit(':', 1)[1]}", credentials
    finally:
        grid.stop()


def test_a_direct_client_over_mutual_tls_routes_by_its_credentials_tenant(secure):
    target, credentials = secure
    with ChargingClient(target, retry=FAST_RETRIES, credentials=credentials) as front_door:
        shard_map = front_door._stubs["charging"].GetShardMap(pb.GetShardMapRequest(), timeout=30,
                                                              metadata=credentials.metadata())
        assert shard_map.tenant == TLS_TENANT
        plan_id = new_id("plan-")
        assert front_door.put_tariff(plan_id, RATES).result == pb.SUCCESS
        # Subscribers whose shard differs between the tenant's slots and the default tenant's:
        # routed by the wrong tenant, each call would be refused and fall back.
        accounts = []
        while len(accounts) < 4:
            subscriber_id = new_id("sub-")
            if owner(shard_map, subscriber_id).shard_id != owner(shard_map, subscriber_id, "default").shard_id:
                assert front_door.create_account(subscriber_id, "EUR", plan_id).result == pb.SUCCESS
                accounts.append(subscriber_id)
    with ChargingClient(target, retry=FAST_RETRIES, credentials=credentials, direct=True) as direct_client:
        for subscriber_id in accounts:
            assert direct_client.top_up(subscriber_id, FUNDS).result == pb.SUCCESS
            assert direct_client.debit(subscriber_id, 2, rating_group=SMS).charged_micros == 2 * SMS_MICROS
            assert direct_client.balance(subscriber_id).balance_micros == FUNDS - 2 * SMS_MICROS
        assert (direct_client.direct_calls, direct_client.front_door_fallbacks) == (12, 0)
        assert set(direct_client._shard_channels) == {owner(shard_map, s).address for s in accounts}
        # Without the credential, a shard refuses like the front door does.
    with ChargingClient(target, retry=FAST_RETRIES, credentials=dataclasses.replace(credentials, api_key=None),
                        direct=True) as anonymous:
        with pytest.raises(GridError) as raised:
            anonymous.balance(accounts[0])
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED

    async def batched():
        async with AsyncChargingClient(target, retry=FAST_RETRIES, credentials=credentials, direct=True,
                                       batch_window_s=WINDOW_S) as client:
            replies = await asyncio.gather(*(client.debit(s, 1, rating_group=SMS) for s in accounts * 5))
            return replies, client.direct_calls, client.front_door_fallbacks, client.largest_batch

    loop = asyncio.new_event_loop()
    try:
        replies, direct_calls, fallbacks, largest = loop.run_until_complete(asyncio.wait_for(batched(), 60))
    finally:
        loop.close()
    assert [reply.result for reply in replies] == [pb.SUCCESS] * 20
    assert fallbacks == 0 and 1 <= direct_calls <= 2 * 2 and largest > 1
    with ChargingClient(target, retry=FAST_RETRIES, credentials=credentials) as front_door:
        for subscriber_id in accounts:
            assert front_door.balance(subscriber_id).balance_micros == FUNDS - 7 * SMS_MICROS
