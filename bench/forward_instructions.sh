#!/usr/bin/env bash
# Instructions per forwarded message of one shard's handling (scan, rules, routing, rewrite),
# counted by callgrind: examples/forward_loop.rs runs N and 2N SIPp-style calls (six messages
# each) through a shard in process; the difference over the extra 6N messages removes start-up.
# No sockets, polls or batching: the figure follows "the handling of a datagram" of
# bench/instructions.sh in a few seconds, without SIPp.
#   bench/forward_instructions.sh [calls]      (default 1000)
# KEEP=path keeps both callgrind outputs as path.N and path.2N (callgrind_annotate them);
# VG_OPTS adds callgrind options (VG_OPTS=--dump-instr=yes for counts per instruction).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release -q --example forward_loop
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/forward_loop
count() {
  local out=${KEEP:+$KEEP.$1}
  valgrind --tool=callgrind ${VG_OPTS:-} --toggle-collect='forward_loop::run' \
    --callgrind-out-file="${out:-/dev/null}" "$bin" "$1" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
a=$(count "$n")
b=$(count $((2 * n)))
echo "per message (handling, in process): $(( (b - a) / (6 * n) ))"
