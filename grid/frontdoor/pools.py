"""Pooled balances at the front door: the two steps of a delegation or a reclaim.

Each step is an idempotent shard operation (grid.domain.pool_rules) whose
request id is derived from the caller's, so calling again with the same
request id after a failure finishes what the first call left, and never takes
or gives twice. A member that cannot receive a sub-quota (unknown, closed, too
many buckets) gets nothing and the pool gets its money back (a third step,
idempotent too).
"""

from grid.domain import operations as ops
from grid.domain.outcomes import ErrorCode, Result
from grid.domain.validation import INSTANT_MAX_MS, InvalidArgument, check_identifier

# The longest suffix a step adds to the caller's request id ("/reclaim").
_SUFFIX_MAX = 8


def _invalid(router, request) -> ops.Rejection | None:
    """The wire request's own fields, named as the caller wrote them."""
    limits = router.limits
    try:
        check_identifier("request_id", request.request_id, limits, length_max=limits.id_length_max - _SUFFIX_MAX)
        check_identifier("pool_id", request.pool_id, limits)
        check_identifier("member_id", request.member_id, limits)
        if request.member_id == request.pool_id:
            raise InvalidArgument("member_id", "a pool and its member are two accounts")
        if hasattr(request, "amount_micros") and not 1 <= request.amount_micros <= limits.amount_max_micros:
            raise InvalidArgument("amount_micros", f"must be between 1 and {limits.amount_max_micros}")
        if hasattr(request, "valid_until_ms") and not 0 <= request.valid_until_ms <= INSTANT_MAX_MS:
            raise InvalidArgument("valid_until_ms", f"must be between 0 and {INSTANT_MAX_MS}")
    except InvalidArgument as error:
        return ops.Rejection(ErrorCode.INVALID_ARGUMENT, error.field, error.message)
    return None


async def delegate(router, tenant: str, request, trace_id: str, deadline_monotonic, call):
    if (rejection := _invalid(router, request)) is not None:
        return rejection
    rid = request.request_id
    taken = await router.submit(ops.PoolTake(tenant, request.pool_id, f"{rid}/take", request.member_id,
                                             request.amount_micros, trace_id), deadline_monotonic, call)
    if isinstance(taken, ops.Rejection) or taken.result != Result.SUCCESS:
        return taken
    given = await router.submit(ops.PoolGive(tenant, request.member_id, f"{rid}/give", request.pool_id,
                                             request.amount_micros, True, request.valid_until_ms, trace_id),
                                deadline_monotonic, call)
    if isinstance(given, ops.Rejection):
        return given  # not applied, or unknown: the caller retries with the same request id
    if given.result != Result.SUCCESS:
        undone = await router.submit(ops.PoolGive(tenant, request.pool_id, f"{rid}/undo", request.member_id,
                                                  request.amount_micros, False, 0, trace_id), deadline_monotonic, call)
        if isinstance(undone, ops.Rejection):
            return undone
    return ops.PoolReply(given.result, amount_micros=given.amount_micros, bucket_id=given.bucket_id,
                         replayed=taken.replayed and given.replayed, trace_id=trace_id)


async def reclaim(router, tenant: str, request, trace_id: str, deadline_monotonic, call):
    if (rejection := _invalid(router, request)) is not None:
        return rejection
    rid = request.request_id
    reclaimed = await router.submit(ops.PoolReclaim(tenant, request.member_id, f"{rid}/reclaim", request.pool_id,
                                                    trace_id), deadline_monotonic, call)
    if isinstance(reclaimed, ops.Rejection) or reclaimed.result != Result.SUCCESS or not reclaimed.amount_micros:
        return reclaimed
    returned = await router.submit(ops.PoolGive(tenant, request.pool_id, f"{rid}/return", request.member_id,
                                                reclaimed.amount_micros, False, 0, trace_id), deadline_monotonic, call)
    if isinstance(returned, ops.Rejection):
        return returned
    return ops.PoolReply(returned.result, amount_micros=reclaimed.amount_micros,
                         replayed=reclaimed.replayed and returned.replayed, trace_id=trace_id)
