"""The device PKI: certificate material and the crash-safe store. Knows nothing of gRPC."""
