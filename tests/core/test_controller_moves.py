"""grid/controlplane/controller.py: the written-down slot move, its resume by a restarted
controller, 32-slot steps, the closing DropSlots sweep, and no second move
while one is unfinished. Driven without Ray: a fake `ray` module routes the controller's calls to in-process
ShardState cores through the same codec the shard actor uses.

The resume thread the constructor starts is captured rather than started, so a
test chooses where it runs relative to other calls: in production it runs at
once but retries every RESUME_PAUSE_S (2 s) while a shard is unavailable,
which leaves the same window open to an operator's move."""

import itertools
import json
import sys
import types

import pytest

from grid.controlplane import controller as controller_module
from grid.domain import operations as ops
from grid.domain.outcomes import Result, Unit
from grid.domain.rating import Rate, TariffPlan
from grid.domain.shard_state import ShardState
from grid.routing import ShardMap, slot_of
from grid.storage import codec

T = ops.DEFAULT_TENANT
SLOTS = 8
SHARDS = 2
NOW = 1_800_000_000_000
PRICE = 1_000  # micros an event
PLAN = TariffPlan("p", (Rate(1, Unit.EVENTS, PRICE, 1, 1),))
BALANCE = 100_000


def subscriber_in(slot: int) -> str:
    return next(name for name in (f"sub-{n}" for n in itertools.count()) if slot_of(T, name, SLOTS) == slot)


class FakeShard:
    """A shard actor's apply_control over an in-process core (codec in, codec out),
    and the maps the controller sends it."""

    def __init__(self, shard_id: int) -> None:
        self.state = ShardState(shard_id)
        self.fail_next: type | None = None  # an operation class to refuse once (a shard restarting)
        outer = self

        class _Method:
            @staticmethod
            def remote(payload: bytes) -> bytes:
                operations = codec.unpack_batch(payload)
                if outer.fail_next is not None and any(isinstance(o, outer.fail_next) for o in operations):
                    outer.fail_next = None
                    raise ConnectionError("shard unavailable (a restart)")
                replies = outer.state.apply_batch(operations, NOW)
                outer.state.take_writes()
                return codec.pack_batch([*replies, 0])

        self.apply_control = _Method()
        self.maps: list[dict] = []

        class _SetMap:
            @staticmethod
            def remote(view: dict) -> None:
                outer.maps.append(view)

        self.set_shard_map = _SetMap()

    def do(self, operation):
        """One operation, through the codec both ways (as over Ray: no shared objects)."""
        [operation] = codec.unpack_batch(codec.pack_batch([operation]))
        [reply] = self.state.apply_batch([operation], NOW)
        self.state.take_writes()
        [reply] = codec.unpack_batch(codec.pack_batch([reply]))
        return reply


@pytest.fixture
def grid(tmp_path, monkeypatch):
    shards = [FakeShard(i) for i in range(SHARDS)]
    fake_ray = types.ModuleType("ray")
    fake_ray.get = lambda value: value
    fake_ray.get_actor = lambda name, namespace=None: shards[int(name.rsplit("-", 1)[1])]
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.delenv("GRID_FAULTS", raising=False)
    deferred = []

    class DeferredThread:
        """The resume thread, run when the test says."""

        def __init__(self, target, args=(), name=None, daemon=None) -> None:
            self.target, self.args = target, args

        def start(self) -> None:
            deferred.append(self)

    monkeypatch.setattr(controller_module.threading, "Thread", DeferredThread)
    for shard in shards:
        assert shard.do(ops.PutTariff(PLAN)).result == Result.SUCCESS
    return types.SimpleNamespace(shards=shards, data_dir=tmp_path, deferred=deferred,
                                 controller=lambda: controller_module.ControllerActor(SLOTS, SHARDS, "",
                                                                                      str(tmp_path)))


def owner_in_map(data_dir, slot: int) -> int:
    return json.loads((data_dir / controller_module.MAP_FILE).read_text())["shard_of_slot"][slot]


