"""A controller that dies in the middle of a slot move finishes it when Ray
restarts it: the frozen slots are served again without an operator, every
balance is where it was, and both shards' audits add up.

The controller is killed by its fault point (GRID_FAULTS=controller_exit_after_import,
through the Ray head's environment, which its worker processes inherit) between
the import at the target and the map switch: the worst moment, with the
subscribers' records parked at the source and adopted by the target."""

import json
import os
import subprocess
import sys
import time

import pytest

from grid.routing import ShardMap
from grid_client import ChargingClient, pb
from server_process import RayHead, ServerProcess

pytestmark = pytest.mark.slow

SUBSCRIBERS = 24
TOP_UP_MICROS = 1_000_000
PRICE_MICROS = 1_000


def _grid(head: RayHead, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grid.cli", *args, "--ray-address", head.address],
                          capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **head.env})


def _map_file(data_dir) -> dict:
    """The map as the controller wrote it; before any change, the even map of a new grid (epoch 0)."""
    path = data_dir / "shard-map.json"
    if path.exists():
        return json.loads(path.read_text())
    shape = json.loads((data_dir / "grid.json").read_text())
    even = ShardMap.even(shape["slots"], shape["shards"])
    return {"epoch": even.epoch, "slots": even.slots, "shard_of_slot": list(even.shard_of_slot)}


def test_a_controller_killed_mid_move_finishes_the_move_when_it_restarts(tmp_path):
    data_dir = tmp_path / "grid-data"
    head = RayHead()
    head.env["GRID_FAULTS"] = "controller_exit_after_import=1"
    head.start()
    server = ServerProcess(data_dir, ray_address=head.address, env=head.env)
    try:
        server.start()
        with ChargingClient(server.target) as client:
            client.put_tariff("p", [{"rating_group": 1, "unit": pb.EVENTS, "price_micros": PRICE_MICROS,
                                     "rate_units": 1, "increment_units": 1}])
            subscribers = [f"mover-{index}" for index in range(SUBSCRIBERS)]
            for subscriber in subscribers:
                client.create_account(subscriber, "EUR", "p")
                client.top_up(subscriber, TOP_UP_MICROS)
                assert client.debit(subscriber, 3, rating_group=1).result == pb.SUCCESS
            before = _map_file(data_dir)
            shard_zero = [slot for slot, shard in enumerate(before["shard_of_slot"]) if shard == 0]
            assert shard_zero and "moving" not in before

            moved = _grid(head, "cluster", "move-slots", "--data-dir", str(data_dir),
                          "--slots", f"{shard_zero[0]}-{shard_zero[-1]}", "--to", "1")
            assert moved.returncode == 1, moved.stdout + moved.stderr
            assert "the controller stopped during the move" in moved.stderr, moved.stderr

            # Restarted by Ray, the controller finishes the move it had written down.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                after = _map_file(data_dir)
                if "moving" not in after and after["epoch"] > before["epoch"]:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"the move was not finished: {_map_file(data_dir)}")
            assert set(after["shard_of_slot"]) == {1}

            # Every subscriber is served (by shard 1) with its money where it was.
            for subscriber in subscribers:
                assert client.balance(subscriber).balance_micros == TOP_UP_MICROS - 3 * PRICE_MICROS
                assert client.debit(subscriber, 1, rating_group=1).result == pb.SUCCESS
                assert client.balance(subscriber).balance_micros == TOP_UP_MICROS - 4 * PRICE_MICROS
            audit = client.audit()
            assert audit.ok, audit.report_json
            report = json.loads(audit.report_json)
            moved_out = sum(shard["moved_out_micros"] for shard in report["shards"])
            moved_in = sum(shard["moved_in_micros"] for shard in report["shards"])
            assert moved_out == moved_in > 0, report

            # Run again, the move has nothing left to do.
            again = _grid(head, "cluster", "move-slots", "--data-dir", str(data_dir),
                          "--slots", f"{shard_zero[0]}-{shard_zero[-1]}", "--to", "1")
            assert again.returncode == 0, again.stderr
            assert json.loads(again.stdout)["slots"] == 0
        assert _grid(head, "cluster", "stop", "--data-dir", str(data_dir)).returncode == 0
    finally:
        server.kill()
        head.stop()
