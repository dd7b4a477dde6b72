"""Pooled balances: a family plan's or an IoT fleet's money, spent on the members' shards.

Part of the shard state machine (ShardState mixes this in). A pool is an
account whose money members draw on. The pool's shard is not asked at each
charge: the pool delegates a sub-quota to a member (PoolTake at the pool's
shard, then PoolGive at the member's: a monetary bucket tagged with the pool,
used like any bucket, on the member's own shard), and what a member has not
used is reclaimed (PoolReclaim at the member's shard, PoolGive back to the
pool's balance). The front door drives the steps (grid.frontdoor.pools); each
is an idempotent operation with a request id derived from the caller's, so a
retry finishes a half-done transfer and never repeats a step. Journal records
POOL_OUT and POOL_IN carry what left or reached a balance, so each shard's
audit adds up.
"""

from grid.domain import operations as ops
from grid.domain.outcomes import AccountState, BucketUnit, JournalKind, Result


class PoolRules:
    """The pooled-balance half of ShardState."""

    def _pool_take(self, op: ops.PoolTake, now_ms: int) -> ops.PoolReply:
        pool = self.accounts.get((op.tenant, op.subscriber_id))
        if pool is None:
            result = Result.USER_UNKNOWN
        elif pool.state != AccountState.ACTIVE:
            result = Result.END_USER_SERVICE_DENIED
        elif op.amount_micros > pool.available_micros():
            result = Result.CREDIT_LIMIT_REACHED
        else:
            before = pool.balance_micros
            pool.balance_micros -= op.amount_micros
            self._mark("account", pool.key, pool)
            self._journal(JournalKind.POOL_OUT, pool, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                          reference_id=op.counterparty, amount_micros=op.amount_micros, balance_before_micros=before)
            return ops.PoolReply(Result.SUCCESS, amount_micros=op.amount_micros, trace_id=op.trace_id)
        self._denied(JournalKind.POOL_OUT, op, result, now_ms, pool, reference_id=op.counterparty,
                     amount_micros=op.amount_micros)
        return ops.PoolReply(result, trace_id=op.trace_id)

    def _pool_give(self, op: ops.PoolGive, now_ms: int) -> ops.PoolReply:
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            result = Result.USER_UNKNOWN
        elif account.state == AccountState.CLOSED:
            result = Result.END_USER_SERVICE_DENIED
        elif not op.as_bucket and not self._balance_fits(account.balance_micros + op.amount_micros):
            result = Result.BALANCE_LIMIT_EXCEEDED
        elif op.as_bucket:
            bucket = self._add_bucket(account, ops.BucketGrant(BucketUnit.MONEY, op.amount_micros,
                                                               valid_until_ms=op.valid_until_ms), op, now_ms,
                                      pool_id=op.counterparty)
            if bucket is None:
                result = Result.BALANCE_LIMIT_EXCEEDED  # too many buckets
            else:
                self._journal(JournalKind.POOL_IN, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                              reference_id=op.counterparty, bucket_draws=((bucket.bucket_id, op.amount_micros),))
                return ops.PoolReply(Result.SUCCESS, amount_micros=op.amount_micros, bucket_id=bucket.bucket_id,
                                     trace_id=op.trace_id)
        else:
            before = account.balance_micros
            account.balance_micros += op.amount_micros
            self._mark("account", account.key, account)
            self._journal(JournalKind.POOL_IN, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                          reference_id=op.counterparty, amount_micros=op.amount_micros, balance_before_micros=before)
            return ops.PoolReply(Result.SUCCESS, amount_micros=op.amount_micros, trace_id=op.trace_id)
        self._denied(JournalKind.POOL_IN, op, result, now_ms, account, reference_id=op.counterparty)
        return ops.PoolReply(result, trace_id=op.trace_id)

    def _pool_reclaim(self, op: ops.PoolReclaim, now_ms: int) -> ops.PoolReply:
        """What the member's sub-quotas from the pool hold and no grant holds goes back."""
        account = self.accounts.get((op.tenant, op.subscriber_id))
        if account is None:
            self._denied(JournalKind.POOL_OUT, op, Result.USER_UNKNOWN, now_ms, None, reference_id=op.counterparty)
            return ops.PoolReply(Result.USER_UNKNOWN, trace_id=op.trace_id)
        draws = [(bucket, bucket.remaining - bucket.reserved) for bucket in account.buckets
                 if bucket.pool_id == op.counterparty and bucket.remaining > bucket.reserved]
        self._take(account, draws)
        amount = sum(taken for _, taken in draws)
        self._journal(JournalKind.POOL_OUT, account, op.request_id, Result.SUCCESS, now_ms, op.trace_id,
                      reference_id=op.counterparty, bucket_draws=tuple((b.bucket_id, taken) for b, taken in draws))
        return ops.PoolReply(Result.SUCCESS, amount_micros=amount, trace_id=op.trace_id)
