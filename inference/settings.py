"""The triage model's serving settings, owned by the inference package (`WARDFLOW_*` variables).

The worker's settings (`streams.settings.WardflowSettings`) compose these; `wardflow predict`,
`export` and `build-model` read them alone. So a worker setting (a window, a port) never changes
how a prediction runs, and an invalid serving setting is an error that names the variable,
never a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.exceptions import InferenceError

DEFAULT_MODEL_PATH = Path("models/triage/int8")


class InferenceSettingsError(InferenceError):
    """A `WARDFLOW_*` serving setting that cannot be used; the message names it."""


class InferenceSettings(BaseSettings):
    """Where the served model is and how it runs."""

    model_config = SettingsConfigDict(env_prefix="WARDFLOW_", frozen=True, extra="forbid")

    model_path: Path = Field(DEFAULT_MODEL_PATH, description="Directory of the exported ONNX triage model")
    inference_batch_size: int = Field(32, ge=1, le=1024, description="Most texts in one inference batch")
    inference_threads: int = Field(2, ge=1, description="onnxruntime intra-op threads")
    uncertainty_threshold: float = Field(
        0.55, ge=0, le=1, description="Calibrated confidence below which a prediction is uncertain (0.55: the lowest "
                                      "threshold at which the int8 model's unflagged served predictions are 90% right "
                                      "on the unit, on the generated validation split; docs/inference.md)")
    triage_policy_path: Path | None = Field(
        None, description="Triage policy YAML: decoding costs and ESI safety thresholds with their sources "
                          "(default: the packaged inference/triage_policy.yaml)")


def load_settings(**overrides: Any) -> InferenceSettings:
    """The serving settings from the environment (and `overrides`); an invalid one raises."""
    try:
        return InferenceSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"WARDFLOW_{str(e['loc'][0]).upper() if e['loc'] else 'settings'}: {e['msg']}"
                             for e in exc.errors())
        raise InferenceSettingsError(f"invalid settings: {problems}") from None
