"""Nornir task functions for gNOI certificate management (`pip install gnoicert[nornir]`).

    from gnoicert.nornir import get_certificates, rotate_certificate
    nr.run(task=rotate_certificate, signer=gnoicert.LocalCA.open("ca"))

Each task connects to its host with the client library (tasks.py says which host fields and
data keys it reads) and returns a nornir Result holding the library's result dataclass.
"""

from gnoicert.nornir.tasks import (
    get_certificates,
    install_certificate,
    revoke_certificates,
    rotate_certificate,
)

__all__ = ("get_certificates", "install_certificate", "revoke_certificates", "rotate_certificate")
