"""The hospital's interface profile: how an EHR's locations and fields map onto this hospital.

HL7 v2 names a location as point of care ^ room ^ bed ^ facility (PV1-3, NPU-1; the PL data
type); FHIR names it by a Location id. Neither matches the bed ids in the hospital file, so the
hospital file carries a mapping table (`hl7: locations:`). Pure data and one lookup function:
no HL7 parsing here (that is `streams.gateway`), so the table can be tested on its own.

Matching: the most specific rule wins (a rule naming point of care, room and bed beats one
naming point of care and room, which beats one naming the point of care only); a rule that
names a facility only matches that facility. A rule gives a unit, and a bed either by id or by a
template such as `"{room}-{bed}"` filled from the message's components.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, get_args

# Where an admission's free text may come from, tried in the configured order.
TextSource = Literal["PV2-3", "NTE", "OBX", "DG1-4", "PV2-12", "EVN-4"]
EncounterSource = Literal["PV1-19", "PID-18", "PV1-50"]
TEXT_SOURCES: tuple[str, ...] = get_args(TextSource)
ENCOUNTER_SOURCES: tuple[str, ...] = get_args(EncounterSource)
TEMPLATE_FIELDS = ("point_of_care", "room", "bed", "facility")


@dataclass(frozen=True)
class Location:
    """A location as the EHR sent it (PL components 1 to 4, unescaped); empty strings when absent."""

    point_of_care: str = ""
    room: str = ""
    bed: str = ""
    facility: str = ""

    def __str__(self) -> str:
        return "^".join((self.point_of_care, self.room, self.bed, self.facility)).rstrip("^")


@dataclass(frozen=True)
class LocationRule:
    """One row of the mapping table; `bed_id` may be a template using {point_of_care}, {room}, {bed}, {facility}."""

    point_of_care: str
    unit: str
    room: str | None = None
    bed: str | None = None
    facility: str | None = None
    bed_id: str | None = None

    @property
    def specificity(self) -> int:
        return (self.room is not None) * 2 + (self.bed is not None) * 4 + (self.facility is not None)

    def matches(self, loc: Location) -> bool:
        return (self.point_of_care == loc.point_of_care
                and (self.room is None or self.room == loc.room)
                and (self.bed is None or self.bed == loc.bed)
                and (self.facility is None or self.facility == loc.facility))

    @property
    def is_template(self) -> bool:
        return self.bed_id is not None and any(name for _, name, _, _ in string.Formatter().parse(self.bed_id) if name)


@dataclass(frozen=True)
class ResolvedLocation:
    unit: str
    bed_id: str | None  # None: the location names a unit (or a bed the template cannot fill)


@dataclass(frozen=True)
class Hl7Profile:
    """What the HL7 v2 gateway needs to know about one hospital's feed."""

    timezone: str  # IANA zone for HL7 timestamps sent without an offset
    locations: tuple[LocationRule, ...] = ()
    free_text: tuple[str, ...] = ("PV2-3", "NTE", "DG1-4")
    encounter_id: tuple[str, ...] = ("PV1-19", "PID-18")
    patient_id_types: tuple[str, ...] = ("MR",)  # PID-3 identifier types preferred, in order
    inpatient_classes: tuple[str, ...] = ("I",)  # PV1-2 classes for which an A04 registration needs a bed


def template_problem(template: str) -> str | None:
    """Why a bed_id template cannot be used, or None."""
    try:
        names = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"is not a valid template: {exc}"
    unknown = [n for n in names if n not in TEMPLATE_FIELDS]
    if unknown:
        return f"uses {{{unknown[0]}}}; a template may use only " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    return None


def resolve_location(rules: tuple[LocationRule, ...], loc: Location) -> tuple[LocationRule, ResolvedLocation] | None:
    """The most specific rule matching `loc` and where it points; None when no rule matches."""
    best: LocationRule | None = None
    for rule in rules:
        if rule.matches(loc) and (best is None or rule.specificity > best.specificity):
            best = rule
    if best is None:
        return None
    bed_id = best.bed_id
    if bed_id is not None and best.is_template:
        if not loc.bed and "{bed}" in bed_id:
            return best, ResolvedLocation(best.unit, None)
        bed_id = bed_id.format(point_of_care=loc.point_of_care, room=loc.room, bed=loc.bed, facility=loc.facility)
    return best, ResolvedLocation(best.unit, bed_id)
