"""HL7 v2 gateway benchmark on the embedded broker: MLLP -> broker-acknowledged events -> ACK.

One run, one embedded (Tansu, in-memory) broker, the gateway (`wardflow hl7`) as its own process
on the demo hospital, a load generator (this process) with several MLLP connections:
  ceiling    baseline in the same run: plain aiokafka, the same number of contract events of the
             same size, each awaited until the broker acknowledges it, with as many in flight as
             the MLLP phase has connections (what a gateway that did nothing else could reach)
  sustained  every connection sends its next message as soon as the previous ACK is back;
             a mix of ADT (A02 transfers, A20 bed status) and ORU^R01 LOINC vitals; messages/s
             with every ACK checked to be AA, and the ratio to the ceiling
  latency    paced sends at half the sustained rate, spread over the connections; frame sent ->
             ACK read, p50 / p99 (target p99 < 50 ms)
Targets: >= 2,000 messages/s sustained on 2 cores; p99 ACK < 50 ms at half that rate.

ONE JSON object on stdout, progress on stderr.

    python bench/hl7.py [--messages 20000] [--connections 16] [--processes 1] [--latency-s 20] [--out reports/hl7.json]
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named hl7.py, like the python-hl7 package: keep bench/ off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from aiokafka import AIOKafkaProducer  # noqa: E402 - after bench/ is taken off sys.path

from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals  # noqa: E402 - after bench/ is taken off sys.path
from streams.contract.models import INPUT_MODELS  # noqa: E402 - after bench/ is taken off sys.path
from streams.devtools.broker import EmbeddedBroker, create_topics, free_port  # noqa: E402 - after bench/ is taken off sys.path
from streams.gateway.hl7v2 import map_message  # noqa: E402 - after bench/ is taken off sys.path
from streams.gateway.mllp import CR, FS, frame  # noqa: E402 - after bench/ is taken off sys.path
from streams.gateway.publisher import encode_event  # noqa: E402 - after bench/ is taken off sys.path

HOSPITAL = "st-elsewhere"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def message(i: int, run: str) -> bytes:
    """The i-th message of the mix: 40% A02, 40% ORU^R01 vitals, 20% A20."""
    at = f"20261124{8 + (i // 3600) % 12:02d}{(i // 60) % 60:02d}{i % 60:02d}+0000"
    ctl = f"{run}-{i}"
    head = f"MSH|^~\\&|EPIC|WARDS|WARDFLOW|STE|{at}||"
    pid = f"PID|1||P{i % 500}^^^STE^MR||DOE^ALEX||19480203|F"
    pv1 = f"PV1|1|I|W5^W5-B1^W5-B1-{'ABCDEF'[i % 6]}||||||||||||||||V{i % 500}"
    kind = i % 5
    if kind in (0, 1):
        segs = [head + f"ADT^A02^ADT_A02|{ctl}|P|2.5.1", f"EVN|A02|{at}", pid, pv1]
    elif kind in (2, 3):
        segs = [head + f"ORU^R01^ORU_R01|{ctl}|P|2.5.1", pid, pv1, f"OBR|1|||vitals|||{at}",
                f"OBX|1|NM|9279-1^Resp rate^LN||{14 + i % 10}|/min^^UCUM|||||F|||{at}",
                "OBX|2|NM|59408-5^SpO2^LN||96|%^^UCUM|||||F", "OBX|3|NM|8480-6^Systolic BP^LN||128|mm[Hg]^^UCUM|||||F",
                "OBX|4|NM|8867-4^Heart rate^LN||84|/min^^UCUM|||||F", "OBX|5|NM|8310-5^Temp^LN||37.2|Cel^^UCUM|||||F"]
    else:
        segs = [head + f"ADT^A20^ADT_A20|{ctl}|P|2.5.1", f"EVN|A20|{at}",
                f"NPU|AMU^AMU-A^AMU-A-{'ABCDEF'[i % 6]}|{'HU'[i % 2]}"]
    return "\r".join(segs).encode()


async def read_ack(reader: asyncio.StreamReader) -> bytes:
    data = await reader.readuntil(bytes([FS, CR]))
    return data[1:-2]


def ack_code(ack: bytes) -> str:
    return ack.split(b"\rMSA|", 1)[1][:2].decode()


async def ceiling(bootstrap: str, prefix: str, payloads: list[tuple[str, bytes]], in_flight: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    queue = list(payloads)

    async def worker() -> None:
        while queue:
            topic, value = queue.pop()
            await (await producer.send(prefix + topic, value=value, key=HOSPITAL.encode()))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def sustained(port: int, messages: list[bytes], connections: int) -> tuple[float, dict[str, int]]:
    codes: dict[str, int] = {}
    per = [messages[i::connections] for i in range(connections)]

    async def client(batch: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        for m in batch:
            writer.write(frame(m))
            await writer.drain()
            code = ack_code(await read_ack(reader))
            codes[code] = codes.get(code, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(b) for b in per))
    return len(messages) / (time.perf_counter() - started), codes


async def paced(port: int, messages: list[bytes], connections: int, rate: float) -> tuple[list[float], dict[str, int]]:
    """Open-loop: message k is due at k / rate; each connection sends its share in order, waiting for each ACK."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    start = time.perf_counter() + 0.2

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        for k in range(offset, len(messages), connections):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            writer.write(frame(messages[k]))
            await writer.drain()
            code = ack_code(await read_ack(reader))
            latencies.append(time.perf_counter() - sent)
            codes[code] = codes.get(code, 0) + 1
        writer.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    return latencies, codes


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> dict:
    run = uuid.uuid4().hex[:8]
    load_start = os.getloadavg()[0]
    hospital = load_hospitals(DEMO_HOSPITAL_PATH)[HOSPITAL]
    total = args.messages
    msgs = [message(i, run) for i in range(total)]
    # The same events the gateway will publish, for the baseline (mapping cost excluded there).
    payloads = [(o.topic, encode_event(o)) for m in msgs for o in map_message(m, hospital).events]
    with tempfile.TemporaryDirectory() as tmp:
        broker = await asyncio.to_thread(EmbeddedBroker(log_path=Path(tmp) / "tansu.log").start)
        gateway = None
        try:
            prefix = f"bench{run}."
            names = [prefix + n for n in INPUT_MODELS] + [prefix + "dead-letters"]
            await create_topics(broker.bootstrap, names, partitions=4)
            log(f"ceiling: {len(payloads)} events, {args.connections} in flight")
            ceiling_rate = await ceiling(broker.bootstrap, f"ceil{run}.", payloads, args.connections)
            log(f"  {ceiling_rate:.0f} events/s")
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(ROOT), "WARDFLOW_BROKER_URL": broker.url,
                   "WARDFLOW_TOPIC_PREFIX": prefix, "WARDFLOW_HL7_PORT": str(port), "WARDFLOW_HL7_HOST": "127.0.0.1",
                   "WARDFLOW_FHIR_PORT": "0", "WARDFLOW_METRICS_PORT": "0", "WARDFLOW_LOG_LEVEL": "WARNING",
                   "WARDFLOW_HL7_PROCESSES": str(args.processes)}
            gateway = subprocess.Popen([sys.executable, "-m", "streams.cli", "hl7"], env=env,
                                       stdout=subprocess.PIPE, stderr=open(Path(tmp) / "gateway.log", "w"),  # noqa: SIM115 - the child owns it
                                       text=True)
            if gateway.stdout is None:
                raise SystemExit("gateway started without its stdout pipe")
            line = gateway.stdout.readline()
            if "MLLP on" not in line:
                raise SystemExit(f"gateway did not start: {line!r} {(Path(tmp) / 'gateway.log').read_text()[-2000:]}")
            warm = [message(total + i, run) for i in range(500)]
            await sustained(port, warm, args.connections)
            log(f"sustained: {total} messages over {args.connections} connections")
            rate, codes = await sustained(port, msgs, args.connections)
            log(f"  {rate:.0f} messages/s, acks {codes}")
            target_rate = rate / 2
            n_lat = int(target_rate * args.latency_s)
            lat_msgs = [message(total * 2 + i, run) for i in range(n_lat)]
            log(f"latency: {n_lat} messages paced at {target_rate:.0f}/s")
            latencies, lat_codes = await paced(port, lat_msgs, args.connections, target_rate)
        finally:
            if gateway is not None:
                gateway.terminate()
                try:
                    gateway.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    gateway.kill()
            broker.stop()
    return {
        "benchmark": "hl7", "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "hospital": HOSPITAL, "connections": args.connections, "gateway_processes": args.processes,
        # The machine may be shared: the 1-minute load average says how busy it was around the run.
        "loadavg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "mix": {"ADT^A02": 0.4, "ORU^R01 (5 LOINC vitals)": 0.4, "ADT^A20": 0.2},
        "ceiling_events_per_s": round(ceiling_rate, 1),
        "sustained": {"messages": total, "messages_per_s": round(rate, 1), "acks": codes,
                      "events_per_message": round(len(payloads) / total, 2),
                      "ratio_to_ceiling": round(rate * len(payloads) / total / ceiling_rate, 3),
                      "target_messages_per_s": 2000, "met": rate >= 2000},
        "latency": {"rate_per_s": round(target_rate, 1), "messages": len(latencies), "acks": lat_codes,
                    "p50_ms": round(pct(latencies, 0.5) * 1000, 2), "p99_ms": round(pct(latencies, 0.99) * 1000, 2),
                    "mean_ms": round(statistics.fmean(latencies) * 1000, 2), "target_p99_ms": 50,
                    "met": pct(latencies, 0.99) < 0.05},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000, help="messages in the sustained phase (default 20000)")
    parser.add_argument("--connections", type=int, default=16, help="MLLP connections (default 16)")
    parser.add_argument("--processes", type=int, default=1, help="gateway listener processes (--hl7-processes, default 1)")
    parser.add_argument("--latency-s", type=float, default=20.0, help="length of the paced phase (default 20 s)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
