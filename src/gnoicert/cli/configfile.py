"""The client configuration file: found (XDG), read (tomllib), and every key checked.

Top-level keys are defaults for every profile; `[profiles.NAME]` tables override them, and the
top-level `profile` key names the profile used when neither --profile nor GNOICERT_PROFILE
does. Paths are relative to the file's directory. Every error names the file, the profile and
the key; a password in clear is refused (the file says where the password is, never what).
Imported only when a config file is in play, so `gnoicert --version` does not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gnoicert.cli.config import PASSWORD_KEYS, SETTINGS, ConfigError

PROFILE_KEY = "profile"
PROFILES_KEY = "profiles"
_BY_KEY = {setting.key: setting for setting in SETTINGS}


def default_config_path(environ: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME/gnoicert/config.toml, else ~/.config/gnoicert/config.toml."""
    base = environ.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base, "gnoicert", "config.toml")


def file_layers(
    path_text: str | None, profile: str | None, environ: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The chosen profile's values, then the top-level values (no file: no layers)."""
    explicit = path_text is not None
    path = Path(path_text).expanduser() if path_text else default_config_path(environ)
    if not explicit and not path.exists():
        if profile is not None:
            raise ConfigError(f"profile {profile!r} asked for, but there is no config file {path}")
        return []
    document = _read(path)
    top = {k: v for k, v in document.items() if k not in (PROFILE_KEY, PROFILES_KEY)}
    profiles = document.get(PROFILES_KEY, {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(f"{path}: key {PROFILES_KEY!r}: must hold [profiles.NAME] tables")
    chosen = profile
    if chosen is None and PROFILE_KEY in document:
        chosen = document[PROFILE_KEY]
        if not isinstance(chosen, str) or not chosen:
            raise ConfigError(f"{path}: key {PROFILE_KEY!r}: must be the name of a profile")
    layers: list[dict[str, Any]] = []
    if chosen is not None:
        if chosen not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"{path}: no profile {chosen!r} (profiles: {known})")
        layers.append(_checked(profiles[chosen], path, f"{path}: profile {chosen!r}"))
    layers.append(_checked(top, path, f"{path}: top level"))
    for name, table in profiles.items():  # every profile is checked, not only the one used
        if name != chosen:
            _checked(table, path, f"{path}: profile {name!r}")
    return layers


def _read(path: Path) -> dict[str, Any]:
    import tomllib  # only with a config file: without one, no run pays for the parser

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _checked(table: Mapping[str, Any], path: Path, where: str) -> dict[str, Any]:
    """The table's values, checked; paths made absolute against the file's directory."""
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if "password" in key and key not in PASSWORD_KEYS:
            raise ConfigError(
                f"{where}: key {key!r}: a password in clear is refused; name where it is "
                "with password_env (an environment variable) or password_file"
            )
        setting = _BY_KEY.get(key)
        if setting is None:
            import difflib

            close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{suggestion}")
        try:
            value = setting.check(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: key {key!r}: {exc}") from None
        if setting.path:
            value = str(path.parent / Path(value).expanduser())
        values[key] = value
    return values
