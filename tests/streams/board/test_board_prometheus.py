"""Watching the watcher for real: Debian's `prometheus` scrapes a live worker and the board on loopback,
loads the shipped alert rules (through the shipped deploy/prometheus/prometheus.yml's `rule_files`),
and every PromQL expression of the shipped Grafana dashboard and alert rules is evaluated through
Prometheus's HTTP API. Each returns data, or is listed below as expected empty, with the reason.
Skips cleanly where the binary is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from streams.board.process import BoardProcess
from streams.devtools.broker import free_port
from streams.devtools.kafka_io import produce_all
from streams.devtools.runner import settings_env
from tests import events as ev
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]

PROMETHEUS = shutil.which("prometheus")
SHIPPED_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
HID = "board-hosp"
CALM = dict(resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
            temperature_c=36.8)
SICK = dict(resp_rate=26, spo2=90, on_oxygen=True, systolic_bp=95, heart_rate=118, consciousness="A",
            temperature_c=38.6)

# Alert expressions that are empty on a healthy worker (an alert expression returns data only when it fires).
# Threshold alerts whose figures depend on the machine's speed are "either": data or none are both correct.
ALERTS_EXPECTED_EMPTY = {
    "WardflowWorkerDown": "the worker is up",
    "WardflowNoWorkerUp": "a worker is up",
    "WardflowUnexpectedErrors": "no processing errors in a healthy run (the error counters stay at 0)",
    "WardflowDeadLetterRateHigh": "one dead letter is under the one-a-minute floor",
    "WardflowNoEvents": "events arrived in the last 15 minutes",
    "WardflowUnitOccupancyHigh": "no unit is above 95 %",
    "WardflowSurgeLevelHigh": "the test raises the surge level to 2, below the alert's 3",
    "WardflowEscalationsRising": "fewer than 3 escalations in 15 minutes",
}
ALERTS_EITHER = {"WardflowDecisionLatencyHigh": "p99 above 1 s depends on how loaded the machine is"}
# Dashboard expressions that are empty in a healthy run, with why.
PANELS_EXPECTED_EMPTY: dict[str, str] = {}  # none: every panel has data on a running worker


def _get(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _query(base: str, expr: str) -> list:
    body = _get(base, "/api/v1/query", query=expr)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_all_panels(p.get("panels", [])))
    return out


def _concrete(expr: str) -> str:
    """Grafana's variables as a dashboard with 'All' selected and a 1 s scrape interval would send them."""
    return (expr.replace("$__rate_interval", "30s").replace("$__interval", "5s")
            .replace('"$hospital"', '".*"').replace('"$unit"', '".*"'))


