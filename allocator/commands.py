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

__all__ = ["add_whatif_arguments", "register", "run_plan_command", "run_whatif_command"]

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
    register_plan(sub)


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def run_plan_command(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from allocator.exceptions import PlanningInfeasibleError
    from allocator.planning.model import load_instance, write_solution
    from allocator.planning.planner import plan

    inst = load_instance(args.instance)
    out = Path(args.out)
    if not out.parent.exists():
        raise AllocatorError(f"{out}: the folder {out.parent} does not exist")
    bar = tqdm(total=1, desc=f"plan {inst.name}", unit="move", unit_scale=True, file=sys.stderr,
               disable=args.quiet, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def progress(p) -> None:
        bar.total = p.moves_total
        bar.n = p.moves_done
        parts = " ".join(f"{k.split('_')[-1]}={v}" for k, v in p.best_parts.items() if v)
        missing = f" MISSING-MANDATORY={p.mandatory_missing}" if p.mandatory_missing else ""
        bar.set_postfix_str(f"best={p.best_cost if not p.mandatory_missing else '-'}{missing} {parts}", refresh=False)
        bar.refresh()

    result = plan(inst, time_limit=args.time_limit, seed=args.seed, moves_per_second=args.moves_per_second,
                  progress=progress)
    bar.close()
    ev = result.evaluation
    summary = {
        "instance": str(args.instance), "seed": args.seed, "time_limit_s": args.time_limit,
        "greedy_cost": result.greedy_evaluation.total_cost, "greedy_violations": result.greedy_evaluation.total_violations,
        "cost": ev.total_cost, "violations": ev.total_violations, "costs": ev.costs,
        "violation_parts": {k: v for k, v in ev.violations.items() if v},
        "moves": result.moves, "moves_budget": result.moves_budget, "stopped_by": result.stopped_by,
        "elapsed_s": round(result.elapsed_s, 2),
    }
    if not ev.feasible:
        print(json.dumps(summary, indent=2))
        raise PlanningInfeasibleError(
            f"{args.instance}: no plan meeting every hard constraint found in {args.time_limit:g} s "
            f"({', '.join(f'{k}={v}' for k, v in ev.violations.items() if v)}); nothing written to {out}")
    write_solution(out, inst, result.solution, [ev.cost_line()])
    summary["out"] = str(out)
    print(json.dumps(summary, indent=2))
    return 0


def register_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="plan elective admissions, theatres and nurses (IHTC-2024 format)",
        description="Read an IHTC-2024 instance (patients to admit, rooms, operating theatres, surgeons, nurses "
                    "and their shifts), build a plan that meets every hard constraint with a greedy constructor, "
                    "improve it by simulated annealing for --time-limit seconds, and write it in the official "
                    "solution format with its cost line. Same instance, seed and time limit: same plan, on a machine "
                    "that keeps up with the move budget (see docs/planning.md). If no plan meets every hard constraint, nothing is written and the exit "
                    "status is 2.")
    p.add_argument("--instance", required=True, metavar="FILE", help="instance JSON (IHTC-2024 format)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the solution JSON")
    p.add_argument("--time-limit", type=_positive, default=60.0, metavar="S",
                   help="seconds of search, construction included (default 60; the competition used 600)")
    p.add_argument("--seed", type=_non_negative_int, default=1, metavar="N", help="random seed (default 1)")
    p.add_argument("--moves-per-second", type=_non_negative_int, default=None, metavar="M",
                   help="annealing moves per second of time limit (default: allocator.planning.planner."
                        "DEFAULT_MOVES_PER_SECOND); the run's move budget is time-limit x this")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_plan_command)
