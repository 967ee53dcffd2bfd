//! Key templates for algorithm 7 (the counterpart of Kamailio's `hash_pvar`): text with
//! `{field}` placeholders such as `{from.user}@{to.host}` or `{hdr.X-Account}`, compiled once
//! at config time and evaluated per request into a stack buffer.
#![forbid(unsafe_code)]

use super::Keys;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    CallId,
    User(Which),
    Host(Which),
    AuthUser,
    Method,
    Header(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    From,
    To,
    Ruri,
}

/// A compiled key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

/// Longest key evaluated; longer keys are cut (they still hash deterministically).
pub const MAX_KEY: usize = 512;

impl KeyTemplate {
    /// Fields: `callid`, `method`, `auth.user`, `{from,to,ruri}.{user,host}`, `hdr.NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or("unclosed `{`")?;
                    let f = &rest[1..end];
                    let which = |w: &str| match w {
                        "from" => Some(Which::From),
                        "to" => Some(Which::To),
                        "ruri" => Some(Which::Ruri),
                        _ => None,
                    };
                    let part = match f.split_once('.') {
                        _ if f == "callid" => Part::CallId,
                        _ if f == "method" => Part::Method,
                        Some(("auth", "user")) => Part::AuthUser,
                        Some(("hdr", name)) if !name.is_empty() => {
                            Part::Header(name.as_bytes().to_vec())
                        }
                        Some((w, "user")) if which(w).is_some() => {
                            Part::User(which(w).unwrap_or(Which::From))
                        }
                        Some((w, "host")) if which(w).is_some() => {
                            Part::Host(which(w).unwrap_or(Which::From))
                        }
                        _ => return Err(format!("unknown field `{{{f}}}`")),
                    };
                    parts.push(part);
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    parts.push(Part::Text(rest.as_bytes()[..i].to_vec()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Text(rest.as_bytes().to_vec()));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err("empty key template".into());
        }
        Ok(Self { parts })
    }

    /// Writes the key for `keys` into `buf` and returns it, trimmed as Kamailio trims the
    /// printed `hash_pvar`.
    pub fn eval<'b>(&self, keys: &Keys<'_>, buf: &'b mut [u8; MAX_KEY]) -> &'b [u8] {
        let mut n = 0;
        let mut put = |s: &[u8]| {
            let take = s.len().min(MAX_KEY - n);
            buf[n..n + take].copy_from_slice(&s[..take]);
            n += take;
        };
        for p in &self.parts {
            let uri = |w: &Which| match w {
                Which::From => keys.from_uri,
                Which::To => keys.to_uri,
                Which::Ruri => keys.ruri,
            };
            match p {
                Part::Text(t) => put(t),
                Part::CallId => put(keys.call_id),
                Part::Method => put(keys.method),
                Part::AuthUser => put(keys.auth_user.unwrap_or_default()),
                Part::User(w) => put(uri(w).map_or(&[][..], |u| u.user)),
                Part::Host(w) => put(uri(w).map_or(&[][..], |u| u.host)),
                Part::Header(h) => put(keys.headers.header(h).unwrap_or_default()),
            }
        }
        let s = &buf[..n];
        let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(n);
        let end = s
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |e| e + 1);
        &buf[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{HeaderLookup, UriKey};

    struct H;
    impl HeaderLookup for H {
        fn header(&self, name: &[u8]) -> Option<&[u8]> {
            name.eq_ignore_ascii_case(b"x-account").then_some(b"acme")
        }
    }

    #[test]
    fn templates() {
        let from = UriKey {
            secure: false,
            user: b"alice",
            host: b"a.example",
            port: None,
        };
        let to = UriKey {
            secure: false,
            user: b"bob",
            host: b"b.example",
            port: Some(5070),
        };
        let keys = Keys {
            method: b"INVITE",
            call_id: b"c1",
            from_uri: Some(from),
            to_uri: Some(to),
            ruri: Some(to),
            auth_user: None,
            headers: &H,
        };
        let mut buf = [0u8; MAX_KEY];
        let t = KeyTemplate::parse("{from.user}@{to.host}").unwrap();
        assert_eq!(t.eval(&keys, &mut buf), b"alice@b.example");
        let t = KeyTemplate::parse("{hdr.X-Account}/{callid} ").unwrap();
        assert_eq!(t.eval(&keys, &mut buf), b"acme/c1");
        assert!(KeyTemplate::parse("{nope}").is_err());
        assert!(KeyTemplate::parse("{from.user").is_err());
    }
}
