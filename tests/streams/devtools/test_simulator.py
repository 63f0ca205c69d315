"""The hospital simulator: determinism, realism figures, contract validity, agreement with the
worker's own handlers, and a publish round trip on the embedded broker."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, load_hospitals
from allocator.whatif_cases import ED_ARRIVALS_PER_BED_PER_DAY, LENGTH_OF_STAY, CaseMix
from streams.devtools.simulator import HospitalSimulator, SimEvent, SimulatedClinicians

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday, midnight
DAYS = 2
DECODE_FAILURES = {"broken_json": "malformed_json", "not_utf8": "not_utf8", "missing_field": "missing_field",
                   "wrong_type": "wrong_type", "naive_timestamp": "bad_timestamp"}


def _run(hospital: Hospital, days: float, **options) -> tuple[HospitalSimulator, list[SimEvent]]:
    options = {"seed": 7, "start": START, **options}
    sim = HospitalSimulator(hospital, **options)
    return sim, list(sim.events(until=options["start"] + timedelta(days=days)))


def _body(event: SimEvent) -> dict:
    return orjson.loads(event.value)


@pytest.fixture(scope="module")
def demo() -> Hospital:
    return next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))


@pytest.fixture(scope="module")
def days_run(demo: Hospital) -> tuple[HospitalSimulator, list[SimEvent]]:
    """Two days of the demo hospital with default settings plus vitals (shared: the costly part)."""
    return _run(demo, DAYS, vitals=True)


# ---------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_another_seed_differs(demo: Hospital) -> None:
    def key(events: list[SimEvent]) -> list[tuple]:
        return [(e.at, e.topic, e.key, e.value, e.malformed) for e in events]

    _, first = _run(demo, 0.25)
    _, again = _run(demo, 0.25)
    _, other = _run(demo, 0.25, seed=8)
    assert key(first) == key(again)
    assert len(first) > 200
    assert key(first) != key(other)
    assert {_body(e)["encounter_id"] for e in first if e.topic == "admissions" and not e.malformed}.isdisjoint(
        {_body(e)["encounter_id"] for e in other if e.topic == "admissions" and not e.malformed})


def test_broken_messages_do_not_change_the_rest_of_the_story(demo: Hospital) -> None:
    _, clean = _run(demo, 0.25, malformed_rate=0.0)
    _, noisy = _run(demo, 0.25, malformed_rate=0.05)
    assert not any(e.malformed for e in clean)
    assert [e for e in noisy if not e.malformed] == clean


def test_events_come_in_simulated_time_order(days_run) -> None:
    _, events = days_run
    times = [e.at for e in events]
    assert times == sorted(times)
    assert events[-1].at <= START + timedelta(days=DAYS)


# ---------------------------------------------------------------- realism figures


def _arrivals(events: list[SimEvent]) -> list[dict]:
    """ED arrivals: admissions at or after the start (the census is admitted just before)."""
    return [_body(e) for e in events if e.topic == "admissions" and not e.malformed and e.at >= START]


def test_the_demand_is_the_what_ifs(demo: Hospital) -> None:
    """One hospital, one set of distributions: the service mix and the stays of the event simulator are
    the what-if's (`allocator.whatif_cases`), stays scaled alike."""
    sim = HospitalSimulator(demo, seed=1, start=START)
    mix = CaseMix(demo)
    assert sim.arrivals_per_day == ED_ARRIVALS_PER_BED_PER_DAY * len(demo.beds)
    assert sim._admitting_labels() == mix.admissions_per_day["normal"]
    median, _ = LENGTH_OF_STAY["MEDICINE"]
    stays = sorted(sim._length_of_stay("MEDICINE").total_seconds() / 86400 for _ in range(2001))
    assert stays[1000] == pytest.approx(median * mix.stay_scale, rel=0.08)


