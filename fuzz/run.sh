#!/usr/bin/env bash
# Builds Siaga's fuzz targets with libFuzzer's coverage instrumentation on
# stable Rust (the flags cargo-fuzz passes; cargo-fuzz itself is not needed)
# and runs them.
#
#   FUZZ_PROFILE=smoke fuzz/run.sh all -max_total_time=25   # what CI runs
#   fuzz/run.sh all -runs=10000000          # 10 million inputs per target
#   fuzz/run.sh snmp_message                # one target until stopped
#
# FUZZ_BUILD_ONLY=1 builds the targets and runs none.
# Arguments after the target go to libFuzzer. Each target starts from the
# committed seeds (fuzz/seeds/TARGET) and keeps what it finds in
# fuzz/corpus/TARGET; a crash leaves its input in fuzz/artifacts/TARGET/
# and fails the run. The last lines of each run (inputs run, peak RSS)
# are printed as a summary.
set -euo pipefail
cd "$(dirname "$0")"

all=(snmp_message agent_command uplink_batch config_toml)
which="${1:-all}"
shift || true
case "$which" in
  all) targets=("${all[@]}") ;;
  snmp_message | agent_command | uplink_batch | config_toml) targets=("$which") ;;
  *)
    echo "usage: fuzz/run.sh all|${all[*]// /|} [libFuzzer options]" >&2
    exit 64
    ;;
esac

host="$(rustc -vV | sed -n 's/^host: //p')"
# An explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
profile="${FUZZ_PROFILE:-release}"
cargo build --profile "$profile" --locked --target "$host" --bins
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
  exit 0
fi
bin="$CARGO_TARGET_DIR/$host/$profile"

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  log="$(mktemp)"
  echo "== $t" >&2
  set +e
  "$bin/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$@" 2>&1 | tee "$log" |
    grep -E '^(#[0-9]+[[:space:]]+(pulse|DONE)|==|SUMMARY|Done)' >&2
  rc=${PIPESTATUS[0]}
  set -e
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
  if [ "$rc" -ne 0 ]; then
    failed=1
    tail -40 "$log" >&2
    summary+=("$t: FAILED (exit $rc) after ${runs:-?} inputs; input kept in fuzz/artifacts/$t/")
  else
    summary+=("$t: ${runs:-?} inputs, 0 crashes, peak RSS ${rss:-?} MB")
  fi
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit "$failed"
