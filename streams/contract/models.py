"""The event contract (version 1) as pydantic models: what comes in, what goes out.

Field names are fixed by /work/shared/event-contract.md; producers may add fields, which
are ignored. Input types are strict on purpose: a hospital feed that sends `"age": "42"`
has a bug, and coercing it silently hides that bug from the integration team.
Errors never carry input values (`hide_input_in_errors`): free text is PHI.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

TIMESTAMP_EXAMPLE = "2026-11-24T08:15:00+00:00"
TIMESTAMP_RULE = f"must be RFC 3339 with a UTC offset, e.g. {TIMESTAMP_EXAMPLE}"

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?P<frac>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})$"
)
OFFSET_PATTERN = r"([Zz]|[+-]\d{2}:\d{2})$"


def _parse_timestamp(value: Any) -> datetime:
    """Accept an RFC 3339 string or an aware datetime; a naive time is ambiguous across DST."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError("bad_timestamp", TIMESTAMP_RULE)
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("bad_timestamp", TIMESTAMP_RULE)
    text = value.strip()
    match = _RFC3339.match(text)
    if match is None:
        raise PydanticCustomError("bad_timestamp", TIMESTAMP_RULE)
    frac = match.group("frac") or ""
    if len(frac) > 7:  # datetime holds microseconds: drop the digits it cannot keep
        text = text.replace(frac, frac[:7], 1)
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:  # month 13, second 60, offset +24:00 ...
        raise PydanticCustomError("bad_timestamp", TIMESTAMP_RULE) from None


def _strip(value: Any) -> Any:
    """Literals do not get `str_strip_whitespace`; give them the same leniency as ids."""
    return value.strip() if isinstance(value, str) else value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    Field(json_schema_extra={"format": "date-time", "pattern": OFFSET_PATTERN}),
]


def _text(max_length: int, *, required: bool = True, description: str | None = None) -> Any:
    """A strict string (`Annotated[str, _text(...)]`); `required` ones must hold a non-blank
    character (after stripping)."""
    extra: dict[str, JsonValue] | None = {"pattern": r"\S"} if required else None
    return Field(
        strict=True,
        min_length=1 if required else 0,
        max_length=max_length,
        description=description,
        json_schema_extra=extra,
    )


def _number(ge: float, le: float, description: str) -> Any:
    """A strict number (`Annotated[float, _number(...)]`: ints welcome, bools and numeric strings
    refused) within [ge, le]."""
    return Field(strict=True, ge=ge, le=le, allow_inf_nan=False, description=description)


_CHOICE = BeforeValidator(_strip)  # `Annotated[Literal[...], _CHOICE]`: surrounding blanks are forgiven


Id = Annotated[str, _text(200)]
EventId = Annotated[str, _text(200, description="Unique id of the event; a repeat is a no-op")]
HospitalId = Annotated[str, _text(100, description="Hospital; also the Kafka key")]
ClinicalText = Annotated[str, _text(20_000, description="Chief complaint, triage or admission note (PHI)")]
Note = Annotated[str, _text(1_000, required=False)]
OverrideReason = Annotated[str, _text(5_000, required=False)]
Flag = Annotated[bool, Field(strict=True)]
# An optional flag: absent or null both mean false (the contract's rule for optional fields).
OptionalFlag = Annotated[bool, BeforeValidator(lambda v: False if v is None else v), Field(strict=True),
                         WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "null"}]})]
Sex = Annotated[Literal["F", "M", "X"], _CHOICE]
Arrival = Annotated[Literal["ambulance", "walk_in", "referral", "transfer"], _CHOICE]
Consciousness = Annotated[Literal["A", "C", "V", "P", "U"], _CHOICE]
BedStatus = Annotated[Literal["clean", "dirty", "cleaning", "blocked", "closed"], _CHOICE]
Action = Annotated[Literal["confirm", "reassign", "reject"], _CHOICE]
Age = Annotated[float, _number(0, 125, "Age in years; 0.5 for six months")]
WeightKg = Annotated[float, _number(0.3, 500, "Weight in kg")]
RespRate = Annotated[float, _number(0, 80, "Respiration rate, breaths/min")]
SpO2 = Annotated[float, _number(0, 100, "Oxygen saturation, %")]
SystolicBp = Annotated[float, _number(20, 300, "Systolic blood pressure, mmHg")]
HeartRate = Annotated[float, _number(0, 300, "Heart rate, beats/min")]
TemperatureC = Annotated[float, _number(25, 45, "Temperature, degrees Celsius")]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, hide_input_in_errors=True
    )


