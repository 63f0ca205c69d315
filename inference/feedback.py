"""Feedback records (the worker's `feedback` topic, exported to JSONL) as fine-tuning examples.

One record per line, as `allocator.feedback.FeedbackRecord.to_dict()` writes it (the topic adds
`feedback_id`, `hospital_id`, `caused_by`, `model_version`; they are ignored). A line may also be a
consumer's envelope whose `value` or `payload` is the record as a JSON string.

Each record is checked against the model's label set. A bad record (not JSON, no text, a unit,
acuity or need the model does not know, ...) is a `FeedbackIssue` naming the file, the line
(1-based, counting every line) and the field; it is skipped and the others are used. A file
without a single usable record raises `FeedbackDataError` (one line). Messages never quote the
free text.

`acuity` may be null or absent (the topic writes it only when known): such a record trains the
unit and needs heads only. Several records for one encounter (an override, then a transfer):
the one with the latest `at` wins (ties: the later line).

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference.data import Example, write_jsonl
from inference.exceptions import FeedbackDataError
from inference.interface import MAX_AGE, VALID_SEXES
from inference.labels import LabelSet

FEEDBACK_DATA_FILE = "feedback.jsonl"   # in a fine-tuned model's data/: the records it was tuned on


@dataclass(frozen=True)
class FeedbackIssue:
    file: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"file {self.file}, line {self.line}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedbackItem:
    """One usable feedback record (the label the hospital vouched for), with where it came from."""

    text: str
    age: float
    sex: str
    unit: str
    acuity: int | None            # None: unknown, the acuity head does not learn from this record
    needs: tuple[str, ...]
    encounter_id: str = ""
    source: str = ""
    at: str = ""
    previous_unit: str = ""
    corrected: bool = False
    file: str = ""
    line: int = 0

    def example(self, labels: LabelSet) -> Example:
        """As a training `Example`; an unknown acuity gets a placeholder level (mask it: `acuity is None`)."""
        acuity = self.acuity if self.acuity is not None else labels.acuities[0]
        return Example(self.text, self.age, self.sex, self.unit, acuity, self.needs, "train", self.encounter_id)

    def canonical(self) -> list:
        return [self.text, round(float(self.age), 4), self.sex, self.unit, self.acuity, sorted(self.needs)]

    def to_record(self) -> dict[str, Any]:
        """The record as the topic carries it (what `data/feedback.jsonl` holds)."""
        return {"encounter_id": self.encounter_id, "text": self.text, "age": self.age, "sex": self.sex,
                "target_unit": self.unit, "acuity": self.acuity, "needs": list(self.needs), "source": self.source,
                "at": self.at, "previous_target_unit": self.previous_unit, "corrected": self.corrected}


@dataclass
class FeedbackSet:
    items: list[FeedbackItem]
    issues: list[FeedbackIssue]
    files: list[dict[str, Any]]        # per file: path, sha256, lines, records, usable, rejected
    superseded: int = 0                # records replaced by a later one for the same encounter

    def fingerprint(self) -> str:
        return items_fingerprint(self.items)


def items_fingerprint(items: Iterable[FeedbackItem]) -> str:
    h = hashlib.sha256(b"feedback-v1\n")
    for it in items:
        h.update(json.dumps(it.canonical(), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _timestamp(value: str) -> float:
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_record(obj: Any, labels: LabelSet, *, file: str,
                 line: int) -> tuple[FeedbackItem | None, list[FeedbackIssue]]:
    """One record checked against `labels`: the item, or None and every problem found (field by field)."""
    issues: list[FeedbackIssue] = []

    def bad(field: str | None, message: str) -> None:
        issues.append(FeedbackIssue(file, line, field, message))

    if isinstance(obj, dict) and "text" not in obj:
        for env in ("value", "payload"):              # a consumer's envelope around the message
            if isinstance(obj.get(env), str):
                try:
                    obj = json.loads(obj[env])
                except json.JSONDecodeError as exc:
                    bad(env, f"envelope {env!r} is not valid JSON ({exc.msg})")
                    return None, issues
                break
    if not isinstance(obj, dict):
        bad(None, "each line must be a JSON object (one feedback record)")
        return None, issues

    text = obj.get("text")
    if "text" not in obj or text is None:
        bad("text", "missing")
    elif not isinstance(text, str) or not text.strip():
        bad("text", "must be non-empty text")
    age = obj.get("age")
    if age is None:
        bad("age", "missing")
    else:
        try:
            a = float(age)
            if isinstance(age, bool) or a != a or not 0 <= a <= MAX_AGE:
                raise ValueError
        except (TypeError, ValueError):
            bad("age", f"must be a number of years between 0 and {MAX_AGE:g}")
    sex = str(obj.get("sex") or "").strip().upper()
    if sex not in VALID_SEXES:
        bad("sex", f"must be one of {', '.join(VALID_SEXES)}" if obj.get("sex") else "missing")
    unit = obj.get("target_unit")
    if not isinstance(unit, str) or not unit.strip():
        bad("target_unit", "missing")
    elif unit.strip() not in labels.units:
        bad("target_unit", f"unknown unit {unit.strip()!r} (model label set: {', '.join(labels.units)})")
    acuity = obj.get("acuity")
    if acuity is not None:
        digits = str(acuity).strip().lstrip("-").isdigit()
        if isinstance(acuity, bool) or not isinstance(acuity, (int, str)) or not digits:
            bad("acuity", "must be an integer level or null")
            acuity = None
        else:
            acuity = int(str(acuity).strip())
            if acuity not in labels.acuities:
                bad("acuity", f"level {acuity} not in the model's label set {list(labels.acuities)}")
    needs = obj.get("needs")
    if needs is None:
        bad("needs", "missing (use [] for none)")
        needs = []
    elif not isinstance(needs, list) or any(not isinstance(n, str) for n in needs):
        bad("needs", "must be a list of need labels")
        needs = []
    else:
        unknown = [n for n in needs if n not in labels.needs]
        if unknown:
            bad("needs", f"unknown need(s) {', '.join(repr(n) for n in unknown)} "
                         f"(model label set: {', '.join(labels.needs) or 'none'})")
    at = obj.get("at")
    if at is not None:
        try:
            _timestamp(str(at))
        except ValueError:
            bad("at", "must be an RFC 3339 date-time")
    if issues or not isinstance(text, str) or age is None or not isinstance(unit, str):
        return None, issues  # each of these has its issue above
    prev = str(obj.get("previous_target_unit") or "").strip()
    corrected = obj.get("corrected")
    item = FeedbackItem(
        text=text, age=float(age), sex=sex, unit=unit.strip(), acuity=acuity, needs=tuple(dict.fromkeys(needs)),
        encounter_id=str(obj.get("encounter_id") or ""), source=str(obj.get("source") or ""),
        at=str(at or ""), previous_unit=prev,
        corrected=bool(corrected) if isinstance(corrected, bool) else bool(prev) and prev != unit.strip(),
        file=file, line=line)
    return item, []


def read_feedback_file(path: Path, labels: LabelSet) -> tuple[list[FeedbackItem], list[FeedbackIssue], dict]:
    """Usable items, issues and a summary of one JSONL file (duplicates not yet resolved)."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise FeedbackDataError(f"file {file}: feedback file not found")
    items: list[FeedbackItem] = []
    issues: list[FeedbackIssue] = []
    n_lines = n_records = 0
    with open(path, encoding="utf-8-sig", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise FeedbackDataError(f"file {file}: not UTF-8 text (expected JSON lines)") from None
    for n, raw in enumerate(lines, start=1):
        n_lines = n
        if not raw.strip():
            continue
        n_records += 1
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            issues.append(FeedbackIssue(file, n, None, f"not valid JSON ({exc.msg})"))
            continue
        item, bad = parse_record(obj, labels, file=file, line=n)
        if item is None:
            issues += bad
        else:
            items.append(item)
    summary = {"path": file, "sha256": file_sha256(path), "lines": n_lines, "records": n_records,
               "usable": len(items), "rejected": len({i.line for i in issues})}
    if not items:
        if not n_records:
            raise FeedbackDataError(f"file {file}: no feedback records (empty file)")
        first = issues[0]
        fields = sorted({i.field or "line" for i in issues})
        raise FeedbackDataError(
            f"file {file}: no usable feedback record ({n_records} rejected; fields: {', '.join(fields)}; "
            f"first: line {first.line}{f', field {first.field!r}' if first.field else ''}: {first.message})")
    return items, issues, summary


def _order_key(item: FeedbackItem, seq: int) -> tuple[float, int]:
    try:
        return (_timestamp(item.at) if item.at else float("-inf"), seq)
    except ValueError:
        return (float("-inf"), seq)


def latest_per_encounter(items: Sequence[FeedbackItem]) -> tuple[list[FeedbackItem], int]:
    """One record per encounter (latest `at`, then the later one); records without an id all stay.
    Keeps the input order of the survivors. Returns them and how many were superseded."""
    best: dict[str, tuple[tuple[float, int], int]] = {}
    for seq, it in enumerate(items):
        if not it.encounter_id:
            continue
        key = _order_key(it, seq)
        if it.encounter_id not in best or key >= best[it.encounter_id][0]:
            best[it.encounter_id] = (key, seq)
    keep = {seq for _, seq in best.values()}
    out = [it for seq, it in enumerate(items) if not it.encounter_id or seq in keep]
    return out, len(items) - len(out)


def load_feedback(paths: Sequence[Path], labels: LabelSet) -> FeedbackSet:
    """Every file's usable records (latest per encounter across all files), issues, file summaries."""
    if not paths:
        raise FeedbackDataError("no feedback file given")
    items: list[FeedbackItem] = []
    issues: list[FeedbackIssue] = []
    files: list[dict] = []
    for p in paths:
        it, iss, summary = read_feedback_file(Path(p), labels)
        items += it
        issues += iss
        files.append(summary)
    items, superseded = latest_per_encounter(items)
    return FeedbackSet(items, issues, files, superseded)


def write_feedback(items: Iterable[FeedbackItem], path: Path) -> int:
    return write_jsonl((it.to_record() for it in items), path)
