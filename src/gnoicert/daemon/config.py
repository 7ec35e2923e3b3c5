"""The daemon's configuration file (TOML), validated up front into frozen dataclasses.

Everything is checked when the file is read, so a bad key stops the daemon at start (or leaves
the running configuration in place on SIGHUP) with a message naming the file and the key.
The layout mirrors the Junos `system services extension-service request-response grpc` stanza;
see docs/operator-guide.md, "Configuration".
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from gnoicert.common.address import format_host_port, parse_host_port
from gnoicert.common.files import write_atomic
from gnoicert.daemon import key_pool
from gnoicert.pki import crypto
from gnoicert.pki.errors import InvalidCertificateId

DEFAULT_LISTEN = "127.0.0.1:9339"
DEFAULT_MAX_MESSAGE_MIB = 64
DEFAULT_FINALIZE_TIMEOUT_S = 300.0
DEFAULT_PENDING_KEY_LIFETIME_S = 3600.0
DEFAULT_KEY_SIZES = crypto.SUPPORTED_RSA_KEY_SIZES
# The least key the target generates whatever min_key_size asks (docs/behaviour.md §5).
DEFAULT_KEY_SIZE = 2048
DEFAULT_SHUTDOWN_GRACE_S = 5.0
DEFAULT_AUDIT_LOG_MAX_MIB = 64  # per file; docs/behaviour.md §7
DEFAULT_AUDIT_LOG_FILES = 4  # the current file and 3 rotated ones
DEFAULT_AUTH_FAILURE_LIMIT = 5
DEFAULT_AUTH_FAILURE_WINDOW_S = 60.0
LOG_FORMATS = ("human", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

MAX_MESSAGE_MIB_LIMIT = 256
# The store's CA bundle, as the value of grpc.mutual_authentication.certificate_authority.
CA_BUNDLE_AUTHORITY = crypto.CA_BUNDLE_ID

_USER_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
if TYPE_CHECKING:  # tomlkit itself is imported by the editing functions only (memory)
    import tomlkit
_STRING_SOURCE = "<string>"
_T = TypeVar("_T")


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the file and the key path.

    problems holds one line per fault, so an operator fixes them all in one pass; the message is
    those lines joined.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Role(enum.StrEnum):
    ADMIN = "admin"
    READ_ONLY = "read-only"


class ClientCertificateRequest(enum.StrEnum):
    """The client-certificate-request levels grpcio can honour (see _REFUSED_LEVELS)."""

    REQUIRE_AND_VERIFY = "require-certificate-and-verify"
    NO_CERTIFICATE = "no-certificate"


# Junos levels that grpcio cannot implement: its server either requires and verifies a client
# certificate or never asks for one (require_client_authentication is a single boolean).
_REFUSED_LEVELS = frozenset(
    {"request-certificate", "request-certificate-and-verify", "require-certificate"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    name: str
    password_hash: str = field(repr=False)
    role: Role = Role.ADMIN


@dataclass(frozen=True, slots=True, kw_only=True)
class MutualAuthentication:
    """An explicit mutual-TLS stanza; it takes precedence over the implicit CA-bundle rule.

    certificate_authority is CA_BUNDLE_AUTHORITY or the absolute path of a PEM file of CAs.
    """

    certificate_authority: str
    client_certificate_request: ClientCertificateRequest

    @property
    def uses_ca_bundle(self) -> bool:
        return self.certificate_authority == CA_BUNDLE_AUTHORITY


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9339
    local_certificate: str | None = None
    hot_reloading: bool = True
    max_message_mib: int = DEFAULT_MAX_MESSAGE_MIB
    finalize_timeout_s: float = DEFAULT_FINALIZE_TIMEOUT_S
    pending_key_lifetime_s: float = DEFAULT_PENDING_KEY_LIFETIME_S
    key_sizes: tuple[int, ...] = DEFAULT_KEY_SIZES
    default_key_size: int = DEFAULT_KEY_SIZE
    # (size, depth) pairs: RSA keys made ahead of need (daemon/key_pool.py).
    key_pool_depths: tuple[tuple[int, int], ...] = ((DEFAULT_KEY_SIZE, key_pool.DEFAULT_DEPTH),)
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    mutual_authentication: MutualAuthentication | None = None

    @property
    def listen(self) -> str:
        """host:port as grpc's add_secure_port wants it (IPv6 literals in brackets)."""
        return format_host_port(self.listen_host, self.listen_port)

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mib * 1024 * 1024

    def rsa_key_size(self, min_key_size: int) -> int:
        """The size of the key GenerateCSR makes for min_key_size (docs/behaviour.md §5).

        A client's small minimum never downgrades the key below default_key_size. Raises
        UnsupportedKey when min_key_size is above every configured size.
        """
        return crypto.choose_rsa_key_size(min_key_size, self.key_sizes, self.default_key_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint (plain HTTP; loopback unless allow_remote)."""

    listen_host: str
    listen_port: int
    allow_remote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    source: Path | None
    state_dir: Path
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    users: tuple[User, ...] = ()
    audit_log: Path | None = None
    audit_log_max_bytes: int = DEFAULT_AUDIT_LOG_MAX_MIB << 20
    audit_log_files: int = DEFAULT_AUDIT_LOG_FILES
    key_secret_file: Path | None = None
    auth_failure_limit: int = DEFAULT_AUTH_FAILURE_LIMIT
    auth_failure_window_s: float = DEFAULT_AUTH_FAILURE_WINDOW_S
    log_format: str = "human"
    log_level: str = "info"
    metrics: MetricsConfig | None = None

    def user(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)


# --------------------------------------------------------------------------------------------
# Reading


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at path. Raises ConfigError."""
    path = Path(path).absolute()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, source=path)


