#!/usr/bin/env bash
# Training throughput of the small config at world size 1 (no launcher) and at
# world size RANKS (default 2, under mpirun), on the same cores: each run gets all of
# the node's cores, split evenly among its ranks as intra-op threads. Prints tokens/s
# of both and the scaling efficiency. Extra arguments go to crsm_bench_dist
# (e.g. --quick, --zero-stage 1).
#
#   bench/run_dist_bench.sh [--quick] [--zero-stage S]
#   CRSM_BENCH_DIST=path/to/crsm_bench_dist RANKS=4 bench/run_dist_bench.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CRSM_BENCH_DIST:-$root/build/bench/crsm_bench_dist}
ranks=${RANKS:-2}
cores=$(nproc)
threads_per_rank=$(( cores / ranks > 0 ? cores / ranks : 1 ))
[[ -x $bin ]] || { echo "run_dist_bench.sh: $bin not built (cmake --build build --target crsm_bench_dist)" >&2; exit 1; }
cd "$root"  # the binary reads configs/small.json relative to here

mpirun_flags=(--oversubscribe)
[[ $(id -u) == 0 ]] && mpirun_flags+=(--allow-run-as-root)
# Open MPI binds each rank to one core by default when there are at most two ranks,
# which would crowd a rank's threads onto that core; OpenMP places them instead.
mpirun_flags+=(--bind-to none)

# A field of the one JSON line the binary prints with --only throughput.
field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p" <<<"$2"; }

echo "run_dist_bench.sh: $cores cores; W=1 with $cores threads, W=$ranks with $threads_per_rank thread(s) per rank"
one=$("$bin" --only throughput --json --threads "$cores" "$@")
many=$(mpirun "${mpirun_flags[@]}" -np "$ranks" "$bin" --only throughput --json \
         --threads "$threads_per_rank" "$@")

tps1=$(field tokens_per_s "$one");  ms1=$(field ms_per_step "$one")
tpsn=$(field tokens_per_s "$many"); msn=$(field ms_per_step "$many")
awk -v tps1="$tps1" -v ms1="$ms1" -v tpsn="$tpsn" -v msn="$msn" -v ranks="$ranks" \
    -v cores="$cores" -v tpr="$threads_per_rank" 'BEGIN {
  printf "%-6s %6s %13s %10s %10s\n", "world", "ranks", "threads/rank", "ms/step", "tokens/s"
  printf "%-6s %6d %13d %10.1f %10.0f\n", "W=1", 1, cores, ms1, tps1
  printf "%-6s %6d %13d %10.1f %10.0f\n", "W=" ranks, ranks, tpr, msn, tpsn
  # Both runs use the same cores, so perfect data parallelism would match W=1 exactly:
  # the efficiency is the W=N rate over the W=1 rate (not over N times it).
  printf "speed-up W=%d over W=1: %.2fx; scaling efficiency on the same %d cores: %.0f%%\n",
         ranks, tpsn / tps1, cores, 100 * tpsn / tps1
}'
