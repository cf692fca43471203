#!/usr/bin/env bash
# run_slurm_requeue_test.sh CRSM_TRAIN [1node|multinode] - end-to-end preemption test under
# a private Slurm. Submits slurm/crsm_1node_8gpu.sbatch (or crsm_multinode_8gpu.sbatch on two
# emulated nodes) unchanged but for the task count: fake GPUs, 2 CPU ranks, tiny config.
# Sends the batch script the preemption warning (USR1) once training runs, and checks that
# the job checkpointed, requeued itself, resumed from that checkpoint and then completed.
# Needs root and slurm-wlm + munge + openmpi-bin; exits 77 (skip) without them.
# Knobs: CRSM_TEST_STEPS (default 200), CRSM_TEST_ZERO_STAGE (default 1; empty: none),
# CRSM_TEST_KEEP=1 keeps the temporary directory.
set -euo pipefail

bin=${1:?usage: run_slurm_requeue_test.sh PATH/TO/crsm_train [1node|multinode]}
mode=${2:-1node}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
steps=${CRSM_TEST_STEPS:-200}
zero_stage=${CRSM_TEST_ZERO_STAGE-1}
keep=${CRSM_TEST_KEEP:-0}
t_start=$SECONDS

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "the private Slurm runs its daemons as root"
for tool in munged slurmctld slurmd sbatch srun squeue scontrol scancel mpirun; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
[ -x "$bin" ] || { echo "FAIL: not an executable: $bin"; exit 1; }
# Settings of the caller (an outer Slurm job, site SBATCH_* defaults, CRSM_* overrides)
# would leak into sbatch and the job; this test sets all it needs itself.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|CRSM)_' || true)

case $mode in
  1node) nodes=1 script=crsm_1node_8gpu.sbatch shape=(--ntasks-per-node=2) ;;
  # Emulated nodes share one host: Open MPI's shared-memory transport breaks between them,
  # and each node's CPU count is the host's, so threads per rank must be set by hand.
  multinode) nodes=2 script=crsm_multinode_8gpu.sbatch shape=(--nodes=2 --ntasks-per-node=1)
             export OMPI_MCA_btl=self,tcp CRSM_THREADS=1 ;;
  *) echo "FAIL: mode is 1node or multinode, not $mode"; exit 1 ;;
esac

SLURM_CI_ROOT=$(mktemp -d /tmp/crsm-slurm-test.XXXXXX)
export SLURM_CI_ROOT SLURM_CONF=$SLURM_CI_ROOT/etc/slurm.conf
work=$SLURM_CI_ROOT/work
out=$work/job.out
mkdir -p "$work/bin"
cleanup() {
  bash "$here/slurm-ci/down.sh" >/dev/null 2>&1 || true
  if [ "$keep" = 1 ]; then echo "kept $SLURM_CI_ROOT"; else rm -rf "$SLURM_CI_ROOT"; fi
}
trap cleanup EXIT
# Bash skips the EXIT trap when a signal kills it; a test runner's timeout must not leave
# a cluster behind.
trap 'exit 1' INT TERM HUP
fail() {
  echo "FAIL: $*"
  if [ -n "${job:-}" ]; then
    echo "  job $job: $(scontrol -o show job "$job" 2>/dev/null | tr ' ' '\n' \
      | grep -E '^(JobState|Reason|Restarts|ExitCode|RunTime)=' | tr '\n' ' ')"
  fi
  if [ -f "$out" ]; then echo "---- job output ($out) ----"; cat "$out"; echo "---- end of job output ----"; fi
  exit 1
}

# The batch script finds the binary as crsm_train on CRSM_BIN_DIR, whatever $1 is called.
ln -s "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" "$work/bin/crsm_train"

# A random controller port lets this test run beside another private cluster. Requeued jobs
# wait out the credential lifetime; 5 s is the least up.sh allows.
SLURM_CI_NODES=$nodes SLURM_CI_CTLD_PORT=$(( 20000 + RANDOM % 20000 )) SLURM_CI_GPUS=8 SLURM_CI_CRED_EXPIRE=5 \
  bash "$here/slurm-ci/up.sh" >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "the private Slurm did not start"; }

