"""`triage_config.json`: what a model directory says about itself. Standard library only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.encoding import META_FEATURES
from inference.exceptions import ModelConfigError, ModelNotFoundError
from inference.labels import DEFAULT_LABELS, LabelSet

RUN_ONLY_SETTINGS = ("threads", "progress", "eval_batch_size")  # how a run goes, not what it produces


def result_settings(settings: Any) -> dict[str, Any]:
    """A training settings dataclass as it bears on the model (cache keys, reports): run-only fields left out."""
    return {k: v for k, v in asdict(settings).items() if k not in RUN_ONLY_SETTINGS}

CONFIG_NAME = "triage_config.json"
FORMAT_VERSION = 1


@dataclass
class TriageConfig:
    labels: LabelSet = DEFAULT_LABELS
    temperatures: dict[str, float] = field(default_factory=lambda: {"unit": 1.0, "acuity": 1.0, "needs": 1.0})
    max_length: int = 256              # tokens read at serving time (taxonomy: the first 256)
    train_max_length: int = 128
    model_version: str = ""
    data_fingerprint: str = ""
    base_model: str = ""
    need_threshold: float = 0.5
    meta_features: tuple[str, ...] = META_FEATURES
    onnx_file: str = ""                # set in exported directories
    lexical_file: str = ""             # the TF-IDF reader blended with the encoder (inference.lexical), if any
    precision: str = "fp32"            # fp32 | int8
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = self.labels.to_dict()
        d["meta_features"] = list(self.meta_features)
        return d

    def save(self, model_dir: Path) -> Path:
        p = Path(model_dir) / CONFIG_NAME
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return p

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TriageConfig:
        try:
            labels = LabelSet.from_dict(d["labels"])
            temps = {k: float(d.get("temperatures", {}).get(k, 1.0)) for k in ("unit", "acuity", "needs")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelConfigError(f"{CONFIG_NAME}: {exc}") from None
        if any(not t > 0 for t in temps.values()):
            raise ModelConfigError(f"{CONFIG_NAME}: temperatures must be positive")
        meta = tuple(d.get("meta_features", META_FEATURES))
        if meta != META_FEATURES:
            raise ModelConfigError(f"{CONFIG_NAME}: model expects meta features {list(meta)}, this code builds "
                                   f"{list(META_FEATURES)}")
        known = {f for f in cls.__dataclass_fields__}
        rest = {k: v for k, v in d.items() if k in known and k not in ("labels", "temperatures", "meta_features")}
        cfg = cls(labels=labels, temperatures=temps, meta_features=meta, **rest)
        if int(cfg.format_version) > FORMAT_VERSION:
            raise ModelConfigError(f"{CONFIG_NAME}: format {cfg.format_version} is newer than this code")
        return cfg


def load_config(model_dir: Path) -> TriageConfig:
    p = Path(model_dir) / CONFIG_NAME
    if not Path(model_dir).is_dir():
        raise ModelNotFoundError(f"model directory {model_dir} does not exist")
    if not p.exists():
        raise ModelNotFoundError(f"{model_dir}: missing {CONFIG_NAME}")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{p}: not valid JSON ({exc.msg})") from None
    if not isinstance(d, dict):
        raise ModelConfigError(f"{p}: must be a JSON object")
    return TriageConfig.from_dict(d)
