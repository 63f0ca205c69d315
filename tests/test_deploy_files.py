"""The production deployment files, parsed and cross-checked against each other.

docker-compose.yml, deploy/Dockerfile, deploy/prometheus/*.yml and deploy/grafana/** are
configuration that no unit test executes, so a typo (a renamed metric, a wrong label, a
datasource uid that does not match) would only show at 3 a.m. on a hospital's box. These
tests need no Docker engine and no network: they parse the files with yaml/json and check
what each promises. Where `promtool` or `docker compose` happen to be installed, they also
run them (otherwise those tests are skipped).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA_DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_PROVIDER = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "wardflow.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "wardflow.json"
DEPLOY_README = ROOT / "deploy" / "README.md"

# The metrics a worker exposes: name -> (type, label names). Names and labels are final.
# TODO(lead): compare this with the code's metrics module once it exports the full set.
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "wardflow_events_in_total": ("counter", frozenset({"topic"})),
    "wardflow_dead_letters_total": ("counter", frozenset({"code"})),
    "wardflow_decisions_total": ("counter", frozenset({"kind"})),
    "wardflow_decision_latency_seconds": ("histogram", frozenset()),
    "wardflow_unit_occupancy_ratio": ("gauge", frozenset({"hospital", "unit"})),
    "wardflow_unit_beds": ("gauge", frozenset({"hospital", "unit", "status"})),
    "wardflow_patients_waiting": ("gauge", frozenset({"hospital"})),
    "wardflow_inference_batch_size": ("histogram", frozenset()),
    "wardflow_checkpoint_events": ("histogram", frozenset()),
    "wardflow_sequencer_end_offset_listings_total": ("counter", frozenset()),
    "wardflow_inference_latency_seconds": ("histogram", frozenset()),
    "wardflow_predictions_total": ("counter", frozenset({"unit", "uncertain"})),
    "wardflow_news2_scores_total": ("counter", frozenset({"band"})),
    "wardflow_pages_total": ("counter", frozenset({"role"})),
    "wardflow_escalations_total": ("counter", frozenset({"role"})),
    "wardflow_surge_level": ("gauge", frozenset({"hospital"})),
    "wardflow_event_errors_total": ("counter", frozenset({"stage"})),
    "wardflow_pages_escalated_total": ("counter", frozenset()),
    # the bed board's own metrics (streams/board/metrics.py)
    "wardflow_board_actions_total": ("counter", frozenset({"action", "outcome"})),
    "wardflow_board_push_latency_seconds": ("histogram", frozenset()),
    "wardflow_board_queue_items": ("gauge", frozenset({"hospital"})),
    "wardflow_board_views_up": ("gauge", frozenset({"hospital"})),
    "wardflow_board_live_clients": ("gauge", frozenset()),
    "wardflow_board_caught_up": ("gauge", frozenset()),
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
# Never a label: identifiers of people or events, or free text (event contract).
FORBIDDEN_LABELS = frozenset({
    "patient_id", "patient", "encounter_id", "encounter", "mrn", "nhs_number", "name", "text", "note",
    "clinician_id", "event_id", "decision_id", "page_id", "reason", "message",
})

TOPIC_NAMES = ("admissions", "vitals", "transfers", "discharges", "bed-status", "overrides", "page-acks",
               "cancellations", "swaps", "decisions", "dead-letters", "feedback")
WORKER_PORTS = ("9108", "6066")
DATASOURCE_UID = "wardflow-prometheus"
REQUIRED_ALERTS = {
    "WardflowWorkerDown", "WardflowDeadLetterRateHigh", "WardflowDecisionLatencyHigh",
    "WardflowUnitOccupancyHigh", "WardflowSurgeLevelHigh", "WardflowEscalationsRising", "WardflowNoEvents",
}
SECRETISH_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|API_?KEY|PRIVATE_?KEY", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{(\w+)(?::?[-?][^}]*)?\}$")


# --------------------------------------------------------------------------- helpers

@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no `{name}` service"
    return services[name]


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def default_of(value: str) -> str:
    """`${VAR:-default}` -> `default`; a plain value as is."""
    m = re.fullmatch(r"\$\{\w+:?-([^}]*)\}", value)
    return m.group(1) if m else value


def command_text(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value or "")


@cache
def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))  # collapsed rows nest their panels
    return out


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in all_panels(dashboard()["panels"]) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard()["templating"]["list"]:
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def base_metric(name: str) -> str | None:
    """The catalogue name for a series name (histograms expose _bucket/_sum/_count)."""
    if name in METRICS:
        return name
    for suffix in HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("",))[0] == "histogram":
            return base
    return None


def metric_names_in(expr: str) -> list[str]:
    return re.findall(r"\bwardflow_[a-z0-9_]+\b", expr)


def check_expr(expr: str, where: str) -> list[str]:
    """Problems with one PromQL expression: unknown metrics, labels a metric does not have."""
    problems = []
    refs = metric_names_in(expr)
    known = set()
    for name in refs:
        base = base_metric(name)
        if base is None:
            problems.append(f"{where}: unknown metric {name!r}")
        else:
            known.add(base)
    allowed_everywhere = TARGET_LABELS | ({"le"} if any(r.endswith("_bucket") for r in refs) else set())
    # metric{label="..."} selectors: only that metric's labels.
    for m in re.finditer(r"\b(wardflow_[a-z0-9_]+)\s*\{([^}]*)\}", expr):
        base = base_metric(m.group(1))
        if base is None:
            continue
        allowed = METRICS[base][1] | TARGET_LABELS | ({"le"} if m.group(1).endswith("_bucket") else set())
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2)):
            if label not in allowed:
                problems.append(f"{where}: {m.group(1)} has no label {label!r}")
    # by/without/on/ignoring: labels of the metrics in this expression.
    allowed = set().union(*(METRICS[b][1] for b in known)) | allowed_everywhere if known else allowed_everywhere
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in filter(None, (s.strip() for s in m.group(1).split(","))):
            if label not in allowed:
                problems.append(f"{where}: grouping by {label!r}, which none of {sorted(known)} has")
    # label_values(metric, label) in template variables.
    for m in re.finditer(r"label_values\(\s*(wardflow_[a-z0-9_]+)[^,]*,\s*(\w+)\s*\)", expr):
        base = base_metric(m.group(1))
        if base and m.group(2) not in METRICS[base][1]:
            problems.append(f"{where}: label_values on {m.group(1)} by {m.group(2)!r}, which it does not have")
    return problems


# --------------------------------------------------------------------------- catalogue

def test_metric_catalogue_is_well_formed() -> None:
    for name, (kind, labels) in METRICS.items():
        assert name.startswith("wardflow_")
        assert not labels & FORBIDDEN_LABELS, f"{name} would carry an identifier or free text"
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert not labels, f"{name}: the deploy files expect an unlabelled histogram"


# --------------------------------------------------------------------------- compose

def test_compose_has_the_services() -> None:
    services = compose()["services"]
    for name in ("kafka", "topics", "worker", "worker-gpu", "prometheus", "grafana"):
        assert name in services, name


def test_kafka_runs_in_kraft_mode_single_node() -> None:
    kafka = service("kafka")
    env = env_of(kafka)
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"controller", "broker"} <= roles, "one combined broker+controller node"
    assert not any(k.startswith("KAFKA_ZOOKEEPER") for k in env), "KRaft: no ZooKeeper"
    assert re.fullmatch(r"apache/kafka:(3\.9\.\d+|4\.\d+\.\d+)", kafka["image"]), kafka["image"]
    assert env["KAFKA_NODE_ID"] == "1" and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@")
    assert default_of(env["CLUSTER_ID"]), "a fixed cluster id: the volume is formatted with it"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    # In-network clients reach it as kafka:9092.
    assert "://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert ":9092" in env["KAFKA_LISTENERS"]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert listeners <= protocols.keys(), "every listener has a security protocol"
    # Data on a named volume at the log dir.
    log_dir = env["KAFKA_LOG_DIRS"]
    volumes = [v.split(":") for v in kafka["volumes"] if isinstance(v, str)]
    assert any(target == log_dir and src in compose()["volumes"] for src, target, *_ in volumes)
    assert kafka.get("healthcheck", {}).get("test"), "workers wait for a healthy broker"
    assert kafka.get("restart") in ("always", "unless-stopped")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_topics_service_creates_every_topic() -> None:
    topics = service("topics")
    script = command_text(topics["command"])
    env = env_of(topics)
    for name in TOPIC_NAMES:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", script), f"topic {name} not created"
    assert default_of(env["TOPIC_PREFIX"]) == "wardflow."
    assert default_of(env["PARTITIONS"]) == "6"
    assert re.fullmatch(r"\$\{WARDFLOW_TOPIC_PARTITIONS:-\d+\}", env["PARTITIONS"]), "partitions from an env var"
    assert default_of(env["DEAD_LETTER_RETENTION_DAYS"]) == "30"
    assert "retention.ms" in script and "--if-not-exists" in script
    assert topics.get("restart") == "no", "one-shot"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_worker_service() -> None:
    worker = service("worker")
    assert "container_name" not in worker, "a fixed name makes --scale impossible"
    assert "ports" not in worker, "metrics and web ports stay internal (and --scale needs that)"
    assert {str(p) for p in worker["expose"]} >= set(WORKER_PORTS)
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert worker["build"]["args"]["EXTRAS"] == ""
    assert command_text(worker["command"]) == "wardflow worker"
    assert int(default_of(str(worker["deploy"]["replicas"]))) >= 1
    env = env_of(worker)
    assert env["WARDFLOW_BROKER_URL"] == "kafka://kafka:9092"
    assert env["WARDFLOW_MODEL_PATH"] == "/models/triage/int8"
    assert env["WARDFLOW_HOSPITAL_CONFIG"] == "/config/hospital.yaml"
    assert "WARDFLOW_BROKER_PASSWORD" not in env, "the password comes from a secret, never inline"
    assert "broker_password" in worker["secrets"]
    assert "broker_password" in compose()["secrets"]
    mounts = {m["target"]: m for m in worker["volumes"]}
    assert mounts["/models"]["read_only"] is True and "models" in mounts["/models"]["source"]
    assert mounts["/config"]["read_only"] is True
    health = command_text(worker["healthcheck"]["test"])
    assert ":9108/metrics" in health
    assert worker["restart"] in ("always", "unless-stopped", "on-failure")
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_scaling_shares_one_consumer_group_and_partition_count() -> None:
    worker, gpu, topics, kafka = (env_of(service(n)) for n in ("worker", "worker-gpu", "topics", "kafka"))
    assert worker["WARDFLOW_APP_ID"] == gpu["WARDFLOW_APP_ID"], "one consumer group for every replica"
    # Same interpolation everywhere: the worker's tables are co-partitioned with its inputs.
    assert worker["WARDFLOW_TOPIC_PARTITIONS"] == gpu["WARDFLOW_TOPIC_PARTITIONS"] == topics["PARTITIONS"]
    assert kafka["KAFKA_NUM_PARTITIONS"] == topics["PARTITIONS"]
    assert worker["WARDFLOW_TOPIC_PREFIX"] == topics["TOPIC_PREFIX"]


def test_gpu_worker_profile() -> None:
    gpu = service("worker-gpu")
    assert "worker-gpu" in gpu["profiles"], "off unless `--profile worker-gpu`"
    assert gpu["build"]["args"]["EXTRAS"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "container_name" not in gpu and "ports" not in gpu
    assert command_text(gpu["command"]) == "wardflow worker"
    # Prometheus discovers replicas by the name `worker`.
    assert "worker" in gpu["networks"]["default"]["aliases"]


def test_prometheus_and_grafana_services() -> None:
    prometheus, grafana = service("prometheus"), service("grafana")
    mounts = " ".join(prometheus["volumes"])
    assert "deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in mounts
    assert "deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml" in mounts
    env = env_of(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert INTERPOLATION.match(env["GF_SECURITY_ADMIN_PASSWORD"]), "admin password from the environment"
    # The provider's path is where compose mounts the dashboards.
    provider = yaml.safe_load(GRAFANA_PROVIDER.read_text())["providers"][0]
    targets = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert targets[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert targets["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def test_every_long_running_service_restarts() -> None:
    for name, svc in compose()["services"].items():
        if name != "topics":
            assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_no_secret_values_inline() -> None:
    for name, svc in compose()["services"].items():
        for key, value in env_of(svc).items():
            if SECRETISH_KEY.search(key) and not key.endswith("_FILE"):
                assert INTERPOLATION.match(value), f"{name}.{key} must come from the environment or a secret"
    for secret, spec in (compose().get("secrets") or {}).items():
        assert set(spec) & {"file", "environment", "external"}, f"secret {secret} has an inline value"
    # Anything that looks like `password = value` must take the value from a variable.
    assignment = re.compile(r"(?i)(?:password|secret|token)[\"']?[ \t]*[=:][ \t]*[\"']?([^\s\"';]+)")
    for path in (COMPOSE, DOCKERFILE, PROMETHEUS, ALERTS, GRAFANA_DATASOURCE, GRAFANA_PROVIDER):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for value in assignment.findall(line):
                assert value.startswith("$"), f"{path.name}:{n}: inline secret? {line.strip()}"
    assert "secureJsonData" not in GRAFANA_DATASOURCE.read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", DOCKERFILE.read_text())


def have_docker_compose() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not have_docker_compose(), reason="no `docker compose` plugin here")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    (tmp_path / "broker_password").write_text("x\n")
    for d in ("models", "config"):
        (tmp_path / d).mkdir()
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "x", "WARDFLOW_BROKER_PASSWORD_FILE": str(tmp_path / "broker_password"),
           "WARDFLOW_MODELS_DIR": str(tmp_path / "models"), "WARDFLOW_CONFIG_DIR": str(tmp_path / "config")}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--profile", "worker-gpu", "config", "--quiet"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- Dockerfile

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"') if "=" in rest else ""
            for word, rest in instructions if word == "ARG"}
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    for image in froms:
        image = image.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
        assert image.startswith("python:3.11-slim"), image
    assert "EXTRAS" in args and args["EXTRAS"] == ""
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["wardflow"]
    assert json.loads([rest for word, rest in instructions if word == "CMD"][-1]) == ["worker"]
    runs = [rest for word, rest in instructions if word == "RUN"]
    installs = [cmd for run in runs for cmd in re.split(r";|&&", run) if "pip install" in cmd]
    assert installs, "installs the package"
    for cmd in installs:
        assert "torch" not in cmd and "train" not in cmd, f"serving needs no torch: {cmd.strip()}"
    for word, rest in instructions:
        if word in ("COPY", "ADD") and "--from=" not in rest:
            sources = rest.split()[:-1]
            assert "." not in sources and not any(s.startswith(("models", "./models", "secrets")) for s in sources), \
                f"no model, secret or whole build context baked in: {word} {rest}"


# --------------------------------------------------------------------------- Prometheus

def test_prometheus_scrapes_every_worker_replica() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert (PROMETHEUS.parent / config["rule_files"][0]).resolve() == ALERTS.resolve()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["wardflow-worker"]
    assert "static_configs" not in job, "a static target would hit one replica at random"
    sd = job["dns_sd_configs"]
    names = {n for entry in sd for n in entry["names"]}
    assert {"worker", "tasks.worker"} <= names
    assert all(entry["port"] == 9108 and entry.get("type", "SRV") == "A" for entry in sd)
    assert "relabel_configs" not in job or not any(
        "__meta_dns_name" in r.get("source_labels", []) for r in job["relabel_configs"]
    ), "a per-name label would turn one replica into two targets"
    # Alert expressions reference this job name.
    assert any('job="wardflow-worker"' in r["expr"] for r in alert_rules())


def test_alert_rules_are_complete_and_documented() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']} lacks {key}"
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
    by_name = {r["alert"]: r for r in rules}
    latency = by_name["WardflowDecisionLatencyHigh"]
    assert re.search(r"histogram_quantile\(0\.99,.*wardflow_decision_latency_seconds_bucket", latency["expr"])
    assert re.search(r">\s*1\s*$", latency["expr"].strip()) and latency["for"] == "5m"
    occupancy = by_name["WardflowUnitOccupancyHigh"]
    assert "> 0.95" in occupancy["expr"] and occupancy["for"] == "30m"
    assert ">= 3" in by_name["WardflowSurgeLevelHigh"]["expr"]
    assert "[15m]" in by_name["WardflowNoEvents"]["expr"]
    assert "wardflow_escalations_total" in by_name["WardflowEscalationsRising"]["expr"]
    assert "wardflow_dead_letters_total" in by_name["WardflowDeadLetterRateHigh"]["expr"]


def test_alerts_reference_only_known_metrics_and_labels() -> None:
    problems = [p for r in alert_rules() for p in check_expr(r["expr"], r["alert"])]
    assert not problems, "\n".join(problems)
    # Annotations template only labels the expression keeps.
    for rule in alert_rules():
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in rule["expr"] or label in TARGET_LABELS, f"{rule['alert']}: {label}"


# --------------------------------------------------------------------------- Grafana

def test_grafana_datasource_is_provisioned_with_a_fixed_uid() -> None:
    sources = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
    (prom,) = [s for s in sources if s["type"] == "prometheus"]
    assert prom["uid"] == DATASOURCE_UID
    assert prom["url"] == "http://prometheus:9090"


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] == "wardflow-overview"
    assert dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"hospital", "unit"} <= variables.keys()
    panels = all_panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Flow", "Latency", "Capacity", "Model", "Clinical", "Bed board"]
    for p in panels:
        gp = p["gridPos"]
        assert gp["x"] >= 0 and gp["x"] + gp["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == DATASOURCE_UID, p["title"]
            assert p["targets"] and all(t["datasource"]["uid"] == DATASOURCE_UID for t in p["targets"]), p["title"]
    for v in variables.values():
        assert v["datasource"]["uid"] == DATASOURCE_UID
    exprs = " ".join(dashboard_exprs())
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(wardflow_decision_latency_seconds_bucket" in exprs
    assert '$hospital' in exprs and '$unit' in exprs


def test_dashboard_rows_show_their_metrics() -> None:
    dash = dashboard()
    sections: dict[str, list[dict[str, Any]]] = {}
    current = None
    for p in dash["panels"]:
        if p["type"] == "row":
            current = p["title"]
            sections[current] = list(p.get("panels", []))
        elif current:
            sections[current].append(p)

    def metrics_in(row: str) -> set[str]:
        return {base_metric(n) for p in sections[row] for t in p.get("targets", []) for n in metric_names_in(t["expr"])}

    assert {"wardflow_events_in_total", "wardflow_decisions_total", "wardflow_dead_letters_total"} <= metrics_in("Flow")
    assert "wardflow_decision_latency_seconds" in metrics_in("Latency")
    assert {"wardflow_unit_occupancy_ratio", "wardflow_unit_beds", "wardflow_patients_waiting",
            "wardflow_surge_level"} <= metrics_in("Capacity")
    assert {"wardflow_inference_batch_size", "wardflow_inference_latency_seconds",
            "wardflow_predictions_total"} <= metrics_in("Model")
    assert {"wardflow_news2_scores_total", "wardflow_pages_total", "wardflow_escalations_total"} <= metrics_in("Clinical")
    assert {"wardflow_board_actions_total", "wardflow_board_push_latency_seconds"} <= metrics_in("Bed board")
    assert any(p["type"] in ("bargauge", "heatmap") for p in sections["Capacity"])
    assert any(p["type"] == "stat" and "wardflow_surge_level" in p["targets"][0]["expr"] for p in sections["Capacity"])


def test_dashboard_references_only_known_metrics_and_labels() -> None:
    problems = [p for i, e in enumerate(dashboard_exprs()) for p in check_expr(e, f"dashboard expr #{i}")]
    assert not problems, "\n".join(problems)


def test_every_documented_metric_is_used_somewhere() -> None:
    used = {base_metric(n) for e in dashboard_exprs() + [r["expr"] for r in alert_rules()] for n in metric_names_in(e)}
    assert set(METRICS) <= used, set(METRICS) - used


def test_deploy_readme_covers_operations() -> None:
    text = DEPLOY_README.read_text()
    for alert in REQUIRED_ALERTS:
        assert alert in text, f"deploy/README.md does not explain {alert}"
    for topic in ("--scale worker", "WARDFLOW_TOPIC_PARTITIONS", "broker_password", "worker-gpu", ":9090", ":3000"):
        assert topic in text, topic


# --------------------------------------------------------------------------- promtool (optional)

PROMTOOL = shutil.which("promtool")

# Unit tests of the alert rules: each scenario must fire its alert, and healthy traffic none.
RULE_TESTS = """
rule_files: [{alerts}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="wardflow-worker", instance="10.0.0.5:9108"}}'
        values: '1 1 1 0x10'
      - series: 'up{{job="wardflow-worker", instance="10.0.0.6:9108"}}'
        values: '1x13'
    promql_expr_test:
      - expr: count(ALERTS{{alertname="WardflowWorkerDown", alertstate="firing"}})
        eval_time: 8m
        exp_samples: [{{labels: '{{}}', value: 1}}]
      - expr: count(ALERTS{{alertname="WardflowNoWorkerUp", alertstate="firing"}}) or vector(0)
        eval_time: 8m
        exp_samples: [{{labels: '{{}}', value: 0}}]

  - interval: 1m
    input_series:
      - series: 'up{{job="wardflow-worker", instance="10.0.0.5:9108"}}'
        values: '0x10'
    promql_expr_test:
      - expr: count(ALERTS{{alertname="WardflowNoWorkerUp", alertstate="firing"}})
        eval_time: 5m
        exp_samples: [{{labels: '{{}}', value: 1}}]

  - interval: 1m
    input_series:
      - series: 'up{{job="wardflow-worker", instance="10.0.0.5:9108"}}'
        values: '1x40'
      - series: 'wardflow_events_in_total{{topic="wardflow.vitals", instance="10.0.0.5:9108"}}'
        values: '0+600x40'
      - series: 'wardflow_dead_letters_total{{code="schema_violation", instance="10.0.0.5:9108"}}'
        values: '0+60x40'
      - series: 'wardflow_dead_letters_total{{code="bad_json", instance="10.0.0.5:9108"}}'
        values: '0+1x40'
      - series: 'wardflow_decision_latency_seconds_bucket{{le="0.5", instance="10.0.0.5:9108"}}'
        values: '0x40'
      - series: 'wardflow_decision_latency_seconds_bucket{{le="1.0", instance="10.0.0.5:9108"}}'
        values: '0x40'
      - series: 'wardflow_decision_latency_seconds_bucket{{le="2.5", instance="10.0.0.5:9108"}}'
        values: '0+600x40'
      - series: 'wardflow_decision_latency_seconds_bucket{{le="+Inf", instance="10.0.0.5:9108"}}'
        values: '0+600x40'
      - series: 'wardflow_unit_occupancy_ratio{{hospital="st-mary", unit="ward-7", instance="10.0.0.5:9108"}}'
        values: '0.97x40'
      - series: 'wardflow_unit_occupancy_ratio{{hospital="st-mary", unit="ward-8", instance="10.0.0.5:9108"}}'
        values: '0.80x40'
      - series: 'wardflow_surge_level{{hospital="st-mary", instance="10.0.0.5:9108"}}'
        values: '3x40'
    promql_expr_test:
      - expr: ALERTS{{alertname="WardflowDeadLetterRateHigh", alertstate="firing"}}
        eval_time: 20m
        exp_samples:
          - labels: 'ALERTS{{alertname="WardflowDeadLetterRateHigh", alertstate="firing", code="schema_violation", severity="warning", team="integration"}}'
            value: 1
      - expr: count(ALERTS{{alertname="WardflowDecisionLatencyHigh", alertstate="firing"}})
        eval_time: 15m
        exp_samples: [{{labels: '{{}}', value: 1}}]
      - expr: ALERTS{{alertname="WardflowUnitOccupancyHigh", alertstate="firing"}}
        eval_time: 35m
        exp_samples:
          - labels: 'ALERTS{{alertname="WardflowUnitOccupancyHigh", alertstate="firing", hospital="st-mary", unit="ward-7", severity="warning", team="bed-management"}}'
            value: 1
      - expr: count(ALERTS{{alertname="WardflowUnitOccupancyHigh", alertstate="firing"}}) or vector(0)
        eval_time: 25m
        exp_samples: [{{labels: '{{}}', value: 0}}]
      - expr: count(ALERTS{{alertname="WardflowSurgeLevelHigh", alertstate="firing"}})
        eval_time: 5m
        exp_samples: [{{labels: '{{}}', value: 1}}]
      - expr: count(ALERTS{{alertname="WardflowNoEvents", alertstate="firing"}}) or vector(0)
        eval_time: 35m
        exp_samples: [{{labels: '{{}}', value: 0}}]

  - interval: 1m
    input_series:
      - series: 'up{{job="wardflow-worker", instance="10.0.0.5:9108"}}'
        values: '1x40'
      - series: 'wardflow_events_in_total{{topic="wardflow.vitals", instance="10.0.0.5:9108"}}'
        values: '0+10x5 50x35'
    promql_expr_test:
      - expr: count(ALERTS{{alertname="WardflowNoEvents", alertstate="firing"}}) or vector(0)
        eval_time: 15m
        exp_samples: [{{labels: '{{}}', value: 0}}]
      - expr: count(ALERTS{{alertname="WardflowNoEvents", alertstate="firing"}})
        eval_time: 27m
        exp_samples: [{{labels: '{{}}', value: 1}}]

  - interval: 1m
    input_series:
      - series: 'wardflow_escalations_total{{role="registrar", instance="10.0.0.5:9108"}}'
        values: '0+0.01x360 4+1x30'
      - series: 'wardflow_escalations_total{{role="nurse", instance="10.0.0.5:9108"}}'
        values: '0+0.05x390'
    promql_expr_test:
      - expr: ALERTS{{alertname="WardflowEscalationsRising", alertstate="firing"}}
        eval_time: 385m
        exp_samples:
          - labels: 'ALERTS{{alertname="WardflowEscalationsRising", alertstate="firing", role="registrar", severity="warning", team="clinical-ops"}}'
            value: 1
"""  # noqa: E501 - an alert's expected label set is one line of promtool's YAML


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_checks_config_rules_and_rule_unit_tests(tmp_path: Path) -> None:
    for args in (["check", "config", str(PROMETHEUS)], ["check", "rules", str(ALERTS)]):
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(textwrap.dedent(RULE_TESTS).format(alerts=json.dumps(str(ALERTS))))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_topic_list_covers_the_contract() -> None:
    from streams.contract.models import INPUT_MODELS, OUTPUT_MODELS

    assert set(TOPIC_NAMES) == {*INPUT_MODELS, *OUTPUT_MODELS}
