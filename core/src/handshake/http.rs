//! One HTTP/1.x request-head parser for everything a server reads on its port: the
//! WebSocket upgrade ([`HttpRequest::into_upgrade`]) and any other request a server
//! answers beside it (an API, a health check), so a head is parsed once, by one parser,
//! under one set of limits.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::head::{parse_error, trim, CompleteHead, Headers};
use super::request::{validate_upgrade, Request};
use super::timed_head::TimedHead;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::time::Instant;

/// A parsed HTTP/1.0 or HTTP/1.1 request head, owning its data, and the bytes that
/// followed it in the same input (a body, or an upgrade's first frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    method: String,
    target: String,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor_version: u8,
    pub(super) headers: Headers,
    pub(super) trailing: Vec<u8>,
}

impl HttpRequest {
    /// The method as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, query string included (`/ws?user=kim`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target's path, without its query string.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// Whether the request is HTTP/1.1 (`false`: HTTP/1.0).
    pub fn is_http11(&self) -> bool {
        self.minor_version == 1
    }

    /// The value of query parameter `name`, percent-decoded (`+` is a space; an invalid
    /// escape is kept as it is), or `None` if absent.
    pub fn query(&self, name: &str) -> Option<String> {
        query_value(&self.target, name).map(percent_decode)
    }

    /// The value of query parameter `name` exactly as sent, or `None` if absent.
    pub fn query_raw(&self, name: &str) -> Option<&str> {
        query_value(&self.target, name)
    }

    /// The value of the first header field named `name` (ASCII case-insensitive), as sent.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The first header field named `name` as UTF-8 text, trimmed of spaces and tabs.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| core::str::from_utf8(trim(v)).ok())
    }

    /// Every value of the header fields named `name` (ASCII case-insensitive), in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.all(name)
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header_str("Authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// The length of the body the head announces, refusing the shapes used for request
    /// smuggling: a `Transfer-Encoding` (this parser reads `Content-Length` bodies only;
    /// with a `Content-Length` beside it, RFC 9112 §6.1 allows refusing), or
    /// `Content-Length` values that disagree, in one field or several (RFC 9110 §8.6).
    /// Identical repeats count as one. `Ok(None)`: no body announced.
    pub fn content_length(&self) -> Result<Option<u64>, BodyLengthError> {
        let has_length = self.headers.count("Content-Length") > 0;
        if self.headers.count("Transfer-Encoding") > 0 {
            return Err(match has_length {
                true => BodyLengthError::Conflicting,
                false => BodyLengthError::NotContentLength,
            });
        }
        let mut values = self
            .headers
            .all("Content-Length")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.any(|other| other != first) {
            return Err(BodyLengthError::Conflicting);
        }
        if first.is_empty() || first.len() > 19 || !first.iter().all(u8::is_ascii_digit) {
            return Err(BodyLengthError::Invalid);
        }
        Ok(Some(
            first.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
        ))
    }

    /// Bytes that followed the head in the input it was read from.
    pub fn trailing(&self) -> &[u8] {
        &self.trailing
    }

    /// Takes the bytes that followed the head, leaving none.
    pub fn take_trailing(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.trailing)
    }

    /// Validates the request as a WebSocket upgrade (RFC 6455 §4.2.1): the [`Request`] to
    /// accept or reject, or the error to answer ([`HandshakeError::response`]).
    pub fn into_upgrade(self) -> Result<Request, HandshakeError> {
        validate_upgrade(self)
    }
}

/// Why a request's body length cannot be read from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyLengthError {
    /// `Transfer-Encoding` beside `Content-Length`, or `Content-Length` values that
    /// disagree (400).
    Conflicting,
    /// A `Content-Length` that is not a decimal number (400).
    Invalid,
    /// A `Transfer-Encoding` body, which this parser does not read (411: send a length).
    NotContentLength,
}

impl BodyLengthError {
    /// The status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            BodyLengthError::NotContentLength => 411,
            BodyLengthError::Conflicting | BodyLengthError::Invalid => 400,
        }
    }
}

impl core::fmt::Display for BodyLengthError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BodyLengthError::Conflicting => "conflicting Content-Length or Transfer-Encoding",
            BodyLengthError::Invalid => "invalid Content-Length",
            BodyLengthError::NotContentLength => "only Content-Length bodies are accepted",
        })
    }
}

/// Reads one request head under a deadline and a size limit, whatever the request: feed
/// every read to [`handle_bytes`](Self::handle_bytes) until it yields an [`HttpRequest`]
/// or an error (answer [`HandshakeError::response`] and close), and call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct RequestReader {
    head: TimedHead,
    max_headers: usize,
}

impl RequestReader {
    /// A reader whose client connected at `now`: the whole head must arrive within
    /// `config.handshake_timeout`, in at most `config.max_handshake_bytes` bytes and
    /// `config.max_handshake_headers` fields.
    pub fn new(config: &Config, now: Instant) -> Self {
        RequestReader {
            head: TimedHead::new(config, now),
            max_headers: config.max_handshake_headers,
        }
    }

