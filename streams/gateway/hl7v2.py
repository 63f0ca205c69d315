"""HL7 v2 (2.1 to 2.8) messages -> contract events, as pure functions; and the ACK/NAK that answers them.

Parsing uses python-hl7 (`hl7` on PyPI): small, maintained, permissive about what real feeds
send (Z-segments, missing optional fields, trailing separators, versions 2.1 to 2.8), with
escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\) and repetitions handled by the library. hl7apy was
the alternative: it validates every message against the version's structure, which refuses
the vendor quirks the samples show (Z-segments in the middle, ADT_A05 structures on an A03,
missing EVN) and costs milliseconds per message. What the library does not do is the edge
this module owns: the raw bytes are checked (encoding characters, batch envelopes, segment
terminators) and decoded with the character set MSH-18 names before python-hl7 parses text.

Everything here is a pure function of the bytes, the hospital and its mapping table: no
Kafka, no sockets, no clock (the ACK's own timestamp is passed in).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo

import hl7
from pydantic import ValidationError

from allocator.hospital import Hospital
from allocator.locations import Hl7Profile, Location, resolve_location
from streams.contract.models import (
    Admission,
    BedStatusChange,
    Cancellation,
    Discharge,
    InputEvent,
    Swap,
    Transfer,
    Vitals,
)

AckCode = Literal["AA", "AE", "AR"]

# HL7 table 0357 (message error condition codes) used in ERR.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
APPLICATION_INTERNAL_ERROR = 207
_ERROR_NAMES = {100: "Segment sequence error", 101: "Required field missing", 102: "Data type error",
                103: "Table value not found", 200: "Unsupported message type", 201: "Unsupported event code",
                202: "Unsupported processing id", 203: "Unsupported version id", 204: "Unknown key identifier",
                207: "Application internal error"}

ADT_SUPPORTED = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A17", "A20")
VITAL_STATUSES = frozenset("FCRAUP")  # OBX-11: final, corrected, results entered, amended, changed to final, preliminary
NULL = '""'  # the HL7 explicit null
# The fields read in each segment read: everything else (names, addresses, insurance, Z-segments ...)
# is blanked before python-hl7 parses the message, which is faster and keeps PHI out of memory.
# MSH is read from the raw bytes (`read_header`); python-hl7 only needs its separators.
READ_FIELDS: dict[str, frozenset[int]] = {
    "MSH": frozenset(), "EVN": frozenset({1, 2, 4, 6}), "PID": frozenset({3, 7, 8, 18}),
    "PV1": frozenset({2, 3, 19, 36, 50}), "PV2": frozenset({3, 12}), "NTE": frozenset({3}),
    "OBR": frozenset({7}), "OBX": frozenset({2, 3, 5, 6, 11, 14}), "DG1": frozenset({3, 4}),
    "NPU": frozenset({1, 2})}
READ_SEGMENTS = frozenset(READ_FIELDS)
_LAST_READ = {seg: max(fields, default=0) for seg, fields in READ_FIELDS.items()}


class Hl7Refused(Exception):
    """A message that cannot become contract events: the NAK's ERR content and the dead letter's reason."""

    def __init__(self, ack: AckCode, hl7_code: int, code: str, message: str, *, segment: str | None = None,
                 field: int | None = None, component: int | None = None, sequence: int = 1) -> None:
        super().__init__(message)
        self.ack = ack
        self.hl7_code = hl7_code
        self.code = code
        self.message = message
        self.segment = segment
        self.field = field
        self.component = component
        self.sequence = sequence

    @property
    def where(self) -> str | None:
        """`PV1-3.3` style: what the dead letter's `field` says."""
        if self.segment is None:
            return None
        out = self.segment + (f"-{self.field}" if self.field else "")
        return out + (f".{self.component}" if self.component else "")


@dataclass(frozen=True)
class Header:
    """MSH as read from the raw bytes, enough to answer even a message that cannot be parsed."""

    field_sep: str = "|"
    encoding: str = "^~\\&"
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = ""
    charset: str = ""
    sent_at: str = ""  # MSH-7

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}" if self.trigger else self.message_type


@dataclass(frozen=True)
class Outbound:
    """One contract event and the input topic (unprefixed) it goes to."""

    topic: str
    event: InputEvent


@dataclass(frozen=True)
class Mapped:
    """A message accepted: the events to publish (maybe none) and a note for MSA-3 when there are none."""

    header: Header
    events: tuple[Outbound, ...]
    note: str | None = None


# --------------------------------------------------------------------------- bytes -> text


_CHARSETS = {"": "utf-8", "ASCII": "ascii", "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3",
             "8859/4": "iso8859-4", "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7",
             "8859/8": "iso8859-8", "8859/9": "iso8859-9", "8859/15": "iso8859-15", "UNICODE UTF-8": "utf-8",
             "UNICODE": "utf-8", "UTF-8": "utf-8", "ISO IR192": "utf-8",
             "ISO IR6": "ascii", "ISO IR100": "latin-1", "WINDOWS-1252": "cp1252", "CP1252": "cp1252"}
_SEGMENT_SPLIT = re.compile(r"\r\n|\n\r|\r|\n")
_LOST_TERMINATORS = re.compile(r" (EVN|PID|PV1|PV2|OBR|OBX|NK1|NPU|MRG)\|")


