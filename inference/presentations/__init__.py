"""Clinical presentations: the scenarios the synthetic corpus draws from.

A `Presentation` is one clinical scenario with its *base* labels (the unit and ESI level a
competent emergency clinician would give an adult, non-pregnant version of it, and the needs
it always carries) plus the phrases the templates in `inference.corpus` render it with. The
corpus applies the taxonomy's precedence (ICU > PAEDIATRICS under 16 > MATERNITY > ...) and
danger-zone vitals on top, from the drawn facts, never from the text.

Authoring shorthand (`authored`): every phrase field accepts a tuple or one string with alternatives
separated by `|`. Pronoun tokens ({pr} {Pr} {obj} {pos} {has} {is} {s} {es} {dont} {Im}
{Ive} {was}) are filled per case; lay phrases are written so that they read in the first
person ("I've had...") and in the third ("she's had...").

One module per unit group keeps each file small; `PRESENTATIONS` is their concatenation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

_PHRASE_FIELDS = ("cc", "key", "hx", "neg", "imp", "plan", "o2_text", "prehosp", "lay_key", "lay", "lay_o2")
VALID_UNITS = ("ICU", "CARDIAC", "STROKE", "MEDICINE", "SURGERY", "ORTHO", "MATERNITY", "PAEDIATRICS",
               "MENTAL_HEALTH", "DISCHARGE")
VALID_NEEDS = ("airborne_isolation", "droplet_isolation", "contact_isolation", "telemetry",
               "respiratory_support", "bariatric", "close_observation")

# Generic pertinent negatives (tags in inference.corpus._NEGATIVES) that would contradict a
# presentation whose own words mention these things: excluded automatically.
_AUTO_NEG_EXCL = (
    (("chest", "palpitation", "ecg", "troponin", "st elev", "stemi", "arrhythm"), ("cp", "ecg", "trop")),
    (("breath", "sob", "wheez", "hypox", "resp", "sats", "oxygen", "cough"), ("sob", "o2")),
    (("diarr", "d&v", "loose stool", "stool"), ("diarr", "cdiff")),
    (("cough", "coryz", "flu", "covid", "sore throat"), ("covid", "flu", "tb")),
    (("rash", "spots", "blister", "vesic", "purpur"), ("rash",)),
    (("neck stiff", "photophob", "meningi"), ("neck",)),
    (("suicid", "self-harm", "self harm", "overdose", "kill", "end my life", "end {pos} life"), ("si",)),
    (("confus", "delir", "disorient", "drowsy", "gcs", "agitat", "wander", "not making sense"), ("confusion",)),
    (("head", "loc", "knocked out", "blacked out", "concuss"), ("head",)),
    (("fever", "febrile", "temp", "rigor", "hot"), ("fever",)),
    (("vomit", "n+v", "n&v", "being sick", "haematemesis", "d&v"), ("vomit",)),
    (("bleed", "blood", "anticoag", "warfarin", "apixaban", "haemorrh", "melaena", "pr bl"), ("blood",)),
    (("weak", "speech", "numb", "facial droop", "slurred", "neuro", "deficit", "paralys", "tingl", "vision"),
     ("neuro",)),
    (("travel", "abroad", "returned from"), ("travel",)),
    (("weight", "kg", "bmi"), ("weight",)),
)


def _split(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split("|") if s.strip())
    return tuple(value)


@dataclass(frozen=True)
class Presentation:
    id: str
    unit: str                      # base unit for an adult, non-pregnant patient
    acuity: int                    # base ESI 1..5 (danger-zone vitals may lift a 3 to 2)
    cc: tuple[str, ...]            # chief complaint, one picked
    key: tuple[str, ...] = ()      # label-driving facts, all shown in clinical registers
    hx: tuple[str, ...] = ()       # further history of the episode, 1-3 picked
    neg: tuple[str, ...] = ()      # presentation-specific pertinent negatives, 0-2 picked
    imp: tuple[str, ...] = ()      # impression / working diagnosis
    plan: tuple[str, ...] = ()
    o2_text: tuple[str, ...] = ()  # oxygen phrasing when respiratory_support
    prehosp: tuple[str, ...] = ()  # pre-hospital treatment (ambulance registers)
    lay_key: tuple[str, ...] = ()  # label-driving facts in lay words, all shown
    lay: tuple[str, ...] = ()      # further lay phrases, 1-2 picked
    lay_o2: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    vit: str = "normal"            # vitals profile in inference.corpus._PROFILES
    vitals_key: bool = False       # vitals always shown (they drive the labels)
    ages: tuple[float, float] = (18.0, 90.0)
    child_p: float = 0.0           # when ages straddle 16, chance of drawing a child
    age_mode: float | None = None
    sex: str | None = None         # fixed sex ('F'/'M') or None
    preg: tuple[float, float] | None = None   # gestation range in weeks (always pregnant)
    pregnancy_problem: bool = False
    preg_ok: bool = False          # ICU scenarios: an incidental pregnancy may be drawn
    bariatric_ok: bool = True
    weight_ok: bool = True         # a body weight may be stated
    addons_ok: bool = True         # isolation add-ons (MRSA carrier, covid +ve...) may be drawn
    danger_ok: bool = True         # danger-zone vitals may be drawn for an ESI 3
    bm: tuple[float, float] | None = None
    lay_voice: str = "any"         # 'self', 'other' (family speaks), 'any'
    pmh_excl: frozenset = field(default_factory=frozenset)
    neg_excl: frozenset = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in _PHRASE_FIELDS + ("needs",):
            object.__setattr__(self, name, _split(getattr(self, name)))
        object.__setattr__(self, "pmh_excl", frozenset(_split(self.pmh_excl) if isinstance(self.pmh_excl, str)
                                                       else self.pmh_excl))
        excl = set(_split(self.neg_excl) if isinstance(self.neg_excl, str) else self.neg_excl)
        words = " ".join(self.cc + self.key + self.hx + self.neg + self.imp + self.lay_key + self.lay).lower()
        for triggers, tags in _AUTO_NEG_EXCL:
            if any(t in words for t in triggers):
                excl.update(tags)
        object.__setattr__(self, "neg_excl", frozenset(excl))
        if self.unit not in VALID_UNITS:
            raise ValueError(f"presentation {self.id}: unknown unit {self.unit!r}")
        if self.acuity not in (1, 2, 3, 4, 5):
            raise ValueError(f"presentation {self.id}: acuity must be 1..5")
        for n in self.needs:
            if n not in VALID_NEEDS:
                raise ValueError(f"presentation {self.id}: unknown need {n!r}")
        if not self.cc:
            raise ValueError(f"presentation {self.id}: needs at least one chief complaint")
        if "respiratory_support" in self.needs and not (self.o2_text and self.lay_o2):
            raise ValueError(f"presentation {self.id}: respiratory_support needs o2_text and lay_o2")
        if self.pregnancy_problem and not self.preg:
            raise ValueError(f"presentation {self.id}: a pregnancy problem needs a gestation range")

    def fingerprint(self) -> str:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in d.items()}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]


def authored(id: str, unit: str, acuity: int, **fields: Any) -> Presentation:
    """A presentation in the authoring shorthand: each phrase field (and `needs`, `pmh_excl`,
    `neg_excl`) may be one string with alternatives separated by `|`."""
    for name in (*_PHRASE_FIELDS, "needs"):
        if name in fields:
            fields[name] = _split(fields[name])
    for name in ("pmh_excl", "neg_excl"):
        if isinstance(fields.get(name), str):
            fields[name] = frozenset(_split(fields[name]))
    return Presentation(id, unit, acuity, **fields)


def _collect() -> tuple[Presentation, ...]:
    from inference.presentations import (
        breadth,
        cardiac,
        discharge_a,
        discharge_b,
        icu,
        lookalikes,
        lookalikes_b,
        maternity,
        medicine_a,
        medicine_b,
        mental_health,
        ortho,
        paediatrics,
        stroke,
        surgery,
    )
    out: list[Presentation] = []
    for mod in (icu, cardiac, stroke, medicine_a, medicine_b, surgery, ortho, maternity, paediatrics,
                mental_health, discharge_a, discharge_b, lookalikes, breadth, lookalikes_b):
        out.extend(mod.PRESENTATIONS)
    seen: set[str] = set()
    for p in out:
        if p.id in seen:
            raise ValueError(f"duplicate presentation id {p.id!r}")
        seen.add(p.id)
    return tuple(out)


PRESENTATIONS: tuple[Presentation, ...] = _collect()

__all__ = ["PRESENTATIONS", "Presentation", "VALID_NEEDS", "VALID_UNITS"]
