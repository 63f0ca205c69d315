"""Planning benchmark on the IHTC-2024 public instances: greedy baseline and planner, side by side.

For each instance: the greedy's cost and violations, the planner's cost and violations at
--time-limit seconds, both as a ratio to the best-known cost (the competition site's table),
and the time. Prints one JSON document on stdout (progress on stderr). Every cost is
`allocator.planning.evaluate` on the solution produced; with --out-dir the solutions are
written too (feasible ones only), to check with the official validator.

The competition's limit is 600 s an instance (30 instances: 5 hours); a quick run is e.g.
``--time-limit 15`` (about 8 minutes) or ``--instances i01,i10,i20 --time-limit 60``.

  python bench/plan.py [--time-limit 600] [--instances i01,...] [--seed 1] [--out-dir DIR]
                       [--data /work/shared/ihtc2024]

Targets (issue 17, at 600 s): 0 violations on all 30, mean planner ratio <= 1.10, none above 1.25.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and `bench/allocator.py` would
# shadow the `allocator` package; put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from allocator.planning.model import load_instance, write_solution  # noqa: E402 - after bench/ is taken off sys.path
from allocator.planning.planner import DEFAULT_MOVES_PER_SECOND, plan  # noqa: E402 - after bench/ is taken off sys.path

DEFAULT_DATA = Path(os.environ.get("WARDFLOW_IHTC_DATA", "/work/shared/ihtc2024"))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per instance (default 600)")
    ap.add_argument("--instances", default="", help="comma-separated names (default: all 30 public ones)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--moves-per-second", type=int, default=DEFAULT_MOVES_PER_SECOND)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the IHTC-2024 zips and best_known.csv")
    ap.add_argument("--out-dir", type=Path, help="also write each planner solution there as sol_<name>.json")
    ap.add_argument("--markdown", type=Path, help="also write the table as Markdown (for docs/planning.md)")
    args = ap.parse_args(argv)

    with open(args.data / "best_known.csv", newline="") as f:
        best = {row["instance"]: int(row["best_known_cost"]) for row in csv.DictReader(f)}
    names = [n.strip() for n in args.instances.split(",") if n.strip()] or sorted(best)
    unknown = [n for n in names if n not in best]
    if unknown:
        ap.error(f"unknown instances {unknown}; known: {', '.join(sorted(best))}")
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.data / "ihtc2024_competition_instances.zip") as z:
        members = {Path(m).stem: m for m in z.namelist() if m.endswith(".json") and not m.startswith("__MACOSX")}
        for name in names:
            path = Path(tmp) / f"{name}.json"
            path.write_bytes(z.read(members[name]))
            inst = load_instance(path)
            started = time.perf_counter()
            res = plan(inst, time_limit=args.time_limit, seed=args.seed, moves_per_second=args.moves_per_second)
            wall = time.perf_counter() - started
            g, p = res.greedy_evaluation, res.evaluation
            row = {
                "instance": name, "best_known": best[name],
                "greedy_cost": g.total_cost, "greedy_violations": g.total_violations,
                "greedy_ratio": round(g.total_cost / best[name], 4), "greedy_s": round(res.greedy_s, 3),
                "planner_cost": p.total_cost, "planner_violations": p.total_violations,
                "planner_ratio": round(p.total_cost / best[name], 4), "planner_s": round(wall, 2),
                "moves": res.moves, "stopped_by": res.stopped_by, "planner_costs": p.costs,
            }
            rows.append(row)
            if args.out_dir and p.feasible:  # an infeasible plan is reported, never written
                write_solution(args.out_dir / f"sol_{name}.json", inst, res.solution, [p.cost_line()])
            _log(f"{name}: greedy {g.total_cost} ({row['greedy_ratio']:.3f}, {g.total_violations} viol) -> "
                 f"planner {p.total_cost} ({row['planner_ratio']:.3f}, {p.total_violations} viol) in {wall:.1f}s")

    def mean(key: str) -> float:
        return round(statistics.fmean(r[key] for r in rows), 4)

    summary = {
        "instances": len(rows), "time_limit_s": args.time_limit, "seed": args.seed,
        "moves_per_second": args.moves_per_second,
        "greedy_mean_ratio": mean("greedy_ratio"), "planner_mean_ratio": mean("planner_ratio"),
        "planner_max_ratio": max(r["planner_ratio"] for r in rows),
        "greedy_violations": sum(r["greedy_violations"] for r in rows),
        "planner_violations": sum(r["planner_violations"] for r in rows),
        "stopped_by_clock": sum(r["stopped_by"] == "clock" for r in rows),
    }
    targets = {
        "zero_violations": summary["planner_violations"] == 0,
        "mean_ratio_le_1.10": summary["planner_mean_ratio"] <= 1.10,
        "max_ratio_le_1.25": summary["planner_max_ratio"] <= 1.25,
        "full_limit_600s": args.time_limit >= 600 and len(rows) == 30,
    }
    print(json.dumps({"summary": summary, "targets": targets, "rows": rows}, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(summary, rows), encoding="utf-8")
    return 0


def markdown(summary: dict, rows: list[dict]) -> str:
    lines = ["| instance | best known | greedy | greedy ratio | planner | planner ratio | violations (greedy/planner) | s | stopped by |",
             "| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['instance']} | {r['best_known']} | {r['greedy_cost']} | {r['greedy_ratio']:.3f} | "
                     f"{r['planner_cost']} | {r['planner_ratio']:.3f} | {r['greedy_violations']}/{r['planner_violations']} | "
                     f"{r['planner_s']:.1f} | {r['stopped_by']} |")
    lines.append(f"| **mean** | | | **{summary['greedy_mean_ratio']:.3f}** | | **{summary['planner_mean_ratio']:.3f}** | "
                 f"{summary['greedy_violations']}/{summary['planner_violations']} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
