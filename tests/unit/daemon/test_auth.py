"""target/auth.py: password hashes, the three TLS modes, authorization, rate limiting, cache."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gnoicert.daemon import auth
from gnoicert.daemon.auth import (
    READ_ONLY_RPCS,
    UNAUTHENTICATED_RPC_PREFIXES,
    Authenticator,
    AuthRequest,
    Identity,
    authorize,
    hash_password,
    is_password_hash,
    peer_host,
    verify_password,
)
from gnoicert.daemon.config import Role, User
from gnoicert.daemon.errors import NotAuthorized, RateLimited, Unauthenticated

CM = "/gnoi.certificate.CertificateManagement/"
WRITE_RPCS = [
    CM + "Rotate",
    CM + "Install",
    CM + "GenerateCSR",
    CM + "LoadCertificate",
    CM + "LoadCertificateAuthorityBundle",
    CM + "RevokeCertificates",
    "/gnoi.system.System/Reboot",
]
PEER = "ipv4:127.0.0.1:5555"
ADMIN_PW = "admin-Pa55!"
VIEWER_PW = "viewer-pw"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def users() -> tuple[User, ...]:
    return (
        User(name="ops", password_hash=hash_password(ADMIN_PW), role=Role.ADMIN),
        User(name="viewer", password_hash=hash_password(VIEWER_PW), role=Role.READ_ONLY),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(users: tuple[User, ...], clock: FakeClock) -> Callable[..., Authenticator]:
    def factory(
        users_: tuple[User, ...] | None = None, limit: int = 3, window: float = 60.0
    ) -> Authenticator:
        return Authenticator(
            users if users_ is None else users_,
            failure_limit=limit,
            failure_window_s=window,
            clock=clock,
        )

    return factory


def creds(user: str, password: str) -> dict[str, str]:
    return {"username": user, "password": password}


def server_only(
    a: Authenticator, metadata: dict[str, str], rpc: str = CM + "Rotate", peer: str = PEER
) -> Identity:
    return a.authenticate(
        AuthRequest(
            rpc=rpc,
            metadata=metadata,
            peer=peer,
            client_subject=None,
            mutual_tls=False,
            insecure=False,
        )
    )


def mutual(
    a: Authenticator,
    metadata: dict[str, str],
    subject: str | None = "CN=client1",
    rpc: str = CM + "Rotate",
) -> Identity:
    return a.authenticate(
        AuthRequest(
            rpc=rpc,
            metadata=metadata,
            peer=PEER,
            client_subject=subject,
            mutual_tls=True,
            insecure=False,
        )
    )


class TestPasswordHash:
    def test_format_and_verify(self) -> None:
        h = hash_password("correct horse")
        scheme, n, r, p, salt, key = h.split("$")
        assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
        assert len(base64.b64decode(salt)) == 16
        assert len(base64.b64decode(key)) == 32
        assert is_password_hash(h)
        assert verify_password("correct horse", h)
        assert not verify_password("correct horse ", h)
        assert not verify_password("", h)

    def test_salted(self) -> None:
        assert hash_password("same") != hash_password("same")

    def test_unicode_and_empty(self) -> None:
        h = hash_password("pässwörd-✓")
        assert verify_password("pässwörd-✓", h)
        assert not verify_password("passwoerd-✓", h)
        empty = hash_password("")
        assert verify_password("", empty)
        assert not verify_password(" ", empty)

    def test_other_parameters_verify(self) -> None:
        # Hashes made with other (valid) costs still verify: the parameters travel in the hash.
        import hashlib

        salt = b"0123456789abcdef"
        key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=2, dklen=24)
        h = f"scrypt$1024$4$2${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
        assert is_password_hash(h)
        assert verify_password("pw", h)
        unpadded = h.replace("=", "")
        assert verify_password("pw", unpadded)

    GOOD_SALT = base64.b64encode(b"s" * 16).decode()
    GOOD_KEY = base64.b64encode(b"k" * 32).decode()

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "scrypt",
            "hunter2",
            f"bcrypt$16384$8$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$16384$8$1${GOOD_SALT}",
            f"scrypt$16384$8$1${GOOD_SALT}${GOOD_KEY}$extra",
            f"scrypt$16385$8$1${GOOD_SALT}${GOOD_KEY}",  # n not a power of two
            f"scrypt$1$8$1${GOOD_SALT}${GOOD_KEY}",  # n too small
            f"scrypt$0$8$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$016384$8$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$-16384$8$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$x$8$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$16384$0$1${GOOD_SALT}${GOOD_KEY}",
            f"scrypt$16384$64$1${GOOD_SALT}${GOOD_KEY}",  # r too large
            f"scrypt$16384$8$99${GOOD_SALT}${GOOD_KEY}",  # p too large
            f"scrypt$1048576$8$1${GOOD_SALT}${GOOD_KEY}",  # 1 GiB of memory
            f"scrypt$16384$8$1$!!notb64!!${GOOD_KEY}",
            f"scrypt$16384$8$1${GOOD_SALT}$a",
            f"scrypt$16384$8$1$${GOOD_KEY}",
            f"scrypt$16384$8$1${base64.b64encode(b'abc').decode()}${GOOD_KEY}",  # salt too short
            f"scrypt$16384$8$1${GOOD_SALT}${base64.b64encode(b'k' * 8).decode()}",  # key too short
            f"scrypt$16384$8$1${GOOD_SALT}${base64.b64encode(b'k' * 65).decode()}",
            f"scrypt$16384$8$1${GOOD_SALT}${GOOD_KEY} ",
        ],
    )
    def test_malformed_hashes(self, bad: str) -> None:
        assert not is_password_hash(bad)
        assert not verify_password("anything", bad)

    def test_is_password_hash_rejects_non_strings(self) -> None:
        assert not is_password_hash(None)
        assert not is_password_hash(b"scrypt$16384$8$1$x$y")


class TestPeerHost:
    @pytest.mark.parametrize(
        ("peer", "host"),
        [
            ("ipv4:127.0.0.1:5555", "127.0.0.1"),
            ("ipv4:10.1.2.3:1", "10.1.2.3"),
            ("ipv6:[::1]:5555", "::1"),
            ("ipv6:%5B::1%5D:5555", "::1"),
            ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
            ("unix:/run/gnoi.sock", "unix:/run/gnoi.sock"),
            ("", ""),
            ("ipv4:127.0.0.1", "127.0.0.1"),
        ],
    )
    def test_strips_port(self, peer: str, host: str) -> None:
        assert peer_host(peer) == host


class TestIdentity:
    @pytest.mark.parametrize(
        ("identity", "text"),
        [
            (Identity("ops", Role.ADMIN, "CN=client1", PEER), "user ops (CN=client1)"),
            (Identity("ops", Role.ADMIN, None, PEER), "user ops"),
            (Identity(None, Role.ADMIN, "CN=client1", PEER), "client CN=client1"),
            (Identity(None, Role.ADMIN, None, PEER, insecure=True), "anonymous (insecure)"),
            (Identity(None, Role.READ_ONLY, None, PEER), "anonymous"),
        ],
    )
    def test_describe(self, identity: Identity, text: str) -> None:
        assert identity.describe() == text

    def test_frozen(self) -> None:
        identity = Identity("ops", Role.ADMIN, None, PEER)
        with pytest.raises(AttributeError):
            identity.user = "x"  # type: ignore[misc]


class TestAuthorize:
    @pytest.mark.parametrize("rpc", sorted(READ_ONLY_RPCS) + WRITE_RPCS)
    def test_admin_may_call_everything(self, rpc: str) -> None:
        authorize(Identity("ops", Role.ADMIN, None, PEER), rpc)

    @pytest.mark.parametrize("rpc", sorted(READ_ONLY_RPCS))
    def test_read_only_may_read(self, rpc: str) -> None:
        authorize(Identity("viewer", Role.READ_ONLY, None, PEER), rpc)

    @pytest.mark.parametrize("rpc", WRITE_RPCS)
    def test_read_only_may_not_write(self, rpc: str) -> None:
        with pytest.raises(NotAuthorized) as info:
            authorize(Identity("viewer", Role.READ_ONLY, None, PEER), rpc)
        assert "viewer" in str(info.value)
        assert rpc in str(info.value)

    def test_read_only_set(self) -> None:
        assert (
            frozenset(
                {
                    CM + "GetCertificates",
                    CM + "CanGenerateCSR",
                    "/gnoi.system.System/Time",
                }
            )
            == READ_ONLY_RPCS
        )

    @pytest.mark.parametrize("prefix", UNAUTHENTICATED_RPC_PREFIXES)
    def test_health_and_reflection_open(self, prefix: str) -> None:
        assert not auth.requires_authentication(prefix + "Check")
        authorize(Identity(None, Role.READ_ONLY, None, PEER), prefix + "Check")
        assert auth.requires_authentication(CM + "GetCertificates")


class TestModes:
    def test_insecure_is_anonymous_admin(self, make: Callable[..., Authenticator]) -> None:
        for users_ in [None, ()]:
            identity = make(users_).authenticate(
                AuthRequest(
                    rpc=CM + "Rotate",
                    metadata={},
                    peer=PEER,
                    client_subject=None,
                    mutual_tls=False,
                    insecure=True,
                )
            )
            assert identity.role is Role.ADMIN
            assert identity.user is None
            assert identity.describe() == "anonymous (insecure)"

    @pytest.mark.parametrize("mutual_tls", [False, True])
    @pytest.mark.parametrize("prefix", UNAUTHENTICATED_RPC_PREFIXES)
    def test_health_needs_no_credentials(
        self, make: Callable[..., Authenticator], prefix: str, mutual_tls: bool
    ) -> None:
        for users_ in [None, ()]:
            identity = make(users_).authenticate(
                AuthRequest(
                    rpc=prefix + "Check",
                    metadata={},
                    peer=PEER,
                    client_subject=None,
                    mutual_tls=mutual_tls,
                    insecure=False,
                )
            )
            assert identity.user is None

    def test_server_only_good_credentials(self, make: Callable[..., Authenticator]) -> None:
        a = make()
        identity = server_only(a, creds("ops", ADMIN_PW))
        assert (identity.user, identity.role, identity.peer) == ("ops", Role.ADMIN, PEER)
        assert identity.describe() == "user ops"
        viewer = server_only(a, creds("viewer", VIEWER_PW), rpc=CM + "GetCertificates")
        assert viewer.role is Role.READ_ONLY

    @pytest.mark.parametrize(
        "metadata",
        [{}, {"username": "ops"}, {"password": ADMIN_PW}, {"user": "ops", "pass": ADMIN_PW}],
    )
    def test_server_only_missing_credentials(
        self, make: Callable[..., Authenticator], metadata: dict[str, str]
    ) -> None:
        with pytest.raises(
            Unauthenticated, match="username and password gRPC metadata are required"
        ):
            server_only(make(), metadata)

    @pytest.mark.parametrize(
        "metadata",
        [
            creds("ops", "wrong"),
            creds("nobody", ADMIN_PW),
            creds("ops", VIEWER_PW),
            creds("OPS", ADMIN_PW),
            creds("ops", ""),
            creds("ops", ADMIN_PW + " "),
        ],
    )
    def test_bad_credentials_same_message(
        self, make: Callable[..., Authenticator], metadata: dict[str, str]
    ) -> None:
        with pytest.raises(Unauthenticated) as info:
            server_only(make(limit=100), metadata)
        assert str(info.value) == "bad username or password"

    def test_server_only_without_users_tells_operator(
        self, make: Callable[..., Authenticator]
    ) -> None:
        with pytest.raises(Unauthenticated) as info:
            server_only(make(()), creds("ops", ADMIN_PW))
        assert "no users are configured" in str(info.value)
        assert "gnoicertd passwd USER --config FILE" in str(info.value)

    def test_mutual_without_users_certificate_is_admin(
        self, make: Callable[..., Authenticator]
    ) -> None:
        identity = mutual(make(()), {})
        assert identity.role is Role.ADMIN
        assert identity.user is None
        assert identity.client_subject == "CN=client1"
        assert identity.describe() == "client CN=client1"

    def test_mutual_without_subject_refused(self, make: Callable[..., Authenticator]) -> None:
        for users_ in [None, ()]:
            with pytest.raises(Unauthenticated, match="no verified client certificate"):
                mutual(make(users_), creds("ops", ADMIN_PW), subject=None)

    def test_mutual_with_users_needs_password_too(self, make: Callable[..., Authenticator]) -> None:
        a = make()
        with pytest.raises(Unauthenticated, match="username and password"):
            mutual(a, {})
        with pytest.raises(Unauthenticated, match="bad username or password"):
            mutual(a, creds("ops", "nope"))
        identity = mutual(a, creds("viewer", VIEWER_PW), rpc=CM + "GetCertificates")
        assert identity.role is Role.READ_ONLY
        assert identity.describe() == "user viewer (CN=client1)"

    def test_mutual_role_from_user(self, make: Callable[..., Authenticator]) -> None:
        with pytest.raises(NotAuthorized, match=r"viewer.*Rotate"):
            mutual(make(), creds("viewer", VIEWER_PW), rpc=CM + "Rotate")

    @pytest.mark.parametrize("rpc", WRITE_RPCS)
    def test_read_only_user_refused_write(
        self, make: Callable[..., Authenticator], rpc: str
    ) -> None:
        with pytest.raises(NotAuthorized) as info:
            server_only(make(), creds("viewer", VIEWER_PW), rpc=rpc)
        assert "viewer" in str(info.value)
        assert rpc in str(info.value)

    @pytest.mark.parametrize("rpc", sorted(READ_ONLY_RPCS) + WRITE_RPCS)
    def test_admin_matrix(self, make: Callable[..., Authenticator], rpc: str) -> None:
        assert server_only(make(), creds("ops", ADMIN_PW), rpc=rpc).role is Role.ADMIN

    def test_password_never_in_messages(self, make: Callable[..., Authenticator]) -> None:
        secret = "Very$ecretGuess-1234"
        a = make(limit=2)
        messages: list[str] = []
        calls: list[Callable[[], Identity]] = [
            lambda: server_only(a, creds("ops", secret)),
            lambda: server_only(a, creds(secret, secret)),
            lambda: server_only(a, creds("ops", secret)),  # now rate limited
            lambda: server_only(make(()), creds("ops", secret)),
            lambda: mutual(make(), creds("ops", secret), subject=None),
            lambda: server_only(make(), {"password": secret}),
        ]
        for call in calls:
            with pytest.raises((Unauthenticated, NotAuthorized)) as info:
                call()
            messages.append(str(info.value) + repr(info.value))
        assert len(messages) == 6
        assert "too many failed attempts" in messages[2]
        for text in messages:
            assert secret not in text
        assert ADMIN_PW not in repr(server_only(make(), creds("ops", ADMIN_PW)))


class TestRateLimit:
    def test_blocks_after_limit_until_window_passes(
        self, make: Callable[..., Authenticator], clock: FakeClock
    ) -> None:
        a = make(limit=3, window=60.0)
        for _ in range(3):
            with pytest.raises(Unauthenticated, match="bad username or password"):
                server_only(a, creds("ops", "guess"))
            clock.advance(1.0)
        # t = +3 s: the oldest failure (t = 0) expires at t = 60, so 57 s remain.
        with pytest.raises(Unauthenticated) as info:
            server_only(a, creds("ops", ADMIN_PW))  # correct, but not even checked
        assert str(info.value) == "too many failed attempts from 127.0.0.1; retry in 57 s"
        clock.advance(56.5)
        with pytest.raises(Unauthenticated, match="retry in 1 s"):
            server_only(a, creds("ops", ADMIN_PW))
        clock.advance(0.5)  # t = 60: the first failure has left the window
        assert server_only(a, creds("ops", ADMIN_PW)).user == "ops"

    def test_sliding_window_after_expiry(
        self, make: Callable[..., Authenticator], clock: FakeClock
    ) -> None:
        a = make(limit=2, window=10.0)
        for _ in range(2):
            with pytest.raises(Unauthenticated, match="bad username"):
                server_only(a, creds("ops", "x"))
        clock.advance(10.0)
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))  # counted again, old ones expired
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        with pytest.raises(Unauthenticated, match="too many failed attempts"):
            server_only(a, creds("ops", "x"))

    def test_refused_attempts_do_not_extend_the_block(
        self, make: Callable[..., Authenticator], clock: FakeClock
    ) -> None:
        a = make(limit=1, window=5.0)
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        for _ in range(4):
            clock.advance(1.0)
            with pytest.raises(Unauthenticated, match="too many"):
                server_only(a, creds("ops", "x"))
        clock.advance(1.0)
        assert server_only(a, creds("ops", ADMIN_PW)).user == "ops"

    def test_success_resets_the_count(
        self, make: Callable[..., Authenticator], clock: FakeClock
    ) -> None:
        a = make(limit=3)
        for _ in range(2):
            with pytest.raises(Unauthenticated, match="bad username"):
                server_only(a, creds("ops", "x"))
        server_only(a, creds("ops", ADMIN_PW))
        for _ in range(2):
            with pytest.raises(Unauthenticated, match="bad username"):
                server_only(a, creds("ops", "x"))
        # 4 failures in the window but only 2 since the success: still allowed.
        assert server_only(a, creds("viewer", VIEWER_PW), rpc=CM + "GetCertificates").user

    def test_per_host(self, make: Callable[..., Authenticator]) -> None:
        a = make(limit=1)
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"), peer="ipv6:[::1]:1111")
        # Same host on another port and in grpc's percent-encoded form: blocked.
        with pytest.raises(Unauthenticated, match="too many failed attempts from ::1;"):
            server_only(a, creds("ops", ADMIN_PW), peer="ipv6:%5B::1%5D:2222")
        # Other hosts are not affected.
        assert server_only(a, creds("ops", ADMIN_PW), peer="ipv4:127.0.0.1:1").user == "ops"
        assert server_only(a, creds("ops", ADMIN_PW), peer="ipv4:127.0.0.2:1").user == "ops"

    def test_missing_credentials_are_not_guesses(self, make: Callable[..., Authenticator]) -> None:
        a = make(limit=1)
        for _ in range(5):
            with pytest.raises(Unauthenticated, match="required"):
                server_only(a, {})
        assert server_only(a, creds("ops", ADMIN_PW)).user == "ops"

    def test_limit_exact_under_concurrency(self, make: Callable[..., Authenticator]) -> None:
        a = make(limit=3)
        results: list[str] = []
        lock = threading.Lock()

        def guess() -> None:
            try:
                server_only(a, creds("ops", "wrong"))
            except Unauthenticated as exc:
                with lock:
                    results.append(str(exc))

        threads = [threading.Thread(target=guess) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(results) == 10
        assert results.count("bad username or password") == 3
        assert sum("too many failed attempts" in r for r in results) == 7

    def test_set_limits(self, make: Callable[..., Authenticator]) -> None:
        a = make(limit=1)
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        a.set_limits(failure_limit=2, failure_window_s=30.0)  # forgets failures
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        with pytest.raises(Unauthenticated, match="too many"):
            server_only(a, creds("ops", "x"))

    def test_reload_with_same_limits_keeps_the_block(
        self, make: Callable[..., Authenticator]
    ) -> None:
        a = make(limit=1, window=60.0)
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", "x"))
        a.set_limits(failure_limit=1, failure_window_s=60)
        with pytest.raises(Unauthenticated, match="too many"):
            server_only(a, creds("ops", ADMIN_PW))

    @pytest.mark.parametrize(
        ("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("inf"))]
    )
    def test_bad_limits(self, limit: int, window: float) -> None:
        with pytest.raises(ValueError, match="failure_"):
            Authenticator((), failure_limit=limit, failure_window_s=window)


class TestCacheAndReload:
    def test_cached_calls_skip_scrypt(
        self,
        make: Callable[..., Authenticator],
        clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Counted, not timed: the suite makes no timing assertions (a loaded machine is slow).
        calls: list[int] = []
        real_scrypt = auth._scrypt

        def counting_scrypt(
            password: str, salt: bytes, n: int, r: int, p: int, dklen: int
        ) -> bytes:
            calls.append(n)
            return real_scrypt(password, salt, n, r, p, dklen)

        a = make()
        monkeypatch.setattr(auth, "_scrypt", counting_scrypt)
        server_only(a, creds("ops", ADMIN_PW))
        assert len(calls) == 1
        for _ in range(20):
            server_only(a, creds("ops", ADMIN_PW))
        assert len(calls) == 1  # 20 cached calls, no scrypt
        # A wrong password is never served from the cache.
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", ADMIN_PW + "x"))
        assert len(calls) == 2
        # After 60 s the entry expires and scrypt runs again.
        clock.advance(61.0)
        server_only(a, creds("ops", ADMIN_PW))
        assert len(calls) == 3

    def test_cache_key_is_not_the_password(self, make: Callable[..., Authenticator]) -> None:
        a = make()
        server_only(a, creds("ops", ADMIN_PW))
        cache = a._cache  # white-box: the clear password must not sit in memory as a key
        assert cache
        for user, digest in cache:
            assert user == "ops"
            assert ADMIN_PW.encode() not in digest
            assert len(digest) == 32

    def test_replace_users_clears_cache(self, make: Callable[..., Authenticator]) -> None:
        a = make()
        server_only(a, creds("ops", ADMIN_PW))
        new_hash = hash_password("new-password")
        a.replace_users([User(name="ops", password_hash=new_hash, role=Role.READ_ONLY)])
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", ADMIN_PW))
        identity = server_only(a, creds("ops", "new-password"), rpc=CM + "GetCertificates")
        assert identity.role is Role.READ_ONLY
        assert a.users[0].name == "ops"

    def test_removed_user_refused(
        self, make: Callable[..., Authenticator], users: tuple[User, ...]
    ) -> None:
        a = make()
        server_only(a, creds("ops", ADMIN_PW))
        a.replace_users([users[1]])
        with pytest.raises(Unauthenticated, match="bad username"):
            server_only(a, creds("ops", ADMIN_PW))

    def test_replace_with_no_users(self, make: Callable[..., Authenticator]) -> None:
        a = make()
        a.replace_users([])
        with pytest.raises(Unauthenticated, match="no users are configured"):
            server_only(a, creds("ops", ADMIN_PW))
        assert mutual(a, {}).role is Role.ADMIN

    def test_many_threads(self, make: Callable[..., Authenticator]) -> None:
        a = make(limit=1000)
        errors: list[BaseException] = []
        seen: list[Identity] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            try:
                for _ in range(20):
                    if i % 2:
                        identity = server_only(a, creds("ops", ADMIN_PW), peer=f"ipv4:10.0.0.{i}:1")
                    else:
                        identity = server_only(
                            a, creds("viewer", VIEWER_PW), rpc=CM + "GetCertificates"
                        )
                    with lock:
                        seen.append(identity)
            except BaseException as exc:  # pragma: no cover - reported below
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        assert len(seen) == 160
        assert a._host_locks == {}  # per-host locks are released


class TestAuthenticateSoon:
    """authenticate_soon answers exactly as authenticate; only a cached password skips the
    worker thread (counted here by the scrypt calls it makes)."""

    @staticmethod
    def soon(a: Authenticator, metadata: dict[str, str], peer: str = PEER) -> Identity:
        return asyncio.run(
            a.authenticate_soon(
                AuthRequest(
                    rpc=CM + "Rotate",
                    metadata=metadata,
                    peer=peer,
                    client_subject=None,
                    mutual_tls=False,
                    insecure=False,
                )
            )
        )

    @pytest.fixture
    def scrypts(self, monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
        """The thread of every scrypt run (auth's own function, wrapped to record)."""
        calls: list[threading.Thread] = []
        real = auth._scrypt

        def recording(*args: Any) -> bytes:
            calls.append(threading.current_thread())
            return real(*args)

        monkeypatch.setattr(auth, "_scrypt", recording)
        return calls

    def test_first_call_pays_scrypt_in_a_thread_then_none(
        self, make: Callable[..., Authenticator], scrypts: list[threading.Thread]
    ) -> None:
        a = make()
        assert self.soon(a, creds("ops", ADMIN_PW)).user == "ops"
        assert len(scrypts) == 1
        assert scrypts[0] is not threading.main_thread()
        for _ in range(3):
            assert self.soon(a, creds("ops", ADMIN_PW)).role is Role.ADMIN
        assert len(scrypts) == 1

    def test_a_wrong_password_after_a_cached_right_one_is_still_refused(
        self, make: Callable[..., Authenticator], scrypts: list[threading.Thread]
    ) -> None:
        a = make()
        self.soon(a, creds("ops", ADMIN_PW))
        with pytest.raises(Unauthenticated):
            self.soon(a, creds("ops", ADMIN_PW + "x"))
        assert len(scrypts) == 2

    def test_a_blocked_host_is_refused_even_with_a_cached_password(
        self, make: Callable[..., Authenticator]
    ) -> None:
        a = make(limit=2)
        self.soon(a, creds("ops", ADMIN_PW))
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                self.soon(a, creds("ops", "wrong"))
        with pytest.raises(RateLimited):
            self.soon(a, creds("ops", ADMIN_PW))

    def test_missing_metadata_and_cache_expiry_and_reload(
        self,
        make: Callable[..., Authenticator],
        clock: FakeClock,
        users: tuple[User, ...],
        scrypts: list[threading.Thread],
    ) -> None:
        a = make()
        with pytest.raises(Unauthenticated, match="metadata are required"):
            self.soon(a, {"username": "ops"})
        self.soon(a, creds("ops", ADMIN_PW))
        clock.advance(auth._CACHE_TTL_S + 1)
        self.soon(a, creds("ops", ADMIN_PW))
        assert len(scrypts) == 2
        a.replace_users(users)
        self.soon(a, creds("ops", ADMIN_PW))
        assert len(scrypts) == 3
