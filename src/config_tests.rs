use super::*;

const MINIMAL: &str = r#"
[listen]
udp = ["127.0.0.1:5060", "[::1]:5060"]

[destinations]
list_file = "dispatcher.list"

[[routes]]
methods = ["INVITE"]
set = 1
algorithm = "call-load"
record_route = true

[[routes]]
set = 1
algorithm = 0
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/sipdispatch/sipdispatch.toml"))
}

#[test]
fn minimal_config_with_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.listen.udp.len(), 2);
    assert_eq!(
        c.destinations.list_file.as_deref(),
        Some(Path::new("/etc/sipdispatch/dispatcher.list"))
    );
    let routes = c.routes();
    assert_eq!(routes[0].selector.algorithm, Algorithm::CallLoad);
    assert_eq!(routes[1].selector.algorithm, Algorithm::HashCallId);
    assert_eq!(routes[1].name, "route1");
    assert_eq!(c.no_destination.code, 503);
    assert_eq!(c.runtime.io, IoBackend::Auto);
    assert_eq!(c.advertise(), ("127.0.0.1".to_owned(), 5060));
    assert_eq!(c.tracker.expire, 7200);
}

#[test]
fn the_bundled_example_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sipdispatch.toml"
    ));
    let c = Config::load(path).unwrap();
    assert_eq!(c.routes().len(), 3);
}

#[test]
fn errors_name_file_line_and_reason() {
    let typo = MINIMAL.replace("record_route = true", "record_rout = true");
    let e = parse(&typo).unwrap_err().to_string();
    assert!(e.starts_with("/etc/sipdispatch/sipdispatch.toml: "), "{e}");
    assert!(e.contains("line 12") && e.contains("record_rout"), "{e}");

    let bad = MINIMAL.replace("algorithm = 0", "algorithm = 99");
    let e = parse(&bad).unwrap_err().to_string();
    let line = 1 + MINIMAL
        .lines()
        .position(|l| l.contains("algorithm = 0"))
        .unwrap();
    assert!(
        e.starts_with(&format!(
            "/etc/sipdispatch/sipdispatch.toml:{line}: routes[1]"
        )) && e.contains("unknown algorithm 99"),
        "{e}"
    );
    // Values the TOML parser accepts but sipdispatch cannot use also name their line.
    let bad = format!("{MINIMAL}\n[runtime]\nshards = 1\nbatch = 0\n");
    let e = parse(&bad).unwrap_err().to_string();
    let line = bad.lines().count();
    assert!(
        e.starts_with(&format!(
            "/etc/sipdispatch/sipdispatch.toml:{line}: runtime.batch"
        )),
        "{e}"
    );

    let bad = format!("{MINIMAL}\n[health]\nping_interval = 1\noutbound_proxy = \"sip:\"\n");
    let e = parse(&bad).unwrap_err().to_string();
    let line = bad.lines().count();
    assert!(
        e.starts_with(&format!(
            "/etc/sipdispatch/sipdispatch.toml:{line}: health.outbound_proxy"
        )),
        "{e}"
    );

    let bad = MINIMAL.replace("\"127.0.0.1:5060\"", "\"127.0.0.1\"");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("line 3"), "{e}");

    let e = parse(&MINIMAL.replace("algorithm = 0", "algorithm = \"hash-key\"")).unwrap_err();
    assert!(e.to_string().contains("needs a `key`"), "{e}");
    let ok = MINIMAL.replace(
        "algorithm = 0",
        "algorithm = \"hash-key\"\nkey = \"{from.user}\"",
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn advertise_forms() {
    let with = |a: &str| {
        let t = MINIMAL.replace(
            "[destinations]",
            &format!("advertise = \"{a}\"\n[destinations]"),
        );
        parse(&t).unwrap().advertise()
    };
    assert_eq!(
        with("sip.example.net"),
        ("sip.example.net".to_owned(), 5060)
    );
    assert_eq!(
        with("sip.example.net:5080"),
        ("sip.example.net".to_owned(), 5080)
    );
    assert_eq!(
        with("[2001:db8::1]:5070"),
        ("[2001:db8::1]".to_owned(), 5070)
    );
}

#[test]
fn inline_sets() {
    let t = MINIMAL.replace(
        "list_file = \"dispatcher.list\"",
        "[[destinations.sets]]\nid = 1\ndestinations = [\n { uri = \"10.0.0.1:5060\", priority = 2, attrs = \"weight=70\" },\n { uri = \"sip:10.0.0.2\", attrs = { weight = 30, duid = \"b\" } },\n]",
    );
    let c = parse(&t).unwrap();
    let specs = c.destinations.sets[0].dest_specs("x").unwrap();
    // Each inline destination knows the line it is written on.
    assert_eq!(specs[0].origin, "x:9");
    assert_eq!(specs[1].origin, "x:10");
    assert_eq!(specs[0].uri, "sip:10.0.0.1:5060");
    assert_eq!(specs[1].attrs.weight, 30);
    assert_eq!(specs[1].attrs.duid.as_deref(), Some("b"));
}

const FILE: &str = "/etc/sipdispatch/sipdispatch.toml";

/// Asserts that `text` is refused with an error naming the file, `line` and `what`.
fn refused_at(text: &str, line: usize, what: &str) {
    let e = parse(text).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{FILE}:{line}: ")) || e.contains(&format!("line {line}")),
        "want line {line} in: {e}\n--- config:\n{text}"
    );
    assert!(e.starts_with(FILE), "{e}");
    assert!(e.contains(what), "want `{what}` in: {e}");
}

