#!/usr/bin/env bash
# The README's first-screen demo: two sipload uas backends (127.0.0.1:5071 and :5072, the
# destinations of examples/dispatcher.list), sipdispatch on examples/sipdispatch.toml
# (listening on 127.0.0.1:5060) and a sipload uac calling through it for a few seconds; then
# the calls each backend answered and the rates. Everything runs on loopback and stops by
# itself (every process has a timeout).
#   bench/demo.sh [seconds] [calls per second] [call length ms]   defaults: 5 500 1000
#   PROFILE=debug bench/demo.sh                      use debug builds (faster to build)
#   BIN_DIR=dir bench/demo.sh                        use the sipload and sipdispatch in dir, no build
# Exits 1 when a call failed or a backend got none (loadgen/tests/demo.rs runs it that way).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rate=${2:-500}
hold=${3:-1000}
profile=${PROFILE:-release}
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
elif [ "$profile" = release ]; then
  cargo build --release --workspace -q
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release
else
  cargo build --workspace -q
  bin=${CARGO_TARGET_DIR:-$PWD/target}/debug
fi
config=$PWD/examples/sipdispatch.toml
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"

for port in 5071 5072; do
  "$bin/sipload" -sn uas -i 127.0.0.1 -p "$port" -nostdin -buff_size 4194304 \
    -timeout $(( secs + hold / 1000 + 40 )) -trace_stat -fd 1 -stf "backend-$port.csv" >"backend-$port.out" 2>&1 &
  pids+=($!)
done
"$bin/sipdispatch" --config "$config" >sipdispatch.log 2>&1 &
pids+=($!)
sleep 1
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "a process did not start:"; cat ./*.out sipdispatch.log; exit 1; }
done

echo "sipload uac -> sipdispatch 127.0.0.1:5060 -> sipload uas 127.0.0.1:5071 + :5072"
echo "$rate calls/s for $secs s, each call held $hold ms (the example routes INVITEs by call-load) ..."
"$bin/sipload" -sn uac 127.0.0.1:5060 -i 127.0.0.1 -p 5070 -r "$rate" -m $(( rate * secs )) -d "$hold" \
  -nostdin -buff_size 4194304 -trace_stat -fd 1 -stf uac.csv -summary uac.json >uac.out 2>&1 &
uac=$!
# Bounded: a process that has not ended in time is asked to stop (SIGTERM writes its last row).
wait_bounded() { # pid seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
wait_bounded "$uac" $(( secs + hold / 1000 + 15 ))

# The backends finish their open calls (4 s of timewait) and write their last rows.
for p in "${pids[@]:0:2}"; do kill -USR1 "$p" 2>/dev/null || true; done
for p in "${pids[@]:0:2}"; do wait_bounded "$p" 8; done

col() { # file column → the column of the last row, by name
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
                          END { print $c + 0 }' "$1"
}
json() { # key → the first number under that key in the uac's summary (RTD 1 comes first)
  grep -o "\"$1\":[0-9.]*" uac.json | head -1 | cut -d: -f2
}
elapsed=$(json elapsed_s)
echo
printf '%-24s %8s %11s %7s %7s %9s\n' "" calls successful failed share "calls/s"
total=$(col uac.csv 'OutgoingCall(C)')
status=0
[ "$(col uac.csv 'FailedCall(C)')" = 0 ] && [ "$(col uac.csv 'SuccessfulCall(C)')" = "$total" ] || status=1
for port in 5071 5072; do
  f=backend-$port.csv
  n=$(col "$f" 'IncomingCall(C)')
  [ "$n" -gt 0 ] && [ "$(col "$f" 'FailedCall(C)')" = 0 ] || status=1
  printf '%-24s %8s %11s %7s %6s%% %9s\n' "backend 127.0.0.1:$port" "$n" "$(col "$f" 'SuccessfulCall(C)')" \
    "$(col "$f" 'FailedCall(C)')" "$(awk -v n="$n" -v t="$total" 'BEGIN { printf "%.0f", t ? 100 * n / t : 0 }')" \
    "$(awk -v n="$n" -v e="$elapsed" 'BEGIN { printf "%.1f", e ? n / e : 0 }')"
done
printf '%-24s %8s %11s %7s %7s %9s\n' "uac (via sipdispatch)" "$total" "$(col uac.csv 'SuccessfulCall(C)')" \
  "$(col uac.csv 'FailedCall(C)')" "" "$(json rate_per_s)"
echo
echo "over $elapsed s; uac response time (INVITE -> 200 through sipdispatch): p50 $(json p50) us, p99 $(json p99) us"
echo "kernel drops at the uac socket: $(json socket_drops)"
exit $status
