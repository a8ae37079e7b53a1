"""Config precedence (flag > env > file > default) and bad values, loader and real process."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from config import DEFAULT_CONFIG_FILE, Config, ConfigError, load_config


def write(tmp_path, text: str):
    path = tmp_path / "chatproxy.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_documented_config_file():
    # config.toml documents every default: loading it must change nothing.
    assert load_config(["--config", str(DEFAULT_CONFIG_FILE)], {}) == Config()
    assert load_config([], {}) == Config()


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    path = write(tmp_path, '[server]\nport = 7001\nhost = "0.0.0.0"\n[storage]\nchats_dir = "/from/file"\n')
    environ = {"CHATPROXY_PORT": "7002", "CHATS_DIR": "/from/env"}
    config = load_config(["--config", path, "--port", "7003"], environ)
    assert config.port == 7003  # flag
    assert config.chats_dir == "/from/env"  # env over file
    assert config.host == "0.0.0.0"  # file over default
    assert config.lm_studio_url == "http://localhost:1234"  # default


PG = "postgresql://chatproxy@db:5432/chats"


@pytest.mark.parametrize(
    "argv, environ, file, store_url, chats_dir",
    [
        (["--store", PG], {}, "", PG, "./chats"),
        ([], {"CHATPROXY_STORE": PG}, "", PG, "./chats"),
        ([], {}, f'[storage]\nurl = "{PG}"\n', PG, "./chats"),
        (["--store", "/srv/chats"], {}, "", None, "/srv/chats"),  # a path is the folder
        ([], {"CHATPROXY_STORE": PG}, '[storage]\nchats_dir = "/file"\n', PG, "/file"),  # env over file
        (["--chats-dir", "/flag"], {"CHATPROXY_STORE": PG}, "", None, "/flag"),  # flag over env
        (["--store", PG], {"CHATS_DIR": "/env"}, "", PG, "/env"),
    ],
)
def test_the_store_is_chosen_by_url_flag_or_variable_and_a_path_means_the_folder(tmp_path, argv, environ, file, store_url, chats_dir):
    config = load_config(["--config", write(tmp_path, file), *argv], environ)
    assert (config.store_url, config.chats_dir) == (store_url, chats_dir)


def test_seed_env_vars_and_flags(tmp_path):
    config = load_config(
        ["--lm-studio-url", "http://127.0.0.1:5555/v1/", "--debug"],
        {"LM_STUDIO_URL": "http://ignored:1", "CHATPROXY_HOST": "127.0.0.1"},
    )
    assert config.lm_studio_url == "http://127.0.0.1:5555"
    assert config.debug is True
    assert config.host == "127.0.0.1"
    assert load_config([], {"CHATPROXY_DEBUG": "1"}).debug is True


def test_config_file_from_env(tmp_path):
    path = write(tmp_path, "[stream]\nheartbeat = 2.5\n")
    assert load_config([], {"CHATPROXY_CONFIG": path}).heartbeat == 2.5


@pytest.mark.parametrize(
    "argv,environ,file_text,expected",
    [
        (["--port", "abc"], {}, None, "--port: invalid value 'abc'"),
        ([], {"CHATPROXY_PORT": "70000"}, None, "environment variable CHATPROXY_PORT: invalid value '70000'"),
        ([], {}, "[server]\nport = \"x\"\n", "server.port: invalid value 'x'"),
        ([], {}, "[server\nport = 1", "is not valid TOML"),
        ([], {}, "[server]\nprot = 1\n", "unknown key 'server.prot'"),
        ([], {}, "[nope]\na = 1\n", "unknown section or key 'nope'"),
        (["--lm-studio-url", "localhost:1234"], {}, None, "--lm-studio-url: invalid value 'localhost:1234'"),
        ([], {"LM_STUDIO_URL": "ftp://x"}, None, "LM_STUDIO_URL: invalid value 'ftp://x'"),
        ([], {}, "[upstream]\nidle_timeout = -1\n", "upstream.idle_timeout: invalid value -1"),
        ([], {}, "[cors]\nallowed_origins = []\n", "cors.allowed_origins"),
    ],
)
def test_bad_values_name_the_value_and_its_source(tmp_path, argv, environ, file_text, expected):
    if file_text is not None:
        argv = argv + ["--config", write(tmp_path, file_text)]
    with pytest.raises(ConfigError) as raised:
        load_config(argv, environ)
    assert expected in str(raised.value)


def test_missing_config_file_named_explicitly_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(["--config", str(tmp_path / "missing.toml")], {})


@pytest.mark.parametrize(
    "args,env",
    [(["--port", "abc"], {}), ([], {"CHATPROXY_PORT": "abc"}), (["--lm-studio-url", "nourl"], {})],
)
def test_bad_value_stops_the_real_process_with_one_line_and_exit_2(project_root, clean_env, args, env):
    process = subprocess.run(
        [sys.executable, str(project_root / "chatproxy.py"), *args],
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatproxy: "), process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize(
    "host,token,warned",
    [
        ("localhost", None, False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("0.0.0.0", None, True),
        ("192.168.1.20", None, True),
        ("chat.example.com", None, True),
        ("0.0.0.0", "a-long-enough-token-123", False),
    ],
)
def test_non_loopback_address_without_token_is_warned_about(host, token, warned):
    from chatproxy import security_warnings

    warnings = security_warnings(Config(host=host, token=token))
    assert bool(warnings) == warned
    assert all("token" in warning for warning in warnings)


def test_token_is_never_shown_by_the_config():
    config = load_config([], {"CHATPROXY_TOKEN": "super-secret-token-value"})
    assert config.token == "super-secret-token-value"
    assert "super-secret" not in repr(config)
    with pytest.raises(ConfigError) as raised:
        load_config([], {"CHATPROXY_TOKEN": "short-secret"})
    assert "short-secret" not in str(raised.value)


def test_runs_on_uvloop_where_installed_and_on_asyncio_without(monkeypatch):
    from chatproxy import run_event_loop

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_event_loop(loop_module()).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import fails
    assert run_event_loop(loop_module()).startswith("asyncio")


def test_help_shows_each_flags_default_and_variable(capsys):
    with pytest.raises(SystemExit):
        load_config(["--help"], {})
    shown = " ".join(capsys.readouterr().out.split())
    for text in ("--port PORT listen port (default: 8080; env CHATPROXY_PORT",
                 "(default: http://localhost:1234; env LM_STUDIO_URL", "(default: ./chats; env CHATS_DIR",
                 "(default: 1; env CHATPROXY_WORKERS", "(default: false; env CHATPROXY_DEBUG"):
        assert text in shown, text
