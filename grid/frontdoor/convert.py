"""Protobuf <-> domain translation: the only place both kinds of types meet.

The core never sees protobuf; the servicers never see core internals.
"""

import dataclasses
import enum

from charging.v1 import charging_pb2 as pb

from grid.domain import operations as ops
from grid.domain.records import Bucket
from grid.domain.outcomes import AccountState, BucketUnit, ControlAction, ControlKind, CounterPeriod, FinalUnitAction, Unit
from grid.domain.rating import (
    CapAction, Control, CounterThreshold, PolicyCounter, Rate, Rounding, TariffPlan, Tier, TimeBand,
)


def _enum_or_raw(enum_class: type[enum.IntEnum], value: int):
    """An unknown enum number stays a plain int, which validation then rejects by name."""
    try:
        return enum_class(value)
    except ValueError:
        return value


# ---------------------------------------------------------------- requests


def bucket_grant(message: pb.BucketGrant) -> ops.BucketGrant:
    return ops.BucketGrant(
        _enum_or_raw(BucketUnit, message.unit), message.amount, message.valid_from_ms, message.valid_until_ms,
        message.weight, tuple(message.rating_groups), tuple(message.destination_prefixes),
    )


def bucket_message(bucket: Bucket) -> pb.Bucket:
    return pb.Bucket(
        bucket_id=bucket.bucket_id, unit=bucket.unit, initial=bucket.initial, remaining=bucket.remaining,
        reserved=bucket.reserved, valid_from_ms=bucket.valid_from_ms, valid_until_ms=bucket.valid_until_ms,
        weight=bucket.weight, rating_groups=list(bucket.rating_groups),
        destination_prefixes=list(bucket.destination_prefixes), pool_id=bucket.pool_id,
    )


def create_account(request: pb.CreateAccountRequest, tenant: str, trace_id: str) -> ops.CreateAccount:
    return ops.CreateAccount(
        tenant, request.subscriber_id, request.request_id, request.currency,
        request.credit_limit_micros, request.tariff_plan_id, trace_id,
        buckets=tuple(bucket_grant(b) for b in request.buckets),
    )


def set_account_state(request: pb.SetAccountStateRequest, tenant: str, trace_id: str) -> ops.SetAccountState:
    return ops.SetAccountState(
        tenant, request.subscriber_id, request.request_id, _enum_or_raw(AccountState, request.state), trace_id
    )


def top_up(request: pb.TopUpRequest, tenant: str, trace_id: str) -> ops.TopUp:
    return ops.TopUp(tenant, request.subscriber_id, request.request_id, request.amount_micros, trace_id,
                     bucket=bucket_grant(request.bucket) if request.HasField("bucket") else None)


def reserve(request: pb.ReserveRequest, tenant: str, trace_id: str) -> ops.Reserve:
    return ops.Reserve(
        tenant, request.subscriber_id, request.request_id, request.session_id,
        request.rating_group, request.requested_units, trace_id,
        destination=request.destination, roaming_zone=request.roaming_zone,
        service_identifier=request.service_identifier,
    )


def debit(request: pb.DebitRequest, tenant: str, trace_id: str) -> ops.Debit:
    return ops.Debit(
        tenant, request.subscriber_id, request.request_id, request.reservation_id,
        request.rating_group, request.used_units, request.final, trace_id,
        destination=request.destination, roaming_zone=request.roaming_zone,
        usage_started_at_ms=request.usage_started_at_ms, service_identifier=request.service_identifier,
    )


def quote(request: pb.QuoteRequest, tenant: str, trace_id: str = "") -> ops.Quote:
    return ops.Quote(tenant, request.subscriber_id, request.rating_group, request.used_units,
                     destination=request.destination, roaming_zone=request.roaming_zone, at_ms=request.at_ms,
                     service_identifier=request.service_identifier)


def release(request: pb.ReleaseRequest, tenant: str, trace_id: str) -> ops.Release:
    return ops.Release(tenant, request.subscriber_id, request.request_id, request.reservation_id, trace_id)


def refund(request: pb.RefundRequest, tenant: str, trace_id: str) -> ops.Refund:
    return ops.Refund(
        tenant, request.subscriber_id, request.request_id, request.charge_id, request.amount_micros, trace_id
    )


def get_balance(request: pb.GetBalanceRequest, tenant: str, trace_id: str = "") -> ops.GetBalance:
    return ops.GetBalance(tenant, request.subscriber_id)


