#!/usr/bin/env bash
# Installs the Debian 12 packages CRSM-dist builds and tests with. Idempotent: it asks
# apt only for what is missing. Runs apt through sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  libssl-dev  # SHA-256 of checkpoint files, by libcrypto
  libboost-program-options-dev
  libgtest-dev
  nlohmann-json3-dev
  libsentencepiece-dev
  protobuf-compiler  # protoc --decode_raw: a test decodes a run's TensorBoard event files with it
  python3-numpy python3-h5py  # tests read our safetensors and HDF5 files from Python, as users do
  python3-torch  # python/crsm.py, the model in plain PyTorch, is tested against crsm_train
  slurm-wlm munge  # the slurm/ scripts are tested under a private single-node Slurm
  procps  # ps and pgrep: the Slurm harness and the multi-rank tests find processes with them
  binutils  # readelf: a test checks the load order of our executables (build-essential brings it too)
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
((EUID == 0)) || sudo=(sudo)
echo "install_deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
