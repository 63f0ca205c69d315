"""The gateway's own settings (`wardflow hl7`): `WARDFLOW_*` env vars, overridable on the CLI.

The gateway is its own process with its own settings; the broker, topic and hospital fields
have the same names (and env vars) as the worker's, so one environment configures both.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, load_hospitals
from streams.exceptions import StreamsError


class GatewaySettingsError(StreamsError):
    """Settings the gateway cannot use; the message names the option."""


class GatewaySettings(BaseSettings):
    """Everything the HL7 v2 listener and the FHIR endpoint need."""

    model_config = SettingsConfigDict(env_prefix="WARDFLOW_", frozen=True, extra="forbid")

    # Broker and topics: same names and env vars as the worker's settings
    broker_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), e.g. kafka://host:9092")
    broker_username: str | None = Field(None, description="SASL username (SASL_PLAINTEXT when set)")
    broker_password: SecretStr | None = Field(None, description="SASL password")
    topic_prefix: str = Field("wardflow.", description="Prefix in front of every contract topic name")
    hospital_config: Path = Field(DEMO_HOSPITAL_PATH, description="YAML file describing the hospital(s), with an `hl7:` section")
    hospital_id: str | None = Field(None, description="The hospital this gateway feeds (needed when the file holds several)")

    # HL7 v2 over MLLP
    hl7_host: str = Field("0.0.0.0", description="Address the MLLP listener binds")
    hl7_port: int = Field(2575, ge=0, le=65535, description="MLLP port (2575 is HL7's registered port; 0: a free one)")
    hl7_tls_cert: Path | None = Field(None, description="PEM certificate chain: serve MLLP over TLS when set")
    hl7_tls_key: Path | None = Field(None, description="PEM private key of hl7_tls_cert")
    hl7_tls_client_ca: Path | None = Field(None, description="PEM CA bundle: require client certificates signed by it")
    hl7_max_message_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Largest HL7 message accepted in one frame")
    hl7_idle_timeout_s: float = Field(300.0, gt=0, description="Close a connection silent this long (a partial frame is dead-lettered)")
    hl7_max_connections: int = Field(64, ge=1, description="Connections served at once; more wait in the accept queue")
    hl7_processes: int = Field(1, ge=1, le=64, description="MLLP listener processes sharing the port (SO_REUSEPORT); "
                                                           "process i > 0 serves metrics on metrics_port + i")
    publish_timeout_s: float = Field(10.0, gt=0, description="Longest wait for the broker's acknowledgement before a NAK AE")
    dedupe_cache_size: int = Field(100_000, ge=0, description="Recent control ids remembered to answer a resend without republishing")

    # FHIR R4
    fhir_port: int = Field(8080, ge=0, le=65535, description="FHIR R4 HTTP port (0 disables the FHIR endpoint)")
    fhir_host: str = Field("0.0.0.0", description="Address the FHIR endpoint binds")
    fhir_worker_url: str = Field("http://127.0.0.1:6066", description="The worker's read-only views (its web_port), for FHIR reads of beds")

    metrics_port: int = Field(9109, ge=0, le=65535, description="Prometheus /metrics port of the gateway (0 disables)")
    log_level: str = Field("INFO", description="Python log level")

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.hl7_tls_cert is None) != (self.hl7_tls_key is None):
            raise ValueError("hl7_tls_cert and hl7_tls_key go together: set both or neither")
        if self.hl7_tls_client_ca is not None and self.hl7_tls_cert is None:
            raise ValueError("hl7_tls_client_ca needs hl7_tls_cert and hl7_tls_key")
        if self.hl7_processes > 1 and self.hl7_port == 0:
            raise ValueError("hl7_processes > 1 needs a fixed hl7_port (the processes share it)")
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def bootstrap(self) -> str:
        return ",".join(u.strip().split("://", 1)[-1] for u in self.broker_url.split(",") if u.strip())

    def producer_config(self) -> dict[str, Any]:
        if not self.broker_username:
            return {}
        password = self.broker_password.get_secret_value() if self.broker_password else ""
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": self.broker_username, "sasl_plain_password": password}

    def load_hospital(self) -> Hospital:
        """The one hospital this gateway feeds, with its `hl7:` table; a clear error otherwise."""
        hospitals = load_hospitals(self.hospital_config)
        if self.hospital_id is None:
            if len(hospitals) != 1:
                raise GatewaySettingsError(f"{self.hospital_config} holds {len(hospitals)} hospitals "
                                           f"({', '.join(sorted(hospitals))}): choose one with --hospital-id")
            hospital = next(iter(hospitals.values()))
        elif self.hospital_id not in hospitals:
            raise GatewaySettingsError(f"--hospital-id {self.hospital_id!r} is not in {self.hospital_config} "
                                       f"({', '.join(sorted(hospitals))})")
        else:
            hospital = hospitals[self.hospital_id]
        if hospital.hl7 is None:
            raise GatewaySettingsError(f"hospital {hospital.hospital_id} in {self.hospital_config} has no `hl7:` "
                                       "section (the location table and time zone); see docs/hl7.md")
        return hospital

    def masked(self) -> dict[str, Any]:
        return {k: ("**********" if isinstance(v, SecretStr) else (str(v) if isinstance(v, Path) else v)) for k, v in self}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from WARDFLOW_<NAME>)")
    for name, field in GatewaySettings.model_fields.items():
        shown = "********" if "password" in name else field.default
        group.add_argument(_option(name), dest=f"setting_{name}", default=argparse.SUPPRESS, metavar=name.upper(),
                           help=f"{field.description} (default: {shown})")


def gateway_settings_from_args(args: argparse.Namespace, **overrides: Any) -> GatewaySettings:
    values = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    values.update(overrides)
    try:
        return GatewaySettings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{_option(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}" for e in exc.errors())
        raise GatewaySettingsError(f"invalid settings: {problems}") from None
