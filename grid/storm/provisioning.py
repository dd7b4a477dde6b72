"""The tariff plan and funded accounts a scenario needs, fast and idempotent.

Every request id is fixed by the scenario's name and the subscriber's index
(and the amount, for top-ups), so a rerun is a replay: accounts are not
created twice and no one is topped up twice; changing the funds adds one
top-up of the new amount. Calls go through the asyncio client (same request
id on every retry, GetTransaction when retries run out) with a window of them
in flight: the grid's per-shard batcher turns the window into batches.

Also here: reading the balances of many subscribers at once (the starting
point and the end of a storm's conservation audit).
"""

import asyncio
import collections
import time

from charging.v1 import charging_pb2 as pb

# Provisioning calls in flight at once; subscribers one run may provision.
PROVISION_WINDOW = 256
SUBSCRIBERS_MAX = 1_000_000
CURRENCY = "EUR"


class ProvisioningFailed(RuntimeError):
    pass


async def run_pool(items, worker, window: int) -> None:
    """worker(item) for every item with at most `window` running: a fixed pool
    pulling from one iterator, so a million items never make a million tasks."""
    iterator = iter(items)

    async def run() -> None:
        for item in iterator:
            await worker(item)

    await asyncio.gather(*(run() for _ in range(window)))


async def provision(scenario, client, progress=None, window: int = PROVISION_WINDOW) -> dict:
    """PutTariff (an unchanged plan keeps its version), then CreateAccount and
    TopUp for every subscriber of the scenario, idempotently. Returns counts."""
    started = time.monotonic()
    plan = await client.put_tariff(scenario.plan_id, scenario.rates())
    if plan.result != pb.SUCCESS:
        raise ProvisioningFailed(f"PutTariff {scenario.plan_id}: {pb.Result.Name(plan.result)}")
    count = scenario.subscriber_count()
    if not 1 <= count <= SUBSCRIBERS_MAX:
        raise ProvisioningFailed(f"{count} subscribers: between 1 and {SUBSCRIBERS_MAX}")
    funds_micros = scenario.funds_micros()
    counts: collections.Counter = collections.Counter()

    async def one(index: int) -> None:
        subscriber_id = scenario.subscriber_id(index)
        created = await client.create_account(subscriber_id, CURRENCY, scenario.plan_id,
                                              request_id=f"{subscriber_id}-create")
        if created.result == pb.SUCCESS:
            counts["accounts_replayed" if created.replayed else "accounts_created"] += 1
        elif created.result == pb.ACCOUNT_ALREADY_EXISTS:
            counts["accounts_already_there"] += 1  # created by other means: kept as it is
        else:
            raise ProvisioningFailed(f"CreateAccount {subscriber_id}: {pb.Result.Name(created.result)}")
        # The amount is in the id: the same funds are never added twice, new funds once.
        topped = await client.top_up(subscriber_id, funds_micros, request_id=f"{subscriber_id}-fund-{funds_micros}")
        if topped.result != pb.SUCCESS:
            raise ProvisioningFailed(f"TopUp {subscriber_id}: {pb.Result.Name(topped.result)}")
        counts["top_ups_replayed" if topped.replayed else "top_ups_applied"] += 1
        if progress is not None and (counts["top_ups_replayed"] + counts["top_ups_applied"]) % 10_000 == 0:
            progress(f"provisioned {counts['top_ups_replayed'] + counts['top_ups_applied']:,} of {count:,}")

    await run_pool(range(count), one, window)
    return {"plan": scenario.plan_id, "plan_version": plan.version, "subscribers": count,
            "funds_micros_each": funds_micros, **{key: counts[key] for key in (
                "accounts_created", "accounts_replayed", "accounts_already_there", "top_ups_applied",
                "top_ups_replayed")},
            "seconds": round(time.monotonic() - started, 2)}


async def balances(client, subscriber_ids, window: int = PROVISION_WINDOW) -> dict[str, tuple[int, int]]:
    """subscriber_id -> (balance_micros, reserved_micros), read concurrently."""
    found: dict[str, tuple[int, int]] = {}

    async def one(subscriber_id: str) -> None:
        reply = await client.balance(subscriber_id)
        if reply.result not in (pb.SUCCESS, pb.RESULT_UNSPECIFIED):
            raise ProvisioningFailed(f"GetBalance {subscriber_id}: {pb.Result.Name(reply.result)}")
        found[subscriber_id] = (reply.balance_micros, reply.reserved_micros)

    await run_pool(subscriber_ids, one, window)
    return found
