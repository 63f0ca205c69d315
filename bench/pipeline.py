"""Streaming pipeline benchmark on the embedded broker: ceiling, worker throughput, inference, latency.

One run, one embedded (Tansu, in-memory) broker, a fresh topic prefix and app id per phase:
  ceiling      plain aiokafka consume -> produce loop, no processing (messages/s end to end)
  stateful_faust  the framework's own ceiling: a trivial stateful Faust agent (bench/stateful_faust.py:
               one table increment per event, the worker's Faust app class, fetch wait, commit
               interval and group timeouts) on the same backlog (cycled to >= 5,000 events), topics
               and partitions as `mix`, measured the same way
  stateful_faust_two_stage  the same agent behind a forwarding agent and an internal topic
               (`--stages 2`): Faust's ceiling for the worker's own shape (sequencer, then state)
  mix          the WardFlow worker on a pre-produced vitals-heavy backlog from the hospital
               simulator (every admission has a requested_unit): sustained events/s, the ratio
               to the ceiling (target >= 0.5) and to the stateful Faust agent
               (`ratio_to_stateful_faust`, target >= 0.5); `worker_settings` gives the batch and
               checkpoint (commit) settings the worker ran with
  processing_in_process  the state agent's own work on the same mix in this process (no broker, no
               Faust: streams.devtools.memory over plain dicts, in checkpoints of the mix phase's mean
               size): CPU ms per event, and the table writes per event (the changelog records the
               worker sends), by table
  stateful_faust_worker_shape  the two-stage trivial agent with as many table writes per event as the
               worker's changelog records (`--stages 2 --writes N`): the framework at the worker's
               shape, none of its work
  floor        what the CPU figures say: every worker phase reports `worker_cpu_ms_per_event` and
               `worker_cpu_busy` (cores kept busy, psutil, over the measured window; the broker's too).
               One hospital's events are ordered on one partition and handled by one Python process
               that holds the GIL, so its rate is at most 1000 / worker_cpu_ms_per_event; `floor`
               splits that into the processing, the framework at the worker's shape, and the rest
  inference    admissions with no requested_unit (each one goes through the triage model):
               worker events/s vs the model's own predict_batch rate (batches of 32) on the
               same texts in the same run; skipped when models/triage/int8 does not exist
  latency      paced sends of the vitals-heavy mix at about half the sustained mix rate;
               produce -> decision on the decisions topic (matched by caused_by == event_id),
               p50/p99 over the events that cause a decision; then `idle_single_event`: the
               next 24 events one every 0.5 s, each on an idle worker (target p99 <= 100 ms)

The simulator opens with an initial census (mostly admissions at the start time): it is produced
as an unmeasured warm-up before the measured events (mix, latency) or left out (inference).

Sustained rate: the backlog of K events is produced before the worker starts; once it is ready
the worker's /metrics is polled every 0.2 s and the rate is taken between the first poll that
shows the warm-up processed and the poll where `wardflow_events_in_total` (all topics) reaches
warm-up + K.

ONE JSON object on stdout, progress on stderr.

    python bench/pipeline.py [--quick] [--events 2500] [--admissions 400] [--latency-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import orjson  # noqa: E402 - after the thread settings and sys.path above
import psutil  # noqa: E402 - after the thread settings and sys.path above
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402 - after the thread settings and sys.path above
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402 - after the thread settings and sys.path above

from allocator.hospital import load_hospitals  # noqa: E402 - after the thread settings and sys.path above
from streams.devtools.broker import EmbeddedBroker, create_topics, free_port  # noqa: E402 - after the thread settings and sys.path above
from streams.devtools.kafka_io import produce_all  # noqa: E402 - after the thread settings and sys.path above
from streams.devtools.runner import WorkerProcess, settings_env  # noqa: E402 - after the thread settings and sys.path above
from streams.devtools.simulator import HospitalSimulator, SimEvent  # noqa: E402 - after the thread settings and sys.path above
from streams.settings import WardflowSettings  # noqa: E402 - after the thread settings and sys.path above
from streams.worker.app import input_topic_names, output_topic_names  # noqa: E402 - after the thread settings and sys.path above

MODEL_DIR = Path("models/triage/int8")
HOSPITAL_CONFIG = Path("allocator/hospitals/demo.yaml")
PARTITIONS = 2
SIM_START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
RUN = uuid.uuid4().hex[:8]


def say(msg: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]


def hospital():
    return next(iter(load_hospitals(HOSPITAL_CONFIG).values()))


def sim_events(n: int, *, seed: int, vitals: bool, requested_unit_rate: float,
               only: str | None = None) -> tuple[list[SimEvent], list[SimEvent]]:
    """(census, n events after it): the simulator opens with the initial census (mostly admissions
    at or before the start time); it is a warm-up, not part of the measured mix."""
    sim = HospitalSimulator(hospital(), seed=seed, start=SIM_START, vitals=vitals,
                            requested_unit_rate=requested_unit_rate, malformed_rate=0.0)
    census: list[SimEvent] = []
    rest: list[SimEvent] = []
    for e in sim.events(until=SIM_START + timedelta(days=60)):
        if e.at <= SIM_START:
            census.append(e)
        elif only is None or e.topic == only:
            rest.append(e)
            if len(rest) >= n:
                break
    return census, rest


# --------------------------------------------------------------------------- ceiling

async def ceiling(bootstrap: str, payloads: list[tuple[bytes, bytes]]) -> dict:
    """Consume every pre-produced message from `in`, produce each to `out`, wait for every ack."""
    src, dst = f"bench-{RUN}-ceil.in", f"bench-{RUN}-ceil.out"
    await create_topics(bootstrap, [src, dst], PARTITIONS)
    await produce_all(bootstrap, [(src, k, v) for k, v in payloads])
    n = len(payloads)
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=f"bench-{RUN}-ceil", fetch_max_wait_ms=50)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        seen, pending, started = 0, [], None
        deadline = time.monotonic() + 120
        while seen < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                if records and started is None:
                    started = time.monotonic()
                for r in records:
                    pending.append(await producer.send(dst, key=r.key, value=r.value))
                    seen += 1
        await asyncio.gather(*pending)
        wall = time.monotonic() - (started or time.monotonic())
    finally:
        await producer.stop()
        await consumer.stop()
    return {"messages": seen, "wall_s": round(wall, 3), "messages_per_s": round(seen / wall, 1) if wall else None,
            "acks": "all", "partitions": PARTITIONS}


# --------------------------------------------------------------------------- worker phases

class Phase:
    """One worker on a fresh prefix/app id/data dir; topics created up front."""

    def __init__(self, name: str, broker: EmbeddedBroker, workdir: Path, *, model_path: Path | None) -> None:
        self.name = name
        self.prefix = f"bench-{RUN}-{name}."
        self.settings = WardflowSettings(broker_url=broker.url, topic_prefix=self.prefix, topic_partitions=PARTITIONS)
        self.bootstrap = broker.bootstrap
        self.broker = broker
        self.metrics_port = free_port()
        self.log_path = workdir / f"worker-{name}.log"
        self.env = settings_env(
            broker_url=broker.url, topic_prefix=self.prefix, app_id=f"bench-{RUN}-{name}",
            data_dir=workdir / f"data-{name}", hospital_config=HOSPITAL_CONFIG, metrics_port=self.metrics_port,
            web_port=0, topic_partitions=PARTITIONS,
            model_path=model_path if model_path is not None else workdir / "no-model",
            allow_no_model=model_path is None,
            log_level="INFO")  # Faust logs "Worker ready" (what WorkerProcess.wait_ready waits for) at INFO
        self.worker: WorkerProcess | None = None
        self.ready_s: float | None = None

    def create_topics(self) -> None:
        names = input_topic_names(self.settings) + output_topic_names(self.settings) + [self.settings.topic("ordered")]
        asyncio.run(create_topics(self.bootstrap, names, PARTITIONS))

    def produce(self, events: list[SimEvent]) -> None:
        asyncio.run(produce_all(self.bootstrap, [(self.prefix + e.topic, e.key, e.value) for e in events]))

    def start(self, timeout_s: float = 120) -> None:
        self.worker = WorkerProcess(env=self.env, log_path=self.log_path).start()
        self.ready_s = self.worker.wait_ready(timeout_s)
        say(f"{self.name}: worker ready after {self.ready_s:.1f}s")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            errors = self.worker.errors()
            if errors:
                say(f"{self.name}: {len(errors)} ERROR/Traceback lines in {self.log_path}: {errors[:3]}")

    def metrics(self) -> dict[str, float]:
        """Sums per family over labels: events_in, decisions, dead_letters, duplicates, errors."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name.endswith(("_total", "_sum", "_count")):
                    out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def processed(self) -> float:
        try:
            return self.metrics().get("wardflow_events_in_total", 0.0)
        except OSError:
            return 0.0

    def wait_processed(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processed() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: warm-up of {n} events not processed in {timeout_s:.0f}s")
            time.sleep(0.2)

    def sustained(self, k: int, timeout_s: float, warm: int = 0) -> dict:
        """`measure_sustained` on the worker's `wardflow_events_in_total`, plus its counters."""
        result = measure_sustained(self, k, timeout_s, warm, self.broker)
        if result.get("timed_out"):
            return result
        m = self.metrics()
        return {**result,
                "decisions_incl_warmup": m.get("wardflow_decisions_total", 0.0),
                "dead_letters": m.get("wardflow_dead_letters_total", 0.0),
                "duplicates": m.get("wardflow_duplicates_total", 0.0),
                "event_errors": m.get("wardflow_event_errors_total", 0.0),
                "checkpoints_incl_warmup": m.get("wardflow_checkpoint_events_count", 0.0),
                "end_offset_listings_incl_warmup": m.get("wardflow_sequencer_end_offset_listings_total", 0.0),
                "mean_events_per_checkpoint": (round(m["wardflow_checkpoint_events_sum"]
                                                     / m["wardflow_checkpoint_events_count"], 1)
                                               if m.get("wardflow_checkpoint_events_count") else None),
                "worker_ready_s": round(self.ready_s or 0, 1)}


class CpuClock:
    """CPU seconds (user + system) of a process and its children: the worker's own cost per event, apart
    from the broker's, on the same measured window."""

    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid is not None else None

    def seconds(self) -> float | None:
        if self.proc is None:
            return None
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            total = 0.0
            for p in procs:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except psutil.Error:
            return None


def _pid(proc: subprocess.Popen[bytes] | None) -> int | None:
    return proc.pid if proc is not None and proc.poll() is None else None


def measure_sustained(phase: Phase | StatefulFaustPhase, k: int, timeout_s: float, warm: int,
                      broker: EmbeddedBroker | None = None) -> dict:
    """Poll the phase's processed count every 0.2 s until it reaches warm + k; the rate between the
    first poll at or past `warm` (and past 0) and the poll that reaches warm + k, and the CPU the
    worker (and the broker, when given) used between the same two polls."""
    clocks = {"worker": CpuClock(_pid(phase.worker.process) if phase.worker is not None else None),
              "broker": CpuClock(_pid(broker.process) if broker is not None else None)}
    cpu0: dict[str, float | None] = {}
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout_s
    count = 0.0
    total = warm + k
    while time.monotonic() < deadline:
        count = phase.processed()
        now = time.monotonic()
        if first is None and count > 0 and count >= warm:
            first = (now, count)
            cpu0 = {name: clock.seconds() for name, clock in clocks.items()}
        if count >= total:
            break
        if phase.worker is not None and not phase.worker.running:
            raise RuntimeError(f"{phase.name}: worker exited; see {phase.log_path}")
        time.sleep(0.2)
    end = time.monotonic()
    cpu1 = {name: clock.seconds() for name, clock in clocks.items()}
    if first is None or count < total:
        return {"events": k, "warmup_events": warm, "processed": count, "timed_out": True}
    span = end - first[0]
    measured = total - first[1]
    rate = measured / span if span > 0 else None
    out: dict = {"events": k, "warmup_events": warm, "wall_s": round(span, 3),
                 "events_per_s": round(rate, 1) if rate else None, "measured_from_count": first[1]}
    for name in clocks:
        a, b = cpu0.get(name), cpu1[name]
        if a is not None and b is not None and measured > 0 and span > 0:
            out[f"{name}_cpu_ms_per_event"] = round(1000 * (b - a) / measured, 4)
            out[f"{name}_cpu_busy"] = round((b - a) / span, 3)  # cores kept busy: 1.0 = one core, all the time
    return out


class StatefulFaustPhase:
    """The trivial stateful Faust agent (bench/stateful_faust.py) in its own process, on its own
    prefix and app id, reading the same input topics (by name) with the same partitions."""

    def __init__(self, broker: EmbeddedBroker, workdir: Path, stages: int = 1, writes: int = 1) -> None:
        self.name = ("stateful_faust" if stages == 1 else "stateful_faust_two_stage") + (
            f"_{writes}_writes" if writes != 1 else "")
        self.prefix = f"bench-{RUN}-{self.name}."
        self.settings = WardflowSettings(broker_url=broker.url, topic_prefix=self.prefix, topic_partitions=PARTITIONS)
        self.bootstrap = broker.bootstrap
        self.web_port = free_port()
        self.log_path = workdir / f"worker-{self.name}.log"
        self.command = [
            sys.executable, str(ROOT / "bench" / "stateful_faust.py"), "--broker-url", broker.url,
            "--app-id", f"bench-{RUN}-{self.name}", "--topics", ",".join(input_topic_names(self.settings)),
            "--partitions", str(PARTITIONS), "--web-port", str(self.web_port),
            "--datadir", str(workdir / f"data-{self.name}"),
            "--fetch-max-wait-ms", str(self.settings.broker_fetch_max_wait_ms),
            "--commit-interval-s", str(self.settings.commit_interval_s),
            "--session-timeout-s", str(self.settings.broker_session_timeout_s),
            "--rebalance-timeout-s", str(self.settings.broker_rebalance_timeout_s),
            "--heartbeat-interval-s", str(self.settings.broker_heartbeat_interval_s), "--stages", str(stages),
            "--writes", str(writes)]
        self.worker: WorkerProcess | None = None
        self.ready_s: float | None = None

    def processed(self) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/processed/", timeout=2) as resp:
                return float(orjson.loads(resp.read())["processed"])
        except OSError:
            return 0.0


def run_stateful_faust(broker: EmbeddedBroker, workdir: Path, events: list[SimEvent], *, timeout_s: float,
                       warm: Sequence[SimEvent] = (), stages: int = 1, writes: int = 1) -> dict:
    phase = StatefulFaustPhase(broker, workdir, stages, writes)
    asyncio.run(create_topics(phase.bootstrap, input_topic_names(phase.settings), PARTITIONS))
    asyncio.run(produce_all(phase.bootstrap, [(phase.prefix + e.topic, e.key, e.value) for e in [*warm, *events]]))
    say(f"{phase.name}: {len(warm)} warm-up + {len(events)} events pre-produced; starting the Faust agent")
    phase.worker = WorkerProcess(env={}, log_path=phase.log_path, command=phase.command).start()
    try:
        phase.ready_s = phase.worker.wait_ready(120)
        say(f"{phase.name}: agent ready after {phase.ready_s:.1f}s")
        result = measure_sustained(phase, len(events), timeout_s, len(warm), broker)
    finally:
        phase.worker.stop()
        errors = phase.worker.errors()
        if errors:
            say(f"{phase.name}: {len(errors)} ERROR/Traceback lines in {phase.log_path}: {errors[:3]}")
    agent = ("one Faust table increment per event (bench/stateful_faust.py)" if stages == 1 else
             "a forwarding agent, an internal topic, then one Faust table increment per event "
             "(bench/stateful_faust.py --stages 2: the worker's two-stage shape)")
    if writes != 1:
        agent = agent.replace("one Faust table increment", f"{writes} Faust table increments (changelog records)")
    result.update({"agent": agent,
                   "worker_ready_s": round(phase.ready_s or 0, 1), "partitions": PARTITIONS,
                   "broker_fetch_max_wait_ms": phase.settings.broker_fetch_max_wait_ms,
                   "commit_interval_s": phase.settings.commit_interval_s,
                   "mix": dict(Counter(e.topic for e in events))})
    return result


def worker_settings() -> dict:
    """The worker's batch and checkpoint settings (defaults plus WARDFLOW_ variables), by name."""
    settings = WardflowSettings()
    words = ("batch", "checkpoint", "commit", "fetch_max_wait", "max_wait")
    return {name: getattr(settings, name) for name in sorted(WardflowSettings.model_fields)
            if any(w in name for w in words)}


def run_sustained(name: str, broker: EmbeddedBroker, workdir: Path, events: list[SimEvent], *,
                  model_path: Path | None, timeout_s: float, warm: Sequence[SimEvent] = ()) -> dict:
    phase = Phase(name, broker, workdir, model_path=model_path)
    phase.create_topics()
    phase.produce([*warm, *events])
    say(f"{name}: {len(warm)} warm-up + {len(events)} events pre-produced; starting worker")
    try:
        phase.start()
        result = phase.sustained(len(events), timeout_s, warm=len(warm))
    finally:
        phase.stop()
    result["mix"] = dict(Counter(e.topic for e in events))
    return result


# --------------------------------------------------------------------------- model rate

def model_rate(texts: list[dict]) -> dict:
    from inference.interface import TriageRequest
    from inference.serving import OnnxTriageModel

    model = OnnxTriageModel.load(MODEL_DIR, threads=2)
    reqs = [TriageRequest(id=str(i), text=t["text"], age=float(t["age"]), sex=t["sex"]) for i, t in enumerate(texts)]
    model.predict_batch(reqs[:32])  # warm-up
    lat: list[float] = []
    started = time.monotonic()
    for i in range(0, len(reqs), 32):
        t0 = time.monotonic()
        model.predict_batch(reqs[i:i + 32])
        lat.append(time.monotonic() - t0)
    wall = time.monotonic() - started
    return {"texts": len(reqs), "batch_size": 32, "threads": 2, "wall_s": round(wall, 3),
            "texts_per_s": round(len(reqs) / wall, 1), "model_version": model.model_version,
            "batch_ms_p50": round(1000 * statistics.median(lat), 1), "batch_ms_p99": round(1000 * pct(lat, 0.99), 1)}


# --------------------------------------------------------------------------- latency

async def paced_latency(phase: Phase, events: list[SimEvent], rate: float, timeout_s: float) -> dict:
    """Send `events` at `rate`/s; time produce -> first decision whose caused_by is the event_id."""
    sent_at: dict[str, float] = {}
    decided_at: dict[str, float] = {}
    consumer = AIOKafkaConsumer(phase.settings.topic("decisions"), bootstrap_servers=phase.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=phase.bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    sending = True

    async def read() -> None:
        while sending or time.monotonic() < drain_until[0]:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    cause = orjson.loads(r.value).get("caused_by")
                    if cause is not None and cause not in decided_at:
                        decided_at[cause] = now

    drain_until = [float("inf")]
    reader = asyncio.create_task(read())
    try:
        interval = 1.0 / rate
        start = time.monotonic()
        pending = []
        for i, e in enumerate(events):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            eid = orjson.loads(e.value)["event_id"]
            sent_at[eid] = time.monotonic()
            pending.append(await producer.send(phase.prefix + e.topic, key=e.key, value=e.value))
        await asyncio.gather(*pending)
        send_wall = time.monotonic() - start
        sending = False
        drain_until[0] = time.monotonic() + min(timeout_s, 15.0)
        # drain until no new decision has arrived for 2 s (at most 15 s)
        last_n, last_change = len(decided_at), time.monotonic()
        while time.monotonic() < drain_until[0] and time.monotonic() - last_change < 2.0:
            await asyncio.sleep(0.2)
            if len(decided_at) != last_n:
                last_n, last_change = len(decided_at), time.monotonic()
        drain_until[0] = 0.0
        await reader
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    lat = [1000 * (decided_at[e] - sent_at[e]) for e in sent_at if e in decided_at]
    out = {"target_rate_per_s": round(rate, 1), "sent": len(sent_at),
           "achieved_send_rate_per_s": round(len(sent_at) / send_wall, 1), "events_with_decision": len(lat),
           "mix": dict(Counter(e.topic for e in events))}
    if lat:
        out.update({"latency_ms_p50": round(pct(lat, 0.5), 1), "latency_ms_p99": round(pct(lat, 0.99), 1),
                    "latency_ms_max": round(max(lat), 1)})
    return out


IDLE_EVENTS, IDLE_RATE = 24, 2.0  # one event every 0.5 s: each finds the worker idle


def run_latency(broker: EmbeddedBroker, workdir: Path, warm: list[SimEvent], events: list[SimEvent],
                rate: float, idle: Sequence[SimEvent] = ()) -> dict:
    phase = Phase("latency", broker, workdir, model_path=None)
    phase.create_topics()
    try:
        phase.start()
        phase.produce(warm)  # the census, unpaced and not measured
        phase.wait_processed(len(warm), timeout_s=120)
        say(f"latency: {len(warm)} warm-up events processed")
        listings = phase.metrics().get("wardflow_sequencer_end_offset_listings_total", 0.0)
        result = asyncio.run(paced_latency(phase, events, rate, timeout_s=30))
        result["warmup_events"] = len(warm)
        result["end_offset_listings"] = phase.metrics().get("wardflow_sequencer_end_offset_listings_total",
                                                            0.0) - listings
        if idle:
            say(f"latency: {len(idle)} single events on the idle worker, {IDLE_RATE:g}/s")
            result["idle_single_event"] = asyncio.run(paced_latency(phase, list(idle), IDLE_RATE, timeout_s=10))
    finally:
        phase.stop()
    return result


# --------------------------------------------------------------------------- floor

class _CountingTable(dict):
    """A table that counts what reaches it: in the worker each set or delete is one changelog record."""

    def __init__(self, counts: Counter[str], name: str, data: dict) -> None:
        super().__init__(data)
        self.counts, self.name = counts, name

    def __setitem__(self, key: object, value: object) -> None:
        self.counts[self.name] += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: object) -> None:
        self.counts[self.name] += 1
        super().__delitem__(key)


def processing_floor(warm: list[SimEvent], events: list[SimEvent], batch: int) -> dict:
    """The worker's own processing of the same events in this process, no broker and no Faust: the
    state agent's EventProcessor over plain dicts (streams.devtools.memory), in checkpoints of `batch`
    events. Its CPU per event is what the worker would cost if the framework cost nothing; the
    writes that reach the tables are the changelog records the worker sends per event."""
    from streams.devtools.memory import InMemoryWorker
    from streams.pipeline.processor import RawMessage

    w = InMemoryWorker(load_hospitals(HOSPITAL_CONFIG), topic_prefix="")

    def raw(evs: list[SimEvent], start: int) -> list[RawMessage]:
        return [RawMessage(topic=e.topic, partition=0, offset=start + i, key=e.key, value=e.value,
                           timestamp=time.time()) for i, e in enumerate(evs)]

    counts: Counter[str] = Counter()

    async def run() -> float:
        await w.processor.process_batch(raw(warm, 0))
        for name in list(w.tables):  # the processor holds this same dict of tables
            w.tables[name] = _CountingTable(counts, name, w.tables[name])
        msgs = raw(events, len(warm))
        t0 = time.process_time()
        for i in range(0, len(msgs), batch):
            await w.processor.process_batch(msgs[i:i + batch])
        return time.process_time() - t0

    cpu = asyncio.run(run())
    n = len(events)
    return {"events": n, "batch": batch, "cpu_ms_per_event": round(1000 * cpu / n, 4),
            "changelog_records_per_event": round(sum(counts.values()) / n, 3),
            "changelog_records_per_event_by_table": {k: round(v / n, 3) for k, v in counts.most_common()}}


def floor_summary(result: dict) -> dict:
    """What the CPU figures say the worker can reach on one core: one hospital's events are ordered on
    one partition and handled by one Python process, which holds the GIL, so its rate is at most
    1 / (its CPU per event). Keys are missing where a phase did not measure them."""
    mix, two, one = result.get("mix", {}), result.get("stateful_faust_two_stage", {}), result.get("stateful_faust", {})
    proc = result.get("processing_in_process", {})
    out: dict = {}
    w, p = mix.get("worker_cpu_ms_per_event"), proc.get("cpu_ms_per_event")
    f1, f2 = one.get("worker_cpu_ms_per_event"), two.get("worker_cpu_ms_per_event")
    shape = result.get("stateful_faust_worker_shape", {})
    fs = shape.get("worker_cpu_ms_per_event")
    if w:
        out["worker_cpu_ms_per_event"] = w
        out["one_core_events_per_s"] = round(1000 / w, 1)
        out["worker_cpu_busy"] = mix.get("worker_cpu_busy")
    if p:
        out["processing_cpu_ms_per_event"] = p
        out["processing_alone_events_per_s"] = round(1000 / p, 1)
    if w and p:
        out["framework_cpu_ms_per_event"] = round(w - p, 4)
        out["processing_share_of_worker_cpu"] = round(p / w, 3)
    if f1:
        out["stateful_faust_cpu_ms_per_event"] = f1
    if f2:
        out["two_stage_faust_cpu_ms_per_event"] = f2
    if f2 and p:
        # the worker's shape with nothing but the processing added: no changelog beyond one increment
        out["two_stage_faust_plus_processing_events_per_s"] = round(1000 / (f2 + p), 1)
    if fs:
        out["worker_shape_faust_cpu_ms_per_event"] = fs
        out["worker_shape_faust_events_per_s"] = shape.get("events_per_s")
        if p:
            # the framework's cost with the worker's shape and changelog, plus the worker's own processing
            out["worker_shape_faust_plus_processing_events_per_s"] = round(1000 / (fs + p), 1)
        if w:
            out["unexplained_cpu_ms_per_event"] = round(w - fs - (p or 0.0), 4)
    target = 3000.0
    out["target_events_per_s"] = target
    out["target_cpu_ms_per_event_on_one_core"] = round(1000 / target, 4)
    return out


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute or two on 2 cores)")
    ap.add_argument("--events", type=int, help="backlog size K for the ceiling and mix phases (default 2500, quick 1000)")
    ap.add_argument("--admissions", type=int, help="admissions for the inference phase (default 400, quick 160)")
    ap.add_argument("--latency-s", type=float, help="paced sending time for the latency phase (default 30, quick 12)")
    args = ap.parse_args()
    k = args.events or (1000 if args.quick else 2500)
    n_adm = args.admissions or (160 if args.quick else 400)
    lat_s = args.latency_s or (12.0 if args.quick else 30.0)

    result: dict = {"benchmark": "pipeline", "run": RUN, "quick": args.quick,
                    "platform": {"python": platform.python_version(), "machine": platform.machine(),
                                 "cpus": os.cpu_count()},
                    "broker": "embedded Tansu (memory)", "partitions": PARTITIONS,
                    "hospital_config": str(HOSPITAL_CONFIG)}
    mix_warm, mix = sim_events(k, seed=1, vitals=True, requested_unit_rate=1.0)
    n_ceil = max(10 * k, 10_000)
    broker = EmbeddedBroker()
    with tempfile.TemporaryDirectory(prefix="wardflow-bench-") as tmp:
        workdir = Path(tmp)
        try:
            broker.start()
            say(f"broker at {broker.bootstrap}")

            say(f"ceiling: {n_ceil} messages")
            result["ceiling"] = asyncio.run(ceiling(broker.bootstrap,
                                                    [(mix[i % k].key, mix[i % k].value) for i in range(n_ceil)]))
            say(f"ceiling: {result['ceiling']['messages_per_s']} msg/s")

            # the same backlog cycled to at least 5,000 events (like the ceiling's): the agent drains 1,000
            # in well under a second, too short for the 0.2 s polls to time it
            faust_events = [mix[i % k] for i in range(max(5 * k, 5000))]
            say(f"stateful_faust: {len(faust_events)} events")
            result["stateful_faust"] = run_stateful_faust(broker, workdir, faust_events, timeout_s=240, warm=mix_warm)
            faust_rate, ceil_rate = result["stateful_faust"].get("events_per_s"), result["ceiling"].get("messages_per_s")
            if faust_rate and ceil_rate:
                result["stateful_faust"]["ratio_to_ceiling"] = round(faust_rate / ceil_rate, 3)
            say(f"stateful_faust: {faust_rate} events/s")
            say(f"stateful_faust_two_stage: {len(faust_events)} events")
            result["stateful_faust_two_stage"] = run_stateful_faust(broker, workdir, faust_events, timeout_s=240,
                                                                    warm=mix_warm, stages=2)
            two_stage_rate = result["stateful_faust_two_stage"].get("events_per_s")
            say(f"stateful_faust_two_stage: {two_stage_rate} events/s")

            say(f"mix: {k} events")
            result["mix"] = run_sustained("mix", broker, workdir, mix, model_path=None, timeout_s=240, warm=mix_warm)
            result["mix"]["worker_settings"] = worker_settings()
            rate = result["mix"].get("events_per_s")
            if rate and ceil_rate:
                result["mix"]["ratio_to_ceiling"] = round(rate / ceil_rate, 3)
                result["mix"]["meets_target_0_5"] = rate / ceil_rate >= 0.5
            if rate and faust_rate:
                result["mix"]["ratio_to_stateful_faust"] = round(rate / faust_rate, 3)
                result["mix"]["meets_stateful_faust_target_0_5"] = rate / faust_rate >= 0.5
            if rate and two_stage_rate:
                result["mix"]["ratio_to_two_stage_faust"] = round(rate / two_stage_rate, 3)
            say(f"mix: {rate} events/s")
            batch = int(result["mix"].get("mean_events_per_checkpoint") or WardflowSettings().checkpoint_max_events)
            say(f"processing in process (no broker, no Faust): {len(mix)} events, checkpoints of {batch}")
            result["processing_in_process"] = processing_floor(mix_warm, mix, batch)
            writes = max(1, round(result["processing_in_process"]["changelog_records_per_event"]))
            say(f"stateful_faust_two_stage_{writes}_writes: the worker's shape and changelog, none of its work")
            result["stateful_faust_worker_shape"] = run_stateful_faust(broker, workdir, faust_events, timeout_s=240,
                                                                       warm=mix_warm, stages=2, writes=writes)
            result["floor"] = floor_summary(result)
            say(f"floor: {result['floor']}")

            if (MODEL_DIR / "triage_config.json").exists():
                _, adm = sim_events(n_adm, seed=2, vitals=False, requested_unit_rate=0.0, only="admissions")
                say(f"inference: {len(adm)} admissions without requested_unit")
                inf = run_sustained("inference", broker, workdir, adm, model_path=MODEL_DIR, timeout_s=240)
                texts = [orjson.loads(e.value) for e in adm]
                inf["without_requested_unit"] = sum(1 for t in texts if not t.get("requested_unit"))
                say("inference: model batch rate on the same texts (worker stopped)")
                inf["model_predict_batch"] = model_rate(texts)
                if inf.get("events_per_s"):
                    inf["ratio_to_model_batch_rate"] = round(
                        inf["events_per_s"] / inf["model_predict_batch"]["texts_per_s"], 3)
                result["inference"] = inf
                say(f"inference: {inf.get('events_per_s')} events/s vs model "
                    f"{inf['model_predict_batch']['texts_per_s']} texts/s")
            else:
                result["inference"] = {"skipped": f"no model at {MODEL_DIR} (triage_config.json missing)"}

            if rate:
                target = rate / 2
                n_lat = max(50, int(target * lat_s))
                lat_warm, lat_events = sim_events(n_lat + IDLE_EVENTS, seed=3, vitals=True, requested_unit_rate=1.0)
                say(f"latency: {n_lat} events paced at {target:.0f}/s")
                result["latency"] = run_latency(broker, workdir, lat_warm, lat_events[:n_lat], target,
                                                idle=lat_events[n_lat:])
                idle_result = result["latency"].get("idle_single_event", {})
                say(f"latency: p50 {result['latency'].get('latency_ms_p50')} ms, "
                    f"p99 {result['latency'].get('latency_ms_p99')} ms; idle single event p50 "
                    f"{idle_result.get('latency_ms_p50')} ms, max {idle_result.get('latency_ms_max')} ms")
            else:
                result["latency"] = {"skipped": "no sustained mix rate to pace at"}
        except Exception as exc:  # noqa: BLE001 - report what was measured, and why it stopped
            result["error"] = f"{type(exc).__name__}: {exc}"
            say(f"FAILED: {result['error']}")
        finally:
            broker.stop()
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
