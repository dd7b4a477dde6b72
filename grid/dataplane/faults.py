"""Fault points a test can arm in a shard, through the environment of `grid serve`.

    GRID_FAULTS="exit_after_commit=0.05,exit_before_commit=0.02,delay_after_commit_ms=200"
    GRID_FAULTS="crash_on_request_id=poison-1"
    GRID_FAULTS="clock_offset_ms=86400000"
    GRID_FAULTS="controller_exit_after_import=1"
    GRID_FAULT_SEED=1234

exit_after_commit kills the shard's process (as kill -9 would) right after its
batch is synced and before the reply leaves: the moment where an acknowledged
write must survive and the unacknowledged reply must be resolved by a retry
with the same request ids. exit_before_commit dies with the batch applied in
memory only. delay_after_commit_ms holds every reply after its commit, so a
caller's deadline expires after the effect happened. crash_on_request_id makes
any batch carrying that request id fail as a bug in the core would (the shard
exits and reloads). clock_offset_ms runs the shard's clock that far ahead (a
clock jump; a restart with it crosses a counter period or a hold's expiry
without waiting). controller_exit_after_import kills the controller (not a
shard) in a slot move between import and map switch, once: the restarted
controller must finish the move itself. Off unless armed; the
probabilities are per batch, drawn from a generator seeded per shard and epoch
so a restarted shard does not replay the same draws.
"""

import dataclasses
import os
import random
import time

from grid.domain.operations import MUTATING_OPERATIONS

ENVIRONMENT_VARIABLE = "GRID_FAULTS"
SEED_VARIABLE = "GRID_FAULT_SEED"
EXIT_CODE = 137  # what a SIGKILLed process reports


@dataclasses.dataclass
class FaultPoints:
    exit_after_commit: float = 0.0
    exit_before_commit: float = 0.0
    delay_after_commit_ms: int = 0
    # A request id whose operation makes the shard fail as a bug in the core would.
    crash_on_request_id: str = ""
    # Added to the shard's clock.
    clock_offset_ms: int = 0
    # Read by the controller only.
    controller_exit_after_import: bool = False
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    @classmethod
    def from_environment(cls, shard_id: int, epoch: int) -> "FaultPoints":
        faults = cls(rng=random.Random(f"{os.environ.get(SEED_VARIABLE, '0')}/{shard_id}/{epoch}"))
        for item in filter(None, os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")):
            name, _, value = item.partition("=")
            name = name.strip()
            if name in ("exit_after_commit", "exit_before_commit"):
                probability = float(value)
                if not 0.0 <= probability <= 1.0:
                    raise ValueError(f"{ENVIRONMENT_VARIABLE}: {name} must be a probability, got {value}")
                setattr(faults, name, probability)
            elif name == "delay_after_commit_ms":
                faults.delay_after_commit_ms = int(value)
            elif name == "clock_offset_ms":
                faults.clock_offset_ms = int(value)
            elif name == "crash_on_request_id":
                faults.crash_on_request_id = value.strip()
            elif name == "controller_exit_after_import":
                faults.controller_exit_after_import = value.strip() not in ("", "0")
            else:
                raise ValueError(f"{ENVIRONMENT_VARIABLE}: unknown fault point {name!r}")
        return faults

    @property
    def armed(self) -> bool:
        return bool(self.exit_after_commit or self.exit_before_commit or self.delay_after_commit_ms
                    or self.crash_on_request_id or self.clock_offset_ms)

    def before_apply(self, operations) -> None:
        if self.crash_on_request_id and any(
            isinstance(operation, MUTATING_OPERATIONS) and operation.request_id == self.crash_on_request_id
            for operation in operations
        ):
            raise AssertionError(f"fault point: operation {self.crash_on_request_id} crashes the core")

    def before_commit(self) -> None:
        if self.exit_before_commit and self.rng.random() < self.exit_before_commit:
            os._exit(EXIT_CODE)

    def after_commit(self) -> None:
        if self.exit_after_commit and self.rng.random() < self.exit_after_commit:
            os._exit(EXIT_CODE)
        if self.delay_after_commit_ms:
            time.sleep(self.delay_after_commit_ms / 1000)