def test_arrivals_per_day_and_hour_of_day_shape(demo: Hospital, days_run) -> None:
    sim, events = days_run
    arrivals = _arrivals(events)
    per_day = Counter(datetime.fromisoformat(a["occurred_at"]).date() for a in arrivals)
    assert len(per_day) == DAYS
    expected = ED_ARRIVALS_PER_BED_PER_DAY * len(demo.beds)  # the what-if's rate: ~252 a day for 378 beds
    assert all(0.75 * expected <= n <= 1.25 * expected for n in per_day.values()), (expected, per_day)
    by_hour = Counter(datetime.fromisoformat(a["occurred_at"]).hour for a in arrivals)
    assert by_hour[14] > 2 * by_hour[5], by_hour
    assert sum(by_hour[h] for h in range(10, 20)) > 1.8 * sum(by_hour[h] for h in range(0, 10)), by_hour
    assert sim.stats().arrivals == len(arrivals)
    assert sum(sim.stats().arrivals_by_hour) == len(arrivals)


def test_about_a_third_admitted_most_with_a_requested_unit(days_run) -> None:
    sim, events = days_run
    stats = sim.stats()
    assert 0.26 <= stats.admitted_share <= 0.41, stats.as_dict()
    arrivals = _arrivals(events)
    requested = [a for a in arrivals if "requested_unit" in a]
    assert 0.70 * stats.by_kind["admitted"] <= len(requested) <= stats.by_kind["admitted"]
    assert {a["arrival"] for a in arrivals} <= {"ambulance", "walk_in", "referral", "transfer"}
    assert {"ambulance", "walk_in"} <= {a["arrival"] for a in arrivals}
    assert any("weight_kg" in a for a in arrivals)
    everyone = [_body(e) for e in events if e.topic == "admissions" and not e.malformed]
    assert 0 < sum(bool(a.get("spo2_scale2")) for a in everyone) < 0.1 * len(everyone)


def test_the_day_starts_with_the_census_in_its_beds(demo: Hospital, days_run) -> None:
    sim, events = days_run
    census = [e for e in events if e.at < START and e.topic == "admissions" and not e.malformed]
    assert all("requested_unit" in _body(e) for e in census)
    assert all(START - timedelta(minutes=15) <= e.at for e in census)
    assert 0.80 * len(demo.beds) <= len(census) <= 0.90 * len(demo.beds)
    fresh = HospitalSimulator(demo, seed=7, start=START, malformed_rate=0.0)
    before = list(itertools.takewhile(lambda e: e.at < START, fresh.events(START + timedelta(days=1))))
    assert len(fresh.occupied_beds()) >= 0.75 * len(demo.beds), "the census is in its beds before the first arrival"
    assert sum(e.topic == "admissions" for e in before) == len(census)


def test_ward_discharges_mostly_in_the_daytime_ed_ones_two_to_five_hours_after_arrival(days_run) -> None:
    sim, events = days_run
    arrived: dict[str, tuple[datetime, bool]] = {}
    ward, ed_gaps = [], []
    for e in events:
        if e.malformed:
            continue
        body = _body(e)
        if e.topic == "admissions":
            arrived[body["encounter_id"]] = (e.at, "requested_unit" in body)
        elif e.topic == "discharges":
            at, requested = arrived[body["encounter_id"]]
            if requested:
                ward.append(e.at)
            elif e.at - at <= timedelta(hours=5):
                ed_gaps.append(e.at - at)
    assert len(ward) > 100
    assert sum(9 <= t.hour < 20 for t in ward) / len(ward) > 0.75, "most ward discharges in the daytime"
    assert len(ed_gaps) == sim.stats().by_kind["ed_discharge"] > 150
    assert all(timedelta(hours=2) <= gap for gap in ed_gaps)


def test_beds_are_cleaned_and_icu_patients_step_down(demo: Hospital, days_run) -> None:
    sim, events = days_run
    stats = sim.stats()
    for kind in ("cleaning", "clean", "manual_placement", "blocked"):
        assert stats.by_kind.get(kind, 0) > 0, (kind, stats.by_kind)
    # an ICU stay steps down 24-72 h after admission (or after what is left of it): two days of this seed hold none
    longer, _ = _run(demo, 4, vitals=False)
    assert longer.stats().by_kind.get("step_down", 0) > 0, longer.stats().by_kind
    statuses: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for e in events:
        if e.topic == "bed-status" and not e.malformed:
            statuses[_body(e)["bed_id"]].append((e.at, _body(e)["status"]))
    gaps = []
    for seq in statuses.values():
        for (t1, s1), (t2, s2) in itertools.pairwise(seq):
            if s1 == "cleaning" and s2 == "clean":
                gaps.append(t2 - t1)
    assert gaps and all(timedelta(minutes=30) <= g <= timedelta(minutes=120) for g in gaps)


