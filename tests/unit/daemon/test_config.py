"""target/config.py: every key valid and invalid, paths, and the [[users]] editor."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gnoicert.daemon import config as cfg
from gnoicert.daemon.auth import hash_password, verify_password
from gnoicert.daemon.config import (
    ClientCertificateRequest,
    Config,
    ConfigError,
    Role,
    load_config,
    parse_config,
    set_user_password,
)


@pytest.fixture(scope="module")
def pw_hash() -> str:
    return hash_password("s3cret-pw")


@pytest.fixture(scope="module")
def ca_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def write(tmp_path: Path, text: str, name: str = "gnoicertd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(body: str, tmp_path: Path) -> Config:
    """body is appended to a minimal valid file (state_dir first, so tables may follow)."""
    return load_config(write(tmp_path, 'state_dir = "state"\n' + body))


def error_of(body: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse(body, tmp_path)
    return str(info.value)


class TestDefaults:
    def test_minimal_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'state_dir = "/var/lib/gnoicert"\n')
        c = load_config(path)
        assert c.source == path
        assert c.state_dir == Path("/var/lib/gnoicert")
        assert c.users == ()
        assert c.audit_log is None
        assert c.key_secret_file is None
        assert c.auth_failure_limit == cfg.DEFAULT_AUTH_FAILURE_LIMIT == 5
        assert c.auth_failure_window_s == cfg.DEFAULT_AUTH_FAILURE_WINDOW_S == 60.0
        g = c.grpc
        assert g.listen == cfg.DEFAULT_LISTEN == "127.0.0.1:9339"
        assert (g.listen_host, g.listen_port) == ("127.0.0.1", 9339)
        assert g.local_certificate is None
        assert g.hot_reloading is True
        assert g.max_message_mib == cfg.DEFAULT_MAX_MESSAGE_MIB == 64
        assert g.max_message_bytes == 64 * 1024 * 1024
        assert g.finalize_timeout_s == cfg.DEFAULT_FINALIZE_TIMEOUT_S == 300.0
        assert g.pending_key_lifetime_s == cfg.DEFAULT_PENDING_KEY_LIFETIME_S == 3600.0
        assert g.key_sizes == cfg.DEFAULT_KEY_SIZES == (1024, 2048, 3072, 4096)
        assert g.default_key_size == cfg.DEFAULT_KEY_SIZE == 2048
        assert g.shutdown_grace_s == cfg.DEFAULT_SHUTDOWN_GRACE_S == 5.0
        assert g.mutual_authentication is None

    def test_design_example(self, tmp_path: Path, pw_hash: str) -> None:
        text = f"""
