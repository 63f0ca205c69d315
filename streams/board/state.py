"""What the board shows, as plain functions of what it has read: decisions, page acks and the worker's views.

Pure (no Kafka, no HTTP): `HospitalBoard.apply(decision)` folds one decision in, `set_views(...)`
takes the worker's latest bed and capacity views, and `snapshot()` is the whole board as plain
data. Bed tiles come from the worker's bed view; a decision newer than the view's entry for a
bed (by event time) shows at once, before the view has caught up. Times are the hospital's own
clock (its latest event time), so the same input gives the same board, before and after a restart.

Nothing here is free text: identifiers, codes, counts, and the sentences WardFlow writes itself
in a decision's `reasons`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from allocator.hospital import Bed, Hospital

QUEUE_KINDS = ("needs_confirmation", "no_bed", "override_refused")
SEEN_LIMIT = 200_000  # decision ids remembered to ignore repeats
TAKEN = ("occupied", "held")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def same_form(value: str | None) -> str | None:
    """One instant, one string: decisions write `...Z`, the worker's views `...+00:00`."""
    at = parse_time(value)
    return at.isoformat() if at is not None else value


def duration(start: str | None, end: str | None) -> str:
    """`2h 05m` between two event times; '' when either is unknown."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return ""
    minutes = max(0, int((b - a).total_seconds() // 60))
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def minutes_between(start: str | None, end: str | None) -> int | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else max(0, int((b - a).total_seconds() // 60))


def _acuity(prediction: dict | None) -> int | None:
    value = (prediction or {}).get("acuity")
    return value if isinstance(value, int) and 1 <= value <= 5 else None


def _prediction_summary(prediction: dict | None) -> dict | None:
    if not prediction:
        return None
    target = prediction.get("target_unit")
    probability = (prediction.get("unit_probs") or {}).get(target)
    return {"target_unit": target, "probability": round(probability, 2) if isinstance(probability, (int, float)) else None,
            "acuity": _acuity(prediction), "needs": list(prediction.get("needs") or []),
            "uncertain": bool(prediction.get("uncertain")), "model_version": prediction.get("model_version")}


def _reasons(decision: dict) -> list[dict]:
    return [{"code": str(r.get("code", "")), "text": str(r.get("text", ""))} for r in decision.get("reasons") or []]


@dataclass
class BedEntry:
    """One bed's status and occupant as last known, with the event time it started."""

    status: str
    since: str | None
    encounter_id: str | None = None
    patient_id: str | None = None
    acuity: int | None = None
    occupant_sex: str | None = None


@dataclass
class QueueItem:
    """A decision waiting for a clinician; `decision_id` is the one an override must name."""

    decision_id: str
    kind: str
    created_at: str
    patient_id: str | None
    encounter_id: str
    unit: str | None
    bed_id: str | None
    prediction: dict | None
    reasons: list[dict]
    hold_expires_at: str | None = None
    state: str = "open"  # open | lapsed (the held bed was released) | rejected | refused
    shown_decision_id: str | None = None  # the latest decision about it (a refusal, a lapse)
    refused_code: str | None = None

    def actions(self) -> list[str]:
        """What a clinician can do about it (the worker checks again; these are just the sensible ones)."""
        if self.kind == "needs_confirmation" and self.state in ("open", "refused") and self.bed_id:
            return ["confirm", "reassign", "reject"]
        if self.decision_id:
            return ["reassign"]
        return []


@dataclass
class Page:
    page_id: str
    created_at: str
    unit: str | None
    patient_id: str | None
    encounter_id: str | None
    role: str | None
    priority: str | None
    band: str | None
    escalations: int = 0


@dataclass
class Review:
    encounter_id: str
    patient_id: str | None
    unit: str | None
    due_at: str | None
    band: str | None
    created_at: str


@dataclass
class Planned:
    """An elective admission in a plan (`planned_admission`): the latest plan's word for each patient."""

    decision_id: str
    plan_id: str | None
    created_at: str
    patient_id: str
    unit: str | None
    date: str | None  # YYYY-MM-DD: admission and surgery
    room: str | None
    theatre: str | None
    surgeon: str | None
    length_of_stay: int | None
    mandatory: bool
    arrived_at: str | None = None  # the patient's first bed assignment at or after the plan was made