def read_header(raw: bytes) -> Header:
    """MSH from the raw bytes (ASCII by the standard), or Hl7Refused: the first check every frame gets."""
    data = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    data = data.lstrip(b"\r\n \t")
    if data[:3] in (b"FHS", b"BHS"):
        raise Hl7Refused("AR", UNSUPPORTED_MESSAGE_TYPE, "batch_not_supported",
                         "batch envelopes (FHS/BHS) are not accepted over MLLP: send one message per frame",
                         segment=data[:3].decode())
    if not data.startswith(b"MSH") or len(data) < 8:
        raise Hl7Refused("AR", SEGMENT_SEQUENCE_ERROR, "not_hl7", "the message does not start with an MSH segment",
                         segment="MSH")
    sep = data[3:4]
    ends = [i for i in (data.find(b"\r", 0, 4096), data.find(b"\n", 0, 4096)) if i >= 0]
    first = data[: min(ends) if ends else 4096].decode("latin-1")
    fields = first.split(sep.decode("latin-1"))
    enc = fields[1] if len(fields) > 1 else ""
    ok_len = len(enc) == 4 or (len(enc) == 5 and enc[4] == "#")
    chars = sep.decode("latin-1") + enc
    if (not ok_len or len(set(chars)) != len(chars) or not all(0x21 <= ord(c) < 0x7F and not c.isalnum() for c in chars)):
        raise Hl7Refused("AR", DATA_TYPE_ERROR, "bad_encoding_characters",
                         "MSH-1/MSH-2 must be a field separator and four distinct printable non-alphanumeric "
                         "encoding characters (usually |^~\\&)", segment="MSH", field=2)

    def get(n: int, component: int = 1) -> str:
        value = fields[n - 1] if len(fields) >= n else ""
        return value.split(enc[0])[component - 1].strip() if len(value.split(enc[0])) >= component else ""

    header = Header(field_sep=sep.decode(), encoding=enc, sending_app=get(3), sending_facility=get(4),
                    receiving_app=get(5), receiving_facility=get(6), message_type=get(9, 1), trigger=get(9, 2),
                    control_id=get(10), processing_id=get(11) or "P", version=get(12),
                    charset=get(18).split(enc[1])[0].strip(),  # MSH-18 may repeat: the first is the message's
                    sent_at=get(7))
    return header


def decode_text(raw: bytes, header: Header) -> str:
    """The message as text with `\\r` between segments: charset from MSH-18, blank segments dropped."""
    codec = _CHARSETS.get(header.charset.upper())
    if codec is None:
        raise Hl7Refused("AR", TABLE_VALUE_NOT_FOUND, "unknown_charset",
                         f"MSH-18 character set {header.charset!r} is not supported (ASCII, 8859/n, UNICODE UTF-8)",
                         segment="MSH", field=18)
    data = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_charset",
                         f"the bytes are not valid {codec} (MSH-18 {header.charset or 'empty, read as UTF-8'}) "
                         f"at byte {exc.start}", segment="MSH", field=18) from None
    segments: list[str] = []
    for seg in _SEGMENT_SPLIT.split(text.strip("\r\n")):
        if not seg.strip():
            continue
        seg = seg.rstrip(" ")
        if len(seg) == 3:
            seg += header.field_sep  # a bare `PV1`: a segment with no fields
        if not segments:
            if _LOST_TERMINATORS.search(seg):
                raise Hl7Refused("AR", SEGMENT_SEQUENCE_ERROR, "lost_segment_terminators",
                                 "segments are separated by spaces, not carriage returns: the message was mangled "
                                 "on the way", segment="MSH")
            segments.append(f"MSH{header.field_sep}{header.encoding}")
            continue
        keep = READ_FIELDS.get(seg[:3])
        if keep is None:
            continue  # IN1, GT1, NK1, Z-segments ...: never read, so never parsed
        last = _LAST_READ[seg[:3]]
        fields = seg.split(header.field_sep, last + 1)[: last + 1]
        segments.append(header.field_sep.join([f if i == 0 or i in keep else "" for i, f in enumerate(fields)]))
    return "\r".join(segments)


def parse(raw: bytes, header: Header | None = None) -> tuple[Header, hl7.Message]:
    header = header or read_header(raw)
    text = decode_text(raw, header)
    try:
        message = hl7.parse(text)
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises several kinds on broken text
        raise Hl7Refused("AR", SEGMENT_SEQUENCE_ERROR, "unparseable", f"python-hl7 cannot parse the message: {exc}",
                         segment="MSH") from None
    return header, message


# --------------------------------------------------------------------------- reading fields


