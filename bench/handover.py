"""Hand-over benchmark on the embedded broker: SIGTERM to a clean exit, and restart after kill -9.

Each run gets a fresh topic prefix and consumer group. A worker starts, a paced stream of
admissions and discharges (8 hospitals, 4 partitions) runs through it, then:
  sigterm   the worker gets SIGTERM while events are in flight: seconds to exit, exit code
            (clean = exit 0 within --stop-timeout-s)
  restart   (every --restart-every-th run) the worker is killed with SIGKILL instead and a new one
            started: seconds from the kill to the first new decision on `decisions`

ONE JSON object on stdout, progress on stderr.

    python bench/handover.py [--runs 20] [--stop-timeout-s 20] [--restart-every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC
from pathlib import Path

import orjson
import yaml

from streams.devtools.broker import EmbeddedBroker, free_port
from streams.devtools.kafka_io import read_until
from streams.devtools.runner import WorkerProcess, settings_env

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tests" / "fixtures" / "stream_hospital.yaml"
HOSPITALS = [f"h{i}" for i in range(8)]


def _event(hid: str, topic: str, minute: float, event_id: str, **fields: object) -> tuple[str, bytes, bytes]:
    from datetime import datetime, timedelta

    at = datetime(2026, 11, 24, 8, tzinfo=UTC) + timedelta(minutes=minute)
    body = {"event_id": event_id, "hospital_id": hid, "occurred_at": at.isoformat(), **fields}
    return topic, hid.encode(), orjson.dumps(body)


def _stream(prefix: str, rounds: int) -> list[tuple[str, bytes, bytes]]:
    out = []
    for r in range(rounds):
        for h in HOSPITALS:
            out.append(_event(h, prefix + "admissions", r * 2, f"{h}-a{r}", patient_id=f"P{r}", encounter_id=f"E{r}",
                              age=60, sex="F", text="Fall at home.", requested_unit="MEDICINE" if r % 2 else "SURGERY"))
            if r >= 2:
                out.append(_event(h, prefix + "discharges", r * 2 + 1, f"{h}-d{r - 2}", patient_id=f"P{r - 2}",
                                  encounter_id=f"E{r - 2}"))
    return out


async def _paced(bootstrap: str, messages, rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        began = time.monotonic()
        for i, (topic, key, value) in enumerate(messages):
            await producer.send(topic, value=value, key=key)
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


def _count(bootstrap: str, prefix: str) -> int:
    return len(asyncio.run(read_until(bootstrap, [f"{prefix}decisions"], lambda r: True, 10, settle_s=0.3)))


def one_run(broker: EmbeddedBroker, workdir: Path, config: Path, *, kill: bool, stop_timeout_s: float) -> dict:
    run_id = f"b{uuid.uuid4().hex[:8]}"
    prefix = f"{run_id}."
    env = settings_env(broker_url=broker.url, topic_prefix=prefix, app_id=f"wardflow-{run_id}",
                       data_dir=workdir / run_id, hospital_config=config, metrics_port=free_port(), web_port=0,
                       topic_partitions=4, allow_no_model=True, model_path=workdir / "no-model")
    worker = WorkerProcess(env=env, log_path=workdir / f"{run_id}.log").start()
    worker.wait_ready(90)
    producer = threading.Thread(target=lambda: asyncio.run(_paced(broker.bootstrap, _stream(prefix, 40), 40.0)),
                                daemon=True)
    producer.start()
    asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], lambda r: len(r) >= 40, 60))
    if not kill:
        began = time.monotonic()
        code = worker.stop(timeout_s=stop_timeout_s)
        seconds = time.monotonic() - began
        producer.join(60)
        return {"kind": "sigterm", "exit_code": code, "seconds": round(seconds, 2),
                "clean": code == 0 and seconds < stop_timeout_s}
    seen = _count(broker.bootstrap, prefix)
    worker.kill()
    killed = time.monotonic()
    seen = max(seen, _count(broker.bootstrap, prefix))
    again = WorkerProcess(env=env, log_path=workdir / f"{run_id}.log").start()
    asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], lambda r: len(r) > seen, 120))
    seconds = time.monotonic() - killed
    producer.join(60)
    again.stop(timeout_s=stop_timeout_s)
    return {"kind": "restart", "seconds_to_first_decision": round(seconds, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="SIGTERM runs (default 20)")
    ap.add_argument("--stop-timeout-s", type=float, default=20.0, help="a clean stop must end within this")
    ap.add_argument("--restart-every", type=int, default=5, help="also a kill -9 restart after every Nth run (0: none)")
    args = ap.parse_args()
    template = yaml.safe_load(TEMPLATE.read_text())["hospitals"][0]
    results = []
    with tempfile.TemporaryDirectory(prefix="wf-handover-") as tmp:
        workdir = Path(tmp)
        config = workdir / "hospitals.yaml"
        config.write_text(yaml.safe_dump({"hospitals": [{**template, "hospital_id": h} for h in HOSPITALS]}))
        broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
        try:
            for i in range(args.runs):
                results.append(one_run(broker, workdir, config, kill=False, stop_timeout_s=args.stop_timeout_s))
                print(f"run {i + 1}/{args.runs}: {results[-1]}", file=sys.stderr)
                if args.restart_every and (i + 1) % args.restart_every == 0:
                    results.append(one_run(broker, workdir, config, kill=True, stop_timeout_s=args.stop_timeout_s))
                    print(f"  restart: {results[-1]}", file=sys.stderr)
        finally:
            broker.stop()
    stops = [r for r in results if r["kind"] == "sigterm"]
    restarts = [r["seconds_to_first_decision"] for r in results if r["kind"] == "restart"]
    print(json.dumps({
        "sigterm": {"runs": len(stops), "clean": sum(r["clean"] for r in stops),
                    "seconds_max": max(r["seconds"] for r in stops),
                    "seconds_median": statistics.median(r["seconds"] for r in stops)},
        "restart_after_kill_9": {"runs": len(restarts), "seconds": restarts},
        "runs": results,
    }, indent=2))
    return 0 if all(r["clean"] for r in stops) else 1


if __name__ == "__main__":
    sys.exit(main())
