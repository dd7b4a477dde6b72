"""GetTransaction's answer never changes (DESIGN.md invariant 7), even when the
shard dies with the operation in flight and the front door resends it.

The scenario: the shard owning the subscriber is stopped (SIGSTOP), so a debit
and then several GetTransaction calls for its request id wait in flight; the
shard is killed (kill -9); Ray restarts it and the front door resends every
batch it lost. Each GetTransaction was asked after the debit was sent, so if it
answers "not found" the debit must never take effect afterwards: a caller told
"not found" gives up or charges again under a new request id.

With one batch in flight per shard (the default) the resends keep their order
trivially; with more (`grid serve --batches-in-flight-max N`) the batcher holds
new batches back while it resends failed ones in their original order.
"""

import asyncio
import random

import pytest
from grid_client import AsyncChargingClient, ChargingClient, RetryPolicy, pb

from fault_support import PRICE, RATING_GROUP, TARIFF, FaultServer, shard_of, sigkill

pytestmark = pytest.mark.slow

PATIENT = RetryPolicy(attempts=1, timeout_s=60)
QUESTIONS = 6


def _overtaken(server: FaultServer, seed: int, trials: int) -> list[str]:
    """Run the scenario up to `trials` times; the violations seen (stops at the first trial with one)."""
    rng = random.Random(f"{seed}/resend-order")
    subscriber = next(s for s in (f"o{i}" for i in range(1000)) if shard_of(s) == 0)
    with ChargingClient(server.target) as client:
        client.put_tariff(TARIFF, [PRICE])
        assert client.create_account(subscriber, "EUR", TARIFF).result == pb.SUCCESS, seed
        assert client.top_up(subscriber, 10_000_000).result == pb.SUCCESS, seed

    async def trial(number: int) -> list[str]:
        async with AsyncChargingClient(server.target, retry=PATIENT) as client:
            victim = server.wait_for_shard(0)
            request_id = f"order-{number}-s{seed}"
            victim.suspend()  # SIGSTOP: what is sent now stays in flight
            debit = asyncio.create_task(client.debit(subscriber, 1, rating_group=RATING_GROUP,
                                                     request_id=request_id))
            await asyncio.sleep(0.2)
            questions = []
            for _ in range(QUESTIONS):  # each in its own batch when the front door allows several in flight
                questions.append(asyncio.create_task(client.get_transaction(subscriber, request_id)))
                await asyncio.sleep(rng.uniform(0.05, 0.15))
            sigkill(victim)  # SIGKILL works on a stopped process
            reply = await debit
            answers = [await question for question in questions]
            final = await client.get_transaction(subscriber, request_id)
            assert reply.result == pb.SUCCESS and final.found, (reply, final, seed)
            return [f"trial {number}: GetTransaction #{index} for {request_id} (asked after the debit was sent) "
                    f"answered not found, then the debit took effect (charge {reply.charge_id}, replayed="
                    f"{reply.replayed})"
                    for index, answer in enumerate(answers) if not answer.found]

    for number in range(trials):
        violations = asyncio.run(trial(number))
        if violations:
            return violations
    return []


def test_with_one_batch_in_flight_get_transaction_never_overtakes_a_resent_operation(tmp_path, seed, report):
    server = FaultServer(tmp_path / "grid-data", seed=seed)
    try:
        server.start()
        violations = _overtaken(server, seed, trials=3)
    finally:
        server.kill()
    assert not violations, f"seed {seed}:\n" + "\n".join(violations)
    report(kills=3, restarts=0, pauses=3, seed=seed)


def test_with_several_batches_in_flight_get_transaction_never_overtakes_a_resent_operation(tmp_path, seed):
    server = FaultServer(tmp_path / "grid-data", serve_args=["--batches-in-flight-max", str(QUESTIONS + 2)],
                         seed=seed)
    try:
        server.start()
        violations = _overtaken(server, seed, trials=10)
    finally:
        server.kill()
    assert not violations, f"seed {seed}:\n" + "\n".join(violations)
