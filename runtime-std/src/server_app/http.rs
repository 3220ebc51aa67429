//! Just enough HTTP/1.1 to route a request on one port: read a head under a size limit and a
//! deadline (431 / 408), read a `Content-Length` body under a limit (413), write an answer.
//!
//! The WebSocket upgrade itself is validated by the core's `ServerHandshake`, which is fed
//! the bytes read here; this module only decides where a request goes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Most header fields accepted in a head (431 beyond), as the core's default.
pub(crate) const MAX_HEADERS: usize = 64;

/// A parsed request head, owning its data.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The request target as sent, query string included.
    pub(crate) target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Length of the head in the buffer it was read into; bytes after it are the body
    /// (or, for an upgrade, the first frames).
    pub(crate) len: usize,
}

impl Head {
    /// The path without its query string.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The value of query parameter `name`, percent-decoded.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
    }

    /// The first header named `name` (ASCII case-insensitive), as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub(crate) fn bearer(&self) -> Option<&str> {
        let value = self.header("Authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// Why no head could be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The peer closed (or the socket failed) before a whole head: answer nothing.
    Gone,
    /// Over the size or header-count limit: 431.
    TooLarge,
    /// Not whole by the deadline: 408.
    Timeout,
    /// Not HTTP/1.x: 400.
    Malformed,
}

impl HeadError {
    /// The answer to write, if any.
    pub(crate) fn response(&self) -> Option<Vec<u8>> {
        match self {
            HeadError::Gone => None,
            HeadError::TooLarge => Some(text(431, "request head too large")),
            HeadError::Timeout => Some(text(408, "request head too slow to arrive")),
            HeadError::Malformed => Some(text(400, "malformed http head")),
        }
    }
}

/// How long until `deadline`, at least a millisecond (a zero read timeout is refused).
fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| left.max(Duration::from_millis(1)))
}

/// Reads into `buf` once, waiting at most until `deadline`; `Ok(0)` is end of stream.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: usize,
    deadline: Instant,
) -> Result<usize, HeadError> {
    let timeout = remaining(deadline).ok_or(HeadError::Timeout)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|_| HeadError::Gone)?;
    let start = buf.len();
    buf.resize(start + chunk, 0);
    let result = loop {
        match stream.read(&mut buf[start..]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match result {
        Ok(n) => {
            buf.truncate(start + n);
            Ok(n)
        }
        Err(e) => {
            buf.truncate(start);
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(HeadError::Timeout),
                _ => Err(HeadError::Gone),
            }
        }
    }
}

/// Reads a request head into `buf` (which may end up holding bytes past it), at most
/// `max_bytes` long and whole before `deadline`.
pub(crate) fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_bytes: usize,
    deadline: Instant,
) -> Result<Head, HeadError> {
    loop {
        if let Some(head) = parse_head(buf)? {
            return Ok(head);
        }
        if buf.len() >= max_bytes {
            return Err(HeadError::TooLarge);
        }
        // Small reads: most heads fit in one, and a large buffer per idle connection would
        // cost memory for nothing.
        let chunk = (max_bytes - buf.len()).min(2048);
        if read_some(stream, buf, chunk, deadline)? == 0 {
            return Err(HeadError::Gone);
        }
    }
}

/// Parses the head at the start of `buf`, if it is whole.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    // On the heap: 2 KiB of stack would stay resident for each connection's whole life.
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    Ok(Some(Head {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        len,
    }))
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// No usable `Content-Length` (or a `Transfer-Encoding`): 411 / 400.
    Length(u16, &'static str),
    /// Longer than allowed: 413.
    TooLarge,
    /// The peer went away or was too slow.
    Gone,
}

/// Reads the `Content-Length` body that follows `head` in `buf` (reading more from the
/// stream as needed), at most `max_bytes`, before `deadline`.
pub(crate) fn read_body(
    stream: &mut TcpStream,
    head: &Head,
    buf: &mut Vec<u8>,
    max_bytes: usize,
    deadline: Instant,
) -> Result<Vec<u8>, BodyError> {
    let length = body_length(head)?;
    if length > max_bytes {
        return Err(BodyError::TooLarge);
    }
    let end = head.len + length;
    while buf.len() < end {
        let chunk = (end - buf.len()).min(16 * 1024);
        match read_some(stream, buf, chunk, deadline) {
            Ok(0) | Err(_) => return Err(BodyError::Gone),
            Ok(_) => {}
        }
    }
    Ok(buf[head.len..end].to_vec())
}

