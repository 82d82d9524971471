"""The ``hub`` command: ``hub serve`` runs the hub; the other commands call its admin API."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgspec
import uvicorn

from hub.config import ConfigError, Settings, load_settings, with_admin_token
from hub.logs import configure_logging, get_logger
from hub.redis_server import EmbeddedRedis, RedisServerError

log = get_logger("hub.cli")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"hub: configuration error: {exc}\n")
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> int:
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings, generated = with_admin_token(settings)
    except ConfigError as exc:
        sys.stderr.write(f"hub: configuration error: {exc}\n")
        return 2
    if generated:
        log.warning(
            "admin token generated; it is shown only this once",
            admin_token=settings.admin_token,
            kept_in=str(settings.data_path / "admin_token"),
        )
    embedded = (
        None if settings.redis_url else EmbeddedRedis(settings.data_path, settings.redis_server_bin)
    )
    try:
        if embedded is not None:
            settings = settings.replace(redis_url=embedded.start())
        log.info(
            "hub starting",
            versions_url=f"{settings.public_url}/ocpi/versions",
            onboard_a_platform='hub platforms add "Platform name"  '
            "(or POST /admin/platforms with the admin token as Bearer)",
            workers=args.workers,
        )
        common: dict[str, Any] = {
            "host": settings.host,
            "port": settings.port,
            "log_config": None,
            "access_log": False,
            "server_header": False,
            "proxy_headers": False,
            "timeout_graceful_shutdown": 10,
        }
        if args.workers > 1:
            os.environ["HUB_REDIS_URL"] = settings.redis_url
            os.environ["HUB_ADMIN_TOKEN"] = settings.admin_token
            # Every worker's counters in files of one folder, summed by /metrics in whichever
            # worker is scraped (prometheus-client's multiprocess mode); empty at each start.
            metrics_dir = tempfile.TemporaryDirectory(prefix="hub-metrics-")
            os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir.name)
            with metrics_dir:
                uvicorn.run(
                    "hub.web.app:app_from_env", factory=True, workers=args.workers, **common
                )
        else:
            from hub.web.app import create_app, serving

            uvicorn.run(serving(create_app(settings)), **common)
    except RedisServerError as exc:
        log.error("cannot start the embedded redis", error=str(exc))
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


class AdminClient:
    """A small synchronous client of the admin API for the CLI."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else msgspec.json.encode(body)
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return msgspec.json.decode(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise SystemExit(f"hub: {method} {path} failed: HTTP {exc.code} {detail}") from None
        except urllib.error.URLError as exc:
            raise SystemExit(f"hub: cannot reach the hub at {self.url}: {exc.reason}") from None


def _client(args: argparse.Namespace) -> AdminClient:
    settings = _settings()
    token = args.token or with_admin_token(settings)[0].admin_token
    return AdminClient(args.url or settings.public_url, token)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [
        [str(row.get(c, "") if row.get(c) is not None else "") for c in columns] for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    sys.stdout.write("\n".join(line.rstrip() for line in lines) + "\n")


def _output(args: argparse.Namespace, data: Any, columns: Sequence[str]) -> int:
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data)).decode() + "\n")
    else:
        _print_table(data if isinstance(data, list) else [data], columns)
    return 0


PLATFORM_COLUMNS = ("id", "name", "state", "version", "versions_url")


def platforms_add(args: argparse.Namespace) -> int:
    body = {"name": args.name, **({"version": args.version} if args.version else {})}
    data = _client(args).call("POST", "/admin/platforms", body)
    return _output(args, data, ("id", "name", "token_a", "versions_url"))


def platforms_list(args: argparse.Namespace) -> int:
    return _output(args, _client(args).call("GET", "/admin/platforms"), PLATFORM_COLUMNS)


def platforms_connect(args: argparse.Namespace) -> int:
    body = {"versions_url": args.versions_url, "token_a": args.token_a}
    data = _client(args).call("POST", f"/admin/platforms/{args.id}/connect", body)
    return _output(args, data, PLATFORM_COLUMNS)


def platforms_suspend(args: argparse.Namespace) -> int:
    data = _client(args).call("DELETE", f"/admin/platforms/{args.id}")
    return _output(args, data, PLATFORM_COLUMNS)


def platforms_rotate(args: argparse.Namespace) -> int:
    data = _client(args).call("POST", f"/admin/platforms/{args.id}/rotate")
    return _output(args, data, PLATFORM_COLUMNS)


def parties_list(args: argparse.Namespace) -> int:
    columns = ("country_code", "party_id", "role", "platform_id", "status", "last_seen", "name")
    return _output(args, _client(args).call("GET", "/admin/parties"), columns)


AGREEMENT_COLUMNS = ("id", "parties", "modules", "valid_from", "valid_until")


def _agreement_body(
    first: str, second: str, modules: str, valid_from: str, valid_until: str
) -> dict[str, Any]:
    """One agreement as the admin API takes it; parties as NLCPO (or NL/CPO, NL-CPO)."""
    body: dict[str, Any] = {"parties": [_party(first), _party(second)]}
    names = [m for m in modules.replace(";", " ").replace(",", " ").split() if m]
    if names:
        body["modules"] = names
    if valid_from.strip():
        body["valid_from"] = valid_from.strip()
    if valid_until.strip():
        body["valid_until"] = valid_until.strip()
    return body


