"""The operator side: channels, workflows, the local CA and the gnoicert CLI.

Modules, one job each:
    channel     ChannelOptions and grpc.aio channels (TLS, mutual TLS, name override, metadata)
    workflows   CertClient: every RPC, and the Install and Rotate workflows (async)
    streams     one Install/Rotate stream: write, read, read to the end, errors translated
    sync        SyncCertClient: the same, blocking, on its own asyncio.Runner
    steps       Install/Rotate decisions with no I/O (key source, material split, step order)
    messages    protobuf request building and response parsing
    preflight   checks on signed material before anything is sent
    validation  the rotate validation step (new connection, fingerprint, probe)
    tlsprobe    the certificate a new TLS connection gets (Python ssl; grpcio cannot say)
    certinfo    certificates and CSRs described for people
    signer, ca  the Signer protocol, the external-command signer, the local file CA
    models, errors, hints   results, the error tree, and the hints shown to people
    cli, commands, output, demo   the gnoicert command

The public names are re-exported by the top-level `gnoicert` package; this package imports
nothing itself, so the CLI starts without loading grpcio.
"""
