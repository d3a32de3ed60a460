//! Pure parsing of what a client sends, over bytes already read: the request line, header
//! lines, `Content-Length` values, the framing decision its headers call for (a length, chunked,
//! or no body) and whether the connection stays open, and chunk-size lines. No I/O happens here:
//! `conn.rs` finds the lines in its buffer and hands them over; every function takes bytes or
//! strings and returns values, `Option` or `bool`.

/// The `tchar` set of RFC 9110 (method and header name characters).
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// The parsed request line.
pub(super) struct RequestLine {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) http10: bool,
}

/// Whether an incomplete first line can still become a request line (its method so far is
/// made of token characters), so that binary garbage is rejected without waiting.
pub(super) fn plausible_method(partial: &[u8]) -> bool {
    for &b in partial {
        if b == b' ' || b == b'\r' {
            return true;
        }
        if !is_tchar(b) {
            return false;
        }
    }
    true
}

/// Parses `METHOD SP target SP HTTP/1.x`.
pub(super) fn parse_request_line(line: &[u8]) -> Option<RequestLine> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let method = &line[..sp1];
    let rest = &line[sp1 + 1..];
    let sp2 = rest.iter().position(|&b| b == b' ')?;
    let target = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return None;
    }
    let http10 = match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            *minor == b'0'
        }
        _ => return None,
    };
    let method = std::str::from_utf8(method).ok()?.to_string();
    let target = std::str::from_utf8(target).ok()?;
    let (path, query) = split_target(target);
    Some(RequestLine {
        method,
        path: path.to_string(),
        query: query.to_string(),
        http10,
    })
}

/// Splits a request target into path and query at the first `?`; an absolute-form target
/// (`http://host/path`) is reduced to its path.
fn split_target(target: &str) -> (&str, &str) {
    let mut target = target;
    for scheme in ["http://", "https://"] {
        let is_absolute = target
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        if is_absolute {
            let rest = &target[scheme.len()..];
            target = match rest.find(['/', '?']) {
                Some(i) => &rest[i..],
                None => "",
            };
            break;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// Parses `name: value`; the name is lower-cased and the value trimmed. Obs-fold, bare CR and
/// other control characters, a missing colon or a non-token name give `None`.
pub(super) fn parse_header(line: &[u8]) -> Option<(String, String)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        // This also rejects obs-fold, as a folded line starts with a space or a tab.
        return None;
    }
    let mut value = &line[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return None;
    }
    let name: String = name
        .iter()
        .map(|&b| b.to_ascii_lowercase() as char)
        .collect();
    let value = match std::str::from_utf8(value) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    };
    Some((name, value))
}

/// Parses a Content-Length value: digits only; a value too big for `u64` saturates (and is
/// then over any body limit).
fn parse_content_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    None,
    /// `Content-Length`: exactly this many bytes (not yet checked against any limit).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a request's headers say about its body and its connection, gathered one header at a
/// time with `note`, then read with `framing`, `keep_alive` and `expects_continue`.
#[derive(Debug, Default)]
pub(super) struct HeadFacts {
    content_length: Option<u64>,
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
}

impl HeadFacts {
    /// Takes note of one parsed header (lower-case name, trimmed value); false when it makes
    /// the request malformed: a bad `Content-Length`, one that differs from an earlier one, a
    /// `Transfer-Encoding` other than a single `chunked`.
    pub(super) fn note(&mut self, name: &str, value: &str) -> bool {
        match name {
            "content-length" => match parse_content_length(value) {
                Some(len) if self.content_length.is_none_or(|prev| prev == len) => {
                    self.content_length = Some(len);
                    true
                }
                _ => false,
            },
            "transfer-encoding" => {
                let ok = !self.chunked && value.eq_ignore_ascii_case("chunked");
                self.chunked = true;
                ok
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        self.conn_close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        self.conn_keep_alive = true;
                    }
                }
                true
            }
            "expect" => {
                self.expect_continue = value.eq_ignore_ascii_case("100-continue");
                true
            }
            _ => true,
        }
    }

    /// How the body is delimited once all headers are noted; `None` (malformed) when the
    /// request has both a `Content-Length` and a chunked `Transfer-Encoding`.
    pub(super) fn framing(&self) -> Option<Framing> {
        match (self.content_length, self.chunked) {
            (Some(_), true) => None,
            (Some(len), false) => Some(Framing::Length(len)),
            (None, true) => Some(Framing::Chunked),
            (None, false) => Some(Framing::None),
        }
    }

    /// Whether the client wants the connection kept alive: HTTP/1.1 unless `Connection:
    /// close`, HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
    pub(super) fn keep_alive(&self, http10: bool) -> bool {
        if http10 {
            self.conn_keep_alive && !self.conn_close
        } else {
            !self.conn_close
        }
    }

    /// Whether the client sent `Expect: 100-continue` (the last `Expect` header counts).
    pub(super) fn expects_continue(&self) -> bool {
        self.expect_continue
    }
}

