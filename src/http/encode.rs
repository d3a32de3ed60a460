//! Response encoding: a handler's `Response` turned into the bytes of an HTTP/1.1 response
//! (`encode_response`), with the reason phrases and the decimal numbers it needs. The server
//! owns the framing, so this is where the handler's own framing headers are dropped and header
//! values are cleaned. No I/O: `conn.rs` and `accept.rs` write the bytes.

use super::parse::is_tchar;
use super::Response;

/// The reason phrase for a status code.
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends the decimal digits of `n`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Serialises a response into `out` (cleared first). The server owns the framing: the
/// handler's own `Content-Length`, `Transfer-Encoding` and `Connection` headers are dropped,
/// header names that are not tokens are dropped, and CR and LF are stripped from values.
pub(super) fn encode_response(
    out: &mut Vec<u8>,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
) {
    let status = if (200..=999).contains(&resp.status) {
        resp.status
    } else {
        log::warn!("handler returned status {}; sending 500", resp.status);
        500
    };
    let reason = reason_phrase(status);
    // 204 and 304 carry neither a body nor (here) a Content-Length.
    let bodiless = status == 204 || status == 304;
    let body: &[u8] = if head_only || bodiless {
        &[]
    } else {
        &resp.body
    };
    let mut size = b"HTTP/1.1 000 \r\n".len() + reason.len();
    size += b"Content-Length: \r\n".len() + 20 + b"Connection: keep-alive\r\n\r\n".len();
    for (name, value) in &resp.headers {
        size += name.len() + value.len() + 4;
    }
    size += body.len();
    out.clear();
    out.reserve(size);

    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            log::warn!("dropping a response header with an invalid name: {name:?}");
            continue;
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        let value = value.as_bytes();
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            out.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
        } else {
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, resp.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_bodiless_status_without_a_length() {
        let mut out = Vec::new();
        encode_response(&mut out, &Response::text(204, "gone"), false, true);
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
