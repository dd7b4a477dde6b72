"""ChargeBatch: many operations in one message, each answered on its own and in
order, none failing another; the same through a front door and through a
shard's own public listener (which refuses a slot it does not own with
SHARD_MAP_STALE). Errors are the statuses the unary calls would fail with."""

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import (
    FUNDS,
    SMS,
    SMS_MICROS,
    debit_request,
    new_id,
    reserve_request,
    top_up_request,
    view_error,
    view_status,
    without_replayed,
)
from grid.routing import slot_of

pytestmark = pytest.mark.slow

FIELD_OF = {pb.ReserveRequest: "reserve", pb.DebitRequest: "debit", pb.TopUpRequest: "top_up"}


def batch(*requests) -> pb.ChargeBatchRequest:
    operations = []
    for tag, request in enumerate(requests):
        message = pb.ChargeRequest(correlation_tag=tag)
        if request is not None:
            getattr(message, FIELD_OF[type(request)]).CopyFrom(request)
        operations.append(message)
    return pb.ChargeBatchRequest(operations=operations)


def test_each_operation_is_answered_in_order_and_a_bad_one_fails_alone(calls, subscriber):
    reused = top_up_request(subscriber.id, 100, request_id=new_id("reused-"))
    assert calls.stubs.charging.TopUp(reused).result == pb.SUCCESS
    response = calls.stubs.charging.ChargeBatch(batch(
        top_up_request(subscriber.id, 5),
        debit_request(subscriber.id, 1, rating_group=SMS),
        None,  # no operation
        top_up_request(subscriber.id, 0),  # bad input
        top_up_request(subscriber.id, 101, request_id=reused.request_id),  # a reused id, another payload
        reserve_request(new_id("ghost-"), 10),  # an outcome, not an error
        debit_request(subscriber.id, 2, rating_group=SMS),
    ), timeout=30)
    replies = list(response.replies)
    assert [reply.correlation_tag for reply in replies] == list(range(7))
    assert [reply.WhichOneof("reply") for reply in replies] == [
        "top_up", "debit", "error", "error", "error", "reserve", "debit"]
    assert (view_status(replies[2].error).code, view_status(replies[2].error).field) == (
        grpc.StatusCode.INVALID_ARGUMENT, "operation")
    assert (view_status(replies[3].error).code, view_status(replies[3].error).field) == (
        grpc.StatusCode.INVALID_ARGUMENT, "amount_micros")
    assert view_status(replies[4].error).code == grpc.StatusCode.ALREADY_EXISTS
    assert replies[5].reserve.result == pb.USER_UNKNOWN
    assert (replies[1].debit.charged_micros, replies[6].debit.charged_micros) == (SMS_MICROS, 2 * SMS_MICROS)
    assert calls.money(subscriber.id).balance == FUNDS + 100 + 5 - 3 * SMS_MICROS


def test_operations_on_one_subscriber_apply_in_their_order(calls, new_subscriber):
    broke = new_subscriber(funds=0)
    response = calls.stubs.charging.ChargeBatch(batch(
        debit_request(broke.id, 1, rating_group=SMS),  # nothing to pay with yet
        top_up_request(broke.id, SMS_MICROS),
        debit_request(broke.id, 1, rating_group=SMS),  # paid by the top-up before it
        debit_request(broke.id, 1, rating_group=SMS),  # nothing left
    ), timeout=30)
    results = [reply.debit.result if reply.WhichOneof("reply") == "debit" else reply.top_up.result
               for reply in response.replies]
    assert results == [pb.CREDIT_LIMIT_REACHED, pb.SUCCESS, pb.SUCCESS, pb.CREDIT_LIMIT_REACHED]
    assert calls.money(broke.id).balance == 0


def test_a_batch_sent_again_is_replayed_and_charges_nothing_twice(calls, subscriber):
    request = batch(*(debit_request(subscriber.id, 1, rating_group=SMS) for _ in range(50)))
    first = calls.stubs.charging.ChargeBatch(request, timeout=30)
    again = calls.stubs.charging.ChargeBatch(request, timeout=30)
    assert not any(reply.debit.replayed for reply in first.replies)
    assert all(reply.debit.replayed for reply in again.replies)
    assert [without_replayed(a.debit) for a in again.replies] == [without_replayed(f.debit) for f in first.replies]
    assert calls.money(subscriber.id).balance == FUNDS - 50 * SMS_MICROS


def test_more_operations_than_a_message_may_carry_is_invalid_argument_naming_operations(calls, subscriber):
    request = batch(*(top_up_request(subscriber.id, 1) for _ in range(8191)))
    with pytest.raises(grpc.RpcError) as raised:
        calls.stubs.charging.ChargeBatch(request, timeout=30)
    error = view_error(raised.value)
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "operations")
    assert calls.money(subscriber.id).balance == FUNDS


