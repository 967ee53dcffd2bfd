#!/usr/bin/env bash
# Load generators compared in the same run: SIPp and sipload, each as uac → uas of itself on
# loopback with the built-in scenarios and 4 MiB socket buffers. For each rate the pair runs
# for a fixed time; a rate counts as sustained when the uac completes every call it was asked
# for and neither side failed one. Prints, per tool and rate: calls, failed, whether the rate was
# sustained, CPU seconds of uac+uas per 1000 calls, each side's user and system CPU seconds,
# and the kernel's UDP RcvbufErrors during the run.
#
# Every step is bounded in time: the uac gets `seconds + 5` s, then a soft quit (SIGUSR1) and
# 4 s, then SIGTERM and 2 s, then SIGKILL; once the uac is done the uas gets a soft quit at once
# (its open calls finish their 4 s timewait), then SIGTERM after 5 s, then SIGKILL. Both tools
# write their last CSV row on SIGUSR1 and SIGTERM, so a failed rate costs at most 18 s more than
# a clean one, never `-timeout`. The default sweep (8 rates, 20 s each) takes 3 to 5 minutes.
#   bench/sipload.sh [seconds] [sipp rates] [sipload rates]
#   defaults: 20 "10000 15000 20000 25000" "40000 50000 60000 70000"
#   SIPLOAD_UAS_ARGS / SIPLOAD_UAC_ARGS: extra sipload-only flags, e.g. "-cpus 0" / "-cpus 1",
#   or "-workers 2" on a machine with cores to spare for both sides.
#   NO_BUILD=1: use the binary already built.
#   THROUGH=sipdispatch: the uac calls sipdispatch (127.0.0.1:7500, SHARDS shards, default 1,
#   call-load for INVITEs, hash-callid for the rest), which forwards to the uas; its CPU is
#   added to the per-call figure and shown as a third user/sys pair.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/sd_config.sh
secs=${1:-20}
sipp_rates=${2:-"10000 15000 20000 25000"}
sipload_rates=${3:-"40000 50000 60000 70000"}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p sipload -p sipdispatch -q
sipload=${CARGO_TARGET_DIR:-$PWD/target}/release/sipload
sipdispatch=${CARGO_TARGET_DIR:-$PWD/target}/release/sipdispatch
through=${THROUGH:-}
sipp=$(command -v sipp || true)
tmp=$(mktemp -d)
cleanup() {
  for f in "$tmp"/*.pid; do
    [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"
sd_config 127.0.0.1:7500 127.0.0.1:7501 "${SHARDS:-1}" auto >sd.toml

rcvbuf_errors() { awk '/^Udp:/ { if (++n == 2) print $6 }' /proc/net/snmp; }

alive() { kill -0 "$1" 2>/dev/null; }

# Waits at most $2 seconds (tenths) for process $1 to exit; true if it did.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  ! alive "$1"
}

# Ends process $1 within bounds: $2 s to end by itself, then SIGUSR1 and $3 s, SIGTERM and 2 s,
# SIGKILL. Prints how it ended.
bounded_stop() {
  local pid=$1
  wait_gone "$pid" "$2" && { echo self; return; }
  kill -USR1 "$pid" 2>/dev/null || true
  wait_gone "$pid" "$3" && { echo usr1; return; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 2 && { echo term; return; }
  kill -KILL "$pid" 2>/dev/null || true
  echo kill
}

# Runs "$@" under /usr/bin/time in the background; the tool's own pid goes to $name.pid.
start() { # $1 = name, then the command
  local name=$1
  shift
  rm -f "$name.pid" "$name.time"
  /usr/bin/time -f "%U %S" -o "$name.time" sh -c 'echo $$ >"$0.pid"; exec "$@"' "$name" "$@" \
    >"$name.out" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$name.pid" ] && return; sleep 0.05; done
}

col() { # file column → the column of the last row, by name (0 if absent)
  [ -f "$1" ] || { echo 0; return; }
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
                          END { v = c ? $c : 0; print v + 0 }' "$1"
}

one() { # $1 = tool binary, $2 = rate → prints a markdown row
  local exe=$1 rate=$2 m=$(( $2 * secs )) before after uas_extra=() uac_extra=()
  if [ "$(basename "$exe")" = sipload ]; then
    read -r -a uas_extra <<<"${SIPLOAD_UAS_ARGS:-}"
    read -r -a uac_extra <<<"${SIPLOAD_UAC_ARGS:-}"
  fi
  rm -f uas.csv uac.csv
  before=$(rcvbuf_errors)
  start uas "$exe" -sn uas -i 127.0.0.1 -p 7501 -m "$m" -nostdin -buff_size 4194304 \
    -trace_stat -fd 5 -stf uas.csv "${uas_extra[@]}"
  local target=127.0.0.1:7501 times="uac.time uas.time"
  if [ "$through" = sipdispatch ]; then
    start sd "$sipdispatch" --config sd.toml
    target=127.0.0.1:7500
    times="uac.time uas.time sd.time"
  fi
  sleep 0.5
  start uac "$exe" -sn uac "$target" -i 127.0.0.1 -p 7502 -r "$rate" -m "$m" \
    -l $(( rate * 10 )) -nostdin -buff_size 4194304 -trace_stat -fd 5 -stf uac.csv "${uac_extra[@]}"
  local uac_end uas_end
  uac_end=$(bounded_stop "$(cat uac.pid)" $(( secs + 5 )) 4)
  uas_end=$(bounded_stop "$(cat uas.pid)" 0 5)
  if [ -f sd.pid ]; then
    kill -TERM "$(cat sd.pid)" 2>/dev/null || true
    wait_gone "$(cat sd.pid)" 5 || kill -KILL "$(cat sd.pid)" 2>/dev/null || true
  fi
  wait
  rm -f uac.pid uas.pid sd.pid
  after=$(rcvbuf_errors)
  local ok failed cpu sustained=no
  ok=$(col uac.csv 'SuccessfulCall(C)')
  failed=$(( $(col uac.csv 'FailedCall(C)') + $(col uas.csv 'FailedCall(C)') ))
  [ "$ok" -eq "$m" ] && [ "$failed" -eq 0 ] && sustained=yes
  cpu=$(for f in $times; do tail -n 1 "$f"; done | awk '{ s += $1 + $2 } END { print s }')
  local split
  split=$(for f in $times; do tail -n 1 "$f"; done | awk '{ printf "%s%s/%s", (NR > 1 ? " · " : ""), $1, $2 }')
  printf '| %s | %s | %s | %s | %s | %.3f | %s | %s | %s/%s |\n' "$(basename "$exe")" "$rate" "$ok" \
    "$failed" "$sustained" "$(echo "$cpu $ok" | awk '{ print ($2 > 0) ? $1 * 1000 / $2 : 0 }')" \
    "$split" $(( after - before )) "$uac_end" "$uas_end"
}

if [ "$through" = sipdispatch ]; then
  echo "uac → sipdispatch (${SHARDS:-1} shard(s)) → uas"
  echo
  echo "| tool | calls/s offered | successful calls | failed calls | sustained | CPU s per 1000 calls (uac+uas+sipdispatch) | CPU s user/sys: uac · uas · sipdispatch | RcvbufErrors | uac/uas ended by |"
else
  echo "| tool | calls/s offered | successful calls | failed calls | sustained | CPU s per 1000 calls (uac+uas) | CPU s user/sys: uac · uas | RcvbufErrors | uac/uas ended by |"
fi
echo "|---|---|---|---|---|---|---|---|---|"
if [ -n "$sipp" ]; then
  for r in $sipp_rates; do one "$sipp" "$r"; done
else
  echo "(sipp not installed: SIPp rows skipped)"
fi
for r in $sipload_rates; do one "$sipload" "$r"; done
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r); $secs s per run"
