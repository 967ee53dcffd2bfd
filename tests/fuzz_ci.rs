//! Fuzzing on stable Rust, for CI: a mutation fuzzer over every input sipdispatch parses — SIP
//! datagrams (scan, verdict, local reply, rewrite: the contract in `sip::invariants`), the
//! Kamailio list file, the TOML config, and JSON-RPC requests to the management API. Each
//! target runs for `SIPDISPATCH_FUZZ_SECS` seconds (default 2; `.ci/run` sets 60) from a corpus
//! kept in `fuzz/corpus/<target>/`, seeded for SIP with the RFC 4475 and RFC 5118 messages read
//! from `../shared/reference`. An input that panics or breaks a contract is written to
//! `fuzz/regressions/<target>/` and fails the test; every file there is replayed first on each
//! run, so a crash found once stays a regression test. `SIPDISPATCH_FUZZ_SEED` replays a run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use sipdispatch::config::Config;
use sipdispatch::control::{Control, rpc};
use sipdispatch::dispatch::list;
use sipdispatch::sip::invariants;

#[path = "../bench/messages.rs"]
mod messages;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// xorshift64*: deterministic, so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that make parsers take other branches.
const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n ",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b":",
    b"=",
    b"@",
    b"[",
    b"]",
    b"%",
    b"\\",
    b"\0",
    b"\xff",
    b"#",
    b"0x",
    b"/",
    b"{",
    b"}",
    b"\t",
    b" ",
    b"99999999999",
    b"-1",
];

/// One mutation of `input`, sometimes splicing in part of `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 => v.truncate(at),
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, ins.iter().copied());
            }
            3 => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(64)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let s = rng.below(other.len());
                let e = (s + rng.below(128)).min(other.len());
                v.splice(at..at, other[s..e].iter().copied());
            }
            _ => {
                let i = rng.below(v.len().max(1));
                if let Some(b) = v.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    v
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("INDEX.tsv" | "README.md" | "SHA256SUMS")
            )
        })
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, b)| b).collect()
}

/// Runs `check` on the regressions, the corpus, and mutations of it for the time budget.
fn fuzz(target: &str, mut seeds: Vec<Vec<u8>>, mut check: impl FnMut(&[u8]) -> Result<(), String>) {
    let secs: u64 = std::env::var("SIPDISPATCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("SIPDISPATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let regressions = Path::new(ROOT).join("fuzz/regressions").join(target);
    let mut run = |input: &[u8]| -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| check(input))) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        }
    };
    let fail = |input: &[u8], why: String| -> ! {
        std::fs::create_dir_all(&regressions).unwrap();
        let name = format!(
            "{:016x}",
            input
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b))
                    .wrapping_mul(0x1000_0000_01b3))
        );
        let path = regressions.join(name);
        std::fs::write(&path, input).unwrap();
        panic!(
            "{target}: {why}; input kept as {} (seed {seed})",
            path.display()
        );
    };
    for input in files(&regressions) {
        if let Err(why) = run(&input) {
            fail(&input, why);
        }
    }
    seeds.extend(files(&Path::new(ROOT).join("fuzz/corpus").join(target)));
    assert!(!seeds.is_empty(), "{target}: no corpus");
    for input in &seeds {
        if let Err(why) = run(input) {
            fail(input, why);
        }
    }
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    // Bounded in count as well as time.
    while Instant::now() < deadline && n < 50_000_000 {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, a, b);
        if let Err(why) = run(&input) {
            fail(&input, why);
        }
        n += 1;
    }
    eprintln!("{target}: {n} inputs in {secs} s (seed {seed}), no failure");
}

#[test]
fn sip_datagrams() {
    let shared = Path::new(ROOT).join("../shared/reference");
    let mut seeds = files(&shared.join("rfc4475"));
    seeds.extend(files(&shared.join("rfc5118")));
    seeds.extend(messages::all().into_iter().map(|(_, m)| m));
    seeds.extend(messages::sipp_call().into_iter().map(|(_, m)| m));
    fuzz("sip", seeds, invariants::check);
}

#[test]
fn list_files() {
    let seeds = vec![std::fs::read(Path::new(ROOT).join("examples/dispatcher.list")).unwrap()];
    fuzz("list", seeds, |input| {
        let text = String::from_utf8_lossy(input);
        match list::parse(&text, "fuzz.list") {
            // A refusal must say where.
            Err(e) if !e.to_string().contains("fuzz.list:") => {
                Err(format!("error without a line: {e}"))
            }
            _ => Ok(()),
        }
    });
}

#[test]
fn config_files() {
    let seeds = vec![std::fs::read(Path::new(ROOT).join("examples/sipdispatch.toml")).unwrap()];
    fuzz("config", seeds, |input| {
        let _ = Config::parse(&String::from_utf8_lossy(input), Path::new("fuzz.toml"));
        Ok(())
    });
}

#[test]
fn rpc_requests() {
    let dir = std::env::temp_dir().join(format!("sipdispatch-fuzz-rpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dispatcher.list"),
        "1 sip:127.0.0.1:7001\n1 sip:127.0.0.1:7002 8\n",
    )
    .unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "[listen]\nudp = [\"127.0.0.1:5060\"]\n[destinations]\nlist_file = \"dispatcher.list\"\n[[routes]]\nset = 1\nalgorithm = 4\n").unwrap();
    let control = || {
        let cfg = Config::load(&path).unwrap();
        let table = sipdispatch::runtime::build_table(&cfg, None).unwrap();
        let shared = Arc::new(sipdispatch::runtime::shared(&cfg, table).unwrap());
        let mut c = Control::new(
            path.clone(),
            shared,
            Vec::new(),
            Vec::new(),
            Arc::new(AtomicBool::new(true)),
            true,
        );
        // Fuzzed host names must not turn into DNS queries.
        c.resolver = |t| t.literal_addr().into_iter().collect();
        c
    };
    let mut ctl = control();
    let mut calls = 0;
    fuzz("rpc", Vec::new(), |input| {
        // A fresh instance now and then, so the table does not grow with every fuzzed add.
        calls += 1;
        if calls % 2000 == 0 {
            ctl = control();
        }
        match rpc::handle(&ctl, input) {
            None => Ok(()),
            Some(v) if v.is_object() || v.is_array() => {
                let one = |r: &serde_json::Value| {
                    r.get("jsonrpc") == Some(&"2.0".into())
                        && (r.get("result").is_some() != r.get("error").is_some())
                };
                let ok = match &v {
                    serde_json::Value::Array(a) => a.iter().all(one),
                    r => one(r),
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("not a JSON-RPC response: {v}"))
                }
            }
            Some(v) => Err(format!("not a JSON-RPC response: {v}")),
        }
    });
}
