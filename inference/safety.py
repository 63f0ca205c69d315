"""The ESI v4 safety layer: measured signals -> floors on acuity (pure functions).

`floors(signals, age, model_acuity, policy)` lists every rule the measured values meet, each a
`Floor`: the least urgent acuity the patient may have, why (the values, never the note's words),
the threshold's source, and whether the rule also sends the patient to ICU or implies a need.
The decoder (`inference.decoding`) applies them after the model: a floor can only make a patient
more urgent, never less.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.policy import Num, TriagePolicy
from inference.signals import Signals


@dataclass(frozen=True)
class Floor:
    rule: str                  # stable code, e.g. "shock", "news2_spo2"
    level: int                 # the acuity is at most this level (1 = most urgent)
    finding: str               # "BP 76/44 with HR 128"
    source: str                # key of the policy's `sources`
    to_icu: bool = False
    needs: tuple[str, ...] = ()

    def text(self) -> str:
        return f"{self.finding} ({self.rule.replace('_', ' ')}; {self.source})"


@dataclass(frozen=True)
class NeedFromSignals:
    need: str
    finding: str
    source: str


def _g(x: float) -> str:
    return f"{x:g}"


def floors(sig: Signals, age: float, model_acuity: int | None, policy: TriagePolicy) -> list[Floor]:
    """Every floor the measured signals set, most urgent first."""
    s = policy.safety
    e1, e2, dz = s.esi1, s.esi2, s.danger_zone
    adult = age >= e2.adult_from_age
    icu = set(e1.send_to_icu)
    out: list[Floor] = []

    def add(rule: str, level: int, finding: str, th: Num | object, *, icu_rule: str | None = None) -> None:
        out.append(Floor(rule, level, finding, getattr(th, "source", ""), to_icu=(icu_rule or rule) in icu))

    bp = sig.lowest_bp()
    sbp = bp.systolic.low if bp else None
    hr_hi, hr_lo = sig.highest("heart_rate"), sig.lowest("heart_rate")
    rr_hi, rr_lo = sig.highest("resp_rate"), sig.lowest("resp_rate")
    gcs = sig.lowest("gcs")
    hypercapnic = sig.hypercapnic_target

    # ---- ESI 1: an immediate life-saving intervention
    if sig.pulseless and e1.pulseless.value:
        add("pulseless", 1, "no pulse / in cardiac arrest", e1.pulseless)
    if sig.apnoeic and e1.apnoeic.value:
        add("apnoea", 1, "apnoeic / not breathing", e1.apnoeic)
    if sig.bp_unrecordable and e1.bp_unrecordable.value:
        add("bp_unrecordable", 1, "BP not recordable", e1.bp_unrecordable)
    if adult and bp is not None and sbp is not None and hr_hi is not None and sbp < e1.shock_systolic_below.value \
            and hr_hi > e1.shock_heart_rate_above.value:
        add("shock", 1, f"BP {bp.show()} with HR {_g(hr_hi)}", e1.shock_systolic_below)
    if not adult and bp is not None and sbp is not None:
        limit = e1.paediatric_hypotension.systolic_limit(age)
        if limit is not None and sbp < limit:
            add("paediatric_hypotension", 1, f"BP {bp.show()} (below {_g(limit)} for age {_g(age)})",
                e1.paediatric_hypotension)
    if gcs is not None and gcs <= e1.gcs_at_most.value:
        add("gcs", 1, f"GCS {_g(gcs)}", e1.gcs_at_most)
    if sig.avpu in e1.avpu_levels.value:
        add("avpu", 1, f"AVPU {sig.avpu}", e1.avpu_levels)
    on_o2 = sig.lowest_spo2(on_oxygen=True)
    limit_o2 = (e1.spo2_on_oxygen_below_hypercapnic if hypercapnic else e1.spo2_on_oxygen_below)
    if on_o2 is not None and on_o2.low < limit_o2.value:
        add("hypoxia_on_oxygen", 1, f"SpO2 {on_o2.show('%')} on oxygen", limit_o2)
    if adult and hr_lo is not None and hr_lo < e1.adult_heart_rate_below.value:
        add("bradycardia", 1, f"HR {_g(hr_lo)}", e1.adult_heart_rate_below)
    pef = sig.lowest("peak_flow_pct")
    if pef is not None and e1.peak_flow_pct_below is not None and pef < e1.peak_flow_pct_below.value:
        add("life_threatening_asthma", 1, f"PEF {_g(pef)}% of best or predicted", e1.peak_flow_pct_below)

    # ---- at least ESI 2 whatever the model said
    spo2 = sig.lowest_spo2()
    lim = e2.spo2_at_most_hypercapnic if hypercapnic else e2.spo2_at_most
    if spo2 is not None and spo2.low <= lim.value:
        where = {True: " on oxygen", False: " on air", None: ""}[spo2.on_oxygen]
        add("hypoxia", 2, f"SpO2 {spo2.show('%')}{where}", lim)
    if adult:
        if rr_hi is not None and rr_hi >= e2.adult_resp_rate_at_least.value:
            add("news2_resp_rate", 2, f"RR {_g(rr_hi)}", e2.adult_resp_rate_at_least)
        if rr_lo is not None and rr_lo <= e2.adult_resp_rate_at_most.value:
            add("news2_resp_rate", 2, f"RR {_g(rr_lo)}", e2.adult_resp_rate_at_most)
        if bp is not None and sbp is not None and sbp <= e2.adult_systolic_at_most.value:
            add("news2_systolic", 2, f"BP {bp.show()}", e2.adult_systolic_at_most)
        if hr_hi is not None and hr_hi >= e2.adult_heart_rate_at_least.value:
            add("news2_heart_rate", 2, f"HR {_g(hr_hi)}", e2.adult_heart_rate_at_least)
        if hr_lo is not None and hr_lo <= e2.adult_heart_rate_at_most.value:
            add("news2_heart_rate", 2, f"HR {_g(hr_lo)}", e2.adult_heart_rate_at_most)
        news = sig.highest("news2")
        if news is not None and news >= e2.news2_score_at_least.value:
            add("news2_score", 2, f"NEWS2 {_g(news)}", e2.news2_score_at_least)
    t_lo, t_hi = sig.lowest("temperature_c"), sig.highest("temperature_c")
    if t_lo is not None and t_lo <= e2.temperature_at_most.value:
        add("hypothermia", 2, f"T {_g(t_lo)} C", e2.temperature_at_most)
    if gcs is not None and e1.gcs_at_most.value < gcs <= e2.gcs_at_most.value:
        add("reduced_gcs", 2, f"GCS {_g(gcs)}", e2.gcs_at_most)
    if sig.avpu in e2.avpu_levels.value:
        add("avpu", 2, f"AVPU {sig.avpu}", e2.avpu_levels)
    g_lo, g_hi = sig.lowest("glucose_mmol"), sig.highest("glucose_mmol")
    if g_lo is not None and g_lo < e2.glucose_below.value:
        add("hypoglycaemia", 2, f"glucose {_g(g_lo)} mmol/L", e2.glucose_below)
    if g_hi is not None and g_hi >= e2.glucose_at_least.value:
        add("hyperglycaemia", 2, f"glucose {_g(g_hi)} mmol/L", e2.glucose_at_least)
    k_hi = sig.highest("ketones_mmol")
    if k_hi is not None and k_hi >= e2.ketones_at_least.value and (
            g_hi is None or g_hi >= e2.ketones_with_glucose_at_least.value):
        extra = f" with glucose {_g(g_hi)}" if g_hi is not None else ""
        add("ketoacidosis", 2, f"ketones {_g(k_hi)} mmol/L{extra}", e2.ketones_at_least)
    lac = sig.highest("lactate_mmol")
    if lac is not None and lac >= e2.lactate_at_least.value:
        add("lactate", 2, f"lactate {_g(lac)} mmol/L", e2.lactate_at_least)
    if sig.pregnant or sig.postpartum:
        sbp_hi, dbp_hi = sig.highest("blood_pressure"), sig.highest_diastolic()
        if (sbp_hi is not None and sbp_hi >= e2.pregnancy_systolic_at_least.value) or (
                dbp_hi is not None and dbp_hi >= e2.pregnancy_diastolic_at_least.value):
            shown = f"BP {_g(sbp_hi) if sbp_hi is not None else '?'}/{_g(dbp_hi) if dbp_hi is not None else '?'}"
            add("severe_hypertension_in_pregnancy", 2, f"{shown} in pregnancy or after birth",
                e2.pregnancy_systolic_at_least)
    if age < e2.infant_fever_below_age.value and t_hi is not None and t_hi >= e2.infant_fever_at_least.value:
        add("infant_fever", 2, f"T {_g(t_hi)} C at age {_g(round(age * 12, 1))} months", e2.infant_fever_at_least)
    if age < 5 and rr_hi is not None and rr_hi > e2.under5_resp_rate_above.value:
        add("child_resp_rate", 2, f"RR {_g(rr_hi)} under 5", e2.under5_resp_rate_above)
    if pef is not None and e2.peak_flow_pct_at_most is not None and pef <= e2.peak_flow_pct_at_most.value \
            and (e1.peak_flow_pct_below is None or pef >= e1.peak_flow_pct_below.value):
        add("acute_severe_asthma", 2, f"PEF {_g(pef)}% of best or predicted", e2.peak_flow_pct_at_most)
    if sig.apnoea_episodes and e2.apnoea_episodes.value and not sig.apnoeic:
        add("apnoea_episodes", 2, "apnoeic episodes", e2.apnoea_episodes)

    # ---- ESI decision point D: danger zone, for a patient the model rates in `raise_levels`
    if model_acuity is not None and model_acuity in dz.raise_levels:
        band = dz.band(age)
        if hr_hi is not None and hr_hi > band.heart_rate_above:
            add("danger_zone_heart_rate", 2, f"HR {_g(hr_hi)} (> {_g(band.heart_rate_above)} for age)", dz)
        if rr_hi is not None and rr_hi > band.resp_rate_above:
            add("danger_zone_resp_rate", 2, f"RR {_g(rr_hi)} (> {_g(band.resp_rate_above)} for age)", dz)
        if spo2 is not None and spo2.low < dz.spo2_below and not any(f.rule == "hypoxia" for f in out):
            add("danger_zone_spo2", 2, f"SpO2 {spo2.show('%')}", dz)
    out.sort(key=lambda f: f.level)
    return out


def needs_from_signals(sig: Signals, age: float, policy: TriagePolicy) -> list[NeedFromSignals]:
    n = policy.safety.needs
    out: list[NeedFromSignals] = []
    spo2 = sig.lowest_spo2()
    if spo2 is not None and spo2.low <= n.respiratory_support_spo2_at_most.value:
        out.append(NeedFromSignals("respiratory_support", f"SpO2 {spo2.show('%')}",
                                   n.respiratory_support_spo2_at_most.source))
    elif sig.lowest_spo2(on_oxygen=True) is not None:
        out.append(NeedFromSignals("respiratory_support", "on supplemental oxygen",
                                   n.respiratory_support_spo2_at_most.source))
    hr_lo = sig.lowest("heart_rate")
    if age >= policy.safety.esi2.adult_from_age and hr_lo is not None \
            and hr_lo < n.telemetry_heart_rate_below.value:
        out.append(NeedFromSignals("telemetry", f"HR {_g(hr_lo)}", n.telemetry_heart_rate_below.source))
    return out