/// Parses a chunk-size line: hex digits, optional whitespace, optional `;extensions`. A size
/// too big for `u64` saturates.
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let mut digits = match line.iter().position(|&b| b == b';') {
        Some(i) => &line[..i],
        None => line,
    };
    while let [rest @ .., b' ' | b'\t'] = digits {
        digits = rest;
    }
    if digits.is_empty() {
        return None;
    }
    let mut size = 0u64;
    for &b in digits {
        let digit = (b as char).to_digit(16)?;
        size = size.saturating_mul(16).saturating_add(u64::from(digit));
    }
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(split_target("/a?b?c"), ("/a", "b?c"));
        assert_eq!(split_target("HTTPS://h"), ("/", ""));
        assert_eq!(split_target("http://h?x=1"), ("/", "x=1"));
        assert_eq!(split_target("*"), ("*", ""));
        assert_eq!(parse_content_length("007"), Some(7));
        assert_eq!(
            parse_content_length("99999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(parse_content_length("+1"), None);
        assert_eq!(parse_chunk_size(b"1aF ; x=y"), Some(0x1af));
        assert_eq!(parse_chunk_size(b" 1"), None);
        assert_eq!(parse_chunk_size(b";x"), None);
    }

    /// The headers' facts, noted in order; `None` when a header is refused.
    fn facts(headers: &[(&str, &str)]) -> Option<HeadFacts> {
        let mut facts = HeadFacts::default();
        for (name, value) in headers {
            if !facts.note(name, value) {
                return None;
            }
        }
        Some(facts)
    }

    #[test]
    fn framing_and_connection_come_from_the_headers() {
        let framing = |h: &[(&str, &str)]| facts(h).map(|f| f.framing());
        assert_eq!(framing(&[]), Some(Some(Framing::None)));
        assert_eq!(
            framing(&[("content-length", "5")]),
            Some(Some(Framing::Length(5)))
        );
        // Identical duplicate lengths are fine; different ones and bad ones are not.
        assert_eq!(
            framing(&[("content-length", "2"), ("content-length", "2")]),
            Some(Some(Framing::Length(2)))
        );
        assert_eq!(
            framing(&[("content-length", "1"), ("content-length", "2")]),
            None
        );
        assert_eq!(framing(&[("content-length", "1x")]), None);
        assert_eq!(
            framing(&[("transfer-encoding", "Chunked")]),
            Some(Some(Framing::Chunked))
        );
        assert_eq!(framing(&[("transfer-encoding", "gzip")]), None);
        assert_eq!(
            framing(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            None
        );
        // A length and chunked together are malformed, in either order.
        assert_eq!(
            framing(&[("content-length", "1"), ("transfer-encoding", "chunked")]),
            Some(None)
        );
        assert_eq!(
            framing(&[("transfer-encoding", "chunked"), ("content-length", "1")]),
            Some(None)
        );

        let f = facts(&[]).unwrap();
        assert!(f.keep_alive(false) && !f.keep_alive(true) && !f.expects_continue());
        let f = facts(&[("connection", "Keep-Alive")]).unwrap();
        assert!(f.keep_alive(false) && f.keep_alive(true));
        let f = facts(&[("connection", "keep-alive, close")]).unwrap();
        assert!(!f.keep_alive(false) && !f.keep_alive(true));
        let f = facts(&[("expect", "100-Continue")]).unwrap();
        assert!(f.expects_continue());
        let f = facts(&[("expect", "100-continue"), ("expect", "x")]).unwrap();
        assert!(!f.expects_continue());
    }
}
