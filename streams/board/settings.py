"""The board's own settings: `WARDFLOW_*` env vars (shared names with the worker where they mean the same)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from allocator.hospital import DEMO_HOSPITAL_PATH
from streams.exceptions import StreamsError


class BoardSettingsError(StreamsError):
    """Board settings that cannot be used; the message names the option."""


class BoardSettings(BaseSettings):
    """Everything `wardflow board` needs; the broker, prefix and hospital file are the worker's settings."""

    # extra="ignore": the worker's other WARDFLOW_* variables may share the environment.
    model_config = SettingsConfigDict(env_prefix="WARDFLOW_", frozen=True, extra="ignore")

    broker_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), as the worker's")
    broker_username: str | None = Field(None, description="SASL username (SASL_PLAINTEXT when set)")
    broker_password: SecretStr | None = Field(None, description="SASL password")
    topic_prefix: str = Field("wardflow.", description="Prefix in front of every contract topic name")
    hospital_config: Path = Field(DEMO_HOSPITAL_PATH, description="YAML file of the hospital(s): units, beds, clinicians")

    board_host: str = Field("127.0.0.1", description="Address the board listens on")
    board_port: int = Field(8080, ge=0, le=65535, description="Port the board listens on (0: a free one)")
    board_worker_views: str = Field("http://127.0.0.1:6066", description="Worker view base URL(s), comma-separated "
                                    "(the worker's web_port); the freshest answer per hospital wins")
    board_views_poll_s: float = Field(1.0, gt=0, le=60, description="How often the worker's views are re-read")
    board_auth: Literal["password", "proxy"] = Field(
        "password", description="password: the local store of hashed passwords; proxy: trust the user header set "
                                "by the hospital's authenticating reverse proxy")
    board_password_file: Path = Field(Path("var/board/users.json"), description="Password store (scrypt hashes; "
                                      "`wardflow board-user NAME` adds or changes a user)")
    board_proxy_header: str = Field("X-Forwarded-User", description="proxy auth: header carrying the signed-in user")
    board_proxy_trusted: str = Field("127.0.0.1,::1", description="proxy auth: comma-separated client addresses "
                                     "whose user header is believed (the proxy's)")
    board_read_requires_sign_in: bool = Field(True, description="Reading the board needs a signed-in user too")
    board_session_secret: SecretStr | None = Field(None, description="Key signing session cookies; unset: a random "
                                                   "one per start (sign-ins end when the board restarts)")
    board_session_hours: float = Field(12.0, gt=0, description="A sign-in lasts this long (a shift)")
    board_secure_cookies: bool = Field(False, description="Cookies only over HTTPS (set behind TLS)")
    board_audit_log: Path | None = Field(None, description="Also append every action (who, when, what, outcome) "
                                         "as JSON lines to this file")
    log_level: str = Field("INFO", description="Python log level")

    @field_validator("board_session_secret", mode="before")
    @classmethod
    def _secret_long_enough(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or raw == "":
            return None  # unset (compose passes an empty variable): a random key per start, logged
        if len(str(raw)) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def view_urls(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.board_worker_views.split(",") if u.strip()]

    def masked(self) -> dict[str, Any]:
        return {k: ("**********" if isinstance(v, SecretStr) else (str(v) if isinstance(v, Path) else v))
                for k, v in self}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from WARDFLOW_<NAME>)")
    for name, field in BoardSettings.model_fields.items():
        shown = "********" if field.annotation is SecretStr or "secret" in name or name[-8:] == "password" else field.default
        group.add_argument(_option(name), dest=f"setting_{name}", default=argparse.SUPPRESS, metavar=name.upper(),
                           help=f"{field.description} (default: {shown})")


def board_settings_from_args(args: argparse.Namespace, **overrides: Any) -> BoardSettings:
    values = {k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")}
    values.update(overrides)
    try:
        return BoardSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{_option(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
                             for e in exc.errors())
        raise BoardSettingsError(f"invalid board settings: {problems}") from None
