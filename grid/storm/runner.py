"""One storm from start to verdict: provision, read the starting balances,
load, settle, audit, report. The phases run in this order on one event loop;
`before_audit` lets a caller act between the settle and the audit (the tests
use it to move money behind the generator's back and see the audit fail)."""

import secrets
import time

from grid.storm import conservation, provisioning, report
from grid.storm.generator import Engine, LoadSettings, StreamSender, UnarySender
from grid.storm.schedule import ScheduleSpec

# The grid's own audit reads every shard's whole journal (seconds per 100,000 records):
# one attempt with a long deadline rather than retries that would start it again.
GRID_AUDIT_TIMEOUT_S = 600.0


def new_run_id() -> str:
    """Unique per run and short (it prefixes every request id, which the grid caps at 128 characters)."""
    return f"{time.strftime('%m%d%H%M%S')}{secrets.token_hex(2)}"


async def run_storm(scenario, settings: LoadSettings, *, spec: ScheduleSpec | None = None, credentials=None,
                    progress=None, before_audit=None, run_id: str | None = None) -> dict:
    from grid_client import AsyncChargingClient, RetryPolicy

    run_id = run_id or new_run_id()
    scenario.prepare(settings)
    spec = spec or scenario.schedule(settings)

    def note(text: str) -> None:
        if progress is not None:
            progress.note(text)

    async with AsyncChargingClient(settings.target, credentials=credentials) as client:
        note(f"provisioning {scenario.subscriber_count():,} subscribers on plan {scenario.plan_id}")
        provisioned = await scenario.provision(client, note)
        subscribers = [scenario.subscriber_id(index) for index in range(scenario.subscriber_count())]
        start = await provisioning.balances(client, subscribers)
        note(f"load: {scenario.name} for {settings.seconds:g} s, run {run_id}")
        sender = (StreamSender(settings.target, credentials, settings.streams) if settings.stream
                  else UnarySender(settings.target, credentials, settings.channels))
        engine = Engine(settings, scenario, sender, run_id, progress=progress)
        times = scenario.arrivals(spec.times(settings.seconds, settings.max_requests, settings.seed), settings)
        try:
            await engine.load(times)
        finally:
            await sender.close()
        scenario.finish()
        note("settling unknown outcomes and open holds, then auditing")
        settled = await conservation.settle(engine.ledger, client, run_id)
        if before_audit is not None:
            await before_audit(engine.ledger, client)
        async with AsyncChargingClient(settings.target, credentials=credentials,
                                       retry=RetryPolicy(attempts=1, timeout_s=GRID_AUDIT_TIMEOUT_S)) as auditor:
            audited = await conservation.audit(engine.ledger, client, start, settled, grid_auditor=auditor)
    return report.build(scenario=scenario, settings=settings, spec=spec, run_id=run_id, provisioned=provisioned,
                        engine=engine, audit=audited)