def get_account(request: pb.GetAccountRequest, tenant: str, trace_id: str = "") -> ops.GetAccount:
    return ops.GetAccount(tenant, request.subscriber_id)


def get_transaction(request: pb.GetTransactionRequest, tenant: str, trace_id: str = "") -> ops.GetTransaction:
    return ops.GetTransaction(tenant, request.subscriber_id, request.request_id)


def rate(message: pb.RatingGroupRate) -> Rate:
    return Rate(
        message.rating_group, _enum_or_raw(Unit, message.unit), message.price_micros, message.rate_units,
        message.increment_units, _enum_or_raw(FinalUnitAction, message.final_unit_action),
        message.redirect_server_address, destination_prefix=message.destination_prefix,
        time_band=message.time_band, roaming_zone=message.roaming_zone,
        connect_fee_micros=message.connect_fee_micros,
        tiers=tuple(Tier(t.from_units, t.price_micros, t.rate_units, t.increment_units) for t in message.tiers),
        minimum_charge_micros=message.minimum_charge_micros, maximum_cost_micros=message.maximum_cost_micros,
        cap_action=_enum_or_raw(CapAction, message.cap_action),
        volume_period=_enum_or_raw(CounterPeriod, message.volume_period),
        service_identifier=message.service_identifier,
    )


def plan_from_message(message, tenant: str) -> TariffPlan:
    """A plan from a PutTariffRequest or a TariffPlan message (the same fields)."""
    request = message
    if isinstance(message, pb.TariffPlan):
        request = pb.PutTariffRequest(
            tariff_plan_id=message.tariff_plan_id, rates=message.rates, policy_counters=message.policy_counters,
            controls=message.controls, effective_from_ms=message.effective_from_ms, time_zone=message.time_zone,
            time_bands=message.time_bands, holidays=message.holidays, rounding=message.rounding,
            description=message.description)
    plan = put_tariff(request, tenant, "").plan
    return plan if not isinstance(message, pb.TariffPlan) else dataclasses.replace(plan, version=message.version)


def put_tariff_request(plan: TariffPlan) -> pb.PutTariffRequest:
    """The request that puts this plan (what `grid catalog apply` sends)."""
    message = tariff_plan(plan)
    return pb.PutTariffRequest(
        tariff_plan_id=plan.tariff_plan_id, rates=message.rates, policy_counters=message.policy_counters,
        controls=message.controls, effective_from_ms=plan.effective_from_ms, time_zone=plan.time_zone,
        time_bands=message.time_bands, holidays=list(plan.holidays), rounding=plan.rounding,
        description=plan.description)


def put_tariff(request: pb.PutTariffRequest, tenant: str, trace_id: str) -> ops.PutTariff:
    rates = tuple(rate(each) for each in request.rates)
    counters = tuple(
        PolicyCounter(counter.counter_id, tuple(counter.rating_groups), counter.spend,
                      _enum_or_raw(CounterPeriod, counter.period), counter.base_status,
                      tuple(CounterThreshold(t.at_least, t.status) for t in counter.thresholds))
        for counter in request.policy_counters
    )
    controls = tuple(
        Control(c.control_id, _enum_or_raw(ControlKind, c.kind), c.limit, c.window_s,
                _enum_or_raw(ControlAction, c.action), tuple(c.rating_groups))
        for c in request.controls
    )
    return ops.PutTariff(TariffPlan(
        request.tariff_plan_id, rates, policy_counters=counters, controls=controls, tenant=tenant,
        effective_from_ms=request.effective_from_ms, time_zone=request.time_zone,
        time_bands=tuple(TimeBand(b.name, tuple(b.days), b.from_minute, b.to_minute) for b in request.time_bands),
        holidays=tuple(request.holidays), rounding=_enum_or_raw(Rounding, request.rounding),
        description=request.description,
    ), trace_id)


def get_tariff(request: pb.GetTariffRequest, tenant: str, trace_id: str = "") -> ops.GetTariff:
    return ops.GetTariff(request.tariff_plan_id, tenant, request.version)


def _unit_usage(request) -> tuple[ops.UnitUsage, ...]:
    return tuple(ops.UnitUsage(u.rating_group, u.requested_units, u.used_units, u.destination, u.roaming_zone,
                               u.service_identifier)
                 for u in request.multiple_unit_usage)


