"""Storage: the codec round-trips every record kind, a flipped byte is detected
and never applied, and a shard rebuilt from RocksDB equals the one that wrote it."""

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grid.domain import operations as ops
from grid.domain import records
from grid.domain.limits import CoreLimits
from grid.domain.outcomes import (
    AccountState, ControlAction, ControlKind, CounterPeriod, FinalUnitAction, JournalKind, NotificationReason, NotificationType, ReservationState, Result,
    SessionState, Unit,
)
from grid.domain.outcomes import BucketUnit
from grid.domain.rating import (CapAction, Control, CounterThreshold, PolicyCounter, Rate, Rounding, TariffPlan, Tier,
                                 TimeBand)
from grid.domain.shard_state import ShardState
from grid.storage import codec
from grid.storage.shard_store import ShardStore, StoreRefused

T = ops.DEFAULT_TENANT
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
money = st.integers(-(2**63), 2**63 - 1)
units = st.integers(0, 2**64 - 1)


def _samples():
    plan = TariffPlan("plan", (Rate(1, Unit.SECONDS, 1000, 60, 1), Rate(2, Unit.BYTES, 5, 1_000_000, 1000)), 3)
    reserve = ops.Reserve(T, "sub", "req", "sess", 1, 600, "trace")
    reply = ops.ReserveReply(Result.SUCCESS, "R0-1", 600, True, 300, 10_000, False, "trace")
    return [
        records.Account(T, "sub", "EUR", 5, "plan", AccountState.SUSPENDED, -7, 3, 1_700_000_000_000),
        records.Reservation("R0-1", T, "sub", "sess", 1, 600, 30, 9_000, ReservationState.EXPIRED, 1, 2, "req"),
        records.Charge("C0-2", T, "sub", 100, 40, "R0-1", 1, 60, 5),
        records.IdempotencyRecord(T, "sub", "req", reserve, reply, 9),
        records.IdempotencyRecord(
            T, "sub", "d", ops.Debit(T, "sub", "d", "", 2, 5, False),
            ops.DebitReply(Result.CREDIT_LIMIT_REACHED), 10),
        records.JournalRecord(7, 8, JournalKind.DEBIT, T, "sub", "req", Result.SUCCESS, "C0-2", 1, 60, 100,
                              5, -95, 0, 0, 123, "plan", 3, True, 95, "trace"),
        records.ShardMeta(3, 9, 10, 11, 12),
        plan,
        records.Session(T, "sub", "sess", SessionState.SESSION_STATE_ACTIVE, "nf-1", 4, ((1, "R0-1"), (7, "R0-9")),
                        1, 2, 3, 0),
        records.Notification(5, 6, T, "nf-1", "sub", "sess", NotificationType.ABORT_CHARGING,
                             NotificationReason.ACCOUNT_SUSPENDED, "trace"),
        records.IdempotencyRecord(
            T, "sub", "session/sess/4",
            ops.UpdateSession(T, "sub", "sess", 4, (ops.UnitUsage(1, 60, 30), ops.UnitUsage(7, 0, 5)), "nf-1", "t"),
            ops.SessionReply(Result.SUCCESS, "sess", 4, (
                ops.UnitInformation(1, Result.SUCCESS, 60, 300, 60, 12, FinalUnitAction.REDIRECT, "http://top.up",
                                    "R0-9", 600, 30, "C0-8", 300, True, 5, -7, 100),
                ops.UnitInformation(7, Result.CREDIT_LIMIT_REACHED)), SessionState.SESSION_STATE_ACTIVE, 600), 11),
        records.CounterState(T, "sub", "data-month", 812, 1_700_000_000_000, "slowed"),
        records.Subscription(T, "sub", "pcf-1", ("data-month", "spend-day"), 12),
        records.NotificationFloor(T, "policy", "pcf-1", 41),
        records.ControlState(T, "sub", "burst", ((1_000, 5), (2_000, 7)), 9_000),
        records.BillingCycle(T, "sub", 1_793_491_200_000, 1_796_083_200_000, 120_000, 500, ((1, 61, 120_000),)),
        TariffPlan("guarded", (Rate(1, Unit.EVENTS, 5, 1, 1),), 1, (), (
            Control("burst", ControlKind.SPEND_VELOCITY, 1_000_000, 600, ControlAction.DENY_GRANTS, (1,)),
            Control("low", ControlKind.LOW_BALANCE, 500_000, 0, ControlAction.NOTIFY),
        )),
        TariffPlan("counted", (Rate(1, Unit.BYTES, 5, 1_000_000, 1000),), 2, (
            PolicyCounter("data-month", (1, 2), False, CounterPeriod.COUNTER_PERIOD_MONTH, "normal",
                          (CounterThreshold(800, "slowed"), CounterThreshold(1000, "capped"))),
            PolicyCounter("spend-day", (), True, CounterPeriod.COUNTER_PERIOD_DAY, "ok",
                          (CounterThreshold(5_000_000, "high"),)),
        )),
    ]


