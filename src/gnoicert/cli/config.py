"""Where the global options come from: the flag, else GNOICERT_*, else the config file, else the
built-in default.

One table (SETTINGS) names every such option, its check, its default and its variable; the
config file itself is read by configfile.py. Only light modules load at import, and the rest
on use, so `gnoicert --version` and `--help` stay fast.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gnoicert.common.constants import DEFAULT_TIMEOUT_S

ENV_PREFIX = "GNOICERT_"
CONFIG_ENV = "GNOICERT_CONFIG"
PROFILE_ENV = "GNOICERT_PROFILE"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A bad config file, profile or GNOICERT_* value (a usage error: exit 2)."""


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _target(value: object) -> str:
    from gnoicert.common.address import parse_host_port
    from gnoicert.common.constants import DEFAULT_PORT

    text = _text(value)
    parse_host_port(text, default_port=DEFAULT_PORT)
    return text


def _port(value: object) -> int:
    from gnoicert.common.address import MAX_PORT

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise ValueError(f"must be a port number from 1 to {MAX_PORT}")
    return value


def _env_name(value: object) -> str:
    text = _text(value)
    if not _ENV_NAME_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not an environment variable name")
    return text


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("must be a positive number of seconds")
    return float(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


# Environment variables are text: each kind of value is read from text first, then checked as
# a config file value would be.
def _int_text(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _float_text(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _bool_text(text: str) -> object:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no, on/off)")


def _as_text(text: str) -> object:
    return text


class Setting(NamedTuple):
    """One global option: its argparse dest (also its config key), check, default, and how its
    GNOICERT_* text is read."""

    key: str
    check: Callable[[object], Any]
    default: Any
    from_text: Callable[[str], object] = _as_text
    path: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


# One row per global option that a config file or GNOICERT_* may set. `--config` and
# `--profile` themselves come from the flag or GNOICERT_CONFIG / GNOICERT_PROFILE only.
SETTINGS: tuple[Setting, ...] = (
    Setting("target", _target, None),
    Setting("port", _port, None, _int_text),
    Setting("ca_file", _text, None, path=True),
    Setting("cert", _text, None, path=True),
    Setting("key", _text, None, path=True),
    Setting("server_name", _text, None),
    Setting("username", _text, None),
    Setting("password_env", _env_name, None),
    Setting("password_file", _text, None, path=True),
    Setting("timeout", _timeout, DEFAULT_TIMEOUT_S, _float_text),
    Setting("insecure", _flag, False, _bool_text),
    Setting("verbose", _count, 0, _int_text),
)
_BY_KEY = {setting.key: setting for setting in SETTINGS}
# Every variable the command reads (tests clear them to run without the caller's settings).
VARIABLES = (CONFIG_ENV, PROFILE_ENV, *(setting.env for setting in SETTINGS))
# Where the password comes from is one choice: a source at a higher level replaces both keys.
PASSWORD_KEYS = ("password_env", "password_file")


def apply_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill every unset global option of `args` (None after parsing) from GNOICERT_*, then the
    config file and profile, then the built-in default. Raises ConfigError."""
    normalise_targets(args)
    flags = {
        s.key: getattr(args, s.key) for s in SETTINGS if getattr(args, s.key, None) is not None
    }
    config_path = getattr(args, "config", None) or environ.get(CONFIG_ENV) or None
    profile = getattr(args, "profile", None) or environ.get(PROFILE_ENV) or None
    from gnoicert.cli.configfile import file_layers

    layers = [flags, _environment(environ), *file_layers(config_path, profile, environ)]
    resolved = _merged(layers)
    for setting in SETTINGS:
        setattr(args, setting.key, resolved.get(setting.key, setting.default))
    # The fleet layers these separately: flags over the inventory over GNOICERT_* and the file.
    args.flag_settings = flags
    args.base_settings = _merged(layers[1:])
    if args.port is not None and args.target:
        args.target = _with_port(args.target, args.port)


def normalise_targets(args: argparse.Namespace) -> None:
    """-t values (repeatable, comma-separated) as `args.targets`; exactly one of them stays
    `args.target`, as a single-target run has always had it."""
    values = getattr(args, "target", None)
    if values is None or isinstance(values, str):
        args.targets = getattr(args, "targets", [values] if values else [])
        return
    targets = list(dict.fromkeys(p.strip() for v in values for p in v.split(",") if p.strip()))
    args.targets = targets
    args.target = targets[0] if len(targets) == 1 else None


def _merged(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Layers, highest first, as one (a password source in a higher layer hides both keys)."""
    merged: dict[str, Any] = {}
    password_chosen = False
    for layer in layers:
        for key, value in layer.items():
            if not (password_chosen and key in PASSWORD_KEYS):
                merged.setdefault(key, value)
        password_chosen = password_chosen or any(key in layer for key in PASSWORD_KEYS)
    return merged


def _with_port(target: str, port: int) -> str:
    """The target with `port` when it names none (a bad target is left for the client to
    report with its own message)."""
    from gnoicert.common.address import format_host_port, parse_host_port

    try:
        host, named = parse_host_port(target, default_port=0)
    except ValueError:
        return target
    return format_host_port(host, port) if named == 0 else target


def _environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if not raw:  # unset or empty: the next source decides
            continue
        try:
            values[setting.key] = setting.check(setting.from_text(raw))
        except ValueError as exc:
            raise ConfigError(f"environment variable {setting.env}: {exc}") from None
    return values


def help_epilog() -> str:
    """The precedence and the variables, for `gnoicert --help` (one home: this table)."""
    import textwrap

    names = ", ".join(setting.env for setting in SETTINGS)
    keys = ", ".join(setting.key for setting in SETTINGS)
    wrap = textwrap.TextWrapper(width=78, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(
        [
            "settings (flag > environment > config file > default):",
            *wrap.wrap(
                "each global option comes from its flag, else its GNOICERT_* variable, else the "
                "config file (the chosen profile's table, then the top level), else its default."
            ),
            *wrap.wrap(
                "config file: $XDG_CONFIG_HOME/gnoicert/config.toml (else "
                f"~/.config/gnoicert/config.toml), or --config FILE / {CONFIG_ENV}; profile: "
                f"--profile NAME / {PROFILE_ENV} / the file's top-level 'profile' key."
            ),
            *wrap.wrap(f"config keys, top level or in [profiles.NAME]: {keys}."),
            *wrap.wrap(f"variables: {names}."),
        ]
    )
