"""Allocator benchmark: placement time at 1,000 beds, and the what-if simulator's policies side by side.

Prints one JSON document on stdout (progress on stderr):
* placement: 50 waiting patients over a 1,000-bed hospital (the demo hospital's rooms copied
  until it has 1,000 beds), ~85% occupied and all free, median and p95 milliseconds per
  `assign` call over repeats (10 instances in turn), for the optimal policy (with
  explanations, as the worker runs it) and greedy (v1). Target: optimal under 50 ms on 2 cores.
* whatif: a simulated week of the demo hospital per seed at normal and surge load, both
  policies on the same patients; per-seed metrics, their means, and the targets checked on the
  means: optimal no worse than greedy on every compared metric, strictly better on off-service
  placements and isolation waits at surge, zero breaches for both.

The simulator is chaotic (one early placement changes every later one), so single seeds differ
by more than the policies do on some metrics; the targets are judged on means over seeds and
the per-seed wins are reported beside them.

  python bench/allocator.py [--seeds 101,...,110] [--days 7] [--repeats 60] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `allocator` package; put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, load_hospitals  # noqa: E402 - after bench/ is taken off sys.path
from allocator.matching import WaitingPatient, assign  # noqa: E402 - after bench/ is taken off sys.path
from allocator.placement import BedSnapshot  # noqa: E402 - after bench/ is taken off sys.path
from allocator.scaled import scale_hospital  # noqa: E402 - after bench/ is taken off sys.path
from allocator.whatif import WhatIfReport, plot_occupancy, run_whatif  # noqa: E402 - after bench/ is taken off sys.path
from allocator.whatif_cases import CaseMix, draw_arrivals  # noqa: E402 - after bench/ is taken off sys.path

# Compared metric -> which direction is better. Time series and counts of context are left out.
COMPARED = {
    "wait_mean_min": "lower", "wait_p90_min": "lower", "off_service_placements": "lower",
    "isolation_blocked_patient_minutes": "lower", "isolation_blocked_patients": "lower",
    "breaches": "lower", "pages": "lower",
}
# The isolation-wait metric is the patient-minutes (allocator/whatif.py defines it); the count of
# patients ever blocked is reported and compared too, but at surge nearly every isolation patient
# is blocked at some point under either policy, so it cannot separate them.
STRICT_AT_SURGE = ("off_service_placements", "isolation_blocked_patient_minutes")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- placement time


Instance = tuple[list[WaitingPatient], dict[str, BedSnapshot], dict[str, float]]


def _instance(hospital: Hospital, seed: int, waiting: int, occupancy: float) -> Instance:
    """A bed state ~`occupancy` full and `waiting` patients drawn from the simulator's case mix."""
    rng = random.Random(seed)
    beds: dict[str, BedSnapshot] = {}
    room_sex: dict[str, str] = {}
    loads: dict[str, float] = {}
    for bed in hospital.beds:
        roll = rng.random()
        if roll < occupancy:
            sex = bed.bay_sex or (room_sex.setdefault(bed.room_id, rng.choice("FM")) if not bed.single_room
                                  else rng.choice("FM"))
            beds[bed.bed_id] = BedSnapshot("occupied", sex)
            loads[bed.unit] = loads.get(bed.unit, 0.0) + rng.choice((4.0, 3.0, 2.0, 2.0, 1.5))
        elif roll < occupancy + 0.03:
            beds[bed.bed_id] = BedSnapshot(rng.choice(("dirty", "cleaning")))
    cases, _ = draw_arrivals(CaseMix(hospital), seed=seed, days=2, load="surge")
    picked = rng.sample(cases, waiting)
    patients = [WaitingPatient(c.case_id, c.age, c.sex, c.label, c.needs, rng.choice((c.acuity, None)),
                               rng.uniform(0, 720), rng.choice((None, round(rng.uniform(0.4, 0.99), 2))))
                for c in picked]
    return patients, beds, loads


def bench_placement(demo: Hospital, *, beds: int, waiting: int, repeats: int, occupancy: float) -> dict[str, object]:
    big = scale_hospital(demo, beds)
    instances = [_instance(big, seed, waiting, occupancy) for seed in range(10)]
    out: dict[str, object] = {"beds": len(big.beds), "waiting": waiting, "occupancy": occupancy, "repeats": repeats,
                              "instances": len(instances)}
    optimal_p95 = float("inf")
    for policy in ("optimal", "greedy"):
        warm_patients, warm_beds, warm_loads = instances[0]
        assign(warm_patients, big, warm_beds, policy=policy, loads=warm_loads)  # caches
        times, placed = [], []
        for i in range(repeats):
            patients, state, loads = instances[i % len(instances)]
            started = time.perf_counter()
            result = assign(patients, big, state, policy=policy, loads=loads)
            times.append((time.perf_counter() - started) * 1000)
            placed.append(len(result.assignments))
        times.sort()
        if policy == "optimal":
            optimal_p95 = round(times[min(len(times) - 1, int(0.95 * len(times)))], 2)
        out[policy] = {"median_ms": round(statistics.median(times), 2),
                       "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
                       "max_ms": round(times[-1], 2), "mean_placed": round(statistics.mean(placed), 1)}
    out["target_optimal_p95_under_50ms"] = optimal_p95 < 50
    return out


