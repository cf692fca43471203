#!/usr/bin/env bash
# Sets up CRSM-dist on a fresh Debian 12 machine: packages, build, and the programs
# installed on the PATH (prefix CRSM_PREFIX, default /usr/local).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CRSM_PREFIX:-/usr/local}

bash "$root/scripts/install_deps.sh"
# Only what is installed: the tests are built by the test command (scripts/test.sh).
CRSM_BUILD_TARGET=crsm_programs bash "$root/scripts/build.sh"

sudo=()
[[ -w "$prefix" ]] || sudo=(sudo)
"${sudo[@]}" cmake --install "${CRSM_BUILD_DIR:-$root/build}" --prefix "$prefix"
echo "setup: installed into $prefix/bin"
