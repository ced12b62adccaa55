#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing, then runs them.
#
#   cargo-nextest  the test runner                      cargo install (about 2 minutes, once)
#   garage 2.5.0   the S3-compatible server of the S3   cargo install (about 14 minutes on 2
#                  tests, run as a process on loopback  cores, once; built while the tests compile)
#   openssl        the TLS tests make certificates      apt-get
#   btrfs-progs,   the snapshot tests make btrfs, XFS    apt-get (they need root for loop devices;
#   xfsprogs,      and LVM thin filesystems on loop      as another user they say so and skip)
#   lvm2, thin-provisioning-tools    devices
#   chromium,      the web console's test drives a       apt-get
#   chromium-driver  headless browser over WebDriver
#   prometheus     promtool checks and unit-tests the    apt-get
#                  alert rules in deploy/prometheus/
#
# Installed tools land in cargo's bin directory (~/.cargo/bin) and are reused by later runs.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

missing_packages=()
command -v openssl >/dev/null 2>&1 || missing_packages+=(openssl)
command -v chromium >/dev/null 2>&1 || missing_packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing_packages+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing_packages+=(prometheus)
if [ "$(id -u)" = "0" ]; then
  command -v mkfs.btrfs >/dev/null 2>&1 || missing_packages+=(btrfs-progs)
  command -v mkfs.xfs >/dev/null 2>&1 || missing_packages+=(xfsprogs)
  command -v lvcreate >/dev/null 2>&1 || missing_packages+=(lvm2 thin-provisioning-tools)
fi
if [ "${#missing_packages[@]}" -gt 0 ]; then
  echo "--- installing ${missing_packages[*]} (TLS certificates; snapshot tests on loop filesystems; the console's browser test; promtool)"
  sudo_if_needed=""
  if [ "$(id -u)" != "0" ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing_packages[@]}"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "--- installing cargo-nextest (once; cached in $cargo_bin)"
  cargo install cargo-nextest --locked
fi

# A caller that already started the garage install (CI, to overlap it with clippy) passes its
# process id in BK_GARAGE_INSTALL_PID and its log in BK_GARAGE_INSTALL_LOG.
garage_pid="${BK_GARAGE_INSTALL_PID:-}"
garage_log="${BK_GARAGE_INSTALL_LOG:-$(mktemp)}"
if [ -z "$garage_pid" ] && ! command -v garage >/dev/null 2>&1; then
  echo "--- installing garage 2.5.0 for the S3 tests (once, ~14 min on 2 cores; cached in $cargo_bin; log: $garage_log)"
  cargo install garage@2.5.0 --locked >"$garage_log" 2>&1 &
  garage_pid=$!
fi

echo "--- building the tests"
cargo nextest run --workspace --locked --no-run

if [ -n "$garage_pid" ]; then
  echo "--- waiting for the garage install"
  while kill -0 "$garage_pid" 2>/dev/null; do sleep 5; done
  wait "$garage_pid" 2>/dev/null || true
  if ! command -v garage >/dev/null 2>&1; then
    tail -n 50 "$garage_log"
    echo "error: installing garage failed (full log: $garage_log)" >&2
    exit 1
  fi
fi

echo "--- tests"
cargo nextest run --workspace --locked "$@"
