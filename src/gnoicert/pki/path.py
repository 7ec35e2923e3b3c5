"""Path building by our own rules, the rules of the TLS stack (docs/behaviour.md §3, trust).

Which certificate may issue which, checked field by field: names, the authority key
identifier (key ID, issuer name and serial, as BoringSSL and OpenSSL check it), signature, CA
constraints, validity. A self-signed certificate in the bundle is a trust anchor whether it is
X.509 v1 or v3; every other CA of a path must be a v3 CA. Name constraints are not checked
here: chain.py leaves them to cryptography's verifier, or refuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from gnoicert.pki.crypto import name_text, subject_text

MAX_DEPTH = 8
_MAX_SIGNATURE_CHECKS = 256

_ExtensionT = TypeVar("_ExtensionT", bound=x509.ExtensionType)


def extension(extensions: x509.Extensions, kind: type[_ExtensionT]) -> _ExtensionT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def is_v1(certificate: x509.Certificate) -> bool:
    return certificate.version is x509.Version.v1


def aki_problem(child: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Why child's authority key identifier rules issuer out, or None (RFC 5280 4.2.1.1).

    TLS stacks check all three fields when present: key ID against the issuer's subject key
    identifier, issuer name against the issuer's own issuer name, serial against its serial.
    """
    try:
        aki = extension(child.extensions, x509.AuthorityKeyIdentifier)
        ski = extension(issuer.extensions, x509.SubjectKeyIdentifier)
    except ValueError:
        return f"certificate {subject_text(child)} or its issuer has malformed extensions"
    if aki is None:
        return None
    name = subject_text(issuer)
    if aki.key_identifier is not None and ski is not None and aki.key_identifier != ski.digest:
        return (
            f"the authority key identifier of {subject_text(child)} does not match the subject "
            f"key identifier of {name}"
        )
    serial = aki.authority_cert_serial_number
    if serial is not None and serial != issuer.serial_number:
        return (
            f"the authority key identifier of {subject_text(child)} names issuer serial "
            f"{serial:x}, but {name} has serial {issuer.serial_number:x}"
        )
    directory = next(
        (gn.value for gn in aki.authority_cert_issuer or () if isinstance(gn, x509.DirectoryName)),
        None,
    )
    if directory is not None and directory != issuer.issuer:
        return (
            f"the authority key identifier of {subject_text(child)} names issuer "
            f"{name_text(directory)}, but {name} was issued by {name_text(issuer.issuer)}"
        )
    return None


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Self-issued with its own key: a root the TLS stack ends a path at."""
    if certificate.subject != certificate.issuer or aki_problem(certificate, certificate):
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def has_unknown_critical(extensions: x509.Extensions) -> bool:
    return any(
        ext.critical and isinstance(ext.value, x509.UnrecognizedExtension) for ext in extensions
    )


def issuer_problem(
    child: x509.Certificate,
    issuer: x509.Certificate,
    *,
    below: int,
    anchor: bool,
    at: dt.datetime | None,
    skew: dt.timedelta,
) -> str | None:
    """Why issuer cannot have issued child in a valid path, or None.

    below counts the non-self-issued CAs between child and the leaf (pathLenConstraint,
    RFC 5280 6.1.4); anchor says issuer is a certificate of the bundle.
    """
    name = subject_text(issuer)
    problem = aki_problem(child, issuer)
    if problem is not None:
        return problem
    if at is not None and (
        issuer.not_valid_before_utc > at + skew or issuer.not_valid_after_utc < at - skew
    ):
        return f"CA certificate {name} is outside its validity period"
    if is_v1(issuer):
        if not (anchor and is_self_signed(issuer)):
            return f"CA certificate {name} is X.509 v1 and not a self-signed root of the bundle"
    else:
        try:
            extensions = issuer.extensions
        except ValueError:
            return f"CA certificate {name} has malformed extensions"
        constraints = extension(extensions, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            return f"certificate {name} is not a CA certificate (basicConstraints cA is not set)"
        if constraints.path_length is not None and below > constraints.path_length:
            return f"the path length constraint of CA certificate {name} is violated"
        key_usage = extension(extensions, x509.KeyUsage)
        if key_usage is not None and not key_usage.key_cert_sign:
            return f"the keyUsage of CA certificate {name} lacks keyCertSign"
        if has_unknown_critical(extensions):
            return f"CA certificate {name} has an unrecognised critical extension"
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return f"the signature of {subject_text(child)} does not match the key of {name}"
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"the signature of {subject_text(child)} by {name} cannot be verified"
    return None


def no_path(certificate: x509.Certificate) -> str:
    return (
        f"no path to a trusted CA from {subject_text(certificate)} (issuer "
        f"{name_text(certificate.issuer)}); send the missing intermediates or the issuing CA"
    )


def paths(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors_named: dict[bytes, list[x509.Certificate]],  # the bundle by subject DER
    *,
    at: dt.datetime | None,
    skew: dt.timedelta,
    reasons: list[str],
) -> Iterator[tuple[x509.Certificate, ...]]:
    """Every path (leaf first, a certificate of the bundle last) that passes issuer_problem.

    Any certificate of the bundle ends a path (grpcio's TLS stack allows partial chains), but
    an X.509 v1 one only when it is self-signed. Depth first; intermediates in any order;
    bounded in depth and signature checks. Each refused candidate appends its reason to
    reasons. A leaf that is itself in the bundle is a path of one.
    """
    if leaf in anchors_named.get(leaf.subject.public_bytes(), ()):
        yield (leaf,)
        return
    try:
        if has_unknown_critical(leaf.extensions):
            reasons.append(
                f"certificate {subject_text(leaf)} has an unrecognised critical extension"
            )
            return
    except ValueError:
        reasons.append(f"certificate {subject_text(leaf)} has malformed extensions")
        return
    pool: dict[bytes, list[x509.Certificate]] = {}
    for certificate in intermediates:
        pool.setdefault(certificate.subject.public_bytes(), []).append(certificate)
    budget = [_MAX_SIGNATURE_CHECKS]

    def extend(path: tuple[x509.Certificate, ...]) -> Iterator[tuple[x509.Certificate, ...]]:
        child = path[-1]
        issuer_name = child.issuer.public_bytes()
        anchors = anchors_named.get(issuer_name, [])
        candidates = [(a, True) for a in anchors] + [
            (c, False) for c in pool.get(issuer_name, []) if c not in anchors
        ]
        if not candidates:
            reasons.append(no_path(child))
            return
        below = sum(1 for cert in path[1:] if cert.subject != cert.issuer)
        for candidate, is_anchor in candidates:
            if candidate in path:
                continue
            if len(path) >= MAX_DEPTH:
                reasons.append(f"the chain is longer than {MAX_DEPTH} certificates")
                return
            if budget[0] <= 0:
                reasons.append("too many candidate issuers")
                return
            budget[0] -= 1
            problem = issuer_problem(
                child, candidate, below=below, anchor=is_anchor, at=at, skew=skew
            )
            if problem is not None:
                reasons.append(problem)
            elif is_anchor:
                yield (*path, candidate)
            else:
                yield from extend((*path, candidate))

    yield from extend((leaf,))
