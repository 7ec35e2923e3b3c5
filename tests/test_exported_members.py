"""The public surface: `gnoicert.__all__` is exactly what the package exposes, and it loads."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import gnoicert


def test_all_names_resolve_to_gnoicert_objects() -> None:
    for name in gnoicert.__all__:
        value = getattr(gnoicert, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        assert value.__module__.startswith("gnoicert."), name
        assert value.__name__ == name


def test_all_matches_the_exports() -> None:
    # Subpackages (gnoicert.client ...) and `from __future__ import annotations` are not API.
    exported = {
        name
        for name in dir(gnoicert)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(getattr(gnoicert, name), types.ModuleType)
    }
    public = {name for name in gnoicert.__all__ if not name.startswith("_")}
    assert public == exported
    assert len(gnoicert.__all__) == len(set(gnoicert.__all__))


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(gnoicert, "NoSuchThing")  # noqa: B009


def test_import_does_not_load_grpc() -> None:
    # The CLI sets GRPC_VERBOSITY before grpcio loads; `import gnoicert` must not load it.
    code = "import sys, gnoicert, gnoicert.cli.main; print('grpc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_pki_all_matches_the_exports() -> None:
    import gnoicert.pki as pki

    exported = {
        name
        for name in dir(pki)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(getattr(pki, name), types.ModuleType)
    }
    assert set(pki.__all__) == exported
    for name in pki.__all__:
        value = getattr(pki, name)
        assert getattr(value, "__module__", "gnoicert.pki").startswith("gnoicert.pki"), name
