#!/usr/bin/env bash
# Installs the Debian packages gradcomp needs, and only those not installed yet.
#
#   scripts/setup-deps.sh [EXTRA_PACKAGE ...]   # run directly: base packages + extras
#   source scripts/setup-deps.sh                # from another script: defines the gc_* helpers
#                                               # and GRADCOMP_PACKAGES, installs nothing by itself
#
# Rules (docs/building.md, and environment.md §0 of the design notes):
# - a package counts as present when `dpkg-query` says "install ok installed";
# - `apt-get update` runs only when something is missing;
# - already-installed packages are never named to apt (naming one makes apt upgrade it);
# - apt runs non-interactively, quietly, with --no-install-recommends;
# - as root it calls apt-get directly, otherwise through sudo; with neither it stops and prints
#   the exact command to run.
# Set GRADCOMP_SKIP_DEPS=1 to skip all of this (non-Debian systems, or packages installed by hand).

# Packages every build uses. cmake/ninja/g++/gtest/benchmark are usually present already; Kokkos,
# Open MPI and Google Benchmark are cheap and let CMake's AUTO options find them.
# libtorch, Fashion-MNIST (gradcomp-train) and matplotlib/pytest (reports) are in the list too.
GRADCOMP_PACKAGES=(
  cmake ninja-build g++ pkg-config
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libtrilinos-kokkos-dev libopenmpi-dev openmpi-bin
  python3-numpy  # the CLI test cross-checks .npy files against NumPy (/usr/bin/python3)
  libtorch-dev zlib1g-dev dataset-fashion-mnist  # gradcomp-train: ResNet on Fashion-MNIST (#6)
  python3-matplotlib python3-pytest  # reports/make_report.py and its tests (/usr/bin/python3)
)

gc_log() { printf '==> %s\n' "$*" >&2; }
gc_die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# Prints the packages among "$@" that are not installed, one per line.
gc_missing_packages() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || printf '%s\n' "$p"
  done
}

# Installs whatever of "$@" is missing; does nothing (and touches no apt state) when all are there.
gc_ensure_packages() {
  if [[ "${GRADCOMP_SKIP_DEPS:-0}" == "1" ]]; then
    gc_log "GRADCOMP_SKIP_DEPS=1: not checking Debian packages"
    return 0
  fi
  command -v dpkg-query >/dev/null 2>&1 ||
    gc_die "dpkg-query not found: this is not a Debian-like system. Install the equivalents of: $*
       yourself, then rerun with GRADCOMP_SKIP_DEPS=1."
  local missing
  mapfile -t missing < <(gc_missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    gc_log "Debian packages: all ${#} present, nothing to install"
    return 0
  fi
  local -a sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      gc_die "missing Debian packages: ${missing[*]}
       Installing them needs root, and this user is not root and has no sudo. Run as root:
         apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing[*]}
       then rerun this script (or rerun it with GRADCOMP_SKIP_DEPS=1)."
    fi
  fi
  local log="${TMPDIR:-/tmp}/gradcomp-apt.$$.log"
  gc_log "Installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
  gc_log "apt-get update (log: $log)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    gc_die "apt-get update failed (full log: $log)"
  fi
  gc_log "apt-get install -y -q --no-install-recommends ${missing[*]}"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    gc_die "apt-get install failed (full log: $log)"
  fi
  local still
  mapfile -t still < <(gc_missing_packages "${missing[@]}")
  ((${#still[@]} == 0)) || gc_die "still not installed after apt-get: ${still[*]} (log: $log)"
  rm -f "$log"
  gc_log "Installed: ${missing[*]}"
}

# Number of parallel jobs: all cores.
gc_jobs() { nproc 2>/dev/null || echo 2; }

# Run directly: install the base packages plus any named on the command line.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    -h | --help)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
  esac
  gc_ensure_packages "${GRADCOMP_PACKAGES[@]}" "$@"
fi