class _Msg:
    """Typed, null-aware access to a parsed message: `value('PV1', 3, component=2)`."""

    def __init__(self, message: hl7.Message) -> None:
        self.m = message
        self.by_id: dict[str, list[hl7.Segment]] = {}
        for seg in message:
            self.by_id.setdefault(str(seg[0]).strip(), []).append(seg)

    def segments(self, seg_id: str) -> list[hl7.Segment]:
        return self.by_id.get(seg_id, [])

    def has(self, seg_id: str) -> bool:
        return seg_id in self.by_id

    def value(self, seg_id: str | hl7.Segment, n: int, component: int = 1, repetition: int = 1,
              subcomponent: int = 1) -> str:
        """A leaf value, unescaped and stripped; '' for absent or the HL7 null."""
        seg = self.segments(seg_id)[0] if isinstance(seg_id, str) and self.has(seg_id) else seg_id
        if isinstance(seg, str) or seg is None or len(seg) <= n:
            return ""
        try:
            value = seg.extract_field(1, n, repetition, component, subcomponent)
        except (IndexError, KeyError):
            return ""
        if not value:
            return ""
        if self.m.esc in value:
            value = self.m.unescape(value)
        value = value.strip()
        return "" if value == NULL else value

    def repetitions(self, seg: hl7.Segment, n: int) -> int:
        if len(seg) <= n:
            return 0
        f = seg[n]
        return len(f) if isinstance(f, hl7.Field) and f and isinstance(f[0], hl7.Repetition) else 1


def _require(value: str, seg: str, n: int, what: str, component: int | None = None) -> str:
    if not value:
        raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_field", f"{seg}-{n}{f'.{component}' if component else ''}"
                         f" ({what}) is required", segment=seg, field=n, component=component)
    return value


_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?$")


def parse_ts(value: str, tz: ZoneInfo, *, where: tuple[str, int]) -> datetime:
    """An HL7 TS/DTM to an aware datetime; at least minute precision; no offset: the hospital's zone."""
    match = _TS.match(value.strip())
    if not match or match.group(5) is None:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_timestamp",
                         f"{where[0]}-{where[1]} must be an HL7 timestamp YYYYMMDDHHMM[SS[.S]][+/-ZZZZ] "
                         f"(at least to the minute)", segment=where[0], field=where[1])
    y, mo, d, h, mi, s, frac, sign, oh, om = match.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        if sign:
            offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
            zone: timezone | ZoneInfo = timezone(offset)
        else:
            zone = tz
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro, tzinfo=zone)
    except ValueError:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_timestamp", f"{where[0]}-{where[1]} is not a valid date and time",
                         segment=where[0], field=where[1]) from None


def _first_ts(msg: _Msg, tz: ZoneInfo, places: Sequence[tuple[str, int]], header: Header) -> datetime:
    for seg, n in places:
        value = header.sent_at if (seg, n) == ("MSH", 7) else msg.value(seg, n)
        if value:
            return parse_ts(value, tz, where=(seg, n))
    seg, n = places[-1]
    raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_field", f"{seg}-{n} (message time) is required",
                     segment=seg, field=n)


# --------------------------------------------------------------------------- identity


def patient_id(msg: _Msg, pid: hl7.Segment, profile: Hl7Profile) -> str:
    """PID-3: the first identifier of a preferred type (CX.5), else the first identifier at all."""
    ids: list[tuple[str, str]] = []
    for r in range(1, msg.repetitions(pid, 3) + 1):
        value = msg.value(pid, 3, 1, r)
        if value:
            ids.append((value, msg.value(pid, 3, 5, r)))
    if not ids:
        raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_field",
                         "PID-3 (patient identifier list) holds no identifier", segment="PID", field=3)
    for wanted in profile.patient_id_types:
        for value, kind in ids:
            if kind == wanted:
                return value
    return ids[0][0]


def encounter_id(msg: _Msg, pid: hl7.Segment, pv1: hl7.Segment | None, profile: Hl7Profile) -> str:
    for source in profile.encounter_id:
        seg_id, n = source.split("-")
        seg = pid if seg_id == "PID" else pv1
        if seg is not None and (value := msg.value(seg, int(n))):
            return value
    seg_id, n = profile.encounter_id[0].split("-")
    raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_field",
                     f"{' or '.join(profile.encounter_id)} (visit or account number) is required to know the stay",
                     segment=seg_id, field=int(n))


def _age(dob_text: str, at: datetime) -> float:
    match = re.match(r"^(\d{4})(\d{2})(\d{2})", dob_text)
    if not match:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_timestamp", "PID-7 (date of birth) must start YYYYMMDD",
                         segment="PID", field=7)
    try:
        born = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_timestamp", "PID-7 (date of birth) is not a valid date",
                         segment="PID", field=7) from None
    today = at.date()
    if born > today:
        raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_birth_date", "PID-7 (date of birth) is after the event time",
                         segment="PID", field=7)
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if years >= 1:
        return float(years)
    return round((today - born).days / 365.25, 2)


# HL7 table 0001 administrative sex -> contract sex. U (unknown), O, A, N -> X: the allocator then
# gives a single room or a flexible bay, never a bay of the wrong sex.
_SEX = {"F": "F", "M": "M", "X": "X", "O": "X", "A": "X", "N": "X", "U": "X"}


def _sex(msg: _Msg, pid: hl7.Segment) -> str:
    value = _require(msg.value(pid, 8), "PID", 8, "administrative sex").upper()
    if value not in _SEX:
        raise Hl7Refused("AE", TABLE_VALUE_NOT_FOUND, "bad_value",
                         "PID-8 (administrative sex) must be a code of HL7 table 0001 (F, M, O, U, A, N, X)",
                         segment="PID", field=8)
    return _SEX[value]


# --------------------------------------------------------------------------- locations


