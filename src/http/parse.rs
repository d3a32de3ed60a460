//! Pure parsing of what a client sends, over bytes already read: the request line, header
//! lines, `Content-Length` values, the framing decision its headers call for (a length, chunked,
//! or no body) and whether the connection stays open, and the lines of a chunked body (sizes
//! with their extensions, the CRLF after each chunk's data, the trailer, all counted against the
//! limits by `Chunked`). No I/O happens here: `conn.rs` finds the lines in its buffer and hands
//! them over; every function takes bytes or strings and returns values, `Option`, `bool` or a
//! `ReadError`.

use super::ReadError;

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

/// A request-line or header line without its ending: CRLF, or a bare LF (which RFC 9112 §2.2
/// lets a server accept in the head). `raw` is the line as read, ending included.
pub(super) fn strip_line_end(raw: &[u8]) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    line.strip_suffix(b"\r").unwrap_or(line)
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
    /// request has both a `Content-Length` and a chunked `Transfer-Encoding`, or when an
    /// HTTP/1.0 request has a `Transfer-Encoding` at all: HTTP/1.0 has no transfer codings, so
    /// its framing cannot be trusted (RFC 9112 §6.1) and what follows it on the connection
    /// could be the rest of the body rather than a request. It is refused (and the connection
    /// closed) instead.
    pub(super) fn framing(&self, http10: bool) -> Option<Framing> {
        match (self.content_length, self.chunked) {
            (_, true) if http10 => None,
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

/// Parses a chunk-size line (without its CRLF) by RFC 9112 §7.1.1:
///
/// ```text
/// chunk-size [ chunk-ext ]            chunk-size     = 1*HEXDIG
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token              chunk-ext-val  = token / quoted-string
/// ```
///
/// The extensions are checked and dropped; anything else (a space with no `;` after it, an
/// empty name, an unterminated quote, a control character) gives `None`. A size too big for
/// `u64` saturates (and is then over any body limit).
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let size = line[..digits].iter().fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        n.saturating_mul(16).saturating_add(u64::from(digit))
    });
    valid_chunk_ext(&line[digits..]).then_some(size)
}

/// `s` without its leading `BWS` (spaces and tabs).
fn skip_bws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// The length of the token at the start of `s` (0: none).
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted-string at the start of `s` (RFC 9110 §5.6.4), quotes included;
/// `None` when `s` does not start with one.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            // quoted-pair: a backslash and HTAB, SP, VCHAR or obs-text.
            b'\\' => match s.get(i + 1) {
                Some(&q) if q == b'\t' || (q >= b' ' && q != 0x7f) => i += 2,
                _ => return None,
            },
            // qdtext: HTAB, SP, VCHAR but `"` and `\`, obs-text.
            b'\t' | b' '..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// Whether `ext` (what follows the chunk size) is a valid, possibly empty, `chunk-ext`.
fn valid_chunk_ext(mut ext: &[u8]) -> bool {
    while !ext.is_empty() {
        let Some(rest) = skip_bws(ext).strip_prefix(b";") else {
            return false;
        };
        let rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return false;
        }
        let rest = &rest[name..];
        ext = match skip_bws(rest).strip_prefix(b"=") {
            None => rest,
            Some(value) => {
                let value = skip_bws(value);
                let len = match quoted_string_len(value) {
                    Some(len) => len,
                    None => token_len(value),
                };
                if len == 0 {
                    return false;
                }
                &value[len..]
            }
        };
    }
    true
}

/// A chunked body being read, line by line: `conn.rs` reads each line (ending included) and
/// each chunk's data, this decides what the lines mean and keeps the counts. Every line must
/// end in CRLF (a bare LF is refused, unlike in the head: a chunked body is where a lenient
/// reader and a strict one would disagree on where the body ends). The data is held within
/// `max_body`; the trailer's fields are parsed and dropped, and counted, bytes and lines,
/// against what the head left of `Limits::max_header_bytes` and `Limits::max_headers`.
#[derive(Debug)]
pub(super) struct Chunked {
    /// Data bytes still allowed.
    body_left: usize,
    /// Header bytes still allowed, for the trailer (the head's bytes were counted).
    head_bytes_left: usize,
    /// Header lines still allowed, for the trailer (the head's lines were counted).
    head_lines_left: usize,
}

impl Chunked {
    /// A body of at most `max_body` bytes, after a head that left `head_bytes_left` header
    /// bytes and `head_lines_left` header lines of the limits.
    pub(super) fn new(max_body: usize, head_bytes_left: usize, head_lines_left: usize) -> Chunked {
        Chunked {
            body_left: max_body,
            head_bytes_left,
            head_lines_left,
        }
    }

