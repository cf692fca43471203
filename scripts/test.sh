#!/usr/bin/env bash
# Builds CRSM-dist and runs the whole test suite with CTest. Extra arguments go to ctest
# (e.g. -R Scan, -L unit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh"
ctest --test-dir "${CRSM_BUILD_DIR:-$root/build}" -j "${CRSM_TEST_JOBS:-2}" --output-on-failure "$@"