@pytest.mark.parametrize("record", _samples(), ids=lambda r: type(r).__name__)
def test_every_record_kind_round_trips(record):
    decoded = codec.decode(codec.encode(record))
    assert decoded == record
    # Enums come back as enums, not bare ints.
    for field in dataclasses.fields(record):
        assert type(getattr(decoded, field.name)) is type(getattr(record, field.name))


@given(tenant=ids, subscriber=ids, balance=money, reserved=money, limit=money)
def test_accounts_round_trip_for_any_ids_and_int64_money(tenant, subscriber, balance, reserved, limit):
    account = records.Account(tenant, subscriber, "EUR", limit, "p", AccountState.ACTIVE, balance, reserved, 0)
    assert codec.decode(codec.encode(account)) == account


@given(granted=units, used=units)
def test_reservations_round_trip_for_any_uint64_units(granted, used):
    reservation = records.Reservation("R", T, "s", "x", 2**32 - 1, granted, used, 0, ReservationState.ACTIVE, 0, 0, "q")
    assert codec.decode(codec.encode(reservation)) == reservation


@pytest.mark.parametrize("record", _samples(), ids=lambda r: type(r).__name__)
def test_every_flipped_byte_is_detected(record):
    encoded = codec.encode(record)
    for position in range(len(encoded)):
        for bit in (0, 7):
            damaged = bytearray(encoded)
            damaged[position] ^= 1 << bit
            with pytest.raises(codec.CorruptRecord):
                codec.decode(bytes(damaged))


def test_truncated_and_foreign_values_are_detected():
    encoded = codec.encode(_samples()[0])
    for cut in range(len(encoded)):
        with pytest.raises(codec.CorruptRecord):
            codec.decode(encoded[:cut])
    with pytest.raises(codec.CorruptRecord):
        codec.decode(b"\x80\x04\x95pickle\x00\x00\x00\x00")


def _busy_shard(seed: int) -> ShardState:
    """A shard with accounts, open and resolved holds, charges, refunds and denials."""
    rng = random.Random(seed)
    state = ShardState(0)
    now = 1_000
    state.apply(ops.PutTariff(TariffPlan("p", (Rate(1, Unit.SECONDS, 1000, 1, 1),))), now)
    holds, charges = [], []
    for n in range(200):
        sub = f"s{rng.randrange(10)}"
        choice = rng.randrange(7)
        rid = f"q{n}"
        if choice == 0:
            state.apply(ops.CreateAccount(T, sub, rid, "EUR", rng.choice([0, 5000]), "p"), now)
        elif choice == 1:
            state.apply(ops.TopUp(T, sub, rid, rng.randint(1, 100_000)), now)
        elif choice == 2:
            reply = state.apply(ops.Reserve(T, sub, rid, "x", 1, rng.randint(1, 50)), now)
            if reply.result == Result.SUCCESS:
                holds.append((sub, reply.reservation_id))
        elif choice == 3 and holds:
            sub, hold = rng.choice(holds)
            reply = state.apply(ops.Debit(T, sub, rid, hold, 0, rng.randint(0, 60), rng.random() < 0.5), now)
            if getattr(reply, "charge_id", ""):
                charges.append((sub, reply.charge_id))
        elif choice == 4 and charges:
            sub, charge = rng.choice(charges)
            state.apply(ops.Refund(T, sub, rid, charge, rng.randint(1, 500)), now)
        elif choice == 5 and holds:
            sub, hold = rng.choice(holds)
            state.apply(ops.Release(T, sub, rid, hold), now)
        else:
            now += rng.choice([1, 100_000, 400_000])
            state.expire_due(now)
    return state


