"""A grid on a several-node Ray cluster on one machine (ray.cluster_utils.Cluster):
shards placed on the nodes meant for them, two front doors routing by one map,
a node lost under load, then the money checked.

Run by tests/process/test_multinode.py as its own process (a pytest process may
already hold a connection to another Ray). Prints one JSON report on stdout.

    python tests/process/multinode_driver.py WORK_DIR [--seconds S]

The data directory is one path every node reaches (here: the same disk; on a
cluster: a network volume), which is how a shard survives losing its node: Ray
restarts the actor on another node with the shard resource and it reopens its
RocksDB by path, refusing to start empty where its data was.
"""

import argparse
import json
import pathlib
import sys
import threading
import time

import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from server_process import ServerProcess  # noqa: E402

from grid_client import ChargingClient, GridError, RetryPolicy, pb  # noqa: E402

SUBSCRIBERS = 40
TOP_UP_MICROS = 10_000_000
PRICE_MICROS = 1_000  # an event
REQUESTS_MAX = 4_000  # per front door: the load is bounded in count and in time


def shard_nodes() -> dict[str, str]:
    """Each shard actor's node, as the shard itself reports it (info())."""
    found = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if "-shard-" in actor["name"]:
            try:
                handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                found[actor["name"]] = ray.get(handle.info.remote(), timeout=5)["node_id"]
            except Exception:  # restarting: not placed yet
                continue
    return found


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


