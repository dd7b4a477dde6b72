"""A slot moved from shard A to shard B, step by step, with real RocksDB stores:
export freezes the slot at A (persisted: a restarted A still refuses its
subscribers, and its sweeps leave their holds alone), import adopts everything
its subscribers own at B (idempotency records included, so a retry of an
earlier request is answered, not applied again), drop forgets it at A; each
shard's audit adds up with the moved balances."""

import pytest

from grid import audit
from grid.domain import operations as ops
from grid.domain.outcomes import BucketUnit, JournalKind, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import JournalRecord
from grid.domain.shard_state import ShardState
from grid.routing import slot_of
from grid.storage.shard_store import ShardStore

T = "default"
SLOTS = 16
NOW = 1_800_000_000_000
SECOND = 1000
PLAN = TariffPlan("p", (Rate(1, Unit.SECONDS, 1_000, 60, 60), Rate(2, Unit.EVENTS, 500, 1, 1)))


def two_subscribers_in_different_slots() -> tuple[str, str]:
    names = [f"sub-{n}" for n in range(100)]
    alice = names[0]
    bob = next(name for name in names if slot_of(T, name, SLOTS) != slot_of(T, alice, SLOTS))
    return alice, bob


ALICE, BOB = two_subscribers_in_different_slots()
ALICE_SLOT = slot_of(T, ALICE, SLOTS)


class Shard:
    """A shard core with its store: every batch committed, its journal kept."""

    def __init__(self, tmp_path, shard_id: int) -> None:
        self.path, self.shard_id = tmp_path / f"shard-{shard_id}", shard_id
        self.store = ShardStore(self.path, shard_id)
        self.state = ShardState.restore(shard_id, self.store.load_records())
        self.journal: list[JournalRecord] = []

    def apply(self, operation, now_ms: int = NOW):
        [reply] = self.state.apply_batch([operation], now_ms)
        writes = self.state.take_writes()
        self.journal.extend(sorted((r for r in writes.puts if type(r) is JournalRecord), key=lambda r: r.sequence))
        self.store.commit(writes)
        self.state.check_invariants()
        return reply

    def restart(self) -> None:
        self.store.close()
        self.store = ShardStore(self.path, self.shard_id)
        self.state = ShardState.restore(self.shard_id, self.store.load_records())

    def audit(self) -> audit.ShardAudit:
        state = self.state
        records = list(state.accounts.values()) + list(state.reservations.values()) + list(state.sessions.values())
        return audit.audit_shard(self.shard_id, records, self.journal)


@pytest.fixture
def shards(tmp_path):
    a, b = Shard(tmp_path, 0), Shard(tmp_path, 1)
    for shard in (a, b):
        assert shard.apply(ops.PutTariff(PLAN, "t")).result == Result.SUCCESS
    for name in (ALICE, BOB):
        assert a.apply(ops.CreateAccount(T, name, f"create-{name}", "EUR", 0, "p", "t")).result == Result.SUCCESS
        assert a.apply(ops.TopUp(T, name, f"top-{name}", 100_000, "t")).result == Result.SUCCESS
    # Alice has a hold, a session, a bucket and a charge when her slot moves.
    hold = a.apply(ops.Reserve(T, ALICE, "hold-1", "call", 1, 120, "t"))
    assert (hold.result, hold.held_micros) == (Result.SUCCESS, 2_000)
    assert a.apply(ops.CreateSession(T, ALICE, "s1", 1, (ops.UnitUsage(2, requested_units=3),), "nf", "t")
                   ).result == Result.SUCCESS
    assert a.apply(ops.TopUp(T, ALICE, "minutes", 0, "t", bucket=ops.BucketGrant(BucketUnit.EVENTS, 10))
                   ).result == Result.SUCCESS
    charge = a.apply(ops.Debit(T, ALICE, "sms-1", "", 2, 2, False, "t"))
    assert (charge.result, charge.bucket_units) == (Result.SUCCESS, 2)
    yield a, b, hold.reservation_id
    for shard in (a, b):
        shard.store.close()