@dataclass
class HospitalBoard:
    hospital: Hospital
    clock: str | None = None
    overlay: dict[str, tuple[datetime, BedEntry]] = field(default_factory=dict)
    queue: dict[str, QueueItem] = field(default_factory=dict)
    pages: dict[str, Page] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # page_id -> clinician
    reviews: dict[str, Review] = field(default_factory=dict)
    waiting_reasons: dict[str, list[dict]] = field(default_factory=dict)
    surge: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    seen_order: deque = field(default_factory=deque)  # bounds `seen`: repeats come soon after the original
    decisions_applied: int = 0
    view_beds: dict[str, BedEntry] | None = None
    view_waiting: list[dict] | None = None
    view_as_of: str | None = None
    capacity: dict[str, Any] | None = None
    planned: dict[str, Planned] = field(default_factory=dict)  # patient_id -> the latest plan's admission

    # ------------------------------------------------------------------ input
    def _tick(self, at: str | None) -> None:
        t, current = parse_time(at), parse_time(self.clock)
        if t is not None and (current is None or t > current):
            self.clock = t.isoformat()  # one spelling (`Z` and `+00:00` both arrive), whichever source came first

    def _bed(self, bed_id: str | None, at: str, entry: BedEntry) -> None:
        t = parse_time(at)
        if bed_id and t is not None and self.hospital.bed(bed_id) is not None:
            self.overlay[bed_id] = (t, entry)

    def apply(self, d: dict) -> bool:
        """Fold in one decision; False for a repeat (decisions are re-sent after a worker restart)."""
        decision_id = d.get("decision_id")
        if not decision_id or decision_id in self.seen:
            return False
        self.seen.add(decision_id)
        self.seen_order.append(decision_id)
        if len(self.seen_order) > SEEN_LIMIT:
            self.seen.discard(self.seen_order.popleft())
        self.decisions_applied += 1
        kind, enc = d.get("kind"), d.get("encounter_id")
        at = str(d.get("created_at") or "")  # every decision has one (the output contract); "" reads as no time
        if kind == "planned_admission":  # made when the plan was run, not an event of the hospital: no tick
            self._plan(d, at)
            return True
        self._tick(at)
        pid, acuity = d.get("patient_id"), _acuity(d.get("prediction"))
        item = self.queue.get(enc) if enc else None
        if kind == "assignment":
            self._bed(d.get("bed_id"), at, BedEntry("occupied", at, enc, pid, acuity))
            plan = self.planned.get(pid or "")
            if plan is not None and plan.arrived_at is None and (parse_time(at) or datetime.min) >= (
                    parse_time(plan.created_at) or datetime.max):
                plan.arrived_at = at
            if enc:
                self.queue.pop(enc, None)
                self.waiting_reasons.pop(enc, None)
        elif kind in ("needs_confirmation", "no_bed") and enc:
            self.queue[enc] = QueueItem(decision_id, kind, at, pid, enc, d.get("unit"), d.get("bed_id"),
                                        _prediction_summary(d.get("prediction")), _reasons(d),
                                        hold_expires_at=(d.get("details") or {}).get("hold_expires_at"),
                                        shown_decision_id=decision_id)
            if kind == "needs_confirmation" and d.get("bed_id"):
                self._bed(d["bed_id"], at, BedEntry("held", at, enc, pid, acuity))
            if kind == "no_bed":
                self.waiting_reasons[enc] = _reasons(d)
        elif kind == "override_refused" and enc:
            details = d.get("details") or {}
            if item is None:
                item = self.queue[enc] = QueueItem("", kind, at, pid, enc, d.get("unit"), None,
                                                   _prediction_summary(d.get("prediction")), [])
            item.state, item.refused_code, item.shown_decision_id = "refused", details.get("code"), decision_id
            item.reasons = _reasons(d) + [r for r in item.reasons if r not in _reasons(d)]
            item.created_at = at
        elif kind == "hold_lapsed" and enc:
            self._bed(d.get("bed_id"), at, BedEntry("available", at))
            if item is not None:
                item.state, item.shown_decision_id, item.bed_id = "lapsed", decision_id, None
                item.reasons = _reasons(d) + item.reasons
        elif kind == "override_applied" and enc:
            details = d.get("details") or {}
            if details.get("action") == "reject":
                if item is not None and item.bed_id:
                    self._bed(item.bed_id, at, BedEntry("available", at))
                if item is not None:
                    item.state, item.bed_id, item.shown_decision_id = "rejected", None, decision_id
                    item.reasons = _reasons(d)
            else:
                if item is not None and item.bed_id and item.bed_id != d.get("bed_id"):
                    self._bed(item.bed_id, at, BedEntry("available", at))
                self.queue.pop(enc, None)
        elif kind == "page" and d.get("page_id"):
            if d["page_id"] in self.acked:  # the acknowledgement was read first (another topic)
                return True
            band = (d.get("details") or {}).get("band")
            self.pages[d["page_id"]] = Page(d["page_id"], at, d.get("unit"), pid, enc, d.get("role"),
                                            d.get("priority"), band)
        elif kind == "escalation" and d.get("page_id"):
            if d["page_id"] in self.acked:
                return True
            page = self.pages.get(d["page_id"])
            if page is None:
                page = self.pages[d["page_id"]] = Page(d["page_id"], at, d.get("unit"), pid, enc, None, None, None)
            page.role, page.priority, page.escalations = d.get("role"), d.get("priority"), page.escalations + 1
        elif kind == "observations_overdue" and enc:
            details = d.get("details") or {}
            self.reviews[enc] = Review(enc, pid, d.get("unit"), details.get("due_at"), details.get("band"), at)
        elif kind == "news2" and enc:
            review = self.reviews.get(enc)
            if review is not None and (parse_time(at) or datetime.min) > (parse_time(review.created_at) or datetime.max):
                del self.reviews[enc]  # new observations: this review is done
        elif kind == "surge_level":
            self.surge = {"level": (d.get("details") or {}).get("level"), "since": at, **(d.get("details") or {}),
                          "reasons": _reasons(d)}
        return True

    def _plan(self, d: dict, at: str) -> None:
        """Keep the newest plan's admission per patient (a re-plan moves or replaces it; an older one arriving
        late changes nothing)."""
        pid = d.get("patient_id")
        if not pid:
            return
        details = d.get("details") or {}
        current = self.planned.get(pid)
        if current is not None and (current.created_at, current.decision_id) > (at, str(d["decision_id"])):
            return
        stay = details.get("length_of_stay")
        self.planned[pid] = Planned(
            str(d["decision_id"]), details.get("plan_id"), at, pid, d.get("unit"), details.get("date"),
            details.get("room"), details.get("theatre"), details.get("surgeon"),
            stay if isinstance(stay, int) else None, bool(details.get("mandatory")),
            arrived_at=current.arrived_at if current is not None and current.date == details.get("date") else None)

    def apply_ack(self, ack: dict) -> bool:
        page_id = ack.get("page_id")
        if not page_id or page_id in self.acked:
            return False
        if self.pages.pop(page_id, None) is None:
            self.acked[page_id] = str(ack.get("clinician_id", ""))  # its page has not been read yet
        return True

    def set_views(self, beds: dict | None, capacity: dict | None) -> bool:
        """The worker's latest `beds` and `capacity` views (None: unreachable; the decisions alone are shown)."""
        before = (self.view_beds, self.view_waiting, self.view_as_of, self.capacity)
        if beds is not None and self.view_as_of is not None:
            got, shown = parse_time(beds.get("as_of")), parse_time(self.view_as_of)
            if got is None or (shown is not None and got < shown):
                return False  # an older picture (a worker not owning this hospital now, or one still recovering)
        if beds is None:
            self.view_beds = self.view_waiting = self.view_as_of = None
        else:
            self.view_beds = {b["bed_id"]: BedEntry(b["status"], b.get("since"), b.get("encounter_id"),
                                                    b.get("patient_id"), b.get("acuity"), b.get("occupant_sex"))
                              for b in beds.get("beds", [])}
            self.view_waiting = list(beds.get("waiting", []))
            self.view_as_of = beds.get("as_of")
            self._tick(self.view_as_of)
            # no_bed items whose patient no longer waits (placed by a transfer, or discharged) are done
            waiting_ids = {w["encounter_id"] for w in self.view_waiting}
            for enc, item in list(self.queue.items()):
                if item.kind == "no_bed" and item.state == "open" and enc not in waiting_ids:
                    stamp, as_of = parse_time(item.created_at), parse_time(self.view_as_of)
                    if stamp is not None and as_of is not None and as_of >= stamp:
                        del self.queue[enc]
        self.capacity = capacity
        return before != (self.view_beds, self.view_waiting, self.view_as_of, self.capacity)

    # ------------------------------------------------------------------ output
    def bed_entry(self, bed_id: str) -> BedEntry:
        view = self.view_beds.get(bed_id) if self.view_beds is not None else None
        over = self.overlay.get(bed_id)
        if over is not None:
            view_since = parse_time(view.since) if view is not None else None
            if view is None or view_since is None or over[0] > view_since:
                entry = over[1]
                if view is not None and entry.occupant_sex is None:
                    entry = BedEntry(**{**asdict(entry), "occupant_sex": view.occupant_sex if entry.status in TAKEN else None})
                return entry
        return view if view is not None else BedEntry("available", None)

    def tile(self, bed: Bed) -> dict[str, Any]:
        e = self.bed_entry(bed.bed_id)
        pending = None
        if e.status == "held" and e.encounter_id in self.queue:
            pending = self.queue[e.encounter_id].decision_id
        features = [f for f, on in (("isolation", bed.negative_pressure),
                                    ("telemetry", bed.telemetry), ("bariatric", bed.bariatric),
                                    ("near station", bed.near_station)) if on]
        bay = "single room" if bed.single_room else ({"F": "female bay", "M": "male bay"}.get(bed.bay_sex or "")
                                                    or "flexible bay")
        return {"bed_id": bed.bed_id, "room_id": bed.room_id, "bay": bay, "features": features,
                "status": e.status, "since": same_form(e.since), "for": duration(e.since, self.clock),
                "patient_id": e.patient_id if e.status in TAKEN else None,
                "encounter_id": e.encounter_id if e.status in TAKEN else None,
                "acuity": e.acuity if e.status in TAKEN else None,
                "occupant_sex": e.occupant_sex if e.status in TAKEN else None, "pending_decision": pending}

    def waiting(self) -> list[dict[str, Any]]:
        """Patients waiting for a bed, longest first, with the reasons they were given."""
        if self.view_waiting is not None:
            rows = [{"encounter_id": w["encounter_id"], "patient_id": w.get("patient_id"),
                     "target_unit": w.get("target_unit"), "since": w.get("since"), "acuity": w.get("acuity")}
                    for w in self.view_waiting]
        else:
            rows = [{"encounter_id": q.encounter_id, "patient_id": q.patient_id,
                     "target_unit": (q.prediction or {}).get("target_unit"), "since": q.created_at,
                     "acuity": (q.prediction or {}).get("acuity")} for q in self.queue.values() if q.kind == "no_bed"]
        for r in rows:
            r["waited"] = duration(r["since"], self.clock)
            r["waited_minutes"] = minutes_between(r["since"], self.clock)
            r["reasons"] = self.waiting_reasons.get(r["encounter_id"], [])
            units = self.hospital.units_serving(r["target_unit"] or "") if r["target_unit"] else ()
            r["unit"] = units[0].code if units else None
        return sorted(rows, key=lambda r: (r["since"] or "", r["encounter_id"]))

    def unacknowledged_pages(self) -> list[dict[str, Any]]:
        return [asdict(p) | {"age": duration(p.created_at, self.clock)}
                for p in sorted(self.pages.values(), key=lambda p: (p.created_at, p.page_id))]

    def due_reviews(self) -> list[dict[str, Any]]:
        return [asdict(r) | {"overdue": duration(r.due_at, self.clock)}
                for r in sorted(self.reviews.values(), key=lambda r: (r.due_at or "", r.encounter_id))]

    def _upcoming(self, unit_code: str | None) -> list[Planned]:
        """Elective admissions planned from the hospital's current date on (by its clock)."""
        now = parse_time(self.clock)
        today = now.date().isoformat() if now is not None else ""
        return [p for p in self.planned.values() if (unit_code is None or p.unit == unit_code) and (p.date or "") >= today]

    def planned_admissions(self, unit_code: str | None = None) -> list[dict[str, Any]]:
        """Elective admissions planned from the hospital's current date on (by its clock), soonest first."""
        return [asdict(p) | {"status": "arrived" if p.arrived_at else "planned"}
                for p in sorted(self._upcoming(unit_code), key=lambda p: (p.date or "", p.room or "", p.patient_id))]

    def queue_items(self) -> list[dict[str, Any]]:
        return [asdict(q) | {"actions": q.actions(), "age": duration(q.created_at, self.clock)}
                for q in sorted(self.queue.values(), key=lambda q: (q.created_at, q.encounter_id))]

    def unit_summary(self, unit_code: str, waiting: list[dict] | None = None) -> dict[str, Any]:
        counts = {"occupied": 0, "available": 0, "held": 0, "dirty": 0, "blocked": 0, "total": 0}
        for bed in self.hospital.beds_in_unit(unit_code):
            status = self.bed_entry(bed.bed_id).status
            counts["total"] += 1
            counts[{"cleaning": "dirty", "closed": "blocked"}.get(status, status)] += 1
        waiting = [w for w in (waiting if waiting is not None else self.waiting()) if w["unit"] == unit_code]
        longest = max((w["waited_minutes"] or 0 for w in waiting), default=None)
        taken = counts["occupied"] + counts["held"]
        return {"unit": unit_code, "name": self.hospital.unit(unit_code).name, **counts,
                "occupancy": round(taken / counts["total"], 3) if counts["total"] else 0.0,
                "waiting": len(waiting), "longest_wait_minutes": longest,
                "longest_wait": duration(min((w["since"] for w in waiting if w["since"]), default=None), self.clock),
                "pages": sum(1 for p in self.unacknowledged_pages() if p["unit"] == unit_code),
                "queue": sum(1 for q in self.queue.values() if q.unit == unit_code),
                "planned": len(self._upcoming(unit_code))}

    def surge_figures(self) -> dict[str, Any]:
        level = (self.capacity or {}).get("surge_level") or self.surge.get("level") or 1
        return {"level": level, "since": (self.capacity or {}).get("surge_since") or self.surge.get("since"),
                "occupancy": self.surge.get("occupancy"), "waiting": self.surge.get("waiting"),
                "arrivals_last_hour": self.surge.get("arrivals_last_hour"), "reasons": self.surge.get("reasons", [])}

    def overview(self) -> dict[str, Any]:
        waiting = self.waiting()
        units = [self.unit_summary(u.code, waiting) for u in self.hospital.units]
        totals = {k: sum(u[k] for u in units) for k in ("occupied", "available", "held", "dirty", "blocked", "total")}
        totals["occupancy"] = round((totals["occupied"] + totals["held"]) / totals["total"], 3) if totals["total"] else 0.0
        return {"hospital_id": self.hospital.hospital_id, "name": self.hospital.name, "clock": self.clock,
                "units": units, "totals": totals, "waiting": len(waiting),
                "longest_wait": waiting[0]["waited"] if waiting else "", "surge": self.surge_figures(),
                "queue": len(self.queue), "pages": len(self.unacknowledged_pages()),
                "views": self.view_beds is not None}

    def unit_page(self, unit_code: str) -> dict[str, Any]:
        unit = self.hospital.unit(unit_code)
        labels = set(unit.serves)
        return {"unit": unit_code, "name": unit.name, "summary": self.unit_summary(unit_code),
                "tiles": [self.tile(b) for b in self.hospital.beds_in_unit(unit_code)],
                "waiting": [w for w in self.waiting() if w["unit"] == unit_code or (w["target_unit"] in labels)],
                "pages": [p for p in self.unacknowledged_pages() if p["unit"] == unit_code],
                "reviews": [r for r in self.due_reviews() if r["unit"] == unit_code],
                "queue": [q for q in self.queue_items() if q["unit"] == unit_code],
                "planned": self.planned_admissions(unit_code)}

    def available_beds(self) -> dict[str, list[str]]:
        """Beds a patient could be moved to now, by unit (for Reassign)."""
        out: dict[str, list[str]] = {}
        for unit in self.hospital.units:
            beds = [b.bed_id for b in self.hospital.beds_in_unit(unit.code) if self.bed_entry(b.bed_id).status == "available"]
            if beds:
                out[unit.code] = beds
        return out

    def snapshot(self) -> dict[str, Any]:
        """The whole board as plain data: equal before and after a board restart."""
        return {"overview": self.overview(), "units": {u.code: self.unit_page(u.code) for u in self.hospital.units},
                "queue": self.queue_items()}
