"""[[upstreams]] in the config file: several upstreams, the one-upstream shorthand, and bad entries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config import ConfigError, UpstreamSettings, load_config

TWO = """
[[upstreams]]
name = "laptop"
url = "http://localhost:1234/v1"
[[upstreams]]
name = "gpu"
url = "http://gpu-box:8080"
api_key = "env:GPU_BOX_KEY"
context_length = 32768
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "chatproxy.toml"
    path.write_text(text)
    return str(path)


def test_several_upstreams_with_a_key_from_the_environment(tmp_path):
    config = load_config(["--config", write(tmp_path, TWO)], {"GPU_BOX_KEY": "sk-secret-key"})
    assert config.upstreams == (
        UpstreamSettings("laptop", "http://localhost:1234"),
        UpstreamSettings("gpu", "http://gpu-box:8080", "sk-secret-key", 32768),
    )
    assert "sk-secret-key" not in repr(config)


@pytest.mark.parametrize(
    "argv,environ",
    [(["--lm-studio-url", "http://127.0.0.1:5555"], {}), ([], {"LM_STUDIO_URL": "http://127.0.0.1:5555"})],
)
def test_the_shorthand_from_a_flag_or_the_environment_wins_over_the_files_list(tmp_path, argv, environ):
    config = load_config(["--config", write(tmp_path, TWO), *argv], {"GPU_BOX_KEY": "k", **environ})
    assert config.upstreams == () and config.lm_studio_url == "http://127.0.0.1:5555"


def test_the_files_upstream_url_is_the_shorthand_without_a_list(tmp_path):
    config = load_config(["--config", write(tmp_path, '[upstream]\nurl = "http://box:1"\n')], {})
    assert config.upstreams == () and config.lm_studio_url == "http://box:1"


@pytest.mark.parametrize(
    "text,expected",
    [
        ('[[upstreams]]\nname = "gpu"\n', "upstream 'gpu' has no url"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x:1"\n[[upstreams]]\nname = "a"\nurl = "http://y:1"\n', "two upstreams are named 'a'"),
        ('[[upstreams]]\nname = "gpu"\nurl = "http://x:1"\napi_key = "env:NOT_SET_HERE"\n',
         "upstream 'gpu': api_key names the environment variable NOT_SET_HERE, which is not set"),
        ('[[upstreams]]\nurl = "http://x:1"\n', "upstream #1: needs a name"),
        ('[[upstreams]]\nname = "a/b"\nurl = "http://x:1"\n', "upstream #1: needs a name"),
        ('[[upstreams]]\nname = "a"\nurl = "x:1"\n', "upstream 'a': invalid url 'x:1'"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x:1"\ncontext_length = 0\n', "upstream 'a': invalid context_length 0"),
        ('[[upstreams]]\nname = "a"\nurl = "http://x:1"\nkey = "k"\n', "upstream #1: unknown key 'key'"),
        ('upstreams = "http://x:1"\n', "must be [[upstreams]] tables"),
    ],
)
def test_bad_entries_are_named_in_one_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(["--config", write(tmp_path, text)], {})
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_key_variable_stops_the_real_process_with_one_line_and_exit_2(project_root, clean_env, tmp_path):
    path = write(tmp_path, '[[upstreams]]\nname = "gpu"\nurl = "http://x:1"\napi_key = "env:NOT_SET_HERE"\n')
    process = subprocess.run(
        [sys.executable, str(project_root / "chatproxy.py"), "--config", path],
        env=clean_env, capture_output=True, text=True, timeout=20,
    )
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatproxy: ") and "NOT_SET_HERE" in lines[0], process.stderr
