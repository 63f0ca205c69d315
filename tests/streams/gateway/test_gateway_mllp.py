"""The MLLP listener (streams.gateway.mllp): framing faults, ACK after broker acknowledgement, dead letters,
idempotent resends, several connections and TLS, on the real embedded broker."""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from allocator.hospital import load_hospitals
from streams.contract.models import INPUT_MODELS
from streams.devtools.broker import create_topics
from streams.devtools.kafka_io import read_until
from streams.gateway.mllp import CR, FS, VT, FrameSplitter, GatewayMetrics, frame
from streams.gateway.run import Gateway
from streams.gateway.settings import GatewaySettings

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hl7_hospital.yaml"
SAMPLES = Path("/work/shared/hl7-samples")
if not SAMPLES.is_dir():
    SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "hl7-samples"


# --------------------------------------------------------------------------- framing, pure


def test_frames_split_across_reads_byte_by_byte():
    s = FrameSplitter(1024)
    data = frame(b"MSH|one") + frame(b"MSH|two")
    out = [f for b in data for f in s.feed(bytes([b]))]
    assert [(f.data, f.fault) for f in out] == [(b"MSH|one", None), (b"MSH|two", None)]
    assert s.close() is None


def test_missing_end_block_is_reported_and_the_next_frame_survives():
    s = FrameSplitter(1024)
    out = s.feed(bytes([VT]) + b"MSH|broken" + frame(b"MSH|good"))
    assert [(f.data, f.fault) for f in out] == [(b"MSH|broken", "missing_end_block"), (b"MSH|good", None)]


def test_too_large_is_reported_once_and_the_stream_resynchronises():
    s = FrameSplitter(100)
    big = frame(b"M" * 250)
    out = s.feed(big[:120]) + s.feed(big[120:]) + s.feed(frame(b"MSH|after"))
    assert [(len(f.data), f.fault) for f in out] == [(100, "too_large"), (9, None)]


def test_partial_frame_at_close_and_junk_outside_frames_are_kept():
    s = FrameSplitter(1024)
    assert [f.fault for f in s.feed(b"hello" + frame(b"MSH|x") + bytes([VT]) + b"MSH|half")] == ["outside_frame", None]
    left = s.close()
    assert (left.data, left.fault) == (b"MSH|half", "incomplete_frame")


def test_end_block_without_carriage_return_still_ends_the_frame():
    s = FrameSplitter(1024)
    out = s.feed(bytes([VT]) + b"MSH|a" + bytes([FS]) + bytes([VT]) + b"MSH|b" + bytes([FS, CR]))
    assert [f.data for f in out] == [b"MSH|a", b"MSH|b"]


# --------------------------------------------------------------------------- on the broker


def run(coro_fn: Callable[..., Awaitable], *args):
    return asyncio.run(asyncio.wait_for(coro_fn(*args), timeout=90))


async def start_gateway(broker, run_id: str, **extra) -> tuple[Gateway, int]:
    values = {"hl7_host": "127.0.0.1", "hl7_port": 0, "fhir_port": 0, "metrics_port": 0, **extra}
    settings = GatewaySettings(broker_url=broker.url, topic_prefix=f"{run_id}.", hospital_config=FIXTURE, **values)
    names = [settings.topic(n) for n in INPUT_MODELS] + [settings.topic("dead-letters")]
    await create_topics(broker.bootstrap, names, partitions=2)
    gateway = Gateway(settings, load_hospitals(FIXTURE)["test-hosp"], GatewayMetrics())
    ports = await gateway.start()
    return gateway, ports["hl7"]


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, ssl_ctx: ssl.SSLContext | None = None) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port, ssl=ssl_ctx))

    async def ack(self) -> list[list[str]]:
        data = await asyncio.wait_for(self.reader.readuntil(bytes([FS, CR])), timeout=20)
        assert data[0] == VT
        return [s.split("|") for s in data[1:-2].decode().strip("\r").split("\r")]

    async def send(self, message: bytes) -> list[list[str]]:
        self.writer.write(frame(message))
        await self.writer.drain()
        return await self.ack()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def msa(ack: list[list[str]]) -> tuple[str, str]:
    seg = next(s for s in ack if s[0] == "MSA")
    return seg[1], seg[2]


def adt(ctl: str, trigger: str = "A02", loc: str = "MED^MED-B1^MED-B1-A", extra: str = "") -> bytes:
    return ("MSH|^~\\&|EPIC|WARDS|WARDFLOW|TEST|20261124081500+0000||ADT^" + trigger + "|" + ctl + "|P|2.5\r"
            "EVN|" + trigger + "|20261124081500+0000\r"
            "PID|1||P-" + ctl + "^^^H^MR||DOE^JANE||19480203|F\r"
            "PV1|1|I|" + loc + "||||||||||||||||V-" + ctl + extra).encode()


