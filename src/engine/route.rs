//! Route matching: the first configured route whose conditions all hold for a request (method,
//! Request-URI user prefix, a header's value) takes it.

use crate::config::Route;
use crate::sip::uri::Uri;
use crate::sip::{Message, StartLine};

/// The first route that matches `msg`, if any, with its index; `uri` is its Request-URI.
pub fn match_route<'r>(
    routes: &'r [Route],
    msg: &Message<'_>,
    uri: &Uri,
) -> Option<(usize, &'r Route)> {
    let StartLine::Request { method_span, .. } = msg.start else {
        return None;
    };
    let method = method_span.of(msg.buf);
    let user = uri.user.map_or(&[][..], |u| u.of(msg.buf));
    routes.iter().enumerate().find(|(_, r)| {
        (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
            && r.ruri_user_prefix
                .as_ref()
                .is_none_or(|p| user.starts_with(p))
            && r.header
                .as_ref()
                .is_none_or(|(name, value)| msg.header(name) == Some(value.as_slice()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sip::{Scanned, scan};

    const CONFIG: &str = r#"
[listen]
udp = ["127.0.0.1:5060"]
[destinations]
[[destinations.sets]]
id = 1
destinations = [{ uri = "sip:127.0.0.1:7001" }]
[[routes]]
name = "register"
methods = ["REGISTER"]
set = 1
algorithm = 0
[[routes]]
name = "uk"
methods = ["INVITE", "MESSAGE"]
ruri_user_prefix = "+44"
set = 1
algorithm = 0
[[routes]]
name = "acme"
header = { name = "X-Tenant", value = "acme" }
set = 1
algorithm = 0
[[routes]]
name = "invites"
methods = ["INVITE"]
set = 1
algorithm = 0
"#;

    fn request(method: &str, user: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 {method}\r\n\
{extra}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn route_of(routes: &[Route], data: &[u8]) -> Option<String> {
        let Ok(Scanned::Message(m)) = scan(data) else {
            panic!("test message does not scan")
        };
        match_route(routes, &m, &m.request_uri().unwrap()).map(|(_, r)| r.name.clone())
    }

    #[test]
    fn the_first_route_whose_conditions_all_hold_wins() {
        let cfg = Config::parse(CONFIG, std::path::Path::new("t.toml")).unwrap();
        let routes = cfg.routes();
        let cases: [(&[u8], Option<&str>); 10] = [
            (&request("REGISTER", "+4420", ""), Some("register")),
            (&request("INVITE", "+4420", ""), Some("uk")),
            (&request("MESSAGE", "+4420", ""), Some("uk")),
            // The prefix must start the user part; the method must match exactly.
            (&request("INVITE", "0044", ""), Some("invites")),
            (&request("invite", "+4420", ""), None),
            (&request("OPTIONS", "+4420", ""), None),
            // The header matches in any case of its name, with its exact value.
            (
                &request("OPTIONS", "bob", "x-tenant: acme\r\n"),
                Some("acme"),
            ),
            (
                &request("INVITE", "bob", "X-Tenant: acme\r\n"),
                Some("acme"),
            ),
            (
                &request("INVITE", "bob", "X-Tenant: acme2\r\n"),
                Some("invites"),
            ),
            (&request("BYE", "bob", "X-Tenant: other\r\n"), None),
        ];
        for (data, want) in cases {
            assert_eq!(
                route_of(&routes, data).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(data).lines().next().unwrap()
            );
        }
    }
}
