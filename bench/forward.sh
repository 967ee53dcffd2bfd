#!/usr/bin/env bash
# Forwarding benchmark: sipdispatch (each I/O backend) against `sipload relay`, a no-parsing
# recvmmsg→sendmmsg forwarder (the machine's ceiling), measured in the same run.
# The forwarder is pinned to CPU 0; the blaster and the sink share CPU 1.
#   bench/forward.sh [seconds] [rounds]   (defaults 10 and 1)
# Prints forwarded messages/s and the forwarder's CPU µs per forwarded message, with ratios.
# With several rounds the three forwarders take turns (relay, mmsg, io_uring, relay, …) and
# the table gives medians, each ratio taken against the relay of the same round: on a shared
# machine whose speed drifts, that is the figure to trust.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-1}
cargo build --release --workspace -q
bin=target/release
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

config() { # $1 = io backend
  cat > "$tmp/fwd.toml" <<CFG
[listen]
udp = ["127.0.0.1:7000"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [ { uri = "sip:127.0.0.1:7100" } ]
[[routes]]
set = 1
algorithm = "round-robin"
[runtime]
shards = 1
cpus = [0]
io = "$1"
[log]
summary_interval = 0
CFG
}

run() { # $1 = name, rest = forwarder command
  local name=$1; shift
  $bin/sipload sink --listen 127.0.0.1:7100 --cpu 1 --duration $((secs + 10)) --idle 2 --json > "$tmp/sink.json" &
  local sink=$!
  "$@" > "$tmp/$name.log" 2>&1 &
  local fwd=$!
  sleep 1
  local t0; t0=$(cpu_ticks $fwd)
  $bin/sipload blast --target 127.0.0.1:7000 --cpu 1 --duration "$secs" --json > "$tmp/blast.json"
  sleep 1
  local t1; t1=$(cpu_ticks $fwd)
  kill $fwd 2>/dev/null || true; wait $fwd 2>/dev/null || true
  wait $sink || true
  local got sent rate drops
  got=$(sed -E 's/.*"count":([0-9]+).*/\1/' "$tmp/sink.json")
  rate=$(sed -E 's/.*"rate":([0-9]+).*/\1/' "$tmp/sink.json")
  drops=$(sed -E 's/.*"rcvbuf_errors":([0-9]+).*/\1/' "$tmp/sink.json")
  sent=$(sed -E 's/.*"count":([0-9]+).*/\1/' "$tmp/blast.json")
  local us; us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$got" 'BEGIN{ if (n>0) printf "%.2f", t / hz * 1e6 / n; else print "nan" }')
  printf '%s %s %s %s %s %s\n' "$round" "$name" "$rate" "$us" "$sent" "$got" >> "$tmp/results"
  echo "$name: sent $sent, forwarded $got ($rate/s), forwarder CPU $us µs/msg, RcvbufErrors +$drops" >&2
}

for round in $(seq "$rounds"); do
  run relay $bin/sipload relay --listen 127.0.0.1:7000 --to 127.0.0.1:7100 --cpu 0 --duration $((secs + 10))
  config mmsg
  run sipdispatch-mmsg $bin/sipdispatch --config "$tmp/fwd.toml"
  config uring
  run sipdispatch-uring $bin/sipdispatch --config "$tmp/fwd.toml"
done

echo
[ "$rounds" -gt 1 ] && echo "medians of $rounds rounds; ratios against the relay of the same round"
echo "| forwarder | forwarded msgs/s | CPU µs per forwarded msg | vs relay: rate | vs relay: CPU |"
echo "|---|---|---|---|---|"
awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $2 == "relay" { r[$1] = $3; c[$1] = $4 }
  {
    if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 }
    rate[$2] = rate[$2] " " $3; cpu[$2] = cpu[$2] " " $4
    rr[$2] = rr[$2] " " 100 * $3 / r[$1]; cr[$2] = cr[$2] " " $4 / c[$1]
  }
  END {
    for (i = 1; i <= k; i++) { n = order[i]
      printf "| %s | %d | %.2f | %.0f %% | %.2f× |\n", n, median(rate[n]), median(cpu[n]), median(rr[n]), median(cr[n]) }
  }' "$tmp/results"
if [ "$rounds" -gt 1 ]; then
  echo
  echo "each round (rate, CPU against that round's relay):"
  awk '$2 == "relay" { r = $3; c = $4; next } { printf "  round %d %s: %.0f %%, %.2f×\n", $1, $2, 100 * $3 / r, $4 / c }' "$tmp/results"
fi
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r); $secs s per run"