state_dir = "/var/lib/gnoicert"
[grpc]
listen = "127.0.0.1:9339"
local_certificate = "gnoi-server"      # certificate ID the server presents
hot_reloading = true
max_message_mib = 64
finalize_timeout_s = 300
[grpc.mutual_authentication]
certificate_authority = "gnoi-ca-bundle"
client_certificate_request = "require-certificate-and-verify"
[[users]]
name = "ops"
password_hash = "{pw_hash}"
role = "admin"
"""
        c = load_config(write(tmp_path, text))
        assert c.grpc.local_certificate == "gnoi-server"
        assert c.grpc.finalize_timeout_s == 300.0
        assert isinstance(c.grpc.finalize_timeout_s, float)
        mutual = c.grpc.mutual_authentication
        assert mutual is not None
        assert mutual.uses_ca_bundle
        assert mutual.client_certificate_request is ClientCertificateRequest.REQUIRE_AND_VERIFY
        assert c.user("ops") is not None
        assert c.user("nobody") is None

    def test_dataclasses_are_frozen(self, tmp_path: Path) -> None:
        c = parse("", tmp_path)
        with pytest.raises(AttributeError):
            c.state_dir = Path("/x")  # type: ignore[misc]


def _grpc(key: str) -> Callable[[Config], Any]:
    return lambda c: getattr(c.grpc, key)


def _level(c: Config) -> ClientCertificateRequest:
    assert c.grpc.mutual_authentication is not None
    return c.grpc.mutual_authentication.client_certificate_request


VALID: list[tuple[str, Callable[[Config], Any], Any]] = [
    ('[grpc]\nlisten = "127.0.0.1:0"', lambda c: c.grpc.listen, "127.0.0.1:0"),
    ('[grpc]\nlisten = "0.0.0.0:65535"', lambda c: c.grpc.listen_port, 65535),
    ('[grpc]\nlisten = "localhost:50051"', lambda c: c.grpc.listen, "localhost:50051"),
    (
        '[grpc]\nlisten = "[::1]:9339"',
        lambda c: (c.grpc.listen_host, c.grpc.listen),
        ("::1", "[::1]:9339"),
    ),
    ('[grpc]\nlisten = "[::]:0"', lambda c: c.grpc.listen, "[::]:0"),
    (
        '[grpc]\nlocal_certificate = "gnoi-server.v2_x"',
        _grpc("local_certificate"),
        "gnoi-server.v2_x",
    ),
    ('[grpc]\nlocal_certificate = "' + "a" * 64 + '"', _grpc("local_certificate"), "a" * 64),
    ("[grpc]\nhot_reloading = false", _grpc("hot_reloading"), False),
    ("[grpc]\nmax_message_mib = 1", _grpc("max_message_mib"), 1),
    ("[grpc]\nmax_message_mib = 256", _grpc("max_message_mib"), 256),
    ("[grpc]\nfinalize_timeout_s = 0.5", _grpc("finalize_timeout_s"), 0.5),
    ("[grpc]\nfinalize_timeout_s = 10", _grpc("finalize_timeout_s"), 10.0),
    ("[grpc]\npending_key_lifetime_s = 7200", _grpc("pending_key_lifetime_s"), 7200.0),
    ("[grpc]\nkey_sizes = [2048]", _grpc("key_sizes"), (2048,)),
    ("[grpc]\nkey_sizes = [4096, 1024, 4096]", _grpc("key_sizes"), (1024, 4096)),
    ("[grpc]\ndefault_key_size = 3072", _grpc("default_key_size"), 3072),
    ("[grpc]\ndefault_key_size = 1024", _grpc("default_key_size"), 1024),
    ("[grpc]\nkey_sizes = [2048]\ndefault_key_size = 2048", _grpc("default_key_size"), 2048),
    # Unset: 2048, else the next configured size above it, else the largest configured.
    ("[grpc]\nkey_sizes = [3072, 4096]", _grpc("default_key_size"), 3072),
    ("[grpc]\nkey_sizes = [1024]", _grpc("default_key_size"), 1024),
    ("[grpc]\nshutdown_grace_s = 0", _grpc("shutdown_grace_s"), 0.0),
    ("[grpc]\nshutdown_grace_s = 2.5", _grpc("shutdown_grace_s"), 2.5),
    ("auth_failure_limit = 1", lambda c: c.auth_failure_limit, 1),
    ("auth_failure_limit = 100", lambda c: c.auth_failure_limit, 100),
    ("auth_failure_window_s = 0.25", lambda c: c.auth_failure_window_s, 0.25),
    ("auth_failure_window_s = 600", lambda c: c.auth_failure_window_s, 600.0),
    ("", lambda c: (c.audit_log_max_bytes, c.audit_log_files), (64 << 20, 4)),
    ("audit_log_max_mib = 1", lambda c: c.audit_log_max_bytes, 1 << 20),
    ("audit_log_max_mib = 0.5", lambda c: c.audit_log_max_bytes, 1 << 19),
    ("audit_log_files = 2", lambda c: c.audit_log_files, 2),
    (
        'audit_log = "/var/log/gnoicert/audit.jsonl"',
        lambda c: c.audit_log,
        Path("/var/log/gnoicert/audit.jsonl"),
    ),
    (
        'key_secret_file = "/etc/gnoicert/key.secret"',
        lambda c: c.key_secret_file,
        Path("/etc/gnoicert/key.secret"),
    ),
    (
        '[grpc.mutual_authentication]\ncertificate_authority = "gnoi-ca-bundle"\n'
        'client_certificate_request = "no-certificate"',
        _level,
        ClientCertificateRequest.NO_CERTIFICATE,
    ),
    (
        '[grpc.mutual_authentication]\ncertificate_authority = "gnoi-ca-bundle"',
        _level,
        ClientCertificateRequest.REQUIRE_AND_VERIFY,
    ),
]


@pytest.mark.parametrize(("body", "get", "expected"), VALID, ids=[v[0] for v in VALID])
def test_valid_values(
    body: str, get: Callable[[Config], Any], expected: Any, tmp_path: Path
) -> None:
    assert get(parse(body + "\n", tmp_path)) == expected


INVALID: list[tuple[str, str]] = [
    # top level
    ("state_dir2 = 'x'", "state_dir2: unknown key; did you mean 'state_dir'?"),
    ("[grpc]\nlisen = '127.0.0.1:1'", "grpc.lisen: unknown key; did you mean 'listen'?"),
    ("[grpc]\nbogus = 1", "grpc.bogus: unknown key"),
    ("[tls]\nx = 1", "tls: unknown key"),
    ("grpc = 5", "grpc: must be a table"),
    ("audit_log = 5", "audit_log: must be a string, got 5"),
    ("audit_log = ''", "audit_log: must be a non-empty path"),
    ("key_secret_file = true", "key_secret_file: must be a string, got True"),
    ("auth_failure_limit = 0", "auth_failure_limit: must be an integer >= 1, got 0"),
    ("audit_log_max_mib = 0", "audit_log_max_mib: must be a number of MiB from 0.01 to 1048576"),
    ("audit_log_max_mib = 'big'", "audit_log_max_mib: must be a number of MiB"),
    ("audit_log_max_mib = nan", "audit_log_max_mib: must be a number of MiB"),
    ("audit_log_max_mib = true", "audit_log_max_mib: must be a number of MiB"),
    ("audit_log_files = 1", "audit_log_files: must be an integer from 2 to 1000, got 1"),
    ("audit_log_files = 4.5", "audit_log_files: must be an integer from 2 to 1000, got 4.5"),
    ("auth_failure_limit = 2.5", "auth_failure_limit: must be an integer >= 1, got 2.5"),
    ("auth_failure_limit = true", "auth_failure_limit: must be an integer >= 1, got True"),
    ("auth_failure_limit = '5'", "auth_failure_limit: must be an integer >= 1, got '5'"),
    ("auth_failure_window_s = 0", "auth_failure_window_s: must be a number of seconds > 0, got 0"),
    ("auth_failure_window_s = -1.0", "auth_failure_window_s: must be a number of seconds > 0"),
    (
        "auth_failure_window_s = inf",
        "auth_failure_window_s: must be a number of seconds > 0, got inf",
    ),
    (
        "auth_failure_window_s = nan",
        "auth_failure_window_s: must be a number of seconds > 0, got nan",
    ),
    (
        "auth_failure_window_s = false",
        "auth_failure_window_s: must be a number of seconds > 0, got False",
    ),
    # listen
    ("[grpc]\nlisten = 9339", "grpc.listen: must be a string, got 9339"),
    ("[grpc]\nlisten = '127.0.0.1'", "grpc.listen: must be 'host:port', got '127.0.0.1'"),
    (
        "[grpc]\nlisten = '127.0.0.1:65536'",
        "grpc.listen: port must be an integer from 0 to 65535, got '65536'",
    ),
    (
        "[grpc]\nlisten = '127.0.0.1:-1'",
        "grpc.listen: port must be an integer from 0 to 65535, got '-1'",
    ),
    (
        "[grpc]\nlisten = '127.0.0.1:'",
        "grpc.listen: port must be an integer from 0 to 65535, got ''",
    ),
    (
        "[grpc]\nlisten = '127.0.0.1:x'",
        "grpc.listen: port must be an integer from 0 to 65535, got 'x'",
    ),
    ("[grpc]\nlisten = '127.0.0.1: 80'", "grpc.listen: port must be an integer"),
    (
        "[grpc]\nlisten = 'router.example.com:9339'",
        "grpc.listen: host must be an IP address or 'localhost', got 'router.example.com'",
    ),
    ("[grpc]\nlisten = ':9339'", "grpc.listen: host must be an IP address or 'localhost', got ''"),
    ("[grpc]\nlisten = '::1:9339'", "grpc.listen: put an IPv6 address in brackets"),
    ("[grpc]\nlisten = '[::1]'", "grpc.listen: must be '[ipv6]:port'"),
    ("[grpc]\nlisten = '[127.0.0.1]:9339'", "grpc.listen: only IPv6 addresses go in brackets"),
    ("[grpc]\nlisten = '256.1.1.1:9339'", "grpc.listen: host must be an IP address"),
    # local_certificate
    (
        "[grpc]\nlocal_certificate = '../etc/passwd'",
        "grpc.local_certificate: not a valid certificate ID",
    ),
    ("[grpc]\nlocal_certificate = '.hidden'", "grpc.local_certificate: not a valid certificate ID"),
    ("[grpc]\nlocal_certificate = ''", "grpc.local_certificate: not a valid certificate ID"),
    (
        "[grpc]\nlocal_certificate = '" + "a" * 65 + "'",
        "grpc.local_certificate: not a valid certificate ID",
    ),
    (
        "[grpc]\nlocal_certificate = 'gnoi-ca-bundle'",
        "grpc.local_certificate: not a valid certificate ID",
    ),
    ("[grpc]\nlocal_certificate = 7", "grpc.local_certificate: must be a string, got 7"),
    # booleans and numbers
    ("[grpc]\nhot_reloading = 'yes'", "grpc.hot_reloading: must be true or false, got 'yes'"),
    ("[grpc]\nhot_reloading = 1", "grpc.hot_reloading: must be true or false, got 1"),
    (
        "[grpc]\nmax_message_mib = 'x'",
        "grpc.max_message_mib: must be an integer from 1 to 256, got 'x'",
    ),
    (
        "[grpc]\nmax_message_mib = 0",
        "grpc.max_message_mib: must be an integer from 1 to 256, got 0",
    ),
    (
        "[grpc]\nmax_message_mib = 257",
        "grpc.max_message_mib: must be an integer from 1 to 256, got 257",
    ),
    (
        "[grpc]\nmax_message_mib = 64.0",
        "grpc.max_message_mib: must be an integer from 1 to 256, got 64.0",
    ),
    (
        "[grpc]\nfinalize_timeout_s = 0",
        "grpc.finalize_timeout_s: must be a number of seconds > 0, got 0",
    ),
    (
        "[grpc]\nfinalize_timeout_s = '300'",
        "grpc.finalize_timeout_s: must be a number of seconds > 0, got '300'",
    ),
    (
        "[grpc]\npending_key_lifetime_s = -5",
        "grpc.pending_key_lifetime_s: must be a number of seconds > 0",
    ),
    (
        "[grpc]\npending_key_lifetime_s = inf",
        "grpc.pending_key_lifetime_s: must be a number of seconds > 0",
    ),
    ("[grpc]\nshutdown_grace_s = -0.1", "grpc.shutdown_grace_s: must be a number of seconds >= 0"),
    ("[grpc]\nshutdown_grace_s = true", "grpc.shutdown_grace_s: must be a number of seconds >= 0"),
    # key sizes
    (
        "[grpc]\nkey_sizes = []",
        "grpc.key_sizes: must be a non-empty list of RSA key sizes drawn from "
        "1024, 2048, 3072, 4096",
    ),
    ("[grpc]\nkey_sizes = [2048, 512]", "grpc.key_sizes: must be a non-empty list"),
    ("[grpc]\nkey_sizes = [8192]", "grpc.key_sizes: must be a non-empty list"),
    ("[grpc]\nkey_sizes = 2048", "grpc.key_sizes: must be a non-empty list"),
    ("[grpc]\nkey_sizes = ['2048']", "grpc.key_sizes: must be a non-empty list"),
    ("[grpc]\nkey_sizes = [2048.0]", "grpc.key_sizes: must be a non-empty list"),
    (
        "[grpc]\nkey_sizes = [2048, 3072]\ndefault_key_size = 4096",
        "grpc.default_key_size: must be one of the configured grpc.key_sizes (2048, 3072), "
        "got 4096",
    ),
    ("[grpc]\ndefault_key_size = 1000", "grpc.default_key_size: must be one of the configured"),
    ("[grpc]\ndefault_key_size = '2048'", "grpc.default_key_size: must be one of the configured"),
    ("[grpc]\ndefault_key_size = true", "grpc.default_key_size: must be one of the configured"),
    ("default_key_size = 2048", "default_key_size: unknown key"),
    # mutual authentication
    ("[grpc]\nmutual_authentication = 'yes'", "grpc.mutual_authentication: must be a table"),
    (
        "[grpc.mutual_authentication]\nclient_certificate_request = 'no-certificate'",
        "grpc.mutual_authentication.certificate_authority: required",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = 'gnoi-ca-bundle'\nca = 1",
        "grpc.mutual_authentication.ca: unknown key",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = 3",
        "grpc.mutual_authentication.certificate_authority: must be a string, got 3",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = 'ops-ca'",
        "grpc.mutual_authentication.certificate_authority: must be 'gnoi-ca-bundle' "
        "(the store's CA bundle) or the path of a PEM file of CA certificates;",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = ''",
        "grpc.mutual_authentication.certificate_authority: must be a non-empty path",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = 'gnoi-ca-bundle'\n"
        "client_certificate_request = 'always'",
        "grpc.mutual_authentication.client_certificate_request: must be "
        "'require-certificate-and-verify' or 'no-certificate', got 'always'",
    ),
    (
        "[grpc.mutual_authentication]\ncertificate_authority = 'gnoi-ca-bundle'\n"
        "client_certificate_request = 1",
        "grpc.mutual_authentication.client_certificate_request: must be a string",
    ),
    # users
    ("users = 'ops'", "users: must be an array of tables ([[users]]), got 'ops'"),
    ("[users]\nname = 'ops'", "users: must be an array of tables ([[users]])"),
    ("users = ['ops']", "users[0]: must be a table with name and password_hash"),
]


@pytest.mark.parametrize(("body", "message"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_values(body: str, message: str, tmp_path: Path) -> None:
    text = error_of(body + "\n", tmp_path)
    assert text.startswith(f"{tmp_path / 'gnoicertd.toml'}: ")
    assert message in text


@pytest.mark.parametrize(
    "level", ["request-certificate", "request-certificate-and-verify", "require-certificate"]
)
def test_refused_client_certificate_levels_explain_why(level: str, tmp_path: Path) -> None:
    text = error_of(
        "[grpc.mutual_authentication]\ncertificate_authority = 'gnoi-ca-bundle'\n"
        f"client_certificate_request = '{level}'\n",
        tmp_path,
    )
    assert (
        f"grpc.mutual_authentication.client_certificate_request: '{level}' is not supported" in text
    )
    assert "either requires and verifies a client certificate or never asks for one" in text
    assert "'require-certificate-and-verify' or 'no-certificate'" in text


class TestUsers:
    def entry(
        self, name: str = "ops", pw: str = "", role: str | None = None, extra: str = ""
    ) -> str:
        text = f'[[users]]\nname = "{name}"\npassword_hash = "{pw}"\n'
        if role is not None:
            text += f'role = "{role}"\n'
        return text + extra

    def test_roles_and_default(self, tmp_path: Path, pw_hash: str) -> None:
        c = parse(
            self.entry("ops", pw_hash)
            + self.entry("viewer", pw_hash, "read-only")
            + self.entry("root_1.x-y", pw_hash, "admin"),
            tmp_path,
        )
        assert [(u.name, u.role) for u in c.users] == [
            ("ops", Role.ADMIN),
            ("viewer", Role.READ_ONLY),
            ("root_1.x-y", Role.ADMIN),
        ]
        assert verify_password("s3cret-pw", c.users[0].password_hash)

    def test_password_hash_not_in_repr(self, tmp_path: Path, pw_hash: str) -> None:
        c = parse(self.entry("ops", pw_hash), tmp_path)
        assert pw_hash not in repr(c)
        assert pw_hash.split("$")[-1] not in repr(c.users[0])

    @pytest.mark.parametrize("name", ["", "a" * 33, "has space", "ünï", "a/b", "a$b", "x:y"])
    def test_bad_names(self, name: str, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(self.entry(name, pw_hash), tmp_path)
        assert "users[0].name: must be 1-32 characters of A-Z a-z 0-9 . _ -" in text

    def test_name_32_chars_ok(self, tmp_path: Path, pw_hash: str) -> None:
        assert parse(self.entry("n" * 32, pw_hash), tmp_path).users[0].name == "n" * 32

    def test_missing_name(self, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(f'[[users]]\npassword_hash = "{pw_hash}"\n', tmp_path)
        assert "users[0].name: must be 1-32 characters" in text

    def test_duplicate_names(self, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(
            self.entry("ops", pw_hash) + self.entry("ops", pw_hash, "read-only"), tmp_path
        )
        assert "users[1].name: duplicate user name 'ops'" in text

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "hunter2",
            "scrypt$...",
            "bcrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
            "scrypt$16384$8$1$c2FsdHNhbHRzYWx0",
        ],
    )
    def test_bad_password_hash_never_echoed(self, bad: str, tmp_path: Path) -> None:
        text = error_of(self.entry("ops", bad), tmp_path)
        assert "users[0].password_hash: must be a hash 'scrypt$N$r$p$salt$hash'" in text
        assert "gnoicertd passwd ops --config FILE" in text
        if bad:
            assert bad not in text

    def test_missing_password_hash(self, tmp_path: Path) -> None:
        text = error_of('[[users]]\nname = "ops"\n', tmp_path)
        assert "users[0].password_hash: must be a hash" in text
        assert "got nothing" in text

    def test_bad_role(self, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(self.entry("ops", pw_hash, "superuser"), tmp_path)
        assert "users[0].role: must be 'admin' or 'read-only', got 'superuser'" in text

    def test_unknown_user_key(self, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(self.entry("ops", pw_hash, extra='password = "clear"\n'), tmp_path)
        assert "users[0].password: unknown key; did you mean 'password_hash'?" in text
        assert "clear" not in text

    def test_second_entry_named_in_path(self, tmp_path: Path, pw_hash: str) -> None:
        text = error_of(self.entry("a", pw_hash) + self.entry("b", pw_hash, "root"), tmp_path)
        assert "users[1].role:" in text


class TestPaths:
    def test_relative_paths_resolve_against_the_file(self, tmp_path: Path) -> None:
        conf_dir = tmp_path / "etc"
        conf_dir.mkdir()
        text = 'state_dir = "state"\naudit_log = "log/audit.jsonl"\nkey_secret_file = "../secret"\n'
        c = load_config(write(conf_dir, text))
        assert c.state_dir == conf_dir / "state"
        assert c.audit_log == conf_dir / "log" / "audit.jsonl"
        assert c.key_secret_file == conf_dir / ".." / "secret"

    def test_relative_config_path_is_made_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path, 'state_dir = "state"\n')
        monkeypatch.chdir(tmp_path)
        c = load_config(Path("gnoicertd.toml"))
        assert c.source == tmp_path / "gnoicertd.toml"
        assert c.state_dir == tmp_path / "state"
        assert c.state_dir.is_absolute()

    def test_absolute_paths_kept(self, tmp_path: Path) -> None:
        c = parse('audit_log = "/var/log/a.jsonl"\n', tmp_path)
        assert c.audit_log == Path("/var/log/a.jsonl")

    def test_parse_config_without_source_uses_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        c = parse_config('state_dir = "s"\n')
        assert c.source is None
        assert c.state_dir == tmp_path / "s"

    def test_state_dir_required(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"gnoicertd.toml: state_dir: required"):
            load_config(write(tmp_path, "[grpc]\n"))

    @pytest.mark.parametrize("value", ['""', "1", "[]"])
    def test_bad_state_dir(self, value: str, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"gnoicertd.toml: state_dir: must be"):
            load_config(write(tmp_path, f"state_dir = {value}\n"))

    def test_state_dir_that_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "state").write_text("not a directory")
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, 'state_dir = "state"\n'))
        assert info.value.problems == (
            f"{tmp_path / 'gnoicertd.toml'}: state_dir: "
            f"{str(tmp_path / 'state')!r} exists and is not a directory",
        )

    def test_missing_state_dir_is_fine(self, tmp_path: Path) -> None:
        """The daemon makes it at start."""
        assert load_config(write(tmp_path, 'state_dir = "new"\n')).state_dir == tmp_path / "new"

    def test_nul_in_path(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"state_dir: must be a non-empty path"):
            load_config(write(tmp_path, 'state_dir = "a\\u0000b"\n'))

    def test_ca_file_relative_to_config(self, tmp_path: Path, ca_pem: bytes) -> None:
        (tmp_path / "pki").mkdir()
        (tmp_path / "pki" / "ops-ca.pem").write_bytes(ca_pem + ca_pem)
        c = parse(
            '[grpc.mutual_authentication]\ncertificate_authority = "pki/ops-ca.pem"\n', tmp_path
        )
        mutual = c.grpc.mutual_authentication
        assert mutual is not None
        assert not mutual.uses_ca_bundle
        assert mutual.certificate_authority == str(tmp_path / "pki" / "ops-ca.pem")

    def test_ca_file_absolute(self, tmp_path: Path, ca_pem: bytes) -> None:
        ca = tmp_path / "abs-ca.pem"
        ca.write_bytes(ca_pem)
        sub = tmp_path / "etc"
        sub.mkdir()
        c = load_config(
            write(
                sub,
                f'state_dir = "s"\n[grpc.mutual_authentication]\ncertificate_authority = "{ca}"\n',
            )
        )
        assert c.grpc.mutual_authentication is not None
        assert c.grpc.mutual_authentication.certificate_authority == str(ca)

    def test_ca_file_missing(self, tmp_path: Path) -> None:
        text = error_of(
            '[grpc.mutual_authentication]\ncertificate_authority = "nope.pem"\n', tmp_path
        )
        assert "grpc.mutual_authentication.certificate_authority:" in text
        assert f"'{tmp_path / 'nope.pem'}' does not exist" in text

    @pytest.mark.parametrize(
        "content",
        [b"", b"not a pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
    )
    def test_ca_file_without_certificates(self, content: bytes, tmp_path: Path) -> None:
        (tmp_path / "ca.pem").write_bytes(content)
        text = error_of(
            '[grpc.mutual_authentication]\ncertificate_authority = "ca.pem"\n', tmp_path
        )
        assert "holds no PEM certificate" in text

    def test_ca_path_is_a_directory(self, tmp_path: Path) -> None:
        (tmp_path / "cadir").mkdir()
        text = error_of('[grpc.mutual_authentication]\ncertificate_authority = "cadir"\n', tmp_path)
        assert "grpc.mutual_authentication.certificate_authority: cannot read" in text


class TestFileErrors:
    def test_not_found(self, tmp_path: Path) -> None:
        path = tmp_path / "missing.toml"
        with pytest.raises(ConfigError, match=r"missing.toml: configuration file not found"):
            load_config(path)

    def test_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"is a directory"):
            load_config(tmp_path)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
    def test_unreadable(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'state_dir = "s"\n')
        path.chmod(0)
        with pytest.raises(ConfigError, match=r"gnoicertd.toml: cannot read"):
            load_config(path)

    def test_bad_toml_names_line_and_column(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'state_dir = "s"\n[grpc]\nlisten = 127.0.0.1:9339\n')
        with pytest.raises(ConfigError) as info:
            load_config(path)
        text = str(info.value)
        assert text.startswith(f"{path}: invalid TOML:")
        assert "line 3" in text
        assert "column" in text

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "gnoicertd.toml"
        path.write_bytes(b'state_dir = "\xff"\n')
        with pytest.raises(ConfigError, match=r"gnoicertd.toml: not UTF-8"):
            load_config(path)

    def test_string_source_label(self) -> None:
        with pytest.raises(
            ConfigError, match=r"^<string>: grpc.max_message_mib: must be an integer"
        ):
            parse_config('state_dir = "s"\n[grpc]\nmax_message_mib = "x"\n')
        with pytest.raises(ConfigError, match=r"^<string>: invalid TOML: .*line 1"):
            parse_config("state_dir = \n")

    def test_config_error_is_value_error(self) -> None:
        assert issubclass(ConfigError, ValueError)


class TestListenProperty:
    def test_ipv6_in_brackets(self) -> None:
        g = cfg.GrpcConfig(listen_host="::1", listen_port=0)
        assert g.listen == "[::1]:0"
        assert cfg.GrpcConfig(listen_host="10.0.0.1", listen_port=1).listen == "10.0.0.1:1"


class TestSetUserPassword:
    BASE = """\
