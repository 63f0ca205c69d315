"""TLS to the broker: the settings, the options every client gets, the plaintext warning, and a worker
placing a patient through a TLS-only broker that requires a client certificate (issue 11, item 8)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.devtools.kafka_io import produce_all, read_until
from streams.settings import SettingsError, WardflowSettings, settings_from_args
from streams.worker.kafka_security import client_options, faust_credentials, security_protocol, warn_if_plaintext
from tests import events as ev
from tests.tls_broker import make_pki, tls_broker

HID = "test-hosp"


def test_security_protocol_follows_the_settings(tmp_path):
    pki = make_pki(tmp_path / "pki")
    assert security_protocol(WardflowSettings()) == "PLAINTEXT"
    assert security_protocol(WardflowSettings(broker_username="u", broker_password="p")) == "SASL_PLAINTEXT"
    tls = WardflowSettings(broker_ca_file=pki.ca)
    assert security_protocol(tls) == "SSL" and isinstance(client_options(tls)["ssl_context"], ssl.SSLContext)
    sasl_tls = WardflowSettings(broker_ca_file=pki.ca, broker_username="u", broker_password="p",
                                broker_sasl_mechanism="SCRAM-SHA-512")
    options = client_options(sasl_tls)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "p"
    assert faust_credentials(sasl_tls).protocol.value == "SASL_SSL"
    assert faust_credentials(tls).protocol.value == "SSL" and faust_credentials(WardflowSettings()) is None
    mutual = WardflowSettings(broker_ca_file=pki.ca, broker_cert_file=pki.client_cert, broker_key_file=pki.client_key)
    context = client_options(mutual)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "**********" in str(sasl_tls.masked()["broker_password"])


def test_a_certificate_needs_its_key_and_the_sizes_must_fit(tmp_path):
    import argparse

    with pytest.raises(SettingsError, match="broker_cert_file and broker_key_file"):
        settings_from_args(argparse.Namespace(), broker_cert_file=tmp_path / "c.pem")
    with pytest.raises(SettingsError, match="max_message_bytes"):
        settings_from_args(argparse.Namespace(), max_message_bytes=1_048_576)


def test_plaintext_to_a_remote_broker_warns_at_start(caplog):
    caplog.set_level(logging.WARNING, logger="streams.worker.kafka_security")
    assert not warn_if_plaintext(WardflowSettings(broker_url="kafka://127.0.0.1:9092,kafka://localhost:9093"))
    assert warn_if_plaintext(WardflowSettings(broker_url="kafka://kafka:9092", broker_username="u",
                                              broker_password="secret"))
    assert "PLAINTEXT" in caplog.text and "kafka" in caplog.text and "secret" not in caplog.text
    assert not warn_if_plaintext(WardflowSettings(broker_url="kafka://kafka:9092", broker_tls=True))


@pytest.mark.broker
@pytest.mark.timeout(180)
def test_worker_places_a_patient_through_a_tls_only_broker(run_id, start_worker, tmp_path):
    pki = make_pki(tmp_path / "pki")
    prefix = f"{run_id}."
    settings = WardflowSettings(broker_ca_file=pki.ca, broker_cert_file=pki.client_cert,
                                broker_key_file=pki.client_key)
    client = client_options(settings)
    with tls_broker(pki, tmp_path / "tansu-tls.log", client) as bootstrap:
        worker = start_worker(broker_url=f"kafka://{bootstrap}", broker_ca_file=pki.ca,
                              broker_cert_file=pki.client_cert, broker_key_file=pki.client_key)
        msg = ev.encode(prefix, ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="tls-1"))
        asyncio.run(produce_all(bootstrap, [msg], **client))
        records = asyncio.run(read_until(bootstrap, [f"{prefix}decisions"], lambda rs: len(rs) >= 1, timeout_s=60,
                                         **client))
        assert [orjson.loads(r.value)["caused_by"] for r in records] == ["tls-1"]
        assert worker.running and worker.errors() == []
        assert "PLAINTEXT" not in worker.log_text()

        # The same address refuses plaintext, a client without a certificate, and one not trusting the CA.
        async def refused(**options) -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000, **options)
            try:
                await asyncio.wait_for(admin.start(), 8)
                await asyncio.wait_for(admin.list_topics(), 8)
                return False
            except BaseException:  # noqa: BLE001 - any failure to talk is the point
                return True
            finally:
                with contextlib.suppress(BaseException):  # closing a refused client may fail too
                    await admin.close()

        no_cert = ssl.create_default_context(cafile=str(pki.ca))
        assert asyncio.run(refused())
        assert asyncio.run(refused(security_protocol="SSL", ssl_context=no_cert))
        assert asyncio.run(refused(security_protocol="SSL", ssl_context=ssl.create_default_context()))


def test_compose_speaks_tls_to_the_broker_and_guards_the_phi_topics():
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[3] / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["CLIENT"] == protocols["EXTERNAL"] == "SASL_SSL"
    assert all(p == "SASL_SSL" or f"{name}://127.0.0.1:" in kafka["KAFKA_LISTENERS"]
               for name, p in protocols.items()), "plaintext listeners are loopback only"
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false" and "Authorizer" in kafka[
        "KAFKA_AUTHORIZER_CLASS_NAME"]
    worker = compose["services"]["worker"]
    assert worker["environment"]["WARDFLOW_BROKER_CA_FILE"] == "/run/secrets/broker_ca"
    assert "broker_ca" in worker["secrets"] and "broker_tls" in compose["services"]["kafka"]["secrets"]
    script = "\n".join(compose["services"]["topics"]["command"])
    assert "security.protocol=SASL_SSL" in script
    for topic in ("ordered|", "journal-changelog|", "texts-changelog|"):
        assert topic in script
    assert "kafka-acls.sh" in script
