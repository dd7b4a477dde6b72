"""Pooled balances over real gRPC, Ray shards and RocksDB: a fleet's pool delegates
sub-quotas to devices on both shards, the devices spend them, the rest is
reclaimed; a retried delegation moves nothing twice; each shard's audit adds up."""

import json

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc

from e2e_support import failing, new_id, open_account

pytestmark = pytest.mark.slow

EVENT = 7


@pytest.fixture(scope="module")
def plan(stubs):
    plan_id = new_id("pool-plan-")
    rate = pb.RatingGroupRate(rating_group=EVENT, unit=pb.EVENTS, price_micros=1_000, rate_units=1, increment_units=1)
    assert stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=[rate]),
                                   timeout=30).result == pb.SUCCESS
    return plan_id


def balance(stubs, subscriber: str) -> pb.GetBalanceResponse:
    return stubs.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=subscriber), timeout=30)


def audit(stubs) -> dict:
    return json.loads(pb_grpc.AdminServiceStub(stubs.channel).Audit(pb.AuditRequest(), timeout=60).report_json)


def test_devices_spend_sub_quotas_of_the_fleet_pool_and_the_rest_goes_back(stubs, plan):
    before = audit(stubs)
    pool = open_account(stubs, plan, funds=1_000_000).id
    devices = [open_account(stubs, plan, funds=0).id for _ in range(6)]  # on both shards, by their hashes
    for number, device in enumerate(devices):
        request = pb.DelegateFromPoolRequest(request_id=f"{pool}-{number}", pool_id=pool, member_id=device,
                                             amount_micros=50_000)
        reply = stubs.account.DelegateFromPool(request, timeout=30)
        assert (reply.result, reply.amount_micros) == (pb.SUCCESS, 50_000) and reply.bucket_id, reply
        # The same request again: the same answer, nothing moves twice.
        again = stubs.account.DelegateFromPool(request, timeout=30)
        assert (again.result, again.bucket_id, again.replayed) == (pb.SUCCESS, reply.bucket_id, True)
    assert balance(stubs, pool).balance_micros == 1_000_000 - 6 * 50_000
    for number, device in enumerate(devices):  # device n sends n + 1 events, paid by its sub-quota
        debit = stubs.charging.Debit(pb.DebitRequest(request_id=new_id("ev-"), subscriber_id=device,
                                                     rating_group=EVENT, used_units=number + 1), timeout=30)
        assert (debit.result, debit.charged_micros, debit.bucket_micros) == (pb.SUCCESS, (number + 1) * 1_000,
                                                                            (number + 1) * 1_000)
        held = balance(stubs, device)
        assert held.balance_micros == 0 and [b.pool_id for b in held.buckets] == [pool]
    spent = sum((number + 1) * 1_000 for number in range(6))
    for device in devices:
        reply = stubs.account.ReclaimToPool(pb.ReclaimToPoolRequest(request_id=new_id("back-"), pool_id=pool,
                                                                   member_id=device), timeout=30)
        assert reply.result == pb.SUCCESS
    assert balance(stubs, pool).balance_micros == 1_000_000 - spent
    report = audit(stubs)
    assert report["ok"], report
    # What left pools and did not come back is what the devices spent (other tests' pools aside).
    delegated = lambda r: r["pool_out_micros"] - r["pool_in_micros"]  # noqa: E731
    assert delegated(report) - delegated(before) == spent


def test_a_pool_cannot_delegate_more_than_it_has_or_to_itself(stubs, plan):
    pool = open_account(stubs, plan, funds=10_000).id
    device = open_account(stubs, plan, funds=0).id
    reply = stubs.account.DelegateFromPool(pb.DelegateFromPoolRequest(
        request_id=new_id("big-"), pool_id=pool, member_id=device, amount_micros=10_001), timeout=30)
    assert reply.result == pb.CREDIT_LIMIT_REACHED
    error = failing(stubs.account.DelegateFromPool, pb.DelegateFromPoolRequest(
        request_id=new_id("self-"), pool_id=pool, member_id=pool, amount_micros=1), timeout=30)
    assert (error.code, error.field) == (grpc.StatusCode.INVALID_ARGUMENT, "member_id")
    assert balance(stubs, pool).balance_micros == 10_000 and balance(stubs, device).buckets == []
