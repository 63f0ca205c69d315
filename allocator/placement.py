"""Where one patient should go: hard constraints checked bed by bed, first fit, with reasons.

Pure functions over plain data: the caller passes the hospital and a snapshot of bed states and
gets back either a bed or, for every unit tried, the first constraint that ruled it out. The same
filter chain decides and explains, so a reason can never disagree with the decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from allocator.hospital import Bed, Hospital, Unit

__all__ = [
    "ADULT_AGE",
    "ESCALATION_ROLE",
    "NEED_FEATURES",
    "Assignment",
    "BedSnapshot",
    "NoBed",
    "PatientToPlace",
    "Placement",
    "Reason",
    "candidate_units",
    "constraint_reasons",
    "hard_breaches",
    "is_available",
    "place",
    "unit_label",
    "unit_refusal",
]

ADULT_AGE = 16.0  # the taxonomy's PAEDIATRICS boundary: under 16 is a child
AVAILABLE = "available"
ESCALATION_ROLE = "bed_manager"  # the hospital roster role a no_bed decision pages
_OCCUPYING = frozenset({"occupied", "held"})  # statuses whose occupant_sex a flexible bay follows

# The one table of need -> bed feature. Need names are the taxonomy's; a need not listed here
# (respiratory_support, close_observation, a hospital's own) does not restrict the bed.
NEED_FEATURES: Mapping[str, tuple[str, str]] = MappingProxyType({
    # need:                (Bed attribute required, what the need is for, as reasons say it)
    "airborne_isolation": ("negative_pressure", "airborne isolation"),
    "contact_isolation": ("single_room", "contact isolation"),
    "droplet_isolation": ("single_room", "droplet isolation"),
    "telemetry": ("telemetry", "continuous cardiac monitoring"),
    "bariatric": ("bariatric", "bariatric care"),
})


@dataclass(frozen=True)
class _Feature:
    """How reasons talk about a bed feature; the dict order below is the order features filter."""

    code: str
    title: str  # "Single room" (for "Single room for contact isolation.")
    lacking: str  # "in a single room" (for "none is in a single room")
    adjective: str = ""  # "telemetry" (for "2 clean telemetry beds")
    where: tuple[str, str] = ("", "")  # ("in a single room", "in single rooms")


_FEATURES: Mapping[str, _Feature] = MappingProxyType({
    "negative_pressure": _Feature("needs_negative_pressure", "Negative-pressure room", "in a negative-pressure room",
                                  where=("in a negative-pressure room", "in negative-pressure rooms")),
    "single_room": _Feature("needs_single_room", "Single room", "in a single room",
                            where=("in a single room", "in single rooms")),
    "telemetry": _Feature("needs_telemetry", "Telemetry bed", "a telemetry bed", adjective="telemetry"),
    "bariatric": _Feature("needs_bariatric", "Bariatric bed", "a bariatric bed", adjective="bariatric"),
})

_SEX_WORDS = MappingProxyType({"F": "female", "M": "male"})
_STATUS_ORDER = ("occupied", "held", "dirty", "cleaning", "blocked", "closed")
_STATUS_WORDS = MappingProxyType({"cleaning": "being cleaned"})
_SKIPPED_SHOWN = 3  # a bed board line stays readable; NoBed still lists every unit


# ---------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class Reason:
    code: str  # short snake_case, stable for machines
    text: str  # one sentence a bed manager understands


@dataclass(frozen=True)
class PatientToPlace:
    encounter_id: str
    age: float
    sex: str  # 'F', 'M' or 'X'
    target_unit: str
    needs: frozenset[str]


@dataclass(frozen=True)
class BedSnapshot:
    status: str  # 'available' (clean, empty) | 'occupied' | 'held' | 'dirty' | 'cleaning' | 'blocked' | 'closed'
    occupant_sex: str | None = None  # for occupied/held beds


@dataclass(frozen=True)
class Assignment:
    bed_id: str
    unit: str
    overflow: bool  # the unit does not serve the target label; it was reached through overflow
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class NoBed:
    reasons: tuple[Reason, ...]  # one per candidate unit, or one no_unit_serves
    escalate_to: str = ESCALATION_ROLE  # roster role to page: a person must find or open a bed


Placement = Assignment | NoBed


# ---------------------------------------------------------------------------- placement


def candidate_units(hospital: Hospital, target_unit: str) -> tuple[Unit, ...]:
    """Units serving the label in config order, then each one's overflow units in order, once each."""
    serving = hospital.units_serving(target_unit)
    out = list(serving)
    seen = {unit.code for unit in serving}
    for unit in serving:
        for code in unit.overflow:
            if code not in seen:
                seen.add(code)
                out.append(hospital.unit(code))
    return tuple(out)


