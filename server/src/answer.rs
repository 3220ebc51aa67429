//! The HTTP answers the layer writes: whole responses with `Connection: close`.

use sockeye_core::handshake::reason_phrase;

/// A whole response with `Connection: close`; `extra` is more header lines, each ending
/// in `\r\n`. Not to be cached (`Cache-Control: no-store`): most answers describe the
/// server's state at one moment.
pub(crate) fn response(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    cacheable(status, content_type, "no-store", extra, body)
}

/// [`response`] with its own `Cache-Control` value, for answers a cache may keep.
pub(crate) fn cacheable(
    status: u16,
    content_type: &str,
    cache_control: &str,
    extra: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: {cache_control}\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `304 Not Modified` with `Connection: close`; `extra` is its header lines (the `ETag`
/// and `Cache-Control` the 200 would have carried, RFC 9110 §15.4.5). No `Content-Type`
/// and no `Content-Length`: a 304 never has a body (RFC 9112 §6.3), and a
/// `Content-Length` there would have to be the 200's length (RFC 9110 §8.6).
pub(crate) fn not_modified(extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 304 {}\r\n{extra}Connection: close\r\n\r\n",
        reason_phrase(304)
    )
    .into_bytes()
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

/// `answer` without its body, for a `HEAD` request (RFC 9110 §9.3.2: "The server SHOULD
/// send the same header fields [...] but without the content").
pub(crate) fn without_body(mut answer: Vec<u8>) -> Vec<u8> {
    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        answer.truncate(end + 4);
    }
    answer
}

/// The status code of a response we wrote.
pub(crate) fn status_of(answer: &[u8]) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn responses_carry_their_length_and_status() {
        let r = json_error(404, "no such path");
        assert_eq!(status_of(&r), 404);
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 24\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n{\"error\":\"no such path\"}"), "{r}");
    }
}
