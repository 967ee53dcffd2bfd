//! SIPp's command line (`sipload [options] remote_host[:port]`), with SIPp's meanings, units and
//! defaults. A flag sipload does not implement is refused by name, never ignored.

use std::collections::HashMap;
use std::time::Duration;

/// The receive buffer without `-buff_size`: 4 MiB (forced past `rmem_max` when allowed).
pub const DEFAULT_RCVBUF: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct Options {
    pub remote: Option<String>,
    pub sn: Option<String>,
    pub sf: Option<String>,
    pub sd: Option<String>,
    pub rate: f64,
    pub rate_period: Duration,
    pub limit: Option<u64>,
    pub max_calls: Option<u64>,
    pub pause_default: Duration,
    pub local_ip: Option<String>,
    pub local_port: Option<u16>,
    pub service: String,
    pub trace_stat: bool,
    pub stat_file: Option<String>,
    pub stat_period: Duration,
    pub stat_delimiter: String,
    pub trace_err: bool,
    pub trace_msg: bool,
    pub timeout: Option<Duration>,
    pub recv_timeout: Option<Duration>,
    pub no_retrans: bool,
    pub max_invite_retrans: u32,
    pub max_non_invite_retrans: u32,
    pub t2: Duration,
    pub keys: HashMap<String, String>,
    pub base_cseq: u32,
    pub cid_str: String,
    pub buff_size: usize,
    /// The receive buffer: `-buff_size` when given, else [`DEFAULT_RCVBUF`] (SIPp's 65 535
    /// overflows at sipload's rates).
    pub rcvbuf: usize,
    pub media_ip: Option<String>,
    pub media_port: u16,
    pub behaviors: super::call::Behaviors,
    /// `-set name value`: run-wide variables.
    pub set: Vec<(String, String)>,
    pub trace_logs: bool,
    pub auto_answer: bool,
    pub users: Option<u64>,
    pub rate_increase: f64,
    /// `-rate_interval`; `None`: the `-fd` period.
    pub rate_interval: Option<Duration>,
    pub rate_max: f64,
    pub no_rate_quit: bool,
    pub background: bool,
    pub trace_rtt: bool,
    /// `-trace_screen`: the final screens to `<scenario>_<pid>_screen.log` (or `-screen_file`).
    pub trace_screen: bool,
    pub screen_file: Option<String>,
    pub rtt_freq: usize,
    /// `-f`: the live screen's refresh period.
    pub screen_period: Duration,
    /// `-summary FILE` (sipload's own): JSON with latency percentiles, written at exit.
    pub summary: Option<String>,
    /// `-workers N|auto` (sipload's own): worker threads, each with its own socket.
    pub workers: usize,
    /// `-inf FILE` (repeatable): injection files for `[fieldN]`.
    pub inf: Vec<String>,
    /// `-timeout_error`: reaching `-timeout` is a fatal error (exit 255).
    pub timeout_error: bool,
    pub deadcall_wait: Duration,
    /// `-lost PCT`.
    pub lost: f64,
    /// `-bind_local`: bind the socket to the local IP even without `-i`.
    pub bind_local: bool,
    /// `-rsa host:port`: where requests go, `[remote_ip]` staying the remote host's.
    pub rsa: Option<String>,
    /// `-cpus 0,1,...` (sipload's own): pin worker k to the k-th CPU listed.
    pub cpus: Vec<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            remote: None,
            sn: None,
            sf: None,
            sd: None,
            rate: 10.0,
            rate_period: Duration::from_secs(1),
            limit: None,
            max_calls: None,
            pause_default: Duration::ZERO,
            local_ip: None,
            local_port: None,
            service: "service".into(),
            trace_stat: false,
            stat_file: None,
            stat_period: Duration::from_secs(60),
            stat_delimiter: ";".into(),
            trace_err: false,
            trace_msg: false,
            timeout: None,
            recv_timeout: None,
            no_retrans: false,
            max_invite_retrans: 5,
            max_non_invite_retrans: 9,
            t2: Duration::from_millis(4000),
            keys: HashMap::new(),
            base_cseq: 1,
            cid_str: "%u-%p@%s".into(),
            buff_size: 65_535,
            rcvbuf: DEFAULT_RCVBUF,
            media_ip: None,
            media_port: 6000,
            behaviors: super::call::Behaviors::ALL,
            set: Vec::new(),
            trace_logs: false,
            auto_answer: false,
            users: None,
            rate_increase: 0.0,
            rate_interval: None,
            rate_max: 0.0,
            no_rate_quit: false,
            background: false,
            trace_rtt: false,
            trace_screen: false,
            screen_file: None,
            rtt_freq: 200,
            screen_period: Duration::from_secs(1),
            summary: None,
            workers: 1,
            inf: Vec::new(),
            timeout_error: false,
            deadcall_wait: Duration::from_millis(33_000),
            lost: 0.0,
            rsa: None,
            bind_local: false,
            cpus: Vec::new(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    /// `-v` / `-h`: print and exit 99, as SIPp does.
    Info(String),
}

/// SIPp's time values: a number in `unit_ms` units, or with an `ms`/`s`/`m`/`h` suffix.
fn time(v: &str, unit_ms: u64) -> Option<Duration> {
    let (num, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (v, unit_ms)
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then(|| Duration::from_micros((n * mult as f64 * 1000.0) as u64))
}

const ACCEPTED_NOOPS: [&str; 10] = [
    "-timer_resol",
    "-max_recv_loops",
    "-max_sched_loops",
    "-watchdog_interval",
    "-watchdog_minor_threshold",
    "-watchdog_major_threshold",
    "-watchdog_minor_maxtriggers",
    "-watchdog_major_maxtriggers",
    "-watchdog_reset",
    "-sleep",
];

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        let num = |name: &str, v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .map_err(|_| format!("option {name}: `{v}` is not a number"))
        };
        let t = |name: &str, v: String, unit: u64| {
            time(&v, unit).ok_or_else(|| format!("option {name}: `{v}` is not a time"))
        };
        match a.as_str() {
            "-v" => {
                return Ok(Parsed::Info(format!(
                    "sipload {}",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            "-h" | "--help" => return Ok(Parsed::Info(HELP.into())),
            "-sn" => o.sn = Some(val(a)?),
            "-sf" => o.sf = Some(val(a)?),
            "-sd" => o.sd = Some(val(a)?),
            "-r" => o.rate = num(a, val(a)?)?,
            "-rp" => o.rate_period = t(a, val(a)?, 1)?,
            "-l" => o.limit = Some(num(a, val(a)?)? as u64),
            "-m" => o.max_calls = Some(num(a, val(a)?)? as u64),
            "-d" => o.pause_default = t(a, val(a)?, 1)?,
            "-i" => o.local_ip = Some(val(a)?),
            "-p" => {
                let v = val(a)?;
                o.local_port = Some(
                    v.parse()
                        .map_err(|_| format!("option -p: `{v}` is not a port"))?,
                )
            }
            "-s" => o.service = val(a)?,
            "-t" => {
                let v = val(a)?;
                if v != "u1" {
                    return Err(format!(
                        "transport -t {v} is not supported by sipload (only u1)"
                    ));
                }
            }
            "-trace_stat" => o.trace_stat = true,
            "-stf" => o.stat_file = Some(val(a)?),
            "-fd" => o.stat_period = t(a, val(a)?, 1000)?,
            "-stat_delimiter" => o.stat_delimiter = val(a)?,
            "-trace_err" => o.trace_err = true,
            "-trace_msg" => o.trace_msg = true,
            "-nostdin" | "-skip_rlimit" => {}
            "-timeout" => o.timeout = Some(t(a, val(a)?, 1000)?),
            "-recv_timeout" => o.recv_timeout = Some(t(a, val(a)?, 1)?),
            "-nr" => o.no_retrans = true,
            "-max_invite_retrans" => o.max_invite_retrans = num(a, val(a)?)? as u32,
            "-max_non_invite_retrans" => o.max_non_invite_retrans = num(a, val(a)?)? as u32,
            "-max_retrans" => {
                let n = num(a, val(a)?)? as u32;
                o.max_invite_retrans = n;
                o.max_non_invite_retrans = n;
            }
            "-T2" => o.t2 = t(a, val(a)?, 1)?,
            "-key" => {
                let k = val(a)?;
                let v = val(a)?;
                o.keys.insert(k, v);
            }
            "-set" => {
                let k = val(a)?;
                let v = val(a)?;
                o.set.push((k, v));
            }
            "-trace_logs" => o.trace_logs = true,
            "-inf" => o.inf.push(val(a)?),
            "-timeout_error" => o.timeout_error = true,
            "-deadcall_wait" => o.deadcall_wait = t(a, val(a)?, 1)?,
            "-lost" => o.lost = num(a, val(a)?)?,
            "-rsa" => o.rsa = Some(val(a)?),
            "-bind_local" => o.bind_local = true,
            "-aa" => o.auto_answer = true,
            "-users" => o.users = Some(num(a, val(a)?)? as u64),
            "-rate_increase" => o.rate_increase = num(a, val(a)?)?,
            "-rate_interval" => o.rate_interval = Some(t(a, val(a)?, 1000)?),
            "-rate_max" => o.rate_max = num(a, val(a)?)?,
            "-no_rate_quit" => o.no_rate_quit = true,
            "-bg" => o.background = true,
            "-trace_rtt" => o.trace_rtt = true,
            "-trace_screen" => o.trace_screen = true,
            "-screen_file" => o.screen_file = Some(val(a)?),
            "-f" => o.screen_period = t(a, val(a)?, 1000)?,
            "-summary" => o.summary = Some(val(a)?),
            "-workers" => {
                let v = val(a)?;
                o.workers = if v == "auto" {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    match v.parse::<usize>() {
                        Ok(n) if (1..=256).contains(&n) => n,
                        _ => return Err(format!("option -workers: `{v}` is not 1..256 or auto")),
                    }
                };
            }
            "-cpus" => {
                let v = val(a)?;
                o.cpus = v
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("option -cpus: `{v}` is not a list of CPU numbers"))?;
            }
            "-rtt_freq" => o.rtt_freq = num(a, val(a)?)? as usize,
            "-base_cseq" => o.base_cseq = num(a, val(a)?)? as u32,
            "-cid_str" => o.cid_str = val(a)?,
            "-buff_size" => {
                o.buff_size = num(a, val(a)?)? as usize;
                o.rcvbuf = o.buff_size;
            }
            "-mi" => o.media_ip = Some(val(a)?),
            "-mp" => o.media_port = num(a, val(a)?)? as u16,
            "-nd" => o.behaviors = super::call::Behaviors::NONE,
            "-default_behaviors" => o.behaviors = super::call::Behaviors::parse(&val(a)?)?,
            f if ACCEPTED_NOOPS.contains(&f) => {
                val(f)?;
            }
            f if f.starts_with('-') => {
                return Err(format!("option {f} is not supported by sipload"));
            }
            host => {
                if o.remote.replace(host.to_owned()).is_some() {
                    return Err(format!("unexpected argument `{host}`"));
                }
            }
        }
    }
    if o.sn.is_some() && o.sf.is_some() {
        return Err("-sn and -sf cannot be used together".into());
    }
    if o.rate <= 0.0 {
        return Err("-r must be positive".into());
    }
    if o.users.is_some() && o.limit.is_some() {
        return Err("-users cannot be combined with -l".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

const HELP: &str = "\
sipload: a SIPp-compatible load generator.

Usage: sipload [options] remote_host[:port]
       sipload blast|sink|relay ...   (benchmark tools; sipload blast --help)

Options (SIPp's meanings, units and defaults):
  -sn uac|uas        built-in scenario          -sf FILE       scenario XML file
  -sd uac|uas        print a built-in scenario  -r N -rp T     N calls per T (ms; default 10 per 1 s)
  -l N               concurrent calls cap       -m N           stop after N calls
  -d T               default <pause/> (ms)      -i IP -p PORT  local address
  -s USER            [service]                  -t u1          transport (UDP, one socket)
  -trace_stat        statistics CSV             -stf FILE      its name (default <scenario>_<pid>_.csv)
  -fd T              CSV period (s; default 60) -stat_delimiter S
  -trace_err         <scenario>_<pid>_errors.log   -trace_msg  <scenario>_<pid>_messages.log
  -timeout T         global timeout (s)         -recv_timeout T  default recv timeout (ms)
  -timeout_error     reaching -timeout is a fatal error (exit 255)
  -deadcall_wait T   how long an ended call is remembered (ms; default 33 s)
  -lost PCT          drop this percentage of messages on purpose (a step's lost= wins)
  -bind_local        listen on [local_ip] only (without -i or it: every address)
  -rsa HOST:PORT     send to this address (an outbound proxy), [remote_ip] unchanged
  -nr                no retransmissions         -max_retrans/-max_invite_retrans/-max_non_invite_retrans N
  -T2 T              non-INVITE retransmission cap (ms)
  -key NAME VALUE    generic [NAME] keyword     -set NAME VALUE  global variable $NAME
  -inf FILE          injection file for [fieldN] (SEQUENTIAL, RANDOM, USER, PRINTF=n)
  -trace_logs        <log> actions to <scenario>_<pid>_logs.log
  -aa                answer INFO/NOTIFY/OPTIONS/UPDATE outside the scenario with 200
  -users N           closed loop: keep N calls open ([users], [userid])
  -rate_increase N   add N to -r every -rate_interval T (s; default -fd)
  -rate_max N        stop opening calls once -r reaches N (-no_rate_quit: hold it)
  -bg                run in the background (the parent prints the pid and exits 99)
  -f T               live screen refresh (s; default 1), shown when stdout is a terminal
  -summary FILE      (sipload) JSON summary: latency percentiles in us, kernel drops
  -workers N|auto    (sipload) worker threads (default 1; auto: one per core); a uac's
                     worker k sends from -p + k, a uas's workers share -p
  -cpus 0,1,...      (sipload) pin worker k to the k-th CPU
  -trace_rtt         response times to <scenario>_<pid>_rtt.csv (-rtt_freq N rows a flush)
  -trace_screen      the final screens to <scenario>_<pid>_screen.log (-screen_file F)
  -base_cseq N       first [cseq]               -cid_str FMT   Call-ID format
  -buff_size BYTES   socket buffers             -mi IP -mp PORT  [media_ip] [media_port]
  -nd | -default_behaviors all|none|bye,abortunexp,pingreply,-bye...       -nostdin
  -v, -h
Exit codes: 0 all calls succeeded, 1 some failed (or a start-up error), 97 timeout with no
call processed, 99 -v/-h/-sd, 254 port in use, 255 fatal error.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, String> {
        parse(&s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn sipp_recipe_parses() {
        let Parsed::Run(o) = p("-sn uac 127.0.0.1:5060 -i 127.0.0.1 -p 5071 -r 100 -rp 2s -l 50 -m 500 -d 2000 -trace_stat -fd 1 -stf x.csv -nostdin -key tgt sip:x -timeout 30").unwrap() else {
            panic!()
        };
        assert_eq!(o.remote.as_deref(), Some("127.0.0.1:5060"));
        assert_eq!(o.rate_period, Duration::from_secs(2));
        assert_eq!(o.pause_default, Duration::from_secs(2));
        assert_eq!(o.stat_period, Duration::from_secs(1));
        assert_eq!(o.timeout, Some(Duration::from_secs(30)));
        assert_eq!(o.keys["tgt"], "sip:x");
        assert_eq!(
            (o.limit, o.max_calls, o.local_port),
            (Some(50), Some(500), Some(5071))
        );
    }

    /// `-buff_size` sets both buffers as in SIPp; without it the send buffer keeps SIPp's
    /// 65 535 and the receive buffer is 4 MiB.
    #[test]
    fn buff_size_sets_both_buffers_and_the_receive_default_is_larger() {
        let Parsed::Run(o) = p("-sn uas").unwrap() else {
            panic!()
        };
        assert_eq!((o.buff_size, o.rcvbuf), (65_535, DEFAULT_RCVBUF));
        let Parsed::Run(o) = p("-sn uas -buff_size 100000").unwrap() else {
            panic!()
        };
        assert_eq!((o.buff_size, o.rcvbuf), (100_000, 100_000));
    }

    #[test]
    fn unsupported_flags_are_named() {
        assert_eq!(
            p("-3pcc x").unwrap_err(),
            "option -3pcc is not supported by sipload"
        );
        assert!(p("-t tn").unwrap_err().contains("-t tn"));
        assert!(p("-r").unwrap_err().contains("needs a value"));
    }
}