def _snapshot(state: ShardState):
    return (state.accounts, state.reservations, state.charges, state.tariffs, dict(state.idempotency), state.meta)


def test_a_shard_rebuilt_from_rocksdb_equals_the_one_that_wrote_it(tmp_path):
    state = _busy_shard(seed=7)
    store = ShardStore(tmp_path / "shard-0", 0)
    store.commit(state.take_writes())
    store.close()

    reopened = ShardStore(tmp_path / "shard-0", 0)
    rebuilt = ShardState.restore(0, reopened.load_records())
    assert _snapshot(rebuilt) == _snapshot(state)
    journal = reopened.journal()
    assert [r.sequence for r in journal] == list(range(1, state.meta.next_journal_sequence))
    # The rebuilt shard behaves like the original: the same next operation, the same reply.
    operation = ops.TopUp(T, "s1", "after-restart", 5)
    assert rebuilt.apply(operation, 10**9) == state.apply(operation, 10**9)
    reopened.close()


def test_a_corrupted_stored_record_stops_recovery_loudly(tmp_path):
    state = _busy_shard(seed=3)
    store = ShardStore(tmp_path / "shard-0", 0)
    store.commit(state.take_writes())
    key = codec.key_of(next(iter(state.accounts.values())))
    damaged = bytearray(store._db[key])
    damaged[3] ^= 0x10
    store._db[key] = bytes(damaged)
    with pytest.raises(codec.CorruptRecord, match="shard 0 key"):
        list(store.load_records())
    store.close()


def test_the_store_refuses_another_shards_directory_and_a_vanished_database(tmp_path):
    ShardStore(tmp_path / "shard-0", 0).close()
    with pytest.raises(StoreRefused, match="holds shard 0"):
        ShardStore(tmp_path / "shard-0", 1)
    import shutil

    shutil.rmtree(tmp_path / "shard-0" / "db")
    with pytest.raises(StoreRefused, match="refusing to start empty"):
        ShardStore(tmp_path / "shard-0", 0)


def test_limits_are_consistent():
    with pytest.raises(AssertionError):
        CoreLimits(amount_max_micros=10, balance_max_micros=5)