async def records(broker, run_id: str, topics: list[str], n: int, settle_s: float = 0.5):
    return await read_until(broker.bootstrap, [f"{run_id}.{t}" for t in topics], lambda rs: len(rs) >= n,
                            timeout_s=20, settle_s=settle_s)


@pytest.mark.broker
def test_aa_after_the_broker_has_the_event_and_a_resend_is_a_no_op(broker, run_id):
    async def scenario():
        gw, port = await start_gateway(broker, run_id)
        try:
            c = await Client.connect(port)
            first = await c.send(adt("C-1"))
            again = await c.send(adt("C-1"))
            assert msa(first) == ("AA", "C-1") and msa(again) == ("AA", "C-1")
            got = await records(broker, run_id, ["transfers"], 1, settle_s=1.0)
            assert len(got) == 1  # the resend was answered without publishing again
            event = orjson.loads(got[0].value)
            assert event["to_bed_id"] == "MED-B1-A" and event["event_id"].endswith("C-1:1")
            assert got[0].key == b"test-hosp"
            await c.close()
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
def test_unmappable_messages_are_dead_lettered_with_raw_bytes_and_nakd(broker, run_id):
    raw_latin1 = adt("C-2", loc="NOWHERE^1^1").replace(b"DOE^JANE", b"M\xdcLLER^J")  # not UTF-8

    async def scenario():
        gw, port = await start_gateway(broker, run_id)
        try:
            c = await Client.connect(port)
            nak = await c.send(raw_latin1)
            assert nak[1][1] == "AE" or nak[1][1] == "AR"
            broken = await c.send((SAMPLES / "hapi_A01_2.hl7").read_bytes())
            assert msa(broken)[0] == "AR"
            err = next(s for s in broken if s[0] == "ERR")
            assert err[2].startswith("MSH^1^2") and err[3].startswith("102^")
            got = await records(broker, run_id, ["dead-letters"], 2)
            letters = [orjson.loads(r.value) for r in got]
            assert [d["code"] for d in letters] == ["bad_charset", "bad_encoding_characters"]
            assert base64.b64decode(letters[0]["value"]) == raw_latin1 and letters[0]["value_encoding"] == "base64"
            assert letters[1]["value"].encode() == (SAMPLES / "hapi_A01_2.hl7").read_bytes()
            assert letters[0]["field"] == "MSH-18" and letters[0]["topic"] == "hl7-mllp"
            await c.close()
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
def test_framing_faults_never_lose_duplicate_or_stop_the_listener(broker, run_id):
    big_note = "NTE|1||" + "x" * (1024 * 1024)

    async def scenario():
        gw, port = await start_gateway(broker, run_id)
        try:
            # 1. a slow client: one frame trickled in small pieces
            slow = await Client.connect(port)
            data = frame(adt("F-1"))
            for i in range(0, len(data), 7):
                slow.writer.write(data[i:i + 7])
                await slow.writer.drain()
                await asyncio.sleep(0.002)
            assert msa(await slow.ack()) == ("AA", "F-1")
            # 2. a frame without its end block, then a good one on the same connection
            slow.writer.write(bytes([VT]) + adt("F-2") + frame(adt("F-3")))
            await slow.writer.drain()
            first, second = await slow.ack(), await slow.ack()
            assert msa(first) == ("AR", "F-2") and msa(second) == ("AA", "F-3")
            # 3. a 1 MB message (a long note) is accepted
            assert msa(await slow.send(adt("F-4", extra="\r" + big_note))) == ("AA", "F-4")
            await slow.close()
            # 4. a client that disconnects mid-frame: its bytes are kept, the listener goes on
            gone = await Client.connect(port)
            gone.writer.write(bytes([VT]) + adt("F-5")[:60])
            await gone.writer.drain()
            await gone.close()
            after = await Client.connect(port)
            assert msa(await after.send(adt("F-6"))) == ("AA", "F-6")
            await after.close()
            moved = await records(broker, run_id, ["transfers", "dead-letters"], 6)
            by_topic: dict[str, list[dict]] = {}
            for r in moved:
                by_topic.setdefault(r.topic.split(".", 1)[1], []).append(orjson.loads(r.value))
            ids = sorted(e["event_id"].split(":")[-2] for e in by_topic["transfers"])
            assert ids == ["F-1", "F-3", "F-4", "F-6"]  # each once; F-2 NAKed (the sender resends), F-5 never ended
            assert sorted(d["code"] for d in by_topic["dead-letters"]) == ["incomplete_frame", "missing_end_block"]
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
def test_an_oversized_frame_is_kept_and_nakd_and_the_connection_goes_on(broker, run_id):
    async def scenario():
        gw, port = await start_gateway(broker, run_id, hl7_max_message_bytes=64 * 1024)
        try:
            c = await Client.connect(port)
            nak = await c.send(adt("O-1", extra="\rNTE|1||" + "y" * 100_000))
            assert msa(nak) == ("AR", "O-1")
            assert msa(await c.send(adt("O-2"))) == ("AA", "O-2")
            await c.close()
            got = await records(broker, run_id, ["dead-letters"], 1)
            (letter,) = [orjson.loads(r.value) for r in got]
            assert letter["code"] == "too_large" and len(letter["value"]) == 64 * 1024
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
def test_several_connections_at_once_each_message_once(broker, run_id):
    async def client(port: int, n: int) -> list[str]:
        c = await Client.connect(port)
        codes = [msa(await c.send(adt(f"K{n}-{i}")))[0] for i in range(15)]
        await c.close()
        return codes

    async def scenario():
        gw, port = await start_gateway(broker, run_id)
        try:
            results = await asyncio.gather(*(client(port, n) for n in range(8)))
            assert all(code == "AA" for codes in results for code in codes)
            got = await records(broker, run_id, ["transfers"], 120)
            ids = [orjson.loads(r.value)["event_id"] for r in got]
            assert len(ids) == 120 and len(set(ids)) == 120
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls(broker, run_id, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)

    async def scenario():
        gw, port = await start_gateway(broker, run_id, hl7_tls_cert=cert, hl7_tls_key=key)
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            c = await Client.connect(port, ctx)
            assert msa(await c.send(adt("T-1"))) == ("AA", "T-1")
            await c.close()
            plain = await Client.connect(port)  # a plain-TCP client gets no answer, and the listener lives on
            plain.writer.write(frame(adt("T-2")))
            await plain.writer.drain()
            assert await asyncio.wait_for(plain.reader.read(), timeout=10) == b""
            c = await Client.connect(port, ctx)
            assert msa(await c.send(adt("T-3"))) == ("AA", "T-3")
            await c.close()
        finally:
            await gw.stop()

    run(scenario)


