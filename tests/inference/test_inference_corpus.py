"""The synthetic corpus: determinism, coverage, the taxonomy's label rules, negation, splits."""

from __future__ import annotations

import json
import random
import re

import pytest

from inference import corpus
from inference.corpus import (
    NEEDS,
    REGISTERS,
    TEMPLATE_IDS,
    UNITS,
    derive_labels,
    generate_corpus,
    generate_splits,
    heldout_sets,
    sample_case,
)
from inference.presentations import PRESENTATIONS, Presentation
from tests import inference_support as sup


@pytest.fixture(scope="module")
def cases():
    return generate_corpus(3000, seed=7)


def test_same_seed_same_corpus_and_other_seed_differs():
    a = [c.to_dict() for c in generate_corpus(300, seed=11)]
    b = [c.to_dict() for c in generate_corpus(300, seed=11)]
    c = [c.to_dict() for c in generate_corpus(300, seed=12)]
    assert a == b
    assert a != c
    r1, r2 = random.Random(5), random.Random(5)
    assert sample_case(r1) == sample_case(r2)


def test_coverage_of_presentations_units_acuities_needs_registers(cases):
    assert len(PRESENTATIONS) >= 150
    assert {p.unit for p in PRESENTATIONS} == set(UNITS)
    assert {c.target_unit for c in cases} == set(UNITS)
    assert {c.acuity for c in cases} == {1, 2, 3, 4, 5}
    assert {n for c in cases for n in c.needs} == set(NEEDS)
    assert {c.register for c in cases} == set(REGISTERS)
    assert len(TEMPLATE_IDS) >= 20
    assert any(c.age < 1 for c in cases) and any(c.age >= 90 for c in cases)
    assert any(c.pregnant_weeks is not None for c in cases)
    assert any(c.weight_kg is not None for c in cases)
    assert all(c.text.strip() and "{" not in c.text for c in cases)


def test_precedence_rules_on_scenario_facts():
    icu = next(p for p in PRESENTATIONS if p.unit == "ICU")
    ortho = next(p for p in PRESENTATIONS if p.unit == "ORTHO")
    mat = next(p for p in PRESENTATIONS if p.unit == "MATERNITY" and p.preg and p.preg[0] >= 20)
    disch = next(p for p in PRESENTATIONS if p.unit == "DISCHARGE")
    assert derive_labels(icu, 4.0, None, False, ())[0] == "ICU"               # ICU at any age
    assert derive_labels(icu, 30.0, 30.0, False, ())[0] == "ICU"              # ...and in any pregnancy
    assert derive_labels(ortho, 9.0, None, False, ())[0] == "PAEDIATRICS"     # under 16 admitted
    assert derive_labels(ortho, 16.0, None, False, ())[0] == "ORTHO"
    assert derive_labels(mat, 15.0, 34.0, False, ())[0] == "PAEDIATRICS"      # PAEDIATRICS > MATERNITY
    assert derive_labels(mat, 28.0, 34.0, False, ())[0] == "MATERNITY"
    assert derive_labels(disch, 6.0, None, False, ())[0] == "DISCHARGE"       # children sent home stay DISCHARGE
    three = next(p for p in PRESENTATIONS if p.acuity == 3)
    assert derive_labels(three, 50.0, None, True, ())[1] == 2                 # danger-zone vitals lift ESI 3 to 2
    assert derive_labels(three, 50.0, None, False, ())[1] == 3


def test_generated_labels_follow_the_rules(cases):
    by_id = {p.id: p for p in PRESENTATIONS}
    for c in cases:
        p = by_id[c.presentation]
        if p.unit == "ICU":
            assert c.target_unit == "ICU"
        elif c.age < 16 and p.unit != "DISCHARGE":
            assert c.target_unit == "PAEDIATRICS", c
        elif p.pregnancy_problem:
            assert c.target_unit == "MATERNITY"
        else:
            assert c.target_unit == p.unit
        assert c.acuity in (p.acuity, 2 if p.acuity == 3 else p.acuity)
        assert set(p.needs) <= set(c.needs)
    under16 = [c for c in cases if c.age < 16]
    assert {c.target_unit for c in under16} <= {"PAEDIATRICS", "ICU", "DISCHARGE"}
    assert sum(c.target_unit == "PAEDIATRICS" for c in under16) > 50


