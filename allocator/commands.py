"""`wardflow` subcommands of the allocator package: `whatif`, the offline policy simulator, and
`plan`, the IHTC-2024 admission/theatre/nurse planner (`allocator.planning`).

`add_whatif_arguments` and `run_whatif_command` are separate from `register` so the same
options can hang off another parser (`wardflow simulate --offline` routes here). Heavy imports
(numpy, scipy, matplotlib) happen inside the command so `wardflow --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from allocator.exceptions import AllocatorError

__all__ = ["PLAN_DESCRIPTION", "add_plan_arguments", "add_whatif_arguments", "plan_hospital", "register", "run_plan_command",
           "run_whatif_command"]

_CONFIG_ENV = "WARDFLOW_HOSPITAL_CONFIG"


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def add_whatif_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", choices=("greedy", "optimal", "both"), default="both",
                   help="allocation policy to simulate (default: both, side by side)")
    p.add_argument("--days", type=_positive, default=7.0, help="simulated days (default 7)")
    p.add_argument("--seed", type=int, default=1, help="random seed: same seed, same report (default 1)")
    p.add_argument("--load", choices=("normal", "surge"), default="normal",
                   help="normal arrivals, or surge: every service asked for more beds than it has")
    p.add_argument("--plot", metavar="FILE", help="write occupancy and patients waiting over time as a PNG")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--hospital-config", metavar="PATH",
                   help=f"hospital YAML (default: ${_CONFIG_ENV}, else the demo hospital)")
    p.add_argument("--hospital", metavar="ID", help="hospital_id in the file (default: the first)")
    p.add_argument("--offline", action="store_true",
                   help="accepted for `simulate --offline`; the what-if never touches Kafka anyway")


def run_whatif_command(args: argparse.Namespace) -> int:
    from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals
    from allocator.whatif import plot_occupancy, run_whatif

    path = Path(args.hospital_config or os.environ.get(_CONFIG_ENV) or DEMO_HOSPITAL_PATH)
    hospitals = load_hospitals(path)
    hospital_id = args.hospital or next(iter(hospitals))
    if hospital_id not in hospitals:
        raise AllocatorError(f"{path}: no hospital {hospital_id!r}; the file has {', '.join(hospitals)}")
    report = run_whatif(hospitals[hospital_id], policy=args.policy, days=args.days, seed=args.seed, load=args.load)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
    if args.plot:
        plot_occupancy([report], args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("whatif", help="simulate allocation policies offline, side by side",
                       description="Run the allocator's policies over simulated days of a hospital (arrivals, stays, "
                                   "deteriorations, cleaning) without Kafka and compare waits, off-service placements, "
                                   "isolation waits, breaches, pages and occupancy. Seeded: same seed, same report.")
    add_whatif_arguments(p)
    p.set_defaults(func=run_whatif_command)
    # `plan` is registered by streams.commands: its --electives mode publishes decisions


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def _progress_bar(name: str, quiet: bool):
    """A tqdm bar showing moves done and the best cost with its parts; returns (bar, callback)."""
    import sys

    from tqdm import tqdm

    bar = tqdm(total=1, desc=f"plan {name}", unit="move", unit_scale=True, file=sys.stderr, disable=quiet,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def progress(p) -> None:
        bar.total = p.moves_total
        bar.n = p.moves_done
        parts = " ".join(f"{k.split('_')[-1]}={v}" for k, v in p.best_parts.items() if v)
        missing = f" MISSING-MANDATORY={p.mandatory_missing}" if p.mandatory_missing else ""
        bar.set_postfix_str(f"best={p.best_cost if not p.mandatory_missing else '-'}{missing} {parts}", refresh=False)
        bar.refresh()

    return bar, progress


def _summary(result, source: str, args: argparse.Namespace) -> dict:
    ev = result.evaluation
    return {
        "instance": source, "seed": args.seed, "time_limit_s": args.time_limit,
        "greedy_cost": result.greedy_evaluation.total_cost, "greedy_violations": result.greedy_evaluation.total_violations,
        "cost": ev.total_cost, "violations": ev.total_violations, "costs": ev.costs,
        "violation_parts": {k: v for k, v in ev.violations.items() if v},
        "moves": result.moves, "moves_budget": result.moves_budget, "stopped_by": result.stopped_by,
        "elapsed_s": round(result.elapsed_s, 2),
    }


def _infeasible(source: str, args: argparse.Namespace, ev, where: str):
    from allocator.exceptions import PlanningInfeasibleError

    return PlanningInfeasibleError(
        f"{source}: no plan meeting every hard constraint found in {args.time_limit:g} s "
        f"({', '.join(f'{k}={v}' for k, v in ev.violations.items() if v)}); {where}")


def run_plan_command(args: argparse.Namespace) -> int:
    """`wardflow plan --instance FILE --out FILE`: an IHTC-2024 instance in, the official solution out."""
    from allocator.planning.model import load_instance, write_solution
    from allocator.planning.planner import plan

    if not args.out:
        raise AllocatorError("--instance needs --out FILE: where to write the solution")
    inst = load_instance(args.instance)
    out = Path(args.out)
    if not out.parent.exists():
        raise AllocatorError(f"{out}: the folder {out.parent} does not exist")
    bar, progress = _progress_bar(inst.name, args.quiet)
    result = plan(inst, time_limit=args.time_limit, seed=args.seed, moves_per_second=args.moves_per_second,
                  progress=progress)
    bar.close()
    ev = result.evaluation
    summary = _summary(result, str(args.instance), args)
    if not ev.feasible:
        print(json.dumps(summary, indent=2))
        raise _infeasible(str(args.instance), args, ev, f"nothing written to {out}")
    write_solution(out, inst, result.solution, [ev.cost_line()])
    summary["out"] = str(out)
    print(json.dumps(summary, indent=2))
    return 0


def plan_hospital(args: argparse.Namespace, hospital_config: Path):
    """`wardflow plan --electives`: the hospital's electives planned; returns (problem, admissions, summary).

    Pure planning (no broker): `streams.plan_command` turns the admissions into decisions. A plan
    that breaks a hard constraint is refused (`PlanningInfeasibleError`, the summary on stderr).
    """
    import sys

    from allocator.hospital import load_hospitals
    from allocator.planning.hospital_plan import build_problem, load_electives, not_planned, planned_admissions
    from allocator.planning.planner import plan

    hospitals = load_hospitals(hospital_config)
    electives = load_electives(args.electives)
    hospital_id = args.hospital or electives.hospital_id or next(iter(hospitals))
    if hospital_id not in hospitals:
        raise AllocatorError(f"{hospital_config}: no hospital {hospital_id!r}; the file has {', '.join(hospitals)}")
    problem = build_problem(hospitals[hospital_id], electives, hospital_file=str(hospital_config),
                            electives_file=str(args.electives))
    bar, progress = _progress_bar(problem.plan_id, args.quiet)
    result = plan(problem.instance, time_limit=args.time_limit, seed=args.seed,
                  moves_per_second=args.moves_per_second, progress=progress)
    bar.close()
    summary = _summary(result, str(args.electives), args)
    summary["electives"] = summary.pop("instance")
    summary.update({"hospital_config": str(hospital_config), "hospital_id": hospital_id, "plan_id": problem.plan_id,
                    "start_date": problem.start_date.isoformat(),
                    "days": problem.instance.days})
    if not result.evaluation.feasible:
        print(json.dumps(summary, indent=2), file=sys.stderr)
        raise _infeasible(str(args.electives), args, result.evaluation, "nothing published or written")
    admissions = planned_admissions(problem, result.solution)
    summary.update({"planned": len(admissions), "not_planned": not_planned(problem, result.solution),
                    "outside_horizon": list(problem.outside_horizon),
                    "mandatory_due_after_horizon": list(problem.due_after_horizon)})
    return problem, admissions, summary


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """The planner's own options; `streams.plan_command` adds the broker settings for publishing."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--instance", metavar="FILE", help="instance JSON (IHTC-2024 format)")
    source.add_argument("--electives", metavar="FILE",
                        help="elective patients (YAML or JSON, see docs/planning.md) to plan in the hospital of "
                             "--hospital-config, whose `planning:` section gives theatres, surgeons and nurses")
    p.add_argument("--out", metavar="FILE",
                   help="with --instance: where to write the solution JSON (required); with --electives: write the "
                        "planned_admission decisions there as JSON lines instead of publishing them")
    p.add_argument("--hospital", metavar="ID", help="with --electives: hospital_id in the hospital file "
                                                     "(default: the electives file's hospital_id, else the first)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --electives: publish nothing; the decisions go to --out, or to stdout as JSON lines "
                        "(the summary then goes to stderr)")
    p.add_argument("--time-limit", type=_positive, default=60.0, metavar="S",
                   help="seconds of search, construction included (default 60; the competition used 600)")
    p.add_argument("--seed", type=_non_negative_int, default=1, metavar="N", help="random seed (default 1)")
    p.add_argument("--moves-per-second", type=_non_negative_int, default=None, metavar="M",
                   help="annealing moves per second of time limit (default: allocator.planning.planner."
                        "DEFAULT_MOVES_PER_SECOND); the run's move budget is time-limit x this")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


PLAN_DESCRIPTION = (
    "Plan elective admissions, operating theatres and nurse-to-room assignments (the IHTC-2024 problem). "
    "With --instance: read an IHTC-2024 instance, build a plan that meets every hard constraint with a greedy "
    "constructor, improve it by simulated annealing for --time-limit seconds, and write it in the official solution "
    "format with its cost line. With --hospital-config and --electives: build the same problem from the hospital "
    "file's `planning:` section and the patients waiting, plan it, and publish one planned_admission decision per "
    "admitted patient (day, unit, room, theatre, surgeon) on the decisions topic, or write them as JSON lines "
    "(--out, --dry-run). Same input, seed and time limit: same plan, on a machine that keeps up with the move "
    "budget (see docs/planning.md). If no plan meets every hard constraint, nothing is written or published and "
    "the exit status is 2.")
