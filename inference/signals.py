"""Measured signals in an arrival note, parsed once into typed values (standard library only).

Arrival notes carry vital signs and bedside tests in many styles: "sats 91 RA", "SpO2 91% on
air", "O2 sat 91", "BP 76/44", "HR 128", "RR 26", "GCS 11" or "E2V2M4", "T 39.4" or "102.8F",
"BM 28", "glucose 450 mg/dL", "ketones 3.4", "lactate 5", "PEF 25% of best". `parse_signals` reads them into a
`Signals` value for the safety layer (`inference.safety`), which applies the ESI v4 decision
points to *measured values*, never to words.

Rules of reading:
* a range ("sats 88-90%", "HR 120-130") and a decade ("HR 140s", "sats high 80s") keep both
  ends; the safety layer uses the worse end;
* several readings of one sign are all kept (the worse one counts: a floor never lowers);
* "BP not recordable" / "unrecordable" / "too low to record" is a finding (`bp_unrecordable`),
  while "BP not done" simply has no value;
* targets ("target sats 88-92%") and baselines ("baseline sats 88%") are not today's readings;
* a value outside what a living patient can show (SpO2 130%, HR 900, GCS 2, T 52 C) is not
  used: it is listed in `ignored` with the reason;
* temperatures in Fahrenheit and glucose in mg/dL are converted (C, mmol/L).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GLUCOSE_MG_PER_MMOL = 18.0


@dataclass(frozen=True)
class Value:
    """One reading: `low == high` for a single number; a range or decade keeps both ends."""

    low: float
    high: float

    @property
    def single(self) -> bool:
        return self.low == self.high

    def show(self, unit: str = "") -> str:
        a = _num(self.low)
        return f"{a}{unit}" if self.single else f"{a}-{_num(self.high)}{unit}"


@dataclass(frozen=True)
class SpO2(Value):
    on_oxygen: bool | None = None  # True: on supplemental oxygen; False: on air; None: not said


@dataclass(frozen=True)
class BloodPressure:
    systolic: Value
    diastolic: float | None = None

    def show(self) -> str:
        return self.systolic.show() + (f"/{_num(self.diastolic)}" if self.diastolic is not None else " systolic")


@dataclass(frozen=True)
class Ignored:
    """A value seen but not used, and why (the number, never the surrounding text)."""

    sign: str
    value: str
    reason: str


@dataclass(frozen=True)
class Signals:
    spo2: tuple[SpO2, ...] = ()
    blood_pressure: tuple[BloodPressure, ...] = ()
    bp_unrecordable: bool = False
    heart_rate: tuple[Value, ...] = ()
    resp_rate: tuple[Value, ...] = ()
    gcs: tuple[Value, ...] = ()
    avpu: str | None = None             # worst of A/V/P/U stated ("unresponsive" = U)
    temperature_c: tuple[Value, ...] = ()
    glucose_mmol: tuple[Value, ...] = ()
    ketones_mmol: tuple[Value, ...] = ()
    lactate_mmol: tuple[Value, ...] = ()
    apnoeic: bool = False               # not breathing now
    apnoea_episodes: bool = False       # apnoeic spells reported (infants)
    pulseless: bool = False             # no pulse / in cardiac arrest now
    pregnant: bool = False
    gestation_weeks: float | None = None
    postpartum: bool = False
    hypercapnic_target: bool = False    # a stated SpO2 target of 88-92% (BTS; NEWS2 scale 2)
    news2: tuple[Value, ...] = ()       # a NEWS2 total stated in the note
    peak_flow_pct: tuple[Value, ...] = ()  # peak expiratory flow as % of best or predicted (never an absolute L/min)
    ignored: tuple[Ignored, ...] = field(default_factory=tuple)

    # worst values -------------------------------------------------------------------------
    def lowest(self, name: str) -> float | None:
        vals = getattr(self, name)
        if name == "blood_pressure":
            return min((b.systolic.low for b in vals), default=None)
        return min((v.low for v in vals), default=None)

    def highest(self, name: str) -> float | None:
        vals = getattr(self, name)
        if name == "blood_pressure":
            return max((b.systolic.high for b in vals), default=None)
        return max((v.high for v in vals), default=None)

    def lowest_spo2(self, on_oxygen: bool | None = None) -> SpO2 | None:
        """The lowest SpO2 reading; with `on_oxygen=True` only readings stated to be on oxygen."""
        vals = [s for s in self.spo2 if on_oxygen is None or s.on_oxygen is on_oxygen]
        return min(vals, key=lambda s: s.low, default=None)

    def lowest_bp(self) -> BloodPressure | None:
        return min(self.blood_pressure, key=lambda b: b.systolic.low, default=None)

    def highest_diastolic(self) -> float | None:
        return max((b.diastolic for b in self.blood_pressure if b.diastolic is not None), default=None)

    @property
    def empty(self) -> bool:
        return self == Signals(ignored=self.ignored)


def _num(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------ patterns
_I = re.IGNORECASE
NUM = r"\d{1,3}(?:\.\d+)?"
# a value: optional low/mid/high modifier, a number, optional decade "s", optional range end
VAL = (rf"(?P<mod>low|mid|high|upper|lower)?[\s-]*(?P<a>{NUM})(?P<dec>'?s\b)?"
       rf"(?:\s*(?:-|–|to)\s*(?P<b>{NUM})(?!\s*/\s*\d))?")
# what may stand between a sign's name and its value
GAP_WORDS = (r"(?:[:=~\-]|of|at|was|were|is|are|only|approx\.?|around|about|roughly|now|then|"
             r"down\s+to|dropping\s+to|dropped\s+to|falling\s+to|up\s+to|read(?:ing|s)?|measured|recorded|"
             r"ra|r/a|room\s+air|air|on\s+air|on\s+ra|in\s+air|on\s+room\s+air|"
             r"on\s+\d{1,2}(?:\.\d)?\s*(?:l|lpm|litres?|liters?|l/min)\b(?:\s*(?:o2|oxygen))?(?:\s+via\s+\w+)?|"
             r"on\s+(?:o2|oxygen|nrb|non[- ]?rebreather|high[- ]flow|hfno|cpap|niv|bipap|nasal\s+cannulae?|nc)|"
             r"mmhg|bpm|/min|sat(?:uration)?s?|rate|level|reading|capillary|venous|vbg|abg|blood)")
GAP = rf"(?P<gap>(?:\s*{GAP_WORDS}){{0,4}}\s*)"  # bounded: no backtracking blow-up on "sats sats sats ..."
AFTER_NUM = r"(?![\d.]*\d)(?!st\b|nd\b|rd\b|th\b)"

_SPO2_KW = (r"(?:spo2|sp\s?o2|spo₂|sao2|o2\s*sat(?:uration)?s?|oxygen\s+sat(?:uration)?s?|sats?|saturations?|"
            r"saturating|satting|sat'?s|pulse\s*ox(?:imetry)?|pox)")
_HR_KW = (r"(?:hr|heart\s*rate|pulse(?:\s+rate)?|p|pr|ventricular\s+rate|apex(?:\s+beat)?|"
          r"(?:fast\s+)?af(?:\s+(?:at|@|with\s+(?:a\s+)?rate\s+of|rate))?|svt(?:\s+(?:at|@))?|"
          r"sinus\s+tach(?:y|ycardia)?(?:\s+(?:at|@))?|tachycardic(?:\s+(?:at|to|@))?|"
          r"bradycardic(?:\s+(?:at|to|@))?|(?:(?:broad|narrow)\s+complex\s+)?tachy(?:cardia)?(?:\s+(?:at|of|@))?|(?:complete\s+heart\s+block|chb)(?:,?\s+(?:at|with\s+(?:a\s+)?rate\s+of|rate))?)")
_RR_KW = (r"(?:rr|resp(?:iratory)?\s*rate|resps?|respirations?|r|breathing\s+(?:at|rate(?:\s+of)?)|"
          r"tachypno(?:e|ei)c(?:\s+(?:at|to|@))?)")
_TEMP_KW = r"(?:temp(?:erature)?|t|tymp(?:anic)?|pyrexi(?:a|al)|febrile|fever(?:\s+of)?|core\s+temp)"
_GLUC_KW = (r"(?:bms?|cbgs?|bsl|blood\s+(?:sugar|glucose)s?(?:\s+level)?|glucose|gluc|sugars?|"
            r"capillary\s+(?:blood\s+)?glucose|finger[- ]?(?:prick|stick)(?:\s+glucose)?|dextro|hgt)")
_KET_KW = r"(?:(?:blood|capillary|serum|cap)\s+)?(?:ketones?|ket|bhb|beta[- ]?hydroxybutyrate)"
_LAC_KW = r"(?:lactate|lac|lactic(?:\s+acid)?)"

_OXYGEN = re.compile(
    r"\b(?:o2|oxygen|nrb|non[- ]?rebreather|rebreath\w*|high[- ]flow|hfno|cpap|niv|bipap|venturi|fio2|"
    r"nasal\s+cannulae?|nc|\d{1,2}(?:\.\d)?\s*(?:l|lpm|litres?|liters?|l/min)\b|face\s*mask|mask|bag\s+valve|bvm|"
    r"ventilated|intubated)", _I)
_AIR = re.compile(r"(?:\bra\b|\br/a\b|room\s+air|\bon\s+air\b|\bin\s+air\b|\bair\b|\boff\s+o2\b|\bno\s+o2\b)", _I)
_NOT_TODAY = re.compile(r"(?:target|aim(?:ing)?|goal|baseline|usual(?:ly)?|normally|normal\s+for\s+(?:him|her|them)|"
                        r"previous(?:ly)?|last\s+(?:week|month|year|admission)|keep|maintain)\W*(?:\w+\W+){0,3}$", _I)


def _kw(kw: str) -> re.Pattern:
    # \b before the keyword; value after the allowed gap; nothing alphabetic glued to the number
    return re.compile(rf"(?<![\w/]){kw}(?![a-z]){GAP}{VAL}{AFTER_NUM}", _I)


_SPO2 = _kw(_SPO2_KW)
_SPO2_BARE = re.compile(r"(?<![\w/.])(?P<a>\d{2,3})\s*%\s*(?P<ctx>(?:on\s+|in\s+)?(?:ra\b|r/a\b|room\s+air|air\b|"
                        r"\d{1,2}\s*l\b|o2\b|oxygen\b|nrb\b|high[- ]flow|hfno\b|niv\b|cpap\b))", _I)
_HR = _kw(_HR_KW)
_RR = _kw(_RR_KW)
_TEMP = re.compile(rf"(?<![\w/]){_TEMP_KW}(?![a-z]){GAP}{VAL}(?P<unit>\s*°?\s*(?:c|f)\b|\s*°)?{AFTER_NUM}", _I)
_GLUC = re.compile(rf"(?<![\w/]){_GLUC_KW}(?![a-z]){GAP}{VAL}(?P<unit>\s*(?:mmol(?:/l)?|mg\s*/\s*dl|mg%?))?"
                   rf"{AFTER_NUM}", _I)
_GLUC_HILO = re.compile(rf"(?<![\w/]){_GLUC_KW}\s*(?:[:=]|reads?|reading|was|of)?\s*(?P<hl>hi|high|lo|low)\b"
                        rf"(?!\s*\d)", _I)
_KET = re.compile(rf"(?<![\w/])(?P<urine>urin(?:e|ary)\s+|urine\s+dip\s+)?{_KET_KW}(?![a-z]){GAP}{VAL}"
                  rf"(?P<plus>\s*\+)?{AFTER_NUM}", _I)
_LAC = _kw(_LAC_KW)
_BP = re.compile(rf"(?<![\w/])(?:bp|b/p|blood\s+pressure|nibp|abp)(?![a-z]){GAP}(?P<mod>low|mid|high)?\s*"
                 rf"(?P<s>\d{{2,3}})(?P<dec>'?s\b)?(?:\s*(?:-|–|to)\s*(?P<s2>\d{{2,3}})(?!\s*/))?"
                 rf"(?:\s*(?:/|over)\s*(?P<d>\d{{2,3}}|palp(?:able|ated)?|p\b|doppler))?(?P<sys>\s*systolic)?"
                 rf"{AFTER_NUM}", _I)
_SBP = re.compile(rf"(?<![\w/])(?:sbp|systolic(?:\s+bp)?|sys\s*bp)(?![a-z]){GAP}{VAL}{AFTER_NUM}", _I)
_BP_UNRECORDABLE = re.compile(
    r"(?<![\w/])(?:bp|b/p|blood\s+pressure|nibp)\s*(?:was\s+|is\s+|:\s*)?(?:un-?recordable|not\s+recordable|"
    r"unrecordably\s+low|too\s+low\s+to\s+(?:record|read|measure|detect)|un-?obtainable|not\s+obtainable|"
    r"unmeasurable|not\s+measurable|unreadable|not\s+readable|undetectable|not\s+detectable|"
    r"(?:could|can)\s*(?:not|n't)\s+be\s+(?:obtained|recorded|measured|read)|not\s+picking\s+up|"
    r"(?:unable|not\s+able|failed)\s+to\s+(?:get|obtain|record|measure|read))"
    r"|(?:unable|not\s+able|failed|could\s*(?:not|n't)|can't|cannot)\s+(?:to\s+)?(?:get|obtain|record|measure|read)\s+"
    r"(?:a\s+|any\s+)?(?:bp|b/p|blood\s+pressure)"
    r"|\bno\s+(?:recordable|measurable|obtainable|palpable)\s+(?:bp|b/p|blood\s+pressure)", _I)
_GCS = re.compile(rf"(?<![\w/])gcs(?![a-z]){GAP}(?P<a>\d{{1,2}})(?:\s*/\s*15)?"
                  rf"(?:\s*(?:-|–|to)\s*(?P<b>\d{{1,2}})(?:\s*/\s*15)?)?{AFTER_NUM}", _I)
_GCS_PARTS = re.compile(r"(?<![\w])E\s*(?P<e>\d)\s*,?\s*V\s*(?P<v>\d|t)\s*,?\s*M\s*(?P<m>\d)(?!\d)", _I)
_AVPU = re.compile(r"\bavpu\s*(?:[:=\-]|is|of|was)?\s*(?P<l>[avpu])\b|\b(?P<l2>[vpu])\s+on\s+avpu\b", _I)
_AVPU_WORDS = re.compile(
    r"(?P<pre>\b(?:\w+\W+){0,3})(?P<w>unresponsive|unrousable|unrouseable|responds?\s+(?:only\s+)?to\s+pain(?:ful\s+stimuli)?|"
    r"responsive\s+(?:only\s+)?to\s+pain|pain\s+responsive|responds?\s+(?:only\s+)?to\s+voice|voice\s+responsive)\b", _I)
_HISTORY = re.compile(r"\b(?:was|were|had\s+been|briefly|transiently|initially|previously|earlier|found|not|no\s+longer|"
                      r"episode\s+of|period\s+of|now\s+not|never)\b", _I)
_PULSELESS = re.compile(
    r"(?P<pre>\b(?:\w+\W+){0,3})(?P<w>pulseless|no\s+(?:palpable\s+|central\s+|carotid\s+|femoral\s+|detectable\s+)?pulses?"
    r"(?!\s*(?:deficit|ox|oximetry|in\s+(?:the\s+)?(?:left|right|l|r)\b|in\s+(?:the\s+)?(?:foot|feet|leg|limb|arm|hand))"
    r"(?!\s+(?:distally|distal|in\s+(?:his|her|their)\b)))"
    r"|(?:in|into|ongoing|witnessed|out\s+of\s+hospital)\s+(?:cardiac\s+|cardio-?respiratory\s+)?arrest|"
    r"cpr\s+(?:in\s+progress|ongoing|underway|continuing)|ongoing\s+cpr|mechanical\s+cpr|lucas\s+(?:on|in\s+situ)|"
    r"\basystol(?:e|ic)\b|\bpea\s+arrest|\bvf\s+arrest)", _I)
_LIMB = re.compile(r"\b(?:foot|feet|leg|limb|arm|hand|toe|pedal|dorsalis|popliteal|radial|distal|peripheral)\b", _I)
_APNOEA = re.compile(
    r"(?P<pre>\b(?:\w+\W+){0,3})(?P<w>apn(?:o)?eic|not\s+breathing|respiratory\s+arrest|no\s+respiratory\s+effort|"
    r"agonal\s+(?:breathing|breaths|respirations?|gasps?|gasping)|\brr\s*[:=]?\s*0\b)"
    r"(?P<post>\s+(?:episodes?|spells?|periods?|pauses?|attacks?))?", _I)
_APNOEA_EPISODES = re.compile(r"(?<!sleep\s)(?<!obstructive\s)\b(?:apn(?:o)?eas|apn(?:o)?eic\s+(?:episodes?|spells?|"
                              r"pauses?|periods?)|episodes?\s+of\s+apn(?:o)?ea|apn(?:o)?ea\s+(?:episodes?|spells?))\b", _I)
_NEG_BEFORE = re.compile(r"\b(?:no|not|denies|denied|without|nil|never|absent|negative\s+for)\b[^.;\n]{0,25}$", _I)
_GESTATION = re.compile(
    r"\b(?P<w>\d{1,2})(?:\s*\+\s*\d)?\s*/\s*40\b"
    r"|\b(?P<w2>\d{1,2})(?:\s*\+\s*\d)?\s*(?:weeks?|wks?|/52)['’]?\s*(?:pregnant|gestation|preg\b|pg\b|pregnancy|"
    r"of\s+pregnancy|ga\b|into\s+(?:her\s+)?pregnancy|iup)"
    r"|\b(?:ga|gestation(?:al\s+age)?|pregnant)\s*(?:of|at|,)?\s*(?P<w3>\d{1,2})(?:\s*\+\s*\d)?\s*(?:weeks?|wks?|/40|/52)"
    r"|\b(?:i'?m|i\s+am|she\s+is|she's|currently|now)\s+(?P<w4>\d{1,2})(?:\s*\+\s*\d)?\s*(?:weeks?|wks?)\b(?!\s+(?:ago|of|since|post))",
    _I)
_PREGNANT = re.compile(r"(?P<pre>\b(?:\w+\W+){0,3})(?P<w>pregnant|pregnancy|\biup\b|primigravida|multigravida|"
                       r"\bprimip\b|\bmultip\b)", _I)
_PREG_NEG = re.compile(r"\b(?:not|never|no|denies|denied|negative|neg|could|possib\w*|chance|if|trying|planning|"
                       r"wants?|previous|prior|past|last)\b|n't|\?", _I)
_PREG_POS_AFTER = re.compile(r"^\s*(?:test|upt|hcg)?\s*(?:is\s+|was\s+|:\s*)?(?:positive|pos\b|\+ve)", _I)
_PREG_NEG_AFTER = re.compile(r"^\s*(?:tests?|status|unknown|unlikely|excluded|ruled\s+out|negative|neg\b|"
                             r"(?:is\s+|was\s+)(?:negative|neg\b|excluded|unlikely))", _I)
_POSTPARTUM = re.compile(r"\b(?:post-?partum|post-?natal|puerper\w+|(?:day|d)\s*\d+\s+(?:post|after)\s+(?:\w+\s+)?"
                         r"(?:delivery|partum|lscs|c-?section|caesarean|nvd|svd|birth)|\d+\s+(?:days?|weeks?)\s+(?:post|after)\s+(?:delivery|"
                         r"birth|lscs|c-?section|caesarean|nvd|svd|giving\s+birth))\b", _I)
_HYPERCAPNIC = re.compile(r"(?:target|aim|goal|keep)\w*\W+(?:\w+\W+){0,3}88\s*(?:-|–|to)\s*92|\bscale\s*2\b|"
                          r"co2\s+retainer|retains\s+co2|hypercapnic\s+(?:resp\w*\s+)?failure", _I)
_NEWS = re.compile(r"(?<![\w/])news\s*2?\s*(?:score)?\s*(?:of|=|:|was|is)?\s*(?P<a>\d{1,2})(?!\.?\d)", _I)
_NUMBERED = re.compile(r"^\d{1,3}(?:\.\d+)?$")
# peak flow as a percentage ("PEF 25% of best", "PEFR 40% predicted", "peak flow 30%"); "PEF 150" (L/min) is not
# a percentage and is not read (the patient's best is rarely stated)
_PEF = re.compile(rf"(?<![\w/])(?:pefr?|peak\s+(?:expiratory\s+)?flow(?:\s+rate)?)(?![a-z]){GAP}{VAL}\s*%", _I)

# plausible ranges (inclusive) per sign, in the stored unit
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "spo2": (40.0, 100.0), "heart_rate": (10.0, 300.0), "resp_rate": (1.0, 80.0), "systolic": (30.0, 300.0),
    "diastolic": (10.0, 200.0), "gcs": (3.0, 15.0), "temperature_c": (25.0, 45.0), "glucose_mmol": (0.5, 100.0),
    "ketones_mmol": (0.0, 20.0), "lactate_mmol": (0.0, 30.0), "news2": (0.0, 20.0), "peak_flow_pct": (5.0, 150.0),
}


def _value(m: re.Match | _FakeDecade, *, decade_width: float = 10.0) -> tuple[float, float]:
    a = float(m.group("a"))
    b = m.groupdict().get("b")
    if b is not None and float(b) >= a:  # "88-90"; "32 - 2 syncopal episodes" is a list, not a range
        return a, float(b)
    if m.groupdict().get("dec"):
        base = a
        mod = (m.group("mod") or "").lower()
        if mod in ("low", "lower"):
            return base, base + decade_width * 0.3
        if mod == "mid":
            return base + decade_width * 0.3, base + decade_width * 0.7
        if mod in ("high", "upper"):
            return base + decade_width * 0.6, base + decade_width - 1
        return base, base + decade_width - 1
    return a, a


def _not_today(text: str, start: int) -> bool:
    """A target, goal or baseline just before the sign's name: not today's reading."""
    window = re.split(r"[.;\n]\s|,", text[max(0, start - 40):start] + " ")[-1]
    return bool(_NOT_TODAY.search(window.rstrip() + " " if window.strip() else ""))


def _oxygen_context(text: str, m: re.Match) -> bool | None:
    """On oxygen (True), on air (False) or not said (None): the gap before the value and the words after it,
    up to the next reading."""
    gap = m.group("gap") or ""
    after = text[m.end():m.end() + 32]
    cut = re.search(r"(?<!on )\b\d{2,3}\s*%(?!\s*(?:venturi|o2|oxygen|fio2|face))|\b(?:hr|bp|rr|gcs|temp|t|pulse|resp)\b",
                    after, _I)
    if cut:
        after = after[:cut.start()]
    cut = re.search(r"[.;\n]|,\s*(?!on\b|via\b|with\b)", after)
    if cut:
        after = after[:cut.start()]
    for part in (gap, after):
        o2 = _OXYGEN.search(part)
        if o2 and re.search(r"\b(?:off|no|without)\s+(?:o2|oxygen)\b", part, _I):
            o2 = None
        air = _AIR.search(part)
        if o2 and air:  # "89% on air - on 4L O2": the nearer statement is the reading's
            return o2.start() < air.start()
        if o2 or air:
            return bool(o2)
    return None


class _Collector:
    def __init__(self) -> None:
        self.values: dict[str, list] = {k: [] for k in ("spo2", "blood_pressure", "heart_rate", "resp_rate", "gcs",
                                                        "temperature_c", "glucose_mmol", "ketones_mmol", "lactate_mmol", "news2",
                                                        "peak_flow_pct")}
        self.ignored: list[Ignored] = []
        self.seen: set[tuple[str, int]] = set()

    def plausible(self, sign: str, lo: float, hi: float, shown: str) -> bool:
        a, b = PLAUSIBLE[sign]
        if lo < a or hi > b:
            self.ignored.append(Ignored(sign, shown, f"outside the plausible range {a:g}-{b:g}"))
            return False
        return True

    def add(self, sign: str, value, pos: int) -> None:
        key = (sign, pos)
        if key in self.seen:
            return
        self.seen.add(key)
        self.values[sign].append(value)


_UNIT_W = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                        "eighteen", "nineteen"])}
_TENS_W = {w: 10 * i for i, w in enumerate(["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]) if i >= 2}
_NUM_WORD = re.compile(r"\b(?:" + "|".join(list(_UNIT_W) + list(_TENS_W)) + r")\b", _I)


def _two_digit(ws: list[str], i: int) -> tuple[int, int] | None:
    """A number below 100 at ws[i]: (value, words used)."""
    w = ws[i] if i < len(ws) else ""
    if w in _TENS_W:
        if i + 1 < len(ws) and ws[i + 1] in _UNIT_W and 0 < _UNIT_W[ws[i + 1]] < 10:
            return _TENS_W[w] + _UNIT_W[ws[i + 1]], 2
        return _TENS_W[w], 1
    if w in _UNIT_W:
        return _UNIT_W[w], 1
    return None


def _spoken_number(ws: list[str], i: int) -> tuple[str, int] | None:
    """The number spoken at ws[i] ("one twenty", "a hundred and ten", "one oh five", "thirty nine point two",
    "eighty eight"): (digits, words used), or None."""
    w = ws[i]
    val, n = None, 0
    if w in ("a", "one", "two") and i + 1 < len(ws) and ws[i + 1] == "hundred":
        h = 2 if w == "two" else 1
        j = i + 2 + (1 if i + 2 < len(ws) and ws[i + 2] == "and" else 0)
        rest = _two_digit(ws, j) if j < len(ws) else None
        val, n = (h * 100 + rest[0], j - i + rest[1]) if rest else (h * 100, 2)
    elif w in ("one", "two") and i + 1 < len(ws) and ws[i + 1] == "oh" and i + 2 < len(ws) \
            and ws[i + 2] in _UNIT_W and _UNIT_W[ws[i + 2]] < 10:
        val, n = (100 if w == "one" else 200) + _UNIT_W[ws[i + 2]], 3
    elif w in ("one", "two") and i + 1 < len(ws) and (ws[i + 1] in _TENS_W or
                                                      (ws[i + 1] in _UNIT_W and _UNIT_W[ws[i + 1]] >= 10)):
        rest = _two_digit(ws, i + 1)
        if rest is None:
            return None
        val, n = (100 if w == "one" else 200) + rest[0], 1 + rest[1]
    else:
        r = _two_digit(ws, i)
        if r is None:
            return None
        val, n = r
    out = str(val)
    k = i + n
    if (w in _TENS_W and n == 1 and k + 1 < len(ws) and ws[k + 1] == "point" and ws[k].isalpha()
            and ws[k] not in _UNIT_W):
        return None  # "thirty eigt point four": a misheard digit, so not 30 (nor 30.4): left as words
    if k + 1 < len(ws) and ws[k] == "point" and ws[k + 1] in _UNIT_W and _UNIT_W[ws[k + 1]] < 10:
        digits: list[str] = []
        k += 1
        while k < len(ws) and ws[k] in _UNIT_W and _UNIT_W[ws[k]] < 10 and len(digits) < 2:
            digits.append(str(_UNIT_W[ws[k]]))
            k += 1
        out += "." + "".join(digits)
        n = k - i
    return out, n


def spoken_numbers_to_digits(text: str) -> str:
    """Numbers dictated in words ("sats eighty eight percent", "BP one oh five over seventy") as digits, so
    speech-to-text notes read like typed ones. Other words are kept as they are."""
    if not _NUM_WORD.search(text):
        return text
    tokens = re.split(r"(\s+)", text)
    words = [t.lower().strip(",.;:") for t in tokens]
    idx = [k for k, t in enumerate(tokens) if t.strip()]
    ws = [words[k] for k in idx]
    out_tokens = list(tokens)
    i = 0
    while i < len(ws):
        starts = ws[i] in _UNIT_W or ws[i] in _TENS_W or (ws[i] == "a" and ws[i + 1:i + 2] == ["hundred"])
        r = _spoken_number(ws, i) if starts else None
        if r is None:
            i += 1
            continue
        digits, n = r
        first, last = idx[i], idx[i + n - 1]
        trail = tokens[last][len(tokens[last].rstrip(",.;:")):]
        out_tokens[first] = digits + trail
        for k in range(first + 1, last + 1):
            out_tokens[k] = ""
        i += n
    return re.sub(r"[ \t]{2,}", " ", "".join(out_tokens)).replace("percent", "%")


def parse_signals(text: str) -> Signals:
    """Every measured signal the note states, as typed values (see the module docstring)."""
    t = spoken_numbers_to_digits(text or "")
    c = _Collector()
    _read_spo2(t, c)
    _read_bp(t, c)
    _read_simple(t, c, _HR, "heart_rate", decade=10.0)
    _read_simple(t, c, _RR, "resp_rate", decade=10.0, single_letter="r")
    _read_gcs(t, c)
    _read_temperature(t, c)
    _read_glucose(t, c)
    _read_ketones(t, c)
    _read_simple(t, c, _LAC, "lactate_mmol", decade=1.0)
    for m in _NEWS.finditer(t):
        v = float(m.group("a"))
        if c.plausible("news2", v, v, f"{v:g}"):
            c.add("news2", Value(v, v), m.start("a"))
    for m in _PEF.finditer(t):
        if _not_today(t, m.start()):
            continue
        lo, hi = _value(m, decade_width=10.0)
        if c.plausible("peak_flow_pct", lo, hi, Value(lo, hi).show("%")):
            c.add("peak_flow_pct", Value(lo, hi), m.start("a"))
    gestation, pregnant = _pregnancy(t)
    return Signals(
        spo2=tuple(c.values["spo2"]), blood_pressure=tuple(c.values["blood_pressure"]),
        bp_unrecordable=bool(_BP_UNRECORDABLE.search(t)), heart_rate=tuple(c.values["heart_rate"]),
        resp_rate=tuple(c.values["resp_rate"]), gcs=tuple(c.values["gcs"]), avpu=_avpu(t),
        temperature_c=tuple(c.values["temperature_c"]), glucose_mmol=tuple(c.values["glucose_mmol"]),
        ketones_mmol=tuple(c.values["ketones_mmol"]), lactate_mmol=tuple(c.values["lactate_mmol"]),
        apnoeic=_apnoeic(t), apnoea_episodes=bool(_APNOEA_EPISODES.search(t)), pulseless=_pulseless(t),
        pregnant=pregnant, gestation_weeks=gestation, postpartum=bool(_POSTPARTUM.search(t)),
        hypercapnic_target=bool(_HYPERCAPNIC.search(t)), news2=tuple(c.values["news2"]),
        peak_flow_pct=tuple(c.values["peak_flow_pct"]), ignored=tuple(c.ignored))


# ------------------------------------------------------------------------------ readers
def _read_spo2(t: str, c: _Collector) -> None:
    for m in _SPO2.finditer(t):
        if _not_today(t, m.start()):
            continue
        lo, hi = _value(m)
        if not c.plausible("spo2", lo, hi, Value(lo, hi).show("%")):
            continue
        c.add("spo2", SpO2(lo, hi, _oxygen_context(t, m)), m.start("a"))
    for m in _SPO2_BARE.finditer(t):
        if any(s == "spo2" and p == m.start("a") for s, p in c.seen) or _not_today(t, m.start()):
            continue
        v = float(m.group("a"))
        if not c.plausible("spo2", v, v, f"{v:g}%"):
            continue
        ctx = m.group("ctx")
        on_o2 = not _AIR.search(ctx)
        c.add("spo2", SpO2(v, v, on_o2), m.start("a"))


def _read_bp(t: str, c: _Collector) -> None:
    for m in _BP.finditer(t):
        if _not_today(t, m.start()):
            continue
        s = float(m.group("s"))
        if m.group("s2") and float(m.group("s2")) >= s:
            lo, hi = s, float(m.group("s2"))
        elif m.group("dec"):
            lo, hi = _value(_FakeDecade(s, m.group("mod")))
        else:
            lo = hi = s
        d_raw = m.group("d")
        d = float(d_raw) if d_raw and _NUMBERED.match(d_raw) else None
        shown = Value(lo, hi).show() + (f"/{d_raw}" if d_raw else "")
        if not c.plausible("systolic", lo, hi, shown):
            continue
        if d is not None:
            if not c.plausible("diastolic", d, d, shown):
                continue
            if d >= lo:
                c.ignored.append(Ignored("blood_pressure", shown, "diastolic not below systolic"))
                continue
        c.add("blood_pressure", BloodPressure(Value(lo, hi), d), m.start("s"))
    for m in _SBP.finditer(t):
        if _not_today(t, m.start()):
            continue
        lo, hi = _value(m)
        if not c.plausible("systolic", lo, hi, Value(lo, hi).show()):
            continue
        if not any(b.systolic.low == lo for b in c.values["blood_pressure"]):
            c.add("blood_pressure", BloodPressure(Value(lo, hi), None), m.start("a"))


class _FakeDecade:
    """Adapts a BP decade ("BP 70s") to `_value`."""

    def __init__(self, a: float, mod: str | None) -> None:
        self._g = {"a": str(int(a)), "b": None, "dec": "s", "mod": mod}

    def group(self, k):
        return self._g[k]

    def groupdict(self):
        return self._g


def _read_simple(t: str, c: _Collector, pat: re.Pattern, sign: str, *, decade: float,
                 single_letter: str | None = None) -> None:
    for m in pat.finditer(t):
        if _not_today(t, m.start()):
            continue
        head = t[m.start():m.start("gap")].strip().lower()
        if sign == "heart_rate" and head == "p" and not re.match(r"\s*[:=]?\s*\d", t[m.end("gap") - 1:m.end()] or ""):
            continue
        lo, hi = _value(m, decade_width=decade)
        if head in ("p", "r", single_letter) and len(head) == 1:
            # a single letter is a sign's name only in a run of vital signs ("P 120 R 24", "T 38 P 120")
            window = t[max(0, m.start() - 25):m.end() + 25]
            if not re.search(r"\b(?:bp|hr|rr|sats?|spo2|t|temp|p|r|gcs)\s*[:=]?\s*\d", window[:25] + window[-25:], _I):
                continue
        if not c.plausible(sign, lo, hi, Value(lo, hi).show()):
            continue
        c.add(sign, Value(lo, hi), m.start("a"))


def _read_gcs(t: str, c: _Collector) -> None:
    for m in _GCS.finditer(t):
        if _not_today(t, m.start()):
            continue
        a = float(m.group("a"))
        lo, hi = (sorted((a, float(m.group("b")))) if m.group("b") else (a, a))
        if not c.plausible("gcs", lo, hi, Value(lo, hi).show()):
            continue
        c.add("gcs", Value(lo, hi), m.start("a"))
    for m in _GCS_PARTS.finditer(t):
        e, v, mo = int(m.group("e")), m.group("v"), int(m.group("m"))
        vv = 1 if v.lower() == "t" else int(v)
        if not (1 <= e <= 4 and 1 <= vv <= 5 and 1 <= mo <= 6):
            c.ignored.append(Ignored("gcs", m.group(0), "component out of range (E1-4, V1-5, M1-6)"))
            continue
        total = float(e + vv + mo)
        if not any(g.low == total for g in c.values["gcs"]):
            c.add("gcs", Value(total, total), m.start())


def _read_temperature(t: str, c: _Collector) -> None:
    for m in _TEMP.finditer(t):
        if _not_today(t, m.start()):
            continue
        lo, hi = _value(m, decade_width=1.0)
        unit = (m.group("unit") or "").strip().lower().replace("°", "").strip()
        shown = Value(lo, hi).show(unit.upper() or "")
        head = t[m.start():m.start("gap")].strip().lower()
        if unit == "f" or (not unit and 77 <= lo <= 113 and 77 <= hi <= 113):
            lo, hi = round((lo - 32) * 5 / 9, 1), round((hi - 32) * 5 / 9, 1)
        elif head == "t" and not unit and not 25 <= lo <= 45:
            continue  # "T" followed by a number that is no temperature (a time, a tooth, a vertebra)
        if not c.plausible("temperature_c", lo, hi, shown):
            continue
        c.add("temperature_c", Value(lo, hi), m.start("a"))


def _read_glucose(t: str, c: _Collector) -> None:
    for m in _GLUC.finditer(t):
        if _not_today(t, m.start()):
            continue
        lo, hi = _value(m, decade_width=1.0)
        unit = (m.group("unit") or "").strip().lower()
        shown = Value(lo, hi).show(" " + unit if unit else "")
        if unit.startswith("mg") or (not unit and lo > 45):
            lo, hi = round(lo / GLUCOSE_MG_PER_MMOL, 1), round(hi / GLUCOSE_MG_PER_MMOL, 1)
        if not c.plausible("glucose_mmol", lo, hi, shown):
            continue
        c.add("glucose_mmol", Value(lo, hi), m.start("a"))
    for m in _GLUC_HILO.finditer(t):
        hl = m.group("hl").lower()
        v = 33.4 if hl.startswith("h") else 1.0   # meters read HI above 33.3 mmol/L and LO below 1.1
        c.add("glucose_mmol", Value(v, v), m.start("hl"))


def _read_ketones(t: str, c: _Collector) -> None:
    for m in _KET.finditer(t):
        lo, hi = _value(m, decade_width=1.0)
        if m.group("urine") or m.group("plus"):
            c.ignored.append(Ignored("ketones_mmol", Value(lo, hi).show(), "urine ketones are not a blood level"))
            continue
        if _not_today(t, m.start()):
            continue
        if not c.plausible("ketones_mmol", lo, hi, Value(lo, hi).show()):
            continue
        c.add("ketones_mmol", Value(lo, hi), m.start("a"))


_AVPU_ORDER = "AVPU"


def _avpu(t: str) -> str | None:
    worst: str | None = None

    def take(level: str) -> None:
        nonlocal worst
        level = level.upper()
        if worst is None or _AVPU_ORDER.index(level) > _AVPU_ORDER.index(worst):
            worst = level

    for m in _AVPU.finditer(t):
        take(m.group("l") or m.group("l2"))
    for m in _AVPU_WORDS.finditer(t):
        if _HISTORY.search(m.group("pre") or ""):
            continue
        w = m.group("w").lower()
        take("V" if "voice" in w else "P" if "pain" in w else "U")
    return worst


def _pulseless(t: str) -> bool:
    for m in _PULSELESS.finditer(t):
        w = (m.group("w") or "").lower()
        pre = m.group("pre") or ""
        if w.startswith("no ") or w == "pulseless":
            tail = t[m.end():m.end() + 30]
            if _LIMB.search(pre) or _LIMB.search(tail[:20]) or _LIMB.search(w):
                continue  # a limb without pulses is ischaemia, not cardiac arrest
        elif w and _HISTORY.search(pre):
            continue
        if w and re.search(r"\b(?:not|never|no\s+longer|denies)\b", pre, _I):
            continue
        return True
    return False


def _apnoeic(t: str) -> bool:
    for m in _APNOEA.finditer(t):
        if m.group("post"):
            continue  # episodes: counted apart
        pre = m.group("pre") or ""
        w = m.group("w").lower()
        if re.search(r"\b(?:sleep|obstructive|osa)\b", pre, _I):
            continue
        if _HISTORY.search(pre) and not w.startswith("not breathing"):
            continue
        if w.startswith("not breathing") and re.search(r"\b(?:was|were|briefly|initially|found)\b", pre, _I):
            continue
        return True
    return False


def _pregnancy(t: str) -> tuple[float | None, bool]:
    weeks: float | None = None
    for m in _GESTATION.finditer(t):
        w = float(m.group("w") or m.group("w2") or m.group("w3") or m.group("w4"))
        if 4 <= w <= 43:
            weeks = w if weeks is None else max(weeks, w)
    pregnant = weeks is not None
    if not pregnant:
        for m in _PREGNANT.finditer(t):
            pre = m.group("pre") or ""
            after = t[m.end():m.end() + 30]
            if _PREG_POS_AFTER.search(after):
                pregnant = True
                break
            if _PREG_NEG.search(pre) or _PREG_NEG_AFTER.search(after):
                continue
            pregnant = True
            break
    return weeks, pregnant