# --------------------------------------------------------------------------- inputs


class InputEvent(_Model):
    """Fields every input event carries; `event_id` is the idempotency key."""

    event_id: EventId
    hospital_id: HospitalId
    occurred_at: Timestamp = Field(description="When it happened, RFC 3339 with an offset")


class Admission(InputEvent):
    """A decision to admit (or an ED arrival) that needs a bed placement."""

    patient_id: Id
    encounter_id: Id
    age: Age
    sex: Sex
    text: ClinicalText
    arrival: Arrival | None = None
    requested_unit: Id | None = Field(None, description="The EHR's bed request; wins over model")
    weight_kg: WeightKg | None = None
    spo2_scale2: OptionalFlag = Field(False, description="NEWS2 SpO2 scale 2 prescribed by a clinician; "
                                      "null means false")
    bed_id: Id | None = Field(None, description="The bed the EHR already admitted the patient to (HL7 PV1-3): "
                                                "recorded as is instead of chosen")


MEASUREMENTS = (
    "resp_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature_c",
)


class Vitals(InputEvent):
    """One set of observations; any subset, but at least one measurement."""

    patient_id: Id
    encounter_id: Id
    resp_rate: RespRate | None = None
    spo2: SpO2 | None = None
    on_oxygen: Flag | None = None
    systolic_bp: SystolicBp | None = None
    heart_rate: HeartRate | None = None
    consciousness: Consciousness | None = None
    temperature_c: TemperatureC | None = None

    @model_validator(mode="after")
    def _some_measurement(self) -> Vitals:
        if all(getattr(self, name) is None for name in MEASUREMENTS):
            raise PydanticCustomError(
                "no_measurement",
                "carries no measurement; send at least one of " + ", ".join(MEASUREMENTS),
            )
        return self


class Transfer(InputEvent):
    """A move that has already happened, as the EHR records it."""

    patient_id: Id
    encounter_id: Id
    to_bed_id: Id


class Discharge(InputEvent):
    """The patient left; their bed becomes dirty."""

    patient_id: Id
    encounter_id: Id
    disposition: Note | None = None


class BedStatusChange(InputEvent):
    """Housekeeping or bed management changed a bed's state."""

    bed_id: Id
    status: BedStatus
    reason: Note | None = None


class Override(InputEvent):
    """A clinician's answer to a decision; a reassign names the bed it moves to."""

    decision_id: Id
    action: Action
    clinician_id: Id
    reason: OverrideReason
    bed_id: Id | None = None
    deliberate: OptionalFlag = Field(False, description="A reassign that knowingly breaks a hard rule; "
                                     "null means false")

    @model_validator(mode="after")
    def _reassign_names_bed(self) -> Override:
        if self.action == "reassign" and self.bed_id is None:
            raise PydanticCustomError(
                "missing_field", "is required when action is 'reassign'", {"field": "bed_id"}
            )
        return self


class PageAck(InputEvent):
    """The paged clinician acknowledged; stops escalation of the page's episode as of `occurred_at` (when
    the page was read), even when the ack is processed after an escalation that time preceded."""

    page_id: Id
    clinician_id: Id


CancelKind = Annotated[Literal["admission", "transfer", "discharge"], _CHOICE]


class Cancellation(InputEvent):
    """The EHR cancelled an earlier admission, transfer or discharge (HL7 v2 A11, A12, A13)."""

    patient_id: Id
    encounter_id: Id
    cancels: CancelKind = Field(description="admission: the stay never was, its bed is freed; transfer: back to "
                                            "`bed_id`; discharge: the stay is open again")
    bed_id: Id | None = Field(None, description="transfer: the bed the patient returns to (required); discharge: the "
                                                "bed the patient is back in, when known (else a bed is found)")

    @model_validator(mode="after")
    def _transfer_names_bed(self) -> Cancellation:
        if self.cancels == "transfer" and self.bed_id is None:
            raise PydanticCustomError(
                "missing_field", "is required when cancels is 'transfer'", {"field": "bed_id"}
            )
        return self


class Swap(InputEvent):
    """Two patients exchanged beds, as the EHR records it (HL7 v2 A17)."""

    patient_id: Id
    encounter_id: Id
    other_patient_id: Id
    other_encounter_id: Id

    @model_validator(mode="after")
    def _two_encounters(self) -> Swap:
        if self.encounter_id == self.other_encounter_id:
            raise PydanticCustomError(
                "invalid_value", "must differ from encounter_id", {"field": "other_encounter_id"}
            )
        return self


