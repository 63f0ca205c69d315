"""Every shipped PromQL (dashboard panels and alert rules) against a live worker scraped by Prometheus.

Starts the embedded broker, a worker (no model) and a local `prometheus` binary scraping it every
second, publishes 14 simulated hours with vitals, waits, then runs each query through Prometheus'
HTTP API and prints JSON: how many return data, errors, and the values (e.g. the escalated share of
pages, which must be a share). Needs `prometheus` on PATH (Debian: apt-get install prometheus).

    python bench/promql_check.py [--out DIR] [--hours 14] [--wait-s 75]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import yaml  # noqa: E402 - after the repository root is put on sys.path

from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals  # noqa: E402 - after the repository root is put on sys.path
from streams.devtools.broker import EmbeddedBroker, free_port  # noqa: E402 - after the repository root is put on sys.path
from streams.devtools.runner import WorkerProcess, settings_env  # noqa: E402 - after the repository root is put on sys.path
from streams.devtools.sim_publish import publish  # noqa: E402 - after the repository root is put on sys.path
from streams.devtools.simulator import HospitalSimulator, utc_hour  # noqa: E402 - after the repository root is put on sys.path

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "wardflow.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def shipped_queries() -> list[tuple[str, str]]:
    out = [(p.get("title", ""), t["expr"]) for p in json.loads(DASHBOARD.read_text())["panels"]
           for t in p.get("targets", [])]
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        out += [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for r in group["rules"]]
    return out


def query(port: int, expr: str) -> dict:
    q = expr.replace("$__rate_interval", "1m").replace('=~"$hospital"', '=~".*"').replace('=~"$unit"', '=~".*"')
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        data = json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
    except Exception as exc:  # noqa: BLE001 - reported per query
        return {"expr": q, "series": 0, "values": [], "error": str(exc)[:200]}
    values = [float(r["value"][1]) for r in data if r["value"][1] not in ("NaN", "+Inf", "-Inf")]
    return {"expr": q, "series": len(data), "values": values[:8], "error": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--hours", type=float, default=14.0, help="simulated hours to publish (default 14)")
    parser.add_argument("--wait-s", type=float, default=75.0, help="seconds to scrape after publishing (default 75)")
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        print(json.dumps({"skipped": "no prometheus binary on PATH"}))
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="promql-check-"))
    out.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(log_path=out / "tansu.log").start()
    metrics_port, prom_port = free_port(), free_port()
    env = settings_env(broker_url=broker.url, topic_prefix="pq.", app_id="wardflow-pq", data_dir=out / "data",
                       metrics_port=metrics_port, web_port=0, topic_partitions=2, allow_no_model=True,
                       model_path=out / "no-model", log_level="INFO")
    worker = WorkerProcess(env=env, log_path=out / "worker.log").start()
    (out / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "wardflow-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}))
    with open(out / "prometheus.log", "wb") as log:
        prom = subprocess.Popen(["prometheus", f"--config.file={out / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={out / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        worker.wait_ready(120)
        hospital = next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))
        start = utc_hour() - timedelta(days=1)
        events = list(HospitalSimulator(hospital, seed=7, start=start, vitals=True).events(
            until=start + timedelta(hours=args.hours)))
        asyncio.run(publish(events, bootstrap=broker.bootstrap, prefix="pq.", speed=0))
        time.sleep(args.wait_s)
        results = [{"title": title, **query(prom_port, expr)} for title, expr in shipped_queries()]
        print(json.dumps({"queries": len(results), "with_data": sum(r["series"] > 0 for r in results),
                          "errors": sum(r["error"] is not None for r in results), "events": len(events),
                          "worker_alive": worker.running, "results": results}, indent=1))
    finally:
        prom.terminate()
        prom.wait(10)
        worker.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
