"""A hospital's own training data: CSV / JSONL, declared label sets, errors naming file, row and field."""

from __future__ import annotations

import json

import pytest

from inference.data import fingerprint, load_files
from inference.exceptions import InferenceError, TrainingDataError
from inference.labels import DEFAULT_LABELS

HEADER = "text,age,sex,target_unit,acuity,needs,split\n"


def _csv(tmp_path, body: str, name="h.csv", head: str = HEADER):
    p = tmp_path / name
    p.write_text(head + body, encoding="utf-8")
    return p


def test_csv_with_default_labels_and_needs_formats(tmp_path):
    p = _csv(tmp_path, 'chest pain st elevation,64,M,CARDIAC,2,telemetry,train\n'
                       'cough fever hypoxic,70,F,MEDICINE,2,"[""respiratory_support"", ""droplet_isolation""]",train\n'
                       'sprained ankle,30,X,DISCHARGE,4,,validation\n'
                       'suicidal plan,40,f,MENTAL_HEALTH,2,close_observation;bariatric,test\n')
    exs, labels = load_files([p])
    assert labels == DEFAULT_LABELS
    assert [e.split for e in exs] == ["train", "train", "validation", "test"]
    assert exs[1].needs == ("respiratory_support", "droplet_isolation")
    assert exs[2].needs == () and exs[3].sex == "F" and exs[3].needs == ("close_observation", "bariatric")
    assert fingerprint(exs, labels) == fingerprint(load_files([p])[0], labels)


@pytest.mark.parametrize("row,field", [
    (",64,M,CARDIAC,2,,train", "text"),
    ("chest pain,sixty,M,CARDIAC,2,,train", "age"),
    ("chest pain,200,M,CARDIAC,2,,train", "age"),
    ("chest pain,64,Q,CARDIAC,2,,train", "sex"),
    ("chest pain,64,M,CORONARY,2,,train", "target_unit"),
    ("chest pain,64,M,CARDIAC,7,,train", "acuity"),
    ("chest pain,64,M,CARDIAC,high,,train", "acuity"),
    ("chest pain,64,M,CARDIAC,2,wifi,train", "needs"),
    ("chest pain,64,M,CARDIAC,2,,holdout", "split"),
])
def test_bad_csv_rows_name_file_row_and_field(tmp_path, row, field):
    p = _csv(tmp_path, "fine text,50,F,MEDICINE,3,,train\nfine text,50,F,MEDICINE,3,,validation\n" + row + "\n")
    with pytest.raises(TrainingDataError) as ei:
        load_files([p])
    err = ei.value
    assert (err.file, err.row, err.field) == (str(p), 3, field)
    assert str(p) in str(err) and "row 3" in str(err) and repr(field) in str(err)
    assert "chest pain" not in str(err)          # never the free text
    assert isinstance(err, InferenceError) and err.user_facing


def test_csv_missing_column(tmp_path):
    p = _csv(tmp_path, "x,1,F\n", head="text,age,sex\n")
    with pytest.raises(TrainingDataError, match="target_unit"):
        load_files([p])


def test_jsonl_declares_its_own_label_set(tmp_path):
    p = tmp_path / "own.jsonl"
    lines = [{"label_set": {"units": ["HDU", "WARD", "HOME"], "acuities": [1, 2, 3], "needs": ["sideroom"]}},
             {"text": "needs a side room", "age": 50, "sex": "F", "target_unit": "WARD", "acuity": 2,
              "needs": ["sideroom"], "split": "train"},
             {"text": "fine", "age": 0.5, "sex": "M", "target_unit": "HOME", "acuity": 3, "needs": [],
              "split": "validation"}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    exs, labels = load_files([p])
    assert labels.units == ("HDU", "WARD", "HOME") and labels.acuities == (1, 2, 3) and labels.needs == ("sideroom",)
    assert exs[1].age == 0.5
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(lines[0]) + "\n" + json.dumps({**lines[1], "target_unit": "ICU"}) + "\n")
    with pytest.raises(TrainingDataError) as ei:
        load_files([bad])
    assert ei.value.row == 1 and ei.value.field == "target_unit"


def test_jsonl_broken_json_names_the_row(tmp_path):
    p = tmp_path / "b.jsonl"
    good = {"text": "t", "age": 5, "sex": "F", "target_unit": "PAEDIATRICS", "acuity": 3, "needs": []}
    p.write_text(json.dumps(good) + "\n" + "{not json\n")
    with pytest.raises(TrainingDataError) as ei:
        load_files([p])
    assert ei.value.row == 2 and "JSON" in str(ei.value)


def test_rows_without_split_are_assigned_one_deterministically(tmp_path):
    body = "".join(f"case number {i},{20 + i % 50},F,MEDICINE,3,,\n" for i in range(200))
    p = _csv(tmp_path, body)
    a, _ = load_files([p], seed=1)
    b, _ = load_files([p], seed=1)
    assert [e.split for e in a] == [e.split for e in b]
    assert {e.split for e in a} == {"train", "validation", "test"}


def test_unsupported_file_type(tmp_path):
    p = tmp_path / "x.xlsx"
    p.write_text("nope")
    with pytest.raises(TrainingDataError, match="unsupported"):
        load_files([p])