def _config(tmp: Path, worker_port: int, board_port: int, prom_port: int) -> Path:
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    jobs = {j["job_name"] for j in shipped["scrape_configs"]}
    assert "wardflow-worker" in jobs and "wardflow-board" in jobs, jobs
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                   "external_labels": shipped["global"].get("external_labels", {})},
        # the shipped rules, as the shipped config names them (relative to its own directory)
        "rule_files": [str((SHIPPED_CONFIG.parent / f).resolve()) for f in shipped["rule_files"]],
        # the shipped job names (the rules and dashboards select on them), loopback targets
        "scrape_configs": [
            {"job_name": "wardflow-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "wardflow-board", "static_configs": [{"targets": [f"127.0.0.1:{board_port}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]},
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (urllib.error.URLError, OSError, AssertionError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_prometheus_evaluates_every_shipped_expression(broker, run_id, start_worker, tmp_path):
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus binary is not installed (apt-get install -y prometheus; .ci/run does it)")
    from tests.inference_support import tiny_exported

    prefix = f"{run_id}."
    web_port, metrics_port = free_port(), free_port()
    start_worker(model_path=tiny_exported() / "int8", allow_no_model=False, uncertainty_threshold=1.0,
                 hospital_config=FIXTURES / "board_hospital.yaml", web_port=web_port, metrics_port=metrics_port)
    env = settings_env(broker_url=broker.url, topic_prefix=prefix, hospital_config=FIXTURES / "board_hospital.yaml",
                       board_worker_views=f"http://127.0.0.1:{web_port}", board_password_file=tmp_path / "users.json")
    board = BoardProcess(env=env, port=free_port(), log_path=tmp_path / "board.log").start()
    prom_port = free_port()
    prom_log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - handed to the child, closed after it
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={_config(tmp_path, metrics_port, board.port, prom_port)}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=prom_log, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait(lambda: {r["metric"]["job"] for r in _query(base, "up == 1")} >= {"wardflow-worker", "wardflow-board"},
              60, "both targets up")
        time.sleep(2)  # scraped before any event: counters' increases start from what was there
        # A little hospital: model admissions (uncertain, held), EHR-placed patients, a deteriorating one
        # paged and escalated, a bad message dead-lettered; surge rises (the fixture's low thresholds).
        start = datetime.now(UTC) - timedelta(minutes=100)  # in the past: the worker refuses future events

        def at(minutes: float) -> str:
            return (start + timedelta(minutes=minutes)).isoformat()

        items = [ev.admission(HID, f"P{i}", f"E{i}", 0, sex="F", age=50 + i, event_id=f"m{i}",
                              text="crushing chest pain with st elevation") for i in range(2)]
        items += [ev.admission(HID, f"Q{i}", f"F{i}", 0, sex="M", age=60 + i, event_id=f"r{i}",
                               requested_unit="ORTH") for i in range(2)]
        items += [ev.vitals(HID, "Q0", "F0", 0, event_id="v1", **CALM), ev.vitals(HID, "Q0", "F0", 0, event_id="v2", **SICK),
                  ev.bed_status(HID, "CARD-SR1", "cleaning", 0, event_id="b1")]
        minutes = [0, 1, 2, 3, 10, 70, 90]
        sendable = []
        for (topic, body), m in zip(items, minutes, strict=True):
            body["occurred_at"] = at(m)
            sendable.append(ev.encode(prefix, (topic, body)))
        sendable.append((f"{prefix}vitals", HID.encode(), b'{"not": "an event"'))  # dead-lettered
        asyncio.run(produce_all(broker.bootstrap, sendable))

        _wait(lambda: _query(base, "wardflow_escalations_total") and _query(base, "wardflow_surge_level")
              and _query(base, "wardflow_board_decisions_total"), 90, "the worker's escalation and surge metrics")
        time.sleep(3)  # a few more scrapes: rates over the new samples, rules evaluated

        # The shipped rules loaded and evaluate without error on live data.
        groups = _get(base, "/api/v1/rules")["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        shipped = [r for g in yaml.safe_load((SHIPPED_CONFIG.parent / "alerts.yml").read_text())["groups"]
                   for r in g["rules"]]
        assert {r["alert"] for r in shipped} == set(rules)
        assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}

        report: dict[str, dict] = {}
        for rule in shipped:
            name, result = rule["alert"], _query(base, rule["expr"])
            report[f"alert {name}"] = {"series": len(result)}
            if name in ALERTS_EITHER:
                continue
            if name in ALERTS_EXPECTED_EMPTY:
                assert result == [], f"{name} fires on a healthy worker: {result}"
            else:
                assert result, f"{name} returned no data"

        for dash in DASHBOARDS:
            doc = json.loads(dash.read_text())
            for panel in _all_panels(doc["panels"]):
                for target in panel.get("targets", []):
                    if "expr" not in target:
                        continue
                    result = _query(base, _concrete(target["expr"]))
                    report[f"{dash.name}: {panel['title']}"] = {"series": len(result)}
                    if target["expr"] in PANELS_EXPECTED_EMPTY:
                        assert result == [], f"{panel['title']}: expected empty, got {result}"
                    else:
                        assert result, f"panel {panel['title']!r} returned no data: {target['expr']}"
            for var in doc.get("templating", {}).get("list", []):
                query = var.get("query")
                text = query.get("query", "") if isinstance(query, dict) else str(query or "")
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
                assert m, f"variable {var['name']}: unexpected query {text!r}"
                values = _get(base, f"/api/v1/label/{m.group(2)}/values", **{"match[]": _concrete(m.group(1))})["data"]
                report[f"{dash.name}: variable {var['name']}"] = {"values": len(values)}
                assert values, f"variable {var['name']} has no values"
        out = REPO / "reports" / "board"
        out.mkdir(parents=True, exist_ok=True)
        (out / "prometheus.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(timeout=10)
        prom_log.close()
        board.stop()