# ---------------------------------------------------------------------------- what-if


def bench_whatif(demo: Hospital, *, seeds: list[int], days: float) -> tuple[dict[str, object], list[WhatIfReport]]:
    out: dict[str, object] = {"hospital": demo.hospital_id, "beds": len(demo.beds), "days": days, "seeds": seeds}
    first_reports = []
    for load in ("normal", "surge"):
        per_seed = []
        seconds: dict[str, list[float]] = {"optimal": [], "greedy": []}
        for seed in seeds:
            _log(f"whatif {load} seed {seed} ...")
            report = run_whatif(demo, policy="both", days=days, seed=seed, load=load)
            if seed == seeds[0]:
                first_reports.append(report)
            per_seed.append(report)
            for p, s in report.seconds.items():
                seconds[p].append(s)
        metrics = list(per_seed[0].policies["optimal"].summary())
        mean = {m: {p: round(statistics.mean(float(r.policies[p].summary()[m]) for r in per_seed), 3)
                    for p in ("optimal", "greedy")} for m in metrics}
        wins = {m: {"optimal_better": sum(_better(r, m) > 0 for r in per_seed),
                    "tie": sum(_better(r, m) == 0 for r in per_seed),
                    "greedy_better": sum(_better(r, m) < 0 for r in per_seed)} for m in COMPARED}
        checks = {f"optimal_no_worse:{m}": mean[m]["optimal"] <= mean[m]["greedy"] for m in COMPARED}
        checks["zero_breaches_both"] = all(r.policies[p].breaches == 0 for r in per_seed for p in r.policies)
        if load == "surge":
            for m in STRICT_AT_SURGE:
                checks[f"optimal_strictly_better:{m}"] = mean[m]["optimal"] < mean[m]["greedy"]
            checks["midnight_occupancy_above_95pct_both"] = all(
                r.policies[p].midnight_occupancy_min_after_day1 > 0.95 for r in per_seed for p in r.policies)
        out[load] = {
            "ed_arrivals_mean": statistics.mean(r.ed_arrivals for r in per_seed),
            "decisions_to_admit_mean": statistics.mean(r.decisions_to_admit for r in per_seed),
            "mean_over_seeds": mean,
            "per_seed": {str(r.seed): r.to_dict()["metrics"] for r in per_seed},
            "wins_per_seed": wins,
            "targets": checks,
            "all_targets_met": all(checks.values()),
            "seconds_per_week": {p: {"mean": round(statistics.mean(v), 2), "max": round(max(v), 2)}
                                 for p, v in seconds.items()},
        }
    return out, first_reports


def _better(report: WhatIfReport, metric: str) -> int:
    """+1 if optimal is better than greedy on this report, -1 if worse, 0 if equal."""
    a = float(report.policies["optimal"].summary()[metric])
    b = float(report.policies["greedy"].summary()[metric])
    return (a < b) - (a > b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=",".join(map(str, range(101, 111))),
                        help="simulator seeds, comma-separated (default 101..110: the demo's weights were tuned on "
                             "seeds 1..10, so the report is on seeds they never saw)")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days per run (default 7)")
    parser.add_argument("--repeats", type=int, default=60, help="timed placement calls per policy (default 60)")
    parser.add_argument("--plot", help="PNG of occupancy over time, first seed, both loads and policies")
    args = parser.parse_args(argv)
    demo = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _log("placement timing ...")
    placement = {  # a typical ward state, and every bed free (the most columns: the worst case)
        "occupied_85pct": bench_placement(demo, beds=1000, waiting=50, repeats=args.repeats, occupancy=0.85),
        "all_beds_free": bench_placement(demo, beds=1000, waiting=50, repeats=args.repeats, occupancy=0.0),
    }
    whatif, reports = bench_whatif(demo, seeds=[int(s) for s in args.seeds.split(",")], days=args.days)
    if args.plot:
        plot_occupancy(reports, args.plot)
    print(json.dumps({"cpus_available": cpus, "placement": placement, "whatif": whatif}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
