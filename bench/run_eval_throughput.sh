#!/usr/bin/env bash
# How fast the planning evaluation decodes, per mode: tasks generated from another seed
# than the README model's training tasks, evaluated on RANKS ranks in every mode at once; one line per mode
# with its accuracy, its decoding cost against greedy's, its wall seconds (the slowest
# rank's time in that mode; modes that share samples are each charged all of theirs) and
# tasks per second. Default: the model of the README's first command, 1000 tasks, 2 ranks.
#
#   bench/run_eval_throughput.sh [MODEL] [TASKS] [RANKS] [MODES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/runs/arc_small/model}
n=${2:-1000}
ranks=${3:-2}
modes=${4:-greedy,sample,vote@16,logprob@16,value@16,pass@16,mcts}
bin=$root/build/apps/crsm_train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun_flags=(--oversubscribe)
[[ $(id -u) == 0 ]] && mpirun_flags+=(--allow-run-as-root)

# The README's model trained on prepare-arc --seed 7's training stream; these tasks come
# from seed 1007's evaluation stream (grids this small can still repeat a training one).
"$bin" prepare-arc --output "$work/arc" --tasks "$n" --train-tasks 1 --min-size 2 --max-size 4 --seed 1007 > /dev/null
start=$(date +%s.%N)
mpirun "${mpirun_flags[@]}" -np "$ranks" "$bin" eval --model "$model" --tasks "$work/arc/eval" --modes "$modes" \
  --output "$work/report.json" > /dev/null
end=$(date +%s.%N)
python3 - "$work/report.json" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"{r['items_total']} test outputs on {r['timing']['world_size']} ranks, {wall:.0f} s in all")
print(f"{'mode':<14} {'exact':>12} {'decoding':>9} {'wall s':>8} {'tasks/s':>8}")
for mode, m in r["modes"].items():
    s = m["timing"]["wall_seconds"]
    vs = m["compute"].get("vs_greedy", 0)
    print(f"{mode:<14} {m['solved']:>5}/{m['tasks']:<6} {vs:>8.1f}x {s:>8.1f} {m['tasks'] / s if s else 0:>8.1f}")
PY
