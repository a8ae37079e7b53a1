"""chatproxy's configuration: one frozen dataclass, one loader, one table of settings.

Precedence, highest first: command-line flag > environment variable > config file >
built-in default. The config file is ``--config PATH``, else ``$CHATPROXY_CONFIG``, else
``config.toml`` beside chatproxy.py. Nothing else in chatproxy reads the environment or
the file: the loader is handed ``argv`` and ``environ``, so tests never touch os.environ.

A bad value raises ConfigError with one line that names the value and where it came from.

Upstreams: ``[[upstreams]]`` tables in the file (name, url, api_key, context_length) list
several; ``upstream.url`` (``--lm-studio-url``, ``LM_STUDIO_URL``) is the one-upstream
shorthand. A URL given by flag or environment wins over the file's list, as flags and the
environment win over the file everywhere.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from store import is_postgres_url

DEFAULT_CONFIG_FILE = Path(__file__).resolve().with_name("config.toml")
# Where a setting's value came from, by precedence: a higher one wins.
DEFAULT, FILE, ENVIRONMENT, FLAG = range(4)


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class UpstreamSettings:
    """One ``[[upstreams]]`` table."""

    name: str
    url: str
    api_key: str | None = field(default=None, repr=False)  # never printed, never logged
    context_length: int | None = None  # for its models when the server does not say


@dataclass(frozen=True)
class Config:
    host: str = "localhost"
    port: int = 8080
    workers: int = 1
    debug: bool = False
    lm_studio_url: str = "http://localhost:1234"
    upstreams: tuple[UpstreamSettings, ...] = ()  # empty: one upstream, at lm_studio_url
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    chats_dir: str = "./chats"
    store_url: str | None = field(default=None, repr=False)  # postgresql://...: may hold a password
    store_pool_size: int = 10
    advertise_url: str | None = None
    heartbeat: float = 15.0
    on_disconnect: str = "stop"
    max_streams: int = 1000
    shutdown_grace: float = 30.0
    cors_origins: tuple[str, ...] = ("*",)
    max_body_size: int = 10 * 1024 * 1024
    max_message_size: int = 1_000_000
    max_import_size: int = 1024 * 1024 * 1024
    token: str | None = field(default=None, repr=False)  # never printed, never logged
    log_format: str = "text"
    model_titles: bool = True


# -- value parsers: each takes a TOML value or an env/flag string, returns the typed value ---


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _port(value: Any) -> int:
    number = _integer(value)
    if not 1 <= number <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return number


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError("expected a whole number")


def _positive_integer(value: Any) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError("expected a whole number of at least 1")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds") from None
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a number of seconds greater than 0")
    return number


def _seconds_or_zero(value: Any) -> float:
    if value in (0, "0"):
        return 0.0
    return _seconds(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off", ""):
            return False
    raise ValueError("expected true or false")


def _url(value: Any) -> str:
    url = _text(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    # The frontend's LM Studio URL ends in /v1; accept it here too rather than call /v1/v1/...
    return url.removesuffix("/v1")


def _store(value: Any) -> str:
    location = _text(value)
    if "://" in location and not is_postgres_url(location):
        raise ValueError("expected a postgresql:// URL, or the path of a chats folder")
    return location


def _advertise_url(value: Any) -> str:
    url = _url(value)
    if urlsplit(url).port is None:
        raise ValueError("expected a URL with a port, e.g. http://10.0.0.5:8081")
    return url


def _origins(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not value:
        raise ValueError('expected a list of origins, e.g. ["*"] or ["http://localhost:5173"]')
    return tuple(_text(origin) for origin in value)


def _token(value: Any) -> str | None:
    token = _text(value)
    if len(token) < 16:
        raise ValueError("expected a token of at least 16 characters")
    return token


def _on_disconnect(value: Any) -> str:
    if value not in ("stop", "continue"):
        raise ValueError('expected "stop" or "continue"')
    return value


def _log_format(value: Any) -> str:
    if value not in ("text", "json"):
        raise ValueError('expected "text" or "json"')
    return value


@dataclass(frozen=True)
class Setting:
    field: str  # the Config field
    key: str  # section.key in the config file
    parse: Callable[[Any], Any]
    env: str | None = None
    flag: str | None = None


SETTINGS = (
    Setting("host", "server.host", _text, "CHATPROXY_HOST", "--host"),
    Setting("port", "server.port", _port, "CHATPROXY_PORT", "--port"),
    Setting("workers", "server.workers", _positive_integer, "CHATPROXY_WORKERS", "--workers"),
    Setting("debug", "server.debug", _boolean, "CHATPROXY_DEBUG", "--debug"),
    Setting("lm_studio_url", "upstream.url", _url, "LM_STUDIO_URL", "--lm-studio-url"),
    Setting("connect_timeout", "upstream.connect_timeout", _seconds),
    Setting("idle_timeout", "upstream.idle_timeout", _seconds),
    Setting("advertise_url", "server.advertise_url", _advertise_url, "CHATPROXY_ADVERTISE_URL", "--advertise-url"),
    Setting("chats_dir", "storage.chats_dir", _text, "CHATS_DIR", "--chats-dir"),
    Setting("store_url", "storage.url", _store, "CHATPROXY_STORE", "--store"),
    Setting("store_pool_size", "storage.pool_size", _positive_integer),
    Setting("heartbeat", "stream.heartbeat", _seconds),
    Setting("on_disconnect", "stream.on_disconnect", _on_disconnect),
    Setting("max_streams", "stream.max_concurrent", _positive_integer),
    Setting("shutdown_grace", "shutdown.grace", _seconds_or_zero),
    Setting("cors_origins", "cors.allowed_origins", _origins),
    Setting("max_body_size", "limits.max_body_size", _positive_integer),
    Setting("max_message_size", "limits.max_message_size", _positive_integer),
    Setting("max_import_size", "limits.max_import_size", _positive_integer),
    Setting("token", "auth.token", _token, "CHATPROXY_TOKEN"),
    Setting("log_format", "log.format", _log_format, "CHATPROXY_LOG_FORMAT"),
    Setting("model_titles", "chats.model_titles", _boolean),
)


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatproxy.py",
        description="chatproxy: keeps your LM Studio chats and streams the replies.",
        epilog="Every setting, its config.toml key and environment variable: docs/configuration.md",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: config.toml beside chatproxy.py; env CHATPROXY_CONFIG)")
    parser.add_argument("--host", help=_help("host", "bind address"))
    parser.add_argument("--port", help=_help("port", "listen port"))
    parser.add_argument("--workers", metavar="N", help=_help("workers", "server processes sharing the port"))
    parser.add_argument("--lm-studio-url", metavar="URL", help=_help("lm_studio_url", "LM Studio's (or any OpenAI-compatible server's) base URL"))
    parser.add_argument("--chats-dir", metavar="DIR", help=_help("chats_dir", "the chats folder"))
    parser.add_argument("--store", dest="store_url", metavar="URL", help=_help("store_url", "chats on PostgreSQL: postgresql://user@host:port/db (or a chats folder)"))
    parser.add_argument("--advertise-url", metavar="URL", help=_help("advertise_url", "where other instances reach this one for its turns (http://host:port)"))
    parser.add_argument("--debug", action="store_const", const="true", help=_help("debug", "verbose logging"))
    return parser


def _help(field: str, text: str) -> str:
    """A flag's help: what it sets, its default, and where else it can be set."""
    setting = next(setting for setting in SETTINGS if setting.field == field)
    default = getattr(Config(), field)
    shown = "unset" if default is None else str(default).lower() if isinstance(default, bool) else default
    env = f"; env {setting.env}" if setting.env else ""
    return f"{text} (default: {shown}{env}; {setting.key} in the config file)"


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    flags = vars(_argument_parser().parse_args(argv))
    config_path, table = _read_config_file(flags["config"], environ)
    values: dict[str, Any] = {}
    if "upstreams" in table:
        values["upstreams"] = _upstream_list(table["upstreams"], config_path, environ)
    ranks: dict[str, int] = {}
    for setting in SETTINGS:
        source, raw, ranks[setting.field] = _find(setting, flags, environ, table, config_path)
        if source is None:
            continue
        if setting.field == "lm_studio_url" and ranks[setting.field] >= ENVIRONMENT:
            values.pop("upstreams", None)  # the shorthand, from a flag or the environment
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as error:
            shown = "(hidden)" if setting.field in ("token", "store_url") else repr(raw)
            raise ConfigError(f"{source}: invalid value {shown}: {error}") from None
    _choose_store(values, ranks)
    return Config(**values)


