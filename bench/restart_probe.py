"""Diagnostic probe (not a benchmark with a baseline): a restart after kill -9, phase by phase.

Replays HOURS of the demo hospital (vitals included) through a worker on the embedded broker, waits
until it has drained, kills it with SIGKILL, starts another, publishes one admission and prints:
the phases of the restart from the new worker's log (settings, group join, changelog recovery,
ready), seconds from the kill to that admission's decision, the worker's and the broker's CPU
seconds during recovery, a plain aiokafka read of the same changelogs, the changelog records per
table, and the group's committed offsets against the broker's listed end offsets. When the
decision does not come within 45 s it prints the worker's metrics, a py-spy dump and keeps the log
in /tmp/exp/stall.log. Extra `name=value` arguments are worker settings (WARDFLOW_NAME).

    python bench/restart_probe.py [HOURS] [broker_session_timeout_s=4 ...]

Findings of 2026-12-06 (see the issue 11 note): the join of a restarted worker waits half the
session timeout on Tansu; recovery costs ~7 CPU-s for 50,000 changelog records (8.7 per event);
Tansu lists a partition's end offset short of its last record when the last batch holds several
(committed 357, listed 330..354, 357 records readable); about one restart in five the new worker
never forwards the new admission (reproduced with session timeouts of 4 and 6 s).
"""
import asyncio, re, sys, tempfile, time, uuid, threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
import orjson
sys.path.insert(0, ".")
from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals
from streams.broker import EmbeddedBroker, free_port, create_topics
from streams.kafka_io import produce_all, read_until
from streams.runner import WorkerProcess, settings_env
from streams.simulator import HospitalSimulator
from streams.app import input_topic_names, output_topic_names
from streams.settings import WardflowSettings

