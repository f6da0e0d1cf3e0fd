#!/usr/bin/env bash
# Runs Siaga's whole test suite. On a Debian machine as root it first
# installs the packages the tests use (snmpd, snmp, snmptrapd, nftables,
# iproute2, fping, iputils-ping; lldpd for discovery; poppler-utils for reading reports' PDFs; for
# the package tests systemd, adduser, dpkg-dev, binutils; chromium and
# chromium-driver for the web console's browser test; postgresql for the
# store's tests on PostgreSQL, which start clusters of their own); then it builds
# every binary and runs every test.
# Safe to run again. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(snmpd snmp snmptrapd nftables iproute2 fping iputils-ping poppler-utils
  systemd adduser dpkg-dev binutils chromium chromium-driver prometheus lldpd
  postgresql)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The lab starts its own snmpd/snmptrapd/lldpd inside network namespaces,
# the Prometheus test its own Prometheus, the store's tests their own
# PostgreSQL clusters; the system services the packages may have started are
# not needed (a host lldpd would also talk LLDP into the lab's links).
for svc in snmpd snmptrapd prometheus lldpd postgresql; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  elif [ -x "/etc/init.d/$svc" ]; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done

# A one-off run gains nothing from incremental state but its disk space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --bins

# The fuzz targets (fuzz/, a crate of its own built with libFuzzer's
# coverage on stable Rust, in its own target directory) build at low
# priority while the tests run: those mostly wait on processes and the lab.
fuzz_log="$(mktemp)"
FUZZ_PROFILE=smoke FUZZ_BUILD_ONLY=1 nice -n 19 fuzz/run.sh all >"$fuzz_log" 2>&1 &
fuzz_build=$!
trap 'kill "$fuzz_build" 2>/dev/null || true' EXIT

test_log="$(mktemp)"
rc=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$test_log" || rc=$?

if ! wait "$fuzz_build"; then
  cat "$fuzz_log" >&2
  echo "the fuzz targets did not build" >&2
  rc=1
fi
trap - EXIT
# Then each target for 25 s; a crash fails the run. `fuzz/run.sh all
# -runs=10000000` runs 10 million inputs per target.
if [ "$rc" -eq 0 ]; then
  FUZZ_PROFILE=smoke fuzz/run.sh all -max_total_time=25 || rc=$?
fi

# The test runner's totals last, after the fuzzers' summary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
  END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$test_log"
rm -f "$test_log" "$fuzz_log"
exit "$rc"
