"""Settings (env, then CLI) and the CLI's behaviour on bad input: one clear line, exit code 2."""

from __future__ import annotations

import logging

import pytest

from streams.cli import build_parser, main
from streams.settings import SettingsError, WardflowSettings, settings_from_args


def _args(*argv: str):
    return build_parser().parse_args(["worker", *argv])


def test_env_is_read_and_the_cli_wins(monkeypatch):
    monkeypatch.setenv("WARDFLOW_TOPIC_PREFIX", "env.")
    monkeypatch.setenv("WARDFLOW_INFERENCE_BATCH_SIZE", "16")
    s = settings_from_args(_args("--topic-prefix", "cli."))
    assert s.topic_prefix == "cli." and s.inference_batch_size == 16
    assert s.topic("admissions") == "cli.admissions"


def test_invalid_setting_names_the_option(monkeypatch):
    with pytest.raises(SettingsError, match="--inference-batch-size"):
        settings_from_args(_args("--inference-batch-size", "0"))


def test_secrets_are_masked_in_the_start_up_line(caplog):
    s = WardflowSettings(broker_username="wardflow", broker_password="hunter2-secret")
    with caplog.at_level(logging.INFO, logger="streams.settings"):
        s.log_effective()
    assert "hunter2-secret" not in caplog.text and "**********" in caplog.text
    assert s.broker_password.get_secret_value() == "hunter2-secret"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("worker", "broker", "schemas", "simulate", "demo"):
        assert command in out


def test_a_broken_hospital_file_is_refused_at_start(tmp_path, capsys):
    broken = tmp_path / "hospital.yaml"
    broken.write_text("hospitals:\n  - hospital_id: h1\n    name: H\n    units: []\n")
    code = main(["worker", "--hospital-config", str(broken), "--metrics-port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "hospital.yaml: hospitals[0].roster: is required" in err


def test_schemas_command_writes_one_file_per_topic(tmp_path, capsys):
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert "wardflow.admissions.schema.json" in written and "wardflow.dead-letters.schema.json" in written
    assert len(written) == 12  # 9 input topics, decisions, dead-letters, feedback