    /// Feeds bytes read from the client, in chunks of any size: `Ok(None)` while the head
    /// is incomplete, the request once it is whole (later calls answer `Ok(None)`), or
    /// the error to answer (later calls answer it again).
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<HttpRequest>, HandshakeError> {
        let max_headers = self.max_headers;
        self.head
            .handle_bytes(now, data, check_request_line, |head| {
                parse_http(head, max_headers)
            })
    }

    /// The deadline for the head while it is being read; `None` once there is a result.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.head.poll_timeout()
    }

    /// Bytes of head buffered so far.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.head.buffered()
    }

    /// Fails with [`HandshakeError::Timeout`] (408) once the deadline has passed with the
    /// head incomplete; an early call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.head.handle_timeout(now)
    }

    /// The client ended its side of the stream at `now`: with the head incomplete,
    /// [`HandshakeError::UnexpectedEof`] (later calls answer it again); once there is a
    /// request, a no-op.
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.head.handle_eof(now)
    }
}

/// Refuses a request line that can never start a valid request, as soon as it arrives.
pub(super) fn check_request_line(line: &[u8]) -> Result<(), HandshakeError> {
    let mut no_headers = [httparse::EMPTY_HEADER; 0];
    httparse::Request::new(&mut no_headers)
        .parse(line)
        .map(|_| ())
        .map_err(parse_error)
}

/// Parses a complete request head.
pub(super) fn parse_http(
    complete: CompleteHead,
    max_headers: usize,
) -> Result<HttpRequest, HandshakeError> {
    let mut header_array: Vec<httparse::Header<'_>> = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut header_array);
    match parsed.parse(&complete.head).map_err(parse_error)? {
        httparse::Status::Complete(_) => {}
        // Only a head made of blank lines ends at a blank line yet stays partial.
        httparse::Status::Partial => return Err(HandshakeError::Malformed),
    }
    let target = match parsed.path {
        Some(path) if !path.is_empty() => String::from(path),
        _ => return Err(HandshakeError::Malformed),
    };
    Ok(HttpRequest {
        method: String::from(parsed.method.unwrap_or_default()),
        target,
        minor_version: parsed.version.unwrap_or(1),
        headers: Headers::from_httparse(parsed.headers),
        trailing: complete.trailing,
    })
}

/// The path of a request target (before `?`).
pub(super) fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

/// The value of query parameter `name` in `target` as sent; a parameter without `=` has
/// an empty value.
pub(super) fn query_value<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// `%41` → `A`, `+` → space; invalid escapes are kept as they are, invalid UTF-8 is
/// replaced.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<HttpRequest>, HandshakeError> {
        RequestReader::new(&Config::default(), Instant::ZERO).handle_bytes(Instant::ZERO, raw)
    }

    #[test]
    fn parses_method_target_query_headers_and_bearer() {
        let raw = b"POST /ws?user=al%20ice&token=a.b.c&flag HTTP/1.1\r\nHost: x\r\n\
                    authorization: Bearer  t0k \r\n\r\nrest";
        let request = parse(raw).unwrap().unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.path(), "/ws");
        assert!(request.is_http11());
        assert_eq!(request.query("user").as_deref(), Some("al ice"));
        assert_eq!(request.query_raw("user"), Some("al%20ice"));
        assert_eq!(request.query("token").as_deref(), Some("a.b.c"));
        assert_eq!(request.query("flag").as_deref(), Some(""));
        assert_eq!(request.query("nope"), None);
        assert_eq!(request.bearer(), Some("t0k"));
        assert_eq!(request.trailing(), b"rest");
    }

    #[test]
    fn partial_and_bad_heads() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost").unwrap(), None);
        assert_eq!(
            parse(b"\x00\x01 nonsense\r\n\r\n").unwrap_err(),
            HandshakeError::Malformed
        );
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(percent_decode("a+b"), "a b");
    }

    fn length_of(headers: &str) -> Result<Option<u64>, BodyLengthError> {
        let raw = alloc::format!("POST /api/push HTTP/1.1\r\n{headers}\r\n");
        parse(raw.as_bytes()).unwrap().unwrap().content_length()
    }

    #[test]
    fn content_length_smuggling_shapes_are_refused() {
        assert_eq!(length_of("Content-Length: 5\r\n"), Ok(Some(5)));
        assert_eq!(length_of(""), Ok(None));
        let same = "Content-Length: 5\r\nContent-Length: 5\r\n";
        assert_eq!(length_of(same), Ok(Some(5)));
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(length_of(bad), Err(BodyLengthError::Conflicting), "{bad:?}");
        }
        for bad in [
            "Content-Length: -1\r\n",
            "Content-Length: 99999999999999999999\r\n",
        ] {
            assert_eq!(length_of(bad), Err(BodyLengthError::Invalid), "{bad:?}");
        }
        assert_eq!(
            length_of("Transfer-Encoding: chunked\r\n"),
            Err(BodyLengthError::NotContentLength)
        );
    }
}
