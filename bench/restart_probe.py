"""Diagnostic probe: one restart after kill -9 on the embedded broker, phase by phase (JSON on stdout).

Replays `--hours` of the demo hospital (vitals included) through a worker, waits until it has
drained, kills it with SIGKILL, starts another, publishes one new admission and reports:

  phases_s            seconds from the new worker's first log line to its settings, group join(s),
                      changelog recovery and readiness (from its log)
  kill_to_decision_s  seconds from the kill to the new admission's decision (null: none within --wait-s)
  recovery            wall and CPU seconds of the worker and the broker while the changelogs were read
  plain_read_s        the same changelogs read by a plain aiokafka consumer, for comparison
  changelog_records   records per changelog topic
  offsets             committed offset against the broker's listed end offset for admissions, vitals
                      and ordered (Tansu lists an end short of the last record when the last batch
                      holds several)

When the decision does not come, the worker's log is copied next to the JSON (`--keep-log`).
This is a probe, not a benchmark with a baseline: run it before and after a change, on the same
machine, and compare. Findings of 2026-12-06 are in the issue 11 note.

    python bench/restart_probe.py [--hours 20] [--set broker_session_timeout_s=6 ...] [--keep-log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

# Run as a script, this file's folder comes first on sys.path and bench/allocator.py would shadow the
# `allocator` package; put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals  # noqa: E402 - after bench/ is taken off sys.path
from streams.devtools.broker import EmbeddedBroker, create_topics, free_port  # noqa: E402
from streams.devtools.kafka_io import produce_all, read_until  # noqa: E402
from streams.devtools.runner import WorkerProcess, settings_env  # noqa: E402
from streams.devtools.simulator import HospitalSimulator  # noqa: E402
from streams.settings import WardflowSettings  # noqa: E402
from streams.worker.app import input_topic_names, output_topic_names  # noqa: E402
from tests import events as ev  # noqa: E402

PARTITIONS = 4
PHASES = [("settings", "effective settings"), ("worker_start", r"\[\^Worker\]: Starting"),
          ("join_requested", r"\(Re-\)joining group"), ("joined", "Joined group"),
          ("restoring", "Restoring state"), ("done_reading", "Done reading"), ("ready", r"\[\^Worker\]: Ready")]
STAMP = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]?")


def _stamps(log_text: str, pattern: str) -> list[float]:
    out = []
    for line in log_text.splitlines():
        m = STAMP.match(line)
        if m and re.search(pattern, line):
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


class CpuSampler:
    """CPU seconds of the worker and the broker, sampled four times a second with wall-clock stamps."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.is_set():
            sample = {}
            for name, proc in self.procs.items():
                try:
                    cpu = proc.cpu_times()
                except psutil.Error:
                    continue
                sample[name] = cpu.user + cpu.system
            self.samples.append((time.time(), sample))
            time.sleep(0.25)

    def at(self, when: float, name: str) -> float:
        value = 0.0
        for stamp, sample in self.samples:
            if stamp <= when and name in sample:
                value = sample[name]
        return value


async def _changelog_facts(bootstrap: str, run_id: str, prefix: str, group: str) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if run_id in t and t.endswith("-changelog")]
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        per_topic: dict[str, int] = {}
        for tp, end in ends.items():
            name = tp.topic.rsplit(".", 1)[-1]
            per_topic[name] = per_topic.get(name, 0) + end
        consumer.assign(tps)
        began, read = time.monotonic(), 0
        while read < sum(ends.values()) and time.monotonic() - began < 60:
            batch = await consumer.getmany(timeout_ms=1000)
            read += sum(len(v) for v in batch.values())
        plain_s = round(time.monotonic() - began, 2)
    finally:
        await consumer.stop()
    grouped = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await grouped.start()
    try:
        watched = [TopicPartition(prefix + t, p) for t in ("admissions", "vitals", "ordered") for p in range(PARTITIONS)]
        listed = await grouped.end_offsets(watched)
        offsets = [{"topic": tp.topic, "partition": tp.partition, "committed": await grouped.committed(tp),
                    "listed_end": listed[tp]} for tp in watched]
    finally:
        await grouped.stop()
    return {"changelog_records": dict(sorted(per_topic.items(), key=lambda kv: -kv[1])), "plain_read_s": plain_s,
            "plain_read_records": read, "offsets": [o for o in offsets if o["committed"] is not None]}


def _drain(bootstrap: str, prefix: str) -> int:
    """Wait until the decisions topic stops growing; returns how many decisions there are."""
    last = -1
    while True:
        n = len(asyncio.run(read_until(bootstrap, [prefix + "decisions"], lambda r: True, 10, settle_s=0.5)))
        if n == last:
            return n
        last = n
        time.sleep(2)