    /// A chunk-size line, ending included: the size of the data that follows (0: the last
    /// chunk, the trailer comes next). A bare LF or a line outside the grammar is `Malformed`,
    /// a size over what is left of the body limit `BodyTooLarge`.
    pub(super) fn size_line(&mut self, raw: &[u8]) -> Result<usize, ReadError> {
        let line = raw.strip_suffix(b"\r\n").ok_or(ReadError::Malformed)?;
        let size = parse_chunk_size(line).ok_or(ReadError::Malformed)?;
        if size > self.body_left as u64 {
            return Err(ReadError::BodyTooLarge);
        }
        let size = size as usize;
        self.body_left -= size;
        Ok(size)
    }

    /// The line after a chunk's data, ending included: it must be a CRLF alone.
    pub(super) fn data_end(raw: &[u8]) -> Result<(), ReadError> {
        match raw {
            b"\r\n" => Ok(()),
            _ => Err(ReadError::Malformed),
        }
    }

    /// The most bytes the next trailer line may take, its ending included.
    pub(super) fn trailer_budget(&self) -> usize {
        self.head_bytes_left
    }

    /// A trailer line, ending included; `Ok(true)` for the empty line that ends the body. A
    /// line over the header limits is `HeadersTooLarge`; a bare LF, or a line that is not a
    /// header field, `Malformed`.
    pub(super) fn trailer_line(&mut self, raw: &[u8]) -> Result<bool, ReadError> {
        self.head_bytes_left = self
            .head_bytes_left
            .checked_sub(raw.len())
            .ok_or(ReadError::HeadersTooLarge)?;
        let line = raw.strip_suffix(b"\r\n").ok_or(ReadError::Malformed)?;
        if line.is_empty() {
            return Ok(true);
        }
        if self.head_lines_left == 0 {
            return Err(ReadError::HeadersTooLarge);
        }
        self.head_lines_left -= 1;
        parse_header(line).ok_or(ReadError::Malformed)?;
        Ok(false)
    }
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
        assert_eq!(strip_line_end(b"GET / HTTP/1.1\r\n"), b"GET / HTTP/1.1");
        assert_eq!(strip_line_end(b"GET / HTTP/1.1\n"), b"GET / HTTP/1.1");
        assert_eq!(strip_line_end(b"\r\n"), b"");
    }

    #[test]
    fn chunk_extensions_follow_the_grammar() {
        let valid: &[&[u8]] = &[
            b"a",
            b"A;n",
            b"a;n=v",
            b"a ;\tn = v",
            b"a;n=\"\"",
            b"a;n=\"x y; \\\" z=\"",
            b"a;n=v;m;o=\"p\"",
            b"a;n=\"\x80\xff\\\x80\"",
            b"a;!#$%&'*+-.^_`|~09az=!#$%&'*+-.^_`|~",
        ];
        for line in valid {
            let shown = String::from_utf8_lossy(line);
            assert_eq!(parse_chunk_size(line), Some(10), "{shown}");
        }
        let invalid: &[&[u8]] = &[
            b"",
            b"a ",
            b"a\t",
            b"a;",
            b"a; ",
            b"a;=v",
            b"a;n=",
            b"a;n= ",
            b"a;n=v ",
            b"a;n ",
            b"a;n v",
            b"a;n=v w",
            b"a;n=v,w",
            b"a;n@=v",
            b"a;n=\"open",
            b"a;n=\"x\"y",
            b"a;n=\"\x01\"",
            b"a;n=\"\x7f\"",
            b"a;n=\"\\\x7f\"",
            b"a;n=\"\\",
            b"a;n=\"x\r\"",
            b"a\r",
            b"a\x00",
            b"-1",
            b"+5",
            b"0x5",
            b"g",
        ];
        for line in invalid {
            let shown = String::from_utf8_lossy(line);
            assert_eq!(parse_chunk_size(line), None, "{shown}");
        }
        assert_eq!(parse_chunk_size(b"0000000000000000000001"), Some(1));
        assert_eq!(parse_chunk_size(b"fffffffffffffffffffff"), Some(u64::MAX));
    }

    /// The next line of `rest`, its LF included (all of `rest` when it has none).
    fn next_line<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        *rest = tail;
        line
    }

    /// Decodes a whole chunked body with `Chunked` the way `conn.rs` reads one (lines end at
    /// LF, a trailer line is cut at the budget); the body and what follows it.
    fn decode(
        input: &[u8],
        max_body: usize,
        head_bytes_left: usize,
        head_lines_left: usize,
    ) -> Result<(Vec<u8>, &[u8]), ReadError> {
        let mut chunked = Chunked::new(max_body, head_bytes_left, head_lines_left);
        let mut rest = input;
        let mut body = Vec::new();
        loop {
            let size = chunked.size_line(next_line(&mut rest))?;
            if size == 0 {
                break;
            }
            let (data, tail) = rest.split_at(size.min(rest.len()));
            body.extend_from_slice(data);
            rest = tail;
            Chunked::data_end(next_line(&mut rest))?;
        }
        loop {
            let line = next_line(&mut rest);
            if line.len() > chunked.trailer_budget() {
                return Err(ReadError::HeadersTooLarge);
            }
            if chunked.trailer_line(line)? {
                return Ok((body, rest));
            }
        }
    }

    #[test]
    fn chunked_bodies_are_decoded_with_crlf_lines() {
        fn ok(input: &[u8]) -> Result<(Vec<u8>, &[u8]), ReadError> {
            decode(input, 64, 100, 4)
        }
        assert_eq!(
            ok(b"5\r\nhello\r\n6;a=b;c=\"d;e\\\"f\"\r\n world\r\n0\r\n\r\nNEXT"),
            Ok((b"hello world".to_vec(), &b"NEXT"[..]))
        );
        assert_eq!(
            ok(b"0;last\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n"),
            Ok((Vec::new(), &b""[..]))
        );
        // A bare LF in a chunk-size line, after chunk data, in the trailer, or ending it.
        let bare_lf: &[&[u8]] = &[
            b"5\nhello\r\n0\r\n\r\n",
            b"5;x=y\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\n\r\n",
            b"0\r\nX-T: a\n\r\n",
            b"0\r\nX-T: a\r\n\n",
            b"0\r\n\n",
            b"5\r\nhello\r\r\n0\r\n\r\n",
        ];
        for input in bare_lf {
            let shown = String::from_utf8_lossy(input);
            assert_eq!(ok(input), Err(ReadError::Malformed), "{shown}");
        }
        // Data longer than its size, a bad extension, a trailer line that is no field.
        assert_eq!(ok(b"2\r\nabc\r\n0\r\n\r\n"), Err(ReadError::Malformed));
        assert_eq!(ok(b"2;a b\r\nab\r\n0\r\n\r\n"), Err(ReadError::Malformed));
        assert_eq!(ok(b"0\r\nno colon\r\n\r\n"), Err(ReadError::Malformed));
        assert_eq!(ok(b"0\r\n folded: x\r\n\r\n"), Err(ReadError::Malformed));
    }

    #[test]
    fn chunked_bodies_are_held_to_the_limits() {
        let body = b"5\r\nhello\r\n1\r\nx\r\n0\r\n\r\n";
        assert_eq!(decode(body, 6, 100, 4).map(|r| r.0), Ok(b"hellox".to_vec()));
        assert_eq!(decode(body, 5, 100, 4), Err(ReadError::BodyTooLarge));
        let huge = b"fffffffffffffffffffffffff\r\n";
        assert_eq!(decode(huge, 64, 100, 4), Err(ReadError::BodyTooLarge));
        // Trailer lines count against what the head left of the header line limit…
        let two = b"0\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(decode(two, 64, 100, 2).is_ok());
        assert_eq!(decode(two, 64, 100, 1), Err(ReadError::HeadersTooLarge));
        assert_eq!(decode(two, 64, 100, 0), Err(ReadError::HeadersTooLarge));
        // … and of the header byte limit, the final empty line included.
        let one = b"0\r\nA: 1\r\n\r\n";
        assert!(decode(one, 64, 8, 1).is_ok());
        assert_eq!(decode(one, 64, 7, 1), Err(ReadError::HeadersTooLarge));
        assert_eq!(decode(one, 64, 5, 1), Err(ReadError::HeadersTooLarge));
        // `trailer_line` counts on its own too (a caller that did not cut the line).
        let mut chunked = Chunked::new(0, 4, 4);
        assert_eq!(
            chunked.trailer_line(b"A: 1\r\n"),
            Err(ReadError::HeadersTooLarge)
        );
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
        let framing = |h: &[(&str, &str)]| facts(h).map(|f| f.framing(false));
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

        // HTTP/1.0 has no transfer codings: a chunked HTTP/1.0 request is refused.
        let chunked = facts(&[("transfer-encoding", "chunked")]).unwrap();
        assert_eq!(chunked.framing(true), None);
        let chunked_ka = facts(&[
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
        ])
        .unwrap();
        assert_eq!(chunked_ka.framing(true), None);
        let length = facts(&[("content-length", "3")]).unwrap();
        assert_eq!(length.framing(true), Some(Framing::Length(3)));
        assert_eq!(facts(&[]).unwrap().framing(true), Some(Framing::None));

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
