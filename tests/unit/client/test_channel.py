"""ChannelOptions and channel arguments: targets, TLS material, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import (
    ChannelOptions,
    channel_arguments,
    parse_target,
)
from gnoicert.client.errors import InputError
from gnoicert.common.constants import DEFAULT_PORT
from tests.unit.conftest import Identity, write


class TestParseTarget:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("192.0.2.1:9339", ("192.0.2.1", 9339)),
            ("router.example.net:50051", ("router.example.net", 50051)),
            ("router.example.net", ("router.example.net", DEFAULT_PORT)),
            ("[2001:db8::1]:32767", ("2001:db8::1", 32767)),
            ("[2001:db8::1]", ("2001:db8::1", DEFAULT_PORT)),
            ("2001:db8::1", ("2001:db8::1", DEFAULT_PORT)),
            ("  10.0.0.1:1  ", ("10.0.0.1", 1)),
        ],
    )
    def test_accepts(self, text: str, expected: tuple[str, int]) -> None:
        assert parse_target(text) == expected

    @pytest.mark.parametrize(
        "text", ["", ":9339", "host:port", "host:0", "host:65536", "[::1", "[::1]x"]
    )
    def test_refuses(self, text: str) -> None:
        with pytest.raises(InputError):
            parse_target(text)

    def test_errors_name_the_option(self) -> None:
        with pytest.raises(InputError) as caught:
            parse_target("host:0")
        assert (caught.value.field, caught.value.check) == ("target", "bad-address")
        assert "port must be an integer from 1 to 65535" in str(caught.value)

    def test_options_print_ipv6_in_brackets(self) -> None:
        assert ChannelOptions(target="2001:db8::1").address == f"[2001:db8::1]:{DEFAULT_PORT}"


class TestChannelOptions:
    def test_certificate_without_key_is_refused(self, client_identity: Identity) -> None:
        # grpcio aborts the process on a chain without a key: this must never reach it.
        with pytest.raises(InputError, match="both"):
            ChannelOptions(target="127.0.0.1:1", client_certificate=client_identity.chain_pem)

    def test_insecure_with_client_certificate_is_refused(self, client_identity: Identity) -> None:
        with pytest.raises(InputError, match="TLS"):
            ChannelOptions(
                target="127.0.0.1:1",
                client_certificate=client_identity.chain_pem,
                client_key=client_identity.key_pem,
                insecure=True,
            )

    @pytest.mark.parametrize("field", ["timeout", "stream_timeout"])
    def test_timeouts_must_be_positive(self, field: str) -> None:
        with pytest.raises(InputError):
            ChannelOptions(target="127.0.0.1:1", **{field: 0})  # type: ignore[arg-type]

    def test_repr_hides_secrets(self, client_identity: Identity) -> None:
        options = ChannelOptions(
            target="127.0.0.1:1",
            client_certificate=client_identity.chain_pem,
            client_key=client_identity.key_pem,
            username="ops",
            password="hunter2-secret",
        )
        text = repr(options)
        assert "hunter2-secret" not in text
        assert "PRIVATE KEY" not in text
        assert "ops" in text

    def test_metadata_on_every_call(self) -> None:
        assert ChannelOptions(target="h:1").metadata() == ()
        with_user = ChannelOptions(target="h:1", username="ops", password="pw")
        assert with_user.metadata() == (("username", "ops"), ("password", "pw"))
        assert ChannelOptions(target="h:1", username="ops").metadata() == (
            ("username", "ops"),
            ("password", ""),
        )

    def test_verify_name_prefers_the_override(self) -> None:
        assert ChannelOptions(target="192.0.2.1:1").verify_name == "192.0.2.1"
        named = ChannelOptions(target="192.0.2.1:1", server_name="r1.example.net")
        assert named.verify_name == "r1.example.net"
        assert named.address == "192.0.2.1:1"

    def test_from_files(self, tmp_path: Path, root_ca: LocalCA, client_identity: Identity) -> None:
        options = ChannelOptions.from_files(
            "127.0.0.1:1",
            ca_file=root_ca.directory / "ca.pem",
            cert_file=write(tmp_path / "c.pem", client_identity.chain_pem),
            key_file=write(tmp_path / "c.key", client_identity.key_pem),
            server_name="",
            username="",
        )
        assert options.root_certificates == root_ca.root_pem
        assert options.client_key == client_identity.key_pem
        assert options.server_name is None
        assert options.username is None

    def test_from_files_reports_missing_and_empty_files(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="cannot read the CA file"):
            ChannelOptions.from_files("h:1", ca_file=tmp_path / "missing.pem")
        with pytest.raises(InputError, match="no PEM data"):
            ChannelOptions.from_files("h:1", ca_file=write(tmp_path / "empty.pem", b"nothing"))

    def test_trusting_replaces_only_the_roots(self, root_ca: LocalCA, other_ca: LocalCA) -> None:
        options = ChannelOptions(target="h:1", root_certificates=root_ca.root_pem, username="u")
        other = options.trusting(other_ca.root_pem)
        assert other.root_certificates == other_ca.root_pem
        assert other.username == "u"
        assert options.root_certificates == root_ca.root_pem


class TestChannelArguments:
    def test_server_name_override_sets_both_arguments(self) -> None:
        args = dict(channel_arguments(ChannelOptions(target="h:1", server_name="r1.example")))
        assert args["grpc.ssl_target_name_override"] == "r1.example"
        assert args["grpc.default_authority"] == "r1.example"

    def test_no_override_without_server_name(self) -> None:
        args = dict(channel_arguments(ChannelOptions(target="h:1")))
        assert "grpc.ssl_target_name_override" not in args

    def test_fresh_channels_never_share_a_connection(self) -> None:
        options = ChannelOptions(target="h:1")
        first = dict(channel_arguments(options, fresh=True))
        second = dict(channel_arguments(options, fresh=True))
        assert first["grpc.use_local_subchannel_pool"] == 1
        assert first["gnoicert.channel_nonce"] != second["gnoicert.channel_nonce"]
        assert "gnoicert.channel_nonce" not in dict(channel_arguments(options))

    def test_keepalive_and_message_size(self) -> None:
        args = dict(channel_arguments(ChannelOptions(target="h:1", keepalive_s=300)))
        assert args["grpc.keepalive_time_ms"] == 300_000
        assert args["grpc.max_receive_message_length"] == 64 * 1024 * 1024
        assert "grpc.keepalive_time_ms" not in dict(
            channel_arguments(ChannelOptions(target="h:1", keepalive_s=0))
        )