def _choose_store(values: dict[str, Any], ranks: dict[str, int]) -> None:
    """``storage.url`` and ``storage.chats_dir`` both say where chats are: the one given with
    the higher precedence wins (the URL when even); a URL that is a path means the folder."""
    location = values.pop("store_url", None)
    if location is None or ranks["chats_dir"] > ranks["store_url"]:
        return
    if is_postgres_url(location):
        values["store_url"] = location
    else:
        values["chats_dir"] = location


def _find(setting, flags, environ, table, config_path):
    """Where the setting's value comes from, the value, and that source's precedence."""
    if setting.flag and flags.get(setting.field) is not None:
        return setting.flag, flags[setting.field], FLAG
    if setting.env and setting.env in environ:
        return f"environment variable {setting.env}", environ[setting.env], ENVIRONMENT
    section, key = setting.key.split(".")
    if key in table.get(section, {}):
        return f"{config_path}: {setting.key}", table[section][key], FILE
    return None, None, DEFAULT


def _read_config_file(flag_path: str | None, environ: Mapping[str, str]) -> tuple[Path, dict]:
    if flag_path:
        path, required = Path(flag_path), True
    elif environ.get("CHATPROXY_CONFIG"):
        path, required = Path(environ["CHATPROXY_CONFIG"]), True
    else:
        path, required = DEFAULT_CONFIG_FILE, False
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return path, {}
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    _check_keys(path, table)
    return path, table


