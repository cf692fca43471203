#!/usr/bin/env bash
# Stage 2's figures: the transition writer against a plain write (crsm_bench_distill),
# and transitions collected per second at W = 1 and W = 2 from a backbone checkpoint
# (default: the README's runs/small), each run on all of the node's cores.
#
#   bench/run_distill_bench.sh [CHECKPOINT] [SAMPLES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ckpt=${1:-$root/runs/small}
samples=${2:-20000}
bin=$root/build/apps/crsm_train
[[ -n "${SKIP_WRITER:-}" ]] || for chunk in 256 1024; do "$root/build/bench/crsm_bench_distill" --chunk-rows "$chunk"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun_flags=(--oversubscribe --bind-to none)
[[ $(id -u) == 0 ]] && mpirun_flags+=(--allow-run-as-root)
for world in 1 2; do
  start=$(date +%s.%N)
  mpirun "${mpirun_flags[@]}" -np "$world" "$bin" distill --model-path "$ckpt" --output-path "$work/w$world" \
    --data "$root/data/tinyshakespeare.txt" --num-samples "$samples" --val-samples 64 --collect-only > "$work/log$world"
  end=$(date +%s.%N)
  grep "distill: train:.*kept" "$work/log$world" | sed "s/^/  W=$world: /"
  echo "collection W=$world: $(awk -v n="$samples" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f transitions/s (%.1f s wall, start-up included)", n / (e - s), e - s }')"
done