# gnoicertd configuration -- keep this comment
state_dir = "state"   # where the PKI lives

[grpc]
listen = "127.0.0.1:0"  # ephemeral for tests
key_sizes = [2048, 4096]

[[users]]
name = "ops"
password_hash = "{h}"
role = "read-only"

# trailing comment after users
[grpc.mutual_authentication]
certificate_authority = "gnoi-ca-bundle"
"""

    @pytest.fixture
    def conf(self, tmp_path: Path, pw_hash: str) -> Path:
        path = write(tmp_path, self.BASE.format(h=pw_hash))
        path.chmod(0o640)
        return path

    def test_update_changes_only_the_hash_line(self, conf: Path, pw_hash: str) -> None:
        before = conf.read_text()
        new = hash_password("rotated")
        set_user_password(conf, "ops", new)
        after = conf.read_text()
        assert after == before.replace(pw_hash, new)
        c = load_config(conf)
        assert c.users[0].role is Role.READ_ONLY  # role kept when not given
        assert verify_password("rotated", c.users[0].password_hash)

    def test_update_role(self, conf: Path, pw_hash: str) -> None:
        set_user_password(conf, "ops", pw_hash, Role.ADMIN)
        after = conf.read_text()
        assert after == self.BASE.format(h=pw_hash).replace('role = "read-only"', 'role = "admin"')

    def test_add_user_keeps_everything_else(self, conf: Path, pw_hash: str) -> None:
        before = conf.read_text()
        set_user_password(conf, "viewer", pw_hash, Role.READ_ONLY)
        after = conf.read_text()
        for line in before.splitlines():
            assert line in after.splitlines()
        c = load_config(conf)
        assert [(u.name, u.role) for u in c.users] == [
            ("ops", Role.READ_ONLY),
            ("viewer", Role.READ_ONLY),
        ]
        assert c.grpc.key_sizes == (2048, 4096)
        assert c.grpc.mutual_authentication is not None
        assert "# trailing comment after users" in after
        assert "keep this comment" in after

    def test_add_first_user_default_admin(self, tmp_path: Path, pw_hash: str) -> None:
        path = write(tmp_path, 'state_dir = "state"\n# last line comment\n')
        set_user_password(path, "ops", pw_hash)
        text = path.read_text()
        assert text.startswith('state_dir = "state"\n# last line comment\n')
        c = load_config(path)
        assert [(u.name, u.role) for u in c.users] == [("ops", Role.ADMIN)]

    def test_inline_array_of_users(self, tmp_path: Path, pw_hash: str) -> None:
        path = write(
            tmp_path, f'state_dir = "s"\nusers = [{{name = "a", password_hash = "{pw_hash}"}}]\n'
        )
        set_user_password(path, "b", pw_hash, Role.READ_ONLY)
        set_user_password(path, "a", pw_hash, Role.READ_ONLY)
        c = load_config(path)
        assert [(u.name, u.role) for u in c.users] == [("a", Role.READ_ONLY), ("b", Role.READ_ONLY)]

    def test_mode_preserved(self, conf: Path, pw_hash: str) -> None:
        set_user_password(conf, "ops", hash_password("x"))
        assert stat.S_IMODE(conf.stat().st_mode) == 0o640
        conf.chmod(0o600)
        set_user_password(conf, "new", pw_hash)
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600

    def test_no_temp_files_left(self, conf: Path, pw_hash: str) -> None:
        set_user_password(conf, "ops", pw_hash)
        assert sorted(p.name for p in conf.parent.iterdir()) == ["gnoicertd.toml"]

    def test_symlink_edits_target(self, conf: Path, pw_hash: str, tmp_path: Path) -> None:
        link = tmp_path / "link.toml"
        link.symlink_to(conf)
        set_user_password(link, "viewer", pw_hash)
        assert link.is_symlink()
        assert load_config(conf).user("viewer") is not None

    def test_refuses_bad_name_and_hash(self, conf: Path, pw_hash: str) -> None:
        before = conf.read_bytes()
        with pytest.raises(ConfigError, match=r"user name must be 1-32 characters"):
            set_user_password(conf, "bad name", pw_hash)
        with pytest.raises(ConfigError, match=r"password_hash is not a 'scrypt\$\.\.\.' hash"):
            set_user_password(conf, "ops", "plaintext")
        assert conf.read_bytes() == before

    def test_invalid_result_not_written(self, tmp_path: Path, pw_hash: str) -> None:
        path = write(tmp_path, 'state_dir = "s"\n[grpc]\nmax_message_mib = 1000\n')
        before = path.read_bytes()
        with pytest.raises(ConfigError, match=r"grpc.max_message_mib"):
            set_user_password(path, "ops", pw_hash)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gnoicertd.toml"]

    def test_missing_file(self, tmp_path: Path, pw_hash: str) -> None:
        with pytest.raises(ConfigError, match=r"configuration file not found"):
            set_user_password(tmp_path / "nope.toml", "ops", pw_hash)

    def test_bad_toml(self, tmp_path: Path, pw_hash: str) -> None:
        path = write(tmp_path, "state_dir = \n")
        with pytest.raises(ConfigError, match=r"invalid TOML"):
            set_user_password(path, "ops", pw_hash)

    def test_users_not_an_array(self, tmp_path: Path, pw_hash: str) -> None:
        path = write(tmp_path, 'state_dir = "s"\nusers = "ops"\n')
        with pytest.raises(ConfigError, match=r"users: must be an array of tables"):
            set_user_password(path, "ops", pw_hash)

    def test_crlf_file_kept(self, tmp_path: Path, pw_hash: str) -> None:
        path = tmp_path / "gnoicertd.toml"
        path.write_bytes(b'# c\r\nstate_dir = "s"\r\n')
        set_user_password(path, "ops", pw_hash)
        assert path.read_bytes().startswith(b'# c\r\nstate_dir = "s"\r\n')
        assert load_config(path).user("ops") is not None


class TestEveryFaultAtOnce:
    """An operator fixes the whole file in one pass: each fault is a line naming its key."""

    def test_faults_in_every_section_are_all_reported(self, tmp_path: Path) -> None:
        (tmp_path / "state").write_text("")
        text = """