def probe(hours: float, overrides: dict[str, str], wait_s: float, keep_log: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="wf-restart-probe-"))
    broker = EmbeddedBroker(log_path=tmp / "tansu.log").start()
    workers: list[WorkerProcess] = []
    try:
        run_id = f"x{uuid.uuid4().hex[:8]}"
        prefix = run_id + "."
        hospital = next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))
        start = datetime(2026, 11, 23, tzinfo=UTC)
        events = list(HospitalSimulator(hospital, seed=3, start=start, vitals=True).events(
            until=start + timedelta(hours=hours)))
        settings = WardflowSettings(broker_url=broker.url, topic_prefix=prefix, topic_partitions=PARTITIONS)
        asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings),
                                  PARTITIONS))
        asyncio.run(produce_all(broker.bootstrap, [(prefix + e.topic, e.key, e.value) for e in events]))
        env = settings_env(broker_url=broker.url, topic_prefix=prefix, app_id=f"wardflow-{run_id}",
                           data_dir=tmp / "data", hospital_config=DEMO_HOSPITAL_PATH, metrics_port=free_port(),
                           web_port=0, topic_partitions=PARTITIONS, allow_no_model=True, model_path=tmp / "no-model")
        env.update({f"WARDFLOW_{k.upper()}": v for k, v in overrides.items()})
        log = tmp / "worker.log"
        first = WorkerProcess(env=env, log_path=log)
        workers.append(first)
        first.start()
        first.wait_ready(90)
        print(f"replaying {len(events)} events ...", file=sys.stderr)
        decided = _drain(broker.bootstrap, prefix)
        first.kill()
        killed = time.monotonic()
        mark = log.stat().st_size
        second = WorkerProcess(env=env, log_path=log)
        workers.append(second)
        second.start()
        assert second.process is not None and broker.process is not None
        cpu = CpuSampler({"worker": second.process.pid, "broker": broker.process.pid})
        topic, body = ev.admission(hospital.hospital_id, "P-NEW", "E-NEW", sex="F", requested_unit="MEDICINE",
                                   event_id="after-restart")
        body["occurred_at"] = (start + timedelta(hours=hours, minutes=1)).isoformat()
        asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, (topic, body))]))
        seen = asyncio.run(read_until(broker.bootstrap, [prefix + "decisions"],
                                      lambda rs: any(b"after-restart" in (r.value or b"") for r in rs), wait_s))
        decided_after = any(b"after-restart" in (r.value or b"") for r in seen)
        kill_to_decision = round(time.monotonic() - killed, 2) if decided_after else None
        cpu.done.set()
        second.stop()
        text = log.read_bytes()[mark:].decode(errors="replace")
        stamps = {name: _stamps(text, pattern) for name, pattern in PHASES}
        base = stamps["settings"][0]
        phases = {name: [round(t - base, 2) for t in times] for name, times in stamps.items()}
        recovery = {}
        if stamps["restoring"] and stamps["done_reading"]:
            r0, r1 = stamps["restoring"][-1], stamps["done_reading"][-1]
            recovery = {"wall_s": round(r1 - r0, 2),
                        "worker_cpu_s": round(cpu.at(r1, "worker") - cpu.at(r0, "worker"), 2),
                        "broker_cpu_s": round(cpu.at(r1, "broker") - cpu.at(r0, "broker"), 2)}
        if not decided_after and keep_log is not None:
            shutil.copy(log, keep_log)
        facts = asyncio.run(_changelog_facts(broker.bootstrap, run_id, prefix, f"wardflow-{run_id}"))
        return {"hours": hours, "events": len(events), "decisions_before_kill": decided, "settings": overrides,
                "phases_s": phases, "kill_to_decision_s": kill_to_decision, "recovery": recovery, **facts}
    finally:
        for worker in workers:  # nothing left running, whatever happened
            worker.stop(timeout_s=10)
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=20.0, help="simulated hours replayed before the kill (default 20)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a worker setting, e.g. broker_session_timeout_s=6 (repeatable)")
    ap.add_argument("--wait-s", type=float, default=45.0, help="longest wait for the new admission's decision")
    ap.add_argument("--keep-log", type=Path, help="copy the worker's log here when the decision does not come")
    args = ap.parse_args()
    try:
        overrides = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        ap.error("--set takes NAME=VALUE")
    print(json.dumps(probe(args.hours, overrides, args.wait_s, args.keep_log), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
