"""Library input errors in the command's own words: the option a person typed, by its flag.

The library names options by their Python names (`InputError.field`) and the rule that failed
(`InputError.check`); only this module knows that `ca_file` is spelled `--ca-file`.
"""

from __future__ import annotations

from gnoicert.client.errors import InputError

FLAGS: dict[str, str] = {
    "target": "--target",
    "ca_file": "--ca-file",
    "root_certificates": "--ca-file",
    "cert_file": "--cert",
    "client_certificate": "--cert",
    "key_file": "--key",
    "client_key": "--key",
    "insecure": "--insecure",
    "key_source": "--key-source",
    "force": "--force",
    "timeout": "--timeout",
    "server_name": "--server-name",
}

# (field, check) -> the message with flags; {path} and {detail} come from the error.
_MESSAGES: dict[tuple[str, str], str] = {
    ("insecure", "tls-required"): "a client certificate needs TLS; drop --insecure",
    ("root_certificates", "no-pem-certificate"): (
        "the CA file (--ca-file) holds no usable PEM certificate"
    ),
    ("client_certificate", "no-pem-certificate"): (
        "the client certificate (--cert) holds no usable PEM certificate"
    ),
    ("client_key", "encrypted-key"): (
        "the client key (--key) is encrypted; gRPC needs an unencrypted PEM key"
    ),
    ("client_key", "not-a-key"): "the client key (--key) is not a usable PEM private key",
    ("client_key", "key-mismatch"): (
        "the client key (--key) is not the key of the client certificate (--cert), {detail}"
    ),
    ("target", "missing"): "no target: give --target HOST:PORT",
    ("key_source", "rsa-only"): (
        "the target can only be asked for RSA keys; use --key-source client"
    ),
    ("force", "exists"): "{path} already holds a CA ({detail}); use --force",
}


def flag(field: str) -> str:
    """The command-line spelling of a library option name ("" when the command has none)."""
    return FLAGS.get(field, "")


def input_message(exc: InputError) -> str:
    """The message to print for a library input error: with the flag when one applies."""
    template = _MESSAGES.get((exc.field, exc.check))
    if template is None:
        return str(exc)
    return template.format(path=exc.path, detail=exc.detail)
