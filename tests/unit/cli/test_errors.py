"""Library input errors name no flags; the command's rendering puts the flags back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gnoicert.cli.errors import input_message
from gnoicert.cli.hints import explain
from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions, parse_target
from gnoicert.client.errors import InputError
from gnoicert.client.steps import choose_key_source
from tests.unit.conftest import Identity


def _caught(call: Callable[[], object]) -> InputError:
    with pytest.raises(InputError) as caught:
        call()
    assert "--" not in str(caught.value), "the library must not name command-line flags"
    return caught.value


def test_a_bad_ca_file_points_at_the_ca_file_flag() -> None:
    exc = _caught(lambda: ChannelOptions(target="127.0.0.1:1", root_certificates=b"junk"))
    assert exc.field == "root_certificates"
    assert input_message(exc) == "the CA file (--ca-file) holds no usable PEM certificate"


def test_a_key_of_another_certificate_names_both_flags(
    client_identity: Identity, server_identity: Identity
) -> None:
    exc = _caught(
        lambda: ChannelOptions(
            target="127.0.0.1:1",
            client_certificate=client_identity.chain_pem,
            client_key=server_identity.key_pem,
        )
    )
    assert exc.check == "key-mismatch"
    message = explain(exc).summary
    assert message.startswith("the client key (--key) is not the key of the client certificate")
    assert message.endswith(exc.detail)


def test_insecure_with_a_client_certificate_says_drop_insecure(
    client_identity: Identity,
) -> None:
    exc = _caught(
        lambda: ChannelOptions(
            target="127.0.0.1:1",
            client_certificate=client_identity.chain_pem,
            client_key=client_identity.key_pem,
            insecure=True,
        )
    )
    assert input_message(exc) == "a client certificate needs TLS; drop --insecure"


def test_an_ecdsa_key_from_the_target_points_at_key_source() -> None:
    exc = _caught(lambda: choose_key_source("target", "ecdsa", None))
    assert exc.field == "key_source"
    assert input_message(exc).endswith("use --key-source client")


def test_an_existing_ca_points_at_force(tmp_path: Path) -> None:
    LocalCA.init(tmp_path / "ca", key_type="ecdsa")
    exc = _caught(lambda: LocalCA.init(tmp_path / "ca", key_type="ecdsa"))
    assert exc.path == str(tmp_path / "ca")
    assert input_message(exc).startswith(f"{tmp_path / 'ca'} already holds a CA (ca.pem, ")
    assert input_message(exc).endswith("); use --force")


def test_errors_without_a_flag_keep_the_library_text() -> None:
    exc = _caught(lambda: parse_target("h:0"))
    assert input_message(exc) == str(exc)