state_dir = "state"
auth_failure_limit = 0
colour = "blue"
[grpc]
listen = "nowhere"
max_message_mib = 1000
key_sizes = [2048]
default_key_size = 4096
[grpc.mutual_authentication]
certificate_authority = "missing.pem"
[[users]]
name = "a b"
[[users]]
name = "ops"
password_hash = "x"
"""
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text))
        label = f"{tmp_path / 'gnoicertd.toml'}: "
        keys = [problem.removeprefix(label).split(":")[0] for problem in info.value.problems]
        assert sorted(keys) == sorted(
            [
                "colour",
                "state_dir",
                "auth_failure_limit",
                "grpc.listen",
                "grpc.max_message_mib",
                "grpc.default_key_size",
                "grpc.mutual_authentication.certificate_authority",
                "users[0].name",
                "users[1].password_hash",
            ]
        )
        assert all(problem.startswith(label) for problem in info.value.problems)
        assert str(info.value) == "\n".join(info.value.problems)

    def test_one_fault_reads_as_before(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            parse("auth_failure_limit = 0\n", tmp_path)
        assert len(info.value.problems) == 1
        assert str(info.value) == info.value.problems[0]

    def test_duplicate_user_and_a_bad_one_both_named(self, tmp_path: Path, pw_hash: str) -> None:
        entry = f'[[users]]\nname = "ops"\npassword_hash = "{pw_hash}"\n'
        body = entry + entry + '[[users]]\nname = "x"\npassword_hash = "x"\nrole = "god"\n'
        with pytest.raises(ConfigError) as info:
            parse(body, tmp_path)
        text = str(info.value)
        assert "users[1].name: duplicate user name 'ops'" in text
        assert "users[2].password_hash" in text


# -- [metrics], log_format, log_level ------------------------------------------------------------


def test_metrics_are_off_without_the_table_and_loopback_only_unless_allowed() -> None:
    base = 'state_dir = "/tmp/s"\n'
    assert parse_config(base).metrics is None
    on = parse_config(base + '[metrics]\nlisten = "127.0.0.1:0"\n').metrics
    assert on == cfg.MetricsConfig(listen_host="127.0.0.1", listen_port=0)
    assert parse_config(base + '[metrics]\nlisten = "[::1]:9340"\n').metrics is not None
    with pytest.raises(ConfigError, match=r"metrics.listen: 0.0.0.0 is not a loopback address"):
        parse_config(base + '[metrics]\nlisten = "0.0.0.0:9340"\n')
    remote = parse_config(base + '[metrics]\nlisten = "0.0.0.0:9340"\nallow_remote = true\n')
    assert remote.metrics is not None
    assert remote.metrics.allow_remote
    with pytest.raises(ConfigError, match=r"metrics.listen: required"):
        parse_config(base + "[metrics]\n")
    with pytest.raises(ConfigError, match=r"metrics.colour: unknown key"):
        parse_config(base + '[metrics]\nlisten = "127.0.0.1:0"\ncolour = 1\n')
    with pytest.raises(ConfigError, match=r"metrics.allow_remote: must be true or false"):
        parse_config(base + '[metrics]\nlisten = "127.0.0.1:0"\nallow_remote = "yes"\n')


def test_log_format_and_level_have_human_defaults_and_closed_vocabularies() -> None:
    base = 'state_dir = "/tmp/s"\n'
    config = parse_config(base)
    assert (config.log_format, config.log_level) == ("human", "info")
    config = parse_config(base + 'log_format = "json"\nlog_level = "debug"\n')
    assert (config.log_format, config.log_level) == ("json", "debug")
    with pytest.raises(ConfigError) as refused:
        parse_config(base + 'log_format = "xml"\nlog_level = "loud"\n')
    assert len(refused.value.problems) == 2
    assert "log_format: must be one of human, json, got 'xml'" in str(refused.value)
    assert "log_level: must be one of debug, info, warning, error, got 'loud'" in str(refused.value)
