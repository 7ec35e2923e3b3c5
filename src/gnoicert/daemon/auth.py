"""Who is calling, and may they call this RPC (docs/behaviour.md §1, "Authentication mode").

Plain values in, plain values out: the service layer takes the metadata, the peer string and
the verified client-certificate subject out of grpc and calls
`Authenticator.authenticate_soon` (a worker thread only when scrypt must run: it costs tens of
milliseconds). Refusals are the target's Unauthenticated / NotAuthorized, which
target/errors.py maps to status codes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gnoicert.common.rpc import CertRpc, SystemRpc
from gnoicert.daemon.config import Role, User
from gnoicert.daemon.errors import NotAuthorized, RateLimited, Unauthenticated

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32

READ_ONLY_RPCS = frozenset(
    {CertRpc.GET_CERTIFICATES.path, CertRpc.CAN_GENERATE_CSR.path, SystemRpc.TIME.path}
)
# Health checks and reflection must work for standard tools without credentials.
UNAUTHENTICATED_RPC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 (a metadata key, not a password)

# A verified (user, password) is trusted this long, so clients that send credentials on every
# call (docs/behaviour.md §9) do not pay scrypt every time.
_CACHE_TTL_S = 60.0
_CACHE_MAX_ENTRIES = 4096
_MAX_TRACKED_HOSTS = 10_000
# Bounds on hashes read from the configuration, so a hostile file cannot make us allocate GiBs.
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_INT_RE = re.compile(r"[1-9][0-9]{0,8}")

_BAD_CREDENTIALS = "bad username or password"


# --------------------------------------------------------------------------------------------
# Password hashes


def hash_password(password: str, *, cost: int = SCRYPT_N) -> str:
    """scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>, with a fresh 16-byte salt.

    cost is scrypt's N (a power of two); only a lab of many targets sharing one CPU lowers it.
    """
    if cost < 2 or cost & (cost - 1):
        raise ValueError(f"the scrypt cost must be a power of two >= 2, got {cost}")
    salt = os.urandom(SCRYPT_SALT_BYTES)
    key = _scrypt(password, salt, cost, SCRYPT_R, SCRYPT_P, SCRYPT_KEY_BYTES)
    return "$".join(("scrypt", str(cost), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)))


def is_password_hash(value: object) -> bool:
    """True if value is a well-formed scrypt hash with sane cost parameters."""
    return isinstance(value, str) and _parse_hash(value) is not None


def verify_password(password: str, password_hash: str) -> bool:
    """Constant-time check of password against password_hash; malformed hash -> False."""
    parsed = _parse_hash(password_hash)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    actual = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    if not _B64_RE.fullmatch(text):
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_hash(value: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    if not all(_INT_RE.fullmatch(x) for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return None
    if 128 * r * (n + p) > _MAX_SCRYPT_MEMORY:
        return None
    salt, key = _unb64(parts[4]), _unb64(parts[5])
    if salt is None or key is None or not 8 <= len(salt) <= 64 or not 16 <= len(key) <= 64:
        return None
    return n, r, p, salt, key


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users against, so timing does not reveal which names exist."""
    return hash_password(secrets.token_urlsafe(16))


# --------------------------------------------------------------------------------------------
# Identities and authorization


@dataclass(frozen=True, kw_only=True)
class AuthRequest:
    """What the transport knows of one call, for Authenticator.authenticate. client_subject is
    the subject of the client certificate the TLS layer verified (mutual TLS only)."""

    rpc: str
    metadata: Mapping[str, str]
    peer: str
    client_subject: str | None
    mutual_tls: bool
    insecure: bool


@dataclass(frozen=True)
class Identity:
    """The authenticated caller. insecure marks the anonymous admin of insecure mode."""

    user: str | None
    role: Role
    client_subject: str | None
    peer: str
    insecure: bool = False

    def describe(self) -> str:
        """For audit records and logs: 'user ops (CN=client1)', 'client CN=client1', ..."""
        if self.insecure:
            return "anonymous (insecure)"
        if self.user is not None and self.client_subject is not None:
            return f"user {self.user} ({self.client_subject})"
        if self.user is not None:
            return f"user {self.user}"
        if self.client_subject is not None:
            return f"client {self.client_subject}"
        return "anonymous"


def requires_authentication(rpc: str) -> bool:
    """False for health and reflection, which standard tools call without credentials."""
    return not rpc.startswith(UNAUTHENTICATED_RPC_PREFIXES)


def authorize(identity: Identity, rpc: str) -> None:
    """Raise NotAuthorized unless identity's role allows rpc."""
    if identity.role is Role.ADMIN or rpc in READ_ONLY_RPCS or not requires_authentication(rpc):
        return
    who = identity.user if identity.user is not None else identity.describe()
    raise NotAuthorized(f"user {who} has role {identity.role.value} and may not call {rpc}")