hours = float(sys.argv[1]) if len(sys.argv) > 1 else 20
extra = dict(a.split("=", 1) for a in sys.argv[2:])
tmp = Path(tempfile.mkdtemp(prefix="exp-"))
broker = EmbeddedBroker(log_path=tmp / "tansu.log").start()
try:
    run_id = f"x{uuid.uuid4().hex[:8]}"; prefix = run_id + "."
    hospitals = load_hospitals(DEMO_HOSPITAL_PATH); h = next(iter(hospitals.values()))
    start = datetime(2026, 11, 23, tzinfo=timezone.utc)
    events = list(HospitalSimulator(h, seed=3, start=start, vitals=True).events(until=start + timedelta(hours=hours)))
    s = WardflowSettings(broker_url=broker.url, topic_prefix=prefix, topic_partitions=4)
    asyncio.run(create_topics(broker.bootstrap, input_topic_names(s) + output_topic_names(s), 4))
    asyncio.run(produce_all(broker.bootstrap, [(prefix + e.topic, e.key, e.value) for e in events]))
    env = settings_env(broker_url=broker.url, topic_prefix=prefix, app_id=f"wardflow-{run_id}", data_dir=tmp / "data",
                       hospital_config=DEMO_HOSPITAL_PATH, metrics_port=free_port(), web_port=0, topic_partitions=4,
                       allow_no_model=True, model_path=tmp / "no-model")
    env.update({f"WARDFLOW_{k.upper()}": v for k, v in extra.items()})
    log = tmp / "worker.log"
    w = WorkerProcess(env=env, log_path=log).start(); w.wait_ready(90)
    t0 = time.monotonic()
    def n_dec(): return len(asyncio.run(read_until(broker.bootstrap, [prefix + "decisions"], lambda r: True, 10, settle_s=0.5)))
    # wait until it drained: decisions count stable
    last = -1
    while True:
        n = n_dec()
        if n == last: break
        last = n; time.sleep(2)
    print(f"{len(events)} events -> {n} decisions in {time.monotonic()-t0:.1f}s", flush=True)
    w.kill(); killed = time.monotonic(); mark = log.stat().st_size
    w2 = WorkerProcess(env=env, log_path=log).start()
    import os, subprocess
    os.makedirs("/tmp/exp", exist_ok=True)
    def cpu_sampler():
        import psutil
        procs = {"worker": psutil.Process(w2.process.pid), "tansu": psutil.Process(broker.process.pid) if hasattr(broker, "process") else None}
        while w2.process.poll() is None and not done.is_set():
            out = {}
            for k, p in procs.items():
                if p is None: continue
                try: ct = p.cpu_times(); out[k] = ct.user + ct.system
                except Exception: pass
            samples.append((time.time(), out)); time.sleep(0.25)
    def dumper():
        while "Restoring state" not in log.read_bytes()[mark:].decode(errors="replace"):
            time.sleep(0.1)
        with open("/tmp/exp/dumps.txt", "w") as f:
            for i in range(8):
                time.sleep(0.7)
                f.write(subprocess.run([".venv/bin/py-spy", "dump", "--nonblocking", "-p", str(w2.process.pid)], capture_output=True, text=True).stdout + "\n=====\n")
    if os.environ.get("DUMP"): threading.Thread(target=dumper, daemon=True).start()
    samples = []; done = threading.Event()
    threading.Thread(target=cpu_sampler, daemon=True).start()
    spy = subprocess.Popen([".venv/bin/py-spy", "record", "-r", "50", "-o", "/tmp/exp/prof.txt", "-f", "raw", "-d", "25", "-p", str(w2.process.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if os.environ.get("SPY") else None
    # new event to trigger a decision after restart
    from tests import events as ev
    topic, body = ev.admission(h.hospital_id, "P-NEW", "E-NEW", sex="F", requested_unit="MEDICINE", event_id="after-restart")
    body["occurred_at"] = (start + timedelta(hours=hours, minutes=1)).isoformat()
    t, k, v = ev.encode(prefix, (topic, body))
    asyncio.run(produce_all(broker.bootstrap, [(t, k, v)]))
    asyncio.run(read_until(broker.bootstrap, [prefix + "decisions"], lambda rs: any(b"after-restart" in r.value for r in rs), 45))
    total = time.monotonic() - killed
    async def groupinfo():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"wardflow-{run_id}", enable_auto_commit=False); await c.start()
        try:
            tps = [TopicPartition(prefix + t, p) for t in ("admissions", "vitals", "ordered") for p in range(4)]
            end = await c.end_offsets(tps)
            out = []
            for tp in tps:
                out.append((tp.topic[-10:], tp.partition, await c.committed(tp), end[tp]))
            return out
        finally: await c.stop()
    info = asyncio.run(groupinfo()); print("committed vs end", info)
    vit = [r for r in asyncio.run(read_until(broker.bootstrap, [prefix + "vitals"], lambda r: False, 4)) if r.partition == 0]
    print("vitals[0] records read:", len(vit), "max offset", max(r.offset for r in vit))
    if total > 40:
        import urllib.request
        mtext = urllib.request.urlopen(f"http://127.0.0.1:{env['WARDFLOW_METRICS_PORT']}/metrics").read().decode()
        print("\n".join(l for l in mtext.splitlines() if l.startswith("wardflow_") and not l.endswith(" 0.0") and "bucket" not in l)[:3000])

        t1 = time.monotonic(); late = asyncio.run(read_until(broker.bootstrap, [prefix + "decisions"], lambda rs: any(b"after-restart" in r.value for r in rs), 20))
        print("late decision after", round(time.monotonic() - killed, 1), any(b"after-restart" in r.value for r in late))
        print("STALL; ordered has after-restart:", any(b"after-restart" in r.value for r in asyncio.run(read_until(broker.bootstrap, [prefix + "ordered"], lambda r: False, 5))))
        print(subprocess.run([".venv/bin/py-spy", "dump", "-p", str(w2.process.pid)], capture_output=True, text=True).stdout[:6000])
        import shutil; shutil.copy(log, "/tmp/exp/stall.log")
    done.set()
    text = log.read_bytes()[mark:].decode(errors="replace")
    def ts(pat):
        m = re.search(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]?.*" + pat, text, re.M)
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None
    marks = {k: ts(p) for k, p in [("settings", "effective settings"), ("worker_start", r"\[\^Worker\]: Starting"),
             ("rejoin", r"\(Re-\)joining group"), ("joined", "Joined group"), ("restoring", "Restoring state"),
             ("done_reading", "Done reading"), ("ready", r"\[\^Worker\]: Ready")]}
    base = marks["settings"]
    print({k: round(v - base, 2) if v else None for k, v in marks.items()}, f"kill->decision {total:.2f}s")
    def cpu_at(t, who):
        best = None
        for ts_, out in samples:
            if ts_ <= t and who in out: best = out[who]
        return best or 0.0
    r0, r1 = marks["restoring"], marks["done_reading"]
    print(f"recovery wall {r1-r0:.2f}s, worker cpu {cpu_at(r1,'worker')-cpu_at(r0,'worker'):.2f}s, tansu cpu {cpu_at(r1,'tansu')-cpu_at(r0,'tansu'):.2f}s")
    w2.stop()
    async def hw():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap); await c.start()
        try:
            topics = [t for t in await c.topics() if run_id in t and "changelog" in t]
            tps = [TopicPartition(t, p) for t in topics for p in range(4)]
            end = await c.end_offsets(tps)
            per = {}
            for tp, o in end.items(): per[tp.topic.rsplit('.',1)[-1]] = per.get(tp.topic.rsplit('.',1)[-1], 0) + o
            return per
        finally: await c.stop()
    async def plain(**kw):
        from aiokafka import AIOKafkaConsumer
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, **kw); await c.start()
        try:
            topics = [t for t in await c.topics() if run_id in t and "changelog" in t]
            from aiokafka.structs import TopicPartition
            tps = [TopicPartition(t, p) for t in topics for p in range(4)]
            c.assign(tps); end = await c.end_offsets(tps); want = sum(end.values())
            t0 = time.monotonic(); n = 0; rounds = 0
            while n < want:
                got = await c.getmany(timeout_ms=1000, max_records=kw.get('max_poll_records') or 100000)
                rounds += 1
                n += sum(len(v) for v in got.values())
                if time.monotonic() - t0 > 60: break
            return n, rounds, round(time.monotonic() - t0, 2)
        finally: await c.stop()
    print("plain aiokafka", asyncio.run(plain()), asyncio.run(plain(fetch_max_wait_ms=50, max_poll_records=500)))
    per = asyncio.run(hw()); print(sum(per.values()), sorted(per.items(), key=lambda x: -x[1]))
    if spy: spy.wait()
finally:
    broker.stop()