def test_negated_findings_are_not_needs(cases):
    """A keyword matcher would read 'MRSA', 'chest pain', 'suicidal', 'COVID' as needs; the labels don't."""
    distinct = {"MRSA screen negative", "MRSA swabs neg", "COVID swab negative", "covid LFT neg", "flu swab negative",
                "denies suicidal ideation", "no SI/HI", "no thoughts of self harm", "denies chest pain",
                "troponin negative", "no oxygen requirement", "not requiring O2"}
    negations = [(text, need) for _, need, text in corpus._NEGATIVES if need and text in distinct]
    hits = 0
    for c in cases:
        for text, need in negations:
            if re.search(re.escape(text), c.text, flags=re.IGNORECASE):
                hits += 1
                assert need not in c.needs, (text, c.presentation)
    assert hits > 200
    keywordy = [c for c in cases if re.search(r"MRSA screen negative|MRSA swabs neg", c.text, re.I)]
    assert keywordy and all("contact_isolation" not in c.needs for c in keywordy)


def test_history_does_not_drive_the_decision(cases):
    with_mh_history = [c for c in cases if "bipolar disorder, stable on lithium" in c.text
                       or "depression, on sertraline" in c.text]
    assert with_mh_history
    assert any(c.target_unit not in ("MENTAL_HEALTH", "PAEDIATRICS") for c in with_mh_history)
    decolonised = [c for c in cases if "decolonised, screens negative since" in c.text]
    assert decolonised and all("contact_isolation" not in c.needs for c in decolonised)


def test_bariatric_and_pregnancy_facts_agree_with_labels(cases):
    for c in cases:
        if c.weight_kg is not None and c.weight_kg >= 150:
            assert "bariatric" in c.needs
        if c.target_unit == "MATERNITY":  # pregnant, or just delivered (postpartum presentations)
            assert (c.pregnant_weeks is not None or "postpartum" in c.presentation) and c.sex == "F" and c.age >= 16


def test_splits_hold_out_whole_presentations_and_templates():
    held = heldout_sets(13)
    assert held.test_presentations and held.val_presentations and held.test_templates and held.val_templates
    assert not set(held.test_presentations) & set(held.val_presentations)
    splits = generate_splits(600, 200, 200, seed=13)
    train = splits["train"]
    assert not {c.presentation for c in train} & (set(held.test_presentations) | set(held.val_presentations))
    assert not {c.template for c in train} & (set(held.test_templates) | set(held.val_templates))
    test_unseen = [c for c in splits["test"] if c.presentation in held.test_presentations]
    assert len(test_unseen) >= 80
    assert all(c.template in held.test_templates for c in splits["test"] if c not in test_unseen)


def test_training_on_the_test_presentations_keeps_validation_and_every_held_out_template_apart():
    held = heldout_sets(13)
    plain = generate_splits(600, 200, 200, seed=13)
    both = generate_splits(3000, 200, 200, seed=13, train_on_test_presentations=True)
    seen = {c.presentation for c in both["train"]}
    assert set(held.test_presentations) <= seen
    assert not seen & set(held.val_presentations)
    assert not {c.template for c in both["train"]} & (set(held.test_templates) | set(held.val_templates))
    # validation and test are drawn exactly as before: only what the model reads changes
    for split in ("validation", "test"):
        assert [c.text for c in both[split]] == [c.text for c in plain[split]]


