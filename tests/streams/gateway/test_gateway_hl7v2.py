"""HL7 v2 -> contract events (streams.gateway.hl7v2): every shared sample, hand-written triggers, ACK/NAK content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from allocator.hospital import load_hospitals
from streams.contract.models import Admission, BedStatusChange, Cancellation, Swap, Vitals
from streams.gateway.hl7v2 import Hl7Refused, Mapped, _Msg, build_ack, map_message, parse, read_header, vital_values

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "hl7-samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/hl7-samples")
FIXTURE = Path(__file__).parents[2] / "fixtures" / "hl7_hospital.yaml"


@pytest.fixture(scope="module")
def hospital():
    return load_hospitals(FIXTURE)["test-hosp"]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def fields(m: Mapped) -> list[tuple[str, dict]]:
    return [(o.topic, o.event.model_dump(exclude={"hospital_id", "event_id", "occurred_at", "text"}, exclude_none=True))
            for o in m.events]


# Every sample of the manifest: what WardFlow does with it. ("ok", [(topic, fields)...]) or (ack, code, field).
# Where the manifest leaves a choice ("admit without bed, or hold"), the rule chosen is in docs/hl7.md.
EXPECTED = {
    "efferent_O01_1.hl7": ("AR", "unsupported_trigger", "MSH-9.2"),
    "hapi_A01_1.hl7": ("AE", "missing_text", "PV2-3"),           # no admission reason anywhere
    "hapi_A01_2.hl7": ("AR", "bad_encoding_characters", "MSH-2"),  # corrupted MSH-2
    "hapi_A03_1.hl7": ("ok", [("discharges", {"patient_id": "5520255", "encounter_id": "2008003369"})]),
    "hapi_A03_2.hl7": ("AE", "missing_field", "PV1-19"),          # empty PV1, no account number: which stay?
    "hapi_A04_1.hl7": ("ok", []),
    "hapi_A05_1.hl7": ("ok", []),
    "hapi_A08_1.hl7": ("ok", []),
    # the second patient has no PV1: the stay is PID-18, and WardFlow knows her bed
    "hapi_A17_1.hl7": ("ok", [("swaps", {"patient_id": "3678347", "encounter_id": "292007135",
                                         "other_patient_id": "0877410", "other_encounter_id": "292007138"})]),
    "ipf_A01_1.hl7": ("AE", "missing_field", "PID-7"),            # no date of birth: age is required
    "ipf_A01_2.hl7": ("AE", "missing_field", "PV1-19"),
    "ipf_A01_3.hl7": ("AE", "missing_segment", "PID"),
    "ipf_A04_1.hl7": ("ok", []),
    "ipf_A08_1.hl7": ("ok", []),
    "ipf_A08_2.hl7": ("ok", []),
    "ipf_R01_1.hl7": ("AE", "missing_field", "PV1-19"),           # vitals need the stay
    "ipf_R01_2.hl7": ("AE", "missing_field", "PV1-19"),
    "ipf_R01_3.hl7": ("AE", "missing_field", "PV1-19"),
    "ipf_R01_4.hl7": ("ok", [("vitals", {"patient_id": "111222333444", "encounter_id": "72008190", "systolic_bp": 140.0})]),
    "ipf_R01_5.hl7": ("AE", "missing_field", "PV1-19"),
    "lfh_A01_1.hl7": ("AR", "bad_encoding_characters", "MSH-2"),
    "lfh_A03_1.hl7": ("ok", [("discharges", {"patient_id": "1234", "encounter_id": "VisitNumber"})]),
    "msfc_A01_1.hl7": ("AE", "missing_text", "PV2-3"),
    "msfc_A01_2.hl7": ("ok", [("admissions", {"patient_id": "10006579", "encounter_id": "40007716", "age": 80.0,
                                              "sex": "M", "requested_unit": "SURG", "spo2_scale2": False})]),
    "msfc_A01_3.hl7": ("ok", [("admissions", {"patient_id": "PATID1234", "encounter_id": "40007716", "age": 32.0,
                                              "sex": "M", "requested_unit": "MED", "bed_id": "MED-SR1"})]),
    "msfc_A02_1.hl7": ("ok", [("transfers", {"patient_id": "PATID1234", "encounter_id": "40007716", "to_bed_id": "MED-SR1"})]),
    "msfc_A03_1.hl7": ("ok", [("discharges", {"patient_id": "PATID1234", "encounter_id": "40007716",
                                              "disposition": "discharge disposition Admitted as Inpatient (HL7 table 0112)"})]),
    "msfc_A04_1.hl7": ("AE", "missing_text", "PV2-3"),           # inpatient A04: an admission, but no reason
    "msfc_A04_2.hl7": ("ok", []),
    "msfc_A04_3.hl7": ("ok", []),
    "msfc_A05_1.hl7": ("ok", []),
    "msfc_A06_1.hl7": ("ok", [("admissions", {"patient_id": "PATID1234", "encounter_id": "5001", "age": 59.0, "sex": "M",
                                              "requested_unit": "SURG", "bed_id": "SURG-SR1"})]),
    "msfc_A07_1.hl7": ("ok", [("discharges", {"patient_id": "PATID1234", "encounter_id": "5001",
                                              "disposition": "changed from inpatient to outpatient (A07)"})]),
    "msfc_A08_1.hl7": ("ok", []),
    "msfc_A11_1.hl7": ("ok", [("cancellations", {"patient_id": "PATID1234", "encounter_id": "40007716",
                                                 "cancels": "admission"})]),
    "msfc_A13_1.hl7": ("ok", [("cancellations", {"patient_id": "PATID1234", "encounter_id": "40007716",
                                                 "cancels": "discharge", "bed_id": "MED-SR1"})]),
    "msfc_R01_1.hl7": ("ok", []),                                 # a lab result: nothing to score
    "nl7_A04_1.hl7": ("ok", []),
    "nl7_A17_1.hl7": ("AE", "missing_field", "PID-3"),            # no patient identifiers at all
    "nodehl7_A01_1.hl7": ("AR", "lost_segment_terminators", "MSH"),
    "pyhl7_A04_1.hl7": ("AR", "batch_not_supported", "FHS"),
}


def test_every_sample_is_listed():
    assert sorted(p.name for p in SAMPLES.glob("*.hl7")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name, hospital):
    expected = EXPECTED[name]
    if expected[0] == "ok":
        mapped = map_message(sample(name), hospital)
        want = [(t, {k: v for k, v in f.items() if v is not None}) for t, f in expected[1]]
        assert [t for t, _ in fields(mapped)] == [t for t, _ in want]
        for (_, g), (_, w) in zip(fields(mapped), want, strict=True):
            assert {k: g.get(k) for k in w} == w
        if not mapped.events:
            assert mapped.note  # accepted without events: MSA-3 says why
    else:
        with pytest.raises(Hl7Refused) as info:
            map_message(sample(name), hospital)
        assert (info.value.ack, info.value.code, info.value.where) == expected


def test_event_ids_come_from_the_control_id_and_repeat(hospital):
    a = map_message(sample("msfc_A02_1.hl7"), hospital)
    b = map_message(sample("msfc_A02_1.hl7"), hospital)
    assert a.events[0].event.event_id == b.events[0].event.event_id
    assert "MSG00001" in a.events[0].event.event_id
    assert a.events[0].event.hospital_id == "test-hosp"


def test_times_keep_offsets_or_take_the_hospital_zone(hospital):
    a01 = map_message(sample("msfc_A01_2.hl7"), hospital).events[0].event
    assert a01.occurred_at.utcoffset().total_seconds() == 7 * 3600
    a03 = map_message(sample("hapi_A03_1.hl7"), hospital).events[0].event
    assert str(a03.occurred_at.tzinfo) == "Europe/London"


def test_device_vitals_are_read_with_units_even_when_the_stay_is_unknown():
    """The Continua samples: SpO2 80.5 %, 98.6 F -> 37.0 C, NIBP 120; the pleth array is skipped."""
    def values(name: str) -> dict:
        _, msg = parse(sample(name))
        return vital_values(_Msg(msg))[0]

    assert values("ipf_R01_2.hl7") == {"spo2": 80.5}
    assert values("ipf_R01_3.hl7") == {"temperature_c": 37.0}
    assert values("ipf_R01_5.hl7") == {"systolic_bp": 120.0}
    assert values("ipf_R01_1.hl7") == {"heart_rate": 60.0, "systolic_bp": 120.0}


# --------------------------------------------------------------------------- hand-written messages


def msg(*segments: str) -> bytes:
    return "\r".join(segments).encode()


MSH = "MSH|^~\\&|EPIC|WARDS|WARDFLOW|TEST|20261124081500+0000||{type}|{ctl}|P|2.5.1|||AL|NE||UNICODE UTF-8"
EVN = "EVN|{trigger}|20261124081500+0000"
PID = "PID|1||P-1^^^HOSP^MR~999^^^NHS^NH||DOE^JANE||19480203|F|||||||||A-77"
PV1 = "PV1|1|I|{loc}||||||||||||||||V-1"


def adt(trigger: str, loc: str = "MED", *extra: str, ctl: str = "C1") -> bytes:
    return msg(MSH.format(type=f"ADT^{trigger}^ADT_A01", ctl=ctl), EVN.format(trigger=trigger), PID,
               PV1.format(loc=loc), *extra)


def test_a01_with_reason_is_an_admission_to_the_mapped_unit(hospital):
    m = map_message(adt("A01", "MED^MED-B1^MED-B1-A", "PV2|||^Fall at home\\T\\hip pain"), hospital)
    (out,) = m.events
    assert out.topic == "admissions" and isinstance(out.event, Admission)
    e = out.event
    assert (e.patient_id, e.encounter_id, e.age, e.sex, e.requested_unit, e.bed_id) == \
        ("P-1", "V-1", 78.0, "F", "MED", "MED-B1-A")
    assert e.text == "Fall at home&hip pain"  # escape sequences come from python-hl7
    assert e.occurred_at == datetime(2026, 11, 24, 8, 15, tzinfo=UTC)


def test_free_text_source_is_configurable(hospital):
    from dataclasses import replace
    nte_first = replace(hospital, hl7=replace(hospital.hl7, free_text=("NTE",)))
    m = map_message(adt("A01", "MED", "PV2|||^Reason", "NTE|1||Short of breath since morning"), nte_first)
    assert m.events[0].event.text == "Short of breath since morning"
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A01", "MED", "PV2|||^Reason"), nte_first)
    assert info.value.code == "missing_text"


def test_unknown_location_is_refused_not_guessed(hospital):
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A01", "NOWHERE^1^2", "PV2|||^x"), hospital)
    assert (info.value.ack, info.value.code, info.value.where) == ("AE", "unknown_location", "PV1-3")
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A02", "MED^MED-B1^MED-B9-Z"), hospital)
    assert info.value.code == "unknown_bed"


def test_a02_needs_a_bed_not_a_unit(hospital):
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A02", "MED"), hospital)
    assert (info.value.code, info.value.where) == ("missing_field", "PV1-3.3")


def test_a12_cancel_transfer_moves_back_to_pv1_3(hospital):
    m = map_message(adt("A12", "MED^MED-B1^MED-B1-B"), hospital)
    (out,) = m.events
    assert isinstance(out.event, Cancellation)
    assert (out.topic, out.event.cancels, out.event.bed_id) == ("cancellations", "transfer", "MED-B1-B")


def test_a17_swap_needs_two_patients(hospital):
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A17", "MED^MED-B1^MED-B1-B"), hospital)
    assert (info.value.code, info.value.where) == ("missing_segment", "PID")
    two = adt("A17", "MED^MED-B1^MED-B1-B") + b"\rPID|2||P-2^^^HOSP^MR||ROE^ANN||19500101|F\rPV1|1|I|||||||||||||||||V-2"
    (out,) = map_message(two, hospital).events
    assert isinstance(out.event, Swap)
    assert (out.event.encounter_id, out.event.other_patient_id, out.event.other_encounter_id) == ("V-1", "P-2", "V-2")


@pytest.mark.parametrize("code,status", [("C", "closed"), ("H", "dirty"), ("I", "blocked"), ("K", "blocked"),
                                         ("U", "clean")])
def test_a20_bed_status_by_table_0116(hospital, code, status):
    m = map_message(msg(MSH.format(type="ADT^A20^ADT_A20", ctl="B1"), EVN.format(trigger="A20"),
                        f"NPU|SURG^SURG-B1^SURG-B1-A|{code}"), hospital)
    (out,) = m.events
    assert out.topic == "bed-status" and isinstance(out.event, BedStatusChange)
    assert (out.event.bed_id, out.event.status) == ("SURG-B1-A", status)


def test_a20_occupied_changes_nothing_and_says_so(hospital):
    m = map_message(msg(MSH.format(type="ADT^A20", ctl="B2"), EVN.format(trigger="A20"), "NPU|SURG^SURG-B1^SURG-B1-A|O"),
                    hospital)
    assert m.events == () and "occupied" in m.note
    with pytest.raises(Hl7Refused) as info:
        map_message(msg(MSH.format(type="ADT^A20", ctl="B3"), EVN.format(trigger="A20"), "NPU|SURG^SURG-B1^SURG-B1-A|Z"),
                    hospital)
    assert (info.value.code, info.value.where) == ("bad_value", "NPU-2")


def oru(*obx: str) -> bytes:
    return msg(MSH.format(type="ORU^R01^ORU_R01", ctl="V1"), PID, PV1.format(loc="MED"), "OBR|1|||vitals|||20261124090000+0000",
               *obx)


def test_loinc_vitals_with_units(hospital):
    m = map_message(oru("OBX|1|NM|9279-1^Resp rate^LN||24|/min^^UCUM|||||F|||20261124090500+0000",
                        "OBX|2|NM|59408-5^SpO2^LN||91|%^^UCUM|||||F",
                        "OBX|3|NM|8480-6^Systolic^LN||95|mm[Hg]^^UCUM|||||F",
                        "OBX|4|NM|8867-4^Heart rate^LN||118|{beats}/min^^UCUM|||||F",
                        "OBX|5|NM|8310-5^Temp^LN||101.3|[degF]^^UCUM|||||F",
                        "OBX|6|NM|3151-8^O2 flow^LN||2|L/min^^UCUM|||||F",
                        "OBX|7|CWE|67775-7^Responsiveness^LN||V^Voice^LN||||||F",
                        "OBX|8|NM|2345-7^Glucose^LN||5.5|mmol/L|||||F"), hospital)
    (out,) = m.events
    v = out.event
    assert isinstance(v, Vitals)
    assert (v.resp_rate, v.spo2, v.systolic_bp, v.heart_rate, v.temperature_c, v.on_oxygen, v.consciousness) == \
        (24, 91, 95, 118, 38.5, True, "V")
    assert v.occurred_at == datetime(2026, 11, 24, 9, 5, tzinfo=UTC)  # OBX-14 of the first vital


def test_wrong_unit_repeated_value_and_out_of_range_are_refused(hospital):
    with pytest.raises(Hl7Refused) as info:
        map_message(oru("OBX|1|NM|8310-5^Temp^LN||37|kg|||||F"), hospital)
    assert (info.value.code, info.value.where, info.value.sequence) == ("bad_unit", "OBX-6", 1)
    with pytest.raises(Hl7Refused) as info:
        map_message(oru("OBX|1|NM|8480-6^Sys^LN||120|mmHg|||||F", "OBX|2|NM|8867-4^HR^LN||60~120|/min|||||F"), hospital)
    assert (info.value.code, info.value.where, info.value.sequence) == ("bad_value", "OBX-5", 2)
    with pytest.raises(Hl7Refused) as info:
        map_message(oru("OBX|1|NM|8867-4^HR^LN||900|/min|||||F"), hospital)
    assert info.value.code == "contract_violation" and info.value.where == "OBX-5"


def test_deleted_observations_are_not_scored(hospital):
    m = map_message(oru("OBX|1|NM|8867-4^HR^LN||150|/min|||||D", "OBX|2|NM|8867-4^HR^LN||80|/min|||||C"), hospital)
    assert m.events[0].event.heart_rate == 80


def test_latin1_charset_from_msh_18(hospital):
    raw = adt("A01", "MED", "PV2|||^Bauchschmerzen, Übelkeit").decode().replace("UNICODE UTF-8", "8859/1").encode("latin-1")
    assert map_message(raw, hospital).events[0].event.text == "Bauchschmerzen, Übelkeit"
    with pytest.raises(Hl7Refused) as info:  # latin-1 bytes declared as UTF-8
        map_message(raw.replace(b"8859/1", b"UNICODE UTF-8"), hospital)
    assert (info.value.code, info.value.where) == ("bad_charset", "MSH-18")


def test_bad_timestamp_and_unknown_sex(hospital):
    bad_ts = adt("A01", "MED", "PV2|||^x").replace(b"EVN|A01|20261124081500+0000", b"EVN|A01|2026112")
    with pytest.raises(Hl7Refused) as info:
        map_message(bad_ts.replace(b"20261124081500+0000||ADT", b"||ADT"), hospital)
    assert info.value.code in ("bad_timestamp", "missing_field")
    with pytest.raises(Hl7Refused) as info:
        map_message(adt("A01", "MED", "PV2|||^x").replace(b"|19480203|F|", b"|19480203|1|"), hospital)
    assert (info.value.code, info.value.where) == ("bad_value", "PID-8")


# --------------------------------------------------------------------------- ACK / NAK


NOW = datetime(2026, 11, 24, 8, 15, 1, tzinfo=UTC)


def segs(ack: bytes) -> list[list[str]]:
    return [s.split("|") for s in ack.decode().strip("\r").split("\r")]


def test_aa_ack_echoes_the_control_id():
    header = read_header(adt("A01", ctl="CTL-9"))
    msh, msa = segs(build_ack(header, "AA", NOW, ack_control_id="ACK-1"))
    assert msh[2:6] == ["WARDFLOW", "TEST", "EPIC", "WARDS"] and msh[8] == "ACK^A01^ACK" and msh[9] == "ACK-1"
    assert msa[:3] == ["MSA", "AA", "CTL-9"]


def test_nak_names_segment_field_and_problem(hospital):
    raw = adt("A02", "MED", ctl="CTL-10")
    try:
        map_message(raw, hospital)
    except Hl7Refused as exc:
        error = exc
    ack = build_ack(read_header(raw), error.ack, NOW, ack_control_id="A2", error=error)
    _msh, msa, err = segs(ack)
    assert msa[:3] == ["MSA", "AE", "CTL-10"]
    assert err[2] == "PV1^1^3^1^3"                      # ERR-2 location: segment, sequence, field, repetition, component
    assert err[3] == "101^Required field missing^HL70357"  # ERR-3 from table 0357
    assert err[4] == "E" and "bed" in err[8]


def test_nak_for_garbage_still_answers():
    with pytest.raises(Hl7Refused) as info:
        read_header(b"hello")
    ack = build_ack(None, info.value.ack, NOW, ack_control_id="X", error=info.value)
    assert segs(ack)[1][:2] == ["MSA", "AR"]


# --------------------------------------------------------------------------- settings and CLI


def test_gateway_settings_refuse_what_they_cannot_use(tmp_path):
    from streams.cli import main
    from streams.gateway.settings import GatewaySettings, GatewaySettingsError

    with pytest.raises(GatewaySettingsError, match="has no `hl7:` section"):
        GatewaySettings(hospital_config=Path(__file__).parents[2] / "fixtures" / "stream_hospital.yaml").load_hospital()
    with pytest.raises(GatewaySettingsError, match="not in"):
        GatewaySettings(hospital_config=FIXTURE, hospital_id="nope").load_hospital()
    assert GatewaySettings(hospital_config=FIXTURE).load_hospital().hospital_id == "test-hosp"
    assert main(["hl7", "--hl7-tls-cert", str(tmp_path / "c.pem")]) == 2  # a certificate without its key


def test_location_table_is_validated_against_the_hospital(tmp_path):
    from allocator.hospital import HospitalConfigError

    text = FIXTURE.read_text()
    bad = text.replace("{point_of_care: PREOP, unit: SURG}", "{point_of_care: PREOP, unit: NOWARD}")
    (tmp_path / "h.yaml").write_text(bad)
    with pytest.raises(HospitalConfigError, match=r"hl7\.locations\[4\]\.unit: names no unit"):
        load_hospitals(tmp_path / "h.yaml")
    bad = text.replace("bed_id: MED-SR1}", "bed_id: SURG-SR1}")
    (tmp_path / "h.yaml").write_text(bad)
    with pytest.raises(HospitalConfigError, match="is on unit 'SURG', not 'MED'"):
        load_hospitals(tmp_path / "h.yaml")
    bad = text.replace('bed_id: "{bed}"}          # MED^', 'bed_id: "{ward}"}          # MED^')
    (tmp_path / "h.yaml").write_text(bad)
    with pytest.raises(HospitalConfigError, match=r"uses \{ward\}"):
        load_hospitals(tmp_path / "h.yaml")
    (tmp_path / "h.yaml").write_text(text.replace("timezone: Europe/London", "timezone: Mars/Olympus"))
    with pytest.raises(HospitalConfigError, match="IANA time zone"):
        load_hospitals(tmp_path / "h.yaml")


def test_the_example_messages_in_docs_map_on_the_demo_hospital():
    import re

    from allocator.hospital import DEMO_HOSPITAL_PATH

    demo = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    text = (Path(__file__).resolve().parents[3] / "docs" / "hl7.md").read_text(encoding="utf-8")
    messages = [m.strip() for block in re.findall(r"```\n(MSH.*?)```", text, re.S) for m in block.split("\n\n")]
    topics = [o.topic for m in messages for o in map_message(m.replace("\n", "\r").encode(), demo).events]
    assert topics == ["admissions", "transfers", "vitals", "bed-status"]
