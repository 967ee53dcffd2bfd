//! Injection files (`-inf FILE`) for `[fieldN]`, read as SIPp reads them: a first line naming
//! the order (`SEQUENTIAL`, `RANDOM` or `USER`, optionally `PRINTF=n` with `PRINTFOFFSET` and
//! `PRINTFMULTIPLE`), then data lines up to the first empty one, `#` lines skipped, fields
//! separated by `;`. Each new call takes one line of each file: the next one (shared by the
//! workers), a random one, or its user's (`-users`).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::actions::unit;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Sequential,
    Random,
    User,
}

#[derive(Debug)]
pub struct InjectFile {
    /// As given to `-inf` (what `[fieldN file="..."]` names).
    pub name: String,
    pub order: Order,
    lines: Vec<String>,
    /// `PRINTF=n`: n virtual lines over the real ones, `%d` replaced by
    /// `offset + line * multiple`.
    printf: Option<(usize, u64, u64)>,
    next: AtomicUsize,
}

fn param(head: &str, key: &str) -> Result<Option<u64>, String> {
    let Some(p) = head.find(&format!("{key}=")) else {
        return Ok(None);
    };
    let v: String = head[p + key.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    v.parse()
        .map(Some)
        .map_err(|_| format!("{key}= needs a number"))
}

impl InjectFile {
    /// Parses the text of injection file `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let mut it = text.split('\n');
        let head = it.next().unwrap_or_default().trim_end_matches('\r');
        let order = if head.contains("RANDOM") {
            Order::Random
        } else if head.contains("SEQUENTIAL") {
            Order::Sequential
        } else if head.contains("USER") {
            Order::User
        } else {
            return Err(format!(
                "{name}:1: the first line must name the order: SEQUENTIAL, RANDOM or USER"
            ));
        };
        // PRINTFOFFSET and PRINTFMULTIPLE contain "PRINTF": look for "PRINTF=" exactly.
        let printf = match param(head, "PRINTF")? {
            Some(0) => return Err(format!("{name}:1: PRINTF needs at least one line")),
            Some(n) => Some((
                n as usize,
                param(head, "PRINTFOFFSET")?.unwrap_or(0),
                param(head, "PRINTFMULTIPLE")?.unwrap_or(1),
            )),
            None => None,
        };
        let lines: Vec<String> = it
            .take_while(|l| !l.is_empty())
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            return Err(format!("{name}: the injection file has no data line"));
        }
        Ok(Self {
            name: name.to_owned(),
            order,
            lines,
            printf,
            next: AtomicUsize::new(0),
        })
    }

    /// Lines a call can take (virtual ones with `PRINTF`).
    pub fn len(&self) -> usize {
        self.printf.map_or(self.lines.len(), |p| p.0)
    }

    /// The line a new call takes; `None` for user 0 of a `USER` file.
    pub fn take_line(&self, user: u64, rng: &mut u64) -> Option<usize> {
        let n = self.len();
        match self.order {
            Order::Sequential => Some(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Order::Random => Some(((unit(rng) * n as f64) as usize).min(n - 1)),
            Order::User => (user > 0).then(|| (user as usize - 1) % n),
        }
    }

    /// Appends field `n` of line `line` (nothing when either is missing).
    pub fn field(&self, line: usize, n: usize, out: &mut Vec<u8>) {
        if line >= self.len() {
            return;
        }
        let text = &self.lines[line % self.lines.len()];
        let Some(f) = text.split(';').nth(n) else {
            return;
        };
        match self.printf {
            None => out.extend_from_slice(f.as_bytes()),
            Some((_, offset, multiple)) => {
                printf(f, offset + line as u64 * multiple, out);
            }
        }
    }
}

/// `%d`, `%5d`, `%05d`, `%-5d` and `%%` with `v`, as C's printf writes them.
fn printf(f: &str, v: u64, out: &mut Vec<u8>) {
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'%') {
            out.push(b'%');
            i += 2;
            continue;
        }
        let spec_end = b[i + 1..]
            .iter()
            .position(|&c| c == b'd')
            .map(|p| i + 1 + p);
        let Some(end) = spec_end else {
            out.extend_from_slice(&b[i..]);
            return;
        };
        let spec = &f[i + 1..end];
        let (left, zero, width) = (
            spec.starts_with('-'),
            spec.trim_start_matches('-').starts_with('0'),
            spec.trim_start_matches(['-', '0'])
                .parse::<usize>()
                .unwrap_or(0),
        );
        let s = match (left, zero) {
            (true, _) => format!("{v:<width$}"),
            (false, true) => format!("{v:0width$}"),
            (false, false) => format!("{v:width$}"),
        };
        out.extend_from_slice(s.as_bytes());
        i = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(f: &InjectFile, line: usize, n: usize) -> String {
        let mut out = Vec::new();
        f.field(line, n, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sequential_lines_fields_and_comments() {
        let f = InjectFile::parse(
            "users.csv",
            "SEQUENTIAL\n#comment\nalice;secret;10\nbob;pw\n\nignored;after;blank\n",
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        let mut rng = 1;
        let lines: Vec<_> = (0..3).map(|_| f.take_line(0, &mut rng)).collect();
        assert_eq!(lines, [Some(0), Some(1), Some(0)]);
        assert_eq!(field(&f, 0, 0), "alice");
        assert_eq!(field(&f, 0, 2), "10");
        assert_eq!(field(&f, 1, 2), "", "a missing field is empty");
    }

    #[test]
    fn user_random_and_printf_files() {
        let f = InjectFile::parse("u", "USER\na\nb\nc\n").unwrap();
        let mut rng = 3;
        assert_eq!(f.take_line(2, &mut rng), Some(1));
        assert_eq!(f.take_line(0, &mut rng), None);
        let r = InjectFile::parse("r", "RANDOM\na\nb\n").unwrap();
        assert!((0..100).all(|_| r.take_line(0, &mut rng).is_some_and(|l| l < 2)));
        let p = InjectFile::parse(
            "p",
            "SEQUENTIAL,PRINTF=1000,PRINTFOFFSET=100,PRINTFMULTIPLE=2\nuser%04d;%d%%;[%-4d]\n",
        )
        .unwrap();
        assert_eq!(p.len(), 1000);
        assert_eq!(field(&p, 7, 0), "user0114");
        assert_eq!(field(&p, 7, 1), "114%");
        assert_eq!(field(&p, 7, 2), "[114 ]");
        assert!(InjectFile::parse("x", "NOPE\na\n").is_err());
        assert!(InjectFile::parse("x", "USER\n\n").is_err());
    }
}
