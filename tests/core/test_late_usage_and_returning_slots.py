"""Bugs a review of the service, bucket-record and slot-move changes found, held
fixed (pure core, a ShardState driven directly): late session usage is rated
for the service its expired grant was for; a released or expired hold's record
says what went back to its buckets; a slot coming back to a shard drops what
an earlier export parked there, so only current records travel on."""

import itertools

import pytest

from grid.domain import operations as ops
from grid.domain.outcomes import BucketUnit, JournalKind, Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.records import Account, JournalRecord
from grid.domain.shard_state import ShardState
from grid.routing import slot_of
from grid.storage import codec

T = ops.DEFAULT_TENANT
ALICE = "alice"
S = Result.SUCCESS
MB = 1_000_000
NOW = 1_750_000_000_000
BALANCE = 100_000_000
HOLD_LIFE_MS = (300 + 30) * 1000  # validity 300 s + grace 30 s (CoreLimits defaults)

DATA = 20  # 1_000 a started MB; service 7 (messaging) free; service 8 (video) 5_000 a started MB
MESSAGING, VIDEO = 7, 8
PLAN = TariffPlan("services", (
    Rate(DATA, Unit.BYTES, 1_000, MB, MB),
    Rate(DATA, Unit.BYTES, 0, MB, MB, service_identifier=MESSAGING),
    Rate(DATA, Unit.BYTES, 5_000, MB, MB, service_identifier=VIDEO),
))


class World:
    def __init__(self, shard_id: int = 0) -> None:
        self.shard = ShardState(shard_id)
        self.now = NOW
        self.journal: list[JournalRecord] = []
        self._ids = itertools.count(1)
        assert self.do(ops.PutTariff(PLAN)).result == S

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def do(self, operation):
        [reply] = self.shard.apply_batch([operation], self.now)
        writes = self.shard.take_writes()
        self.journal.extend(sorted((r for r in writes.puts if type(r) is JournalRecord), key=lambda r: r.sequence))
        return reply

    def open(self, subscriber: str = ALICE) -> None:
        assert self.do(ops.CreateAccount(T, subscriber, self.rid(), "EUR", 0, PLAN.tariff_plan_id)).result == S
        assert self.do(ops.TopUp(T, subscriber, self.rid(), BALANCE)).result == S

    def balance(self, subscriber: str = ALICE) -> int:
        return self.shard.apply(ops.GetBalance(T, subscriber), self.now).balance_micros


# ---------------------------------------------------------------- rating by service


def test_late_session_usage_is_rated_by_the_service_its_expired_hold_was_granted_for():
    world = World()
    world.open()
    created = world.do(ops.CreateSession(T, ALICE, "s1", 1, (
        ops.UnitUsage(DATA, requested_units=2 * MB, service_identifier=MESSAGING),)))
    assert created.multiple_unit_information[0].held_micros == 0  # zero-rated
    # Within the hold's life, a report that does not repeat the service is rated by the hold: free.
    world.now += 100_000
    live = world.do(ops.UpdateSession(T, ALICE, "s1", 2, (
        ops.UnitUsage(DATA, requested_units=2 * MB, used_units=2 * MB),)))
    assert live.multiple_unit_information[0].charged_micros == 0
    # The same report after the (new) hold expired: the service was used all the same.
    world.now += HOLD_LIFE_MS + 1_000
    late = world.do(ops.UpdateSession(T, ALICE, "s1", 3, (ops.UnitUsage(DATA, used_units=2 * MB),)))
    info = late.multiple_unit_information[0]
    assert info.late
    assert info.charged_micros == 0, info  # charged 2 x 1_000 at the group's rate instead
    assert world.balance() == BALANCE


def test_a_debit_on_an_expired_service_hold_is_rated_by_its_service():
    """Check (passes): the Debit side of the comparison above."""
    world = World()
    world.open()
    hold = world.do(ops.Reserve(T, ALICE, world.rid(), "s", DATA, 2 * MB, service_identifier=VIDEO))
    world.now += HOLD_LIFE_MS + 1_000
    late = world.do(ops.Debit(T, ALICE, world.rid(), hold.reservation_id, 0, 2 * MB, True))
    assert (late.result, late.late, late.charged_micros) == (S, True, 10_000)  # 2 x 5_000


