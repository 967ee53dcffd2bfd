//! A `<send>` message compiled once: the CDATA cleaned as SIPp cleans it (indentation and
//! surrounding whitespace dropped, CRLF line ends, an empty line guaranteed) and split into
//! literal bytes and `[keyword]` slots, rendered per message into a caller-owned buffer.

use std::collections::HashMap;
use std::io::Write as _;

/// A keyword whose value comes from the run or the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keyword {
    Service,
    RemoteIp,
    RemoteHost,
    RemotePort,
    LocalIp,
    LocalIpType,
    LocalPort,
    Transport,
    MediaIp,
    MediaIpType,
    MediaPort,
    CallNumber,
    CallId,
    Cseq,
    LastCseqNumber,
    Branch,
    MsgIndex,
    Pid,
    Len,
    PeerTagParam,
    /// `[last_Name:]`: the header line(s) of the last received message.
    LastHeader(String),
    LastRequestUri,
    LastMessage,
    Routes,
    NextUrl,
    /// `media_port + 4 × (call_number - 1) mod 10000`, as SIPp numbers per-call media ports.
    AutoMediaPort,
    /// `[server_ip]`: the local IP the message arrived on (the bound one).
    ServerIp,
    /// `[date]` (RFC 2822, GMT), `[timestamp]` (local time as in the CSV), `[clock_tick]` (ms
    /// since the start), `[sipp_version]` (sipload's).
    Date,
    Timestamp,
    ClockTick,
    Version,
    /// `-users` count (-1 without it) and the call's user (1..=users, 0 without it).
    Users,
    UserId,
    /// `[fieldN]`, `[fieldN file="f.csv" line="k"]`: field N of the call's line of an `-inf`
    /// file (the first one without `file=`), or of line k.
    Field {
        n: usize,
        file: Option<String>,
        line: Option<usize>,
    },
    /// `[$name]`: a scenario variable (index into the scenario's variables).
    Var(usize),
}

impl Keyword {
    fn numeric(&self) -> bool {
        matches!(
            self,
            Keyword::RemotePort
                | Keyword::LocalPort
                | Keyword::MediaPort
                | Keyword::AutoMediaPort
                | Keyword::CallNumber
                | Keyword::Cseq
                | Keyword::LastCseqNumber
                | Keyword::Branch
                | Keyword::MsgIndex
                | Keyword::Len
        )
    }

    /// Keywords that may come out empty and then take their line's CRLF with them.
    fn drops_line(&self) -> bool {
        matches!(
            self,
            Keyword::LastHeader(_) | Keyword::Routes | Keyword::Var(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(Vec<u8>),
    Key(Keyword, i64),
}

/// A compiled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segs: Vec<Seg>,
    /// The request method, or `None` for a response.
    pub method: Option<String>,
    /// For a response: the status code.
    pub code: Option<u16>,
}

/// Why a message could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown keyword [{0}]")]
    UnknownKeyword(String),
    #[error("keyword [{0}] is not supported by sipload")]
    Unsupported(String),
    #[error("unclosed [ in message")]
    Unclosed,
    #[error("the first line must start with a literal method or SIP/2.0")]
    KeywordInStartLine,
    #[error("response code {0} is outside 100..699")]
    BadCode(u32),
}

/// SIPp's `clean_cdata`: the whole text trimmed, every line trimmed of blanks, `\n` line ends,
/// and an empty line added when there is none (a message without a body).
pub fn clean(cdata: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in cdata.trim().lines() {
        let l = line.trim_matches([' ', '\t']);
        blank |= l.is_empty();
        out.push_str(l);
        out.push('\n');
    }
    if !blank {
        out.push('\n');
    }
    out
}

/// Resolves `[$name]` to the scenario's index of variable `name`.
pub type VarResolver<'a> = dyn FnMut(&str) -> usize + 'a;

/// Compiles cleaned-or-raw CDATA; `generic` holds the `-key name value` keywords.
pub fn compile(
    cdata: &str,
    generic: &HashMap<String, String>,
    vars: &mut VarResolver<'_>,
) -> Result<Template, TemplateError> {
    let text = clean(cdata);
    let first = text.lines().next().unwrap_or_default();
    if first.starts_with('[') {
        return Err(TemplateError::KeywordInStartLine);
    }
    let (method, code) = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let c: u32 = rest
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or(TemplateError::KeywordInStartLine)?;
        if !(100..=699).contains(&c) {
            return Err(TemplateError::BadCode(c));
        }
        (None, Some(c as u16))
    } else {
        (first.split(' ').next().map(str::to_owned), None)
    };
    let segs = split(&text, true, generic, vars)?;
    Ok(Template { segs, method, code })
}

