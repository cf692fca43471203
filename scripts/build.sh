#!/usr/bin/env bash
# Configures (once) and builds CRSM-dist into build/ with Ninja, ccache and the shared
# precompiled header: every target, or only those CRSM_BUILD_TARGET names (setup.sh
# builds crsm_programs, what gets installed). Extra arguments go to the CMake configure
# step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CRSM_BUILD_DIR:-$root/build}

# The precompiled header and ccache only work together with these relaxations.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime

if [[ ! -f "$build/build.ninja" || $# -gt 0 ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
start=$(date +%s)
cmake --build "$build" -j "${CRSM_BUILD_JOBS:-2}" ${CRSM_BUILD_TARGET:+--target $CRSM_BUILD_TARGET}
echo "build: done in $(($(date +%s) - start)) s ($build)"