def peer_host(peer: str) -> str:
    """The host part of a grpc peer string: 'ipv4:127.0.0.1:5555' -> '127.0.0.1'.

    grpc writes IPv6 peers as 'ipv6:[::1]:5555', sometimes percent-encoded ('%5B::1%5D').
    Anything else (unix sockets, unknown schemes) is returned whole.
    """
    scheme, sep, rest = peer.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return peer
    if "%" in rest:  # parsed on every call: skip unquote's work when there is nothing to undo
        rest = urllib.parse.unquote(rest)
    if rest.startswith("["):
        host, bracket, _ = rest[1:].partition("]")
        return host if bracket else rest
    host, colon, _ = rest.rpartition(":")
    return host if colon else rest


# --------------------------------------------------------------------------------------------
# The authenticator


class _NeedsScrypt(Exception):
    """Raised inside authenticate_at_once: the answer needs scrypt (a worker thread)."""


class Authenticator:
    """Checks credentials by the rules of the current TLS mode, with per-host rate limiting.

    Thread-safe. Attempts from one host are serialised (a per-host lock around the scrypt
    check), so the failure limit is exact even under concurrent guesses, and parallel first
    calls of a legitimate client hit the cache after the first one has paid for scrypt.
    """

    def __init__(
        self,
        users: Sequence[User],
        *,
        failure_limit: int,
        failure_window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._cache_secret = secrets.token_bytes(32)
        self._users: dict[str, User] = {}
        self._cache: dict[tuple[str, bytes], float] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._host_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._failure_limit = 1
        self._failure_window_s = 1.0
        self.set_limits(failure_limit=failure_limit, failure_window_s=failure_window_s)
        self.replace_users(users)

    @property
    def users(self) -> tuple[User, ...]:
        with self._lock:
            return tuple(self._users.values())

    def replace_users(self, users: Sequence[User]) -> None:
        """Install a new user list (configuration reload); forgets cached verifications."""
        by_name = {u.name: u for u in users}
        with self._lock:
            self._users = by_name
            self._cache.clear()

    def set_limits(self, *, failure_limit: int, failure_window_s: float) -> None:
        """Change the rate limit (configuration reload).

        Recorded failures are kept when nothing changed, so a reload does not unblock a host.
        """
        if failure_limit < 1:
            raise ValueError("failure_limit must be >= 1")
        if not (failure_window_s > 0 and math.isfinite(failure_window_s)):
            raise ValueError("failure_window_s must be > 0")
        with self._lock:
            if (failure_limit, failure_window_s) == (self._failure_limit, self._failure_window_s):
                return
            self._failure_limit = failure_limit
            self._failure_window_s = float(failure_window_s)
            self._failures.clear()

    def authenticate(self, request: AuthRequest) -> Identity:
        """The caller's identity, authorized for request.rpc. Raises Unauthenticated or
        NotAuthorized. Blocking (scrypt): call it from a worker thread.
        """
        return self._authenticate(self._check_password, request)

    async def authenticate_soon(self, request: AuthRequest) -> Identity:
        """authenticate() for the event loop: at once when no scrypt is needed (no password
        asked, or one verified recently), else in a worker thread.

        Saves a thread hop on every call of a client that sends its password with each call.
        """
        try:
            return self._authenticate(self._check_cached_password, request)
        except _NeedsScrypt:
            return await asyncio.to_thread(self._authenticate, self._check_password, request)

    def _authenticate(
        self,
        check_password: Callable[[Mapping[str, str], str], User],
        request: AuthRequest,
    ) -> Identity:
        rpc, metadata, peer = request.rpc, request.metadata, request.peer
        client_subject, mutual_tls = request.client_subject, request.mutual_tls
        if request.insecure:
            return Identity(None, Role.ADMIN, client_subject, peer, insecure=True)
        if not requires_authentication(rpc):
            return Identity(None, Role.READ_ONLY, client_subject, peer)
        with self._lock:
            have_users = bool(self._users)
        if mutual_tls:
            if client_subject is None:
                raise Unauthenticated("mutual TLS: no verified client certificate on this call")
            if not have_users:
                # The TLS layer verified the certificate against the CA: that is the identity.
                identity = Identity(None, Role.ADMIN, client_subject, peer)
            else:
                user = check_password(metadata, peer)
                identity = Identity(user.name, user.role, client_subject, peer)
        else:
            if not have_users:
                raise Unauthenticated(
                    "no users are configured: with server-only TLS the target knows callers "
                    "only by username/password metadata; add a user with "
                    "`gnoicertd passwd USER --config FILE`"
                )
            user = check_password(metadata, peer)
            identity = Identity(user.name, user.role, client_subject, peer)
        authorize(identity, rpc)
        return identity

    # ---------------------------------------------------------------------------------------

    def _check_password(self, metadata: Mapping[str, str], peer: str) -> User:
        username, password = _credentials(metadata)
        host = peer_host(peer)
        host_lock = self._enter_host(host)
        try:
            with host_lock:
                return self._check_password_serialised(username, password, host)
        finally:
            self._leave_host(host)

    def _check_cached_password(self, metadata: Mapping[str, str], peer: str) -> User:
        """_check_password's answer when it is known without scrypt; else _NeedsScrypt."""
        username, password = _credentials(metadata)
        host = peer_host(peer)
        user, cached = self._cached_user(username, self._cache_key(username, password), host)
        if cached and user is not None:
            return user
        raise _NeedsScrypt

    def _cache_key(self, username: str, password: str) -> tuple[str, bytes]:
        """A keyed BLAKE2b MAC of the password (never the password itself), computed on every
        call: CPython's own BLAKE2 costs a third of an OpenSSL 3 HMAC, whose per-call
        algorithm fetch was a visible part of a GetCertificates call."""
        password_bytes = password.encode("utf-8", "surrogatepass")
        mac = hashlib.blake2b(password_bytes, key=self._cache_secret, digest_size=32)
        return (username, mac.digest())

    def _cached_user(
        self, username: str, key: tuple[str, bytes], host: str
    ) -> tuple[User | None, bool]:
        """The user, and whether this password was verified recently (then the host's failures
        are forgiven). Raises RateLimited while the host is blocked."""
        with self._lock:
            now = self._clock()
            self._raise_if_blocked(host, now)
            user = self._users.get(username)
            if user is not None and self._cache.get(key, -math.inf) > now:
                self._failures.pop(host, None)
                return user, True
        return user, False

    def _check_password_serialised(self, username: str, password: str, host: str) -> User:
        key = self._cache_key(username, password)
        user, cached = self._cached_user(username, key, host)
        if cached and user is not None:
            return user
        # scrypt outside the global lock: other hosts are not held up.
        ok = verify_password(password, user.password_hash if user else _dummy_hash())
        with self._lock:
            now = self._clock()
            if ok and user is not None and self._users.get(username) == user:
                self._failures.pop(host, None)
                self._remember(key, now)
                return user
            if not ok or user is None:
                self._record_failure(host, now)
        raise Unauthenticated(_BAD_CREDENTIALS)

    def _raise_if_blocked(self, host: str, now: float) -> None:
        failures = self._failures.get(host)
        if failures is None:
            return
        while failures and failures[0] <= now - self._failure_window_s:
            failures.popleft()
        if not failures:
            del self._failures[host]
            return
        if len(failures) >= self._failure_limit:
            retry = max(1, math.ceil(failures[0] + self._failure_window_s - now))
            raise RateLimited(
                f"too many failed attempts from {host}; retry in {retry} s", retry_after_s=retry
            )

    def _record_failure(self, host: str, now: float) -> None:
        if host not in self._failures and len(self._failures) >= _MAX_TRACKED_HOSTS:
            self._prune_failures(now)
        failures = self._failures.setdefault(host, collections.deque(maxlen=self._failure_limit))
        failures.append(now)

    def _prune_failures(self, now: float) -> None:
        horizon = now - self._failure_window_s
        for host in [h for h, f in self._failures.items() if not f or f[-1] <= horizon]:
            del self._failures[host]

    def _remember(self, key: tuple[str, bytes], now: float) -> None:
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            self._cache = {k: t for k, t in self._cache.items() if t > now}
            if len(self._cache) >= _CACHE_MAX_ENTRIES:
                self._cache.clear()
        self._cache[key] = now + _CACHE_TTL_S

    def _enter_host(self, host: str) -> threading.Lock:
        with self._lock:
            lock, users = self._host_locks.get(host, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._host_locks[host] = (lock, users + 1)
            return lock

    def _leave_host(self, host: str) -> None:
        with self._lock:
            lock, users = self._host_locks[host]
            if users <= 1:
                del self._host_locks[host]
            else:
                self._host_locks[host] = (lock, users - 1)


def _credentials(metadata: Mapping[str, str]) -> tuple[str, str]:
    """The username and password metadata; missing ones are not a guess (not counted)."""
    username = metadata.get(USERNAME_KEY)
    password = metadata.get(PASSWORD_KEY)
    if username is None or password is None:
        raise Unauthenticated("username and password gRPC metadata are required")
    return username, password
