"""Each call's request, built once for both clients (`_Requests`): a `_Call` naming
the service and method, and the subscriber and request id a retry reuses and
GetTransaction settles it by."""

import dataclasses
import uuid

from charging.v1 import charging_pb2 as pb


def session_request_id(session_id: str, invocation_sequence_number: int) -> str:
    """The request id the grid files a session request under (for GetTransaction)."""
    return f"session/{session_id}/{invocation_sequence_number}"


def _unit_usage(units) -> list:
    """units: MultipleUnitUsage messages, dicts of their fields, or
    (rating_group, requested_units, used_units) tuples."""
    out = []
    for unit in units:
        if isinstance(unit, pb.MultipleUnitUsage):
            out.append(unit)
        elif isinstance(unit, dict):
            out.append(pb.MultipleUnitUsage(**unit))
        else:
            rating_group, requested_units, used_units = unit
            out.append(pb.MultipleUnitUsage(rating_group=rating_group, requested_units=requested_units,
                                            used_units=used_units))
    return out


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True)
class _Call:
    service: str  # "charging", "account" or "catalog"
    method: str
    request: object
    subscriber_id: str = ""
    request_id: str = ""


class _Requests:
    """Builds each call's request; shared by both clients."""

    @staticmethod
    def create_account(subscriber_id, currency, tariff_plan_id, credit_limit_micros=0, request_id=None,
                       buckets=()):
        request_id = request_id or new_request_id()
        request = pb.CreateAccountRequest(
            request_id=request_id, subscriber_id=subscriber_id, currency=currency,
            credit_limit_micros=credit_limit_micros, tariff_plan_id=tariff_plan_id,
            buckets=[b if isinstance(b, pb.BucketGrant) else pb.BucketGrant(**b) for b in buckets],
        )
        return _Call("account", "CreateAccount", request, subscriber_id, request_id)

    @staticmethod
    def set_account_state(subscriber_id, state, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.SetAccountStateRequest(request_id=request_id, subscriber_id=subscriber_id, state=state)
        return _Call("account", "SetAccountState", request, subscriber_id, request_id)

    @staticmethod
    def top_up(subscriber_id, amount_micros, request_id=None, bucket=None):
        """bucket: a BucketGrant message or a dict of its fields (amount_micros then 0)."""
        request_id = request_id or new_request_id()
        request = pb.TopUpRequest(request_id=request_id, subscriber_id=subscriber_id, amount_micros=amount_micros)
        if bucket is not None:
            request.bucket.CopyFrom(bucket if isinstance(bucket, pb.BucketGrant) else pb.BucketGrant(**bucket))
        return _Call("charging", "TopUp", request, subscriber_id, request_id)

    @staticmethod
    def reserve(subscriber_id, session_id, rating_group, requested_units, request_id=None, destination="",
                roaming_zone="", service_identifier=0):
        request_id = request_id or new_request_id()
        request = pb.ReserveRequest(
            request_id=request_id, subscriber_id=subscriber_id, session_id=session_id,
            rating_group=rating_group, requested_units=requested_units, destination=destination,
            roaming_zone=roaming_zone, service_identifier=service_identifier,
        )
        return _Call("charging", "Reserve", request, subscriber_id, request_id)

    @staticmethod
    def debit(subscriber_id, used_units, reservation_id="", rating_group=0, final=False, request_id=None,
              destination="", roaming_zone="", usage_started_at_ms=0, service_identifier=0):
        request_id = request_id or new_request_id()
        request = pb.DebitRequest(
            request_id=request_id, subscriber_id=subscriber_id, reservation_id=reservation_id,
            rating_group=rating_group, used_units=used_units, final=final, destination=destination,
            roaming_zone=roaming_zone, usage_started_at_ms=usage_started_at_ms, service_identifier=service_identifier,
        )
        return _Call("charging", "Debit", request, subscriber_id, request_id)

    @staticmethod
    def release(subscriber_id, reservation_id, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.ReleaseRequest(request_id=request_id, subscriber_id=subscriber_id, reservation_id=reservation_id)
        return _Call("charging", "Release", request, subscriber_id, request_id)

    @staticmethod
    def refund(subscriber_id, charge_id, amount_micros, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.RefundRequest(
            request_id=request_id, subscriber_id=subscriber_id, charge_id=charge_id, amount_micros=amount_micros
        )
        return _Call("charging", "Refund", request, subscriber_id, request_id)

    @staticmethod
    def create_session(subscriber_id, session_id, units, invocation_sequence_number=0, notify_client_id=""):
        """units: (rating_group, requested_units, used_units) tuples, dicts or MultipleUnitUsage."""
        request = pb.CreateSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units), notify_client_id=notify_client_id,
        )
        return _Call("charging", "CreateSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def update_session(subscriber_id, session_id, invocation_sequence_number, units, notify_client_id=""):
        request = pb.UpdateSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units), notify_client_id=notify_client_id,
        )
        return _Call("charging", "UpdateSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def release_session(subscriber_id, session_id, invocation_sequence_number, units=()):
        request = pb.ReleaseSessionRequest(
            session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=invocation_sequence_number,
            multiple_unit_usage=_unit_usage(units),
        )
        return _Call("charging", "ReleaseSession", request, subscriber_id,
                     session_request_id(session_id, invocation_sequence_number))

    @staticmethod
    def get_session(subscriber_id, session_id):
        return _Call("charging", "GetSession", pb.GetSessionRequest(subscriber_id=subscriber_id, session_id=session_id))

    @staticmethod
    def put_tariff(tariff_plan_id, rates, policy_counters=(), controls=()):
        """rates: RatingGroupRate messages or dicts of their fields; policy_counters:
        PolicyCounter messages or dicts (thresholds as dicts of at_least and status);
        controls: PlanControl messages or dicts."""
        messages = [rate if isinstance(rate, pb.RatingGroupRate) else pb.RatingGroupRate(**rate) for rate in rates]
        counters = [c if isinstance(c, pb.PolicyCounter) else pb.PolicyCounter(
            **{**c, "thresholds": [pb.PolicyCounterThreshold(**t) if isinstance(t, dict) else t
                                   for t in c.get("thresholds", ())]}) for c in policy_counters]
        plan_controls = [c if isinstance(c, pb.PlanControl) else pb.PlanControl(**c) for c in controls]
        return _Call("catalog", "PutTariff", pb.PutTariffRequest(tariff_plan_id=tariff_plan_id, rates=messages,
                                                                 policy_counters=counters, controls=plan_controls))

    @staticmethod
    def subscribe(subscriber_id, client_id, counter_ids=(), request_id=None):
        """Subscribe a policy function to a subscriber's counters (all when none named)."""
        request_id = request_id or new_request_id()
        request = pb.SubscribeRequest(request_id=request_id, subscriber_id=subscriber_id, client_id=client_id,
                                      counter_ids=list(counter_ids))
        return _Call("spending", "Subscribe", request, subscriber_id, request_id)

    @staticmethod
    def unsubscribe(subscriber_id, client_id, request_id=None):
        request_id = request_id or new_request_id()
        request = pb.UnsubscribeRequest(request_id=request_id, subscriber_id=subscriber_id, client_id=client_id)
        return _Call("spending", "Unsubscribe", request, subscriber_id, request_id)

    @staticmethod
    def get_billing_cycle(subscriber_id, at_ms=0):
        """Charges, refunds and usage of the billing cycle (calendar month) holding at_ms (0: now)."""
        return _Call("account", "GetBillingCycle", pb.GetBillingCycleRequest(subscriber_id=subscriber_id, at_ms=at_ms))

    @staticmethod
    def get_counters(subscriber_id):
        return _Call("spending", "GetCounters", pb.GetCountersRequest(subscriber_id=subscriber_id))

    @staticmethod
    def get_tariff(tariff_plan_id, version=0):
        return _Call("catalog", "GetTariff", pb.GetTariffRequest(tariff_plan_id=tariff_plan_id, version=version))

    @staticmethod
    def put_tariff_request(request):
        """A whole PutTariffRequest (what `grid catalog apply` sends)."""
        return _Call("catalog", "PutTariff", request)

    @staticmethod
    def delegate_from_pool(pool_id, member_id, amount_micros, valid_until_ms=0, request_id=None):
        """A sub-quota of a pooled balance for a member (a monetary bucket on the member's shard)."""
        request = pb.DelegateFromPoolRequest(request_id=request_id or new_request_id(), pool_id=pool_id,
                                             member_id=member_id, amount_micros=amount_micros,
                                             valid_until_ms=valid_until_ms)
        # Retried with the same request id (each step is idempotent); no GetTransaction to settle by.
        return _Call("account", "DelegateFromPool", request)

    @staticmethod
    def reclaim_to_pool(pool_id, member_id, request_id=None):
        """What a member's sub-quotas from the pool still hold goes back to the pool."""
        request = pb.ReclaimToPoolRequest(request_id=request_id or new_request_id(), pool_id=pool_id,
                                          member_id=member_id)
        return _Call("account", "ReclaimToPool", request)

    @staticmethod
    def quote(subscriber_id, rating_group, used_units=0, destination="", roaming_zone="", at_ms=0,
              service_identifier=0):
        """Advice of charge: the cost of the usage and the units the balance buys."""
        return _Call("charging", "Quote", pb.QuoteRequest(
            subscriber_id=subscriber_id, rating_group=rating_group, used_units=used_units, destination=destination,
            roaming_zone=roaming_zone, at_ms=at_ms, service_identifier=service_identifier))

    @staticmethod
    def balance(subscriber_id):
        return _Call("charging", "GetBalance", pb.GetBalanceRequest(subscriber_id=subscriber_id))

    @staticmethod
    def get_account(subscriber_id):
        return _Call("account", "GetAccount", pb.GetAccountRequest(subscriber_id=subscriber_id))

    @staticmethod
    def create_snapshot(label=""):
        return _Call("admin", "CreateSnapshot", pb.CreateSnapshotRequest(label=label))

    @staticmethod
    def list_snapshots():
        return _Call("admin", "ListSnapshots", pb.ListSnapshotsRequest())

    @staticmethod
    def restore_snapshot(snapshot_id, target_data_dir):
        return _Call("admin", "RestoreSnapshot",
                     pb.RestoreSnapshotRequest(snapshot_id=snapshot_id, target_data_dir=target_data_dir))

    @staticmethod
    def dispute(subscriber_id, request_id="", charge_id="", from_ms=0, to_ms=0, limit=0):
        """The journal chain behind a request id, a charge id, or a time window."""
        return _Call("admin", "Dispute", pb.DisputeRequest(
            subscriber_id=subscriber_id, request_id=request_id, charge_id=charge_id, from_ms=from_ms, to_ms=to_ms,
            limit=limit))

    @staticmethod
    def audit():
        """Every shard's journal reconciled with its state, and the leakage report."""
        return _Call("admin", "Audit", pb.AuditRequest())

    @staticmethod
    def export_cdrs(cursor="", limit=0):
        """A page of rated-event records; pass the reply's next_cursor to go on."""
        return _Call("admin", "ExportCdrs", pb.ExportCdrsRequest(cursor=cursor, limit=limit))

    @staticmethod
    def get_transaction(subscriber_id, request_id):
        return _Call("charging", "GetTransaction",
                     pb.GetTransactionRequest(subscriber_id=subscriber_id, request_id=request_id))