def location(msg: _Msg, seg: hl7.Segment | None, n: int) -> Location:
    if seg is None:
        return Location()
    return Location(point_of_care=msg.value(seg, n, 1), room=msg.value(seg, n, 2), bed=msg.value(seg, n, 3),
                    facility=msg.value(seg, n, 4))


def map_location(hospital: Hospital, profile: Hl7Profile, loc: Location, seg: str, n: int,
                 need_bed: bool) -> tuple[str, str | None]:
    """(unit code, bed id or None) for a PL through the hospital's table; refuses rather than guesses."""
    found = resolve_location(profile.locations, loc)
    if found is None:
        raise Hl7Refused("AE", TABLE_VALUE_NOT_FOUND, "unknown_location",
                         f"{seg}-{n} location {str(loc)!r} matches no row of the hospital's hl7 location table",
                         segment=seg, field=n)
    rule, resolved = found
    if resolved.bed_id is not None:
        bed = hospital.bed(resolved.bed_id)
        if bed is None or bed.unit != resolved.unit:
            raise Hl7Refused("AE", TABLE_VALUE_NOT_FOUND, "unknown_bed",
                             f"{seg}-{n} names bed {resolved.bed_id!r}, which is not a bed of unit {resolved.unit}",
                             segment=seg, field=n, component=3)
    elif need_bed:
        raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_field",
                         f"{seg}-{n}.3 (bed) is required: location {str(loc)!r} names a unit, not a bed",
                         segment=seg, field=n, component=3)
    return resolved.unit, resolved.bed_id


# --------------------------------------------------------------------------- free text


def admission_text(msg: _Msg, profile: Hl7Profile) -> str | None:
    for source in profile.free_text:
        text = _text_from(msg, source)
        if text:
            return text[:20_000]
    return None


def _text_from(msg: _Msg, source: str) -> str:
    if source == "PV2-3":
        return msg.value("PV2", 3, 2) or msg.value("PV2", 3, 1)
    if source == "PV2-12":
        return msg.value("PV2", 12)
    if source == "EVN-4":
        return msg.value("EVN", 4, 2)
    if source == "DG1-4":
        parts = [msg.value(s, 4) or msg.value(s, 3, 2) for s in msg.segments("DG1")]
        return "; ".join(p for p in parts if p)
    if source == "NTE":
        parts = [msg.value(s, 3) for s in msg.segments("NTE")]
        return " ".join(p for p in parts if p)
    if source == "OBX":
        parts = [msg.value(s, 5) for s in msg.segments("OBX") if msg.value(s, 2) in ("TX", "ST", "FT")]
        return " ".join(p for p in parts if p)
    return ""


# --------------------------------------------------------------------------- vitals


@dataclass(frozen=True)
class VitalCode:
    parameter: str
    unit_kind: str  # rate | percent | mmhg | temp | flow | fio2 | acvpu


# LOINC (coding system LN) and ISO/IEEE 11073 MDC codes (what bedside devices send, IHE PCD-01).
LOINC = {"9279-1": VitalCode("resp_rate", "rate"), "59408-5": VitalCode("spo2", "percent"),
         "2708-6": VitalCode("spo2", "percent"), "8480-6": VitalCode("systolic_bp", "mmhg"),
         "8867-4": VitalCode("heart_rate", "rate"), "8310-5": VitalCode("temperature_c", "temp"),
         "3151-8": VitalCode("on_oxygen", "flow"), "3150-0": VitalCode("on_oxygen", "fio2"),
         "67775-7": VitalCode("consciousness", "acvpu"), "80288-4": VitalCode("consciousness", "acvpu")}
MDC = {"MDC_RESP_RATE": VitalCode("resp_rate", "rate"),
       "MDC_PULS_OXIM_SAT_O2": VitalCode("spo2", "percent"), "MDC_ECG_HEART_RATE": VitalCode("heart_rate", "rate"),
       "MDC_PULS_RATE": VitalCode("heart_rate", "rate"), "MDC_PULS_OXIM_PULS_RATE": VitalCode("heart_rate", "rate"),
       "MDC_BLD_PULS_RATE_INV": VitalCode("heart_rate", "rate"),
       "MDC_PRESS_BLD_NONINV_SYS": VitalCode("systolic_bp", "mmhg"),
       "MDC_PRESS_BLD_ART_SYS": VitalCode("systolic_bp", "mmhg"),
       "MDC_TEMP_BODY": VitalCode("temperature_c", "temp"), "MDC_TEMP_ORAL": VitalCode("temperature_c", "temp"),
       "MDC_TEMP_TYMP": VitalCode("temperature_c", "temp")}
MDC_NUMERIC = {"151562": "MDC_RESP_RATE", "150456": "MDC_PULS_OXIM_SAT_O2", "147842": "MDC_ECG_HEART_RATE",
               "149530": "MDC_PULS_OXIM_PULS_RATE", "149522": "MDC_BLD_PULS_RATE_INV",
               "150021": "MDC_PRESS_BLD_NONINV_SYS", "150033": "MDC_PRESS_BLD_ART_SYS",
               "150364": "MDC_TEMP_BODY", "188424": "MDC_TEMP_ORAL",
               "150392": "MDC_TEMP_TYMP"}

