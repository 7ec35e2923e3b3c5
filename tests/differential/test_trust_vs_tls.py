"""Our trust decisions against grpcio's own handshakes (docs/behaviour.md §3, trust).

Many bundle/chain variants; each is judged by the lockout guard, by load validation and by
real TLS handshakes in both roles (the chain as the caller's client certificate, and as the
server's certificate). Whenever our side says OK the handshake must succeed. The opposite (we
refuse, TLS accepts) is allowed, errs towards refusing, and is counted and printed; for
variants whose anchor is an X.509 v1 root both must agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gnoicert.daemon.policy import bundle_locks_out
from gnoicert.pki.chain import check_leaf
from gnoicert.pki.errors import PkiError
from tests.differential.harness import SERVER_NAME, pem, tls_judge
from tests.support.x509v1 import make_v1

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Key


@dataclass(frozen=True)
class Variant:
    name: str
    bundle: tuple[x509.Certificate, ...]
    chain: tuple[x509.Certificate, ...]  # leaf first, then the intermediates it sends
    key: ec.EllipticCurvePrivateKey  # the leaf's
    must_agree: bool = False  # a v1 root: our verdict and TLS's must be the same


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ski(key: Key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
_NO_SIGN_USAGE = x509.KeyUsage(True, False, False, False, False, False, True, False, False)


def make(
    key: Key,
    cn: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    basic_constraints: bool = True,
    usage: x509.KeyUsage | None = None,
    ski: bool = True,
    aki: x509.AuthorityKeyIdentifier | None = None,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
    extra: Sequence[x509.ExtensionType] = (),
    critical: Sequence[x509.ExtensionType] = (),
    signer: Key | None = None,
) -> Issued:
    """A v3 certificate; self-signed when issuer is None. Leaves get the SAN the judge dials."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca, path_length), critical=True)
    if ca:
        builder = builder.add_extension(usage or _CA_USAGE, critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False
        )
    if ski:
        builder = builder.add_extension(_ski(key), critical=False)
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    for extension in critical:
        builder = builder.add_extension(extension, critical=True)
    sign_with = signer or (issuer.key if issuer else key)
    return Issued(builder.sign(sign_with, hashes.SHA256()), key)


def full_aki(
    issuer: x509.Certificate, key: Key, serial: int | None = None
) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier(
        _ski(key).digest,
        [x509.DirectoryName(issuer.issuer)],
        issuer.serial_number if serial is None else serial,
    )


def _v1(key: Key, cn: str, issuer: Issued | None = None, **window: dt.datetime) -> Issued:
    times = {"not_before": NOW - DAY, "not_after": NOW + 30 * DAY, **window}
    parent = (issuer.cert, issuer.key) if issuer else None
    return Issued(make_v1(key, cn, parent, **times), key)


