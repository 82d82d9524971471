"""Settings: TOML defaults, HUB_* overrides, validation that names the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load_settings, sentinel_address, with_admin_token


def test_defaults_come_from_config_file() -> None:
    settings = load_settings(environ={})
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.hub_party_id == "NLHUB"


def test_every_key_is_overridable_by_environment() -> None:
    env = {
        "HUB_HOST": "127.0.0.2",
        "HUB_PORT": "9001",
        "HUB_PUBLIC_URL": "https://hub.example.test/",
        "HUB_COUNTRY_CODE": "de",
        "HUB_PARTY_ID": "abc",
        "HUB_ADMIN_TOKEN": "secret",
        "HUB_REDIS_URL": "redis://127.0.0.1:1/0",
        "HUB_DATA_DIR": "/tmp/x",
        "HUB_FORWARD_TIMEOUT": "2.5",
        "HUB_ALIVE_INTERVAL": "7",
        "HUB_MAX_BODY_BYTES": "1000",
        "HUB_LOG_LEVEL": "DEBUG",
        "HUB_LOG_FORMAT": "console",
    }
    s = load_settings(environ=env)
    assert (s.host, s.port, s.public_url) == ("127.0.0.2", 9001, "https://hub.example.test")
    assert (s.country_code, s.party_id) == ("DE", "ABC")  # CiString: normalized to upper case
    assert (s.admin_token, s.redis_url, s.data_dir) == ("secret", "redis://127.0.0.1:1/0", "/tmp/x")
    assert (s.forward_timeout, s.alive_interval, s.max_body_bytes) == (2.5, 7.0, 1000)
    assert (s.log_level, s.log_format) == ("DEBUG", "console")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HUB_PORT", "eighty"),
        ("HUB_PORT", "70000"),
        ("HUB_COUNTRY_CODE", "NLD"),
        ("HUB_PARTY_ID", "AB"),
        ("HUB_FORWARD_TIMEOUT", "-1"),
        ("HUB_LOG_FORMAT", "xml"),
        ("HUB_MAX_BODY_BYTES", "big"),
        ("HUB_PUBLIC_URL", "hub.example"),
    ],
)
def test_bad_value_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={key: value})


def test_bad_value_stops_start_with_status_2_and_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HUB_PORT": "eighty", "HUB_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HUB_PORT" in lines[0] and "int" in lines[0]


def test_admin_token_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(environ={"HUB_DATA_DIR": str(tmp_path)})
    first, generated = with_admin_token(settings)
    assert generated and len(first.admin_token) >= 32
    assert (tmp_path / "admin_token").stat().st_mode & 0o077 == 0
    again, generated_again = with_admin_token(settings)
    assert not generated_again
    assert again.admin_token == first.admin_token


def test_explicit_admin_token_wins(tmp_path: Path) -> None:
    settings = load_settings(environ={"HUB_DATA_DIR": str(tmp_path), "HUB_ADMIN_TOKEN": "x" * 40})
    assert with_admin_token(settings)[0].admin_token == "x" * 40
    assert not (tmp_path / "admin_token").exists()


def test_no_admin_token_and_nowhere_to_keep_one_is_a_config_error(tmp_path: Path) -> None:
    """No HUB_ADMIN_TOKEN and a DATA_DIR that cannot be made (a read-only filesystem in a
    container; here a path through a file): one line naming the setting, no trace."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = load_settings(environ={}, data_dir=str(blocker / "data"))
    with pytest.raises(ConfigError, match="set HUB_ADMIN_TOKEN"):
        with_admin_token(settings)


def test_redis_mode_needs_a_url_and_sentinel_its_form() -> None:
    with pytest.raises(ConfigError, match="REDIS_MODE cluster needs HUB_REDIS_URL"):
        load_settings(environ={"HUB_REDIS_MODE": "cluster"})
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        load_settings(environ={"HUB_REDIS_MODE": "sentinel", "HUB_REDIS_URL": "redis://x:1"})
    good = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/hub/2"
    settings = load_settings(environ={"HUB_REDIS_MODE": "sentinel", "HUB_REDIS_URL": good})
    assert settings.redis_mode == "sentinel"
    assert sentinel_address(good) == (
        [("10.0.0.1", 26379), ("10.0.0.2", 26379)],
        "hub",
        {"db": 2, "username": None, "password": "pw"},
    )
    with pytest.raises(ConfigError, match="REDIS_MODE"):
        load_settings(environ={"HUB_REDIS_MODE": "sharded", "HUB_REDIS_URL": "redis://x:1"})
