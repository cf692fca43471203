#!/usr/bin/env bash
# Builds CRSM-dist and runs the whole test suite with CTest, then the unit and mutation
# tests again under AddressSanitizer and UndefinedBehaviorSanitizer (scripts/sanitize.sh).
# Extra arguments go to ctest (e.g. -R Scan, -L unit) and skip the sanitizer run, as
# does CRSM_SKIP_SANITIZE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh"
ctest --test-dir "${CRSM_BUILD_DIR:-$root/build}" -j "${CRSM_TEST_JOBS:-2}" --output-on-failure "$@"
if [[ $# -eq 0 && "${CRSM_SKIP_SANITIZE:-0}" != 1 ]]; then
  bash "$root/scripts/sanitize.sh"
fi
