#!/usr/bin/env bash
# One unattended run on a GPU machine with little time to spare: builds CRSM-dist against
# the LibTorch of a PyTorch install with CUDA and checks, GPU first, then the CPU suite:
#   the NCCL library loaded; the NCCL communicator tests (ctest -L gpu); the CUDA selective
#   scan against the reference on the device, and its time; training on cuda under mpirun
#   (NCCL) in bf16 and fp32, with --zero-stage 2 --grad-accum 2 (reduce-scatter) and
#   --zero-stage 3 (sharded parameters, gathered on the device), the fp32
#   loss at step 10 against a CPU run of the same seed; one step of configs/large.json at
#   the per-GPU batch the memory plan says fits (device peak against the plan); tokens/s
#   and model FLOPs utilisation of configs/medium.json in bf16.
# Never stalls: every command has a timeout, and a failed check is reported and the next
# one runs; the exit status says whether any failed.
#
#   scripts/gpu_check.sh DEBS_DIR OUT_DIR
#
# DEBS_DIR: Debian .deb files of Boost.Program_options 1.74 (libboost-program-options1.74.0,
# libboost-program-options1.74-dev, libboost1.74-dev; `apt-get download` them on a Debian
# 12 machine): the GPU machine's Python has no Boost. OUT_DIR: where the logs go.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: scripts/gpu_check.sh DEBS_DIR OUT_DIR"
debs=${1:?$usage}
out=${2:?$usage}
shopt -s nullglob
deb_files=("$debs"/*.deb)
shopt -u nullglob
if [[ ${#deb_files[@]} -eq 0 ]]; then
  echo "gpu_check: no .deb files in $debs: fetch libboost-program-options1.74.0, libboost-program-options1.74-dev" \
       "and libboost1.74-dev with apt-get download into it" >&2
  exit 2
fi
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

status=0
fail() { echo "gpu_check: FAILED: $*"; status=1; }
# Every command is bounded: SECONDS COMMAND...
bounded() { local s=$1; shift; timeout --kill-after=15 "$s" "$@"; }
build=$root/build-gpu
bin=$build/apps/crsm_train
mpirun_flags=(--allow-run-as-root --oversubscribe -np 1)

boost_root=$build/boost
mkdir -p "$boost_root"
for deb in "${deb_files[@]}"; do dpkg -x "$deb" "$boost_root"; done
export LD_LIBRARY_PATH=$boost_root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
gpu_gib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{ printf "%d", $1 / 1024 }')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

start=$(date +%s)
bounded 300 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DCRSM_TEST_NCCL=ON \
  -DBoost_DIR="$boost_root/usr/lib/x86_64-linux-gnu/cmake/Boost-1.74.0" \
  -Dboost_program_options_DIR="$boost_root/usr/lib/x86_64-linux-gnu/cmake/boost_program_options-1.74.0" \
  -Dboost_headers_DIR="$boost_root/usr/lib/x86_64-linux-gnu/cmake/boost_headers-1.74.0" \
  > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; echo "gpu_check: configure failed"; exit 1; }
grep -E "NCCL communicator|CUDA selective scan" "$out/configure.log"
if grep -q "NCCL communicator: off" "$out/configure.log"; then echo "gpu_check: configure found no NCCL: stopping"; exit 1; fi
if grep -q "CUDA selective scan: off" "$out/configure.log"; then echo "gpu_check: configure found no nvcc: stopping"; exit 1; fi
bounded 1200 cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 \
  || { grep -E "error" "$out/build.log" | head -40; echo "gpu_check: build failed"; exit 1; }
echo "gpu_check: build ok in $(($(date +%s) - start)) s"

# PyTorch's libtorch_cpu.so exports copies of std::filesystem symbols; the build names
# libstdc++ first on every link line, and a failure here is rerun with it preloaded so the
# log tells a link-order problem apart from a real one.
libstdcxx=$(g++ -print-file-name=libstdc++.so.6)

echo "== NCCL library loaded (NCCL_DEBUG=VERSION)"
CRSM_TEST_BACKEND=nccl NCCL_DEBUG=VERSION bounded 120 mpirun "${mpirun_flags[@]}" -x CRSM_TEST_BACKEND -x NCCL_DEBUG \
  "$build/tests/test_communicator_mpi" > "$out/nccl_version.log" 2>&1 || true
grep -m2 -i "NCCL version" "$out/nccl_version.log" || echo "gpu_check: NCCL printed no version (see nccl_version.log)"

echo "== NCCL communicator tests"
bounded 300 ctest --test-dir "$build" -L gpu --output-on-failure > "$out/ctest_gpu.log" 2>&1 \
  || fail "NCCL communicator tests (ctest_gpu.log)"
tail -5 "$out/ctest_gpu.log"

echo "== CUDA selective scan against the reference, on the device"
bounded 300 "$build/tests/test_model" --gtest_filter='CudaScan.*:ScanChunked.*' > "$out/cuda_scan.log" 2>&1 \
  || fail "CUDA scan against the reference (cuda_scan.log)"
grep -E "OK|FAILED|SKIPPED|Failure|relative" "$out/cuda_scan.log" | head -20

# A small-config run on cuda:0 under mpirun: the NCCL backend carries the gradients.
train_cuda() {  # RUN_NAME SECONDS EXTRA...
  local run=$build/$1 seconds=$2
  shift 2
  rm -rf "$run"
  bounded "$seconds" mpirun "${mpirun_flags[@]}" "$bin" train --config "$root/configs/small.json" \
    --data "$root/data/tinyshakespeare.txt" --checkpoint-dir "$run" --device cuda --no-value-loss "$@"
}
loss_at() {  # RUN STEP: the train loss logged at STEP
  python3 -c 'import json,sys
for line in open(sys.argv[1] + "/metrics.jsonl"):
    r = json.loads(line)
    if r["split"] == "train" and r["step"] == int(sys.argv[2]): print(r["loss"])' "$1" "$2"
}

echo "== training on cuda (bf16, fp32) and sampling"
for precision in bf16 fp32; do
  if train_cuda "run_cuda_$precision" 300 --precision "$precision" --max-steps 50 --log-every 10 --eval-every 50 \
       > "$out/train_cuda_$precision.log" 2>&1; then
    grep -E "^train:|memory:|step +50" "$out/train_cuda_$precision.log"
    bounded 120 "$bin" generate --model "$build/run_cuda_$precision" --device cuda:0 --prompt "ROMEO:" --max-length 60 \
      || fail "generate on cuda ($precision)"
  else
    tail -20 "$out/train_cuda_$precision.log"
    fail "CUDA $precision training run (train_cuda_$precision.log)"
  fi
done

echo "== --zero-stage 2 --grad-accum 2 on NCCL (reduce-scatter)"
train_cuda run_cuda_zero2 300 --zero-stage 2 --grad-accum 2 --max-steps 20 --log-every 10 --eval-every 0 \
  --eval-batches 2 > "$out/train_cuda_zero2.log" 2>&1 && grep -E "step +20/" "$out/train_cuda_zero2.log" \
  || { tail -20 "$out/train_cuda_zero2.log"; fail "zero stage 2 on NCCL (train_cuda_zero2.log)"; }

echo "== --zero-stage 3 --grad-accum 2 on NCCL (parameters gathered a unit at a time)"
train_cuda run_cuda_zero3 300 --zero-stage 3 --grad-accum 2 --precision bf16 --max-steps 20 --log-every 10 \
  --eval-every 0 --eval-batches 2 > "$out/train_cuda_zero3.log" 2>&1 &&
  grep -E "communication:|memory:|step +20/" "$out/train_cuda_zero3.log" &&
  bounded 120 "$bin" generate --model "$build/run_cuda_zero3" --device cuda:0 --prompt "ROMEO:" --max-length 40 \
  || { tail -20 "$out/train_cuda_zero3.log"; fail "zero stage 3 on NCCL (train_cuda_zero3.log)"; }

echo "== fp32 loss at step 10: cuda against cpu, same seed"
common=(--config "$root/configs/small.json" --data "$root/data/tinyshakespeare.txt" --no-value-loss --max-steps 10
        --log-every 10 --eval-every 0 --eval-batches 1 --seed 7)
rm -rf "$build/cmp_cuda" "$build/cmp_cpu"
if bounded 300 "$bin" train "${common[@]}" --checkpoint-dir "$build/cmp_cuda" --device cuda > "$out/cmp_cuda.log" 2>&1 &&
   bounded 300 "$bin" train "${common[@]}" --checkpoint-dir "$build/cmp_cpu" --device cpu > "$out/cmp_cpu.log" 2>&1; then
  cuda_loss=$(loss_at "$build/cmp_cuda" 10)
  cpu_loss=$(loss_at "$build/cmp_cpu" 10)
  echo "step 10 train loss: cuda $cuda_loss, cpu $cpu_loss"
  python3 -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) <= 1e-3 * max(1, abs(b)) else 1)' \
    "$cuda_loss" "$cpu_loss" || fail "fp32 loss at step 10 differs between cuda and cpu"
else
  fail "the cuda/cpu comparison runs (cmp_cuda.log, cmp_cpu.log)"
fi

echo "== CUDA scan time against the reference (B 8, T 512, d_inner 1536, d_state 16)"
bounded 600 "$build/bench/crsm_bench" --configs "$root/configs" --cuda-scan > "$out/bench.log" 2>&1 \
  && grep -E "scan" "$out/bench.log" || fail "crsm_bench --cuda-scan (bench.log)"

# The large and medium configs with the byte tokenizer's vocabulary (the bundled corpus).
bytes_config() {  # NAME -> OUT/NAME_bytes.json
  python3 -c 'import json,sys; c = json.load(open(sys.argv[1])); c["vocab_size"] = 258; json.dump(c, open(sys.argv[2], "w"))' \
    "$root/configs/$1.json" "$out/$1_bytes.json"
}

echo "== one step of configs/large.json (vocab 258) at the batch the plan says fits in $gpu_gib GiB"
bytes_config large
bounded 60 "$bin" memory --config "$out/large_bytes.json" --world 1 --gpu-gib "$gpu_gib" > "$out/large_plan.log" \
  || fail "crsm_train memory for the large config (large_plan.log)"
cat "$out/large_plan.log"
# The second table's row for W = 1, stage 0: its checkpointed column.
batch=$(awk -F'|' '/^\| 1 \| 0 \|/ { n++ } /^\| 1 \| 0 \|/ && n == 2 { gsub(/ /, "", $5); print $5 }' "$out/large_plan.log")
if [[ -n "$batch" && "$batch" -gt 0 ]]; then
  rm -rf "$build/run_large"
  bounded 600 mpirun "${mpirun_flags[@]}" "$bin" train --config "$out/large_bytes.json" --data "$root/data/tinyshakespeare.txt" \
    --checkpoint-dir "$build/run_large" --device cuda --precision bf16 --activation-checkpointing --batch-size "$batch" \
    --no-value-loss --max-steps 1 --eval-every 0 --eval-batches 1 > "$out/train_large.log" 2>&1 \
    && grep -E "^train:|memory:" "$out/train_large.log" \
    || { tail -20 "$out/train_large.log"; fail "one step of the large config at batch $batch (train_large.log)"; }
  # The device's measured peak against the plan's total (checkpointed) for that batch.
  bounded 60 "$bin" memory --config "$out/large_bytes.json" --world 1 --micro-batch "$batch" > "$out/large_plan_batch.log"
  python3 - "$out/train_large.log" "$out/large_plan_batch.log" <<'PY' || fail "device peak against the plan"
import re, sys
peak = re.search(r"device peak ([0-9.]+) MiB", open(sys.argv[1]).read())
row = next(l for l in open(sys.argv[2]) if re.match(r"\| 1 \| 0 \|", l))
plan = float(row.split("|")[10].split()[0]) * 1024  # total, checkpointed, GiB -> MiB
if peak:
    print(f"large, one step: device peak {float(peak.group(1)):.0f} MiB against the plan's {plan:.0f} MiB "
          f"({float(peak.group(1)) / plan:.2f}x)")
else:
    sys.exit("no device peak in train_large.log")
PY
else
  fail "the memory plan gave no batch for the large config on $gpu_gib GiB"
fi

echo "== configs/medium.json (vocab 258) in bf16: tokens/s and model FLOPs utilisation"
bytes_config medium
rm -rf "$build/run_medium"
if bounded 600 mpirun "${mpirun_flags[@]}" "$bin" train --config "$out/medium_bytes.json" --data "$root/data/tinyshakespeare.txt" \
     --checkpoint-dir "$build/run_medium" --device cuda --precision bf16 --no-value-loss --max-steps 30 --log-every 10 \
     --eval-every 0 --eval-batches 1 > "$out/train_medium.log" 2>&1; then
  python3 - "$out/train_medium.log" "$gpu_name" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
params = int(re.search(r"train: (\d+) parameters", text).group(1))
rates = [float(r) for r in re.findall(r"\| +(\d+) tok/s", text)]
peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
bf16 = next((v for k, v in peak.items() if k in sys.argv[2]), None)
tps = rates[-1]
print(f"medium bf16: {params} parameters, {tps:.0f} tokens/s (steps 21-30)")
if bf16:
    print(f"model FLOPs utilisation: 6 x {params} x {tps:.0f} / {bf16:.3g} = {6 * params * tps / bf16:.1%}")
else:
    print(f"no bf16 peak known for {sys.argv[2]}")
PY
else
  tail -20 "$out/train_medium.log"
  fail "the medium bf16 run (train_medium.log)"
fi

echo "== the CPU suite"
bounded 1500 ctest --test-dir "$build" -j 8 -LE gpu --output-on-failure > "$out/ctest.log" 2>&1 && cpu=0 || cpu=$?
tail -25 "$out/ctest.log"
if [[ "$cpu" != 0 ]]; then
  LD_PRELOAD=$libstdcxx bounded 600 ctest --test-dir "$build" --rerun-failed --output-on-failure \
    > "$out/ctest_preload.log" 2>&1 && preload=0 || preload=$?
  tail -25 "$out/ctest_preload.log"
  echo "gpu_check: rerun of the failed tests with LD_PRELOAD=$libstdcxx: exit $preload"
  fail "CPU suite (ctest.log)"
fi
echo "gpu_check: done in $(($(date +%s) - start)) s, status $status"
exit $status