def _check_keys(path: Path, table: dict) -> None:
    known = {setting.key for setting in SETTINGS}
    sections = {key.split(".")[0] for key in known}
    for section, entries in table.items():
        if section == "upstreams":
            continue  # checked by _upstream_list
        if section not in sections or not isinstance(entries, dict):
            raise ConfigError(f"{path}: unknown section or key {section!r}")
        for key in entries:
            if f"{section}.{key}" not in known:
                raise ConfigError(f"{path}: unknown key '{section}.{key}'")



# -- [[upstreams]] ----------------------------------------------------------------------------

UPSTREAM_KEYS = ("name", "url", "api_key", "context_length")
# A name prefixes its models (NAME/MODEL), so it holds no slash.
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _upstream_list(value: Any, path: Path, environ: Mapping[str, str]) -> tuple[UpstreamSettings, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(entry, dict) for entry in value):
        raise ConfigError(f"{path}: 'upstreams' must be [[upstreams]] tables, each with a name and a url")
    upstreams: list[UpstreamSettings] = []
    for number, entry in enumerate(value, 1):
        where = f"{path}: upstream #{number}"
        unknown = [key for key in entry if key not in UPSTREAM_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(UPSTREAM_KEYS)})")
        name = entry.get("name")
        if not isinstance(name, str) or not _UPSTREAM_NAME.fullmatch(name):
            raise ConfigError(f"{where}: needs a name of letters, digits, '.', '_' or '-' (got {name!r})")
        where = f"{path}: upstream '{name}'"
        if any(upstream.name == name for upstream in upstreams):
            raise ConfigError(f"{path}: two upstreams are named '{name}'")
        if "url" not in entry:
            raise ConfigError(f"{where} has no url")
        try:
            url = _url(entry["url"])
        except ValueError as error:
            raise ConfigError(f"{where}: invalid url {entry['url']!r}: {error}") from None
        try:
            context_length = _positive_integer(entry["context_length"]) if "context_length" in entry else None
        except ValueError as error:
            raise ConfigError(f"{where}: invalid context_length {entry['context_length']!r}: {error}") from None
        api_key = _api_key(entry["api_key"], where, environ) if "api_key" in entry else None
        upstreams.append(UpstreamSettings(name, url, api_key, context_length))
    return tuple(upstreams)


def _api_key(value: Any, where: str, environ: Mapping[str, str]) -> str:
    """``"env:VAR"`` (the key is read from the environment), or the key itself."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{where}: api_key must be "env:VARIABLE" or the key')
    if value.startswith("env:"):
        variable = value[4:]
        if not environ.get(variable):
            raise ConfigError(f"{where}: api_key names the environment variable {variable}, which is not set")
        value = environ[variable]
    if not value.isprintable() or " " in value.strip():
        raise ConfigError(f"{where}: api_key holds spaces or control characters")
    return value.strip()
