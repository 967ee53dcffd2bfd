#!/usr/bin/env bash
# User-space instructions per forwarded message, counted by callgrind (repeatable on a noisy
# machine): a fixed SIPp run (uac → sipdispatch → uas) twice, N calls at 200 calls/s and 2N at
# 400 calls/s, so both last as long; the difference divided by the extra forwarded messages
# removes start-up, shutdown and the work that goes with time rather than traffic (the tracker
# sweep, timers).
#   bench/instructions.sh [calls] [io]      (defaults: 2000 mmsg)
# KEEP=path keeps the larger run's callgrind output as path, and each run's as path.CALLS
# (compare the two with callgrind_annotate to see what grows with the traffic).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/sd_config.sh
n=${1:-2000}
io=${2:-mmsg}
for tool in sipp valgrind; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is not installed" >&2; exit 1; }
done
cargo build --release -q
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$tmp/cg.out" "$KEEP"; rm -rf "$tmp"' EXIT
sd_config 127.0.0.1:7200 127.0.0.1:7201 1 "$io" > "$tmp/cfg.toml"

measure() { # $1 = calls, $2 = calls/s → prints "instructions forwarded"
  local calls=$1 rate=$2
  sipp -sn uas -i 127.0.0.1 -p 7201 -nostdin -bg -trace_stat -stf "$tmp/uas.csv" >/dev/null 2>&1 || true
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "${CARGO_TARGET_DIR:-target}/release/sipdispatch" --config "$tmp/cfg.toml" 2> "$tmp/vg.log" &
  local vg=$!
  for _ in $(seq 50); do grep -q "sipdispatch running" "$tmp/vg.log" && break; sleep 0.2; done
  sipp -sn uac 127.0.0.1:7200 -i 127.0.0.1 -p 7202 -m "$calls" -r "$rate" -nostdin -timeout 120s >/dev/null 2>&1
  kill -INT $vg; wait $vg || true
  if [ -n "${KEEP:-}" ]; then cp "$tmp/cg.out" "$KEEP.$calls"; fi
  pkill -f "sipp -sn uas -i 127.0.0.1 -p 7201" || true
  local ir fwd
  ir=$(sed -n 's/^summary: //p' "$tmp/cg.out")
  fwd=$(sed -n 's/.*shard 0 final: rx=[0-9]* fwd_req=\([0-9]*\) fwd_resp=\([0-9]*\).*/\1 \2/p' "$tmp/vg.log" | awk '{print $1 + $2}')
  echo "$ir $fwd"
}

read -r ir1 f1 < <(measure "$n" 200)
read -r ir2 f2 < <(measure $((2 * n)) 400)
per=$(( (ir2 - ir1) / (f2 - f1) ))
echo "calls $n: $ir1 instructions, $f1 forwarded; calls $((2 * n)): $ir2 instructions, $f2 forwarded"
echo "user-space instructions per forwarded message ($io backend): $per"
