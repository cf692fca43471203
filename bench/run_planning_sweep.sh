#!/usr/bin/env bash
# Does search help? The planning evaluation of one model over a grid of search settings
# (simulations, expansion width, c_puct, injection rate, dynamics or exact transitions),
# one line of exact-match accuracy per setting, all in one run. Default: the model and
# tasks of the README's first command.
#
#   bench/run_planning_sweep.sh [MODEL] [TASKS] [RANKS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/runs/arc_small/model}
tasks=${2:-$root/data/arc/eval}
ranks=${3:-2}
bin=$root/build/apps/crsm_train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun_flags=(--oversubscribe)
[[ $(id -u) == 0 ]] && mpirun_flags+=(--allow-run-as-root)

row() {  # name, then eval flags
  local name=$1
  shift
  mpirun "${mpirun_flags[@]}" -np "$ranks" "$bin" eval --model "$model" --tasks "$tasks" --output "$work/r.json" \
    --force "$@" > /dev/null
  python3 - "$work/r.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cells = []
for mode, m in r["modes"].items():
    lo, hi = m["ci95"]
    cells.append(f"{mode} {m['solved']}/{m['tasks']} [{100*lo:.0f},{100*hi:.0f}] cells {100*m['cell_accuracy']:.1f}%")
print(f"{sys.argv[2]:<44} " + " | ".join(cells))
PY
}

row "greedy" --modes greedy
for planner in "" --exact; do
  for sims in 32 128; do
    for width in 16 4; do
      for c in 1 4; do
        row "sims $sims top_k $width c_puct $c ${planner:-dynamics}" --modes mcts,mcts+inject --simulations "$sims" \
          --search-top-k "$width" --c-puct "$c" $planner
      done
    done
  done
done
for rate in 0.3 1.0; do
  row "injection_rate $rate (sims 32 top_k 16 c_puct 1)" --modes mcts+inject --injection-rate "$rate"
done