def test_corpus_command_writes_jsonl(tmp_path):
    args = sup.parse_cli(["corpus", "--out", str(tmp_path), "--n-train", "40", "--n-val", "10", "--n-test", "10"])
    assert args.func(args) == 0
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {"text", "age", "sex", "target_unit", "acuity", "needs", "split"} <= set(rows[0])
    assert json.loads((tmp_path / "manifest.json").read_text())["fingerprint"]


def test_presentation_validation():
    with pytest.raises(ValueError):
        Presentation("x.bad", "NOWHERE", 3, cc="a")
    with pytest.raises(ValueError):
        Presentation("x.bad", "MEDICINE", 2, cc="a", needs="respiratory_support")


def test_dictated_numbers_read_as_people_say_them():
    import random

    from inference.corpus import _words

    rng = random.Random(0)
    assert _words(88, rng) == "eighty eight" and _words(14, rng) == "fourteen" and _words(40, rng) == "forty"
    assert {_words(120, random.Random(s)) for s in range(20)} == {"one twenty", "a hundred and twenty"}
    assert {_words(105, random.Random(s)) for s in range(20)} == {"one oh five", "a hundred and five"}


def test_new_registers_render_every_case_with_scenario_labels():
    import random

    from inference.corpus import sample_case

    rng = random.Random(5)
    for reg in ("sbar", "dictation", "second_language"):
        tids = [t for t in TEMPLATE_IDS if t.startswith(reg + ".")]
        assert len(tids) >= 3   # one held out for validation, one for test, at least one to train on
        for _ in range(30):
            c = sample_case(rng, templates=tids)
            assert c.register == reg and c.text.strip()
            assert c.target_unit in UNITS and c.acuity in (1, 2, 3, 4, 5)


# ---- corpus v3: 300+ presentations, look-alikes side by side, patient-portal and specialist registers

_LOOKALIKE_PAIRS = (  # (must not be missed, reads like it but benign)
    ("lookalike.sah_alert", "lookalike.tension_headache"),
    ("lookalike.meningococcal_child", "lookalike.viral_rash_child"),
    ("lookalike.measles_unvaccinated_child", "lookalike.viral_rash_child"),
    ("lookalike.sepsis_elderly_nonspecific", "lookalike.viral_illness_adult"),
    ("cardiac.stemi_inferior", "discharge.msk_chest_pain"),
    ("lookalike.acs_as_indigestion", "lookalike.gord"),
    ("lookalike.cerebellar_stroke", "lookalike.vestibular_neuritis"),
    ("lookalike.cauda_equina", "lookalike.sciatica"),
    ("lookalike.pe_normal_sats", "lookalike.viral_pleurisy"),
    ("lookalike.septic_arthritis_child", "lookalike.transient_synovitis"),
    ("lookalike.pyloric_stenosis", "lookalike.posseting"),
    ("lookalike.ovarian_torsion", "lookalike.mittelschmerz"),
    ("surgery.testicular_torsion", "lookalike.epididymitis"),
    ("lookalike.sjs", "lookalike.drug_rash_mild"),
    ("lookalike.type_b_dissection", "discharge.mechanical_back_pain"),
    ("lookalike.student_meningococcal", "discharge.influenza_well"),
    ("medicine.bacterial_meningitis_adult", "lookalike.migraine_known_pattern"),
    ("lookalike.adult_epiglottitis", "lookalike.pharyngitis"),
    ("surgery.quinsy", "discharge.tonsillitis"),
    ("cardiac.hypertensive_emergency", "discharge.asymptomatic_hypertension"),
    ("cardiac.fast_af_symptomatic", "discharge.ectopic_beats"),
    ("paeds.croup_moderate", "discharge.croup_mild"),
    ("ortho.burst_fracture_fall", "ortho.osteoporotic_wedge"),   # high-energy spine vs stable wedge (v5)
    ("medicine.asthma_acute_severe", "discharge.asthma_mild_responded"),
    ("lookalike.gi_bleed_syncope", "discharge.vasovagal"),
    ("ortho.nof_fracture", "lookalike.hip_bruise_frail"),
    ("lookalike.dka_adult_vomiting", "discharge.gastroenteritis_mild"),
)