def parse_config(text: str, *, source: Path | None = None) -> Config:
    """Validate TOML text. Relative paths resolve against source's directory (else the cwd)."""
    label = str(source) if source is not None else _STRING_SOURCE
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The 3.11 message already ends with "(at line L, column C)".
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    base = source.absolute().parent if source is not None else Path.cwd()
    return _Parser(label, base).config(doc, source.absolute() if source is not None else None)


class _Parser:
    """Typed getters that raise ConfigError with the file label and key path."""

    def __init__(self, label: str, base: Path) -> None:
        self._label = label
        self._base = base
        self._problems: list[str] = []

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._label}: {key}: {problem}")

    def note(self, key: str, problem: str) -> None:
        self._problems.extend(self.error(key, problem).problems)

    def attempt(self, parse: Callable[[], _T], fallback: _T) -> _T:
        """parse(), or note its error and go on with fallback: every fault is reported at once."""
        try:
            return parse()
        except ConfigError as exc:
            self._problems.extend(exc.problems)
            return fallback

    def check_keys(self, table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                import difflib  # for a mistyped key only: not resident in a serving daemon

                hint = difflib.get_close_matches(key, known, n=1)
                did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
                self.note(
                    f"{prefix}{key}",
                    f"unknown key{did_you_mean} (known keys here: {', '.join(known)})",
                )

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.error(path, f"must be a table ([{path}]), got {value!r}")
        return value

    def string(self, table: Mapping[str, Any], key: str, path: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {value!r}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {value!r}")
        return value

    def integer(
        self, table: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int | None
    ) -> int:
        value = table.get(key, default)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < lo or (hi is not None and value > hi):
            wanted = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise self.error(path, f"must be an integer {wanted}, got {value!r}")
        return int(value)

    def seconds(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        allow_zero: bool = False,
    ) -> float:
        value = table.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and math.isfinite(value) and (value > 0 or (allow_zero and value == 0)):
            return float(value)
        wanted = ">= 0" if allow_zero else "> 0"
        raise self.error(path, f"must be a number of seconds {wanted}, got {value!r}")

    def mebibytes(self, table: Mapping[str, Any], key: str, default: float) -> int:
        """A size in MiB (fractions allowed, from 0.01 = about 10 KiB), as bytes."""
        value = table.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and math.isfinite(value) and 0.01 <= value <= 1 << 20:
            return int(value * (1 << 20))
        raise self.error(key, f"must be a number of MiB from 0.01 to 1048576, got {value!r}")

    def path(self, table: Mapping[str, Any], key: str, path: str) -> Path | None:
        value = self.string(table, key, path)
        if value is None:
            return None
        return self.resolve(value, path)

    def resolve(self, value: str, path: str) -> Path:
        if not value or "\x00" in value:
            raise self.error(path, f"must be a non-empty path, got {value!r}")
        return self._base / value  # an absolute value replaces the base

    # ---------------------------------------------------------------------------------------

    def config(self, doc: Mapping[str, Any], source: Path | None) -> Config:
        """The whole file, or one ConfigError that lists every fault found (each names its key)."""
        self.check_keys(doc, "", _TOP_KEYS)
        a = self.attempt
        config = Config(
            source=source,
            state_dir=a(lambda: self.state_dir(doc), Path()),
            grpc=a(lambda: self.grpc(self.table(doc, "grpc", "grpc")), GrpcConfig()),
            users=a(lambda: self.users(doc.get("users", [])), ()),
            audit_log=a(lambda: self.path(doc, "audit_log", "audit_log"), None),
            audit_log_max_bytes=a(
                lambda: self.mebibytes(doc, "audit_log_max_mib", DEFAULT_AUDIT_LOG_MAX_MIB),
                DEFAULT_AUDIT_LOG_MAX_MIB << 20,
            ),
            audit_log_files=a(
                lambda: self.integer(
                    doc, "audit_log_files", "audit_log_files", DEFAULT_AUDIT_LOG_FILES, 2, 1000
                ),
                DEFAULT_AUDIT_LOG_FILES,
            ),
            key_secret_file=a(lambda: self.path(doc, "key_secret_file", "key_secret_file"), None),
            auth_failure_limit=a(
                lambda: self.integer(
                    doc,
                    "auth_failure_limit",
                    "auth_failure_limit",
                    DEFAULT_AUTH_FAILURE_LIMIT,
                    1,
                    None,
                ),
                DEFAULT_AUTH_FAILURE_LIMIT,
            ),
            auth_failure_window_s=a(
                lambda: self.seconds(
                    doc,
                    "auth_failure_window_s",
                    "auth_failure_window_s",
                    DEFAULT_AUTH_FAILURE_WINDOW_S,
                ),
                DEFAULT_AUTH_FAILURE_WINDOW_S,
            ),
            log_format=a(lambda: self.choice(doc, "log_format", LOG_FORMATS), "human"),
            log_level=a(lambda: self.choice(doc, "log_level", LOG_LEVELS, default="info"), "info"),
            metrics=a(lambda: self.metrics(doc), None),
        )
        if self._problems:
            raise ConfigError(*self._problems)
        return config

    def state_dir(self, doc: Mapping[str, Any]) -> Path:
        state_dir = self.path(doc, "state_dir", "state_dir")
        if state_dir is None:
            raise self.error("state_dir", "required (the directory of the PKI store)")
        # A missing directory is made at start; anything else in its place is a mistake.
        if state_dir.exists() and not state_dir.is_dir():
            raise self.error("state_dir", f"{str(state_dir)!r} exists and is not a directory")
        return state_dir

    def grpc(self, t: Mapping[str, Any]) -> GrpcConfig:
        self.check_keys(t, "grpc.", _GRPC_KEYS)
        a = self.attempt
        fallback = GrpcConfig()
        host, port = a(
            lambda: self.listen(self.string(t, "listen", "grpc.listen") or DEFAULT_LISTEN),
            (fallback.listen_host, fallback.listen_port),
        )
        mutual = t.get("mutual_authentication")
        key_sizes = a(lambda: self.key_sizes(t), None)
        return GrpcConfig(
            listen_host=host,
            listen_port=port,
            local_certificate=a(lambda: self.local_certificate(t), None),
            hot_reloading=a(
                lambda: self.boolean(t, "hot_reloading", "grpc.hot_reloading", True), True
            ),
            max_message_mib=a(
                lambda: self.integer(
                    t,
                    "max_message_mib",
                    "grpc.max_message_mib",
                    DEFAULT_MAX_MESSAGE_MIB,
                    1,
                    MAX_MESSAGE_MIB_LIMIT,
                ),
                DEFAULT_MAX_MESSAGE_MIB,
            ),
            finalize_timeout_s=a(
                lambda: self.seconds(
                    t, "finalize_timeout_s", "grpc.finalize_timeout_s", DEFAULT_FINALIZE_TIMEOUT_S
                ),
                DEFAULT_FINALIZE_TIMEOUT_S,
            ),
            pending_key_lifetime_s=a(
                lambda: self.seconds(
                    t,
                    "pending_key_lifetime_s",
                    "grpc.pending_key_lifetime_s",
                    DEFAULT_PENDING_KEY_LIFETIME_S,
                ),
                DEFAULT_PENDING_KEY_LIFETIME_S,
            ),
            key_sizes=key_sizes or DEFAULT_KEY_SIZES,
            # Checked against key_sizes only when those are valid (one fault, one message).
            default_key_size=(
                DEFAULT_KEY_SIZE
                if key_sizes is None
                else a(lambda: self.default_key_size(t, key_sizes), DEFAULT_KEY_SIZE)
            ),
            key_pool_depths=a(lambda: self.key_pool(t, key_sizes), fallback.key_pool_depths),
            # 0 is meaningful here: stop at once, cancelling in-flight RPCs.
            shutdown_grace_s=a(
                lambda: self.seconds(
                    t,
                    "shutdown_grace_s",
                    "grpc.shutdown_grace_s",
                    DEFAULT_SHUTDOWN_GRACE_S,
                    allow_zero=True,
                ),
                DEFAULT_SHUTDOWN_GRACE_S,
            ),
            mutual_authentication=None if mutual is None else a(lambda: self.mutual(mutual), None),
        )

    def listen(self, value: str, key: str = "grpc.listen") -> tuple[str, int]:
        try:
            return parse_host_port(value, min_port=0, host_names=("localhost",))
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def choice(
        self, table: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str = ""
    ) -> str:
        value = self.string(table, key, key) or default or allowed[0]
        if value not in allowed:
            raise self.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def metrics(self, doc: Mapping[str, Any]) -> MetricsConfig | None:
        """Off without a [metrics] table; a non-loopback address needs allow_remote = true
        (the endpoint is plain HTTP without authentication: docs/operator-guide.md)."""
        if "metrics" not in doc:
            return None
        t = self.table(doc, "metrics", "metrics")
        self.check_keys(t, "metrics.", _METRICS_KEYS)
        value = self.string(t, "listen", "metrics.listen")
        if value is None:
            raise self.error("metrics.listen", 'required, e.g. listen = "127.0.0.1:9340"')
        host, port = self.listen(value, "metrics.listen")
        allow_remote = self.boolean(t, "allow_remote", "metrics.allow_remote", False)
        if not allow_remote and not is_loopback(host):
            raise self.error(
                "metrics.listen",
                f"{host} is not a loopback address; the endpoint is plain HTTP without "
                "authentication: set metrics.allow_remote = true to serve it there anyway",
            )
        return MetricsConfig(listen_host=host, listen_port=port, allow_remote=allow_remote)

    def local_certificate(self, t: Mapping[str, Any]) -> str | None:
        value = self.string(t, "local_certificate", "grpc.local_certificate")
        if value is None:
            return None
        try:
            return crypto.validate_certificate_id(value)
        except InvalidCertificateId as exc:
            raise self.error(
                "grpc.local_certificate", f"not a valid certificate ID: {exc}"
            ) from None

    def key_sizes(self, t: Mapping[str, Any]) -> tuple[int, ...]:
        value = t.get("key_sizes", list(DEFAULT_KEY_SIZES))
        allowed = ", ".join(map(str, DEFAULT_KEY_SIZES))
        problem = f"must be a non-empty list of RSA key sizes drawn from {allowed}, got {value!r}"
        if not isinstance(value, list) or not value:
            raise self.error("grpc.key_sizes", problem)
        for size in value:
            if type(size) is not int or size not in DEFAULT_KEY_SIZES:
                raise self.error("grpc.key_sizes", problem)
        return tuple(sorted(set(value)))

    def default_key_size(self, t: Mapping[str, Any], key_sizes: tuple[int, ...]) -> int:
        """Unset: 2048 if configured, else the nearest configured size above it, else the
        largest (an operator who lists only 1024 wants 1024-bit keys)."""
        value = t.get("default_key_size")
        if value is None:
            larger = [size for size in key_sizes if size >= DEFAULT_KEY_SIZE]
            return larger[0] if larger else key_sizes[-1]
        if type(value) is not int or value not in key_sizes:
            listed = ", ".join(map(str, key_sizes))
            raise self.error(
                "grpc.default_key_size",
                f"must be one of the configured grpc.key_sizes ({listed}), got {value!r}",
            )
        return value

    def key_pool(
        self, t: Mapping[str, Any], key_sizes: tuple[int, ...] | None
    ) -> tuple[tuple[int, int], ...]:
        sizes = key_sizes or DEFAULT_KEY_SIZES
        try:
            default = self.default_key_size(t, sizes)
        except ConfigError:  # reported once, by default_key_size itself
            default = DEFAULT_KEY_SIZE
        try:
            return key_pool.parse_depths(t.get("key_pool_depth"), sizes, default)
        except ValueError as exc:
            raise self.error("grpc.key_pool_depth", str(exc)) from None

    def mutual(self, t: object) -> MutualAuthentication:
        prefix = "grpc.mutual_authentication"
        if not isinstance(t, dict):
            raise self.error(prefix, f"must be a table ([{prefix}]), got {t!r}")
        self.check_keys(t, prefix + ".", _MUTUAL_KEYS)
        ca_key = f"{prefix}.certificate_authority"
        ca = self.string(t, "certificate_authority", ca_key)
        if ca is None:
            raise self.error(
                ca_key,
                f"required: {CA_BUNDLE_AUTHORITY!r} (the store's CA bundle) "
                "or the path of a PEM file of CA certificates",
            )
        if ca != CA_BUNDLE_AUTHORITY:
            named = ca
            ca = self.attempt(lambda: str(self.ca_file(named, ca_key)), named)
        level_key = f"{prefix}.client_certificate_request"
        level = self.string(t, "client_certificate_request", level_key)
        return MutualAuthentication(
            certificate_authority=ca,
            client_certificate_request=self.level(level, level_key),
        )

    def ca_file(self, value: str, key: str) -> Path:
        path = self.resolve(value, key)
        expected = (
            f"must be {CA_BUNDLE_AUTHORITY!r} (the store's CA bundle) "
            "or the path of a PEM file of CA certificates"
        )
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self.error(key, f"{expected}; {str(path)!r} does not exist") from None
        except OSError as exc:
            raise self.error(key, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            certificates = []
        if not certificates:
            raise self.error(key, f"{str(path)!r} holds no PEM certificate; {expected}")
        return path

    def level(self, value: str | None, key: str) -> ClientCertificateRequest:
        if value is None:
            return ClientCertificateRequest.REQUIRE_AND_VERIFY
        supported = " or ".join(repr(v.value) for v in ClientCertificateRequest)
        if value in _REFUSED_LEVELS:
            raise self.error(
                key,
                f"{value!r} is not supported: grpcio's server either requires and verifies a "
                f"client certificate or never asks for one; use {supported}",
            )
        try:
            return ClientCertificateRequest(value)
        except ValueError:
            raise self.error(key, f"must be {supported}, got {value!r}") from None

    def users(self, value: object) -> tuple[User, ...]:
        if not isinstance(value, list):
            raise self.error("users", f"must be an array of tables ([[users]]), got {value!r}")
        users: list[User] = []
        seen: set[str] = set()
        for index, entry in enumerate(value):
            try:
                user = self.user(entry, f"users[{index}]")
            except ConfigError as exc:
                self._problems.extend(exc.problems)
                continue
            if user.name in seen:
                self.note(f"users[{index}].name", f"duplicate user name {user.name!r}")
                continue
            seen.add(user.name)
            users.append(user)
        return tuple(users)

    def user(self, entry: object, prefix: str) -> User:
        # Imported here: auth imports this module for User and Role.
        from gnoicert.daemon.auth import is_password_hash

        if not isinstance(entry, dict):
            raise self.error(prefix, f"must be a table with name and password_hash, got {entry!r}")
        self.check_keys(entry, prefix + ".", _USER_KEYS)
        name = self.string(entry, "name", f"{prefix}.name")
        if name is None or not _USER_NAME_RE.fullmatch(name):
            raise self.error(
                f"{prefix}.name", f"must be 1-32 characters of A-Z a-z 0-9 . _ -, got {name!r}"
            )
        password_hash = self.string(entry, "password_hash", f"{prefix}.password_hash")
        if password_hash is None or not is_password_hash(password_hash):
            # Never echo the value: it is a password hash.
            shown = "nothing" if password_hash is None else "a malformed value"
            raise self.error(
                f"{prefix}.password_hash",
                f"must be a hash 'scrypt$N$r$p$salt$hash' (set it with: gnoicertd passwd "
                f"{name} --config FILE), got {shown}",
            )
        role = self.string(entry, "role", f"{prefix}.role") or Role.ADMIN.value
        try:
            parsed_role = Role(role)
        except ValueError:
            raise self.error(
                f"{prefix}.role", f"must be 'admin' or 'read-only', got {role!r}"
            ) from None
        return User(name=name, password_hash=password_hash, role=parsed_role)


_TOP_KEYS = (
    "state_dir",
    "audit_log",
    "audit_log_max_mib",
    "audit_log_files",
    "key_secret_file",
    "auth_failure_limit",
    "auth_failure_window_s",
    "log_format",
    "log_level",
    "grpc",
    "users",
    "metrics",
)
_GRPC_KEYS = (
    "listen",
    "local_certificate",
    "hot_reloading",
    "max_message_mib",
    "finalize_timeout_s",
    "pending_key_lifetime_s",
    "key_sizes",
    "default_key_size",
    "key_pool_depth",
    "shutdown_grace_s",
    "mutual_authentication",
)
_MUTUAL_KEYS = ("certificate_authority", "client_certificate_request")
_USER_KEYS = ("name", "password_hash", "role")
_METRICS_KEYS = ("listen", "allow_remote")


def is_loopback(host: str) -> bool:
    """localhost or a loopback IP literal (the only place --insecure and metrics may listen)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Editing


def set_user_password(path: Path, name: str, password_hash: str, role: Role | None = None) -> None:
    """Add or update the [[users]] entry for name, keeping the rest of the file as written.

    role None keeps an existing user's role (admin for a new user). The result is validated
    with parse_config before it atomically replaces the file (same mode). Raises ConfigError.
    """
    from gnoicert.daemon.auth import is_password_hash

    path = Path(path).absolute()
    label = str(path)
    if not _USER_NAME_RE.fullmatch(name):
        raise ConfigError(f"{label}: users: user name must be 1-32 characters of A-Z a-z 0-9 . _ -")
    if not is_password_hash(password_hash):
        raise ConfigError(f"{label}: users: password_hash is not a 'scrypt$...' hash")
    # Edit the file a symlink points to, not the link.
    target = Path(os.path.realpath(path))
    try:
        text = target.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read: {exc}") from None
    import tomlkit  # only `gnoicertd passwd` edits the file: the daemon never loads tomlkit
    import tomlkit.exceptions

    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    _upsert_user(doc, name, password_hash, role, lambda problem: ConfigError(f"{label}: {problem}"))
    new_text = tomlkit.dumps(doc)
    parse_config(new_text, source=path)  # never write a file the daemon would refuse
    try:
        write_atomic(target, new_text.encode("utf-8"), keep_mode_and_owner=True)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot write: {exc}") from None


def _upsert_user(
    doc: tomlkit.TOMLDocument,
    name: str,
    password_hash: str,
    role: Role | None,
    error: Callable[[str], ConfigError],
) -> None:
    import tomlkit

    users = doc.get("users")
    if users is None:
        aot = tomlkit.aot()
        aot.append(_user_table(tomlkit.table(), name, password_hash, role or Role.ADMIN))
        doc.append("users", aot)
        return
    if not isinstance(users, list):
        raise error("users: must be an array of tables ([[users]])")
    for entry in users:
        if isinstance(entry, dict) and entry.get("name") == name:
            entry["password_hash"] = password_hash
            if role is not None:
                entry["role"] = role.value
            return
    # An inline array (users = [{...}]) takes an inline table; [[users]] takes a table.
    if isinstance(users, tomlkit.items.Array):
        users.append(_user_table(tomlkit.inline_table(), name, password_hash, role or Role.ADMIN))
        return
    table = _user_table(tomlkit.table(), name, password_hash, role or Role.ADMIN)
    if _followed_by_content(doc, users):
        table.add(tomlkit.nl())  # keep a blank line before the next table
    users.append(table)


def _followed_by_content(doc: tomlkit.TOMLDocument, item: object) -> bool:
    after = False
    for key, value in doc.body:
        if value is item:
            after = True
        elif after and key is not None:
            return True
    return False


def _user_table(table: Any, name: str, password_hash: str, role: Role) -> Any:
    table["name"] = name
    table["password_hash"] = password_hash
    table["role"] = role.value
    return table
