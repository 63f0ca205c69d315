"""Training examples: from the synthetic corpus or from a hospital's own CSV / JSONL file.

A hospital file holds one arrival per row: `text`, `age`, `sex`, `target_unit`, `acuity`,
`needs` (a JSON list, or labels separated by `;` or `|`; empty for none) and optionally
`split` (train / validation / test) and `id`. It may declare its own label set:

* JSONL: a first line `{"label_set": {"units": [...], "acuities": [...], "needs": [...]}}`;
* CSV: a first line `# label_set: {"units": [...], ...}` before the header;
* or a separate JSON file given with `--labels`.

Without a declaration the default taxonomy applies. Every bad row raises
`TrainingDataError` naming the file, the row (1-based, counting data rows) and the field;
messages never quote the free text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.exceptions import ModelConfigError, TrainingDataError
from inference.interface import MAX_AGE, VALID_SEXES
from inference.labels import DEFAULT_LABELS, LabelSet

REQUIRED_FIELDS = ("text", "age", "sex", "target_unit", "acuity", "needs")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    text: str
    age: float
    sex: str
    unit: str
    acuity: int
    needs: tuple[str, ...]
    split: str = "train"
    group: str = ""        # presentation id (corpus) or "" (hospital data)
    register: str = ""

    def canonical(self) -> list:
        return [self.text, round(float(self.age), 4), self.sex, self.unit, self.acuity, sorted(self.needs), self.split]


def fingerprint(examples: Sequence[Example], labels: LabelSet) -> str:
    """Content hash of the training data and its label set (order-sensitive, like training)."""
    h = hashlib.sha256(json.dumps(labels.to_dict(), sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps(ex.canonical(), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def from_cases(splits: Mapping[str, Sequence[Any]]) -> list[Example]:
    """Corpus `ClinicalCase`s, keyed by split, as examples."""
    out = []
    for split, cases in splits.items():
        for c in cases:
            out.append(Example(c.text, float(c.age), c.sex, c.target_unit, int(c.acuity), tuple(c.needs), split,
                               c.presentation, c.register))
    return out


def _parse_needs(value: Any, where: dict) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            return ()
        if s.startswith("["):
            try:
                items = json.loads(s)
            except json.JSONDecodeError:
                raise TrainingDataError("needs is not a valid JSON list", **where, field="needs") from None
            if not isinstance(items, list):
                raise TrainingDataError("needs must be a list", **where, field="needs")
        else:
            sep = ";" if ";" in s else "|" if "|" in s else ","
            items = [x.strip() for x in s.split(sep) if x.strip()]
    else:
        raise TrainingDataError("needs must be a list or a separated string", **where, field="needs")
    if any(not isinstance(x, str) for x in items):
        raise TrainingDataError("needs must hold label strings", **where, field="needs")
    return tuple(items)


def parse_row(row: dict, labels: LabelSet, *, file: str, row_no: int) -> Example:
    """Validate one raw row (dict of field -> value) against the label set."""
    where: dict[str, Any] = {"file": file, "row": row_no}
    for f in REQUIRED_FIELDS:
        if f not in row or (row[f] is None and f != "needs"):
            raise TrainingDataError("missing", **where, field=f)
    text = row["text"]
    if not isinstance(text, str) or not text.strip():
        raise TrainingDataError("must be non-empty text", **where, field="text")
    try:
        age = float(row["age"])
    except (TypeError, ValueError):
        raise TrainingDataError("must be a number of years", **where, field="age") from None
    if isinstance(row["age"], bool) or age != age or not 0 <= age <= MAX_AGE:
        raise TrainingDataError(f"must be between 0 and {MAX_AGE:g}", **where, field="age")
    sex = str(row["sex"]).strip().upper()
    if sex not in VALID_SEXES:
        raise TrainingDataError(f"must be one of {', '.join(VALID_SEXES)}", **where, field="sex")
    unit = str(row["target_unit"]).strip()
    if unit not in labels.units:
        raise TrainingDataError(f"unknown unit {unit!r} (label set: {', '.join(labels.units)})", **where,
                                field="target_unit")
    try:
        acuity = int(str(row["acuity"]).strip())
    except (TypeError, ValueError):
        raise TrainingDataError("must be an integer level", **where, field="acuity") from None
    if acuity not in labels.acuities:
        raise TrainingDataError(f"level {acuity} not in label set {list(labels.acuities)}", **where, field="acuity")
    needs = _parse_needs(row.get("needs"), where)
    for n in needs:
        if n not in labels.needs:
            raise TrainingDataError(f"unknown need {n!r} (label set: {', '.join(labels.needs) or 'none'})", **where,
                                    field="needs")
    split = str(row.get("split") or "").strip().lower() or ""
    if split and split not in SPLITS:
        raise TrainingDataError(f"must be one of {', '.join(SPLITS)}", **where, field="split")
    group = str(row.get("group") or row.get("presentation") or "")
    return Example(text, age, sex, unit, acuity, tuple(dict.fromkeys(needs)), split, group, str(row.get("register") or ""))


def _declared(obj: Any, file: str) -> LabelSet:
    try:
        return LabelSet.from_dict(obj)
    except ModelConfigError as exc:
        raise TrainingDataError(f"label_set declaration: {exc}", file=file, row=0) from None


def read_rows(path: Path) -> tuple[list[dict], LabelSet | None]:
    """Raw rows of a CSV or JSONL file, and the label set it declares (if any)."""
    file = str(path)
    if not path.exists():
        raise TrainingDataError("file not found", file=file)
    raw = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    declared: LabelSet | None = None
    rows: list[dict] = []
    if suffix in (".jsonl", ".ndjson", ".json"):
        row_no = 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"not valid JSON ({exc.msg})", file=file, row=row_no + 1) from None
            if not isinstance(obj, dict):
                raise TrainingDataError("each line must be a JSON object", file=file, row=row_no + 1)
            if "label_set" in obj and not rows and declared is None and "text" not in obj:
                declared = _declared(obj["label_set"], file)
                continue
            row_no += 1
            rows.append(obj)
    elif suffix in (".csv", ".tsv"):
        lines = raw.splitlines(keepends=True)
        if lines and lines[0].lstrip().startswith("#"):
            head = lines.pop(0).lstrip()[1:].strip()
            if head.startswith("label_set:"):
                try:
                    declared = _declared(json.loads(head[len("label_set:"):]), file)
                except json.JSONDecodeError:
                    raise TrainingDataError("label_set declaration is not valid JSON", file=file, row=0) from None
        reader = csv.DictReader(io.StringIO("".join(lines)), delimiter="\t" if suffix == ".tsv" else ",")
        missing = [f for f in REQUIRED_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise TrainingDataError(f"header lacks column(s) {', '.join(missing)}", file=file, row=0,
                                    field=missing[0])
        rows = [dict(r) for r in reader]
    else:
        raise TrainingDataError("unsupported file type (use .csv or .jsonl)", file=file)
    if not rows:
        raise TrainingDataError("no data rows", file=file)
    return rows, declared


def load_files(paths: Sequence[Path], labels: LabelSet | None = None, *, seed: int = 0,
               val_fraction: float = 0.15, test_fraction: float = 0.15,
               require_train: bool = True) -> tuple[list[Example], LabelSet]:
    """Examples from hospital files; rows without a split are assigned one, seeded."""
    examples: list[Example] = []
    label_set = labels
    for path in paths:
        rows, declared = read_rows(Path(path))
        if declared is not None:
            if label_set is not None and declared != label_set:
                raise TrainingDataError("declares a label set different from the other inputs", file=str(path))
            label_set = declared
        ls = label_set or DEFAULT_LABELS
        examples += [parse_row(r, ls, file=str(path), row_no=i + 1) for i, r in enumerate(rows)]
    label_set = label_set or DEFAULT_LABELS
    rng = random.Random(f"split-{seed}")
    out = []
    for ex in examples:
        if not ex.split:
            r = rng.random()
            split = "test" if r < test_fraction else "validation" if r < test_fraction + val_fraction else "train"
            ex = Example(ex.text, ex.age, ex.sex, ex.unit, ex.acuity, ex.needs, split, ex.group, ex.register)
        out.append(ex)
    counts = {s: sum(1 for e in out if e.split == s) for s in SPLITS}
    if require_train and (counts["train"] == 0 or counts["validation"] == 0):
        raise TrainingDataError(f"need at least one train and one validation row (got {counts})",
                                file=", ".join(str(p) for p in paths))
    return out, label_set


def load_label_file(path: Path) -> LabelSet:
    try:
        return LabelSet.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise TrainingDataError("label file not found", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"label file is not valid JSON ({exc.msg})", file=str(path)) from None
    except ModelConfigError as exc:
        raise TrainingDataError(str(exc), file=str(path)) from None


def by_split(examples: Iterable[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        out[ex.split].append(ex)
    return out


def write_jsonl(records: Iterable[dict], path: Path) -> int:
    """One JSON object per line (UTF-8, not escaped), parent folders made; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_examples(examples: Iterable[Example], path: Path) -> int:
    """JSONL in the hospital-file format (so `load_files` reads it back), with split and group."""
    return write_jsonl(({"text": e.text, "age": e.age, "sex": e.sex, "target_unit": e.unit, "acuity": e.acuity,
                         "needs": list(e.needs), "split": e.split, "group": e.group} for e in examples), path)


def corpus_examples(n_train: int, n_val: int, n_test: int, seed: int) -> list[Example]:
    """The synthetic corpus with presentation- and template-held-out validation and test splits."""
    from inference.corpus import generate_splits

    return from_cases(generate_splits(n_train, n_val, n_test, seed))
