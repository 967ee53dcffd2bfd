#!/usr/bin/env bash
# Instructions per scan, counted by callgrind (repeatable on a noisy machine): each message of
# bench/messages.rs scanned 1 000 and 2 000 times by examples/scan_loop.rs; the difference over
# 1 000 removes start-up.
#   bench/scan_instructions.sh [message...]     (default: the whole set)
#   bench/scan_instructions.sh sipp             (a SIPp call, scanned as the data plane does)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --example scan_loop
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/scan_loop
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
  sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'; }
sipp="sipp-INVITE sipp-180 sipp-200 sipp-ACK sipp-BYE sipp-200-BYE"
for m in "${@:-INVITE 100 180 200+SDP ACK BYE OPTIONS REGISTER}"; do
  [ "$m" = sipp ] && m=$sipp
  for one in $m; do
    a=$(count "$one" 1000)
    b=$(count "$one" 2000)
    echo "$one $(( (b - a) / 1000 ))"
  done
done
