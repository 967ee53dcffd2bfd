# Sourced by the bench scripts: writes a one-destination sipdispatch config to stdout.
#   sd_config LISTEN DEST SHARDS IO   (IO: auto | mmsg | uring)
# INVITEs go by call-load, everything else by hash-callid; no periodic summary line.
sd_config() {
  cat <<CFG
[listen]
udp = ["$1"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [ { uri = "sip:$2" } ]
[[routes]]
methods = ["INVITE"]
set = 1
algorithm = "call-load"
[[routes]]
set = 1
algorithm = "hash-callid"
[runtime]
shards = $3
io = "$4"
[log]
summary_interval = 0
CFG
}
