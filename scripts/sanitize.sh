#!/usr/bin/env bash
# Builds the unit and mutation tests with AddressSanitizer and UndefinedBehaviorSanitizer
# on our own code (LibTorch, MPI and the other libraries uninstrumented) into
# build-sanitize/ and runs them. Any report fails the run. Extra arguments go to ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CRSM_SANITIZE_BUILD_DIR:-$root/build-sanitize}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime

if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCRSM_SANITIZE=ON \
    -DCRSM_BUILD_BENCH=OFF -DCRSM_WITH_NCCL=OFF -DCRSM_WITH_CUDA_SCAN=OFF
fi
start=$(date +%s)
cmake --build "$build" -j "${CRSM_BUILD_JOBS:-2}" --target \
  test_base test_config test_metrics test_model test_data test_training test_distill test_search test_eval test_mutation
echo "sanitize: built in $(($(date +%s) - start)) s ($build)"

supp=$root/tests/sanitize
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The unit label holds the mutation tests. Left out: the link-order check (it needs
# executables this build does not make) and the tests that load libsentencepiece, which
# is opened with RTLD_DEEPBIND (src/data/sentencepiece_module.h) and which
# AddressSanitizer refuses to load so (google/sanitizers#611); they run in the normal build.
ctest --test-dir "$build" -L unit -E '^Build\.|SentencePiece|TokenizerTrainingFails' \
  -j "${CRSM_TEST_JOBS:-2}" --output-on-failure "$@"
