"""`wardflow` subcommands of the allocator package: `whatif`, the offline policy simulator.

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

__all__ = ["add_whatif_arguments", "register", "run_whatif_command"]

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
