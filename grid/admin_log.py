"""The admin audit log: one JSON line per administrative call (who, what, when,
the outcome and the trace id), appended and fsynced before the call answers, so
that every account, catalog, money-in and snapshot action can be accounted for.

Admin calls are rare next to charging calls; the synced append runs in a worker
thread so it never stalls the event loop.
"""

import asyncio
import json
import os
import pathlib
import threading
import time

# Administrative methods: every one is logged. Charging calls are not (their
# journal records already say who and what); TopUp and Refund move money by
# hand, so they are here as well as in the journal.
ADMIN_METHODS = frozenset({
    "charging.v1.ChargingService/TopUp",
    "charging.v1.ChargingService/Refund",
    "charging.v1.ChargingService/Charge.top_up",
    "charging.v1.ChargingService/Charge.refund",
    "charging.v1.ChargingService/ChargeBatch.top_up",
    "charging.v1.ChargingService/ChargeBatch.refund",
    "charging.v1.AccountService/CreateAccount",
    "charging.v1.AccountService/SetAccountState",
    "charging.v1.CatalogService/PutTariff",
    "charging.v1.AdminService/CreateSnapshot",
    "charging.v1.AdminService/ListSnapshots",
    "charging.v1.AdminService/RestoreSnapshot",
    "charging.v1.AdminService/Dispute",
    "charging.v1.AdminService/ExportCdrs",
    "charging.v1.AdminService/Audit",
})
# Past this size the log is renamed to admin-audit.jsonl.1 (the older one dropped).
ROTATE_BYTES = 64 << 20


class AdminLog:
    def __init__(self, path: pathlib.Path, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = path
        self._rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.path.exists() and self.path.stat().st_size + len(line) > self._rotate_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    async def record(self, *, principal, method: str, target: dict, outcome: str, trace_id: str,
                     peer: str = "") -> None:
        await asyncio.to_thread(self.append, {
            "at_ms": time.time_ns() // 1_000_000, "tenant": principal.tenant, "subject": principal.subject,
            "method": method, "target": target, "outcome": outcome, "trace_id": trace_id, "peer": peer,
        })

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