fn line_of_text(text: &str, needle: &str) -> usize {
    1 + text.lines().position(|l| l.contains(needle)).unwrap()
}

#[test]
fn unknown_keys_are_refused_in_every_section_with_their_line() {
    let at_end = |section: &str| {
        let t = format!("{MINIMAL}\n{section}\nbogus_key = 1\n");
        let l = t.lines().count();
        (t, l)
    };
    for section in [
        "[runtime]",
        "[tracker]",
        "[log]",
        "[no_destination]\ncode = 503\nreason = \"x\"",
    ] {
        let (t, l) = at_end(section);
        refused_at(&t, l, "bogus_key");
    }
    let t = format!("bogus_key = 1\n{MINIMAL}");
    refused_at(&t, 1, "bogus_key");
    let t = MINIMAL.replace("[listen]\n", "[listen]\nport = 5060\n");
    refused_at(&t, 3, "port");
    let t = MINIMAL.replace("list_file", "list-file");
    refused_at(&t, line_of_text(&t, "list-file"), "list-file");
    let t = MINIMAL.replace(
        "set = 1\nalgorithm = 0",
        "set = 1\nalgorithm = 0\nheader = { name = \"X-T\", value = \"a\", regex = true }",
    );
    refused_at(&t, line_of_text(&t, "regex"), "regex");
    let t = MINIMAL.replace(
        "list_file = \"dispatcher.list\"",
        "[[destinations.sets]]\nid = 1\ndestinations = [\n  { uri = \"sip:10.0.0.1\" },\n  { uri = \"sip:10.0.0.2\", wieght = 5 },\n]",
    );
    refused_at(&t, line_of_text(&t, "wieght"), "wieght");
}

#[test]
fn bad_values_are_refused_with_their_line() {
    let with_runtime = |kv: &str| format!("{MINIMAL}\n[runtime]\n{kv}\n");
    let last = |t: &str| t.lines().count();
    for (kv, what) in [
        ("io = \"epoll\"", "epoll"),
        ("batch = 2000", "runtime.batch"),
        ("shards = 0", "runtime.shards"),
        ("shards = -1", "shards"),
        ("cpus = \"0-3\"", "cpus"),
        ("cpus = [0, 1, 0]", "CPU 0 is listed twice"),
    ] {
        let t = with_runtime(kv);
        refused_at(&t, last(&t), what);
    }
    let t = with_runtime("shards = 3\ncpus = [0, 1]");
    refused_at(
        &t,
        last(&t) - 1,
        "runtime.shards is 3 but runtime.cpus names 2 CPUs",
    );
    let t = format!("{MINIMAL}\n[tracker]\ncapacity = 0\n");
    refused_at(&t, last(&t), "tracker.capacity");
    let t = format!("{MINIMAL}\n[no_destination]\ncode = 200\nreason = \"OK\"\n");
    refused_at(&t, last(&t) - 1, "300-699");
    for (from, to, what) in [
        (
            "algorithm = 0",
            "algorithm = \"fastest\"",
            "unknown algorithm `fastest`",
        ),
        ("algorithm = 0", "algorithm = 16", "unknown algorithm 16"),
        (
            "algorithm = 0",
            "algorithm = 0\nhash = \"consistent\"",
            "consistent",
        ),
        (
            "algorithm = 0",
            "algorithm = 0\nnumbering = \"freeswitch\"",
            "freeswitch",
        ),
        ("algorithm = 0", "algorithm = 0\nlimit = -1", "limit"),
        (
            "algorithm = 0",
            "algorithm = 0\nuser_only = \"yes\"",
            "user_only",
        ),
        (
            "algorithm = 0",
            "algorithm = 7\nkey = \"{from.nope}\"",
            "unknown field `{from.nope}`",
        ),
        (
            "algorithm = 0",
            "numbering = \"opensips\"\nalgorithm = 9",
            "not supported",
        ),
        (
            "set = 1\nalgorithm = 0",
            "algorithm = 0\nset = \"one\"",
            "set",
        ),
    ] {
        let t = MINIMAL.replace(from, to);
        let needle = to.lines().last().unwrap();
        refused_at(&t, line_of_text(&t, needle), what);
    }
    let t = MINIMAL.replace("\"[::1]:5060\"", "\"[::1]\"");
    refused_at(&t, 3, "udp");
    let t = MINIMAL.replace("udp = [\"127.0.0.1:5060\", \"[::1]:5060\"]", "udp = []");
    refused_at(&t, 3, "at least one address");
    for bad in [
        "::1",
        "sip.example.net:0",
        "a b",
        "[::1",
        "[nope]:5060",
        "host:port",
    ] {
        let t = MINIMAL.replace(
            "[destinations]",
            &format!("advertise = \"{bad}\"\n[destinations]"),
        );
        refused_at(&t, line_of_text(&t, "advertise"), "listen.advertise");
    }
}

