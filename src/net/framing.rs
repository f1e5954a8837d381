//! Checks of a request's header that Pingora's parser lets through but an edge proxy must
//! refuse: the ambiguities request smuggling is built on, and headers too large to keep.
//!
//! Pingora already answers 400 to invalid header names, obs-fold, bare CR, differing
//! `Content-Length` values and non-chunked `Transfer-Encoding`. What it accepts, and is
//! refused here, is framing two servers could read differently: `Content-Length` beside
//! `Transfer-Encoding` (Pingora drops the length and reads chunks; a backend or a proxy
//! behind might not), a repeated or comma-listed `Content-Length`, a repeated
//! `Transfer-Encoding`, lines ending in a bare LF, and HTTP/1.1 without `Host`.

use http::header::HOST;
use http::Version;
use pingora::http::RequestHeader;

/// How large a request header may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Bytes of the request line and header fields together (431 beyond).
    pub max_size: usize,
    /// Header fields (431 beyond).
    pub max_count: usize,
}

/// Why a request is refused, and with which status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// 400 or 431.
    pub status: u16,
    /// One line for the client and the debug log.
    pub reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Result<(), Rejection> {
    Err(Rejection { status, reason })
}

/// Checks a parsed request; `raw` is the header as received, for HTTP/1.x.
pub(crate) fn check(
    req: &RequestHeader,
    raw: Option<&[u8]>,
    limits: HeaderLimits,
) -> Result<(), Rejection> {
    if req.headers.len() > limits.max_count {
        return reject(431, "too many header fields");
    }
    let size = raw.map_or_else(|| h2_size(req), <[u8]>::len);
    if size > limits.max_size {
        return reject(431, "the request header is too large");
    }
    if req.version == Version::HTTP_11 && !req.headers.contains_key(HOST) {
        return reject(400, "an HTTP/1.1 request needs a Host header");
    }
    match raw {
        Some(raw) => check_raw(raw),
        None => Ok(()),
    }
}

/// HPACK's measure of a header list: names and values plus 32 bytes per field.
fn h2_size(req: &RequestHeader) -> usize {
    let fields: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    fields + req.uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// One pass over the raw header lines. It runs on every request, so lines are found with
/// `memchr` rather than byte by byte, and a field is told by the start of its line: Pingora
/// lets no name through that is followed by anything but its colon.
fn check_raw(raw: &[u8]) -> Result<(), Rejection> {
    let (mut lengths, mut encodings) = (0, 0);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', raw) {
        let line = &raw[start..end];
        start = end + 1;
        let Some(line) = line.strip_suffix(b"\r") else {
            // A blank line ends the header; ended by a bare LF, the check of the end refuses it.
            if line.is_empty() {
                continue;
            }
            return reject(400, "a header line ends in a bare LF; end lines with CRLF");
        };
        if let Some(value) = field_value(line, b"content-length:") {
            lengths += 1;
            if value.contains(&b',') {
                return reject(400, "Content-Length holds a list; send one length");
            }
        } else if field_value(line, b"transfer-encoding:").is_some() {
            encodings += 1;
        }
    }
    // What follows the last LF, if anything, is refused by the check of the header's end.
    if !raw.ends_with(b"\r\n\r\n") {
        return reject(400, "a header line ends in a bare LF; end lines with CRLF");
    }
    match (lengths, encodings) {
        (1.., 1..) => reject(
            400,
            "Content-Length and Transfer-Encoding together; send one of them",
        ),
        (2.., _) => reject(400, "Content-Length is repeated; send it once"),
        (_, 2..) => reject(400, "Transfer-Encoding is repeated; send it once"),
        _ => Ok(()),
    }
}

/// The value of `line` when it is the field `name` (lowercase, with its colon).
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (head, value) = line.split_at_checked(name.len())?;
    head.eq_ignore_ascii_case(name).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeaderLimits = HeaderLimits {
        max_size: 1024,
        max_count: 4,
    };

    fn parsed(raw: &str) -> RequestHeader {
        let mut lines = raw.split('\n').map(|l| l.trim_end_matches('\r'));
        let target = lines.next().unwrap().split(' ').nth(1).unwrap();
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            req.append_header(name.to_string(), value.trim()).unwrap();
        }
        req
    }

    fn status(raw: &str) -> Option<u16> {
        let req = parsed(raw);
        check(&req, Some(raw.as_bytes()), LIMITS)
            .err()
            .map(|r| r.status)
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            None
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
    }

    #[test]
    fn fields_named_alike_are_not_framing() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Lengths: 1, 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 1, 2\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encodings: x\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert_eq!(status(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: chunked\r\nTransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
    }

    #[test]
    fn http11_needs_host() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let raw = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(check(&req, Some(raw), LIMITS).unwrap_err().status, 400);
        req.set_version(Version::HTTP_10);
        assert!(check(&req, Some(b"GET / HTTP/1.0\r\n\r\n"), LIMITS).is_ok());
    }

    #[test]
    fn limits_give_431() {
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(status(many), Some(431));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nA: {}\r\n\r\n",
            "x".repeat(1024)
        );
        assert_eq!(status(&big), Some(431));
        let mut h2 = RequestHeader::build("GET", b"/", None).unwrap();
        h2.set_version(Version::HTTP_2);
        h2.append_header("a", "x".repeat(1000)).unwrap();
        assert_eq!(check(&h2, None, LIMITS).unwrap_err().status, 431);
    }
}