def place(patient: PatientToPlace, hospital: Hospital, beds: Mapping[str, BedSnapshot]) -> Placement:
    """First fit: the first candidate unit with a bed meeting every hard constraint, its first such bed.

    Beds missing from `beds` are available. Returns the bed with the constraints it meets, or,
    for every unit tried, the first constraint that left it no bed.
    """
    units = candidate_units(hospital, patient.target_unit)
    if not units:
        return NoBed((Reason("no_unit_serves", f"No unit in {hospital.name} serves {patient.target_unit}."),))
    required = _required_features(patient.needs)
    refusals: list[tuple[Unit, str, str]] = []
    for unit in units:
        outcome = _screen(patient, unit, hospital, beds, required)
        if isinstance(outcome, Bed):
            return _assignment(patient, unit, outcome, hospital, beds, refusals)
        refusals.append((unit, *outcome))
    return NoBed(tuple(Reason(code, f"{unit_label(unit)}: {detail}.") for unit, code, detail in refusals))


def _required_features(needs: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Bed features the needs call for, in filter order, each with the purposes that need it."""
    purposes: dict[str, list[str]] = {}
    for need in sorted(needs):
        if need in NEED_FEATURES:
            feature, purpose = NEED_FEATURES[need]
            purposes.setdefault(feature, []).append(purpose)
    return [(feature, purposes[feature]) for feature in _FEATURES if feature in purposes]


def _screen(
    patient: PatientToPlace,
    unit: Unit,
    hospital: Hospital,
    beds: Mapping[str, BedSnapshot],
    required: list[tuple[str, list[str]]],
) -> Bed | tuple[str, str]:
    """The unit's first suitable bed, or (code, detail) for the first filter that leaves none."""
    child = patient.age < ADULT_AGE
    if unit.paediatric and not child:
        return "age_mismatch", f"{_age_phrase(patient.age, 'adult')} cannot go on a paediatric unit"
    if child and not unit.paediatric:
        return "age_mismatch", f"{_age_phrase(patient.age, 'child')} cannot go on an adult unit"

    unit_beds = hospital.beds_in_unit(unit.code)
    free = [bed for bed in unit_beds if is_available(beds.get(bed.bed_id))]
    if not free:
        return "no_clean_bed", _no_clean_detail(unit_beds, beds)

    passed: list[str] = []
    for feature, purposes in required:
        kept = [bed for bed in free if getattr(bed, feature)]
        if not kept:
            return _FEATURES[feature].code, _feature_detail(free, passed, feature, purposes)
        free = kept
        passed.append(feature)

    occupants: dict[str, frozenset[str | None]] = {}
    for bed in free:
        if _sex_fits(patient.sex, bed, hospital, beds, occupants):
            return bed
    return "bay_sex", _sex_detail(patient.sex, free, passed, occupants)


def is_available(snapshot: BedSnapshot | None) -> bool:
    """A bed missing from the snapshot is available; otherwise only the 'available' status is."""
    return snapshot is None or snapshot.status == AVAILABLE


def _room_occupants(
    room_id: str, hospital: Hospital, beds: Mapping[str, BedSnapshot], cache: dict[str, frozenset[str | None]]
) -> frozenset[str | None]:
    """Sexes of the patients occupying or holding beds in a room (None where unrecorded)."""
    if room_id not in cache:
        snaps = (beds.get(bed.bed_id) for bed in hospital.beds_in_room(room_id))
        cache[room_id] = frozenset(s.occupant_sex for s in snaps if s is not None and s.status in _OCCUPYING)
    return cache[room_id]


def _sex_fits(
    sex: str, bed: Bed, hospital: Hospital, beds: Mapping[str, BedSnapshot], cache: dict[str, frozenset[str | None]]
) -> bool:
    """Same-sex accommodation: a bay takes its designated sex, a flexible bay follows its occupants.

    Anyone whose sex is not F or M needs a single room, since shared bays are single-sex; an
    occupant of unrecorded sex makes a flexible bay unusable rather than risk mixing.
    """
    if bed.single_room:
        return True
    if sex not in _SEX_WORDS:
        return False
    if bed.bay_sex is not None:
        return bed.bay_sex == sex
    return _room_occupants(bed.room_id, hospital, beds, cache) <= {sex}


# ---------------------------------------------------------------------------- reasons


def _assignment(
    patient: PatientToPlace,
    unit: Unit,
    bed: Bed,
    hospital: Hospital,
    beds: Mapping[str, BedSnapshot],
    refusals: list[tuple[Unit, str, str]],
) -> Assignment:
    overflow = patient.target_unit not in unit.serves
    skipped = "; ".join(f"{unit_label(u)} had none: {detail}" for u, _, detail in refusals[:_SKIPPED_SHOWN])
    if len(refusals) > _SKIPPED_SHOWN:
        more = len(refusals) - _SKIPPED_SHOWN
        skipped += f"; {more} more unit{'s' if more != 1 else ''} had none either"
    if overflow:
        head = Reason("overflow_unit", f"{unit_label(unit)} is the first overflow unit for "
                                       f"{patient.target_unit} with a suitable bed; {skipped}.")
    else:
        text = f"{unit_label(unit)} serves {patient.target_unit}, the patient's target unit"
        head = Reason("target_unit", f"{text}; {skipped}." if skipped else f"{text}.")
    reasons = [head, *constraint_reasons(patient, bed, hospital, beds)]
    return Assignment(bed_id=bed.bed_id, unit=unit.code, overflow=overflow, reasons=tuple(reasons))


def constraint_reasons(
    patient: PatientToPlace, bed: Bed, hospital: Hospital, beds: Mapping[str, BedSnapshot]
) -> tuple[Reason, ...]:
    """The hard constraints a suitable bed meets, one sentence each (features, age group, sex)."""
    reasons = []
    for feature, purposes in _required_features(patient.needs):
        reasons.append(Reason(_FEATURES[feature].code, f"{_FEATURES[feature].title} for {_join(purposes)}."))
    if hospital.unit(bed.unit).paediatric:
        reasons.append(Reason("age_group", f"{_capital(_age_phrase(patient.age, 'child'))} belongs on a paediatric unit."))
    sex_reason = _sex_reason(patient.sex, bed, hospital, beds)
    if sex_reason is not None:
        reasons.append(sex_reason)
    return tuple(reasons)


def unit_refusal(
    patient: PatientToPlace, unit: Unit, hospital: Hospital, beds: Mapping[str, BedSnapshot]
) -> Reason | None:
    """Why this unit has no bed for the patient (v1's first failing constraint), or None if it has one."""
    outcome = _screen(patient, unit, hospital, beds, _required_features(patient.needs))
    if isinstance(outcome, Bed):
        return None
    code, detail = outcome
    return Reason(code, f"{unit_label(unit)}: {detail}.")


# ---------------------------------------------------------------------------- breaches


def hard_breaches(
    patient: PatientToPlace, bed: Bed, hospital: Hospital, beds: Mapping[str, BedSnapshot]
) -> list[Reason]:
    """Every hard constraint that putting this patient in this bed would break, one sentence each.

    Checked straight from the bed's attributes and its room's occupants, not through the
    first-fit filter chain, so it can referee any placement (an override, the matching, the
    simulator). Whether the bed is free is not a constraint of the pair: see `is_available`.
    """
    unit = hospital.unit(bed.unit)
    where = f"Bed {bed.bed_id} ({unit_label(unit)})"
    out: list[Reason] = []
    if unit.code not in {u.code for u in candidate_units(hospital, patient.target_unit)}:
        out.append(Reason("not_candidate_unit", f"{where} is on a unit that neither serves {patient.target_unit} "
                                                f"nor is one of its overflow units."))
    child = patient.age < ADULT_AGE
    if unit.paediatric and not child:
        out.append(Reason("age_mismatch", f"{where} is on a paediatric unit and the patient is "
                                          f"{_age_phrase(patient.age, 'adult')}."))
    if child and not unit.paediatric:
        out.append(Reason("age_mismatch", f"{where} is on an adult unit and the patient is "
                                          f"{_age_phrase(patient.age, 'child')}."))
    for feature, purposes in _required_features(patient.needs):
        if not getattr(bed, feature):
            verb = "needs" if len(purposes) == 1 else "need"
            out.append(Reason(_FEATURES[feature].code,
                              f"{where} is not {_FEATURES[feature].lacking}, which {_join(purposes)} {verb}."))
    if not bed.single_room:
        if patient.sex not in _SEX_WORDS:
            out.append(Reason("bay_sex", f"{where} is in a shared bay, which is single-sex, and the patient's sex "
                                         f"is recorded as {patient.sex}."))
        elif bed.bay_sex is not None and bed.bay_sex != patient.sex:
            out.append(Reason("bay_sex", f"{where} is in a {_SEX_WORDS[bed.bay_sex]} bay and the patient is "
                                         f"{_SEX_WORDS[patient.sex]}."))
        elif bed.bay_sex is None:
            others = {s.occupant_sex for s in (beds.get(b.bed_id) for b in hospital.beds_in_room(bed.room_id)
                                                if b.bed_id != bed.bed_id)
                      if s is not None and s.status in _OCCUPYING}
            if others - {patient.sex}:
                out.append(Reason("bay_sex", f"{where} is in flexible bay {bed.room_id}, which already holds someone "
                                             f"of another or unrecorded sex, and the patient is "
                                             f"{_SEX_WORDS[patient.sex]}."))
    return out


def _sex_reason(sex: str, bed: Bed, hospital: Hospital, beds: Mapping[str, BedSnapshot]) -> Reason | None:
    if bed.single_room:
        if sex in _SEX_WORDS:
            return None
        return Reason("bay_sex", f"Single room because shared bays are single-sex and the patient's sex is recorded as {sex}.")
    word = _SEX_WORDS[sex]
    if bed.bay_sex is not None:
        return Reason("bay_sex", f"Bay {bed.room_id} is a {word} bay.")
    if _room_occupants(bed.room_id, hospital, beds, {}):
        return Reason("bay_sex", f"Bay {bed.room_id} is a flexible bay whose occupants are all {word}.")
    return Reason("bay_sex", f"Bay {bed.room_id} is a flexible bay with no one in it yet, so it becomes {word}.")


def _no_clean_detail(unit_beds: Sequence[Bed], beds: Mapping[str, BedSnapshot]) -> str:
    if not unit_beds:
        return "it has no beds"
    counts = Counter(beds[bed.bed_id].status for bed in unit_beds)  # none is available, so all are present
    known = [s for s in _STATUS_ORDER if s in counts]
    unknown = sorted(s for s in counts if s not in _STATUS_ORDER)
    parts = [f"{counts[s]} {_STATUS_WORDS.get(s, s)}" for s in known]
    parts += [f"{counts[s]} with unknown status {s!r}" for s in unknown]
    if len(unit_beds) == 1:
        return f"its only bed is {parts[0].split(' ', 1)[1]}"
    return f"all {len(unit_beds)} beds are occupied or unavailable ({', '.join(parts)})"


def _feature_detail(free: Sequence[Bed], passed: list[str], feature: str, purposes: list[str]) -> str:
    noun = _clean_beds(len(free), passed)
    lacking = _FEATURES[feature].lacking
    verb = "needs" if len(purposes) == 1 else "need"
    if len(free) == 1:
        return f"{noun} is free but it is not {lacking}, which {_join(purposes)} {verb}"
    return f"{noun} are free but none is {lacking}, which {_join(purposes)} {verb}"


def _sex_detail(sex: str, free: Sequence[Bed], passed: list[str], occupants: dict[str, frozenset[str | None]]) -> str:
    """Why every remaining bed (all in bays, since single rooms always fit) is wrong for this sex."""
    n = len(free)
    head = f"{_clean_beds(n, passed)} {'is' if n == 1 else 'are'} free but"
    if sex not in _SEX_WORDS:
        where = "it is in a shared bay" if n == 1 else "they are all in shared bays"
        return (f"{head} {where}, and a patient whose sex is recorded as {sex} needs a single room "
                f"because shared bays are single-sex")
    designated = [bed for bed in free if bed.bay_sex is not None]
    flexible = [bed for bed in free if bed.bay_sex is None]
    phrases = []
    if designated:
        rooms = len({bed.room_id for bed in designated})
        other = _SEX_WORDS[str(designated[0].bay_sex)]  # designated: bay_sex is set
        phrases.append((len(designated), f"in a {other} bay" if rooms == 1 else f"in {other} bays"))
    if flexible:
        flexible_rooms = {bed.room_id for bed in flexible}
        unrecorded = any(None in occupants.get(room, ()) for room in flexible_rooms)
        whom = "someone of another or unrecorded sex" if unrecorded else "someone of another sex"
        phrases.append((len(flexible), f"in a flexible bay that already holds {whom}" if len(flexible_rooms) == 1
                        else f"in flexible bays that already hold {whom}"))
    if len(phrases) == 1:
        subject = "it is" if n == 1 else "they are"
        body = f"{subject} {phrases[0][1]}"
    else:
        body = " and ".join(f"{k} {'is' if k == 1 else 'are'} {phrase}" for k, phrase in phrases) + ","
    return f"{head} {body} and the patient is {_SEX_WORDS[sex]}"


def _clean_beds(n: int, passed: list[str]) -> str:
    """'2 clean telemetry beds in single rooms': the beds still in play after the features passed."""
    adjectives = [_FEATURES[f].adjective for f in passed if _FEATURES[f].adjective]
    wheres = [_FEATURES[f].where for f in passed if _FEATURES[f].where[0]]
    words = [str(n), "clean", *adjectives, "bed" if n == 1 else "beds"]
    if wheres:  # the first is the most specific: a negative-pressure room is also a single room
        words.append(wheres[0][0] if n == 1 else wheres[0][1])
    return " ".join(words)


def unit_label(unit: Unit) -> str:
    """'Cardiology (CCU)', or just 'Ward 7A' when the name already shows the code."""
    return unit.name if unit.code in unit.name.split() else f"{unit.name} ({unit.code})"


def _age_phrase(age: float, noun: str) -> str:
    """'a 40-year-old adult', 'an 8-month-old child'."""
    if age < 1:
        n, unit = max(1, round(age * 12)), "month"
        if n == 12:
            n, unit = 1, "year"
    else:
        n, unit = int(age), "year"
    article = "an" if n in (11, 18) or str(n).startswith("8") else "a"
    return f"{article} {n}-{unit}-old {noun}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