def open_account(shard: FakeShard, subscriber: str) -> None:
    assert shard.do(ops.CreateAccount(T, subscriber, f"create-{subscriber}", "EUR", 0, "p")).result == Result.SUCCESS
    assert shard.do(ops.TopUp(T, subscriber, f"top-{subscriber}", BALANCE)).result == Result.SUCCESS


def debit(shard: FakeShard, subscriber: str, request_id: str, events: int):
    reply = shard.do(ops.Debit(T, subscriber, request_id, "", 1, events, False))
    assert reply.result == Result.SUCCESS, reply
    return reply


def balance(shard: FakeShard, subscriber: str) -> int:
    return shard.do(ops.GetBalance(T, subscriber)).balance_micros


def write_map(data_dir, owners: list[int], epoch: int, moving: dict | None) -> None:
    body = {"epoch": epoch, "slots": SLOTS, "shard_of_slot": owners, **({"moving": moving} if moving else {})}
    (data_dir / controller_module.MAP_FILE).write_text(json.dumps(body))


def test_a_restarted_controller_finishes_a_move_killed_between_import_and_switch(grid):
    """Check (passes): the resume path itself, with the step and sweep logic."""
    [source, target] = grid.shards
    slot = 1  # shard 0's in the even map
    alice = subscriber_in(slot)
    open_account(source, alice)
    debit(source, alice, "before", 7)
    # The dead run: exported and imported, the map not switched.
    exported = source.do(ops.ExportSlots((slot,), SLOTS))
    target.do(ops.ImportSlots((slot,), exported.records))
    owners = list(ShardMap.even(SLOTS, SHARDS).shard_of_slot)
    write_map(grid.data_dir, owners, 1, {"slots": [slot], "target": 1})

    restarted = grid.controller()
    assert restarted.unfinished_move() == {"slots": [slot], "target": 1}  # as the dead run wrote it
    [resume] = grid.deferred
    resume.target(*resume.args)

    assert restarted.unfinished_move() is None
    assert owner_in_map(grid.data_dir, slot) == 1
    assert balance(target, alice) == BALANCE - 7 * PRICE
    assert not source.state._parked.get(slot)  # the source dropped what it parked
    debit(target, alice, "after", 1)
    assert balance(target, alice) == BALANCE - 8 * PRICE
    for shard in grid.shards:
        shard.state.check_invariants()


