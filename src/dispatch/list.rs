//! Kamailio's `dispatcher.list` format, read as it is:
//! `setid destination [flags [priority [attrs]]]`, `#` comments, blank lines, decimal or `0x`
//! flags, a URI without a scheme gets `sip:`, attrs as one `k=v;k=v` token. A bad line fails
//! the whole file with its line number and reason: nothing is half-loaded.
#![forbid(unsafe_code)]

use std::path::Path;

use super::destination::{Attrs, DestSpec, normalise_uri};

/// A destination list that could not be loaded; Display is `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct LoadError {
    pub file: String,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    pub reason: String,
}

/// Reads and parses a list file.
pub fn load(path: &Path) -> Result<Vec<DestSpec>, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: file.clone(),
        line: 0,
        reason: e.to_string(),
    })?;
    parse(&text, &file)
}

/// Parses list-file text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<DestSpec>, LoadError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| LoadError {
            file: file.to_owned(),
            line: i + 1,
            reason,
        };
        let mut cols = line.split_whitespace();
        let set_text = cols.next().unwrap_or_default();
        let set: u32 = set_text
            .parse()
            .map_err(|_| err(format!("set id `{set_text}` is not a non-negative number")))?;
        let uri_text = cols
            .next()
            .ok_or_else(|| err("missing destination".into()))?;
        let uri = normalise_uri(uri_text).map_err(err)?;
        let flags = match cols.next() {
            None => 0,
            Some(f) => parse_flags(f).ok_or_else(|| err(format!("flags `{f}` is not a number")))?,
        };
        let priority = match cols.next() {
            None => 0,
            Some(p) => p
                .parse()
                .map_err(|_| err(format!("priority `{p}` is not a number")))?,
        };
        let attrs = match cols.next() {
            None => Attrs::parse("").map_err(err)?,
            Some(a) => Attrs::parse(a).map_err(err)?,
        };
        if let Some(extra) = cols.next() {
            return Err(err(format!(
                "unexpected `{extra}` after the attributes (attrs must be one token without spaces)"
            )));
        }
        out.push(DestSpec {
            set,
            uri,
            flags,
            priority,
            attrs,
            origin: format!("{file}:{}", i + 1),
        });
    }
    Ok(out)
}

