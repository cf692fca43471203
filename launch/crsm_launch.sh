#!/usr/bin/env bash
# crsm_launch.sh - run crsm_train as MPI ranks on one node or on the nodes of a hostfile.
# Docs: docs/launch.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: crsm_launch.sh (-n RANKS | --hostfile FILE) [options] [--] CRSM_TRAIN_ARGS...

  -n, --np RANKS        ranks in all (one node: this machine; with --hostfile: a cap)
  --hostfile FILE       Open MPI hostfile ("host slots=R" lines, see launch/hostfile.example)
  --ranks-per-node R    ranks on each node (default: RANKS on one node, else the first
                        host's slots= in the hostfile; nodes are assumed to be alike)
  --threads T           CPU threads per rank (default: cores per node / ranks per node,
                        cores from CRSM_CORES_PER_NODE or this machine's nproc; a
                        --threads among the crsm_train arguments wins)
  --bind none|socket    rank binding (default none; see below)
  --dry-run             print the mpirun command instead of running it
  -h, --help            this help

Everything else goes to crsm_train, e.g.
  crsm_launch.sh -n 2 -- train --config configs/tiny.json --data data/tinyshakespeare.txt \
      --checkpoint-dir runs/tiny --no-value-loss --resume auto

Environment:
  CRSM_TRAIN            the crsm_train binary (default: $CRSM_BIN_DIR/crsm_train, else PATH)
  CRSM_MPIRUN_ARGS      extra mpirun arguments, split on spaces (e.g. --oversubscribe)
  OMPI_MCA_*            honoured as set; this script only supplies binding defaults
  NCCL_*                forwarded to every rank (NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_HCA ...)

Signals: SIGUSR1 or SIGTERM ask the ranks to checkpoint at the next step and exit 4
(preempted; rerun with --resume auto). A second SIGTERM aborts the job.
EOF
}

die() { echo "crsm_launch: $*" >&2; exit 2; }

ranks="" hostfile="" per_node="" threads="" bind=none dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    -n|--np) ranks=${2:?-n needs a value}; shift 2 ;;
    --hostfile) hostfile=${2:?--hostfile needs a file}; shift 2 ;;
    --ranks-per-node) per_node=${2:?--ranks-per-node needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --bind) bind=${2:?--bind needs none or socket}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
[ -n "$ranks$hostfile" ] || die "give -n RANKS or --hostfile FILE"
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
[ -z "$ranks" ] || is_count "$ranks" || die "-n: not a positive integer: $ranks"

if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || die "cannot read hostfile $hostfile"
  if [ -z "$per_node" ]; then
    per_node=$(sed -n 's/^[^#]*slots=\([0-9][0-9]*\).*/\1/p' "$hostfile" | head -n 1)
    [ -n "$per_node" ] || die "$hostfile has no slots=; give --ranks-per-node"
  fi
else
  per_node=${per_node:-$ranks}
fi
is_count "$per_node" || die "ranks per node: not a positive integer: $per_node"

# The binary's own default divides all of the machine's CPUs; nproc counts only those this
# process may use (taskset, container limits), so compute it here and say it explicitly.
given=""
prev=""
for a in "$@"; do
  case $a in --threads=*) given=${a#--threads=} ;; esac
  [ "$prev" = --threads ] && given=$a
  prev=$a
done
if [ -n "$given" ]; then
  [ -z "$threads" ] || [ "$threads" = "$given" ] || die "--threads given twice: $threads and $given"
  threads=$given
elif [ -z "$threads" ]; then
  cores=${CRSM_CORES_PER_NODE:-$(nproc)}
  threads=$(( cores / per_node )); [ "$threads" -ge 1 ] || threads=1
fi
is_count "$threads" || die "--threads: not a positive integer: $threads"

# Open MPI 4.1 binds each rank to one core when it starts 2 ranks or fewer, which would
# squeeze all of a rank's threads onto that core. "none" leaves placement to the kernel;
# "socket" keeps each rank's threads and memory on one NUMA socket (ranks >= sockets).
case $bind in
  none) : "${OMPI_MCA_hwloc_base_binding_policy:=none}" ;;
  socket) : "${OMPI_MCA_hwloc_base_binding_policy:=socket}" "${OMPI_MCA_rmaps_base_mapping_policy:=socket}"
          export OMPI_MCA_rmaps_base_mapping_policy ;;
  *) die "--bind: none or socket, not $bind" ;;
esac
export OMPI_MCA_hwloc_base_binding_policy
# Containers commonly run as root, which mpirun refuses unless told it is deliberate.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

bin=${CRSM_TRAIN:-}
if [ -z "$bin" ] && [ -n "${CRSM_BIN_DIR:-}" ]; then bin=$CRSM_BIN_DIR/crsm_train; fi
if [ -z "$bin" ]; then bin=$(command -v crsm_train) || die "crsm_train not on PATH; set CRSM_TRAIN or CRSM_BIN_DIR"; fi
[ -x "$bin" ] || die "not an executable: $bin"
# Remote nodes start the binary by this path, so it must not depend on our working directory.
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

cmd=(mpirun)
[ -z "$ranks" ] || cmd+=(-np "$ranks")
[ -z "$hostfile" ] || cmd+=(--hostfile "$hostfile" --npernode "$per_node")
# mpirun passes OMPI_* on by itself; other variables reach remote ranks only through -x.
while IFS= read -r v; do cmd+=(-x "$v"); done < <(compgen -e | grep -E '^(PATH|LD_LIBRARY_PATH|NCCL_.*)$' || true)
# shellcheck disable=SC2206  # CRSM_MPIRUN_ARGS is a list of words by design
[ -z "${CRSM_MPIRUN_ARGS:-}" ] || cmd+=($CRSM_MPIRUN_ARGS)
cmd+=("$bin" "$@")
# Only the commands that compute take --threads.
case $1 in train|generate) [ -n "$given" ] || cmd+=(--threads "$threads") ;; esac

if [ "$dry_run" = 1 ]; then
  compgen -e | grep -E '^OMPI_(MCA_|ALLOW_)' | while IFS= read -r v; do printf '%s=%q ' "$v" "${!v}"; done
  printf '%q ' "${cmd[@]}"; echo; exit 0
fi

# Not exec: mpirun answers SIGTERM by killing the ranks about a second later (and exits 1),
# which loses the checkpoint. SIGUSR1 it forwards as is, so turn the first TERM into USR1
# and wait for the ranks to save. A second TERM goes through for a hard stop. The traps go
# in before mpirun starts: an untrapped USR1 would kill this shell and orphan mpirun.
child="" terms=0 pending=""
# shellcheck disable=SC2317  # invoked by the traps
send() { if [ -n "$child" ]; then kill "-$1" "$child" 2>/dev/null || true; else pending=$1; fi; }
# shellcheck disable=SC2317
on_term() { terms=$((terms + 1)); if [ "$terms" = 1 ]; then send USR1; else send TERM; fi; }
trap on_term TERM
trap 'send USR1' USR1
# Without a trap this shell would die on Ctrl-C and leave mpirun behind; mpirun aborts on INT.
trap 'if [ -n "$child" ]; then send INT; else exit 130; fi' INT
# Told to stop before anything ran: nothing new to save, so report "preempted" at once.
if [ -n "$pending" ]; then echo "crsm_launch: stopped before start" >&2; exit 4; fi
"${cmd[@]}" & child=$!
# `wait` returns early whenever a trap runs; keep waiting until mpirun itself has ended.
while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done
rc=0; wait "$child" || rc=$?
exit "$rc"