def test_malformed_rate_and_mix(days_run) -> None:
    sim, events = days_run  # the default malformed_rate, 0.01
    broken = [e for e in events if e.malformed]
    share = len(broken) / len(events)
    assert 0.007 <= share <= 0.013, share
    assert sim.stats().malformed == dict(sorted(Counter(e.malformed for e in broken).items()))
    assert len(sim.stats().malformed) >= 6, sim.stats().malformed
    assert abs(sim.stats().malformed_share - share) < 1e-9


def test_vitals_sicker_patients_more_often_some_partial_some_deteriorating(days_run) -> None:
    _, events = days_run
    sets: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e.topic == "vitals" and not e.malformed:
            body = _body(e)
            sets[body["encounter_id"]].append(body)
    assert len(sets) > 200
    gaps = {enc: statistics.median(datetime.fromisoformat(b["occurred_at"]) - datetime.fromisoformat(a["occurred_at"])
                                   for a, b in itertools.pairwise(v)) for enc, v in sets.items() if len(v) >= 3}
    hourly = sum(g <= timedelta(minutes=75) for g in gaps.values())
    sparse = sum(g >= timedelta(hours=3.5) for g in gaps.values())
    assert hourly >= 0.15 * len(gaps) and sparse >= 0.15 * len(gaps), (hourly, sparse, len(gaps))
    full = ("resp_rate", "spo2", "systolic_bp", "heart_rate", "temperature_c")
    assert any(not all(k in s for k in full) for v in sets.values() for s in v), "some partial sets"
    rises = [max(s["resp_rate"] for s in v if "resp_rate" in s) - v[0]["resp_rate"]
             for v in sets.values() if "resp_rate" in v[0]]
    assert sum(r >= 8 for r in rises) >= 2, "some patients deteriorate"


# ---------------------------------------------------------------- contract and the worker


def test_every_valid_event_decodes_and_broken_ones_fail_as_intended(days_run) -> None:
    validation = pytest.importorskip("streams.contract.validation", reason="streams.contract.validation is not written yet")
    _, events = days_run
    for e in events:
        if e.malformed in DECODE_FAILURES:
            with pytest.raises(validation.ContractViolation) as info:
                validation.decode_event(e.topic, e.value)
            assert info.value.code == DECODE_FAILURES[e.malformed], e.malformed
        else:
            decoded = validation.decode_event(e.topic, e.value)
            assert decoded.occurred_at.utcoffset() is not None
            assert e.key == decoded.hospital_id.encode()
    ids = [_body(e)["event_id"] for e in events if e.malformed not in ("broken_json", "not_utf8", "missing_field")]
    assert len(ids) == len(set(ids)), "event ids are unique"


def test_beds_named_by_events_are_real(demo: Hospital, days_run) -> None:
    _, events = days_run
    named = [_body(e).get("to_bed_id") or _body(e).get("bed_id") for e in events
             if e.topic in ("transfers", "bed-status") and not e.malformed]
    assert len(named) > 100
    assert all(demo.bed(b) is not None for b in named)


def test_the_worker_applies_every_valid_event_and_ends_with_the_shadows_beds(demo: Hospital, days_run) -> None:
    """Replaying through the worker's own handlers: no transfer into an occupied bed, no bed-status
    on an occupied bed, no discharge of an unknown encounter; the final bed map is the shadow's."""
    handlers = pytest.importorskip("streams.state.handlers")
    from streams.contract.validation import decode_event
    from streams.exceptions import EventRejected
    from streams.state.tables import TABLE_NAMES, HospitalState, StagedTables

    sim, events = days_run
    tables = {name: {} for name in TABLE_NAMES}
    rejected: Counter[str] = Counter()
    for e in events:
        if e.malformed in DECODE_FAILURES or e.malformed == "unknown_hospital":
            continue
        state = HospitalState(StagedTables(tables), demo)
        try:
            handlers.handle(decode_event(e.topic, e.value), state, handlers.HandlerContext())
        except EventRejected as exc:
            rejected[f"{e.malformed}:{exc.code}"] += 1
            continue
        assert e.malformed is None, f"{e.malformed} was accepted"
        state.staged.commit()
    assert set(rejected) <= {"unknown_bed:unknown_bed", "discharge_never_admitted:unknown_encounter"}, rejected
    worker_beds = {k.split("|", 1)[1]: v.encounter_id for k, v in tables["beds"].items() if v.status == "occupied"}
    assert worker_beds == sim.occupied_beds()
    assert len(tables["waiting"].get(demo.hospital_id, [])) == sim.stats().waiting