/// Compiles an action's text (`assignstr value=`, `log message=`): keywords expanded, the
/// text otherwise as written.
pub fn compile_text(
    text: &str,
    generic: &HashMap<String, String>,
    vars: &mut VarResolver<'_>,
) -> Result<Template, TemplateError> {
    Ok(Template {
        segs: split(text, false, generic, vars)?,
        method: None,
        code: None,
    })
}

fn split(
    text: &str,
    crlf: bool,
    generic: &HashMap<String, String>,
    vars: &mut VarResolver<'_>,
) -> Result<Vec<Seg>, TemplateError> {
    let mut segs = Vec::new();
    let mut lit = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' if crlf => {
                lit.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'x') => {
                let hex = text
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        lit.push(b);
                        i += 4;
                    }
                    None => {
                        lit.push(b'\\');
                        i += 1;
                    }
                }
            }
            b'[' => {
                let end = text[i..].find(']').ok_or(TemplateError::Unclosed)? + i;
                let name = &text[i + 1..end];
                if let Some(v) = generic.get(name) {
                    lit.extend_from_slice(v.as_bytes());
                } else {
                    let (kw, off) = match name.strip_prefix('$') {
                        Some(v) if !v.is_empty() => (Keyword::Var(vars(v)), 0),
                        _ => keyword(name)?,
                    };
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(Seg::Key(kw, off));
                }
                i = end + 1;
            }
            b => {
                lit.push(b);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    Ok(segs)
}

fn keyword(name: &str) -> Result<(Keyword, i64), TemplateError> {
    use Keyword::*;
    if let Some(h) = name.strip_prefix("last_") {
        return match h {
            "Request_URI" => Ok((LastRequestUri, 0)),
            "message" => Ok((LastMessage, 0)),
            "cseq_number" => Ok((LastCseqNumber, 0)),
            _ if h.starts_with("cseq_number") => {
                let off = &h["cseq_number".len()..];
                let n: i64 = off[1..]
                    .parse()
                    .map_err(|_| TemplateError::UnknownKeyword(name.to_owned()))?;
                match off.as_bytes()[0] {
                    b'+' => Ok((LastCseqNumber, n)),
                    b'-' => Ok((LastCseqNumber, -n)),
                    _ => Err(TemplateError::UnknownKeyword(name.to_owned())),
                }
            }
            _ => match h.strip_suffix(':') {
                Some(hdr) if !hdr.is_empty() => Ok((LastHeader(hdr.to_owned()), 0)),
                _ => Err(TemplateError::UnknownKeyword(name.to_owned())),
            },
        };
    }
    if let Some(rest) = name.strip_prefix("field")
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return field(name, rest);
    }
    // `[kw+N]` / `[kw-N]` offsets on numeric keywords.
    let (base, off) = match name.find(['+', '-']) {
        Some(p) if name[p + 1..].chars().all(|c| c.is_ascii_digit()) && p + 1 < name.len() => {
            let n: i64 = name[p + 1..].parse().unwrap_or(0);
            (&name[..p], if &name[p..=p] == "-" { -n } else { n })
        }
        _ => (name, 0),
    };
    let kw = match base {
        "service" => Service,
        "remote_ip" => RemoteIp,
        "remote_host" => RemoteHost,
        "remote_port" => RemotePort,
        "local_ip" => LocalIp,
        "local_ip_type" => LocalIpType,
        "local_port" => LocalPort,
        "transport" => Transport,
        "media_ip" => MediaIp,
        "media_ip_type" => MediaIpType,
        "media_port" | "rtpstream_audio_port" | "rtpstream_video_port" => MediaPort,
        "auto_media_port" => AutoMediaPort,
        "server_ip" => ServerIp,
        "date" => Date,
        "timestamp" => Timestamp,
        "clock_tick" => ClockTick,
        "sipp_version" => Version,
        "call_number" => CallNumber,
        "call_id" => CallId,
        "cseq" => Cseq,
        "branch" => Branch,
        "msg_index" => MsgIndex,
        "pid" => Pid,
        "len" => Len,
        "peer_tag_param" => PeerTagParam,
        "routes" => Routes,
        "next_url" => NextUrl,
        "users" => Users,
        "userid" => UserId,
        _ if base.starts_with("authentication")
            || base.starts_with("file ")
            || base.starts_with("fill ")
            || matches!(base, "tdmmap" | "dynamic_id") =>
        {
            return Err(TemplateError::Unsupported(name.to_owned()));
        }
        _ => return Err(TemplateError::UnknownKeyword(name.to_owned())),
    };
    if off != 0 && !kw.numeric() {
        return Err(TemplateError::UnknownKeyword(name.to_owned()));
    }
    Ok((kw, off))
}