def test_at_least_300_presentations_across_every_unit_acuity_and_need():
    assert len(PRESENTATIONS) >= 300
    assert len({p.id for p in PRESENTATIONS}) == len(PRESENTATIONS)
    assert len({p.fingerprint() for p in PRESENTATIONS}) == len(PRESENTATIONS)   # no copy under another id
    by_unit: dict[str, set[int]] = {}
    for p in PRESENTATIONS:
        by_unit.setdefault(p.unit, set()).add(p.acuity)
    # every unit at each acuity the taxonomy allows it, from more than one presentation where it is common
    assert by_unit["ICU"] == {1, 2}
    assert by_unit["DISCHARGE"] == {3, 4, 5}
    for unit in ("CARDIAC", "STROKE", "MEDICINE", "SURGERY", "ORTHO", "MATERNITY", "PAEDIATRICS", "MENTAL_HEALTH"):
        assert {2, 3} <= by_unit[unit], unit
        assert sum(p.unit == unit for p in PRESENTATIONS) >= 14, unit
    assert sum(p.acuity == 1 and p.unit != "ICU" for p in PRESENTATIONS) >= 2   # ESI 1 outside ICU exists
    for need in NEEDS:
        if need == "bariatric":   # a drawn fact (weight, BMI, bed), never a presentation's own
            continue
        assert sum(need in p.needs for p in PRESENTATIONS) >= 8, need
    # children: admitted under 16 from many presentations, and ICU children too
    assert sum(p.ages[0] < 16 for p in PRESENTATIONS if p.unit not in ("DISCHARGE",)) >= 40
    assert any(p.unit == "ICU" and p.ages[1] < 16 for p in PRESENTATIONS)


@pytest.mark.parametrize("danger,benign", _LOOKALIKE_PAIRS)
def test_dangerous_lookalikes_sit_beside_a_benign_twin(danger, benign):
    by_id = {p.id: p for p in PRESENTATIONS}
    d, b = by_id[danger], by_id[benign]
    assert d.acuity <= 3 and d.unit != "DISCHARGE"       # admitted (measles in an unvaccinated child: ESI 3)
    assert b.acuity > d.acuity and (b.unit == "DISCHARGE" or b.acuity >= 3)
    # the labels come from the scenario: a case of each keeps its presentation's labels whatever the register
    rng = random.Random(danger)
    for tid in TEMPLATE_IDS[::4]:
        cd = sample_case(rng, presentations=[danger], templates=[tid])
        cb = sample_case(rng, presentations=[benign], templates=[tid])
        assert cd.acuity <= d.acuity and cd.target_unit != "DISCHARGE"
        danger_zone = cd.acuity < d.acuity      # danger-zone vitals drawn: ESI 3 lifted to 2
        assert (cd.target_unit, cd.acuity, cd.needs) == derive_labels(d, cd.age, cd.pregnant_weeks, danger_zone, cd.needs)
        assert cb.target_unit == derive_labels(b, cb.age, cb.pregnant_weeks, False, cb.needs)[0]


def test_portal_and_specialist_letters_render_with_scenario_labels():
    rng = random.Random(17)
    assert "portal" in REGISTERS
    tids = [t for t in TEMPLATE_IDS if t.startswith("portal.")]
    assert len(tids) >= 3
    seen_readings = 0
    for _ in range(120):
        c = sample_case(rng, templates=tids)
        assert c.register == "portal" and c.text.strip() and "{" not in c.text
        assert c.target_unit in UNITS and c.acuity in (1, 2, 3, 4, 5)
        seen_readings += bool(re.search(r"oximeter|finger clip|on the meter|my watch|at home|machine said", c.text))
    assert seen_readings > 10          # home devices' readings appear in the patients' own words
    for _ in range(40):
        c = sample_case(rng, templates=["referral.6"], typo_rate=0.0)
        assert "clinic today" in c.text and "Observations in clinic" in c.text
        assert not ("antenatal clinic" in c.text and c.pregnant_weeks is None)