def test_a_slot_moves_with_everything_its_subscribers_own(shards):
    a, b, reservation_id = shards
    alice_before = a.apply(ops.GetAccount(T, ALICE))

    exported = a.apply(ops.ExportSlots((ALICE_SLOT,), SLOTS))
    assert exported.accounts == 1
    kinds = {type(record).__name__ for record in exported.records}
    assert {"Account", "Reservation", "Charge", "IdempotencyRecord", "Session"} <= kinds, kinds
    # Frozen at A: nothing for alice applies there any more; bob is served as before.
    assert a.apply(ops.TopUp(T, ALICE, "top-late", 5, "t")) == ops.SlotMoved(ALICE_SLOT)
    assert a.apply(ops.GetBalance(T, ALICE)) == ops.SlotMoved(ALICE_SLOT)
    assert a.apply(ops.TopUp(T, BOB, "top-bob-2", 5, "t")).result == Result.SUCCESS

    # A restarted mid-move is still frozen, and its sweep leaves alice's parked hold alone.
    a.restart()
    assert a.apply(ops.Debit(T, ALICE, "late", reservation_id, 0, 10, True, "t")) == ops.SlotMoved(ALICE_SLOT)
    a.apply(ops.GetBalance(T, BOB), now_ms=NOW + 3_600 * SECOND)  # long past the hold's expiry
    assert not [r for r in a.journal if r.kind == JournalKind.EXPIRE and r.subscriber_id == ALICE]

    imported = b.apply(ops.ImportSlots((ALICE_SLOT,), exported.records))
    assert imported.accounts == 1
    assert b.apply(ops.GetAccount(T, ALICE)) == alice_before  # balance, hold, buckets: all there
    # A retry of a request A applied is answered from its record, not applied again.
    replay = b.apply(ops.TopUp(T, ALICE, f"top-{ALICE}", 100_000, "t"))
    assert (replay.result, replay.replayed, replay.balance_micros) == (Result.SUCCESS, True, 100_000)
    # The hold granted at A is charged at B.
    debit = b.apply(ops.Debit(T, ALICE, "use-hold", reservation_id, 0, 61, True, "t"))
    assert (debit.result, debit.charged_micros, debit.released_micros) == (Result.SUCCESS, 2_000, 0)
    # Importing the same records again changes nothing.
    again = b.apply(ops.ImportSlots((ALICE_SLOT,), exported.records))
    assert again.accounts == 0
    assert [r.kind for r in b.journal].count(JournalKind.SLOT_MOVED_IN) == 1

    dropped = a.apply(ops.DropSlots((ALICE_SLOT,)))
    assert dropped.accounts == 1
    a.restart()
    assert (T, ALICE) not in a.state.accounts and not a.state._parked.get(ALICE_SLOT)
    assert a.apply(ops.GetBalance(T, ALICE)) == ops.SlotMoved(ALICE_SLOT)  # still B's

    for shard in (a, b):
        report = shard.audit()
        assert report.ok, report.problems
    moved = alice_before.balance_micros
    assert (a.audit().moved_out_micros, b.audit().moved_in_micros) == (moved, moved)


def test_a_slot_moved_back_is_served_again_where_it_started(shards):
    a, b, _ = shards
    exported = a.apply(ops.ExportSlots((ALICE_SLOT,), SLOTS))
    b.apply(ops.ImportSlots((ALICE_SLOT,), exported.records))
    a.apply(ops.DropSlots((ALICE_SLOT,)))
    assert b.apply(ops.TopUp(T, ALICE, "at-b", 7, "t")).result == Result.SUCCESS

    back = b.apply(ops.ExportSlots((ALICE_SLOT,), SLOTS))
    assert a.apply(ops.ImportSlots((ALICE_SLOT,), back.records)).accounts == 1
    b.apply(ops.DropSlots((ALICE_SLOT,)))
    top = a.apply(ops.TopUp(T, ALICE, "at-a-again", 3, "t"))
    assert top.result == Result.SUCCESS and top.balance_micros == b.audit().moved_out_micros + 3
    for shard in (a, b):
        assert shard.audit().ok, shard.audit().problems


def test_slot_operations_are_checked_like_any_other():
    state = ShardState(0)
    assert state.apply(ops.ExportSlots((), SLOTS), NOW).field == "slots"
    assert state.apply(ops.ExportSlots((SLOTS,), SLOTS), NOW).field == "slots"
    assert state.apply(ops.DropSlots((-1,)), NOW).field == "slots[0]"