# ---------------------------------------------------------------- publishing


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_publish_round_trip_on_the_embedded_broker(demo: Hospital, broker, run_id) -> None:
    from streams.contract.models import INPUT_MODELS
    from streams.devtools.broker import create_topics
    from streams.devtools.kafka_io import read_until
    from streams.devtools.sim_publish import publish

    prefix = f"{run_id}."
    sim = HospitalSimulator(demo, seed=3, start=START, malformed_rate=0.02)
    events = list(itertools.islice(sim.events(START + timedelta(days=1)), 400))
    asyncio.run(create_topics(broker.bootstrap, [prefix + t for t in INPUT_MODELS], partitions=2))
    progress: list[int] = []
    report = asyncio.run(publish(events, bootstrap=broker.bootstrap, prefix=prefix, speed=0,
                                 on_progress=lambda n, at: progress.append(n)))
    assert (report.sent, report.failed, report.stopped) == (400, 0, False)
    assert progress == list(range(1, 401))
    topics = sorted({prefix + e.topic for e in events})
    records = asyncio.run(read_until(broker.bootstrap, topics, lambda rs: len(rs) >= 400, timeout_s=30, settle_s=0.5))
    assert len(records) == 400
    assert Counter((r.topic, r.key, r.value) for r in records) == Counter((prefix + e.topic, e.key, e.value)
                                                                          for e in events)
    assert report.by_topic == dict(sorted(Counter(e.topic for e in events).items()))


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_publish_paces_by_simulated_time_and_stops_cleanly(demo: Hospital, broker, run_id) -> None:
    from streams.devtools.sim_publish import publish

    prefix = f"{run_id}."
    t0 = START
    events = [SimEvent(t0 + timedelta(seconds=60 * i), "bed-status", b"h", b"{}") for i in range(11)]
    report = asyncio.run(publish(events, bootstrap=broker.bootstrap, prefix=prefix, speed=600))  # 10 min -> 1 s
    assert report.sent == 11 and 0.95 <= report.wall_s < 4, report

    async def stopped_run():
        """Three events now, the fourth an hour of wall time away: stop interrupts the wait."""
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        later = [SimEvent(t0 + timedelta(hours=h), "bed-status", b"h", b"{}") for h in (0, 0, 0, 1)]
        return await publish(later, bootstrap=broker.bootstrap, prefix=prefix, speed=1.0, stop=stop)

    stopped = asyncio.run(asyncio.wait_for(stopped_run(), timeout=20))
    assert (stopped.sent, stopped.stopped) == (3, True)
    assert stopped.wall_s < 5


def _parser() -> argparse.ArgumentParser:
    from streams.devtools import sim_command

    parser = argparse.ArgumentParser(prog="wardflow simulate")
    sim_command.add_arguments(parser)
    return parser


def test_help_names_the_options() -> None:
    text = _parser().format_help()
    for option in ("--days", "--seed", "--speed", "--start", "--malformed-rate", "--initial-occupancy",
                   "--vitals", "--no-vitals", "--dry-run", "--output", "--broker-url", "--topic-prefix"):
        assert option in text, option
    with pytest.raises(SystemExit):
        _parser().parse_args(["--start", "2026-11-24T08:00:00"])  # naive: refused
    assert _parser().parse_args(["--speed", "max"]).speed == 0.0


