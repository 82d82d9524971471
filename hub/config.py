"""Hub settings: defaults from ``config/hub.toml``, every key overridable by ``HUB_<KEY>``.

Values are decoded and validated with msgspec, so a wrong value stops start-up with one line
that names the key and the form it expects.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from hub.ocpi.models import CountryCode, PartyId

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "hub.toml"
ENV_PREFIX = "HUB_"


class ConfigError(Exception):
    """A setting has a value the hub cannot run with."""


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything an operator can set; see config/hub.toml for the meaning of each key."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    public_url: str = ""
    country_code: CountryCode = "NL"
    party_id: PartyId = "HUB"
    business_name: str = "OCPI Roaming Hub"
    admin_token: str = ""
    redis_url: str = ""
    redis_mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    redis_wait_replicas: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    redis_server_bin: str = ""
    data_dir: str = "./data"
    forward_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    alive_interval: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    max_body_bytes: Annotated[int, msgspec.Meta(gt=0)] = 4 * 1024 * 1024
    platform_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 64
    broadcast_modules: tuple[str, ...] = (
        "locations",
        "tariffs",
        "tokens",
        "bookings/booking_locations",
    )
    broadcast_wait: bool = False
    broadcast_claim_idle: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    delivery_max_age: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    delivery_retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = 3
    delivery_backoff: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    delivery_failures_check: Annotated[int, msgspec.Meta(ge=1)] = 5
    delivery_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 16
    deliveries_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 32
    delivery_drop_identical: bool = True
    get_all_partial: bool = False
    rotation_grace: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    rotation_retry: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    rotation_interval: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    roles_update_interval: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    roles_update_clientinfo: bool = False
    routing_policy: Literal["open", "agreements"] = "open"
    page_link_ttl: Annotated[int, msgspec.Meta(ge=1)] = 3600
    cdr_location_ttl: Annotated[int, msgspec.Meta(ge=1)] = 400 * 24 * 3600
    callback_ttl: Annotated[int, msgspec.Meta(ge=1)] = 24 * 3600
    authorize_deadline: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    open_routing_ttl: Annotated[int, msgspec.Meta(ge=1)] = 30 * 24 * 3600
    rate_limit_per_second: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 200.0
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 400
    redis_timeout: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    redis_max_connections: Annotated[int, msgspec.Meta(ge=2)] = 64
    outbound_allow: tuple[Literal["loopback", "private"], ...] = ()
    traffic_retention: Annotated[float, msgspec.Meta(gt=0)] = 24 * 3600.0
    traffic_max_entries: Annotated[int, msgspec.Meta(ge=100)] = 200_000
    traffic_bodies: str = ""
    traffic_body_max: Annotated[int, msgspec.Meta(ge=0, le=65536)] = 2048
    metrics_token: str = ""
    dashboard_session_ttl: Annotated[int, msgspec.Meta(ge=60)] = 8 * 3600
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    def __post_init__(self) -> None:
        self.country_code = self.country_code.upper()
        self.party_id = self.party_id.upper()
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if self.redis_mode != "standalone" and not self.redis_url:
            raise ConfigError(
                f"{ENV_PREFIX}REDIS_MODE {self.redis_mode} needs {ENV_PREFIX}REDIS_URL "
                "(the embedded Redis is one standalone server)"
            )
        if self.redis_mode == "sentinel":
            try:
                sentinel_address(self.redis_url)
            except ValueError as exc:
                raise ConfigError(
                    f"{ENV_PREFIX}REDIS_URL: with REDIS_MODE sentinel, expected "
                    "redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db] "
                    f"({exc})"
                ) from None
        if self.redis_mode == "cluster" and self.redis_wait_replicas:
            raise ConfigError(
                f"{ENV_PREFIX}REDIS_WAIT_REPLICAS works with one master (standalone or "
                "sentinel), not with REDIS_MODE cluster"
            )
        if self.traffic_bodies == "credentials":
            raise ConfigError(
                f"{ENV_PREFIX}TRAFFIC_BODIES: {self.traffic_bodies} bodies carry credentials "
                "tokens, which the traffic log never keeps"
            )
        if not re.match(r"^https?://[^/\s]+", self.public_url):
            raise ConfigError(
                f"{ENV_PREFIX}PUBLIC_URL: expected an http(s) URL, got {self.public_url!r}"
            )

    @property
    def hub_party_id(self) -> str:
        """The hub's OCPI identity as credentials' ``hub_party_id`` spells it (5 characters)."""
        return self.country_code + self.party_id

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


_LISTS = {"broadcast_modules", "outbound_allow"}


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """HUB_<KEY> values; list settings are comma-separated (HUB_BROADCAST_MODULES=a,b)."""
    fields = {f.upper(): f for f in Settings.__struct_fields__}
    out: dict[str, Any] = {}
    for key, value in environ.items():
        name = fields.get(key[len(ENV_PREFIX) :]) if key.startswith(ENV_PREFIX) else None
        if name is not None:
            out[name] = (
                [v.strip() for v in value.split(",") if v.strip()] if name in _LISTS else value
            )
    return out


def load_settings(
    path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read the TOML defaults, apply ``HUB_*`` variables, then explicit overrides."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(environ.get("HUB_CONFIG", "")) if environ.get("HUB_CONFIG") else path
    path = path or DEFAULT_CONFIG
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    elif "HUB_CONFIG" in environ:
        raise ConfigError(f"HUB_CONFIG: no such file {path}")
    values.update(_env_overrides(environ))
    values.update(overrides)
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    match = re.search(r" - at `\$\.(\w+)[`\[]", message)  # a key, or an item of a list
    if match is None:
        unknown = re.search(r"unknown field `(\w+)`", message)
        if unknown:
            return f"unknown setting {unknown.group(1)!r} in the config file"
        return message
    key = match.group(1)
    expected = message[: match.start()]
    return f"{ENV_PREFIX}{key.upper()} (or {key} in hub.toml): {expected}"


def with_admin_token(settings: Settings) -> tuple[Settings, bool]:
    """Fill an unset admin token from ``DATA_DIR/admin_token``, generating it on first start.

    Returns the settings and whether the token was generated just now (to print it once).
    """
    if settings.admin_token:
        return settings, False
    path = settings.data_path / "admin_token"
    if path.exists():
        return settings.replace(admin_token=path.read_text().strip()), False
    import secrets

    token = secrets.token_urlsafe(32)
    try:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # a read-only filesystem (a container): the token must be given
        raise ConfigError(
            f"{ENV_PREFIX}ADMIN_TOKEN is not set and no token can be kept in {path} "
            f"({exc.strerror}): set {ENV_PREFIX}ADMIN_TOKEN"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return settings.replace(admin_token=token), True


def sentinel_address(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` ->
    the sentinels, the service name, and the master's db and credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis+sentinel", "sentinel"):
        raise ValueError(f"a Sentinel URL starts redis+sentinel://, not {parts.scheme}://")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name.strip("[]") or not port.isascii() or not port.isdigit():
            raise ValueError(f"sentinel {host!r} is not host:port")
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel URL names the service (and a db): .../service[/db]")
    options: dict[str, Any] = {"db": int(path[1]) if len(path) == 2 else 0}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    return sentinels, path[0], options
