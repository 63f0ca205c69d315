"""An encoder shipped only as ONNX becomes a BERT directory that training can start from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.inference_support import tiny_bert_dir, workdir


def _export_like_sentence_transformers(bert_dir: Path, out: Path, prefix: str = "model.0.auto_model.") -> Path:
    """A tiny BertModel exported the way the registry packages are (Linear weights as unnamed MatMul inputs)."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(bert_dir), add_pooling_layer=False).eval()
    torch.manual_seed(1)
    with torch.no_grad():      # a trained encoder's biases and norms differ (the exporter merges equal initializers)
        for prm in model.parameters():
            prm.add_(torch.randn_like(prm) * 0.05)
    model.save_pretrained(str(out.parent / "tiny-encoder-source"))

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.ModuleList([torch.nn.Module()])
            self.model[0].auto_model = model

        def forward(self, input_ids, attention_mask):
            return self.model[0].auto_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((1, 8), dtype=torch.long)
    torch.onnx.export(Wrapped(), (ids, torch.ones_like(ids)), str(out), input_names=["input_ids", "attention_mask"],
                      output_names=["output"], dynamic_axes={"input_ids": {0: "b", 1: "s"},
                                                             "attention_mask": {0: "b", 1: "s"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    return out


@pytest.fixture(scope="module")
def onnx_encoder() -> Path:
    return _export_like_sentence_transformers(tiny_bert_dir(), workdir() / "tiny-encoder.onnx")


def test_rebuilt_encoder_matches_the_graph_and_trains(onnx_encoder, tmp_path):
    from transformers import AutoModel

    from inference.encoder_import import import_onnx_encoder

    cfg = import_onnx_encoder(onnx_encoder, tiny_bert_dir(), tmp_path / "enc")
    assert cfg["num_hidden_layers"] == 2 and cfg["hidden_size"] == 32 and cfg["num_attention_heads"] == 2
    assert cfg["max_abs_diff"] < 1e-4
    written = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert written["model_type"] == "bert"
    enc = AutoModel.from_pretrained(str(tmp_path / "enc"), local_files_only=True)   # what training loads
    orig = AutoModel.from_pretrained(str(workdir() / "tiny-encoder-source"), local_files_only=True)
    import torch

    for name in ("encoder.layer.1.attention.self.query.weight", "encoder.layer.0.output.dense.weight"):
        assert torch.allclose(enc.state_dict()[name], orig.state_dict()[name])


def test_a_graph_without_bert_weights_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from inference.encoder_import import EncoderImportError, bert_state_from_onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g), str(path))
    with pytest.raises(EncoderImportError, match="no BERT embeddings"):
        bert_state_from_onnx(path)


def test_wrong_vocabulary_source_is_refused(onnx_encoder, tmp_path):
    from inference.encoder_import import EncoderImportError, import_onnx_encoder

    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderImportError, match="no tokenizer.json or vocab.txt"):
        import_onnx_encoder(onnx_encoder, tmp_path / "empty", tmp_path / "enc")