def create_session(request: pb.CreateSessionRequest, tenant: str, trace_id: str) -> ops.CreateSession:
    return ops.CreateSession(tenant, request.subscriber_id, request.session_id, request.invocation_sequence_number,
                             _unit_usage(request), request.notify_client_id, trace_id)


def update_session(request: pb.UpdateSessionRequest, tenant: str, trace_id: str) -> ops.UpdateSession:
    return ops.UpdateSession(tenant, request.subscriber_id, request.session_id, request.invocation_sequence_number,
                             _unit_usage(request), request.notify_client_id, trace_id)


def release_session(request: pb.ReleaseSessionRequest, tenant: str, trace_id: str) -> ops.ReleaseSession:
    return ops.ReleaseSession(tenant, request.subscriber_id, request.session_id,
                              request.invocation_sequence_number, _unit_usage(request), "", trace_id)


def subscribe(request: pb.SubscribeRequest, tenant: str, trace_id: str) -> ops.Subscribe:
    return ops.Subscribe(tenant, request.subscriber_id, request.request_id, request.client_id,
                         tuple(request.counter_ids), trace_id)


def unsubscribe(request: pb.UnsubscribeRequest, tenant: str, trace_id: str) -> ops.Unsubscribe:
    return ops.Unsubscribe(tenant, request.subscriber_id, request.request_id, request.client_id, trace_id)


def get_billing_cycle(request: pb.GetBillingCycleRequest, tenant: str, trace_id: str = "") -> ops.GetBillingCycle:
    return ops.GetBillingCycle(tenant, request.subscriber_id, request.at_ms)


def billing_cycle_reply(reply: ops.BillingCycleReply) -> pb.GetBillingCycleResponse:
    cycle = reply.cycle
    if cycle is None:
        return pb.GetBillingCycleResponse(result=reply.result)
    return pb.GetBillingCycleResponse(
        result=reply.result, period_start_ms=cycle.period_start_ms, period_end_ms=cycle.period_end_ms,
        charged_micros=cycle.charged_micros, refunded_micros=cycle.refunded_micros,
        net_micros=cycle.charged_micros - cycle.refunded_micros,
        usage=[pb.RatingGroupUsage(rating_group=group, units=units, charged_micros=micros)
               for group, units, micros in cycle.usage],
    )


def get_counters(request: pb.GetCountersRequest, tenant: str, trace_id: str = "") -> ops.GetCounters:
    return ops.GetCounters(tenant, request.subscriber_id)


def counter_status(view: ops.CounterStatusView) -> pb.CounterStatus:
    return pb.CounterStatus(
        counter_id=view.counter_id, status=view.status, value=view.value, period_start_ms=view.period_start_ms,
        period_end_ms=view.period_end_ms, pending_status=view.pending_status,
        pending_activation_ms=view.pending_activation_ms,
    )


def subscribe_reply(reply: ops.SubscribeReply) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(result=reply.result, statuses=[counter_status(v) for v in reply.statuses],
                                replayed=reply.replayed, trace_id=reply.trace_id)


def unsubscribe_reply(reply: ops.UnsubscribeReply) -> pb.UnsubscribeResponse:
    return pb.UnsubscribeResponse(result=reply.result, replayed=reply.replayed, trace_id=reply.trace_id)


def counters_reply(reply: ops.CountersReply) -> pb.GetCountersResponse:
    return pb.GetCountersResponse(result=reply.result, statuses=[counter_status(v) for v in reply.statuses])


def status_notification(notification, cursor: str, lost: bool) -> pb.StatusNotification:
    return pb.StatusNotification(
        subscriber_id=notification.subscriber_id,
        status=pb.CounterStatus(
            counter_id=notification.counter_id, status=notification.status, value=notification.value,
            period_start_ms=notification.period_start_ms, period_end_ms=notification.period_end_ms,
            pending_status=notification.pending_status,
            pending_activation_ms=notification.period_end_ms if notification.pending_status else 0,
        ),
        previous_status=notification.previous_status, at_ms=notification.at_ms, cause=notification.cause,
        request_id=notification.request_id, trace_id=notification.trace_id, cursor=cursor,
        notifications_lost=lost,
    )


def session_notification(notification, cursor: str, lost: bool) -> pb.Notification:
    return pb.Notification(
        type=notification.type, reason=notification.reason, session_id=notification.session_id,
        subscriber_id=notification.subscriber_id, at_ms=notification.at_ms, cursor=cursor,
        notifications_lost=lost, trace_id=notification.trace_id,
    )