# Accepted units per kind: UCUM codes, common spellings, and MDC dimension codes (mnemonic or number).
UNITS: dict[str, dict[str, Callable[[float], float]]] = {
    "rate": {u: (lambda v: v) for u in ("/min", "1/min", "min-1", "{beats}/min", "{breaths}/min", "beats/min",
                                       "breaths/min", "bpm", "br/min", "mdc_dim_beat_per_min", "264864",
                                       "mdc_dim_resp_per_min", "264928", "mdc_dim_per_min")},
    "percent": {u: (lambda v: v) for u in ("%", "percent", "mdc_dim_percent", "262688")},
    "mmhg": {u: (lambda v: v) for u in ("mm[hg]", "mmhg", "mm hg", "mdc_dim_mmhg", "266016")},
    "temp": {**{u: (lambda v: v) for u in ("cel", "c", "degc", "°c", "deg c", "mdc_dim_degc", "268192")},
             **{u: (lambda v: round((v - 32) * 5 / 9, 1)) for u in ("[degf]", "degf", "f", "°f", "deg f",
                                                                    "mdc_dim_fahr", "266560")}},
    "flow": {u: (lambda v: v) for u in ("l/min", "l/min", "lpm", "mdc_dim_l_per_min")},
    "fio2": {u: (lambda v: v) for u in ("%", "percent", "mdc_dim_percent", "262688")},
}
_ACVPU_TEXT = {"ALERT": "A", "CONFUSION": "C", "NEW CONFUSION": "C", "VOICE": "V", "PAIN": "P", "UNRESPONSIVE": "U"}


def vital_code(msg: _Msg, obx: hl7.Segment) -> VitalCode | None:
    """What OBX-3 measures, if it is a vital sign WardFlow scores; coding system from CE.3 / CE.6."""
    for base in (1, 4):  # identifier and alternate identifier
        system = msg.value(obx, 3, base + 2).upper()
        if system in ("LN", "LOINC"):
            code = msg.value(obx, 3, base)
            if code in LOINC:
                return LOINC[code]
        elif system == "MDC":
            # The numeric code decides; the mnemonic only when no code is sent (a wrong code is not guessed).
            code = msg.value(obx, 3, base)
            name = MDC_NUMERIC.get(code) if code else msg.value(obx, 3, base + 1)
            if name in MDC:
                return MDC[name]
    return None


def _unit_converter(msg: _Msg, obx: hl7.Segment, vc: VitalCode, seq: int) -> Callable[[float], float]:
    accepted = UNITS[vc.unit_kind]
    for component in (1, 2):  # the unit's code, else its text
        unit = msg.value(obx, 6, component).lower()
        if unit in accepted:
            return accepted[unit]
    shown = msg.value(obx, 6, 1) or "(none)"
    raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_unit",
                     f"OBX-6 unit {shown!r} is not a unit WardFlow accepts for {vc.parameter} "
                     f"(e.g. {next(iter(accepted))})", segment="OBX", field=6, sequence=seq)


def vital_values(msg: _Msg) -> tuple[dict[str, float | bool | str], list[hl7.Segment]]:
    """The vital signs in the OBX segments, units checked and converted; later OBX win for one parameter."""
    values: dict[str, float | bool | str] = {}
    used: list[hl7.Segment] = []
    for seq, obx in enumerate(msg.segments("OBX"), start=1):
        vc = vital_code(msg, obx)
        if vc is None:
            continue
        status = msg.value(obx, 11).upper()
        if status and status not in VITAL_STATUSES:
            continue  # D deleted, W wrong, X cannot be obtained, I pending, N not asked, S partial
        if msg.repetitions(obx, 5) > 1:
            raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_value",
                             f"OBX-5 repeats ({vc.parameter}): one observation must carry one value",
                             segment="OBX", field=5, sequence=seq)
        raw = msg.value(obx, 5)
        if not raw:
            continue  # an OBX without a value measures nothing
        if vc.unit_kind == "acvpu":
            code = raw.upper()
            code = _ACVPU_TEXT.get(code, code) if len(code) > 1 else code
            if code not in ("A", "C", "V", "P", "U"):
                code = _ACVPU_TEXT.get(msg.value(obx, 5, 2).upper(), "")
            if code not in ("A", "C", "V", "P", "U"):
                raise Hl7Refused("AE", TABLE_VALUE_NOT_FOUND, "bad_value",
                                 "OBX-5 level of consciousness must be A, C, V, P or U (ACVPU)",
                                 segment="OBX", field=5, sequence=seq)
            values[vc.parameter] = code
            used.append(obx)
            continue
        try:
            number = float(raw)
        except ValueError:
            raise Hl7Refused("AE", DATA_TYPE_ERROR, "bad_value", f"OBX-5 ({vc.parameter}) must be a number",
                             segment="OBX", field=5, sequence=seq) from None
        convert = _unit_converter(msg, obx, vc, seq)
        number = convert(number)
        if vc.unit_kind == "flow":
            values["on_oxygen"] = number > 0
        elif vc.unit_kind == "fio2":
            values["on_oxygen"] = number > 21
        else:
            values[vc.parameter] = number
        used.append(obx)
    return values, used


# --------------------------------------------------------------------------- the mapping


