#!/usr/bin/python3
"""The table of bench/run_planning_quality.sh: every mode of every report in OUT, per
budget, against greedy and against the best equal-budget baseline, and whether the bar
(a planning mode >= greedy + 5 points with McNemar p < 0.01 that beats vote and logprob
at its budget) is met.

    planning_quality_table.py OUT BUDGET...
"""
import json
import math
import sys
from pathlib import Path

REPORTS = [("next_token_exact", "next-token", "exact"), ("outcome_dynamics", "outcome", "dynamics"),
           ("outcome_exact", "outcome", "exact"), ("outcome_exact_q", "outcome", "exact/Q")]
BASELINES = ("vote", "logprob")
NOT_PLANNING = ("greedy", "sample", "vote", "logprob", "pass")


def task_outcomes(report, mode):
    """Per task (file, id): True when every test output is exact, None when one was skipped."""
    tasks = {}
    for item in report["items"]:
        key = (item["file"], item["task"])
        if item["skipped"]:
            tasks[key] = None
        elif tasks.get(key, True) is not None:
            tasks[key] = tasks.get(key, True) and item["answers"][mode]["exact"]
    return tasks


def mcnemar(a, b):
    """Tasks only a solved, only b solved, and the exact two-sided McNemar p."""
    better = sum(1 for k in a if a[k] is not None and b.get(k) is not None and a[k] and not b[k])
    worse = sum(1 for k in a if a[k] is not None and b.get(k) is not None and b[k] and not a[k])
    n, low = better + worse, min(better, worse)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(low + 1)) / 2 ** n) if n else 1.0
    return better, worse, p


def rows_of(out, budget):
    rows = []
    for stem, values, planner in REPORTS:
        path = Path(out) / f"{stem}_b{budget}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        for mode, m in report["modes"].items():
            base = mode.split("@")[0]
            looks_ahead = base in ("mcts", "mcts+inject", "beam", "beam-row")
            uses_values = looks_ahead or base in ("value", "value-vote")
            if base == "greedy" and stem != REPORTS[0][0]:
                continue
            rows.append({"mode": mode, "base": base, "values": values if uses_values else "-",
                         "planner": planner if looks_ahead else "-", "solved": m["solved"], "tasks": m["tasks"],
                         "ci": m["ci95"], "steps": m["compute"]["decoding_steps_per_item"],
                         "outcomes": task_outcomes(report, mode)})
    return rows


def main():
    out, budgets = sys.argv[1], sys.argv[2:]
    met = []
    print(f"{'budget':>6}  {'mode':<14} {'values':<10} {'planner':<8} {'solved':>10} {'accuracy [95% CI]':>22} "
          f"{'x greedy':>8}  {'vs greedy +/-, p':<22} {'vs baseline +/-, p':<28}")
    for budget in budgets:
        rows = rows_of(out, budget)
        greedy = next((r for r in rows if r["base"] == "greedy"), None)
        if greedy is None:
            continue
        baselines = [r for r in rows if r["base"] in BASELINES]
        best = max(baselines, key=lambda r: r["solved"]) if baselines else None
        for r in rows:
            acc = r["solved"] / r["tasks"] if r["tasks"] else 0.0
            cells = [f"{budget:>6}  {r['mode']:<14} {r['values']:<10} {r['planner']:<8} {r['solved']:>5}/{r['tasks']:<4} "
                     f"{100 * acc:6.1f}% [{100 * r['ci'][0]:4.1f}, {100 * r['ci'][1]:4.1f}] "
                     f"{r['steps'] / greedy['steps'] if greedy['steps'] else 0:7.1f}x"]
            vs = ""
            if r is not greedy:
                b, w, p = mcnemar(r["outcomes"], greedy["outcomes"])
                vs = f"+{b}/-{w} p={p:.3g}"
            cells.append(f"  {vs:<22}")
            if best is not None and r is not best and r["base"] not in ("greedy",):
                b, w, p = mcnemar(r["outcomes"], best["outcomes"])
                cells.append(f" {best['mode']} +{b}/-{w} p={p:.3g}")
            print("".join(cells))
            if r["base"] not in NOT_PLANNING and r is not greedy:
                b, w, p = mcnemar(r["outcomes"], greedy["outcomes"])
                points = 100 * (r["solved"] - greedy["solved"]) / r["tasks"] if r["tasks"] else 0.0
                beats = all(r["solved"] > x["solved"] for x in baselines)
                if points >= 5 and p < 0.01 and beats:
                    met.append(f"{r['mode']} ({r['values']} values, {r['planner']}) at budget {budget}")
        print()
    print("bar met by: " + "; ".join(met) if met else
          "bar not met: no planning mode is >= greedy + 5 points with p < 0.01 and above vote and logprob at its budget")


if __name__ == "__main__":
    main()