def get_session(request: pb.GetSessionRequest, tenant: str, trace_id: str = "") -> ops.GetSession:
    return ops.GetSession(tenant, request.subscriber_id, request.session_id)


# ---------------------------------------------------------------- replies


def reserve_reply(reply: ops.ReserveReply) -> pb.ReserveResponse:
    return pb.ReserveResponse(
        result=reply.result, reservation_id=reply.reservation_id, granted_units=reply.granted_units,
        final_unit_indication=reply.final_unit_indication, validity_time_s=reply.validity_time_s,
        replayed=reply.replayed, trace_id=reply.trace_id, held_micros=reply.held_micros,
        tariff_time_change_ms=reply.tariff_time_change_ms, tariff_version=reply.tariff_version,
        bucket_units=reply.bucket_units, bucket_micros=reply.bucket_micros,
    )


def debit_reply(reply: ops.DebitReply) -> pb.DebitResponse:
    return pb.DebitResponse(
        result=reply.result, charge_id=reply.charge_id, charged_micros=reply.charged_micros,
        replayed=reply.replayed, trace_id=reply.trace_id, overage=reply.overage,
        overage_micros=reply.overage_micros, late=reply.late, released_micros=reply.released_micros,
        rounding_residue_picos=reply.rounding_residue_picos, tariff_version=reply.tariff_version,
        bucket_micros=reply.bucket_micros, bucket_units=reply.bucket_units,
    )


def release_reply(reply: ops.ReleaseReply) -> pb.ReleaseResponse:
    return pb.ReleaseResponse(
        result=reply.result, released_micros=reply.released_micros, replayed=reply.replayed, trace_id=reply.trace_id
    )


def refund_reply(reply: ops.RefundReply) -> pb.RefundResponse:
    return pb.RefundResponse(
        result=reply.result, refunded_micros=reply.refunded_micros, replayed=reply.replayed,
        trace_id=reply.trace_id, refundable_micros=reply.refundable_micros,
    )


def top_up_reply(reply: ops.TopUpReply) -> pb.TopUpResponse:
    return pb.TopUpResponse(
        result=reply.result, balance_micros=reply.balance_micros, replayed=reply.replayed, trace_id=reply.trace_id,
        bucket_id=reply.bucket_id,
    )


def create_account_reply(reply: ops.CreateAccountReply) -> pb.CreateAccountResponse:
    return pb.CreateAccountResponse(result=reply.result, replayed=reply.replayed, trace_id=reply.trace_id)


def set_account_state_reply(reply: ops.SetAccountStateReply) -> pb.SetAccountStateResponse:
    return pb.SetAccountStateResponse(result=reply.result, replayed=reply.replayed, trace_id=reply.trace_id)


def balance_reply(reply: ops.BalanceReply) -> pb.GetBalanceResponse:
    return pb.GetBalanceResponse(
        result=reply.result, balance_micros=reply.balance_micros, reserved_micros=reply.reserved_micros,
        available_micros=reply.available_micros, currency=reply.currency,
        credit_limit_micros=reply.credit_limit_micros, buckets=[bucket_message(b) for b in reply.buckets],
    )


def account_reply(reply: ops.AccountReply) -> pb.GetAccountResponse:
    response = pb.GetAccountResponse(result=reply.result)
    if reply.subscriber_id:
        response.account.CopyFrom(pb.Account(
            subscriber_id=reply.subscriber_id, currency=reply.currency, state=reply.state,
            credit_limit_micros=reply.credit_limit_micros, tariff_plan_id=reply.tariff_plan_id,
            balance_micros=reply.balance_micros, reserved_micros=reply.reserved_micros,
            available_micros=reply.available_micros,
        ))
        response.reservations.extend(_reservation(view) for view in reply.reservations)
        response.buckets.extend(bucket_message(b) for b in reply.buckets)
    return response


def _reservation(view: ops.ReservationView) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=view.reservation_id, session_id=view.session_id, rating_group=view.rating_group,
        granted_units=view.granted_units, used_units=view.used_units, held_micros=view.held_micros,
        state=view.state, granted_at_ms=view.granted_at_ms, expires_at_ms=view.expires_at_ms,
        tariff_version=view.tariff_version, destination=view.destination, roaming_zone=view.roaming_zone,
        service_identifier=view.service_identifier,
    )