def variants() -> list[Variant]:
    """Every family the issue names, each with a passing and a failing member."""
    ec_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(8)]
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # RSA-1024 issuers are a variant under test (Junos supports them).
    weak_size = 1024
    rsa1024 = [
        rsa.generate_private_key(public_exponent=65537, key_size=weak_size) for _ in range(2)
    ]
    leaf_key = ec_keys[7]
    out: list[Variant] = []

    def add(name: str, bundle: Sequence[Issued], chain: Sequence[Issued], **kw: Any) -> None:
        out.append(
            Variant(
                name, tuple(b.cert for b in bundle), tuple(c.cert for c in chain), leaf_key, **kw
            )
        )

    def leaf(issuer: Issued, **kw: Any) -> Issued:
        return make(leaf_key, "leaf", issuer, **kw)

    root = make(ec_keys[0], "Root", ca=True)
    inter = make(ec_keys[1], "Issuing CA", root, ca=True)
    add("v3 root, direct leaf", [root], [leaf(root)])
    add("v3 root, intermediate sent", [root], [leaf(inter), inter])
    add("root and intermediate in bundle", [root, inter], [leaf(inter)])
    add("intermediate alone in bundle", [inter], [leaf(inter)])
    add("intermediate missing", [root], [leaf(inter)])
    add("unrelated root", [make(ec_keys[2], "Other Root", ca=True)], [leaf(root)])
    add("forged leaf", [root], [leaf(root, signer=ec_keys[2])])
    add("leaf itself in bundle", [leaf(root)], [leaf(root)])

    # X.509 v1 roots (gnxi's test CA) and v1 intermediates.
    v1_root = _v1(rsa2048, "v1 Root")
    v1_inter = make(ec_keys[3], "v3 under v1", v1_root, ca=True)
    add("v1 root, direct leaf", [v1_root], [leaf(v1_root)], must_agree=True)
    add("v1 root, intermediate in bundle", [v1_root, v1_inter], [leaf(v1_inter)], must_agree=True)
    add("v1 root, intermediate sent", [v1_root], [leaf(v1_inter), v1_inter])
    add("v1 root, intermediate missing", [v1_root], [leaf(v1_inter)], must_agree=True)
    v1_rsa1024 = _v1(rsa1024[0], "v1 weak Root")
    add("v1 RSA-1024 root", [v1_rsa1024], [leaf(v1_rsa1024)], must_agree=True)
    v1_old = _v1(ec_keys[4], "v1 expired Root", not_before=NOW - 9 * DAY, not_after=NOW - DAY)
    add("v1 expired root", [v1_old], [leaf(v1_old)], must_agree=True)
    v1_middle = _v1(ec_keys[4], "v1 Middle", root)
    add("v1 intermediate", [root, v1_middle], [leaf(v1_middle)])

    # Authority key identifier: issuer + serial, key ID.
    rekeyed = make(ec_keys[0], "Root", ca=True)  # same key and name, another serial
    named = leaf(root, aki=full_aki(root.cert, root.key))
    add("AKI issuer+serial match", [root], [named])
    add("AKI serial names another root", [rekeyed], [named])
    add("AKI serial, both roots", [rekeyed, root], [named])
    wrong_name = x509.AuthorityKeyIdentifier(
        _ski(root.key).digest, [x509.DirectoryName(_name("Elsewhere"))], root.cert.serial_number
    )
    add("AKI issuer name mismatch", [root], [leaf(root, aki=wrong_name)])
    bad_id = x509.AuthorityKeyIdentifier(b"\x02" * 20, None, None)
    add("AKI key ID mismatch", [root], [leaf(root, aki=bad_id)])
    bare_root = make(ec_keys[5], "Bare Root", ca=True, ski=False)
    add("AKI key ID, root without SKI", [bare_root], [leaf(bare_root, aki=bad_id)])
    good_id = x509.AuthorityKeyIdentifier(_ski(root.key).digest, None, None)
    impostor = make(ec_keys[2], "Root", ca=True)
    add("namesake roots, AKI key ID", [impostor, root], [leaf(root, aki=good_id)])

    # pathLenConstraint.
    root0 = make(ec_keys[5], "Root pathlen 0", ca=True, path_length=0)
    under0 = make(ec_keys[1], "Under pathlen 0", root0, ca=True)
    add("pathlen 0 root, direct leaf", [root0], [leaf(root0)])
    add("pathlen 0 root, intermediate", [root0, under0], [leaf(under0)])
    add("pathlen 0 root, intermediate sent", [root0], [leaf(under0), under0])
    inter0 = make(ec_keys[1], "Inter pathlen 0", root, ca=True, path_length=0)
    sub = make(ec_keys[3], "Sub CA", inter0, ca=True)
    add("pathlen 0 intermediate, sub CA", [root], [leaf(sub), sub, inter0])
    add("pathlen 0 intermediate, leaf", [root], [leaf(inter0), inter0])

    # Name constraints.
    def constrained(cn: str, permitted: str | None, excluded: str | None) -> Issued:
        nc = x509.NameConstraints(
            [x509.DNSName(permitted)] if permitted else None,
            [x509.DNSName(excluded)] if excluded else None,
        )
        return make(ec_keys[6], cn, root, ca=True, critical=[nc])

    for cn, permitted, excluded in (
        ("NC permits it", SERVER_NAME, None),
        ("NC permits another", "other.test", None),
        ("NC excludes it", None, SERVER_NAME),
    ):
        ca = constrained(cn, permitted, excluded)
        add(f"{cn}, in bundle", [root, ca], [leaf(ca)])
        add(f"{cn}, sent", [root], [leaf(ca), ca])

    # Validity of the CAs.
    for label, before, after in (
        ("expired", NOW - 9 * DAY, NOW - DAY),
        ("not yet valid", NOW + DAY, NOW + 9 * DAY),
    ):
        dated_root = make(ec_keys[4], f"{label} Root", ca=True, not_before=before, not_after=after)
        add(f"{label} root", [dated_root], [leaf(dated_root)])
        dated = make(ec_keys[3], f"{label} CA", root, ca=True, not_before=before, not_after=after)
        add(f"{label} intermediate, sent", [root], [leaf(dated), dated])
        add(f"{label} intermediate, in bundle", [root, dated], [leaf(dated)])

    # Key types and sizes.
    weak_root = make(rsa1024[0], "RSA-1024 Root", ca=True)
    weak_inter = make(rsa1024[1], "RSA-1024 CA", weak_root, ca=True)
    add("RSA-1024 root", [weak_root], [leaf(weak_root)])
    add("RSA-1024 root and intermediate", [weak_root, weak_inter], [leaf(weak_inter)])
    add("RSA-1024 intermediate missing", [weak_root], [leaf(weak_inter)])
    strong = make(rsa2048, "RSA-2048 Root", ca=True)
    p384_ca = make(p384, "P-384 CA", strong, ca=True)
    add("RSA-2048 root, P-384 intermediate", [strong, p384_ca], [leaf(p384_ca)])

    # CA flags.
    no_bc_root = make(ec_keys[2], "No-BC Root", basic_constraints=False)
    add("v3 root without basicConstraints", [no_bc_root], [leaf(no_bc_root)])
    not_ca = make(ec_keys[3], "Not a CA", root)
    add("intermediate not a CA", [root, not_ca], [leaf(not_ca)])
    no_sign = make(ec_keys[3], "No keyCertSign", root, ca=True, usage=_NO_SIGN_USAGE)
    add("intermediate without keyCertSign", [root, no_sign], [leaf(no_sign)])
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    odd_ca = make(ec_keys[3], "Odd CA", root, ca=True, critical=[odd])
    add("unknown critical extension on a CA", [root, odd_ca], [leaf(odd_ca)])
    return out


