#!/usr/bin/env bash
# Siaga on this machine: a collector (embedded store) and an agent probing
# loopback targets (127.0.0.1, 127.0.0.2). Run as root (ICMP needs raw
# sockets). Creates ./demo on the first run and reuses it afterwards; stays in
# the foreground and stops both on Ctrl-C.
#
#   SIAGA_DEMO_DIR     where to keep everything (default: ./demo)
#   SIAGA_DEMO_LISTEN  the collector's address (default: 127.0.0.1:7443)
set -euo pipefail
cd "$(dirname "$0")/.."

demo=${SIAGA_DEMO_DIR:-demo}
listen=${SIAGA_DEMO_LISTEN:-127.0.0.1:7443}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release

cargo build --release -p siaga-collector -p siaga-agent -p siaga-cli --bins

if [ ! -f "$demo/collector/collector.toml" ]; then
  "$bin/siaga-collector" init --dir "$demo/collector" --listen "$listen"
  "$bin/siaga-collector" enroll agent --dir "$demo/collector" --opd demo --out "$demo/agent"
  "$bin/siaga-collector" enroll user --dir "$demo/collector" --name admin --role admin --out "$demo/user"
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
stopping=0
trap 'stopping=1' INT TERM
trap cleanup EXIT

"$bin/siaga-collector" serve --config "$demo/collector/collector.toml" &
pids+=($!)
siaga=("$bin/siaga" --config "$demo/user/siaga.toml")
for _ in $(seq 1 100); do
  if "${siaga[@]}" agents >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "the collector did not start" >&2; exit 1; fi
  sleep 0.3
done
"$bin/siaga-agent" run --config "$demo/agent/agent.toml" &
pids+=($!)

cat <<MSG

Siaga is running: collector on $listen, agent for OPD "demo" probing
the devices in $demo/collector/inventory.toml. In another terminal:

  $bin/siaga --config $demo/user/siaga.toml devices
  $bin/siaga --config $demo/user/siaga.toml agents
  $bin/siaga --config $demo/user/siaga.toml history demo-core --since 10m

Ctrl-C stops both.
MSG
# Return on Ctrl-C or as soon as either process ends; stop the other.
wait -n || true
if [ "$stopping" = 1 ]; then
  echo "stopping ..."
  cleanup
  exit 0
fi
echo "a Siaga process exited; see the messages above" >&2
exit 1
