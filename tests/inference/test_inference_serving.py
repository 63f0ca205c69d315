"""Serving: torch/transformers never imported, aligned batch predictions, bad requests isolated,
`wardflow predict` round trip with a bad line in the middle."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inference.interface import PredictionFailed, TriageModel, TriagePrediction, TriageRequest
from tests import inference_support as sup

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def int8_dir() -> Path:
    return sup.tiny_exported() / "int8"


def test_serving_path_never_imports_torch_or_transformers(int8_dir):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from inference.serving import OnnxTriageModel
        from inference.interface import TriageRequest
        from inference import predict
        m = OnnxTriageModel.load(Path({str(int8_dir)!r}), threads=1)
        out = m.predict_batch([TriageRequest("a", "crushing chest pain", 60, "M"), TriageRequest("b", "", 3, "F")])
        assert out[0].target_unit and out[1].code == "empty_text"
        heavy = sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "transformers", "sklearn", "matplotlib"))
        print("HEAVY", heavy)
        sys.exit(1 if heavy else 0)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_predict_batch_aligned_and_isolates_bad_requests(int8_dir):
    from inference.serving import OnnxTriageModel

    m = OnnxTriageModel.load(int8_dir, threads=2, uncertainty_threshold=0.6, providers=["CPUExecutionProvider"],
                             batch_size=2)
    assert isinstance(m, TriageModel) and m.model_version.startswith("wf-triage-")
    secret = "SECRET patient narrative"
    reqs = [TriageRequest("1", "crushing chest pain with st elevation", 64, "M"),
            TriageRequest("2", "   ", 30, "F"),
            TriageRequest("3", secret, -4, "F"),
            TriageRequest("4", secret, 40, "Z"),
            TriageRequest("5", "suicidal with a plan to jump " * 60, 35, "X"),   # longer than max_length
            TriageRequest("6", "stubbed toe walking normally", 0.5, "F"),
            TriageRequest("7", secret, float("nan"), "F")]
    out = m.predict_batch(reqs)
    assert [o.id for o in out] == [r.id for r in reqs]
    bad = {o.id: o for o in out if isinstance(o, PredictionFailed)}
    assert set(bad) == {"2", "3", "4", "7"}
    assert bad["2"].code == "empty_text" and "'text'" in bad["2"].message
    assert bad["3"].code == "invalid_age" and "'age'" in bad["3"].message
    assert bad["4"].code == "invalid_sex" and "'sex'" in bad["4"].message
    assert all(secret not in o.message for o in bad.values())
    for o in out:
        if isinstance(o, TriagePrediction):
            assert set(o.unit_probs) == set(sup.TOY_LABELS["units"])
            assert set(o.acuity_probs) == {"1", "2", "3", "4", "5"}
            assert math.isclose(sum(o.unit_probs.values()), 1.0, abs_tol=1e-4)
            assert math.isclose(sum(o.acuity_probs.values()), 1.0, abs_tol=1e-4)
            assert o.target_unit == max(o.unit_probs, key=o.unit_probs.get)
            assert o.uncertain == (max(o.unit_probs.values()) < 0.6 or max(o.acuity_probs.values()) < 0.6)
            assert set(o.needs) == {n for n, p in o.need_probs.items() if p >= 0.5}
    assert out[0].target_unit == "CARDIAC"
    assert m.predict_batch([]) == []


def test_length_buckets_match_unbucketed_results(int8_dir):
    from inference.serving import OnnxTriageModel

    m = OnnxTriageModel.load(int8_dir, providers=["CPUExecutionProvider"], batch_size=3)
    texts = ["chest pain", "broken hip after a fall today " * 8, "sore throat", "hearing voices " * 20, "x y z"]
    args = (texts, [50, 80, 20, 30, 9], ["F", "M", "X", "F", "M"])
    a, b = m.logits(*args, bucket=True), m.logits(*args, bucket=False, batch_size=5)
    for k in a:
        assert abs(a[k] - b[k]).max() < 0.05


def test_uncertainty_threshold_is_configurable(int8_dir):
    from inference.serving import OnnxTriageModel

    req = [TriageRequest("1", "crushing chest pain", 64, "M")]
    assert OnnxTriageModel.load(int8_dir, uncertainty_threshold=1.0).predict_batch(req)[0].uncertain is True
    assert OnnxTriageModel.load(int8_dir, uncertainty_threshold=0.0).predict_batch(req)[0].uncertain is False


def test_served_prediction_applies_the_safety_floor_with_reasons(int8_dir):
    """The toy model rates a stubbed toe ESI 5 DISCHARGE; measured shock makes it ESI 1, admitted, flagged."""
    from inference.serving import OnnxTriageModel

    m = OnnxTriageModel.load(int8_dir, threads=1)
    calm, shocked = m.predict_batch([TriageRequest("1", "stubbed toe walking normally", 30, "F"),
                                     TriageRequest("2", "stubbed toe walking normally. BP 70/40 HR 140", 30, "F")])
    assert calm.acuity >= 4 and calm.target_unit == "DISCHARGE"
    assert shocked.acuity == 1 and shocked.target_unit != "DISCHARGE" and shocked.uncertain
    floor = [r for r in shocked.reasons if r.code == "safety_floor"]
    assert floor and "BP 70/40 with HR 140" in floor[0].text
    assert shocked.to_dict()["reasons"][0]["code"]


def test_a_safety_layer_failure_fails_that_request_alone(int8_dir, monkeypatch):
    from inference import serving
    from inference.serving import OnnxTriageModel

    real = serving.decode

    def flaky(*a, text, **kw):
        if "boom" in text:
            raise ValueError("parser bug")
        return real(*a, text=text, **kw)

    monkeypatch.setattr(serving, "decode", flaky)
    m = OnnxTriageModel.load(int8_dir, threads=1)
    ok, bad = m.predict_batch([TriageRequest("1", "small cut on finger", 30, "F"), TriageRequest("2", "boom", 30, "F")])
    assert ok.target_unit and bad.code == "safety_check_failed" and "boom" not in bad.message


def test_a_sign_parser_failure_fails_that_request_alone(int8_dir, monkeypatch):
    from inference import serving
    from inference.serving import OnnxTriageModel

    real = serving.parse_signals

    def flaky(text):
        if "boom" in text:
            raise ValueError("parser bug")
        return real(text)

    monkeypatch.setattr(serving, "parse_signals", flaky)
    m = OnnxTriageModel.load(int8_dir, threads=1)
    ok, bad, also_ok = m.predict_batch([TriageRequest("1", "small cut on finger", 30, "F"),
                                        TriageRequest("2", "boom", 30, "F"),
                                        TriageRequest("3", "BP 70/40 HR 140, clammy", 60, "M")])
    assert ok.target_unit and also_ok.acuity == 1 and bad.code == "safety_check_failed" and "boom" not in bad.message


def test_predict_command_round_trip_with_bad_line(int8_dir, tmp_path, capsys):
    lines = [json.dumps({"id": "a", "text": "crushing chest pain with st elevation", "age": 61, "sex": "M"}),
             json.dumps({"id": "b", "text": "private words", "age": "old", "sex": "F"}),
             "{this is not json",
             json.dumps({"id": "d", "age": 40, "sex": "F"}),
             json.dumps({"id": "e", "text": "stubbed toe walking normally", "age": 25, "sex": "F"})]
    inp, outp = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    args = sup.parse_cli(["predict", "--model", str(int8_dir), "--input", str(inp), "--output", str(outp),
                          "--threads", "1"])
    assert args.func(args) == 0
    rows = [json.loads(x) for x in outp.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["a", "b", "", "d", "e"]
    ok_keys = {"id", "target_unit", "unit_probs", "acuity", "acuity_probs", "needs", "need_probs", "uncertain",
               "model_version", "reasons"}
    assert set(rows[0]) == ok_keys and set(rows[4]) == ok_keys
    assert "'age'" in rows[1]["error"]["message"] and "private words" not in json.dumps(rows[1])
    assert "line 3" in rows[2]["error"]["message"]
    assert "'text'" in rows[3]["error"]["message"]
    assert "predicted 2, failed 3" in capsys.readouterr().err