def _every_carried_kind():
    """One of every operation and reply the front door and the shards exchange."""
    from grid.domain.outcomes import ErrorCode

    view = ops.ReservationView("R0-1", "s", 1, 60, 0, 600, ReservationState.ACTIVE, 1, 2)
    return _samples() + [
        ops.CreateAccount(T, "s", "r", "EUR", 0, "p", "t"), ops.SetAccountState(T, "s", "r", AccountState.CLOSED),
        ops.TopUp(T, "s", "r", 5), ops.Reserve(T, "s", "r", "x", 1, 5), ops.Debit(T, "s", "r", "R", 0, 5, True),
        ops.Release(T, "s", "r", "R"), ops.Refund(T, "s", "r", "C", 5), ops.PutTariff(_samples()[-1], "t"),
        ops.GetBalance(T, "s"), ops.GetAccount(T, "s"), ops.GetTransaction(T, "s", "r"), ops.GetTariff("p"),
        ops.CreateAccountReply(Result.SUCCESS), ops.SetAccountStateReply(Result.USER_UNKNOWN),
        ops.ReserveReply(Result.SUCCESS, "R", 5), ops.DebitReply(Result.SUCCESS, "C", 5, True, 1),
        ops.TopUpReply(Result.SUCCESS, 5), ops.ReleaseReply(Result.SUCCESS, 5), ops.RefundReply(Result.SUCCESS, 5, 3),
        ops.PutTariffReply(Result.SUCCESS, 2), ops.BalanceReply(Result.SUCCESS, 1, 2, 3, 0, "EUR"),
        ops.AccountReply(Result.SUCCESS, "s", "EUR", AccountState.ACTIVE, 0, "p", 1, 2, 3, (view, view)),
        ops.TransactionReply(True, ops.DebitReply(Result.SUCCESS, "C", 5)), ops.TransactionReply(False),
        ops.TariffReply(Result.SUCCESS, _samples()[-1]), ops.TariffReply(Result.TARIFF_PLAN_UNKNOWN),
        ops.Rejection(ErrorCode.ALREADY_EXISTS, "amount_micros", "m"),
        ops.CreateSession(T, "s", "x", 0, (ops.UnitUsage(1, 5),), "nf"),
        ops.ReleaseSession(T, "s", "x", 2, (ops.UnitUsage(1, 0, 5),)),
        ops.GetSession(T, "s", "x"), ops.ReadNotifications(T, "nf", 3, 100),
        ops.SessionInfoReply(Result.SUCCESS, "x", "s", SessionState.SESSION_STATE_RELEASED, 2, "nf", 1, 2, 0, 3,
                             (view,)),
        ops.NotificationsReply((_samples()[9],), True, 12),
        ops.Subscribe(T, "s", "r", "pcf-1", ("data-month",), "t"), ops.Unsubscribe(T, "s", "r2", "pcf-1"),
        ops.GetCounters(T, "s"), ops.UnsubscribeReply(Result.SUCCESS, True),
        ops.SubscribeReply(Result.SUCCESS, (ops.CounterStatusView("data-month", "slowed", 812, 1, 2, "normal", 2),)),
        ops.CountersReply(Result.SUCCESS, (ops.CounterStatusView("spend-day", "ok", 0, 1, 2),)),
        ops.GetBillingCycle(T, "s", 5), ops.BillingCycleReply(Result.USER_UNKNOWN),
        ops.BillingCycleReply(Result.SUCCESS, records.BillingCycle(T, "s", 1, 2, 3, 4, ((7, 8, 9),))),
        ops.Quote(T, "s", 1, 60, "4930", "eu"), ops.QuoteReply(Result.SUCCESS, 1_500, -3, 40, 60_000, "p", 2),
        records.VolumeCounter(T, "s", 7, 1_000, 2**40),
        ops.ExportSlots((1, 7), 1024), ops.DropSlots((7,)), ops.SlotMoved(7),
        ops.PoolTake(T, "pool", "r", "m", 5), ops.PoolGive(T, "m", "r", "pool", 5, True, 9),
        ops.PoolReclaim(T, "m", "r", "pool"), ops.PoolReply(Result.SUCCESS, 5, "B0-1"),
        ops.ImportSlots((7,), (records.VolumeCounter(T, "s", 7, 1_000, 5),)),
        ops.SlotsReply(2, (records.VolumeCounter(T, "s", 7, 1_000, 5),)),
        ops.TopUp(T, "s", "r3", 0, bucket=ops.BucketGrant(BucketUnit.SECONDS, 6_000, 1, 2, 3, (1, 2), ("49",))),
        ops.BalanceReply(Result.SUCCESS, 1, 2, 3, 0, "EUR", (records.Bucket(
            "B0-1", BucketUnit.MONEY, 5, 4, 1, 0, 0, 10, (), ("4930",), 7),)),
        ops.PutTariff(TariffPlan(
            "rich", (Rate(1, Unit.SECONDS, 0, 0, 0, destination_prefix="49", time_band="peak", connect_fee_micros=5,
                          tiers=(Tier(0, 10, 60, 60), Tier(60, 10, 60, 1)), maximum_cost_micros=9,
                          cap_action=CapAction.CAP_DENY_QUOTA),),
            effective_from_ms=5, time_zone="Europe/Berlin", time_bands=(TimeBand("peak", (1, 2, 8), 480, 1080),),
            holidays=("2026-12-25",), rounding=Rounding.ROUNDING_HALF_EVEN)),
    ]


