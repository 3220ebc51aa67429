//! The HTTP/1.1 Upgrade handshake of RFC 6455 §4, server and client.
//!
//! Both sides are sans-IO state machines with the core's usual surface:
//!
//! - [`ServerHandshake`]: feed it the bytes the client sent with
//!   [`handle_bytes`](ServerHandshake::handle_bytes) until it yields a validated
//!   [`Request`], then [`accept`](Request::accept) it (you get the open
//!   [`Connection`](crate::Connection), the 101 response already queued) or
//!   [`reject`](Request::reject) it. On an error, write
//!   [`HandshakeError::response`] and close.
//! - [`ClientHandshake`]: write what [`poll_transmit`](ClientHandshake::poll_transmit)
//!   gives, feed the server's answer to [`handle_bytes`](ClientHandshake::handle_bytes)
//!   until it yields a [`Response`], then turn that into the open connection with
//!   [`into_connection`](Response::into_connection).
//!
//! On both sides, re-arm a timer from `poll_timeout` after every call and call
//! `handle_timeout` when it fires. Bytes that follow the head in the same read belong to
//! the frame layer: they are kept and fed to the connection, never lost. Chunking never
//! matters, and no head is buffered past [`Config::max_handshake_bytes`](crate::Config).

mod accept_key;
mod client;
#[cfg(feature = "deflate")]
pub mod deflate;
mod extensions;
mod head;
mod http;
mod request;
mod response;
mod server;
mod timed_head;

use alloc::string::String;
use bytes::Bytes;
use core::fmt::Write as _;

use crate::error::{HandshakeError, StoreError};

pub use accept_key::accept_key;
pub use client::{ClientHandshake, ClientRequest};
#[cfg(feature = "deflate")]
pub use deflate::{check_response, DeflateConfig, DeflateParams};
pub use extensions::ExtensionOffer;
pub use http::{BodyLengthError, HttpRequest, RequestReader};
pub use request::Request;
pub use response::Response;
pub use server::ServerHandshake;

/// The reason phrase of a status: RFC 9110 §15's, and RFC 6585's 428, 429, 431 and 511
/// (an accept hook may refuse an upgrade with any of them); "Unknown" for the rest, which
/// clients must accept (RFC 9112 §4: the phrase carries no meaning).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

impl HandshakeError {
    /// The HTTP response a server writes before closing the transport, refusing the
    /// upgrade: the status from [`HandshakeError::status`], `Connection: close`, and a
    /// one-line plain-text reason (this error's `Display`).
    ///
    /// A 405 carries `Allow: GET`; a 426 carries `Upgrade: websocket` (RFC 9110 §15.5.22:
    /// "The server MUST send an Upgrade header field in a 426 response") and
    /// `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2: the server "MUST [...] send [...] a
    /// |Sec-WebSocket-Version| header field indicating the version(s) the server is
    /// capable of understanding").
    ///
    /// Allocates the response (a few hundred bytes).
    pub fn response(&self) -> Bytes {
        error_response(self.status(), self)
    }
}

impl StoreError {
    /// The HTTP response a server writes before closing the transport when its
    /// [`SessionStore`](crate::SessionStore) cannot take the upgrade: 400 for a malformed
    /// `Sockeye-Resume`, 503 when `max_sessions` sessions are live (`docs/PROTOCOL.md` §1),
    /// with `Connection: close` and a one-line plain-text reason.
    pub fn response(&self) -> Bytes {
        error_response(self.status(), self)
    }
}

/// An HTTP error response: `status`, the headers its status requires, and `reason` as a
/// one-line plain-text body.
fn error_response(status: u16, reason: &dyn core::fmt::Display) -> Bytes {
    let mut body = String::new();
    let _ = writeln!(body, "{reason}");
    let mut out = String::with_capacity(200 + body.len());
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    if status == 426 {
        out.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(error: &HandshakeError) -> String {
        String::from_utf8(error.response().to_vec()).unwrap()
    }

    #[test]
    fn rfc6455_4_2_2_version_426_names_version_13() {
        let body = "unsupported Sec-WebSocket-Version (13 required)\n";
        assert_eq!(
            text(&HandshakeError::UnsupportedVersion),
            alloc::format!(
                "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn not_an_upgrade_426_names_the_upgrade() {
        let response = text(&HandshakeError::NotWebSocketUpgrade);
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nUpgrade: websocket\r\n"));
    }

    #[test]
    fn store_errors_answer_400_and_503() {
        let full = String::from_utf8(StoreError::Full.response().to_vec()).unwrap();
        assert!(full.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(full.ends_with("\r\n\r\ntoo many sessions\n"));
        let bad = StoreError::MalformedResume(crate::EnvelopeError::Truncated).response();
        assert!(bad.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn method_405_allows_get() {
        let response = text(&HandshakeError::MethodNotAllowed);
        assert!(response.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"));
    }

    #[test]
    fn every_response_parses_and_its_length_is_right() {
        for error in [
            HandshakeError::Malformed,
            HandshakeError::MissingHost,
            HandshakeError::HeadTooLarge,
            HandshakeError::TooManyHeaders,
            HandshakeError::Timeout,
            HandshakeError::OriginRefused,
            HandshakeError::InvalidKey,
            HandshakeError::UnexpectedBody,
        ] {
            let bytes = error.response();
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut response = httparse::Response::new(&mut headers);
            let len = match response.parse(&bytes).unwrap() {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial => panic!("partial response"),
            };
            assert_eq!(response.code, Some(error.status()));
            let body = &bytes[len..];
            assert_eq!(body, alloc::format!("{error}\n").as_bytes());
            let content_length = response
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .unwrap();
            assert_eq!(
                content_length.value,
                alloc::format!("{}", body.len()).as_bytes()
            );
        }
    }
}
