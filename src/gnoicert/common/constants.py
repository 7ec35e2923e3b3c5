"""Facts the daemon, the PKI layer, the client and the command share, each defined once here.

Kept free of imports so the command can read its defaults without loading grpcio or
cryptography (docs/behaviour.md §1 for the CA bundle, §5 for the key sizes).
"""

from __future__ import annotations

CA_BUNDLE_ID = "gnoi-ca-bundle"
"""The reserved ID under which a device keeps its CA bundle (never a certificate ID)."""

SERVER_ENDPOINT = "grpc-server"
"""The endpoint name GetCertificates gives the gRPC server's own certificate (EP_DAEMON)."""

SUPPORTED_RSA_KEY_SIZES: tuple[int, ...] = (1024, 2048, 3072, 4096)
"""RSA sizes a target may generate; also the sizes gnoicertd offers by default."""

DEFAULT_RSA_KEY_SIZE = 2048
"""The RSA size used when none is asked for (CSR min_key_size 0, client keys, local CAs)."""

DEFAULT_PORT = 9339
"""The gNMI/gNOI port a target listens on when the address names none."""

EXPORTER_LISTEN = "127.0.0.1:9793"
"""Where `gnoicert exporter` serves /metrics by default (loopback: exposing it is a choice)."""

EXPORTER_INTERVAL_S = 60.0
"""How often the exporter asks every target by default (expiry moves in days, not seconds)."""

"""How many targets the exporter asks at once by default."""

DEFAULT_TIMEOUT_S = 10.0
"""The client's per-RPC timeout."""