/// `[fieldN file="..." line="..."]`, after `field`.
fn field(name: &str, rest: &str) -> Result<(Keyword, i64), TemplateError> {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..digits]
        .parse()
        .map_err(|_| TemplateError::UnknownKeyword(name.to_owned()))?;
    let (mut file, mut line) = (None, None);
    let mut attrs = rest[digits..].trim();
    while !attrs.is_empty() {
        let bad = || TemplateError::UnknownKeyword(name.to_owned());
        let (key, after) = attrs.split_once("=\"").ok_or_else(bad)?;
        let (value, tail) = after.split_once('"').ok_or_else(bad)?;
        match key.trim() {
            "file" => file = Some(value.to_owned()),
            "line" => {
                line = Some(value.trim().parse().map_err(|_| {
                    TemplateError::Unsupported(format!("{name} (line= must be a number)"))
                })?)
            }
            _ => return Err(bad()),
        }
        attrs = tail.trim();
    }
    Ok((Keyword::Field { n, file, line }, 0))
}

/// Where keyword values come from while rendering.
pub trait Values {
    /// Appends the keyword's value (nothing when it has none).
    fn put(&self, kw: &Keyword, offset: i64, out: &mut Vec<u8>);
}

impl Template {
    /// The `-inf` files this message's `[fieldN]`s read (`None`: the first one).
    pub fn field_files(&self) -> impl Iterator<Item = Option<&str>> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Key(Keyword::Field { file, .. }, _) => Some(file.as_deref()),
            _ => None,
        })
    }

    /// Renders into `out` (cleared first); `[len]` is the body length, `%5u` as SIPp writes it.
    pub fn render(&self, v: &impl Values, out: &mut Vec<u8>) {
        out.clear();
        // `[len]` slots, on the stack: rendering allocates nothing once `out` has grown.
        let mut len_at = [(0usize, 0i64); 8];
        let mut lens = 0;
        let mut skip_crlf = false;
        for seg in &self.segs {
            match seg {
                Seg::Lit(l) => {
                    let l = if skip_crlf {
                        l.strip_prefix(b"\r\n").unwrap_or(l)
                    } else {
                        l
                    };
                    skip_crlf = false;
                    out.extend_from_slice(l);
                }
                Seg::Key(Keyword::Len, off) if lens < len_at.len() => {
                    len_at[lens] = (out.len(), *off);
                    lens += 1;
                    out.extend_from_slice(b"     ");
                }
                Seg::Key(Keyword::Len, _) => {}
                Seg::Key(kw, off) => {
                    let before = out.len();
                    v.put(kw, *off, out);
                    // An empty `[$var]` drops its line only when it starts the line.
                    let at_line_start = before == 0 || out[before - 1] == b'\n';
                    skip_crlf = kw.drops_line()
                        && out.len() == before
                        && (at_line_start || !matches!(kw, Keyword::Var(_)));
                }
            }
        }
        if lens == 0 {
            return;
        }
        let body = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| out.len() - p - 4);
        // Back-patch from the last slot so earlier offsets stay valid.
        for &(at, off) in len_at[..lens].iter().rev() {
            let mut digits = [0u8; 24];
            let mut cur = std::io::Cursor::new(&mut digits[..]);
            let _ = write!(cur, "{:5}", (body as i64 + off).max(0));
            let n = cur.position() as usize;
            out.splice(at..at + 5, digits[..n].iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V;
    impl Values for V {
        fn put(&self, kw: &Keyword, off: i64, out: &mut Vec<u8>) {
            match kw {
                Keyword::Cseq => out.extend_from_slice((1 + off).to_string().as_bytes()),
                Keyword::LocalIp => out.extend_from_slice(b"127.0.0.1"),
                _ => {}
            }
        }
    }

    #[test]
    fn cleaned_like_sipp() {
        let t = compile(
            "\n   ACK sip:a SIP/2.0\n   CSeq: [cseq+1] ACK\n   [last_Via:]\n   Content-Length: [len]\n  ",
            &HashMap::new(),
            &mut |_| 0,
        )
        .unwrap();
        let mut out = Vec::new();
        t.render(&V, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ACK sip:a SIP/2.0\r\nCSeq: 2 ACK\r\nContent-Length:     0\r\n\r\n"
        );
        assert_eq!(t.method.as_deref(), Some("ACK"));
    }

    #[test]
    fn body_length_is_padded() {
        let t = compile(
            "SIP/2.0 200 OK\nContent-Length: [len]\n\nv=0\no=x [local_ip]\n",
            &HashMap::new(),
            &mut |_| 0,
        )
        .unwrap();
        let mut out = Vec::new();
        t.render(&V, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("SIP/2.0 200 OK\r\nContent-Length:    20\r\n\r\n"),
            "{s}"
        );
        assert!(s.ends_with("o=x 127.0.0.1\r\n"));
        assert_eq!(t.code, Some(200));
    }

    #[test]
    fn variables_render_and_an_empty_one_drops_its_line() {
        struct W;
        impl Values for W {
            fn put(&self, kw: &Keyword, _: i64, out: &mut Vec<u8>) {
                if let Keyword::Var(0) = kw {
                    out.extend_from_slice(b"alice");
                }
            }
        }
        let mut names = Vec::new();
        let t = compile(
            "INVITE sip:[$user]@h SIP/2.0\n[$hdr]\nX: a[$hdr]\nContent-Length: 0\n",
            &HashMap::new(),
            &mut |n| {
                names.push(n.to_owned());
                names.len() - 1
            },
        )
        .unwrap();
        let mut out = Vec::new();
        t.render(&W, &mut out);
        assert_eq!(names, ["user", "hdr", "hdr"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INVITE sip:alice@h SIP/2.0\r\nX: a\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn bad_keywords_are_named() {
        let g = HashMap::from([("target".to_owned(), "sip:x".to_owned())]);
        assert!(compile("INVITE [target] SIP/2.0\n", &g, &mut |_| 0).is_ok());
        assert!(
            compile(
                "BYE x SIP/2.0\nCSeq: [last_cseq_number+1] BYE\n",
                &g,
                &mut |_| 0
            )
            .is_ok()
        );
        assert_eq!(
            compile(
                "BYE x SIP/2.0\nCSeq: [last_cseq_number*1] BYE\n",
                &g,
                &mut |_| 0
            ),
            Err(TemplateError::UnknownKeyword("last_cseq_number*1".into()))
        );
        assert_eq!(
            compile("INVITE sip:[nope] SIP/2.0\n", &g, &mut |_| 0),
            Err(TemplateError::UnknownKeyword("nope".into()))
        );
        assert_eq!(
            compile("INVITE sip:[authentication] SIP/2.0\n", &g, &mut |_| 0),
            Err(TemplateError::Unsupported("authentication".into()))
        );
        let t = compile(
            "INVITE sip:[field1 file=\"a-b.csv\" line=\"2\"]@[field0] SIP/2.0\n",
            &g,
            &mut |_| 0,
        )
        .unwrap();
        assert_eq!(t.field_files().collect::<Vec<_>>(), [Some("a-b.csv"), None]);
        assert_eq!(
            compile("SIP/2.0 999 X\n", &g, &mut |_| 0),
            Err(TemplateError::BadCode(999))
        );
    }
}