#[test]
fn a_bad_inline_destination_is_refused_with_its_line() {
    for (dest, what) in [
        ("{ uri = \"http://x\" }", "not a valid SIP URI"),
        (
            "{ uri = \"sip:10.0.0.2\", attrs = \"maxload=lots\" }",
            "maxload",
        ),
        (
            "{ uri = \"sip:10.0.0.2\", attrs = { maxload = \"lots\" } }",
            "maxload",
        ),
        ("{ uri = \"sip:10.0.0.2\", flags = 300 }", "flags"),
        (
            "{ uri = \"sip:10.0.0.2\", priority = \"high\" }",
            "priority",
        ),
    ] {
        let t = MINIMAL.replace(
            "list_file = \"dispatcher.list\"",
            &format!("[[destinations.sets]]\nid = 1\ndestinations = [\n  {{ uri = \"sip:10.0.0.1\" }},\n  {dest},\n]"),
        );
        refused_at(&t, line_of_text(&t, dest), what);
    }
}

#[test]
fn the_tuning_pinning_files_are_valid_runtime_sections() {
    for (cores, name) in [(2, "2cores"), (4, "4cores"), (16, "16cores")] {
        let path = format!("{}/tuning/pinning-{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let section = std::fs::read_to_string(&path).unwrap();
        let c = parse(&format!("{MINIMAL}\n{section}")).unwrap_or_else(|e| panic!("{path}: {e}"));
        let cpus = &c.runtime.cpus;
        assert_eq!(c.shards(), cpus.len(), "{path}: one shard per pinned CPU");
        assert!(cpus.iter().all(|&cpu| cpu < cores), "{path}: {cpus:?}");
        let mut unique = cpus.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), cpus.len(), "{path}: a CPU twice");
        if cores > 2 {
            assert!(
                cpus.len() < cores,
                "{path}: no core left for the NIC's IRQs"
            );
        }
    }
}

#[test]
fn opensips_numbering_in_a_route() {
    let t = MINIMAL.replace("algorithm = 0", "algorithm = 4\nnumbering = \"opensips\"");
    let r = &parse(&t).unwrap().routes()[1];
    assert_eq!(r.selector.algorithm, Algorithm::WeightedRoundRobin);
    let t = MINIMAL.replace("algorithm = 0", "algorithm = 0\nnumbering = \"opensips\"");
    assert_eq!(
        parse(&t).unwrap().routes()[1].selector.hash,
        HashMode::Opensips
    );
    let t = MINIMAL.replace(
        "algorithm = 0",
        "algorithm = 0\nnumbering = \"opensips\"\nhash = \"rendezvous\"",
    );
    assert_eq!(
        parse(&t).unwrap().routes()[1].selector.hash,
        HashMode::Rendezvous
    );
    let t = MINIMAL.replace(
        "algorithm = 0",
        "algorithm = 6\nnumbering = \"opensips\"\nlimit = 2\nuser_only = true",
    );
    let r = &parse(&t).unwrap().routes()[1];
    assert_eq!(r.selector.algorithm, Algorithm::WeightedRandom);
    assert_eq!((r.selector.limit, r.selector.user_only), (2, true));
}