def test_dry_run_writes_the_events_as_json_lines(demo: Hospital, tmp_path: Path, capsys) -> None:
    from streams.devtools import sim_command

    out = tmp_path / "events.jsonl"
    args = _parser().parse_args(["--dry-run", "--days", "0.1", "--start", START.isoformat(), "--output", str(out),
                                 "--malformed-rate", "0.05", "--topic-prefix", "x."])
    assert sim_command.run(args) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    _, events = _run(demo, 0.1, malformed_rate=0.05)
    assert len(lines) == len(events)
    for line, e in zip(lines, events, strict=True):
        assert line["topic"] == "x." + e.topic
        if e.malformed is None:
            assert orjson.dumps(line["value"]) == orjson.dumps(orjson.loads(e.value))
        else:
            assert line["malformed"] == e.malformed
    summary = orjson.loads(capsys.readouterr().err)
    assert summary["written"] == len(events)


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_simulate_command_publishes_to_the_broker(broker, run_id, capsys) -> None:
    from streams.devtools import sim_command

    args = _parser().parse_args(["--days", "0.05", "--speed", "max", "--start", START.isoformat(),
                                 "--broker-url", broker.url, "--topic-prefix", f"{run_id}."])
    assert sim_command.run(args) == 0
    summary = orjson.loads(capsys.readouterr().err)
    assert summary["published"]["failed"] == 0
    assert summary["published"]["sent"] == sum(summary["simulation"]["by_topic"].values()) > 200


# ---------------------------------------------------------------- the truth about paging (issue 13)


def test_the_simulator_knows_who_truly_deteriorates_and_when(days_run) -> None:
    sim, events = days_run
    until = START + timedelta(days=DAYS)
    truth = sim.true_episodes(until)
    kinds = Counter(e.kind for e in truth)
    assert kinds["deterioration"] >= 20 and kinds["unwell_on_admission"] >= 5, kinds
    for e in truth:
        assert e.started <= e.ended <= until
        assert e.onset is None or e.started <= e.onset <= e.ended
        assert (e.onset is None) == (e.onset_role is None)
    admitted = {_body(e)["encounter_id"]: e.at for e in events if e.topic == "admissions" and not e.malformed}
    for e in truth:
        if e.kind == "unwell_on_admission" and e.encounter_id in admitted and admitted[e.encounter_id] >= START:
            assert e.started == admitted[e.encounter_id] and e.onset == e.started
    assert truth == sim.true_episodes(until)  # asking twice changes nothing


def test_some_spo2_readings_are_probe_artefacts_and_the_rest_of_the_set_stays_true(days_run) -> None:
    sim, events = days_run
    assert sim.stats().by_kind["probe_artefact"] > 10
    low = [_body(e) for e in events if e.topic == "vitals" and not e.malformed and _body(e).get("spo2", 100) < 85]
    assert low and any(b.get("heart_rate", 0) < 91 and b.get("resp_rate", 0) < 21 for b in low)


def test_occupied_bed_days_integrate_the_occupied_beds(days_run) -> None:
    sim, _ = days_run
    occupied_now = sim.stats().occupied_beds
    assert 0.6 * occupied_now * DAYS < sim.occupied_bed_days() < 1.4 * occupied_now * DAYS


def test_clinicians_replies_join_the_stream_at_their_event_time(demo: Hospital) -> None:
    sim = HospitalSimulator(demo, seed=7, start=START, vitals=True, malformed_rate=0.0)
    events = sim.events(START + timedelta(hours=2))
    first_vitals = next(e for e in events if e.topic == "vitals")
    encounter = _body(first_vitals)["encounter_id"]
    sim.acknowledge("pg-x-1", first_vitals.at + timedelta(minutes=3), "dr-a")
    sim.repeat_observations(encounter, first_vitals.at + timedelta(minutes=4))
    rest = list(events)
    assert [e.at for e in rest] == sorted(e.at for e in rest)
    ack = next(e for e in rest if e.topic == "page-acks")
    assert _body(ack)["page_id"] == "pg-x-1" and ack.at == first_vitals.at + timedelta(minutes=3)
    repeat = next(e for e in rest if e.topic == "vitals" and _body(e)["encounter_id"] == encounter)
    assert repeat.at == first_vitals.at + timedelta(minutes=4) and "-r1" in _body(repeat)["event_id"]
    assert {"resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness",
            "temperature_c"} <= set(_body(repeat))


