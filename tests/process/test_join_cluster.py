"""`grid serve --ray-address` joins an existing Ray cluster instead of starting one."""

import pytest

from grid_client import ChargingClient, pb
from server_process import RayHead, ServerProcess

pytestmark = pytest.mark.slow


def test_grid_serve_joins_an_existing_ray_cluster(tmp_path):
    head = RayHead().start()
    server = ServerProcess(tmp_path / "grid-data", ray_address=head.address, env=head.env)
    try:
        server.start()
        with ChargingClient(server.target) as client:
            client.put_tariff("p", [{"rating_group": 1, "unit": pb.EVENTS, "price_micros": 5, "rate_units": 1,
                                     "increment_units": 1}])
            client.create_account("erin", "EUR", "p")
            assert client.top_up("erin", 100).balance_micros == 100
            assert client.debit("erin", 3, rating_group=1).charged_micros == 15
        # The shards run on the cluster we started, not on a private one.
        names = _actor_names(head)
        assert sum("shard" in name for name in names) == 2, names
        assert server.terminate() == 0
    finally:
        server.kill()
        head.stop()


def _actor_names(head: RayHead) -> list[str]:
    import os
    import subprocess
    import sys

    # A separate driver process: this test process may already be connected to another Ray.
    code = (
        "import ray; ray.init(address=%r, logging_level='ERROR'); "
        "print('\\n'.join(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)))"
    ) % head.address
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **head.env})
    return output.stdout.split()