def _ours(variant: Variant) -> tuple[bool, bool, bool]:
    """(guard accepts it as the caller's, guard accepts it as the server's, load accepts)."""
    leaf, sent = variant.chain[0], variant.chain[1:]
    as_caller = (
        bundle_locks_out(
            variant.bundle,
            server_chain=None,
            caller_certificate=leaf,
            bundle_verifies_clients=True,
        )
        is None
    )
    as_server = (
        bundle_locks_out(
            variant.bundle,
            server_chain=variant.chain,
            caller_certificate=None,
            bundle_verifies_clients=False,
        )
        is None
    )
    try:
        check_leaf(leaf, sent, variant.bundle)
    except PkiError:
        loads = False
    else:
        loads = True
    return as_caller, as_server, loads


@pytest.mark.timeout(120)
async def test_our_trust_never_accepts_what_tls_refuses() -> None:
    cases = variants()
    assert len(cases) >= 45
    broken: list[str] = []
    stricter: list[str] = []
    async with tls_judge() as judge:
        for variant in cases:
            bundle, chain = pem(*variant.bundle), pem(*variant.chain)
            tls_caller = await judge.caller_accepted(bundle, variant.key, chain)
            tls_server = await judge.server_accepted(bundle, variant.key, chain)
            as_caller, as_server, loads = _ours(variant)
            for role, ours, tls in (
                ("guard/caller", as_caller, tls_caller),
                ("guard/server", as_server, tls_server),
                ("load", loads, tls_server),
            ):
                if ours and not tls:
                    broken.append(f"{variant.name}: {role} accepts, TLS refuses")
                elif tls and not ours:
                    line = f"{variant.name}: {role} refuses, TLS accepts"
                    (broken if variant.must_agree else stricter).append(line)
    print(f"\n{len(cases)} variants; we refuse where TLS accepts in {len(stricter)} checks:")
    for line in stricter:
        print("  " + line)
    assert not broken, "\n".join(broken)
