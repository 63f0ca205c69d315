"""HL7 v2 through the gateway into a real worker: each trigger changes the tables as it should.

The integration engineer's path: broker + worker + `wardflow hl7`, plain MLLP messages in,
decisions and the worker's capacity view out. A resent message changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.devtools.broker import free_port
from streams.devtools.kafka_io import read_until
from tests.streams.gateway.test_gateway_mllp import Client, msa, start_gateway

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hl7_hospital.yaml"


def hl7(trigger: str, ctl: str, minute: int, patient: str, loc: str = "", *extra: str, sex: str = "F",
        msg_type: str = "ADT") -> bytes:
    at = f"2026112408{minute:02d}00+0000"
    segs = [f"MSH|^~\\&|EPIC|WARDS|WARDFLOW|TEST|{at}||{msg_type}^{trigger}|{ctl}|P|2.5.1",
            f"EVN|{trigger}|{at}",
            f"PID|1||{patient}^^^H^MR||DOE^ALEX||19480203|{sex}",
            f"PV1|1|I|{loc}||||||||||||||||V-{patient}", *extra]
    return "\r".join(segs).encode()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def capacity(port: int) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hospitals/test-hosp/capacity/", timeout=10) as resp:
        snap = json.load(resp)
    return {u["unit"]: {k: v for k, v in u["by_status"].items() if v and k != "available"} for u in snap["units"]}


def test_each_trigger_changes_the_tables_on_the_real_worker(broker, run_id, start_worker):
    web_port = free_port()
    start_worker(hospital_config=FIXTURE, web_port=web_port)
    prefix = f"{run_id}."

    async def decisions(n: int, settle_s: float = 2.0) -> list[dict]:
        rs = await read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters"],
                              lambda rs: sum(r.topic.endswith("decisions") for r in rs) >= n,
                              timeout_s=60, settle_s=settle_s)
        dead = [orjson.loads(r.value) for r in rs if r.topic.endswith("dead-letters")]
        assert dead == [], dead
        return [orjson.loads(r.value) for r in rs if r.topic.endswith("decisions")]

    async def until(predicate, what: str) -> dict:
        for _ in range(150):
            snap = await asyncio.to_thread(capacity, web_port)
            if predicate(snap):
                return snap
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: tables never got there; last {snap}")

    async def scenario():
        fhir_port = free_port()
        # No resend cache in the gateway: a resent message reaches the worker, which must ignore it.
        gw, port = await start_gateway(broker, run_id, fhir_port=fhir_port, fhir_host="127.0.0.1",
                                       fhir_worker_url=f"http://127.0.0.1:{web_port}", dedupe_cache_size=0)
        fhir = f"http://127.0.0.1:{fhir_port}/fhir"
        try:
            c = await Client.connect(port)
            # A01: admitted to the unit PV1-3 names -> an assignment on MED
            a01 = hl7("A01", "M-1", 0, "P1", "MED", "PV2|||^Fall at home, hip pain")
            assert msa(await c.send(a01)) == ("AA", "M-1")
            (assigned,) = await decisions(1)
            assert assigned["kind"] == "assignment" and assigned["unit"] == "MED"
            first_bed = assigned["bed_id"]
            await until(lambda s: s["MED"] == {"occupied": 1}, "A01 occupies a MED bed")
            # FHIR out: the bed as a Location (occupied), WardFlow's assignment as the Encounter's planned location
            locs = {e["resource"]["id"]: e["resource"] for e in (await asyncio.to_thread(get, f"{fhir}/Location"))["entry"]}
            assert locs[first_bed]["operationalStatus"]["code"] == "O"
            for _ in range(50):  # the gateway reads the decisions topic on its own
                encs = (await asyncio.to_thread(get, f"{fhir}/Encounter"))["entry"]
                if encs and encs[0]["resource"]["location"][0]["status"] == "planned":
                    break
                await asyncio.sleep(0.2)
            assert [(e["resource"]["id"], e["resource"]["location"][0]["location"]["reference"],
                     e["resource"]["location"][0]["status"]) for e in encs] == [("V-P1", f"Location/{first_bed}", "planned")]
            # the same message again: AA, published again with the same event ids, no new decision
            assert msa(await c.send(a01)) == ("AA", "M-1")
            resent = await read_until(broker.bootstrap, [f"{prefix}admissions"], lambda rs: len(rs) >= 2, timeout_s=20)
            assert len(resent) == 2 and resent[0].value == resent[1].value
            # A02 to the side room: the first bed becomes dirty
            assert msa(await c.send(hl7("A02", "M-2", 1, "P1", "MED^MED-SR1^MED-SR1"))) == ("AA", "M-2")
            await until(lambda s: s["MED"] == {"occupied": 1, "dirty": 1}, "A02 moves the patient")
            # A12 cancels it: back to the first bed (PV1-3), the side room dirty
            room = first_bed.rsplit("-", 1)[0]
            assert msa(await c.send(hl7("A12", "M-3", 2, "P1", f"MED^{room}^{first_bed}"))) == ("AA", "M-3")
            # A20: housekeeping closes a surgical bed
            a20 = hl7("A20", "M-4", 3, "P1", "", "NPU|SURG^SURG-SR1^SURG-SR1|C")
            assert msa(await c.send(a20)) == ("AA", "M-4")
            await until(lambda s: s["SURG"] == {"closed": 1} and s["MED"] == {"occupied": 1, "dirty": 1},
                        "A12 and A20")
            locs = {e["resource"]["id"]: e["resource"] for e in (await asyncio.to_thread(get, f"{fhir}/Location"))["entry"]}
            assert (locs["SURG-SR1"]["operationalStatus"]["code"], locs["MED-SR1"]["operationalStatus"]["code"]) == ("C", "H")
            free_surg = await asyncio.to_thread(get, f"{fhir}/Location?partof=Location/SURG&operational-status=U")
            assert sorted(e["resource"]["id"] for e in free_surg["entry"]) == ["SURG-B1-A", "SURG-B1-B"]
            # ORU^R01 with LOINC vitals for the stay
            oru = hl7("R01", "M-5", 4, "P1", "", "OBR|1|||vitals",
                      "OBX|1|NM|9279-1^RR^LN||18|/min|||||F", "OBX|2|NM|8867-4^HR^LN||80|/min|||||F",
                      msg_type="ORU")
            assert msa(await c.send(oru)) == ("AA", "M-5")
            # A03 discharge: the bed is dirty; A11 on a second admission frees that bed too
            assert msa(await c.send(hl7("A03", "M-6", 5, "P1", f"MED^{room}^{first_bed}"))) == ("AA", "M-6")
            a01b = hl7("A01", "M-7", 6, "P2", "MED", "PV2|||^Chest pain", sex="M")
            assert msa(await c.send(a01b)) == ("AA", "M-7")
            assert msa(await c.send(hl7("A11", "M-8", 7, "P2", "MED", sex="M"))) == ("AA", "M-8")
            await until(lambda s: s["MED"] == {"dirty": 3} and s["SURG"] == {"closed": 1}, "A03 and A11 free beds")
            # A13: P1's discharge is cancelled, back in the first bed; A17 swaps P1 with a new patient P3
            assert msa(await c.send(hl7("A13", "M-9", 8, "P1", f"MED^{room}^{first_bed}"))) == ("AA", "M-9")
            a01c = hl7("A01", "M-10", 9, "P3", "MED", "PV2|||^Abdominal pain")
            assert msa(await c.send(a01c)) == ("AA", "M-10")
            swap = hl7("A17", "M-11", 10, "P1", "", "PID|2||P3^^^H^MR||ROE^ANN||19500101|F",
                       "PV1|1|I|||||||||||||||||V-P3")
            assert msa(await c.send(swap)) == ("AA", "M-11")
            got = await decisions(9, settle_s=3.0)
            # the vitals gave a NEWS2 score; the resent A01 added nothing
            assert [(d["kind"], d["caused_by"].split(":")[-2]) for d in got] == [
                ("assignment", "M-1"), ("cancellation_applied", "M-3"), ("news2", "M-5"), ("assignment", "M-7"),
                ("cancellation_applied", "M-8"), ("cancellation_applied", "M-9"), ("assignment", "M-10"),
                ("swap_applied", "M-11"), ("swap_applied", "M-11")]
            third_bed = got[6]["bed_id"]
            assert [(d["encounter_id"], d["bed_id"]) for d in got[7:]] == [("V-P1", third_bed), ("V-P3", first_bed)]
            snap = await until(lambda s: s["MED"] == {"occupied": 2, "dirty": 2}, "A13 reopens, A17 swaps")
            assert snap["SURG"] == {"closed": 1}
            # A08 and A05 change nothing; A06 admits (outpatient -> inpatient), A07 releases the bed again;
            # an A04 registration of an inpatient admits, of an outpatient does nothing
            for message, ctl in ((hl7("A08", "M-12", 11, "P3", "MED"), "M-12"),
                                 (hl7("A05", "M-13", 12, "P4", "MED"), "M-13"),
                                 (hl7("A06", "M-14", 13, "P4", "SURG", "PV2|||^Post-op review"), "M-14"),
                                 (hl7("A07", "M-15", 14, "P4", "OPD"), "M-15"),
                                 (hl7("A04", "M-16", 15, "P5", "SURG", "PV2|||^Fever"), "M-16"),
                                 (hl7("A04", "M-17", 16, "P6", "").replace(b"PV1|1|I|", b"PV1|1|O|"), "M-17")):
                assert msa(await c.send(message)) == ("AA", ctl)
            got = await decisions(11, settle_s=3.0)
            assert [(d["kind"], d["caused_by"].split(":")[-2]) for d in got[9:]] == [
                ("assignment", "M-14"), ("assignment", "M-16")]
            snap = await until(lambda s: s["SURG"] == {"closed": 1, "dirty": 1, "occupied": 1}, "A06, A07, A04")
            assert snap["MED"] == {"occupied": 2, "dirty": 2}
            await c.close()
        finally:
            await gw.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=200))
