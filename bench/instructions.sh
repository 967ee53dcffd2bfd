#!/usr/bin/env bash
# User-space instructions per forwarded message, counted by callgrind (repeatable on a noisy
# machine): a fixed SIPp run (uac → sipdispatch → uas) twice, N calls at 200 calls/s and 2N at
# 400 calls/s, so both last as long; the difference divided by the extra forwarded messages
# removes start-up, shutdown and the work that goes with time rather than traffic (the tracker
# sweep, timers).
#   bench/instructions.sh [calls] [io]      (defaults: 2000 mmsg)
# It also prints the handling of one datagram (scan, rules, routing, rewrite) and the scanner
# alone, per forwarded message: these repeat to a few instructions between runs.
# KEEP=path keeps the larger run's callgrind output as path, and each run's as path.CALLS
# (compare the two with callgrind_annotate to see what grows with the traffic). VG_OPTS adds
# callgrind options, e.g. VG_OPTS=--dump-instr=yes for counts per instruction. PORT=p uses ports
# p to p+2 (default 7200), so two checkouts can measure side by side. UAC=127.0.0.2 sends the
# calls from that address and makes it the only upstream, as an SBC is in production: the uas's
# responses then come from a destination outside the upstream networks (by default everything
# on 127.0.0.0/8 is upstream). RR=1 has the INVITE route record-route, as call-load needs to
# see the BYE, and runs SIPp's call as bench/sipp/rr_uac.xml and rr_uas.xml (the uas echoes the
# Record-Route, the ACK and BYE carry it as their Route; SIPp's built-in scenarios ignore it).
# SHARDS=2 runs two shards: the one socket's traffic is steered by Call-ID and half of it handed
# to the other shard (the handling figure then covers the receiving shard's part only).
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
p=${PORT:-7200}
sd_config 127.0.0.1:$p 127.0.0.1:$((p + 1)) "${SHARDS:-1}" "$io" > "$tmp/cfg.toml"
uac=${UAC:-127.0.0.1}
if [ "$uac" != 127.0.0.1 ]; then
  printf '[trust]\nupstreams = ["%s/32"]\n' "$uac" >> "$tmp/cfg.toml"
fi
uac_sf=(-sn uac) uas_sf=(-sn uas)
if [ -n "${RR:-}" ]; then
  sed -i 's/^algorithm = "call-load"$/&\nrecord_route = true/' "$tmp/cfg.toml"
  grep -q '^record_route = true' "$tmp/cfg.toml"
  uac_sf=(-sf bench/sipp/rr_uac.xml) uas_sf=(-sf bench/sipp/rr_uas.xml)
fi

measure() { # $1 = calls, $2 = calls/s → prints "instructions forwarded"
  local calls=$1 rate=$2
  sipp "${uas_sf[@]}" -i 127.0.0.1 -p $((p + 1)) -nostdin -bg -trace_stat -stf "$tmp/uas.csv" >/dev/null 2>&1 || true
  valgrind --tool=callgrind ${VG_OPTS:-} --callgrind-out-file="$tmp/cg.out" "${CARGO_TARGET_DIR:-target}/release/sipdispatch" --config "$tmp/cfg.toml" 2> "$tmp/vg.log" &
  local vg=$!
  for _ in $(seq 50); do grep -q "sipdispatch running" "$tmp/vg.log" && break; sleep 0.2; done
  sipp "${uac_sf[@]}" 127.0.0.1:$p -i "$uac" -p $((p + 2)) -m "$calls" -r "$rate" -nostdin -timeout 120s >/dev/null 2>&1
  kill -INT $vg; wait $vg || true
  if [ -n "${KEEP:-}" ]; then cp "$tmp/cg.out" "$KEEP.$calls"; fi
  pkill -f "sipp ${uas_sf[*]} -i 127.0.0.1 -p $((p + 1))" || true
  local ir fwd
  ir=$(sed -n 's/^summary: //p' "$tmp/cg.out")
  fwd=$(sed -n 's/.*shard [0-9]* final: rx=[0-9]* fwd_req=\([0-9]*\) fwd_resp=\([0-9]*\).*/\1 \2/p' "$tmp/vg.log" | awk '{s += $1 + $2} END {print s}')
  echo "$ir $fwd $(inclusive 'sipdispatch::io::ShardIo<H>::dispatch') $(inclusive 'sipdispatch::sip::scan::scan_forwarding')"
}

inclusive() { # callgrind's inclusive count of function $1 in the last run
  # Inlining splits a function's lines by source file; the entry's part holds the whole
  # inclusive count, so the largest matching line is the one. Annotated from / because
  # callgrind_annotate groups the files differently when run inside the repository.
  (cd / && callgrind_annotate --inclusive=yes "$tmp/cg.out" 2>/dev/null) |
    awk -v f="$1" 'index($0 " ", ":" f " ") { gsub(",", "", $1); if ($1 + 0 > m) m = $1 + 0 }
      END { print m + 0 }'
}

read -r ir1 f1 h1 s1 < <(measure "$n" 200)
read -r ir2 f2 h2 s2 < <(measure $((2 * n)) 400)
per=$(( (ir2 - ir1) / (f2 - f1) ))
echo "calls $n: $ir1 instructions, $f1 forwarded; calls $((2 * n)): $ir2 instructions, $f2 forwarded"
echo "user-space instructions per forwarded message ($io backend): $per"
# The handling of each datagram (scan, rules, routing, rewrite, queueing the send) repeats to a
# few instructions between runs, unlike the total, whose receive loop and polls vary with how
# the traffic falls into batches: the figure to follow a change smaller than the total's noise.
echo "of which the handling of a datagram: $(( (h2 - h1) / (f2 - f1) )), the scanner: $(( (s2 - s1) / (f2 - f1) ))"
