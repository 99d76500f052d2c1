#!/usr/bin/env bash
# Installs the Debian packages a job needs, only if some are missing.
# Usage: scripts/deps.sh build|test|demo|bench|torch
set -euo pipefail
common=(cmake ninja-build g++ libeigen3-dev)
case "${1:-test}" in
  build) pkgs=("${common[@]}") ;;
  test)  pkgs=("${common[@]}" catch2 clang libclang-rt-14-dev libomp-dev python3 python3-torch python3-torchvision python3-numpy
               zlib1g-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist pkg-config python3-dev pybind11-dev
               python3-pytest libtorch-dev libcli11-dev) ;;
  demo)  pkgs=("${common[@]}" zlib1g-dev libcli11-dev dataset-fashion-mnist) ;;
  bench) pkgs=("${common[@]}" libbenchmark-dev libtorch-dev python3) ;;
  torch) pkgs=("${common[@]}" python3-torch python3-dev pybind11-dev python3-pytest pkg-config) ;;
  *) echo "usage: $0 build|test|demo|bench|torch" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
