"""The operator library: channels, every RPC, the Install and Rotate workflows, the local CA.

Its modules and their jobs are listed in docs/architecture.md ("Modules", `client`); the
`gnoicert` command is a separate package (`cli`, beside this one) that this one never imports.
The public names are re-exported by the top-level `gnoicert` package; this package imports
nothing itself, so the CLI starts without loading grpcio.
"""
