"""Many targets at once: the inventory, sharding and the JSON Lines report.

Modules, one job each:
    inventory   the YAML inventory: parsing with line numbers, layering, templates, selection
    shard       a deterministic split of the selected targets over several machines
    report      the JSON Lines report: records, an fsyncing writer, a tolerant reader, merge
    exporter    the fleet expiry exporter: GetCertificates rounds served as Prometheus gauges

Nothing here runs an RPC; the fleet runner builds CertClients from the resolved targets.

The rollout defaults live here, not in rollout.py: `gnoicert --help` text names them on every
command line, and a one-target `get` must not load the rollout module for two numbers.
"""

DEFAULT_CONCURRENCY = 32
DEFAULT_TARGET_TIMEOUT_S = 300.0