def test_a_move_of_many_slots_goes_in_steps_and_the_sweep_leaves_nothing_parked(grid):
    """Check (passes): 40 slots would be two steps; with 8 slots, every slot of shard 0 moves."""
    [source, target] = grid.shards
    subscribers = {slot: subscriber_in(slot) for slot in range(SLOTS // 2)}  # shard 0's slots
    for subscriber in subscribers.values():
        open_account(source, subscriber)
    moved = grid.controller().move_slots(list(subscribers), 1)
    assert moved["slots"] == len(subscribers) and moved["accounts"] == len(subscribers)
    assert all(owner_in_map(grid.data_dir, slot) == 1 for slot in subscribers)
    assert "moving" not in json.loads((grid.data_dir / controller_module.MAP_FILE).read_text())
    assert all(balance(target, s) == BALANCE for s in subscribers.values())
    assert not any(source.state._parked.values())


def test_every_shard_is_sent_the_map_of_each_switch_and_a_registering_shard_gets_it(grid):
    """The shards' public listeners refuse slots they do not own by the map the
    controller sends them: each switch reaches every shard, and a shard that
    (re)starts and registers is answered the map and its peers are told."""
    [source, target] = grid.shards
    slot = 1
    open_account(source, subscriber_in(slot))
    controller = grid.controller()
    moved = controller.move_slots([slot], 1)
    for shard in (source, target):
        assert [view["epoch"] for view in shard.maps] == moved["epochs"]
        assert shard.maps[-1]["shard_of_slot"][slot] == 1
    view = controller.register_shard({"shard_id": 1, "shard_epoch": 7, "public": "127.0.0.1:1", "internal": "x",
                                      "token": "secret", "certificate_pem": b""})
    assert view["shard_of_slot"][slot] == 1 and view["endpoints"][1] == {"public": "127.0.0.1:1", "shard_epoch": 7}
    assert source.maps[-1] == view and "token" not in str(view)  # secrets stay with the shard


def test_another_move_waits_until_the_written_down_move_is_finished(grid):
    """Found by review: an operator's move that ran before the restarted controller's
    resume (it retries every 2 s while a shard restarts) was undone by the stale
    resume, and the slot's old records, parked at its first source, came back
    with it: both debits were lost. Now no other move starts until the written-down
    one is finished, and a slot coming back to a shard drops what was parked there."""
    [shard0, shard1] = grid.shards
    slot = 1
    alice = subscriber_in(slot)
    open_account(shard0, alice)
    # A run moving the slot 0 -> 1 died between its switch and its drop: shard 0 keeps it parked.
    exported = shard0.do(ops.ExportSlots((slot,), SLOTS))
    shard1.do(ops.ImportSlots((slot,), exported.records))
    owners = list(ShardMap.even(SLOTS, SHARDS).shard_of_slot)
    owners[slot] = 1
    write_map(grid.data_dir, owners, 2, {"slots": [slot], "target": 1})

    restarted = grid.controller()  # Ray restarts it; its resume thread waits (a shard is restarting)
    debit(shard1, alice, "on-1", 5)  # alice is served at shard 1 meanwhile
    with pytest.raises(controller_module.MoveUnfinished, match="not finished"):
        restarted.move_slots([slot], 0)  # the operator's move back is refused for now
    assert owner_in_map(grid.data_dir, slot) == 1
    [resume] = grid.deferred
    resume.target(*resume.args)  # the resume finishes the old move: shard 0 drops what it parked
    assert restarted.unfinished_move() is None and not shard0.state._parked.get(slot)

    restarted.move_slots([slot], 0)  # now the operator's move runs
    assert owner_in_map(grid.data_dir, slot) == 0
    debit(shard0, alice, "on-0", 3)
    assert balance(shard0, alice) == BALANCE - 8 * PRICE
    restarted.move_slots([slot], 1)  # and away again: only her current records travel
    assert balance(shard1, alice) == BALANCE - 8 * PRICE
    for shard in grid.shards:
        shard.state.check_invariants()


def test_a_failed_move_stays_written_down_and_a_restarted_controller_finishes_it(grid):
    """Found by review: a later move overwrote, then crossed out, the move a failed
    run had written down, leaving its slots frozen with nothing to resume."""
    [shard0, shard1] = grid.shards
    frozen_slot, other_slot = 1, 2  # shard 0's and shard 1's in the even map
    alice = subscriber_in(frozen_slot)
    open_account(shard0, alice)
    debit(shard0, alice, "before", 2)
    controller = grid.controller()
    shard1.fail_next = ops.ImportSlots  # the target restarting: the first move fails after its export
    with pytest.raises(ConnectionError):
        controller.move_slots([frozen_slot], 1)
    assert frozen_slot in shard0.state.meta.slots_out  # frozen at the source, nothing lost
    assert controller.unfinished_move()["slots"] == [frozen_slot]
    with pytest.raises(controller_module.MoveUnfinished):
        controller.move_slots([other_slot], 0)  # an unrelated move waits for it
    # The controller dies now; Ray restarts it and it finishes the move by itself.
    restarted = grid.controller()
    assert restarted.unfinished_move() == {"slots": [frozen_slot], "target": 1, "sources": [0]}
    [resume] = grid.deferred
    resume.target(*resume.args)
    assert restarted.unfinished_move() is None
    assert owner_in_map(grid.data_dir, frozen_slot) == 1
    assert frozen_slot in shard0.state.meta.slots_out and not shard0.state._parked.get(frozen_slot)
    assert balance(shard1, alice) == BALANCE - 2 * PRICE
    restarted.move_slots([other_slot], 0)  # and then the other move runs
    assert owner_in_map(grid.data_dir, other_slot) == 0
    for shard in grid.shards:
        shard.state.check_invariants()