def shard_stubs(calls):
    """shard id -> (a ChargingService stub on its public listener, its slot ranges); the map."""
    shard_map = calls.stubs.charging.GetShardMap(pb.GetShardMapRequest(), timeout=10)
    stubs = {shard.shard_id: (pb_grpc.ChargingServiceStub(grpc.insecure_channel(shard.address)), shard.slot_ranges)
             for shard in shard_map.shards}
    return stubs, shard_map


def owner(shard_map, tenant: str, subscriber_id: str) -> int:
    slot = slot_of(tenant, subscriber_id, shard_map.slots)
    return next(shard.shard_id for shard in shard_map.shards
                if any(r.first <= slot <= r.last for r in shard.slot_ranges))


def test_the_map_covers_every_slot_once_and_names_each_shards_listener(calls):
    _, shard_map = shard_stubs(calls)
    covered = sorted(slot for shard in shard_map.shards for r in shard.slot_ranges for slot in range(r.first,
                                                                                                       r.last + 1))
    assert covered == list(range(shard_map.slots)) and shard_map.epoch >= 1
    assert len(shard_map.shards) == 2 and all(shard.address and shard.shard_epoch >= 1 for shard in shard_map.shards)
    assert "blake2b" in shard_map.slot_function and shard_map.tenant == "default"


def test_a_shard_serves_its_own_slots_and_refuses_another_shards(calls, new_subscriber):
    stubs, shard_map = shard_stubs(calls)
    subscribers = [new_subscriber() for _ in range(8)]
    owners = {s.id: owner(shard_map, shard_map.tenant, s.id) for s in subscribers}
    assert len(set(owners.values())) == 2, "8 subscribers span both shards"
    for subscriber in subscribers:
        mine, _ = stubs[owners[subscriber.id]]
        other, _ = stubs[1 - owners[subscriber.id]]
        reply = mine.Debit(debit_request(subscriber.id, 1, rating_group=SMS), timeout=10)
        assert reply.result == pb.SUCCESS
        with pytest.raises(grpc.RpcError) as raised:
            other.Debit(debit_request(subscriber.id, 1, rating_group=SMS), timeout=10)
        error = view_error(raised.value)
        assert (error.code, error.info.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SHARD_MAP_STALE")
        assert error.info.metadata["slot"] == str(slot_of(shard_map.tenant, subscriber.id, shard_map.slots))
        # Nothing moved at the wrong shard; the right one charged once.
        assert calls.money(subscriber.id).balance == FUNDS - SMS_MICROS
    # A batch at one shard: its own subscribers charged, the others' refused one by one.
    stub, _ = stubs[0]
    response = stub.ChargeBatch(batch(*(debit_request(s.id, 1, rating_group=SMS) for s in subscribers)), timeout=30)
    for subscriber, reply in zip(subscribers, response.replies):
        if owners[subscriber.id] == 0:
            assert reply.debit.result == pb.SUCCESS
            assert calls.money(subscriber.id).balance == FUNDS - 2 * SMS_MICROS
        else:
            assert view_status(reply.error).info.reason == "SHARD_MAP_STALE"
            assert calls.money(subscriber.id).balance == FUNDS - SMS_MICROS


def test_a_shard_answers_watches_and_catalog_calls_are_the_front_doors(calls):
    stubs, _ = shard_stubs(calls)
    stub, _ = stubs[0]
    with pytest.raises(grpc.RpcError) as raised:
        next(iter(stub.WatchNotifications(pb.WatchNotificationsRequest(client_id="c"), timeout=10)))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _free_port_pair_base() -> int:
    """A base whose 4 ports (2 shards x 2 listeners) are free now."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(20_000, 40_000, 2)
        sockets = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no 4 free ports in a row")


def test_shards_listen_on_the_ports_a_network_policy_can_name(embedded, tmp_path):
    """--shard-port-base: shard N on BASE+2N (front doors) and BASE+2N+1 (public), and
    a grid on them serves as any other."""
    from e2e_support import ServingGrid, open_account, put_plan

    base = _free_port_pair_base()
    grid = ServingGrid(tmp_path / "ports", shards=2, shard_port_base=base)
    try:
        shard_map = grid.stubs.charging.GetShardMap(pb.GetShardMapRequest(), timeout=10)
        assert sorted(shard.address for shard in shard_map.shards) == [f"127.0.0.1:{base + 1}",
                                                                       f"127.0.0.1:{base + 3}"]
        subscriber = open_account(grid.stubs, put_plan(grid.stubs))  # the plan reaches both shards' streams
        assert grid.stubs.charging.Debit(debit_request(subscriber.id, 1, rating_group=SMS)).result == pb.SUCCESS
        links = [batcher.link.endpoint["internal"] for batcher in grid.grid.grid.router.batchers]
        assert sorted(links) == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 2}"]
    finally:
        grid.stop()