job=$(cd "$work" && \
  CRSM_ROOT=$root CRSM_BIN_DIR=$work/bin CRSM_DEVICE=cpu CRSM_CONFIG=configs/tiny.json \
  CRSM_DATA=data/tinyshakespeare.txt CRSM_RUN_DIR=$work/run CRSM_SAVE_EVERY=7 \
  CRSM_ZERO_STAGE=$zero_stage \
  CRSM_TRAIN_ARGS="--no-value-loss --max-steps $steps --eval-every 0 --eval-batches 2 --log-every 1" \
  sbatch --parsable "${shape[@]}" --output="$out" "$root/slurm/$script") \
  || fail "sbatch refused $script"
echo "submitted job $job ($script): 2 CPU ranks on $nodes node(s), $steps steps"

in_queue() { [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; }
field() { scontrol show job "$job" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

# Preempt as soon as an optimizer step has run: there is training state to save, and the
# run is far from its end. The output file is read often; squeue only every 0.5 s.
deadline=$((SECONDS + 60)) polls=0
until grep -qE '^step +[0-9]+/' "$out" 2>/dev/null; do
  if [ $((polls++ % 5)) = 0 ]; then in_queue || fail "the job ended before training began"; fi
  [ "$SECONDS" -lt "$deadline" ] || fail "no progress line within 60 s"
  sleep 0.1
done
scancel --batch --signal=USR1 "$job" || fail "scancel --batch --signal=USR1 failed"
echo "sent USR1 to the batch script of job $job"

deadline=$((SECONDS + 100))
while in_queue; do
  [ "$SECONDS" -lt "$deadline" ] || fail "job still in the queue after 100 s"
  sleep 0.5
done

# The first start must have stopped with status 4 and requeued itself, not finished or crashed.
first=$(sed '/requeueing job/q' "$out")
if grep -q '^train: done' <<<"$first"; then fail "training finished before the signal: raise CRSM_TEST_STEPS"; fi
grep -q 'training step exited with status 4' <<<"$first" || fail "the first start did not exit with status 4"
grep -q 'requeueing job' <<<"$first" || fail "the batch script did not requeue the job"

state=$(field JobState) exit_code=$(field ExitCode) restarts=$(field Restarts)
[ "$restarts" = 1 ] || fail "Restarts=$restarts, expected 1 (one requeue)"
[ "$state" = COMPLETED ] || fail "JobState=$state, expected COMPLETED"
[ "$exit_code" = 0:0 ] || fail "ExitCode=$exit_code, expected 0:0"

# The second start resumes at or after the last step the first one logged: the checkpoint
# came from the signal, not from an earlier periodic save.
last_logged=$(sed -n 's|^step *\([0-9][0-9]*\)/.*|\1|p' <<<"$first" | tail -n 1)
resume_line=$(grep -m 1 '^resume: continuing from .* at step [0-9]' "$out") \
  || fail "no 'resume: continuing from ... at step S' line after the requeue"
resumed_at=${resume_line##* at step }
resumed_at=${resumed_at%%[!0-9]*}
[ "$resumed_at" -gt 0 ] || fail "resumed at step $resumed_at"
[ "$resumed_at" -lt "$steps" ] || fail "the first start reached step $resumed_at of $steps before the signal: raise CRSM_TEST_STEPS"
[ "$resumed_at" -ge "${last_logged:-0}" ] \
  || fail "resumed at step $resumed_at but the first start had logged step $last_logged: no checkpoint on the signal"

grep -q "^train: done, $steps steps" "$out" || fail "no 'train: done, $steps steps' line"
latest=$(cat "$work/run/checkpoints/latest" 2>/dev/null) || fail "no $work/run/checkpoints/latest"
latest_step=$(sed -n 's/^step_0*\([0-9][0-9]*\)$/\1/p' <<<"$latest")
[ "$latest_step" = "$steps" ] || fail "latest checkpoint is '$latest', expected step $steps"

echo "PASS: stopped after step $last_logged, resumed at step $resumed_at, finished $steps steps;" \
     "job $job COMPLETED 0:0 with Restarts=1 in $((SECONDS - t_start)) s"
