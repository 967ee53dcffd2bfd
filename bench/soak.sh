#!/usr/bin/env bash
# Soak: SIPp uac → sipdispatch → two SIPp media servers (that answer keepalives) for a long run
# at a fixed call rate, with one media server killed and restarted and a reload of an edited
# list file in the middle. Reports failed calls (and when they happened), sipdispatch's resident
# memory at start, end and peak, and its tracker size against the calls in progress.
#   bench/soak.sh [seconds] [calls/s] [call seconds]
#   defaults: 600 1600 2 — kill at 1/5 of the run, restart at 3/10, reload at 1/2.
#   EVENTS=0 leaves out the kill, restart and reload (to measure the capacity first).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
rate=${2:-1600}
hold=${3:-2}
cargo build --release -q
bin=$PWD/target/release/sipdispatch
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
A=$(port); B=$(port); LB=$(port); HTTP=$(port)

cat > media.xml <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media server">
  <recv request="OPTIONS" optional="true" next="keepalive"/>
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="keepalive"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="end"/>
</scenario>
XML

printf '1 sip:127.0.0.1:%s 0 0 duid=a\n1 sip:127.0.0.1:%s 0 0 duid=b\n' "$A" "$B" > dispatcher.list
cat > lb.toml <<TOML
[listen]
udp = ["127.0.0.1:$LB"]
[destinations]
list_file = "dispatcher.list"
[[routes]]
set = 1
algorithm = "call-load"
failover = { codes = ["5xx"], timeout = "1s", mark = "inactive" }
[runtime]
shards = 2
[health]
ping_interval = "1s"
ping_timeout = "1s"
probing_mode = 1
probing_threshold = 2
inactive_threshold = 2
[control]
listen = "127.0.0.1:$HTTP"
[log]
summary_interval = 60
TOML

sipp -sf media.xml -i 127.0.0.1 -p "$A" -nostdin -buff_size 4194304 >/dev/null 2>&1 &
pa=$!
sipp -sf media.xml -i 127.0.0.1 -p "$B" -nostdin -buff_size 4194304 >/dev/null 2>&1 &
pb=$!
"$bin" --config lb.toml 2> lb.log &
lb=$!
sleep 1
calls=$(( rate * secs ))
sipp -sn uac "127.0.0.1:$LB" -i 127.0.0.1 -r "$rate" -m "$calls" -d $(( hold * 1000 )) -l $(( rate * (hold + 5) * 2 )) \
  -nostdin -buff_size 4194304 -timeout $(( secs + 120 )) -recv_timeout 10000 -trace_stat -fd 10 -stf uac.csv \
  -trace_err >/dev/null 2>&1 &
uac=$!

rss() { awk '/VmRSS/ { print $2 }' "/proc/$lb/status"; }
metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1 ~ "^"m { s += $2 } END { print s + 0 }'; }
start_rss=$(rss); peak=$start_rss
echo "t_s rss_kib tracked_calls calls_in_progress(sipp) failed_so_far"
t=0
while kill -0 $uac 2>/dev/null; do
  sleep 10; t=$(( t + 10 ))
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  if [ "${EVENTS:-1}" = 1 ] && [ $t -eq $(( secs / 5 / 10 * 10 )) ]; then kill -9 $pb; echo "# t=$t: killed media server b"; fi
  if [ "${EVENTS:-1}" = 1 ] && [ $t -eq $(( secs * 3 / 10 / 10 * 10 )) ]; then
    sipp -sf media.xml -i 127.0.0.1 -p "$B" -nostdin -buff_size 4194304 >/dev/null 2>&1 & pb=$!
    echo "# t=$t: restarted media server b"
  fi
  if [ "${EVENTS:-1}" = 1 ] && [ $t -eq $(( secs / 2 / 10 * 10 )) ]; then
    printf '1 sip:127.0.0.1:%s 0 5 duid=a\n1 sip:127.0.0.1:%s 0 5 duid=b\n' "$A" "$B" > dispatcher.list
    "$bin" ctl --endpoint "127.0.0.1:$HTTP" dispatcher.reload >/dev/null && echo "# t=$t: reloaded an edited list"
  fi
  cur=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "CurrentCall") c = i } END { print $c }' uac.csv 2>/dev/null || echo 0)
  failed=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "FailedCall(C)") c = i } END { print $c }' uac.csv 2>/dev/null || echo 0)
  echo "$t $r $(metric sipdispatch_shard_tracked_calls) $cur $failed"
done
wait $uac || true
end_rss=$(rss)
col() { awk -F';' -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } END { print $c }' uac.csv; }
echo
echo "calls: $(col 'SuccessfulCall(C)') successful, $(col 'FailedCall(C)') failed of $calls at $rate/s ($hold s each) over $secs s"
echo "rss KiB: start $start_rss, end $end_rss, peak $peak"
echo "tracked calls at the end (lingering ones included, they leave 32 s after their BYE): $(metric sipdispatch_shard_tracked_calls)"
echo "failovers: $(metric sipdispatch_failovers_total); reloads: $(metric sipdispatch_reloads_total)"
grep -E "destination .*->" lb.log | sed 's/^.*INFO //' | head -20
ls ./*errors.log >/dev/null 2>&1 && { echo "uac errors (first of them):"; head -c 400 ./*errors.log; echo; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r)"