/// The body length a request head declares. Request smuggling shapes are refused: a
/// `Transfer-Encoding` next to a `Content-Length` (RFC 9112 §6.1: "A server MAY reject
/// a request that contains both [...]") and `Content-Length` values that disagree
/// (RFC 9110 §8.6: a list of differing values is invalid), whether in one header or
/// several, are 400; identical repeats are one length.
fn body_length(head: &Head) -> Result<usize, BodyError> {
    let mut lengths = head
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Content-Length"))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(|v| v.trim_ascii());
    let has_length = head.header("Content-Length").is_some();
    if head.header("Transfer-Encoding").is_some() {
        return Err(match has_length {
            true => BodyError::Length(400, "Transfer-Encoding with Content-Length"),
            false => BodyError::Length(411, "only Content-Length bodies are accepted"),
        });
    }
    let Some(first) = lengths.next() else {
        return Err(BodyError::Length(411, "Content-Length required"));
    };
    if lengths.any(|other| other != first) {
        return Err(BodyError::Length(400, "conflicting Content-Length values"));
    }
    match std::str::from_utf8(first) {
        Ok(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().map_err(|_| BodyError::TooLarge)
        }
        _ => Err(BodyError::Length(400, "invalid Content-Length")),
    }
}

/// `answer` without its body, for a `HEAD` request (RFC 9110 §9.3.2: "The server SHOULD
/// send the same header fields [...] but without the content").
pub(crate) fn without_body(mut answer: Vec<u8>) -> Vec<u8> {
    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        answer.truncate(end + 4);
    }
    answer
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response with `Connection: close`.
pub(crate) fn response(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A plain-text answer with a one-line reason, as the core's handshake errors are.
pub(crate) fn text(status: u16, reason: &str) -> Vec<u8> {
    response(status, "text/plain", "", format!("{reason}\n").as_bytes())
}

/// A JSON error `{"error":"reason"}`.
pub(crate) fn json_error(status: u16, reason: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": reason }).to_string();
    response(status, "application/json", "", body.as_bytes())
}

/// A JSON answer.
pub(crate) fn json(status: u16, value: &serde_json::Value) -> Vec<u8> {
    response(status, "application/json", "", value.to_string().as_bytes())
}

/// Writes `bytes` and closes at once, without waiting for the peer (the accept loop,
/// which must not stall, answering while out of descriptors).
pub(crate) fn answer_now(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Writes `bytes` and closes the connection politely: FIN, then a short wait for the
/// peer's, so unread request bytes do not turn into a reset that eats the answer.
pub(crate) fn answer_and_close(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(bytes).is_err() {
        return;
    }
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// `%41` → `A`, `+` → space; invalid escapes are kept as they are.
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

    #[test]
    fn head_parses_query_headers_and_bearer() {
        let raw = b"GET /ws?user=al%20ice&token=a.b.c HTTP/1.1\r\nHost: x\r\n\
                    authorization: Bearer  t0k \r\n\r\nrest";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.path(), "/ws");
        assert_eq!(head.query("user").as_deref(), Some("al ice"));
        assert_eq!(head.query("token").as_deref(), Some("a.b.c"));
        assert_eq!(head.query("nope"), None);
        assert_eq!(head.bearer(), Some("t0k"));
        assert_eq!(&raw[head.len..], b"rest");
    }

    #[test]
    fn partial_and_bad_heads() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert_eq!(
            parse_head(b"\x00\x01 nonsense\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%"), "%");
    }

    fn length_of(raw: &[u8]) -> Result<usize, BodyError> {
        body_length(&parse_head(raw).unwrap().unwrap())
    }

    #[test]
    fn content_length_smuggling_shapes_are_400() {
        let post = |headers: &str| format!("POST /api/push HTTP/1.1\r\n{headers}\r\n");
        assert_eq!(
            length_of(post("Content-Length: 5\r\n").as_bytes()).ok(),
            Some(5)
        );
        let same = post("Content-Length: 5\r\nContent-Length: 5\r\n");
        assert_eq!(length_of(same.as_bytes()).ok(), Some(5));
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: -1\r\n",
        ] {
            let got = length_of(post(bad).as_bytes());
            assert!(matches!(got, Err(BodyError::Length(400, _))), "{bad:?}");
        }
        let chunked = post("Transfer-Encoding: chunked\r\n");
        assert!(matches!(
            length_of(chunked.as_bytes()),
            Err(BodyError::Length(411, _))
        ));
    }

    #[test]
    fn a_head_answer_has_the_headers_and_no_body() {
        let full = response(200, "text/plain", "", b"ok\n");
        let head = without_body(full.clone());
        assert!(head.ends_with(
            b"Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(head.len() + 3, full.len());
    }

    #[test]
    fn responses_carry_their_length() {
        let r = String::from_utf8(json_error(404, "no such path")).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 24\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n{\"error\":\"no such path\"}"), "{r}");
    }
}
