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
    assert_eq!(specs[0].uri, "sip:10.0.0.1:5060");
    assert_eq!(specs[1].attrs.weight, 30);
    assert_eq!(specs[1].attrs.duid.as_deref(), Some("b"));
}