def _unit_information(info: ops.UnitInformation) -> pb.MultipleUnitInformation:
    message = pb.MultipleUnitInformation(
        rating_group=info.rating_group, result=info.result, granted_units=info.granted_units,
        validity_time_s=info.validity_time_s, quota_holding_time_s=info.quota_holding_time_s,
        threshold_units=info.threshold_units, reservation_id=info.reservation_id, held_micros=info.held_micros,
        used_units=info.used_units, charge_id=info.charge_id, charged_micros=info.charged_micros, late=info.late,
        overage_micros=info.overage_micros, rounding_residue_picos=info.rounding_residue_picos,
        released_micros=info.released_micros, tariff_time_change_ms=info.tariff_time_change_ms,
        bucket_micros=info.bucket_micros, bucket_units=info.bucket_units,
        granted_bucket_units=info.granted_bucket_units, held_bucket_micros=info.held_bucket_micros,
    )
    if info.final_unit_action:
        message.final_unit_indication.CopyFrom(pb.FinalUnitIndication(
            final_unit_action=info.final_unit_action, redirect_server_address=info.redirect_server_address))
    return message


def session_reply(reply: ops.SessionReply) -> pb.SessionResponse:
    return pb.SessionResponse(
        result=reply.result, session_id=reply.session_id, invocation_sequence_number=reply.invocation_sequence_number,
        multiple_unit_information=[_unit_information(info) for info in reply.multiple_unit_information],
        session_state=reply.session_state, supervision_time_s=reply.supervision_time_s, replayed=reply.replayed,
        trace_id=reply.trace_id,
    )


def session_info_reply(reply: ops.SessionInfoReply) -> pb.GetSessionResponse:
    return pb.GetSessionResponse(
        result=reply.result, session_id=reply.session_id, subscriber_id=reply.subscriber_id, state=reply.state,
        last_sequence_number=reply.last_sequence_number, notify_client_id=reply.notify_client_id,
        created_at_ms=reply.created_at_ms, updated_at_ms=reply.updated_at_ms,
        supervision_deadline_ms=reply.supervision_deadline_ms, closed_at_ms=reply.closed_at_ms,
        reservations=[_reservation(view) for view in reply.reservations],
    )


def rate_message(rate: Rate) -> pb.RatingGroupRate:
    return pb.RatingGroupRate(
        rating_group=rate.rating_group, unit=rate.unit, price_micros=rate.price_micros,
        rate_units=rate.rate_units, increment_units=rate.increment_units,
        final_unit_action=rate.final_unit_action, redirect_server_address=rate.redirect_server_address,
        destination_prefix=rate.destination_prefix, time_band=rate.time_band, roaming_zone=rate.roaming_zone,
        connect_fee_micros=rate.connect_fee_micros,
        tiers=[pb.RateTier(from_units=t.from_units, price_micros=t.price_micros, rate_units=t.rate_units,
                           increment_units=t.increment_units) for t in rate.tiers],
        minimum_charge_micros=rate.minimum_charge_micros, maximum_cost_micros=rate.maximum_cost_micros,
        cap_action=rate.cap_action, volume_period=rate.volume_period, service_identifier=rate.service_identifier,
    )


def tariff_plan(plan: TariffPlan) -> pb.TariffPlan:
    return pb.TariffPlan(
        tariff_plan_id=plan.tariff_plan_id, version=plan.version,
        effective_from_ms=plan.effective_from_ms, time_zone=plan.time_zone,
        time_bands=[pb.TimeBand(name=b.name, days=list(b.days), from_minute=b.from_minute, to_minute=b.to_minute)
                    for b in plan.time_bands],
        holidays=list(plan.holidays), rounding=plan.rounding, description=plan.description,
        rates=[rate_message(rate) for rate in plan.rates],
        policy_counters=[
            pb.PolicyCounter(
                counter_id=c.counter_id, rating_groups=list(c.rating_groups), spend=c.spend, period=c.period,
                base_status=c.base_status,
                thresholds=[pb.PolicyCounterThreshold(at_least=t.at_least, status=t.status) for t in c.thresholds],
            )
            for c in plan.policy_counters
        ],
        controls=[
            pb.PlanControl(control_id=c.control_id, kind=c.kind, limit=c.limit, window_s=c.window_s,
                           action=c.action, rating_groups=list(c.rating_groups))
            for c in plan.controls
        ],
    )