class Load(threading.Thread):
    """Direct debits through one front door, each with its own request id; what
    each request became is settled with GetTransaction at the end."""

    def __init__(self, target: str, name: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.target, self.name, self.seconds = target, name, seconds
        self.sent: list[tuple[str, str]] = []  # (subscriber, request id)
        self.acknowledged = 0
        self.unknown = 0
        self.stop = threading.Event()

    def run(self) -> None:
        retry = RetryPolicy(attempts=8, timeout_s=5.0)
        with ChargingClient(self.target, retry=retry) as client:
            deadline = time.monotonic() + self.seconds
            for number in range(REQUESTS_MAX):
                if self.stop.is_set() or time.monotonic() > deadline:
                    break
                subscriber = f"sub-{number % SUBSCRIBERS}"
                request_id = f"{self.name}-{number}"
                self.sent.append((subscriber, request_id))
                try:
                    reply = client.debit(subscriber, 1, rating_group=1, request_id=request_id)
                    self.acknowledged += reply.result == pb.SUCCESS
                except GridError:
                    self.unknown += 1  # settled below, by request id


def settle(target: str, loads: list[Load]) -> dict[str, int]:
    """Charged micros per subscriber, from what each request id became."""
    charged: dict[str, int] = {}
    with ChargingClient(target) as client:
        for load in loads:
            for subscriber, request_id in load.sent:
                found = client.get_transaction(subscriber, request_id)
                if found.found and found.debit.result == pb.SUCCESS:
                    charged[subscriber] = charged.get(subscriber, 0) + found.debit.charged_micros
    return charged


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir", type=pathlib.Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    report: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    # Two nodes meant for shards, room for two shards each; the head takes none.
    shard_hosts = [cluster.add_node(num_cpus=1, resources={"grid_shard": 2}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR")
    data_dir = args.work_dir / "grid-data"
    doors = []
    try:
        for _ in range(2):
            door = ServerProcess(data_dir, shards=2, ray_address=cluster.address)
            door.extra_args = ["--shard-resource", "grid_shard"]
            doors.append(door.start())
        placement = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(shard_nodes()), 60,
                             "two shards alive")
        head_id = cluster.head_node.node_id
        report["placement"] = {"shards_on_shard_nodes": all(
            node in {host.node_id for host in shard_hosts} for node in placement.values()),
            "distinct_nodes": len(set(placement.values())), "on_head": sum(n == head_id for n in placement.values())}

        first, second = (ChargingClient(door.target) for door in doors)
        with first, second:
            first.put_tariff("events", [{"rating_group": 1, "unit": pb.EVENTS, "price_micros": PRICE_MICROS,
                                         "rate_units": 1, "increment_units": 1}])
            for index in range(SUBSCRIBERS):
                first.create_account(f"sub-{index}", "EUR", "events", request_id=f"create-{index}")
                first.top_up(f"sub-{index}", TOP_UP_MICROS, request_id=f"top-up-{index}")
            # One map for both: a hold taken through one front door is charged through the other.
            hold = first.reserve("sub-0", "s", 1, 5)
            report["cross_door_debit"] = pb.Result.Name(
                second.debit("sub-0", 5, reservation_id=hold.reservation_id, final=True).result)

        # A new map epoch reaches every front door (the same slots: nothing moves yet).
        controller = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                          if a["name"].endswith("-controller"))
        handle = ray.get_actor(controller["name"], namespace=controller["namespace"])
        epoch, _, shard_of_slot = ray.get(handle.shard_map.remote())
        report["map_epoch"] = ray.get(handle.set_map.remote(epoch, tuple(shard_of_slot)))
        time.sleep(5)  # > the front doors' poll interval
        report["doors_saw_epoch"] = [f"shard map epoch {epoch} -> {epoch + 1}" in door.log_path.read_text()
                                     for door in doors]

        accounts_before = ray.get([ray.get_actor(name, namespace="charging-grid").info.remote()
                                   for name in sorted(placement)])
        loads = [Load(door.target, f"door{number}", args.seconds) for number, door in enumerate(doors)]
        for load in loads:
            load.start()
        time.sleep(args.seconds / 3)
        # Lose the node that holds shard 0, under load.
        lost_name = sorted(placement)[0]
        lost_node = next((host for host in shard_hosts if host.node_id == placement[lost_name]), None)
        if lost_node is None:
            raise RuntimeError(f"shard 0 on {placement[lost_name]}, not on a shard node "
                               f"{[host.node_id for host in shard_hosts]} (head {head_id})")
        removed_at = time.monotonic()
        cluster.remove_node(lost_node, allow_graceful=False)
        report["node_removed_at_s"] = round(args.seconds / 3, 1)
        moved = wait_for(lambda: (lambda found: found if found.get(lost_name) not in (None, lost_node.node_id)
                                  else None)(shard_nodes()), 120, "shard 0 restarted on another node")
        report["lost_shard_restarted_on_other_node"] = moved[lost_name] != placement[lost_name]
        report["lost_shard_back_after_s"] = round(time.monotonic() - removed_at, 1)
        for load in loads:
            load.join(timeout=args.seconds + 120)
        accounts_after = ray.get([ray.get_actor(name, namespace="charging-grid").info.remote()
                                  for name in sorted(placement)])
        report["accounts_kept"] = [before["accounts"] == after["accounts"]
                                   for before, after in zip(accounts_before, accounts_after)]
        report["lost_shard_epoch"] = [accounts_before[0]["epoch"], accounts_after[0]["epoch"]]

        # Under load again: every slot of shard 0 moves to shard 1.
        epoch, _, shard_of_slot = ray.get(handle.shard_map.remote())
        moving = [slot for slot, shard in enumerate(shard_of_slot) if shard == 0]
        more = [Load(door.target, f"move{number}", args.seconds) for number, door in enumerate(doors)]
        for load in more:
            load.start()
        time.sleep(args.seconds / 3)
        started = time.monotonic()
        report["slot_move"] = ray.get(handle.move_slots.remote(moving, 1))
        report["slot_move_s"] = round(time.monotonic() - started, 2)
        for load in more:
            load.join(timeout=args.seconds + 120)
        loads += more
        infos = ray.get([ray.get_actor(name, namespace="charging-grid").info.remote() for name in sorted(placement)])
        report["accounts_after_move"] = [info["accounts"] for info in infos]
        report["map_file_epoch"] = json.loads((data_dir / "shard-map.json").read_text())["epoch"]
        report["requests"] = sum(len(load.sent) for load in loads)
        report["acknowledged"] = sum(load.acknowledged for load in loads)
        report["unknown_at_the_client"] = sum(load.unknown for load in loads)

        charged = settle(doors[1].target, loads)
        problems = []
        with ChargingClient(doors[0].target) as client:
            for index in range(SUBSCRIBERS):
                subscriber = f"sub-{index}"
                expected = TOP_UP_MICROS - charged.get(subscriber, 0) - (5 * PRICE_MICROS if index == 0 else 0)
                balance = client.balance(subscriber)
                if (balance.balance_micros, balance.reserved_micros) != (expected, 0):
                    problems.append(f"{subscriber}: {balance.balance_micros}/{balance.reserved_micros} != {expected}")
            audit = client.audit()
        report["charged_micros"] = sum(charged.values())
        report["conservation_problems"] = problems
        report["audit_ok"] = audit.ok
        report["audit_problems"] = [] if audit.ok else json.loads(audit.report_json)
    except BaseException:
        print(json.dumps(report), flush=True)  # what was learned before the failure
        raise
    finally:
        for door in doors:
            door.kill()
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