@pytest.mark.broker
def test_a_broker_that_stops_answering_gets_ae_not_aa(run_id, tmp_path):
    """Its own broker, stopped mid-session: the next message is AE 207 (resend), never AA."""
    from streams.devtools.broker import EmbeddedBroker

    own = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()

    async def scenario():
        gw, port = await start_gateway(own, run_id, publish_timeout_s=2.0)
        try:
            c = await Client.connect(port)
            assert msa(await c.send(adt("D-1"))) == ("AA", "D-1")
            await asyncio.to_thread(own.stop)
            nak = await c.send(adt("D-2"))
            err = next(s for s in nak if s[0] == "ERR")
            assert msa(nak) == ("AE", "D-2") and err[3].startswith("207^")
            await c.close()
        finally:
            await gw.stop()

    try:
        run(scenario)
    finally:
        own.stop()


@pytest.mark.broker
def test_broker_down_gives_ae_and_nothing_is_claimed(run_id, tmp_path):
    """No broker answering: the gateway cannot even start (a clear error), so no message is ever AA'd unstored."""
    from streams.devtools.broker import free_port
    from streams.exceptions import BrokerError

    async def scenario():
        settings = GatewaySettings(broker_url=f"kafka://127.0.0.1:{free_port()}", hospital_config=FIXTURE,
                                   hl7_port=0, fhir_port=0, metrics_port=0)
        gw = Gateway(settings, load_hospitals(FIXTURE)["test-hosp"], GatewayMetrics())
        with pytest.raises(BrokerError):
            await gw.start()

    run(scenario)


@pytest.mark.broker
@pytest.mark.slow
def test_wardflow_hl7_command_with_two_listener_processes(broker, run_id):
    """The CLI as an integration engineer runs it: two processes share the port; every message once."""
    import os
    import sys

    from streams.devtools.broker import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "WARDFLOW_BROKER_URL": broker.url,
           "WARDFLOW_TOPIC_PREFIX": f"{run_id}.", "WARDFLOW_HOSPITAL_CONFIG": str(FIXTURE), "WARDFLOW_FHIR_PORT": "0",
           "WARDFLOW_METRICS_PORT": "0", "WARDFLOW_HL7_HOST": "127.0.0.1", "WARDFLOW_HL7_PORT": str(port),
           "WARDFLOW_HL7_PROCESSES": "2"}
    run(lambda: create_topics(broker.bootstrap, [f"{run_id}.{n}" for n in INPUT_MODELS], partitions=2))
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "hl7"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert "MLLP on 127.0.0.1:" in proc.stdout.readline()

        async def scenario():
            async def client(n: int) -> list[str]:
                for _ in range(100):  # the second process may still be starting: retry the connect
                    try:
                        c = await Client.connect(port)
                        break
                    except OSError:
                        await asyncio.sleep(0.1)
                codes = [msa(await c.send(adt(f"Q{n}-{i}")))[0] for i in range(5)]
                await c.close()
                return codes

            results = await asyncio.gather(*(client(n) for n in range(6)))
            assert all(code == "AA" for codes in results for code in codes)
            got = await records(broker, run_id, ["transfers"], 30)
            assert len({orjson.loads(r.value)["event_id"] for r in got}) == len(got) == 30

        run(scenario)
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
