use super::*;

/// Every combination of Via parts, plain and not, well-formed and not: wherever the plain
/// reader answers, the general one gives the same next hop.
#[test]
fn plain_next_hop_agrees_with_the_general_reader() {
    let heads = [
        "SIP/2.0/UDP ",
        "SIP/2.0/TCP ",
        "sip/2.0/udp ",
        "SIP/2.0/UDP  ",
        "SIP/2.0/UDP\t",
        "SIP/2.0/UDP",
        "SIP/2.0/ UDP ",
        "SIP/2.0/U;P ",
        " SIP/2.0/UDP ",
    ];
    let hosts = [
        "192.0.2.1",
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "10.0.0.256",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.4x",
        "host.example.com",
        "[::1]",
        "",
    ];
    let ports = [
        "", ":5060", ":0", ":65535", ":65536", ":05060", ":123456", ":", ":50a", " :5060",
    ];
    let params = [
        "",
        ";branch=z9hG4bK-7068-1-0",
        ";received=10.0.0.6",
        ";received=",
        ";received",
        ";RECEIVED=10.0.0.7",
        ";received=1.2.3.4.5",
        ";received=host",
        ";received=[::1]",
        ";received=255.255.255.255",
        ";rport",
        ";rport=7000",
        ";rport=70000",
        ";rport=123456",
        ";rport=x",
        ";rport=",
        ";Rport=05",
        ";rportx=1",
        ";;",
        ";",
        "; branch=x",
        ";branch=a b",
        ";x=\"q\"",
        ";lr",
        ",",
        " ",
    ];
    let (mut answered, mut cases) = (0, 0);
    // One memory across all cases, as a shard keeps it: hits, misses and stale entries.
    let mut last = LastHop::default();
    for head in heads {
        for host in hosts {
            for port in ports {
                for p1 in params {
                    for p2 in params {
                        let via = format!("{head}{host}{port}{p1}{p2}");
                        let buf = via.as_bytes();
                        let span = Span::new(0, buf.len());
                        cases += 1;
                        let fresh = plain_next_hop(buf, span, &mut LastHop::default());
                        assert_eq!(plain_next_hop(buf, span, &mut last), fresh, "{via:?}");
                        if let Some((ip, port)) = fresh {
                            answered += 1;
                            assert_eq!(
                                general_next_hop(buf, span),
                                Ok((IpAddr::V4(ip), port)),
                                "{via:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Most combinations are malformed somewhere; the plain ones must still be read.
    assert!(answered > cases / 100, "{answered} of {cases}");
}

#[test]
fn plain_next_hop_reads_the_usual_shapes() {
    for (via, want) in [
        (
            "SIP/2.0/UDP 127.0.0.1:7412;branch=z9hG4bK-7068-1-0",
            "127.0.0.1:7412",
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=192.0.2.11;rport=5070",
            "192.0.2.11:5070",
        ),
        (
            "SIP/2.0/UDP pc33.example.com;rport=6000;branch=z9hG4bKa;received=192.0.2.12",
            "192.0.2.12:6000",
        ),
        ("SIP/2.0/TCP 10.1.2.3;branch=z9hG4bKb", "10.1.2.3:5060"),
    ] {
        let span = Span::new(0, via.len());
        let got = plain_next_hop(via.as_bytes(), span, &mut LastHop::default())
            .map(|(ip, p)| SocketAddr::from((ip, p)));
        assert_eq!(got, Some(want.parse().unwrap()), "{via}");
    }
}

#[test]
fn hand_ip_reader_agrees_with_the_standard_parser() {
    let std_parse = |s: &str| -> Option<IpAddr> {
        s.trim_start_matches('[').trim_end_matches(']').parse().ok()
    };
    let mut cases: Vec<String> = [
        "0.0.0.0",
        "127.0.0.1",
        "255.255.255.255",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.",
        ".1.2.3.4",
        "1..2.3",
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3.0",
        "1.2.3.4444",
        "0001.2.3.4",
        "1.2.3.4:5060",
        "1.2.3.+4",
        "[::1]",
        "[2001:db8::1]",
        "::ffff:1.2.3.4",
        "example.com",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every one- to three-digit octet, leading zeros included, in each position.
    for v in 0..1000 {
        for w in [format!("{v}"), format!("{v:02}"), format!("{v:03}")] {
            cases.push(format!("{w}.1.2.3"));
            cases.push(format!("10.{w}.2.3"));
            cases.push(format!("10.1.{w}.3"));
            cases.push(format!("10.1.2.{w}"));
        }
    }
    for c in &cases {
        assert_eq!(parse_ip(c.as_bytes()), std_parse(c), "{c:?}");
    }
}

#[test]
fn the_last_sent_by_is_remembered_and_only_for_the_same_head() {
    let mut last = LastHop::default();
    let hop = |via: &str, last: &mut LastHop| {
        plain_next_hop(via.as_bytes(), Span::new(0, via.len()), last)
            .map(|(ip, p)| SocketAddr::from((ip, p)).to_string())
    };
    let first = "SIP/2.0/UDP 127.0.0.1:7302;branch=z9hG4bK-1";
    assert_eq!(hop(first, &mut last).as_deref(), Some("127.0.0.1:7302"));
    assert!(
        last.same_sent_by(first.as_bytes(), 0, first.len())
            .is_some()
    );
    for (via, want) in [
        (
            "SIP/2.0/UDP 127.0.0.1:7302;branch=z9hG4bK-2",
            Some("127.0.0.1:7302"),
        ),
        ("SIP/2.0/UDP 127.0.0.1:7302", Some("127.0.0.1:7302")),
        (
            "SIP/2.0/UDP 127.0.0.1:7302;received=10.0.0.1;rport=9",
            Some("10.0.0.1:9"),
        ),
        ("SIP/2.0/UDP 127.0.0.1:73021;branch=z9hG4bK-3", None),
        ("SIP/2.0/UDP 127.0.0.1:7302 ;branch=z9hG4bK-3", None),
        (
            "SIP/2.0/UDP 127.0.0.1:730;branch=z9hG4bK-3",
            Some("127.0.0.1:730"),
        ),
        (
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-3",
            Some("127.0.0.1:5060"),
        ),
    ] {
        let fresh = hop(via, &mut LastHop::default());
        assert_eq!(hop(via, &mut last), fresh, "{via}");
        assert_eq!(fresh.as_deref(), want, "{via}");
    }
}
