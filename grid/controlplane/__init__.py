"""The control plane: Ray places shard actors on nodes and restarts them, hosts
the controller and its shard map (slot owners and each shard's data-plane
endpoint), moves slots, takes snapshots and audits. Every Ray API call of the
grid is here (cluster); no operation of a charge rides a Ray call.
"""
