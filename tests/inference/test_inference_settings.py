"""The serving settings belong to the inference package: read alone, never silently defaulted."""

from __future__ import annotations

import argparse

import pytest

from inference import commands, predict
from inference.settings import InferenceSettings, InferenceSettingsError, load_settings
from streams.settings import WardflowSettings
from tests import inference_support as sup


def _predict_args(tmp_path, *extra: str) -> argparse.Namespace:
    return sup.parse_cli(["predict", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                          *extra])


@pytest.fixture
def runs(monkeypatch):
    """`predict.run`'s keyword arguments per call (the model itself is not needed to see them)."""
    calls: list[dict] = []

    def fake_run(model_dir, input_path, output_path, **kwargs):
        calls.append({"model_dir": model_dir, **kwargs})
        return 0, 0

    monkeypatch.setattr(predict, "run", fake_run)
    return calls


def test_predict_uses_the_serving_settings_whatever_a_worker_setting_says(monkeypatch, tmp_path, runs):
    # the case: an invalid worker setting made predict fall back to 2 threads
    monkeypatch.setenv("WARDFLOW_WINDOW_STEP_MINUTES", "-1")
    monkeypatch.setenv("WARDFLOW_INFERENCE_THREADS", "3")
    monkeypatch.setenv("WARDFLOW_INFERENCE_BATCH_SIZE", "7")
    monkeypatch.setenv("WARDFLOW_UNCERTAINTY_THRESHOLD", "0.25")
    monkeypatch.setenv("WARDFLOW_MODEL_PATH", str(tmp_path / "model"))
    monkeypatch.setenv("WARDFLOW_TRIAGE_POLICY_PATH", str(tmp_path / "policy.yaml"))
    args = _predict_args(tmp_path)
    assert args.func(args) == 0
    [call] = runs
    assert call["threads"] == 3
    assert call["batch_size"] == 7
    assert call["uncertainty_threshold"] == 0.25
    assert call["model_dir"] == tmp_path / "model"
    assert call["policy"] == tmp_path / "policy.yaml"


def test_command_line_options_beat_the_environment(monkeypatch, tmp_path, runs):
    monkeypatch.setenv("WARDFLOW_INFERENCE_THREADS", "3")
    args = _predict_args(tmp_path, "--threads", "5", "--batch-size", "4", "--threshold", "0.5")
    assert args.func(args) == 0
    assert (runs[0]["threads"], runs[0]["batch_size"], runs[0]["uncertainty_threshold"]) == (5, 4, 0.5)


@pytest.mark.parametrize("name, value", [("WARDFLOW_INFERENCE_THREADS", "zero"),
                                         ("WARDFLOW_INFERENCE_THREADS", "0"),
                                         ("WARDFLOW_INFERENCE_BATCH_SIZE", "5000"),
                                         ("WARDFLOW_UNCERTAINTY_THRESHOLD", "1.5")])
def test_an_invalid_serving_setting_is_an_error_that_names_it(monkeypatch, tmp_path, runs, name, value):
    monkeypatch.setenv(name, value)
    args = _predict_args(tmp_path)
    with pytest.raises(InferenceSettingsError, match=name):
        args.func(args)
    assert runs == []
    with pytest.raises(InferenceSettingsError, match=name):
        commands._threads(argparse.Namespace(threads=None))


def test_the_worker_settings_compose_the_serving_settings(monkeypatch):
    monkeypatch.setenv("WARDFLOW_INFERENCE_THREADS", "4")
    assert issubclass(WardflowSettings, InferenceSettings)
    assert set(InferenceSettings.model_fields) <= set(WardflowSettings.model_fields)
    assert WardflowSettings().inference_threads == load_settings().inference_threads == 4
