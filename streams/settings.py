"""WardFlow's one typed settings object: read from `WARDFLOW_*` env vars, overridable on the CLI.

Why one object: every tunable (broker, topics, batch sizes, timeouts, ports) lives here, so
agents carry no magic constants and the effective configuration can be logged once, masked.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from allocator.hospital import DEMO_HOSPITAL_PATH
from inference.settings import InferenceSettings
from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from streams.state.clinical import ClinicalConfig
    from streams.state.windowed import WindowConfig

log = logging.getLogger(__name__)

OUTPUT_HEADROOM_BYTES = 16_384  # record framing and our headers on a forwarded message (a few hundred bytes)


class SettingsError(StreamsError):
    """Settings that cannot be used; the message names the setting and the problem."""


class WardflowSettings(InferenceSettings, BaseSettings):
    """Everything a worker, the simulator and the demo need to know, with sane defaults.

    The model's serving settings (model_path, inference_batch_size, inference_threads,
    uncertainty_threshold, triage_policy_path) are the inference package's own
    (`inference.settings.InferenceSettings`), composed here."""

    model_config = SettingsConfigDict(env_prefix="WARDFLOW_", frozen=True, extra="forbid")

    # Broker
    broker_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), e.g. kafka://host:9092")
    broker_username: str | None = Field(None, description="SASL username (SASL_PLAINTEXT when set)")
    broker_password: SecretStr | None = Field(None, description="SASL password")
    topic_prefix: str = Field("wardflow.", description="Prefix in front of every contract topic name")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the input topics (scale-out unit)")
    topic_replicas: int = Field(1, ge=1, description="Replication factor of created topics")
    app_id: str = Field("wardflow", description="Faust app id: consumer group and changelog topic prefix")
    broker_session_timeout_s: float = Field(6.0, gt=0, description="Consumer session timeout: how long a worker that died "
                                            "without leaving (kill -9, a lost host) keeps its partitions")
    broker_rebalance_timeout_s: float = Field(4.0, gt=0, description="Consumer rebalance timeout: how long the group waits "
                                              "for members to rejoin (a join waits about half of it)")
    broker_heartbeat_interval_s: float = Field(1.0, gt=0, description="Consumer heartbeat interval (well under a "
                                               "third of the session timeout)")
    broker_group_instance_id: str | None = Field(None, description="Static group membership: a stable id unique to "
                                                 "this worker (its container or pod name). A worker restarted under "
                                                 "the same id takes its partitions back without a rebalance, but a "
                                                 "static member does not leave on SIGTERM (a planned stop waits for "
                                                 "the session timeout); unset: dynamic membership")
    broker_replace_previous_member: bool = Field(True, description="With dynamic membership: at start, remove from "
                                                 "the group the member this worker's data directory last ran as "
                                                 "(killed without leaving), so a restart takes one group join instead "
                                                 "of two (the second when the dead member's session expires)")
    broker_fetch_max_wait_ms: int = Field(50, ge=1, le=5000, description="Longest a consumer fetch waits for data (latency bound per hop)")
    sequencer_max_wait_ms: float = Field(200.0, ge=0, description="Longest wait for a silent input topic before releasing events in time order")
    commit_interval_s: float = Field(1.0, gt=0, description="Offset commit interval")
    checkpoint_max_events: int = Field(500, ge=1, description="Most events the state agent applies before making "
                                       "them durable in one checkpoint (one broker round trip); a checkpoint "
                                       "is taken sooner whenever the consumer has nothing more to give")
    checkpoint_max_ms: float = Field(50.0, ge=0, description="Longest a checkpoint waits to gather events while "
                                     "more keep arriving (bounds the latency a busy stream adds)")
    broker_tls: bool = Field(False, description="Speak TLS to the broker (SSL, or SASL_SSL with a username); "
                             "on by itself when a CA file or client certificate is set")
    broker_ca_file: Path | None = Field(None, description="CA bundle (PEM) the broker's certificate is verified "
                                        "against (default: the system's CAs)")
    broker_cert_file: Path | None = Field(None, description="Client certificate (PEM), for brokers that require mutual TLS")
    broker_key_file: Path | None = Field(None, description="Client certificate's private key (PEM)")
    broker_key_password: SecretStr | None = Field(None, description="Password of the client key, if encrypted")
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when broker_username is set")

    # Size and time limits on input (bad input is dead-lettered, never forwarded whole)
    producer_max_request_bytes: int = Field(1_048_576, ge=65_536, description="Largest request our producers send "
                                            "(Kafka's max.request.size; keep <= the broker's message.max.bytes)")
    max_message_bytes: int = Field(524_288, ge=1024, description="Largest input value accepted; larger ones are "
                                   "dead-lettered as too_large")
    max_key_bytes: int = Field(1024, ge=100, description="Largest input key accepted (a hospital_id is at most 100 "
                               "characters); larger ones are dead-lettered as too_large")
    max_text_chars: int = Field(20_000, ge=1, le=20_000, description="Longest admission text accepted (characters, "
                                "at most the contract's 20000); longer ones are dead-lettered as too_large")
    future_skew_minutes: float = Field(15.0, ge=0, description="An event dated more than this ahead of its broker "
                                       "record time is dead-lettered as future_event")

    # Hospital and state
    hospital_config: Path = Field(DEMO_HOSPITAL_PATH, description="YAML file describing the hospital(s)")
    data_dir: Path = Field(Path("var/worker"), description="Worker's local table store (rebuilt from changelogs)")
    dedupe_retention_hours: float = Field(72.0, gt=0, description="How long an event_id is remembered")
    allocation_policy: Literal["optimal", "greedy"] = Field(
        "optimal", description="optimal: everyone waiting matched together (min-cost); greedy: first come, first fit")
    window_size_minutes: float = Field(60.0, gt=0, description="Arrivals and pages per unit are counted over windows this long")
    window_step_minutes: float = Field(5.0, gt=0, description="... advancing by this step (hopping windows, event time)")
    occupancy_step_minutes: float = Field(5.0, gt=0, description="Occupancy per unit is kept per step of this length")
    window_retention_hours: float = Field(48.0, gt=0, description="How long closed windows are kept in the tables")

    # Model (where it is and how it runs: InferenceSettings)
    allow_no_model: bool = Field(False, description="Start without a model (every affected decision says so)")
    inference_batch_wait_ms: float = Field(20.0, ge=0, description="Longest wait to fill an inference batch")
    hold_minutes: float = Field(30.0, gt=0, description="How long a proposed bed is held awaiting confirmation")

    # NEWS2 and paging
    news2_max_obs_age_minutes: float = Field(60.0, gt=0, description="Newest value of a missing vital sign used if this recent")
    paging_escalate_after_minutes: float = Field(15.0, gt=0, description="Unacknowledged page escalates to the next role after")
    paging_episode_end_minutes: float = Field(60.0, ge=0, description="Scores below the episode's band this long end it (one page per episode)")
    paging_repeat_within_minutes: float = Field(10.0, gt=0, description="A suspected probe artefact waits this long for a repeat set before it pages")
    paging_reassess_after_minutes: float = Field(60.0, gt=0, description="A 5-6 or single 3 still at its band this "
                                                 "long after the ack pages the next role, once per episode")
    paging_artefact_spo2_max: float = Field(85.0, gt=0, lt=92, description="A SpO2 at or below this with normal "
                                            "breathing and pulse is a suspected probe artefact (repeat first)")
    paging_rising_points: int = Field(2, ge=1, description="A NEWS2 of 0-4 this many points above the previous "
                                      "score asks the board for observations sooner (nobody is paged)")
    paging_rising_observe_minutes: float = Field(30.0, gt=0, description="How soon after such a rise the next "
                                                 "observations are due (less than the chart's 4-hourly at 1-4)")
    paging_overdue_grace_minutes: float = Field(15.0, ge=0, description="Observations overdue this long past due are reported")
    paging_overdue_round_minutes: float = Field(240.0, gt=0, description="Ward rounds (overdue lists per unit) every this many minutes from midnight UTC")

    # Observability
    metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus /metrics port (0 disables)")
    web_port: int = Field(6066, ge=0, le=65535, description="Faust web server port (read-only views)")
    log_level: str = Field("INFO", description="Python log level")

    def clinical_config(self) -> ClinicalConfig:
        from allocator.paging import PagingConfig
        from streams.state.clinical import ClinicalConfig

        return ClinicalConfig(
            max_obs_age=timedelta(minutes=self.news2_max_obs_age_minutes),
            paging=PagingConfig(escalate_after_minutes=self.paging_escalate_after_minutes,
                                episode_end_minutes=self.paging_episode_end_minutes,
                                repeat_within_minutes=self.paging_repeat_within_minutes,
                                reassess_after_minutes=self.paging_reassess_after_minutes,
                                artefact_spo2_max=self.paging_artefact_spo2_max,
                                rising_points=self.paging_rising_points,
                                rising_observe_minutes=self.paging_rising_observe_minutes,
                                overdue_grace_minutes=self.paging_overdue_grace_minutes,
                                overdue_round_minutes=self.paging_overdue_round_minutes),
        )

    def window_config(self) -> WindowConfig:
        from streams.state.windowed import WindowConfig

        return WindowConfig(size_s=self.window_size_minutes * 60, step_s=self.window_step_minutes * 60,
                            occupancy_step_s=self.occupancy_step_minutes * 60,
                            expires_s=self.window_retention_hours * 3600)

    def topic(self, name: str) -> str:
        """Full topic name for a contract topic name such as `admissions`."""
        return f"{self.topic_prefix}{name}"

    @model_validator(mode="after")
    def _windows_fit(self) -> WardflowSettings:
        if self.window_step_minutes > self.window_size_minutes:
            raise ValueError("window_step_minutes cannot exceed window_size_minutes")
        if self.broker_heartbeat_interval_s * 3 > self.broker_session_timeout_s:
            raise ValueError("broker_heartbeat_interval_s must be at most a third of broker_session_timeout_s")
        return self

    @model_validator(mode="after")
    def _sizes_fit(self) -> WardflowSettings:
        room = self.producer_max_request_bytes - OUTPUT_HEADROOM_BYTES
        if self.max_message_bytes + self.max_key_bytes > room:
            raise ValueError(f"max_message_bytes + max_key_bytes must leave {OUTPUT_HEADROOM_BYTES} bytes of "
                             f"producer_max_request_bytes for headers and framing (at most {room})")
        if bool(self.broker_cert_file) != bool(self.broker_key_file):
            raise ValueError("broker_cert_file and broker_key_file go together (a client certificate needs its key)")
        return self

    @property
    def replaces_previous_member(self) -> bool:
        """Whether a start removes this data directory's previous group member (dynamic membership only:
        a static member is replaced by its `group.instance.id` already)."""
        return self.broker_replace_previous_member and not self.broker_group_instance_id

    @property
    def broker_uses_tls(self) -> bool:
        return self.broker_tls or bool(self.broker_ca_file or self.broker_cert_file)

    def masked(self) -> dict[str, Any]:
        """The effective settings, secrets masked, for the one start-up log line."""
        return {k: ("**********" if isinstance(v, SecretStr) else (str(v) if isinstance(v, Path) else v))
                for k, v in self}

    def log_effective(self) -> None:
        log.info("effective settings: %s", self.masked())


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--option` per settings field; an option given on the CLI beats the env var."""
    group = parser.add_argument_group("settings (each also read from WARDFLOW_<NAME>)")
    for name, field in WardflowSettings.model_fields.items():
        default = field.default
        shown = "********" if "password" in name else default
        group.add_argument(_option(name), dest=f"setting_{name}", default=argparse.SUPPRESS,
                           metavar=name.upper(), help=f"{field.description} (default: {shown})")


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> WardflowSettings:
    """Build settings from env, then CLI options, then explicit overrides; errors name the option."""
    values = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    values.update(overrides)
    try:
        return WardflowSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_option(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