INPUT_MODELS: dict[str, type[InputEvent]] = {
    "admissions": Admission,
    "vitals": Vitals,
    "transfers": Transfer,
    "discharges": Discharge,
    "bed-status": BedStatusChange,
    "overrides": Override,
    "page-acks": PageAck,
    "cancellations": Cancellation,
    "swaps": Swap,
}

# --------------------------------------------------------------------------- outputs


class ReasonOut(_Model):
    """One reason a clinician reads on a bed board: a stable code and one sentence."""

    code: str
    text: str


class PredictionOut(_Model):
    """What the model predicted from the arrival text (never the text itself)."""

    target_unit: str
    unit_probs: dict[str, float]
    acuity: int = Field(ge=1, le=5, description="ESI level, 1 the most urgent")
    acuity_probs: dict[str, float]
    needs: list[str]
    need_probs: dict[str, float]
    uncertain: bool
    model_version: str
    reasons: list[ReasonOut] = Field(
        default_factory=list,
        description="What the safety layer and the decoder changed from the model's argmax (acuity raised by "
                    "measured signs, unit made consistent), with the values and the threshold's source")


DecisionKind = Literal[
    "assignment",
    "needs_confirmation",
    "no_bed",
    "page",
    "escalation",
    "surge_level",
    "override_applied",
    "hold_lapsed",
    "observations_overdue",
    "news2",
    "no_bed_needed",
    "override_refused",
    "review_due",
    "repeat_observation",
    "cancellation_applied",
    "swap_applied",
    "planned_admission",
]


class Decision(_Model):
    """What the worker decided; `decision_id` is deterministic so consumers dedupe on it."""

    decision_id: str
    kind: DecisionKind
    hospital_id: str
    created_at: AwareDatetime
    caused_by: str = Field(description="The event_id that caused this decision")
    patient_id: str | None = None
    encounter_id: str | None = None
    unit: str | None = None
    bed_id: str | None = None
    page_id: str | None = None
    role: str | None = None
    pager: str | None = None
    priority: str | None = None
    prediction: PredictionOut | None = None
    reasons: list[ReasonOut] = Field(min_length=1)
    details: dict[str, Any] | None = Field(
        None, description="Figures only (NEWS2 parameters, surge figures, hold expiry)"
    )


class DeadLetter(_Model):
    """A message that broke the contract, kept as received (PHI: restrict access)."""

    # Byte-exact: the key and value must not lose whitespace on the way to the dead letter.
    model_config = ConfigDict(**{**_Model.model_config, "str_strip_whitespace": False})

    topic: str
    partition: int
    offset: int
    key: str | None = None
    key_encoding: Literal["utf-8", "base64"]
    value: str | None = None
    value_encoding: Literal["utf-8", "base64"]
    code: str
    message: str
    field: str | None = None
    received_at: AwareDatetime
    # When the original did not fit whole (too_large): its sizes and SHA-256s, and `value`/`key` hold a prefix.
    truncated: bool | None = None
    key_size: int | None = None
    key_sha256: str | None = None
    value_size: int | None = None
    value_sha256: str | None = None


class FeedbackOut(_Model):
    """A label the hospital gave back (an override, an early transfer), for `wardflow train --feedback`.

    Carries the arrival's free text: PHI, restrict this topic like the input topics.
    """

    feedback_id: str = Field(description="Deterministic: a replay gives the same id and bytes")
    hospital_id: str
    caused_by: str = Field(description="event_id of the override or transfer")
    encounter_id: str
    text: str
    age: float
    sex: str
    target_unit: str = Field(description="The label the hospital's action says is right")
    acuity: int | None = Field(None, ge=1, le=5)
    needs: list[str]
    source: Literal["override", "transfer"]
    who: str
    at: AwareDatetime
    previous_target_unit: str = Field(description="The label the first placement used")
    corrected: bool
    model_version: str | None = Field(None, description="The model whose prediction placed the patient, if any")


OUTPUT_MODELS: dict[str, type[_Model]] = {"decisions": Decision, "dead-letters": DeadLetter, "feedback": FeedbackOut}


def encode_output(model: BaseModel) -> bytes:
    """Canonical bytes: sorted keys and no nulls, so equal models give equal bytes."""
    return orjson.dumps(
        model.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
    )


def utcnow() -> datetime:
    """Aware 'now' for `created_at` / `received_at` (a naive one is refused)."""
    return datetime.now(UTC)
