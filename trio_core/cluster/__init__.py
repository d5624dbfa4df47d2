"""The cluster on Redis (issue 20): one shared process store, placement, leases with fencing,
failover and Core v17's ``/api/v3/cluster`` API. Off unless ``cluster.enable``; see
docs/CLUSTER.md."""