def _party(text: str) -> dict[str, str]:
    plain = text.strip().replace("/", "").replace("-", "")
    if len(plain) != 5:
        raise SystemExit(f"hub: {text!r} is not a party: country code and party id, e.g. NLCPO")
    return {"country_code": plain[:2], "party_id": plain[2:]}


def _agreement_rows(data: Any) -> Any:
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        row["parties"] = " ".join(p["country_code"] + p["party_id"] for p in row["parties"])
        row["modules"] = ",".join(row["modules"]) or "all"
    return data


def agreements_add(args: argparse.Namespace) -> int:
    body = _agreement_body(args.party, args.other, args.modules, args.valid_from, args.until)
    data = _client(args).call("POST", "/admin/agreements", body)
    return _output(args, data if args.json else _agreement_rows(data), AGREEMENT_COLUMNS)


def agreements_list(args: argparse.Namespace) -> int:
    path = "/admin/agreements" + (f"?party={args.party}" if args.party else "")
    data = _client(args).call("GET", path)
    return _output(args, data if args.json else _agreement_rows(data), AGREEMENT_COLUMNS)


def agreements_remove(args: argparse.Namespace) -> int:
    data = _client(args).call("DELETE", f"/admin/agreements/{args.id}")
    return _output(args, data if args.json else _agreement_rows(data), AGREEMENT_COLUMNS)


def agreements_import(args: argparse.Namespace) -> int:
    """A CSV file of contracts, one per row: party,other,modules,valid_from,valid_until (a
    header row naming those columns; modules separated by spaces or semicolons, empty for
    all). Party forms are checked for every row before any is sent; the first row the hub
    refuses stops the import (the rows before it stay)."""
    with open(args.file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    required = {"party", "other"}
    if not rows or not required <= set(rows[0]):
        raise SystemExit(
            "hub: the CSV needs a header row with party,other (and optionally "
            "modules,valid_from,valid_until)"
        )
    bodies = [
        _agreement_body(
            row["party"], row["other"], row.get("modules") or "",
            row.get("valid_from") or "", row.get("valid_until") or "",
        )
        for row in rows
    ]  # fmt: skip
    client = _client(args)
    created = [client.call("POST", "/admin/agreements", body) for body in bodies]
    if args.json:
        return _output(args, created, AGREEMENT_COLUMNS)
    sys.stdout.write(f"imported {len(created)} agreements\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="OCPI 2.3.0 and 2.2.1 roaming hub")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the hub (settings: config/hub.toml, HUB_*)")
    serve_cmd.add_argument("--workers", type=int, default=1, help="worker processes")
    serve_cmd.set_defaults(func=serve)

    def admin_command(group: Any, name: str, func: Any, help: str) -> argparse.ArgumentParser:
        cmd = group.add_parser(name, help=help)
        cmd.add_argument("--url", help="hub base URL (default: HUB_PUBLIC_URL)")
        cmd.add_argument("--token", help="admin token (default: HUB_ADMIN_TOKEN or DATA_DIR)")
        cmd.add_argument("--json", action="store_true", help="JSON instead of a table")
        cmd.set_defaults(func=func)
        return cmd

    platforms = commands.add_parser("platforms", help="manage platforms").add_subparsers(
        dest="action", required=True
    )
    add_platform = admin_command(
        platforms, "add", platforms_add, "create a platform and its token A"
    )
    add_platform.add_argument("name")
    add_platform.add_argument(
        "--version",
        choices=["2.3.0", "2.2.1"],
        help="hand it a versions URL listing only this version (strict 2.2.1 parsers)",
    )
    admin_command(platforms, "list", platforms_list, "list platforms")
    connect = admin_command(
        platforms, "connect", platforms_connect, "register the hub with a platform (hub as Sender)"
    )
    connect.add_argument("id", help="platform id from `platforms add`")
    connect.add_argument("versions_url", help="the platform's versions URL")
    connect.add_argument("token_a", help="the token A the platform issued to the hub")
    admin_command(
        platforms, "suspend", platforms_suspend, "suspend a platform: tokens void"
    ).add_argument("id")
    admin_command(
        platforms, "rotate", platforms_rotate, "new credentials tokens both ways (hub as client)"
    ).add_argument("id")

    agreements = commands.add_parser(
        "agreements", help="roaming agreements (routing_policy = agreements)"
    ).add_subparsers(dest="action", required=True)
    add = admin_command(agreements, "add", agreements_add, "let two parties reach each other")
    add.add_argument("party", help="country code and party id, e.g. NLCPO")
    add.add_argument("other", help="the other party, e.g. DEMSP")
    add.add_argument("--modules", default="", help="comma-separated (default: every module)")
    add.add_argument("--from", dest="valid_from", default="", help="valid from (ISO 8601)")
    add.add_argument("--until", default="", help="valid until (ISO 8601)")
    listing = admin_command(agreements, "list", agreements_list, "list agreements")
    listing.add_argument("--party", help="only those of this party, e.g. NLCPO")
    admin_command(agreements, "remove", agreements_remove, "end an agreement").add_argument("id")
    admin_command(
        agreements, "import", agreements_import, "add agreements from a CSV file"
    ).add_argument("file")

    parties = commands.add_parser("parties", help="parties reachable through the hub")
    admin_command(
        parties.add_subparsers(dest="action", required=True), "list", parties_list, "list parties"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