def test_same_scenario_same_labels_whatever_the_register():
    """Labels are drawn before the words: two renderings of one scenario differ in text, never in labels."""
    from inference.corpus import TEMPLATES, _sample_scenario, presentation

    p = presentation("lookalike.cauda_equina")
    sc = _sample_scenario(random.Random(3), p, "triage")
    texts = set()
    for reg, fns in TEMPLATES.items():
        for fn in fns:
            texts.add(fn(sc, random.Random(reg)))
    assert len(texts) == len(TEMPLATE_IDS)
    assert (sc.unit, sc.acuity) == ("ORTHO", 2)


# the floor is conservative here: "BM 2.4 treated ... BM now normal" states a reading from before treatment,
# and the safety floor reads the lowest glucose stated; the scenario (a resolved hypo, eating) is ESI 4
_FLOOR_MORE_URGENT_THAN_THE_SCENARIO = frozenset({"discharge.hypo_resolved_t1dm"})


def test_generated_labels_are_never_less_urgent_than_the_measured_sign_rules():
    """The rules on measured signs that the taxonomy and the safety floor apply (SpO2 under 90% despite
    oxygen, a heart block at 30, shock, danger-zone vitals, severe hypertension in pregnancy, fever under
    3 months...) hold in what the generator labels: the model is not taught an ESI 2 that the floor raises."""
    from inference.policy import load_policy
    from inference.safety import floors
    from inference.signals import parse_signals

    policy = load_policy(None)
    wrong = []
    for c in generate_corpus(2500, seed=21):
        if c.presentation in _FLOOR_MORE_URGENT_THAN_THE_SCENARIO:
            continue
        found = floors(parse_signals(c.text), c.age, c.acuity, policy)
        if found and min(f.level for f in found) < c.acuity:
            wrong.append((c.presentation, c.acuity, [f.finding for f in found], c.text[:120]))
    assert not wrong, wrong[:5]


def test_oxygen_given_to_an_esi_2_patient_brings_the_saturation_to_90_or_more():
    rng = random.Random(4)
    for _ in range(300):
        v = corpus._draw_vitals(rng, "hypoxic", 60.0, True, 2)
        assert v.spo2 <= 91                                   # hypoxic on air: needs the oxygen
        if v.on_o2:
            assert v.spo2_o2 is not None and 90 <= v.spo2_o2 <= 95
        v1 = corpus._draw_vitals(rng, "hypoxic", 60.0, True, 1)
        if v1.on_o2:
            assert v1.spo2_o2 == v1.spo2                      # ESI 1: may stay under 90% on oxygen


def test_training_reads_most_presentations_and_both_splits_still_hold_some_out():
    from inference.corpus import HELDOUT_FRACTION

    held = heldout_sets(13)
    unread = set(held.val_presentations) | set(held.test_presentations)
    # each unit with 4 or more presentations loses at least one to each split, and training reads over 80%
    assert 1 - len(unread) / len(PRESENTATIONS) > 0.8
    assert {p.unit for p in PRESENTATIONS if p.id in held.val_presentations} == {
        p.unit for p in PRESENTATIONS if p.id in held.test_presentations}
    wider = heldout_sets(13, 0.15)
    assert len(wider.val_presentations) > len(held.val_presentations) and 0 < HELDOUT_FRACTION < 0.15


def test_build_model_takes_the_held_out_share_and_refuses_one_out_of_range():
    assert sup.parse_cli(["build-model", "--heldout-fraction", "0.15"]).heldout_fraction == 0.15
    assert sup.parse_cli(["build-model"]).heldout_fraction is None   # the corpus's own default
    for bad in ("0", "0.5", "many"):
        with pytest.raises(SystemExit):
            sup.parse_cli(["build-model", "--heldout-fraction", bad])
