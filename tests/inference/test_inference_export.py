"""Export: ONNX matches PyTorch on real inputs with dynamic batch/sequence axes, a broken graph is
caught by a typed error, int8 stays close to fp32, temperatures refitted on int8."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.exceptions import ExportMismatchError, InferenceError
from tests import inference_support as sup


@pytest.fixture(scope="module")
def exported():
    return sup.tiny_exported()


def test_export_layout_and_summary(exported):
    for d in ("onnx", "int8"):
        for name in ("model.onnx", "tokenizer.json", "triage_config.json"):
            assert (exported / d / name).exists(), (d, name)
    cfg = json.loads((exported / "int8" / "triage_config.json").read_text())
    assert cfg["precision"] == "int8" and cfg["onnx_file"] == "model.onnx"
    ex = cfg["metrics"]["export"]
    assert max(ex["max_abs_diff_optimized"].values()) <= ex["tolerance"]
    assert set(ex["int8_temperatures"]) == {"unit", "acuity", "needs"}
    assert "int8_change_points" in ex
    fp32 = json.loads((exported / "onnx" / "triage_config.json").read_text())
    assert fp32["model_version"] == cfg["model_version"]


def test_dynamic_axes_and_match_with_pytorch(exported):
    import torch

    from inference.export import sample_inputs, torch_reference, validate_onnx
    from inference.model import load_model
    from inference.textenc import load_tokenizer

    model = sup.tiny_trained_model()
    net, cfg = load_model(model)
    tok = load_tokenizer(model / "tokenizer.json", cfg.max_length)
    texts = ["chest pain " * n for n in (1, 5, 20, 40)] + ["x"]
    batches = sample_inputs(tok, texts, [30, 4, 80, 0.5, 16], ["F", "M", "X", "F", "M"], batch_sizes=(1, 2, 5, 7))
    assert len({b[0].shape[1] for b in batches}) > 1          # several sequence lengths
    torch.set_num_threads(1)
    diffs = validate_onnx(exported / "onnx" / "model.onnx", batches, torch_reference(net, batches))
    assert max(diffs.values()) < 2e-3


def test_broken_graph_raises_typed_mismatch(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from inference.export import sample_inputs, torch_reference, validate_onnx
    from inference.model import load_model
    from inference.textenc import load_tokenizer

    m = onnx.load(str(exported / "onnx" / "model.onnx"))
    # the unit head's weight: the initializer feeding the MatMul/Gemm that produces unit_logits
    producer = {o: n for n in m.graph.node for o in n.output}
    node = producer["unit_logits"]
    inits = {i.name: i for i in m.graph.initializer}
    name = next(x for x in node.input if x in inits and numpy_helper.to_array(inits[x]).ndim == 2)
    w = numpy_helper.to_array(inits[name]).copy()
    inits[name].CopyFrom(numpy_helper.from_array(w * 1.5 + 0.1, name))
    broken = tmp_path / "broken.onnx"
    onnx.save(m, str(broken))

    model = sup.tiny_trained_model()
    net, cfg = load_model(model)
    tok = load_tokenizer(model / "tokenizer.json", cfg.max_length)
    batches = sample_inputs(tok, ["chest pain with st elevation", "stubbed toe"], [60, 30], ["M", "F"], (1, 2))
    with pytest.raises(ExportMismatchError) as ei:
        validate_onnx(broken, batches, torch_reference(net, batches))
    assert ei.value.output == "unit_logits" and ei.value.max_abs_diff > ei.value.tolerance
    assert isinstance(ei.value, InferenceError) and "unit_logits" in str(ei.value)


def test_int8_outputs_close_to_fp32(exported):
    from inference.export import load_examples_for
    from inference.serving import OnnxTriageModel

    exs = load_examples_for(sup.tiny_trained_model())
    fp32 = OnnxTriageModel.load(exported / "onnx", providers=["CPUExecutionProvider"])
    int8 = OnnxTriageModel.load(exported / "int8", providers=["CPUExecutionProvider"])
    args = ([e.text for e in exs], [e.age for e in exs], [e.sex for e in exs])
    from inference.encoding import sigmoid, softmax

    l32, l8 = fp32.logits(*args), int8.logits(*args)
    p32 = {"unit": softmax(l32["unit"]), "acuity": softmax(l32["acuity"]), "needs": sigmoid(l32["needs"])}
    p8 = {"unit": softmax(l8["unit"]), "acuity": softmax(l8["acuity"]), "needs": sigmoid(l8["needs"])}
    for head in ("unit", "acuity"):
        assert float(np.abs(p32[head] - p8[head]).max()) < 0.1
        assert float((p32[head].argmax(1) == p8[head].argmax(1)).mean()) >= 0.95
    assert float(np.abs(p32["needs"] - p8["needs"]).max()) < 0.1
    assert (exported / "int8" / "model.onnx").stat().st_size < (exported / "onnx" / "model.onnx").stat().st_size