@dataclass
class _Ctx:
    header: Header
    msg: _Msg
    hospital: Hospital
    profile: Hl7Profile
    tz: ZoneInfo
    events: list[Outbound] = field(default_factory=list)

    def event_id(self, n: int) -> str:
        base = f"hl7:{self.header.sending_app}/{self.header.sending_facility}:{self.header.control_id}"
        if len(base) > 180:
            base = "hl7:" + hashlib.sha256(base.encode()).hexdigest()
        return f"{base}:{n}"

    def add(self, topic: str, model: type[InputEvent], at: datetime, **fields: object) -> None:
        n = len(self.events) + 1
        try:
            event = model(event_id=self.event_id(n), hospital_id=self.hospital.hospital_id,
                          occurred_at=at, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "event"
            seg, f = _SOURCE_OF.get(name, ("MSH", 9))
            raise Hl7Refused("AE", DATA_TYPE_ERROR, "contract_violation",
                             f"{seg}-{f} gives {topic} field {name!r} that {err['msg']}", segment=seg, field=f) from None
        self.events.append(Outbound(topic, event))


_SOURCE_OF = {"patient_id": ("PID", 3), "encounter_id": ("PV1", 19), "age": ("PID", 7), "sex": ("PID", 8),
              "text": ("PV2", 3), "resp_rate": ("OBX", 5), "spo2": ("OBX", 5), "systolic_bp": ("OBX", 5),
              "heart_rate": ("OBX", 5), "temperature_c": ("OBX", 5), "consciousness": ("OBX", 5),
              "to_bed_id": ("PV1", 3), "bed_id": ("NPU", 1), "disposition": ("PV1", 36)}


def map_message(raw: bytes, hospital: Hospital, header: Header | None = None) -> Mapped:
    """Bytes of one HL7 v2 message -> the contract events it means, or Hl7Refused saying why not.

    `header`: `read_header(raw)` when the caller has it already.
    """
    profile = hospital.hl7
    if profile is None:
        raise Hl7Refused("AR", APPLICATION_INTERNAL_ERROR, "no_hl7_profile",
                         f"hospital {hospital.hospital_id} has no `hl7:` section in its hospital file")
    header, message = parse(raw, header)
    _require(header.control_id, "MSH", 10, "message control id")
    _require(header.message_type, "MSH", 9, "message type", component=1)
    if not re.match(r"^2\.\d", header.version):
        raise Hl7Refused("AR", UNSUPPORTED_VERSION_ID, "unsupported_version",
                         f"MSH-12 version {header.version!r} is not HL7 v2.1 to v2.8", segment="MSH", field=12)
    ctx = _Ctx(header, _Msg(message), hospital, profile, ZoneInfo(profile.timezone))
    kind = (header.message_type, header.trigger)
    if header.message_type == "ADT":
        if header.trigger not in ADT_SUPPORTED:
            raise Hl7Refused("AR", UNSUPPORTED_EVENT_CODE, "unsupported_trigger",
                             f"ADT trigger {header.trigger or '(empty)'!r} is not one WardFlow handles "
                             f"({', '.join(ADT_SUPPORTED)})", segment="MSH", field=9, component=2)
        note = _ADT[header.trigger](ctx)
    elif kind == ("ORU", "R01"):
        note = _vitals(ctx)
    else:
        raise Hl7Refused("AR", UNSUPPORTED_MESSAGE_TYPE, "unsupported_message_type",
                         f"message type {header.kind!r} is not handled (ADT and ORU^R01 are)",
                         segment="MSH", field=9)
    return Mapped(header, tuple(ctx.events), note if not ctx.events else None)


def _pid(ctx: _Ctx) -> hl7.Segment:
    segs = ctx.msg.segments("PID")
    if not segs:
        raise Hl7Refused("AE", SEGMENT_SEQUENCE_ERROR, "missing_segment", "the PID segment is required",
                         segment="PID")
    return segs[0]


def _pv1(ctx: _Ctx, required: bool) -> hl7.Segment | None:
    segs = ctx.msg.segments("PV1")
    if not segs:
        if required:
            raise Hl7Refused("AE", SEGMENT_SEQUENCE_ERROR, "missing_segment", "the PV1 segment is required",
                             segment="PV1")
        return None
    return segs[0]


def _adt_time(ctx: _Ctx) -> datetime:
    return _first_ts(ctx.msg, ctx.tz, (("EVN", 6), ("EVN", 2), ("MSH", 7)), ctx.header)


def _who(ctx: _Ctx, pv1_required: bool = True) -> tuple[str, str, hl7.Segment, hl7.Segment | None, datetime]:
    pid = _pid(ctx)
    pv1 = _pv1(ctx, pv1_required)
    at = _adt_time(ctx)
    return patient_id(ctx.msg, pid, ctx.profile), encounter_id(ctx.msg, pid, pv1, ctx.profile), pid, pv1, at


def _admit(ctx: _Ctx) -> str | None:
    patient, encounter, pid, pv1, at = _who(ctx)
    age = _age(_require(ctx.msg.value(pid, 7), "PID", 7, "date of birth"), at)
    sex = _sex(ctx.msg, pid)
    text = admission_text(ctx.msg, ctx.profile)
    if not text:
        first = ctx.profile.free_text[0] if ctx.profile.free_text else "PV2-3"
        seg, n = first.split("-") if "-" in first else (first, "3")
        raise Hl7Refused("AE", REQUIRED_FIELD_MISSING, "missing_text",
                         f"no admission reason found in {', '.join(ctx.profile.free_text) or 'any source'}: "
                         f"WardFlow needs the chief complaint or admission reason to place the patient",
                         segment=seg, field=int(n))
    loc = location(ctx.msg, pv1, 3)
    unit = bed = None
    if loc.point_of_care:
        unit, bed = map_location(ctx.hospital, ctx.profile, loc, "PV1", 3, need_bed=False)
    # A bed in PV1-3: the EHR already put the patient there, and the worker records it; a unit: WardFlow chooses.
    ctx.add("admissions", Admission, at, patient_id=patient, encounter_id=encounter, age=age, sex=sex, text=text,
            requested_unit=unit, bed_id=bed)
    return None


def _register(ctx: _Ctx) -> str | None:
    pv1 = _pv1(ctx, required=False)
    klass = ctx.msg.value(pv1, 2).upper() if pv1 is not None else ""
    if klass in ctx.profile.inpatient_classes:
        return _admit(ctx)
    _pid(ctx)
    return f"registration of patient class {klass or '(none)'}: no bed needed"


def _transfer(ctx: _Ctx) -> str | None:
    patient, encounter, _pid_seg, pv1, at = _who(ctx)
    loc = location(ctx.msg, pv1, 3)
    _require(loc.point_of_care, "PV1", 3, "assigned patient location", component=1)
    _unit, bed = map_location(ctx.hospital, ctx.profile, loc, "PV1", 3, need_bed=True)
    ctx.add("transfers", Transfer, at, patient_id=patient, encounter_id=encounter, to_bed_id=bed)
    return None


def _cancel_transfer(ctx: _Ctx) -> str | None:
    """A12: PV1-3 holds the location the patient returns to (the standard's rule for A12)."""
    patient, encounter, _pid_seg, pv1, at = _who(ctx)
    loc = location(ctx.msg, pv1, 3)
    _require(loc.point_of_care, "PV1", 3, "assigned patient location", component=1)
    _unit, bed = map_location(ctx.hospital, ctx.profile, loc, "PV1", 3, need_bed=True)
    ctx.add("cancellations", Cancellation, at, patient_id=patient, encounter_id=encounter, cancels="transfer",
            bed_id=bed)
    return None


def _cancel_admission(ctx: _Ctx) -> str | None:
    patient, encounter, _pid_seg, _pv1, at = _who(ctx, pv1_required=False)
    ctx.add("cancellations", Cancellation, at, patient_id=patient, encounter_id=encounter, cancels="admission")
    return None


def _cancel_discharge(ctx: _Ctx) -> str | None:
    """A13: the stay reopens; in the PV1-3 bed when it names one, else the patient waits for a bed."""
    patient, encounter, _pid_seg, pv1, at = _who(ctx)
    loc = location(ctx.msg, pv1, 3)
    bed = None
    if loc.point_of_care:
        _unit, bed = map_location(ctx.hospital, ctx.profile, loc, "PV1", 3, need_bed=False)
    ctx.add("cancellations", Cancellation, at, patient_id=patient, encounter_id=encounter, cancels="discharge",
            bed_id=bed)
    return None


def _swap(ctx: _Ctx) -> str | None:
    """A17: two PID (+PV1) groups; each patient takes the other's bed (WardFlow knows where they are)."""
    groups: list[list[hl7.Segment]] = []
    for seg in ctx.msg.m:
        seg_id = str(seg[0]).strip()
        if seg_id == "PID":
            groups.append([seg])
        elif groups and seg_id == "PV1" and len(groups[-1]) == 1:
            groups[-1].append(seg)
    if len(groups) != 2:
        raise Hl7Refused("AE", SEGMENT_SEQUENCE_ERROR, "missing_segment",
                         f"an A17 needs two PID segments (one per patient), got {len(groups)}", segment="PID",
                         sequence=min(len(groups) + 1, 2))
    at = _adt_time(ctx)
    ids = []
    for n, group in enumerate(groups, start=1):
        try:
            ids.append((patient_id(ctx.msg, group[0], ctx.profile),
                        encounter_id(ctx.msg, group[0], group[1] if len(group) > 1 else None, ctx.profile)))
        except Hl7Refused as exc:
            exc.sequence = n
            raise
    (p1, e1), (p2, e2) = ids
    ctx.add("swaps", Swap, at, patient_id=p1, encounter_id=e1, other_patient_id=p2, other_encounter_id=e2)
    return None


def _discharge(disposition: str | None) -> Callable[[_Ctx], str | None]:
    def handle(ctx: _Ctx) -> str | None:
        patient, encounter, _pid_seg, pv1, at = _who(ctx, pv1_required=False)
        reason = disposition
        if reason is None and pv1 is not None and (code := ctx.msg.value(pv1, 36)):
            reason = f"discharge disposition {code} (HL7 table 0112)"
        ctx.add("discharges", Discharge, at, patient_id=patient, encounter_id=encounter, disposition=reason)
        return None

    return handle


def _no_bed_action(what: str) -> Callable[[_Ctx], str | None]:
    def handle(ctx: _Ctx) -> str | None:
        _pid(ctx)
        _adt_time(ctx)
        return what

    return handle


# HL7 table 0116 bed status -> contract bed-status; O (occupied) is not a housekeeping state: ADT says who is where.
BED_STATUS = {"C": ("closed", "closed (HL7 0116 C)"), "H": ("dirty", "housekeeping (HL7 0116 H)"),
              "I": ("blocked", "isolated (HL7 0116 I)"), "K": ("blocked", "contaminated (HL7 0116 K)"),
              "U": ("clean", "unoccupied (HL7 0116 U)")}


def _bed_status(ctx: _Ctx) -> str | None:
    npus = ctx.msg.segments("NPU")
    if not npus:
        raise Hl7Refused("AE", SEGMENT_SEQUENCE_ERROR, "missing_segment", "the NPU segment is required on an A20",
                         segment="NPU")
    npu = npus[0]
    at = _adt_time(ctx)
    loc = location(ctx.msg, npu, 1)
    _require(loc.point_of_care, "NPU", 1, "bed location", component=1)
    _unit, bed = map_location(ctx.hospital, ctx.profile, loc, "NPU", 1, need_bed=True)
    code = _require(ctx.msg.value(npu, 2), "NPU", 2, "bed status").upper()
    if code == "O":
        return "bed status O (occupied): occupancy comes from ADT admissions and transfers; no change"
    if code not in BED_STATUS:
        raise Hl7Refused("AE", TABLE_VALUE_NOT_FOUND, "bad_value",
                         "NPU-2 bed status must be a code of HL7 table 0116 (C, H, I, K, O, U)", segment="NPU", field=2)
    status, reason = BED_STATUS[code]
    ctx.add("bed-status", BedStatusChange, at, bed_id=bed, status=status, reason=reason)
    return None


def _vitals(ctx: _Ctx) -> str | None:
    values, used = vital_values(ctx.msg)
    if not values:
        _pid(ctx)
        return "no vital sign WardFlow scores (LOINC or MDC coded) in this result: nothing to do"
    pid = _pid(ctx)
    pv1 = _pv1(ctx, required=False)
    patient = patient_id(ctx.msg, pid, ctx.profile)
    encounter = encounter_id(ctx.msg, pid, pv1, ctx.profile)
    first = used[0]
    if ctx.msg.value(first, 14):
        at = parse_ts(ctx.msg.value(first, 14), ctx.tz, where=("OBX", 14))
    else:
        at = _first_ts(ctx.msg, ctx.tz, (("OBR", 7), ("MSH", 7)), ctx.header)
    ctx.add("vitals", Vitals, at, patient_id=patient, encounter_id=encounter, **values)
    return None


_ADT: dict[str, Callable[[_Ctx], str | None]] = {
    "A01": _admit,
    "A04": _register,
    "A05": _no_bed_action("pre-admission: no bed is taken until the admission (A01)"),
    "A06": _admit,
    "A07": _discharge("changed from inpatient to outpatient (A07)"),
    "A08": _no_bed_action("patient information update: no bed movement"),
    "A02": _transfer,
    "A12": _cancel_transfer,
    "A03": _discharge(None),
    "A11": _cancel_admission,
    "A13": _cancel_discharge,
    "A17": _swap,
    "A20": _bed_status,
}


# --------------------------------------------------------------------------- ACK / NAK


def _esc(value: str, header: Header) -> str:
    """HL7-escape a value for the answer (escape character first)."""
    comp, rep, esc, sub = tuple((header.encoding + "^~\\&")[:4])
    out = value.replace(esc, f"{esc}E{esc}")
    for ch, code in ((header.field_sep, "F"), (comp, "S"), (sub, "T"), (rep, "R")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(header: Header | None, code: AckCode, now: datetime, *, ack_control_id: str,
              error: Hl7Refused | None = None, text: str | None = None) -> bytes:
    """An original-mode ACK: MSH, MSA and, for AE/AR, ERR naming the segment, field and problem."""
    h = header or Header()
    sep = h.field_sep
    comp, _rep, _esc_ch, sub = tuple((h.encoding + "^~\\&")[:4])
    def e(v):
        return _esc(v, h)

    version = h.version if re.match(r"^2\.\d", h.version or "") else "2.5"
    msh = sep.join(["MSH", h.encoding, e(h.receiving_app), e(h.receiving_facility), e(h.sending_app),
                    e(h.sending_facility), now.strftime("%Y%m%d%H%M%S%z"), "",
                    comp.join(["ACK", e(h.trigger), "ACK"]) if h.trigger else "ACK", e(ack_control_id),
                    e(h.processing_id or "P"), version])
    msa_text = (error.message if error else text) or ""
    segments = [msh, sep.join(["MSA", code, e(h.control_id), e(msa_text[:80])])]
    if error is not None:
        name = _ERROR_NAMES.get(error.hl7_code, "Error")
        loc_parts = [error.segment or "", str(error.sequence) if error.segment else "",
                     str(error.field or ""), "1" if error.field else "", str(error.component or "")]
        eld = comp.join([error.segment or "", str(error.sequence) if error.segment else "", str(error.field or ""),
                         sub.join([str(error.hl7_code), name, "HL70357"])])
        err_fields = ["ERR", eld if version < "2.5" else "", comp.join(loc_parts).rstrip(comp),
                      comp.join([str(error.hl7_code), name, "HL70357"]), "E", "", "", "", e(error.message)]
        segments.append(sep.join(err_fields))
    return ("\r".join(segments) + "\r").encode("utf-8")
