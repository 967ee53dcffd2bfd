#!/usr/bin/env bash
# Load generators compared in the same run: SIPp and sipload, each as uac → uas of itself on
# loopback with the built-in scenarios and 4 MiB socket buffers. For each rate the pair runs
# for a fixed time; a rate counts as sustained when both sides finish every call with none
# failed. Prints, per tool and rate: calls, failed, CPU seconds of uac+uas per 1000 calls, and
# the kernel's UDP RcvbufErrors during the run.
#   bench/sipload.sh [seconds] [sipp rates] [sipload rates]
#   defaults: 20 "10000 15000 20000 25000" "20000 30000 40000 50000"
#   SIPLOAD_UAS_ARGS / SIPLOAD_UAC_ARGS: extra sipload-only flags, e.g. "-cpus 0" / "-cpus 1",
#   or "-workers 2" on a machine with cores to spare for both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
sipp_rates=${2:-"10000 15000 20000 25000"}
sipload_rates=${3:-"20000 30000 40000 50000"}
cargo build --release --workspace -q
sipload=$PWD/target/release/sipload
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"

rcvbuf_errors() { awk '/^Udp:/ { if (++n == 2) print $6 }' /proc/net/snmp; }

one() { # $1 = tool binary, $2 = rate → prints a markdown row
  local exe=$1 rate=$2 m=$(( $2 * secs )) before after uas_extra=() uac_extra=()
  if [ "$(basename "$exe")" = sipload ]; then
    read -r -a uas_extra <<<"${SIPLOAD_UAS_ARGS:-}"
    read -r -a uac_extra <<<"${SIPLOAD_UAC_ARGS:-}"
  fi
  rm -f uas.csv uac.csv
  before=$(rcvbuf_errors)
  /usr/bin/time -f "%U %S" -o uas.time "$exe" -sn uas -i 127.0.0.1 -p 7501 -m "$m" -nostdin \
    -buff_size 4194304 -timeout $(( secs + 30 )) -trace_stat -fd 5 -stf uas.csv "${uas_extra[@]}" >/dev/null 2>&1 &
  local uas=$!
  sleep 0.5
  /usr/bin/time -f "%U %S" -o uac.time "$exe" -sn uac 127.0.0.1:7501 -i 127.0.0.1 -p 7502 -r "$rate" \
    -m "$m" -l $(( rate * 10 )) -nostdin -buff_size 4194304 -timeout $(( secs + 30 )) \
    -trace_stat -fd 5 -stf uac.csv "${uac_extra[@]}" >/dev/null 2>&1 || true
  wait $uas || true
  after=$(rcvbuf_errors)
  local col ok failed cpu
  col() { awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } END { print $c }' "$1"; }
  ok=$(col uac.csv 'SuccessfulCall(C)')
  failed=$(( $(col uac.csv 'FailedCall(C)') + $(col uas.csv 'FailedCall(C)') ))
  cpu=$(cat uac.time uas.time | awk '{ s += $1 + $2 } END { print s }')
  printf '| %s | %s | %s | %s | %.3f | %s |\n' "$(basename "$exe")" "$rate" "$ok" "$failed" \
    "$(echo "$cpu $ok" | awk '{ print ($2 > 0) ? $1 * 1000 / $2 : 0 }')" $(( after - before ))
}

echo "| tool | calls/s offered | successful calls | failed calls | CPU s per 1000 calls (uac+uas) | RcvbufErrors |"
echo "|---|---|---|---|---|---|"
for r in $sipp_rates; do one "$(command -v sipp)" "$r"; done
for r in $sipload_rates; do one "$sipload" "$r"; done
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r); $secs s per run"