def test_every_operation_and_reply_crosses_the_ray_boundary_intact():
    items = _every_carried_kind()
    # Inside AccountReply, TariffPlan and the session records above.
    nested = {ops.ReservationView, Rate, ops.UnitUsage, ops.UnitInformation, ops.UpdateSession, ops.SessionReply,
              PolicyCounter, CounterThreshold, ops.CounterStatusView, Control, Tier, TimeBand, records.Bucket,
              ops.BucketGrant}
    assert {type(item) for item in items} >= set(codec.TYPE_CODES) - nested
    assert codec.unpack_batch(codec.pack_batch(items)) == items


def test_journal_records_are_dropped_only_past_their_retention(tmp_path):
    state = ShardState(0)
    state.apply(ops.PutTariff(TariffPlan("p", (Rate(1, Unit.EVENTS, 1, 1, 1),))), 0)
    state.apply(ops.CreateAccount(T, "s", "c", "EUR", 0, "p"), 0)
    for n, at_ms in enumerate([10, 20, 30, 40, 50]):
        state.apply(ops.TopUp(T, "s", f"t{n}", 1), at_ms)
    store = ShardStore(tmp_path / "shard-0", 0)
    store.commit(state.take_writes())
    before = [(r.sequence, r.at_ms) for r in store.journal()]
    assert store.forget_journal_before(30, records_max=1) == 1  # bounded work per call
    assert store.forget_journal_before(30) == 3  # the rest older than 30: tariff, account, t0 ... up to t1
    kept = [(r.sequence, r.at_ms) for r in store.journal()]
    assert kept == [entry for entry in before if entry[1] >= 30]
    assert store.forget_journal_before(30) == 0
    store.close()


def test_two_incarnations_of_a_shard_can_never_both_hold_its_store(tmp_path):
    """Fencing: while one incarnation holds the store (even paused), another cannot open it."""
    first = ShardStore(tmp_path / "shard-0", 0)
    with pytest.raises(StoreRefused, match="another incarnation"):
        ShardStore(tmp_path / "shard-0", 0)
    first.close()
    ShardStore(tmp_path / "shard-0", 0).close()  # once released, the next one opens


@pytest.mark.parametrize("record, newest", [
    (records.JournalRecord(7, 1_700_000_000_000, JournalKind.DEBIT, T, "sub", "req", Result.SUCCESS, "C0-7", 1, 90,
                           40_000, bucket_draws=(("B0-1", 30), ("B0-2", 20_000)), bucket_units=30,
                           bucket_micros=20_000), ("bucket_units", "bucket_micros")),
    (ops.UnitInformation(1, Result.SUCCESS, granted_units=100, held_micros=60_000, granted_bucket_units=40,
                         held_bucket_micros=5_000), ("granted_bucket_units", "held_bucket_micros")),
    (Rate(1, Unit.BYTES, 5, 1_000_000, 1000, service_identifier=8), ("service_identifier",)),
    (records.Reservation("R0-1", T, "sub", "sess", 1, 600, 30, 9_000, ReservationState.ACTIVE, 1, 2, "req",
                         service_identifier=8), ("service_identifier",)),
], ids=["journal record", "unit information", "rate", "reservation"])
def test_a_record_written_before_its_newest_fields_decodes_with_them_zero(record, newest):
    # Fields are added last with a default, so the journal, plans, holds and
    # stored replies a grid wrote before an upgrade still decode after it.
    import msgpack
    import struct
    import zlib

    names = [field.name for field in dataclasses.fields(record)]
    assert names[-len(newest):] == list(newest)
    older = [getattr(record, name) for name in names[:-len(newest)]]
    code = codec.TYPE_CODES[type(record)]
    body = bytes([codec.CODEC_VERSION]) + msgpack.packb(
        msgpack.ExtType(code, msgpack.packb(older, default=codec._default, use_bin_type=True)),
        default=codec._default, use_bin_type=True)
    decoded = codec.decode(body + struct.pack(">I", zlib.crc32(body)))
    assert decoded == dataclasses.replace(record, **{name: 0 for name in newest})
    assert codec.decode(codec.encode(record)) == record