def tariff_reply(reply: ops.TariffReply) -> pb.GetTariffResponse:
    response = pb.GetTariffResponse(result=reply.result, versions=[
        pb.TariffVersion(version=version, effective_from_ms=effective_from_ms)
        for version, effective_from_ms in reply.versions])
    if reply.plan is not None:
        response.plan.CopyFrom(tariff_plan(reply.plan))
    return response


def put_tariff_reply(reply: ops.PutTariffReply) -> pb.PutTariffResponse:
    return pb.PutTariffResponse(result=reply.result, version=reply.version)


def pool_reply(reply: ops.PoolReply) -> pb.PoolResponse:
    return pb.PoolResponse(result=reply.result, amount_micros=reply.amount_micros, bucket_id=reply.bucket_id,
                           replayed=reply.replayed, trace_id=reply.trace_id)


def quote_reply(reply: ops.QuoteReply, trace_id: str = "") -> pb.QuoteResponse:
    return pb.QuoteResponse(
        result=reply.result, cost_micros=reply.cost_micros, rounding_residue_picos=reply.rounding_residue_picos,
        affordable_units=reply.affordable_units, available_micros=reply.available_micros,
        tariff_plan_id=reply.tariff_plan_id, tariff_version=reply.tariff_version,
        destination_prefix=reply.destination_prefix, time_band=reply.time_band, roaming_zone=reply.roaming_zone,
        currency=reply.currency, trace_id=trace_id, service_identifier=reply.service_identifier,
    )


# The field of GetTransactionResponse / ChargeResponse each mutating reply goes in.
REPLY_FIELDS = {
    ops.ReserveReply: ("reserve", reserve_reply),
    ops.DebitReply: ("debit", debit_reply),
    ops.ReleaseReply: ("release", release_reply),
    ops.RefundReply: ("refund", refund_reply),
    ops.TopUpReply: ("top_up", top_up_reply),
    ops.CreateAccountReply: ("create_account", create_account_reply),
    ops.SetAccountStateReply: ("set_account_state", set_account_state_reply),
    ops.SessionReply: ("session", session_reply),
    ops.SubscribeReply: ("subscribe", subscribe_reply),
    ops.UnsubscribeReply: ("unsubscribe", unsubscribe_reply),
    ops.PoolReply: ("pool", pool_reply),
}


def transaction_reply(reply: ops.TransactionReply) -> pb.GetTransactionResponse:
    response = pb.GetTransactionResponse(found=reply.found)
    if reply.reply is not None:
        field, convert = REPLY_FIELDS[type(reply.reply)]
        getattr(response, field).CopyFrom(convert(reply.reply))
    return response


# Charge stream: which oneof field holds which request, and how to turn it into an operation.
STREAM_REQUESTS = {
    "reserve": reserve,
    "debit": debit,
    "release": release,
    "refund": refund,
    "top_up": top_up,
    "create_session": create_session,
    "update_session": update_session,
    "release_session": release_session,
}


# How a subscriber's slot is computed (grid.routing.slot_of), for clients in any language.
SLOT_FUNCTION = ("blake2b(digest_size=8) of UTF-8(tenant) 0x00 UTF-8(subscriber_id), as a big-endian unsigned "
                 "64-bit integer, modulo slots")


def shard_map_reply(shard_map, endpoints: dict, tenant: str) -> pb.GetShardMapResponse:
    """The map as GetShardMap answers it: each shard's slots as inclusive ranges."""
    ranges: dict[int, list] = {}
    first = 0
    owners = shard_map.shard_of_slot
    for slot in range(1, len(owners) + 1):
        if slot == len(owners) or owners[slot] != owners[first]:
            ranges.setdefault(owners[first], []).append(pb.SlotRange(first=first, last=slot - 1))
            first = slot
    shards = []
    for shard_id in range(max(shard_map.shards, max(endpoints, default=-1) + 1)):
        endpoint = endpoints.get(shard_id, {})
        shards.append(pb.ShardEndpoint(shard_id=shard_id, slot_ranges=ranges.get(shard_id, []),
                                       address=endpoint.get("public", ""),
                                       shard_epoch=endpoint.get("shard_epoch", 0)))
    return pb.GetShardMapResponse(epoch=shard_map.epoch, slots=shard_map.slots, slot_function=SLOT_FUNCTION,
                                  shards=shards, tenant=tenant)
