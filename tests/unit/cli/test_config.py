"""Global options from flag > GNOICERT_* > config file (profile, then top level) > default.

The parser and the settings resolution run as `gnoicert` runs them; the environment is a dict
and the config file a real file, so nothing here depends on the caller's own environment.
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnoicert.cli.config import SETTINGS, ConfigError, apply_settings
from gnoicert.cli.configfile import default_config_path
from gnoicert.cli.main import build_parser, main

NO_FILE = {"XDG_CONFIG_HOME": "/nonexistent-gnoicert-config"}


def resolve(*argv: str, environ: Mapping[str, str] = NO_FILE) -> argparse.Namespace:
    args = build_parser().parse_args([*argv, "time"])
    apply_settings(args, environ)
    return args


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class TestPrecedence:
    def test_built_in_defaults(self) -> None:
        args = resolve()
        assert (args.target, args.timeout, args.insecure, args.verbose) == (None, 10.0, False, 0)

    def test_flag_beats_env_beats_profile_beats_top_level(self, tmp_path: Path) -> None:
        config = write(
            tmp_path / "c.toml",
            'target = "top:1"\ntimeout = 1\nusername = "top"\nserver_name = "top.example"\n'
            '[profiles.lab]\ntarget = "lab:2"\ntimeout = 2\nusername = "lab"\n',
        )
        environ = {**NO_FILE, "GNOICERT_TIMEOUT": "3", "GNOICERT_TARGET": "env:3"}
        args = resolve("--config", str(config), "--profile", "lab", "-t", "flag:4", environ=environ)
        assert (args.target, args.timeout, args.username, args.server_name) == (
            "flag:4",
            3.0,
            "lab",
            "top.example",
        )

    @settings(max_examples=60, deadline=None)
    @given(
        sources=st.dictionaries(
            st.sampled_from(["target", "username", "timeout"]),
            st.sets(st.sampled_from(["flag", "env", "profile", "top"]), min_size=1),
        )
    )
    def test_the_highest_source_that_sets_a_key_wins(
        self, sources: dict[str, set[str]], tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Each key set in any subset of the four sources, with a value naming the source."""
        value: dict[str, Callable[[str], str]] = {
            "target": lambda src: f"{src}.example:9",
            "username": lambda src: src,
            "timeout": lambda src: str(["flag", "env", "profile", "top"].index(src) + 1),
        }
        flags: list[str] = []
        environ = dict(NO_FILE)
        top: list[str] = []
        profile: list[str] = []
        for key, where in sources.items():
            for src in where:
                text = value[key](src)
                literal = text if key == "timeout" else f'"{text}"'
                if src == "flag":
                    flags += ["--" + key, text]
                elif src == "env":
                    environ["GNOICERT_" + key.upper()] = text
                elif src == "profile":
                    profile.append(f"{key} = {literal}")
                else:
                    top.append(f"{key} = {literal}")
        config = write(
            tmp_path_factory.mktemp("c") / "c.toml",
            "\n".join([*top, "[profiles.p]", *profile]) + "\n",
        )
        args = resolve("--config", str(config), "--profile", "p", *flags, environ=environ)
        for key, where in sources.items():
            winner = next(s for s in ("flag", "env", "profile", "top") if s in where)
            expected = value[key](winner)
            assert getattr(args, key) == (float(expected) if key == "timeout" else expected)

    def test_password_source_is_one_choice(self, tmp_path: Path) -> None:
        """A password file in the config does not outrank a --password-env on the command line
        (read_password prefers a file): the higher source replaces both keys."""
        config = write(tmp_path / "c.toml", 'password_file = "pw.txt"\n')
        args = resolve("--config", str(config), "--password-env", "PW")
        assert (args.password_env, args.password_file) == ("PW", None)
        args = resolve("--config", str(config))
        assert args.password_file == str(tmp_path / "pw.txt")

    def test_config_paths_are_relative_to_the_file(self, tmp_path: Path) -> None:
        config = write(
            tmp_path / "etc" / "c.toml", 'ca_file = "ca.pem"\ncert = "/abs/op.pem"\nkey = "k"\n'
        )
        args = resolve("--config", str(config))
        assert (args.ca_file, args.cert, args.key) == (
            str(tmp_path / "etc" / "ca.pem"),
            "/abs/op.pem",
            str(tmp_path / "etc" / "k"),
        )

    def test_port_completes_a_target_without_one(self, tmp_path: Path) -> None:
        config = write(tmp_path / "c.toml", "port = 50051\n")
        assert resolve("--config", str(config), "-t", "r1").target == "r1:50051"
        assert resolve("--config", str(config), "-t", "2001:db8::1").target == "[2001:db8::1]:50051"
        assert resolve("--config", str(config), "-t", "r1:9339").target == "r1:9339"

    def test_boolean_and_count_from_the_environment(self) -> None:
        args = resolve(environ={**NO_FILE, "GNOICERT_INSECURE": "yes", "GNOICERT_VERBOSE": "2"})
        assert (args.insecure, args.verbose) == (True, 2)
        assert resolve(environ={**NO_FILE, "GNOICERT_INSECURE": ""}).insecure is False

    def test_profile_chosen_by_env_or_by_the_file(self, tmp_path: Path) -> None:
        config = write(
            tmp_path / "c.toml",
            'profile = "a"\n[profiles.a]\nusername = "ua"\n[profiles.b]\nusername = "ub"\n',
        )
        environ = {**NO_FILE, "GNOICERT_CONFIG": str(config)}
        assert resolve(environ=environ).username == "ua"
        assert resolve(environ={**environ, "GNOICERT_PROFILE": "b"}).username == "ub"
        assert resolve("--profile", "a", environ={**environ, "GNOICERT_PROFILE": "b"}).username == (
            "ua"
        )

    def test_the_default_file_follows_xdg(self, tmp_path: Path) -> None:
        write(tmp_path / "xdg" / "gnoicert" / "config.toml", 'username = "xdg"\n')
        write(tmp_path / "home" / ".config" / "gnoicert" / "config.toml", 'username = "home"\n')
        xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
        assert resolve(environ=xdg).username == "xdg"
        home = {"HOME": str(tmp_path / "home")}
        assert resolve(environ=home).username == "home"
        assert default_config_path({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}) == Path(
            "/h/.config/gnoicert/config.toml"
        )

    def test_every_global_option_has_a_variable_and_a_flag(self) -> None:
        parser = build_parser()
        dests = {action.dest for action in parser._actions}
        for setting in SETTINGS:
            assert setting.key in dests
            assert setting.env == "GNOICERT_" + setting.key.upper()


