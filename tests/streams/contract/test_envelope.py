"""The envelope between the worker's stages: what the sequencer encodes, the state agent decodes, and nothing else."""

from __future__ import annotations

from streams.contract.envelope import (
    H_PREDICTION,
    H_PREDICTION_ERROR,
    UNREADABLE_PREDICTION,
    Envelope,
    Origin,
    PredictionFailure,
)
from streams.contract.limits import size_facts
from streams.contract.models import PredictionOut, ReasonOut

PRED = PredictionOut(target_unit="ICU", unit_probs={"ICU": 0.7, "MEDICINE": 0.3}, acuity=1,
                     acuity_probs={"1": 0.55, "2": 0.45}, needs=["telemetry"], need_probs={"telemetry": 0.8},
                     uncertain=False, model_version="m1",
                     reasons=[ReasonOut(code="acuity_floor", text="acuity raised to 1: BP 76/44 with HR 128")])
ORIGIN = Origin("wardflow.admissions", 3, 1234)


def test_origin_and_prediction_come_back_as_they_went_typed():
    back = Envelope.from_headers(Envelope(ORIGIN, prediction=PRED).headers())
    assert back == Envelope(ORIGIN, prediction=PRED)
    assert isinstance(back.prediction, PredictionOut) and back.prediction.reasons[0].code == "acuity_floor"


def test_a_failure_and_size_facts_come_back_and_a_vital_sign_carries_origin_only():
    failure = PredictionFailure("inference_failed", "admissions: the model failed on field 'text' (RuntimeError)")
    assert Envelope.from_headers(Envelope(ORIGIN, failure=failure).headers()) == Envelope(ORIGIN, failure=failure)
    facts = size_facts(b"k", b"x" * 10)
    cut = Envelope(ORIGIN, prediction=PRED).without_prediction(b"k", b"x" * 10)
    assert cut == Envelope(ORIGIN, too_large=facts) and Envelope.from_headers(cut.headers()) == cut
    vitals = Envelope(Origin("wardflow.vitals", 0, 7))
    assert [k for k, _ in vitals.headers()] == ["wardflow-topic", "wardflow-partition", "wardflow-offset"]
    assert Envelope.from_headers(dict(vitals.headers())) == vitals  # a dict of headers reads the same


def test_a_message_with_no_origin_has_no_envelope():
    assert Envelope.from_headers([]) is None and Envelope.from_headers(None) is None
    assert Envelope.from_headers([("wardflow-topic", b"t"), ("wardflow-partition", b"x"),
                                  ("wardflow-offset", b"1")]) is None


def test_an_unreadable_prediction_is_a_failure_to_dead_letter_not_a_crash():
    headers = [*Envelope(ORIGIN).headers(), (H_PREDICTION, b'{"target_unit": "ICU"')]
    assert Envelope.from_headers(headers) == Envelope(ORIGIN, failure=UNREADABLE_PREDICTION)
    invalid = [*Envelope(ORIGIN).headers(), (H_PREDICTION, PRED.model_dump_json().replace('"acuity":1', '"acuity":9').encode())]
    assert Envelope.from_headers(invalid).failure == UNREADABLE_PREDICTION
    bad_error = [*Envelope(ORIGIN).headers(), (H_PREDICTION_ERROR, b"[1]")]
    assert Envelope.from_headers(bad_error).failure == UNREADABLE_PREDICTION