fn parse_flags(f: &str) -> Option<u8> {
    let v = match f.strip_prefix("0x").or_else(|| f.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => f.parse().ok()?,
    };
    // Only the state bits (0..=63) are meaningful; Kamailio keeps the low byte.
    u8::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doc/dispatcher.list` of Kamailio's dispatcher module, as shipped (the admin guide
    /// includes it as "dispatcher list file").
    const KAMAILIO_DOC_LIST: &str = "\
# $Id$
# dispatcher destination sets
#

# line format
# setit(int) destination(sip uri) flags(int,opt) priority(int,opt) attributes(str,opt)

# proxies
2 sip:127.0.0.1:5080
2 sip:127.0.0.1:5082

# gateways
1 sip:127.0.0.1:7070
1 sip:127.0.0.1:7072
1 sip:127.0.0.1:7074
";

    /// Every other list line of the admin guide: the two "full line examples", the
    /// `dispatcher.add` RPC examples (whose arguments are list-file fields), and the
    /// congestion-control example's record (given there as SQL, trailing `;` included).
    const KAMAILIO_DOC_LINES: &str = "\
1 sip:127.0.0.1:5080 0 0 duid=abc;socket=udp:127.0.0.1:5060;my=xyz;ping_from=sip:myproxy.com
1 sip:127.0.0.1:5090 0x8 0 socket=udp:127.0.0.1:5060;prefix=49
2 sip:127.0.0.1:5080
3 sip:127.0.0.1:5075 8
3 sip:127.0.0.1:5075 0 0 duid=abc;socket=udp:127.0.0.1:5060
1 sip:192.168.0.1:5060 0 12 rweight=50;weight=50;cc=1;
";

    #[test]
    fn kamailio_documentation_list_file_parses() {
        let d = parse(KAMAILIO_DOC_LIST, "dispatcher.list").unwrap();
        let got: Vec<(u32, &str, u8, i32)> = d
            .iter()
            .map(|d| (d.set, d.uri.as_str(), d.flags, d.priority))
            .collect();
        assert_eq!(
            got,
            [
                (2, "sip:127.0.0.1:5080", 0, 0),
                (2, "sip:127.0.0.1:5082", 0, 0),
                (1, "sip:127.0.0.1:7070", 0, 0),
                (1, "sip:127.0.0.1:7072", 0, 0),
                (1, "sip:127.0.0.1:7074", 0, 0),
            ]
        );
        assert_eq!(d[0].origin, "dispatcher.list:9");
        assert_eq!(d[4].origin, "dispatcher.list:15");
        let t = crate::dispatch::Table::build(d, None).unwrap();
        assert_eq!(t.set(1).unwrap().dests.len(), 3);
        assert_eq!(t.set(2).unwrap().dests.len(), 2);
    }

    #[test]
    fn kamailio_documentation_lines_parse() {
        let d = parse(KAMAILIO_DOC_LINES, "doc").unwrap();
        assert_eq!(d.len(), 6);
        let a = &d[0].attrs;
        assert_eq!(a.duid.as_deref(), Some("abc"));
        assert_eq!(a.socket.as_deref(), Some("udp:127.0.0.1:5060"));
        assert_eq!(a.ping_from.as_deref(), Some("sip:myproxy.com"));
        assert_eq!(a.other, [("my".to_owned(), "xyz".to_owned())]);
        assert_eq!(
            a.body,
            "duid=abc;socket=udp:127.0.0.1:5060;my=xyz;ping_from=sip:myproxy.com"
        );
        assert_eq!((d[1].flags, d[1].priority), (8, 0));
        assert_eq!(d[1].attrs.other, [("prefix".to_owned(), "49".to_owned())]);
        assert_eq!((d[2].set, d[2].uri.as_str()), (2, "sip:127.0.0.1:5080"));
        assert_eq!((d[3].set, d[3].flags, d[3].priority), (3, 8, 0));
        assert_eq!(d[4].attrs.duid.as_deref(), Some("abc"));
        let cc = &d[5];
        assert_eq!(cc.priority, 12);
        assert_eq!(
            (cc.attrs.rweight, cc.attrs.weight, cc.attrs.cc),
            (50, 50, true)
        );
        assert!(cc.attrs.other.is_empty());
        // The same URI twice in set 3, once without and once with a duid: two records.
        let t = crate::dispatch::Table::build(d, None).unwrap();
        assert_eq!(t.set(3).unwrap().dests.len(), 2);
        // Probing (8) alone is still selectable: Kamailio shows it as `AP`.
        assert_eq!(t.set(3).unwrap().dests[0].state.letters(), "AP");
        assert!(t.set(3).unwrap().dests[0].state.is_usable());
    }

    /// Forms the documentation describes but shows no line for: hex flags in either case,
    /// a URI without a scheme, IPv6, `sips:`, transport parameters, trailing comments.
    #[test]
    fn described_forms_parse() {
        let text = "\
1 127.0.0.1:6060 0x8 0 weight=50;rweight=50;cc=1  # no scheme
1 sip:[2001:db8::1]:5060 0X20 1 latency=20
1 sips:gw.example.com 0 5
1 sip:127.0.0.1:5080;transport=tcp 0 10 class=4;prefix=448;strip=2
2 sip:127.0.0.1:5082;transport=tls 8 5 socket=tls:127.0.0.1:5061;ping_from=sip:pinger@example.com
";
        let d = parse(text, "dispatcher.list").unwrap();
        assert_eq!(d[0].uri, "sip:127.0.0.1:6060");
        assert_eq!((d[0].flags, d[1].flags), (8, 32));
        assert_eq!(d[1].attrs.latency, Some(20));
        assert_eq!(d[2].uri, "sips:gw.example.com");
        assert_eq!(d[3].attrs.other.len(), 3);
        assert_eq!(d[4].attrs.socket.as_deref(), Some("tls:127.0.0.1:5061"));
        assert_eq!(d[4].origin, "dispatcher.list:5");
    }

    #[test]
    fn bad_lines_name_file_line_and_reason() {
        let cases = [
            ("1 sip:a.example.com\nx sip:b\n", 2, "set id"),
            ("\n\n1\n", 3, "missing destination"),
            ("1 sip:h 0xZZ\n", 1, "flags"),
            ("1 sip:h 0 high\n", 1, "priority"),
            ("1 sip:h 0 0 maxload=x\n", 1, "maxload"),
            ("1 sip:h 0 0 a=1 b=2\n", 1, "one token"),
            ("1 sip:h:99999\n", 1, "not a valid SIP URI"),
        ];
        for (text, line, why) in cases {
            let e = parse(text, "d.list").unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(
                e.to_string().starts_with(&format!("d.list:{line}: ")),
                "{e}"
            );
            assert!(e.reason.contains(why), "{e}");
        }
    }
}