# ---------------------------------------------------------------- bucket draws in records


@pytest.mark.parametrize("end", ["release", "expiry"])
def test_a_released_or_expired_hold_says_what_went_back_to_its_buckets(end):
    world = World()
    world.open()
    assert world.do(ops.TopUp(T, ALICE, world.rid(), 0, bucket=ops.BucketGrant(BucketUnit.BYTES, 5 * MB))).result == S
    hold = world.do(ops.Reserve(T, ALICE, world.rid(), "s", DATA, 3 * MB))
    assert (hold.result, hold.bucket_units) == (S, 3 * MB)
    [reserved] = [r for r in world.journal if r.kind == JournalKind.RESERVE]
    assert reserved.bucket_draws  # the hold's record says what it holds in each bucket
    if end == "release":
        assert world.do(ops.Release(T, ALICE, world.rid(), hold.reservation_id)).result == S
        kind = JournalKind.RELEASE
    else:
        world.now += HOLD_LIFE_MS + 1_000
        world.do(ops.Debit(T, ALICE, world.rid(), "", DATA, 1, False))  # touching the account expires the hold
        kind = JournalKind.EXPIRE
    [ended] = [r for r in world.journal if r.kind == kind]
    assert ended.bucket_draws == reserved.bucket_draws
    from grid import dispute

    [(bucket_id, amount)] = ended.bucket_draws
    assert f"to buckets {bucket_id} {amount:,}" in dispute.describe(ended)


def test_a_replayed_session_request_returns_what_its_grant_holds_in_buckets():
    """Check (passes): the stored reply keeps granted_bucket_units / held_bucket_micros, through the codec
    and the conversion GetTransaction and a retry use."""
    from grid.frontdoor import convert

    world = World()
    world.open()
    assert world.do(ops.TopUp(T, ALICE, world.rid(), 0, bucket=ops.BucketGrant(BucketUnit.BYTES, MB))).result == S
    assert world.do(ops.TopUp(T, ALICE, world.rid(), 0, bucket=ops.BucketGrant(BucketUnit.MONEY, 4_000))).result == S
    request = ops.CreateSession(T, ALICE, "s1", 1, (ops.UnitUsage(DATA, requested_units=3 * MB,
                                                                  service_identifier=VIDEO),))
    first = world.do(request)
    again = world.do(request)
    [info] = first.multiple_unit_information
    # 1 MB from the bytes bucket; 2 MB x 5_000 = 10_000 priced: 4_000 from the money bucket, 6_000 held.
    assert (info.granted_units, info.granted_bucket_units, info.held_bucket_micros, info.held_micros) == (
        3 * MB, MB, 4_000, 6_000)
    assert again.replayed and again.multiple_unit_information == first.multiple_unit_information
    [stored] = codec.unpack_batch(codec.pack_batch([again]))
    [message] = convert.session_reply(stored).multiple_unit_information
    assert (message.granted_bucket_units, message.held_bucket_micros) == (MB, 4_000)


# ---------------------------------------------------------------- slot moves (the resume's money loss)


def test_a_slot_exported_again_after_coming_back_hands_out_only_its_current_records():
    slots = 8
    a, b, c = World(0), World(1), World(2)
    subscriber = next(f"sub-{n}" for n in itertools.count() if slot_of(T, f"sub-{n}", slots) == 1)
    a.open(subscriber)

    def move(source: World, target: World) -> None:
        [exported] = codec.unpack_batch(codec.pack_batch([source.do(ops.ExportSlots((1,), slots))]))
        target.do(ops.ImportSlots((1,), exported.records))

    move(a, b)  # the mover died before DropSlots at a
    assert b.do(ops.Debit(T, subscriber, "d1", "", DATA, 3 * MB, False)).result == S
    move(b, a)  # moved back; b dropped
    b.do(ops.DropSlots((1,)))
    assert a.balance(subscriber) == BALANCE - 3_000
    move(a, c)
    accounts = [r for r in a.shard._parked[1] if isinstance(r, Account)]
    assert len(accounts) == 1, [acc.balance_micros for acc in accounts]
    assert c.balance(subscriber) == BALANCE - 3_000
