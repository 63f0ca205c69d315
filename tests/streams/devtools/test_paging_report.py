"""The paging report: figures computed by hand on a tiny scripted ward, today's old rules replayed, the
closed loop in event time (acks at the time a page is read) and the CLI."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals
from allocator.news2 import Band
from allocator.paging_legacy import PagingConfig as LegacyConfig
from streams.devtools import paging_report as pr
from streams.devtools.memory import InMemoryWorker
from streams.devtools.simulator import SimEvent, TrueEpisode
from streams.pipeline.processor import RawMessage
from streams.state.clinical import ClinicalConfig

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
CHAIN = ("nurse_in_charge", "ward_doctor", "critical_care_outreach", "rapid_response")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def episode(enc: str, started: float, ended: float, onset: float | None, kind: str = "deterioration",
            role: str | None = "ward_doctor") -> TrueEpisode:
    return TrueEpisode(kind=kind, encounter_id=enc, patient_id="P" + enc, started=at(started), ended=at(ended),
                       onset=None if onset is None else at(onset), onset_role=role if onset is not None else None)


def page(enc: str, minutes: float, role: str = "ward_doctor", kind: str = "page") -> pr.Sent:
    return pr.Sent(kind, at(minutes), enc, f"pg-{enc}-{minutes}", role, True)


# --- the figures on a tiny scripted ward, by hand ---

def scripted_ward() -> pr.RunResult:
    """Two beds for two days (4 occupied bed-days); three deteriorations and one patient unwell on admission.

    E1: deteriorates from 0, truly at paging level from 50, observed medium at 60; paged at 60: 10 minutes, in time.
    E2: deteriorates from 100, onset 150, observed high at 160 (the chart's role: outreach); the ward doctor is paged
        at 160 (below the chart's role) and outreach only by escalation at 175 (in time: 160 + 15): 25 minutes.
    E3: deteriorates from 300, onset 320, observed medium at 330 and never paged: a miss.
    E4: deteriorates from 400 but is never observed at a paging level: not judged.
    E5: unwell on admission from 500 to 600; paged at 510 (a true page, not a deterioration).
    A noise page for E6 at 700 and a page for E1 after its episode ended (at 1000) are false pages.
    """
    truth = [episode("E1", 0, 240, 50), episode("E2", 100, 400, 150, role="critical_care_outreach"),
             episode("E3", 300, 600, 320), episode("E4", 400, 700, None),
             episode("E5", 500, 600, 500, kind="unwell_on_admission")]
    scores = {"E1": [(at(30), Band.LOW), (at(60), Band.MEDIUM)], "E2": [(at(160), Band.HIGH)],
              "E3": [(at(330), Band.MEDIUM)], "E4": [(at(450), Band.LOW)]}
    sent = [page("E1", 60), page("E2", 160), page("E2", 175, "critical_care_outreach", "escalation"),
            page("E5", 510), page("E6", 700), page("E1", 1000),
            pr.Sent("observations_overdue", at(800), None, None, "nurse_in_charge", True),
            pr.Sent("review_due", at(30), "E1")]
    return pr.RunResult(sent=sent, scores=scores, truth=truth, occupied_bed_days=4.0, until=at(2 * 24 * 60))


def test_the_figures_of_a_tiny_scripted_ward_are_the_ones_computed_by_hand():
    f = pr.figures(scripted_ward(), escalate_after_minutes=15, chain=CHAIN)
    assert f["pages_per_100_occupied_beds_per_day"] == 100 * 5 / 4  # five pages over four occupied bed-days
    assert f["escalations_per_100_occupied_beds_per_day"] == 25.0
    assert f["interruptions_per_100_occupied_beds_per_day"] == 100 * 7 / 4  # the review on the board is none
    assert f["deterioration_recall"] == round(2 / 3, 4)  # E1 and E2 of E1, E2, E3
    assert f["median_minutes_to_first_page"] == 25.0  # 10, 25 and never
    assert f["median_minutes_from_chart_to_page"] == 15.0  # 0, 15 and never
    assert f["page_precision"] == round(3 / 5, 4)  # E1 at 60, E2 at 160, E5 at 510
    counts = f["counts"]
    assert (counts["true_deteriorations"], counts["deteriorations_chart_called_for_a_page"],
            counts["deteriorations_chart_never_called"], counts["deteriorations_reached_in_time"],
            counts["unwell_on_admission"]) == (4, 3, 1, 2, 1)


def test_patients_unwell_on_admission_are_measured_from_admission_beside_the_deteriorations():
    """Any rule that delays a page (a repeat set asked for first) shows here as well: E5 (admitted unwell at 500)
    scores medium at 505 and is paged at 510; E7 (admitted unwell at 800) scores medium at 810 and is paged only at
    870 (after its escalation time); E8 is unwell but never scores in a paging band (not judged)."""
    result = scripted_ward()
    truth = [*result.truth, episode("E7", 800, 900, 800, kind="unwell_on_admission"),
             episode("E8", 900, 1000, 900, kind="unwell_on_admission")]
    scores = {**result.scores, "E5": [(at(505), Band.MEDIUM)], "E7": [(at(810), Band.MEDIUM)],
              "E8": [(at(905), Band.LOW)]}
    result = replace(result, truth=truth, scores=scores, sent=[*result.sent, page("E7", 870)])
    f = pr.figures(result, escalate_after_minutes=15, chain=CHAIN)
    assert f["unwell_on_admission_reached_in_time"] == 0.5  # E5 of E5 and E7
    assert f["median_minutes_to_first_page_unwell_on_admission"] == 40.0  # 10 and 70
    assert f["counts"]["unwell_on_admission_chart_called_for_a_page"] == 2
    assert f["deterioration_recall"] == round(2 / 3, 4)  # unchanged: deteriorations only


def test_a_page_already_sent_in_the_deterioration_before_the_onset_counts_as_zero_minutes():
    result = pr.RunResult(sent=[page("E1", 20), page("E1", 70, "critical_care_outreach", "escalation")],
                          scores={"E1": [(at(60), Band.MEDIUM)]},
                          truth=[episode("E1", 0, 240, 50)], occupied_bed_days=1.0, until=at(1440))
    f = pr.figures(result, escalate_after_minutes=15, chain=CHAIN)
    assert (f["deterioration_recall"], f["median_minutes_to_first_page"]) == (1.0, 0.0)
    # not a target: the same, counting only pages at or after the onset (here the escalation at 70)
    assert f["median_minutes_to_first_page_at_or_after_onset"] == 20.0


def test_a_page_later_than_the_escalation_time_is_not_recalled():
    result = pr.RunResult(sent=[page("E1", 76)], scores={"E1": [(at(60), Band.MEDIUM)]},
                          truth=[episode("E1", 0, 240, 50)], occupied_bed_days=1.0, until=at(1440))
    f = pr.figures(result, escalate_after_minutes=15, chain=CHAIN)
    assert (f["deterioration_recall"], f["median_minutes_to_first_page"]) == (0.0, 26.0)


def test_targets_compare_the_two_runs():
    current = {"deterioration_recall": 1.0, "median_minutes_to_first_page": 30.0, "page_precision": 0.85,
               "pages_per_100_occupied_beds_per_day": 10.0, "escalations_per_100_occupied_beds_per_day": 2.0}
    legacy = {"deterioration_recall": 1.0, "median_minutes_to_first_page": 31.0, "page_precision": 0.2,
              "pages_per_100_occupied_beds_per_day": 50.0, "escalations_per_100_occupied_beds_per_day": 9.0}
    assert pr.targets(current, legacy) == {
        "recall_is_100_percent": True, "median_minutes_no_worse_than_legacy": True, "precision_at_least_0_8": True,
        "pages_plus_escalations_times_fewer_than_legacy": 4.92, "at_least_5_times_fewer": False}
    worse = {**current, "median_minutes_to_first_page": "never", "deterioration_recall": 0.99}
    assert not any(pr.targets(worse, legacy)[k] for k in ("recall_is_100_percent",
                                                          "median_minutes_no_worse_than_legacy"))


# --- today's old rules, replayed ---

def _vitals(minutes: float, event_id: str, **values) -> SimEvent:
    body = {"event_id": event_id, "hospital_id": "h", "occurred_at": at(minutes).isoformat(), "patient_id": "P1",
            "encounter_id": "E1", **values}
    return SimEvent(at(minutes), "vitals", b"h", orjson.dumps(body))


CALM = dict(resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
            temperature_c=36.8)


def test_the_legacy_replica_pages_the_nurse_for_one_to_four_and_escalates_as_the_old_worker_did():
    scorer = pr.ChartScorer(timedelta(minutes=60), lambda enc: (70.0, False, False))
    legacy = pr.LegacyClinical(LegacyConfig(), scorer)
    first = legacy.process(_vitals(0, "v1", **{**CALM, "resp_rate": 22}))  # 2: low
    assert [(s.kind, s.role) for s in first] == [("page", "nurse_in_charge")]
    assert legacy.process(_vitals(10, "v2", **{**CALM, "resp_rate": 22})) == []  # suppressed for 60 minutes
    esc = legacy.process(_vitals(15, "v3", **CALM))
    assert [(s.kind, s.role) for s in esc] == [("escalation", "ward_doctor")]
    ack = {"event_id": "a1", "hospital_id": "h", "occurred_at": at(20).isoformat(), "page_id": first[0].page_id,
           "clinician_id": "dr-a"}
    assert legacy.process(SimEvent(at(20), "page-acks", b"h", orjson.dumps(ack))) == []
    again = legacy.process(_vitals(75, "v4", **{**CALM, "resp_rate": 22}))
    assert [(s.kind, s.role) for s in again] == [("page", "nurse_in_charge")]
    assert scorer.scores["E1"][0] == (at(0), Band.LOW)


# --- the closed loop in event time ---

@pytest.fixture(scope="module")
def demo():
    return next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))


@pytest.fixture(scope="module")
def quarter_day(demo):
    return pr.run(demo, seed=11, start=T0, days=0.25, clinical=ClinicalConfig(), ack_loss_rate=0.2, keep_inputs=True)


def test_simulated_clinicians_acknowledge_in_event_time_when_they_read_the_page(quarter_day):
    sent = {s.page_id: s for s in quarter_day.sent if s.kind in ("page", "escalation")}
    acks = [orjson.loads(e.value) for e in quarter_day.inputs if e.topic == "page-acks"]
    assert 0 < len(acks) <= quarter_day.acks_sent and quarter_day.acks_lost > 0  # one may be read after the end
    for ack in acks:
        read_after = datetime.fromisoformat(ack["occurred_at"]) - sent[ack["page_id"]].created_at
        assert timedelta(minutes=1) <= read_after <= timedelta(minutes=10)
    assert quarter_day.dead_letters == Counter()  # every ack names a page the worker sent
    times = [e.at for e in quarter_day.inputs]
    assert times == sorted(times)  # acks and repeats sit in the stream in event-time order


def test_a_replay_of_the_stream_with_its_acks_gives_the_same_pages_and_escalations(quarter_day, demo):
    """Acks in event time under replay: the stream alone (however fast it is replayed) decides the escalations."""
    worker = InMemoryWorker({demo.hospital_id: demo})
    outcomes = asyncio.run(worker.feed(
        RawMessage(topic="wardflow." + e.topic, partition=0, offset=i, key=e.key, value=e.value)
        for i, e in enumerate(quarter_day.inputs)))
    replayed = [(d.kind, d.page_id, d.created_at) for o in outcomes for d in o.decisions
                if d.kind in ("page", "escalation")]
    original = [(s.kind, s.page_id, s.created_at) for s in quarter_day.sent if s.kind in ("page", "escalation")]
    assert replayed == original
    escalations = sum(1 for s in quarter_day.sent if s.kind == "escalation")
    assert 0 < escalations <= quarter_day.acks_lost  # only lost acks escalate


def test_a_repeat_is_taken_for_every_suspect_reading(quarter_day):
    asked = sum(1 for s in quarter_day.sent if s.kind == "repeat_observation")
    repeats = [e for e in quarter_day.inputs if e.topic == "vitals" and "-r" in orjson.loads(e.value)["event_id"]]
    assert asked == quarter_day.repeats and 0 < len(repeats) <= asked  # one may fall after the stretch ends
    assert all(len(orjson.loads(e.value)) == 12 for e in repeats)  # a full set: ids, time and seven readings


def test_the_nurse_takes_the_set_the_board_asks_for_after_a_rising_score(quarter_day):
    extra = [e for e in quarter_day.inputs if e.topic == "vitals" and "-o" in orjson.loads(e.value)["event_id"]]
    assert 0 < len(extra) <= quarter_day.extra_sets  # one may fall after the stretch ends
    assert all(len(orjson.loads(e.value)) == 12 for e in extra)  # a full set: ids, time and seven readings
    counts = pr.figures(quarter_day, escalate_after_minutes=15, chain=CHAIN)["counts"]
    assert counts["extra_sets_taken"] == quarter_day.extra_sets and counts["review_due_rising"] > 0


def test_the_cli_prints_the_report_as_json(capsys):
    from streams.cli import build_parser

    args = build_parser().parse_args(["simulate", "--offline", "--paging-report", "--days", "0.1", "--start",
                                      T0.isoformat(), "--ack-loss-rate", "0.3", "--malformed-rate", "0",
                                      "--measurement-noise", "0.5"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    rep = orjson.loads(out)
    assert rep["simulation"]["ack_loss_rate"] == 0.3 and rep["simulation"]["measurement_noise"] == 0.5
    assert orjson.loads(err.strip().splitlines()[-1])["offline"]["decisions"]["page"] == rep["counts"]["pages"]
    for key in ("pages_per_100_occupied_beds_per_day", "escalations_per_100_occupied_beds_per_day",
                "deterioration_recall", "median_minutes_to_first_page", "page_precision"):
        assert key in rep and key in rep["legacy"]  # both rule sets, side by side, from the same stretch
    assert rep["legacy"]["pages_per_100_occupied_beds_per_day"] > rep["pages_per_100_occupied_beds_per_day"]
    assert rep["simulation"]["occupied_bed_days"] > 0.5 * 378 * 0.1
    assert "| page precision |" in pr.table(rep)


def test_the_cli_refuses_a_paging_report_without_offline():
    from streams.cli import build_parser
    from streams.exceptions import StreamsError

    args = build_parser().parse_args(["simulate", "--paging-report", "--days", "0.1"])
    with pytest.raises(StreamsError, match="--offline"):
        args.func(args)


def test_a_stretch_with_nothing_to_judge_says_so_rather_than_pass_or_fail():
    empty = {"deterioration_recall": None, "median_minutes_to_first_page": None, "page_precision": None,
             "pages_per_100_occupied_beds_per_day": 0.0, "escalations_per_100_occupied_beds_per_day": 0.0}
    judged = pr.targets(empty, {**empty, "pages_per_100_occupied_beds_per_day": 3.0})
    assert [judged[k] for k in ("recall_is_100_percent", "median_minutes_no_worse_than_legacy",
                                "precision_at_least_0_8")] == [None, None, None]
    assert judged["pages_plus_escalations_times_fewer_than_legacy"] == "all"


def test_a_deterioration_that_starts_while_the_patient_is_still_truly_unwell_is_the_same_need():
    """Paged at 10 for being unwell on admission (until 120); deteriorates from 100, chart high at 130: already reached."""
    truth = [episode("E1", 0, 120, 0, kind="unwell_on_admission", role="critical_care_outreach"),
             episode("E1", 100, 400, 100, role="critical_care_outreach")]
    result = pr.RunResult(sent=[page("E1", 10, "critical_care_outreach")], scores={"E1": [(at(130), Band.HIGH)]},
                          truth=truth, occupied_bed_days=1.0, until=at(1440))
    assert pr.figures(result, escalate_after_minutes=15, chain=CHAIN)["deterioration_recall"] == 1.0
    apart = [replace(truth[0], ended=at(90)), truth[1]]  # recovered before it started: a new need, not reached
    result = replace(result, truth=apart)
    assert pr.figures(result, escalate_after_minutes=15, chain=CHAIN)["deterioration_recall"] == 0.0


def test_both_rule_sets_see_the_same_simulated_patients_and_observations(quarter_day, demo):
    """The same seed and start: only the clinicians' replies (acks, repeat sets, sets asked for sooner) differ
    between the two runs."""
    legacy = pr.run(demo, seed=11, start=T0, days=0.25, clinical=ClinicalConfig(), ack_loss_rate=0.2, legacy=True,
                    keep_inputs=True)

    def story(run: pr.RunResult) -> list[bytes]:
        return [e.value for e in run.inputs
                if e.topic != "page-acks" and not re.search(r"-[ro]\d+$", orjson.loads(e.value)["event_id"])]

    assert story(legacy) == story(quarter_day)
    assert legacy.truth == quarter_day.truth and legacy.scores.keys() == quarter_day.scores.keys()


class _OneUnitModel:
    """A stand-in triage model: every arrival to MEDICINE, confident (the closed loop must carry its predictions)."""

    model_version = "test-1"

    def predict_batch(self, requests):
        from inference.interface import TriagePrediction

        return [TriagePrediction(id=r.id, target_unit="MEDICINE", unit_probs={"MEDICINE": 0.9}, acuity=3,
                                 acuity_probs={"3": 1.0}, needs=(), need_probs={}, uncertain=False,
                                 model_version=self.model_version) for r in requests]


def test_the_closed_loop_runs_the_workers_model_when_given_one(demo):
    """The demo's in-memory run uses the live worker's model, so both place and page the same patients."""
    with_model = pr.run(demo, seed=11, start=T0, days=0.02, clinical=ClinicalConfig(), ack_loss_rate=0.1,
                        model=_OneUnitModel())
    without = pr.run(demo, seed=11, start=T0, days=0.02, clinical=ClinicalConfig(), ack_loss_rate=0.1)
    assert with_model.kinds["needs_confirmation"] < without.kinds["needs_confirmation"]
    assert with_model.dead_letters == Counter()