def test_a_set_asked_for_sooner_is_taken_before_its_due_time_and_leaves_the_rest_of_the_stream_unchanged(
        demo: Hospital) -> None:
    def run(ask: bool) -> tuple[list, SimulatedClinicians, str]:
        sim = HospitalSimulator(demo, seed=7, start=START, vitals=True, malformed_rate=0.0)
        staff = SimulatedClinicians(sim)
        events = sim.events(START + timedelta(hours=3))
        first = next(e for e in events if e.topic == "vitals")
        encounter = _body(first)["encounter_id"]
        if ask:  # the board asks for this patient's next set within 30 minutes (a rising score)
            staff.read("review_due", first.at, encounter_id=encounter, observe_by=first.at + timedelta(minutes=30))
        return [first, *events], staff, encounter

    plain, _, _ = run(False)
    asked, staff, encounter = run(True)
    extra = [e for e in asked if "-o" in _body(e)["event_id"]]
    assert [e for e in asked if e not in extra] == plain  # every other event, byte for byte
    [one] = extra
    assert one.topic == "vitals" and _body(one)["encounter_id"] == encounter and staff.extra_sets == 1
    assert plain[0].at + timedelta(minutes=20) <= one.at <= plain[0].at + timedelta(minutes=30)
    assert {"resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness",
            "temperature_c"} <= set(_body(one))


def test_no_extra_set_when_the_patients_own_observations_come_first(demo: Hospital) -> None:
    sim = HospitalSimulator(demo, seed=7, start=START, vitals=True, malformed_rate=0.0)
    staff = SimulatedClinicians(sim)
    events = sim.events(START + timedelta(hours=30))
    first = next(e for e in events if e.topic == "vitals")
    encounter = _body(first)["encounter_id"]
    staff.read("review_due", first.at, encounter_id=encounter, observe_by=first.at + timedelta(hours=24))
    assert not [e for e in events if "-o" in _body(e)["event_id"]] and staff.extra_sets == 0
    staff.read("review_due", first.at, encounter_id=encounter)  # the chart's own frequency: the nurse's schedule
    assert staff.extra_sets == 0


def test_measurement_noise_scales_the_readings_and_leaves_the_story_unchanged(demo: Hospital) -> None:
    from streams.devtools.simulator import _true_physiology

    def run(noise: float) -> tuple[HospitalSimulator, list[tuple[SimEvent, tuple | None]]]:
        sim = HospitalSimulator(demo, seed=3, start=START, vitals=True, malformed_rate=0.0, measurement_noise=noise)
        out = []
        for e in sim.events(START + timedelta(hours=4)):
            truth = None
            if e.topic == "vitals":
                p = sim._patients[_body(e)["encounter_id"]]
                if p.deteriorating_until is None:  # not deteriorating: the true physiology is the settling one
                    truth = _true_physiology(p, 0.0, sim._settling(p, e.at))
            out.append((e, truth))
        return sim, out

    _, exact = run(0.0)
    _, noisy = run(1.0)
    def admissions(run: list) -> list[bytes]:
        return [e.value for e, _ in run if e.topic == "admissions"]

    # The same patients (the nurses keep to the chart's frequency for the sets they measure, so the times of
    # later sets, and what the vitals draws decide at them, follow the readings).
    assert admissions(exact) == admissions(noisy)
    checked = 0
    for e, truth in exact:
        body = _body(e)
        if truth is not None and {"resp_rate", "systolic_bp", "heart_rate"} <= body.keys():
            assert (body["resp_rate"], body["systolic_bp"], body["heart_rate"]) == (
                max(6, round(truth[0])), max(60, round(truth[2])), max(35, round(truth[3])))
            checked += 1
    assert checked > 50
    first = {_body(e)["encounter_id"]: _body(e) for e, _ in reversed(exact) if e.topic == "vitals"}
    noisy_first = {_body(e)["encounter_id"]: _body(e) for e, _ in reversed(noisy) if e.topic == "vitals"}
    assert any(first[k].get("systolic_bp") != noisy_first[k].get("systolic_bp") for k in first.keys() & noisy_first)
    with pytest.raises(ValueError, match="measurement_noise"):
        HospitalSimulator(demo, seed=3, start=START, vitals=True, measurement_noise=-1)