class TestRefusals:
    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ('targt = "r1"\n', ["top level", "unknown key 'targt'", "did you mean 'target'"]),
            ('[profiles.lab]\ntimeout = "soon"\n', ["profile 'lab'", "key 'timeout'", "number"]),
            ("[profiles.lab]\ntimeout = -1\n", ["profile 'lab'", "key 'timeout'", "positive"]),
            ("port = 70000\n", ["key 'port'", "1 to 65535"]),
            ('target = "a:b:c"\n', ["key 'target'", "brackets"]),
            ('insecure = "yes"\n', ["key 'insecure'", "true or false"]),
            ('password_env = "not a name"\n', ["key 'password_env'", "environment variable"]),
            ('password = "hunter2hunter2"\n', ["key 'password'", "in clear is refused"]),
            ('[profiles.lab]\nadmin_password = "x"\n', ["profile 'lab'", "in clear is refused"]),
            ("[profiles]\nlab = 1\n", ["[profiles.NAME] tables"]),
            ("profile = 3\n", ["key 'profile'"]),
            ("target = \n", ["not valid TOML"]),
        ],
    )
    def test_bad_config_names_file_profile_and_key(
        self, tmp_path: Path, text: str, words: list[str]
    ) -> None:
        config = write(tmp_path / "c.toml", text)
        with pytest.raises(ConfigError) as caught:
            resolve("--config", str(config))
        message = str(caught.value)
        assert message.startswith(str(config)), message
        for word in words:
            assert word in message, message
        assert "hunter2" not in message

    def test_unused_profiles_are_checked_too(self, tmp_path: Path) -> None:
        config = write(tmp_path / "c.toml", '[profiles.a]\n[profiles.b]\nusernme = "x"\n')
        with pytest.raises(ConfigError, match="profile 'b': unknown key 'usernme'"):
            resolve("--config", str(config), "--profile", "a")

    def test_unknown_profile_lists_the_known_ones(self, tmp_path: Path) -> None:
        config = write(tmp_path / "c.toml", "[profiles.a]\n[profiles.b]\n")
        with pytest.raises(ConfigError, match=r"no profile 'c' \(profiles: a, b\)"):
            resolve("--config", str(config), "--profile", "c")

    def test_profile_without_any_file(self) -> None:
        with pytest.raises(ConfigError, match="no config file"):
            resolve("--profile", "lab")

    def test_missing_explicit_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            resolve("--config", str(tmp_path / "nope.toml"))

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("GNOICERT_TIMEOUT", "soon"),
            ("GNOICERT_PORT", "0"),
            ("GNOICERT_INSECURE", "maybe"),
            ("GNOICERT_VERBOSE", "-1"),
            ("GNOICERT_TARGET", "a:b:c"),
        ],
    )
    def test_bad_environment_value_names_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=f"environment variable {name}: "):
            resolve(environ={**NO_FILE, name: value})

    @given(text=st.text(alphabet=string.printable, max_size=80))
    @settings(max_examples=100, deadline=None)
    def test_any_text_is_either_read_or_refused(
        self, text: str, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        config = write(tmp_path_factory.mktemp("c") / "c.toml", text)
        message = ""
        try:
            resolve("--config", str(config))
        except ConfigError as exc:
            message = str(exc)
        assert message == "" or message.startswith(str(config)), message

    def test_the_command_exits_2_before_dialling(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write(tmp_path / "c.toml", '[profiles.lab]\ntarget = "127.0.0.1:1"\ntimout = 1\n')
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
        assert main(["--config", str(config), "--profile", "lab", "time"]) == 2
        err = capsys.readouterr().err
        assert f"gnoicert: {config}: profile 'lab': unknown key 'timout'" in err
        assert "Traceback" not in err
