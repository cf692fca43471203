#!/usr/bin/env bash
# Each executable given must load libstdc++ before any LibTorch library (see the
# add_link_options in CMakeLists.txt for why). Prints each one's load order.
set -euo pipefail
status=0
for exe in "$@"; do
  needed=$(readelf -d "$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  echo "$exe: $(tr '\n' ' ' <<<"$needed")"
  first_stdcxx=$(grep -n '^libstdc++' <<<"$needed" | head -1 | cut -d: -f1 || true)
  first_torch=$(grep -n -E '^lib(torch|c10)' <<<"$needed" | head -1 | cut -d: -f1 || true)
  if [[ -z $first_stdcxx || -z $first_torch ]]; then
    echo "  expected both libstdc++ and LibTorch among its libraries"; status=1
  elif (( first_stdcxx > first_torch )); then
    echo "  libstdc++ comes after LibTorch"; status=1
  fi
done
exit $status
