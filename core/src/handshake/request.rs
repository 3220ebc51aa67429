//! A validated upgrade request, and the server's answer to it (RFC 6455 §4.2).

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::accept_key::accept_key;
use super::extensions::{parse_extensions, token_string, ExtensionOffer};
use super::head::{trim, Headers};
use super::http::HttpRequest;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::HandshakeError;
use crate::time::Instant;

/// A complete, valid WebSocket upgrade request, owning its data.
///
/// Inspect it ([`path`](Self::path), [`origin`](Self::origin),
/// [`protocols`](Self::protocols), [`header`](Self::header), ...), then
/// [`accept`](Self::accept) or [`reject`](Self::reject) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    path: String,
    host: String,
    origin: Option<String>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionOffer>,
    headers: Headers,
    /// Our `Sec-WebSocket-Accept` value.
    accept: String,
    /// Bytes that followed the head: the first frames.
    pub(super) trailing: Vec<u8>,
}

/// Validates a parsed request head as a WebSocket upgrade (RFC 6455 §4.2.1).
///
/// RFC 6455 §4.2.1: "If the server, while reading the handshake, finds that the client did
/// not send a handshake that matches the description below [...] the server MUST stop
/// processing the client's handshake and return an HTTP response with an appropriate
/// error code (such as 400 Bad Request)."
pub(super) fn validate_upgrade(http: HttpRequest) -> Result<Request, HandshakeError> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request, including a "Request-URI"".
    if http.method() != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if !http.is_http11() {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    let path = String::from(http.target());
    let HttpRequest {
        headers, trailing, ..
    } = http;

    // A GET upgrade request has no body (RFC 9110 §9.3.1: content in a GET "has no
    // generally defined semantics"); bytes after the head must be frames, so a request
    // that announces a body is not a valid upgrade.
    if headers.count("Transfer-Encoding") > 0 {
        return Err(HandshakeError::UnexpectedBody);
    }
    for value in headers.all("Content-Length") {
        let value = trim(value);
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HandshakeError::Malformed);
        }
        if value.iter().any(|&b| b != b'0') {
            return Err(HandshakeError::UnexpectedBody);
        }
    }

    // §4.2.1 item 2: "A |Host| header field containing the server's authority."
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line".
    let host = match headers.count("Host") {
        0 => return Err(HandshakeError::MissingHost),
        1 => headers.get("Host").map(trim).unwrap_or_default(),
        _ => return Err(HandshakeError::Malformed),
    };
    if host.is_empty() {
        return Err(HandshakeError::MissingHost);
    }
    let host = utf8(host)?;

    // §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    // §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value."
    if !headers.has_token("Upgrade", "websocket") || !headers.has_token("Connection", "upgrade") {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }

    // §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded [...]
    // value that, when decoded, is 16 bytes in length."
    // §11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT appear more than once in an
    // HTTP request."
    if headers.count("Sec-WebSocket-Key") != 1 {
        return Err(HandshakeError::InvalidKey);
    }
    let key = headers
        .get("Sec-WebSocket-Key")
        .map(trim)
        .unwrap_or_default();
    // 16 bytes are 24 base64 characters with padding; checking first bounds the decode.
    if key.len() != 24 || STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::InvalidKey);
    }

    // §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // §4.2.2: "If this version does not match a version understood by the server, the
    // server MUST abort the WebSocket handshake described in this section and instead
    // send an appropriate HTTP error code (such as 426 Upgrade Required)".
    let version_is_13 = {
        let mut versions = headers.all("Sec-WebSocket-Version");
        versions.next().map(trim) == Some(b"13") && versions.next().is_none()
    };
    if !version_is_13 {
        return Err(HandshakeError::UnsupportedVersion);
    }

    // §4.2.1 item 7 (optional): "an |Origin| header field"; the caller's policy decides.
    let origin = match headers.get("Origin") {
        Some(origin) => Some(utf8(trim(origin))?),
        None => None,
    };

    // §4.1: "The elements that comprise this value MUST be non-empty strings with
    // characters in the range U+0021 to U+007E not including separator characters".
    let protocols = headers
        .list("Sec-WebSocket-Protocol")
        .map(token_string)
        .collect::<Result<Vec<_>, _>>()?;

    let mut extensions = Vec::new();
    for value in headers.all("Sec-WebSocket-Extensions") {
        parse_extensions(value, &mut extensions)?;
    }

    Ok(Request {
        path,
        host,
        origin,
        protocols,
        extensions,
        accept: accept_key(key),
        headers,
        trailing,
    })
}

/// `bytes` as an owned string, or `Malformed` if they are not UTF-8.
fn utf8(bytes: &[u8]) -> Result<String, HandshakeError> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| HandshakeError::Malformed)
}

impl Request {
    /// The request target as sent, query string included (`/chat?room=1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` header, trimmed.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Origin` header, trimmed, if the client sent one (browsers always do).
    ///
    /// RFC 6455 §4.2.2: "If the server does not wish to accept this connection, it MUST
    /// return an appropriate HTTP error code (e.g., 403 Forbidden)". To refuse it, call
    /// [`reject`](Self::reject) with [`HandshakeError::OriginRefused`].
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The subprotocols offered in `Sec-WebSocket-Protocol`, in the client's order of
    /// preference, across repeated headers.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.protocols.iter().map(String::as_str)
    }

    /// The extensions offered in `Sec-WebSocket-Extensions`, in order. None is accepted
    /// yet: the 101 response selects no extension.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// The value of the first header named `name` (ASCII case-insensitive), as sent.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The value of query parameter `name` exactly as sent, or `None` if absent.
    pub fn query_raw(&self, name: &str) -> Option<&str> {
        super::http::query_value(&self.path, name)
    }

    /// The `sockeye.v1` resume value the client sent: the `Sockeye-Resume` header, or,
    /// from a browser (which cannot set headers), the `sockeye_resume` query parameter
    /// (`docs/PROTOCOL.md` §1). Feed it to
    /// [`SessionStore::accept`](crate::session::SessionStore::accept).
    pub fn resume_value(&self) -> Option<&[u8]> {
        use crate::session::{RESUME_HEADER, RESUME_QUERY};
        self.header(RESUME_HEADER)
            .or_else(|| self.query_raw(RESUME_QUERY).map(str::as_bytes))
    }

    /// Accepts the upgrade and returns the open server [`Connection`].
    ///
    /// The 101 response is queued as the first chunk of the connection's
    /// [`poll_transmit`](Connection::poll_transmit), and the bytes that followed the
    /// request head in the same read are already fed to it: drain its events and
    /// transmits now.
    ///
    /// `protocol` selects a subprotocol. It is sent only if the client offered it (exact
    /// match); any other value is ignored and no `Sec-WebSocket-Protocol` is sent, since
    /// the client would have to fail the connection (§4.1). No extension is selected.
    pub fn accept(self, now: Instant, protocol: Option<&str>, config: Config) -> Connection {
        self.accept_with(now, protocol, config, None, |_| {})
    }

    /// [`accept`](Self::accept), also answering the client's permessage-deflate offers
    /// (RFC 7692) by the policy `deflate`: the first acceptable offer is selected in the
    /// 101 response and the connection learns the agreed
    /// [`DeflateParams`](crate::handshake::DeflateParams)
    /// ([`Connection::deflate_params`]); with no acceptable offer, or `deflate` off, this
    /// is exactly `accept`.
    #[cfg(feature = "deflate")]
    pub fn accept_deflate(
        self,
        now: Instant,
        protocol: Option<&str>,
        config: Config,
        deflate: &crate::handshake::DeflateConfig,
    ) -> Connection {
        let (params, extension) = deflate.answer_offers(&self.extensions).unzip();
        self.accept_with(now, protocol, config, extension.as_deref(), |connection| {
            connection.set_deflate(params, deflate)
        })
    }

    /// The 101 response, with `extension` as its `Sec-WebSocket-Extensions` when given;
    /// `setup` runs on the connection before the trailing bytes reach it.
    fn accept_with(
        self,
        now: Instant,
        protocol: Option<&str>,
        config: Config,
        extension: Option<&str>,
        setup: impl FnOnce(&mut Connection),
    ) -> Connection {
        let protocol = protocol.filter(|p| self.protocols.iter().any(|offered| offered == p));
        // §4.2.2 step 5: the handshake response.
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = protocol {
            let _ = write!(head, "Sec-WebSocket-Protocol: {protocol}\r\n");
        }
        if let Some(extension) = extension {
            let _ = write!(head, "Sec-WebSocket-Extensions: {extension}\r\n");
        }
        head.push_str("\r\n");
        let mut connection = Connection::server(config, now);
        connection.queue_raw(Bytes::from(head));
        setup(&mut connection);
        connection.handle_bytes(now, &self.trailing);
        connection
    }

    /// Refuses the upgrade: the HTTP error response to write before closing the
    /// transport (for example [`HandshakeError::OriginRefused`], 403).
    pub fn reject(self, error: &HandshakeError) -> Bytes {
        error.response()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::handshake::ServerHandshake;
    use alloc::string::ToString;

    /// The client's handshake of RFC 6455 §1.3.
    pub(crate) const SAMPLE: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// The §1.3 sample with the header `name` replaced by `lines` (header lines without
    /// line ends; none removes it).
    pub(crate) fn sample_with(name: &str, lines: &[&str]) -> String {
        let mut out = String::new();
        for line in SAMPLE.split("\r\n").filter(|l| !l.is_empty()) {
            let is_it = line
                .split(':')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name));
            if is_it {
                for l in lines {
                    out.push_str(l);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("\r\n");
        out
    }

    fn handle(input: &[u8]) -> Result<Option<Request>, HandshakeError> {
        ServerHandshake::new(&Config::default(), Instant::ZERO).handle_bytes(Instant::ZERO, input)
    }

    pub(crate) fn refused(input: &str) -> HandshakeError {
        handle(input.as_bytes()).unwrap_err()
    }

    fn accepted(input: &str) -> Request {
        handle(input.as_bytes()).unwrap().unwrap()
    }

    pub(crate) fn drain(connection: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = connection.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// A masked client text frame (RFC 6455 §5.7 "Hello", with its sample key).
    pub(crate) const MASKED_HELLO: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    #[test]
    fn the_resume_value_comes_from_the_header_or_else_the_query() {
        let header = sample_with(
            "Origin",
            &["Origin: http://example.com", "Sockeye-Resume: HH"],
        );
        let header = header.replacen("GET /chat", "GET /chat?sockeye_resume=QQ", 1);
        assert_eq!(accepted(&header).resume_value(), Some(&b"HH"[..]));
        let query = SAMPLE.replacen("GET /chat", "GET /chat?a=1&sockeye_resume=QQ", 1);
        assert_eq!(accepted(&query).resume_value(), Some(&b"QQ"[..]));
        assert_eq!(accepted(&query).query_raw("a"), Some("1"));
        let empty = SAMPLE.replacen("GET /chat", "GET /chat?sockeye_resume=", 1);
        assert_eq!(accepted(&empty).resume_value(), Some(&b""[..]));
        assert_eq!(accepted(SAMPLE).resume_value(), None);
        let other = SAMPLE.replacen("GET /chat", "GET /chat?a=1", 1);
        assert_eq!(accepted(&other).resume_value(), None);
    }

    #[test]
    fn rfc6455_1_3_sample_request_gets_the_sample_101() {
        let request = accepted(SAMPLE);
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.host(), "server.example.com");
        assert_eq!(request.origin(), Some("http://example.com"));
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert!(request.extensions().is_empty());
        assert_eq!(
            request.header("sec-websocket-key"),
            Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..])
        );
        let mut connection = request.accept(Instant::ZERO, Some("chat"), Config::default());
        assert_eq!(
            drain(&mut connection),
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(connection.poll_event(), None);
    }

    #[test]
    fn rfc6455_4_2_2_protocol_not_offered_is_not_sent() {
        for protocol in [None, Some("mqtt"), Some("CHAT")] {
            let mut connection =
                accepted(SAMPLE).accept(Instant::ZERO, protocol, Config::default());
            let head = drain(&mut connection);
            assert!(!head.windows(22).any(|w| w == b"Sec-WebSocket-Protocol"));
        }
    }

    #[test]
    fn rfc6455_4_2_1_requires_get() {
        let post = SAMPLE.replacen("GET", "POST", 1);
        assert_eq!(refused(&post), HandshakeError::MethodNotAllowed);
        assert_eq!(
            refused(&SAMPLE.replacen("GET", "get", 1)),
            HandshakeError::MethodNotAllowed
        );
        assert_eq!(HandshakeError::MethodNotAllowed.status(), 405);
    }

    #[test]
    fn rfc6455_4_2_1_requires_http_1_1_or_higher() {
        let old = SAMPLE.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(refused(&old), HandshakeError::UnsupportedHttpVersion);
        let h2 = SAMPLE.replacen("HTTP/1.1", "HTTP/2.0", 1);
        assert_eq!(refused(&h2), HandshakeError::UnsupportedHttpVersion);
        assert_eq!(HandshakeError::UnsupportedHttpVersion.status(), 400);
    }

    #[test]
    fn rfc6455_4_2_1_requires_one_host() {
        assert_eq!(
            refused(&sample_with("Host", &[])),
            HandshakeError::MissingHost
        );
        assert_eq!(
            refused(&sample_with("Host", &["Host: "])),
            HandshakeError::MissingHost
        );
        let twice = sample_with("Host", &["Host: a", "Host: b"]);
        assert_eq!(refused(&twice), HandshakeError::Malformed);
        assert_eq!(HandshakeError::MissingHost.status(), 400);
    }

    #[test]
    fn rfc6455_4_2_1_requires_upgrade_websocket() {
        for lines in [&[][..], &["Upgrade: h2c"], &["Upgrade: websocketx"]] {
            let input = sample_with("Upgrade", lines);
            assert_eq!(
                refused(&input),
                HandshakeError::NotWebSocketUpgrade,
                "{input}"
            );
        }
        accepted(&sample_with("Upgrade", &["Upgrade: WebSocket"]));
        accepted(&sample_with(
            "Upgrade",
            &["Upgrade: h2c", "upgrade: foo, websocket"],
        ));
        assert_eq!(HandshakeError::NotWebSocketUpgrade.status(), 426);
    }

    #[test]
    fn rfc6455_4_2_1_requires_connection_upgrade() {
        for lines in [
            &[][..],
            &["Connection: keep-alive"],
            &["Connection: upgraded"],
        ] {
            let input = sample_with("Connection", lines);
            assert_eq!(
                refused(&input),
                HandshakeError::NotWebSocketUpgrade,
                "{input}"
            );
        }
        accepted(&sample_with(
            "Connection",
            &["Connection: keep-alive, UPGRADE"],
        ));
        accepted(&sample_with(
            "Connection",
            &["Connection: keep-alive", "Connection: upgrade"],
        ));
    }

    #[test]
    fn rfc6455_4_2_1_requires_one_key_of_16_bytes() {
        for lines in [
            &[][..],
            &["Sec-WebSocket-Key: "],
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="; 2],
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"], // 15 bytes
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="], // 17 bytes
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA"], // no padding
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA*A=="],
            &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAB=="], // non-canonical
        ] {
            let input = sample_with("Sec-WebSocket-Key", lines);
            assert_eq!(refused(&input), HandshakeError::InvalidKey, "{input}");
        }
        accepted(&sample_with(
            "Sec-WebSocket-Key",
            &["Sec-WebSocket-Key:  AAAAAAAAAAAAAAAAAAAAAA== "],
        ));
        assert_eq!(HandshakeError::InvalidKey.status(), 400);
    }

    #[test]
    fn rfc6455_4_2_2_version_other_than_13_gets_426_naming_13() {
        for lines in [
            &[][..],
            &["Sec-WebSocket-Version: 8"],
            &["Sec-WebSocket-Version: 13, 8"],
            &["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13"],
        ] {
            let input = sample_with("Sec-WebSocket-Version", lines);
            assert_eq!(
                refused(&input),
                HandshakeError::UnsupportedVersion,
                "{input}"
            );
        }
        let response = HandshakeError::UnsupportedVersion.response();
        assert!(response.starts_with(b"HTTP/1.1 426 "));
        assert!(response
            .windows(25)
            .any(|w| w == b"Sec-WebSocket-Version: 13"));
    }

    #[test]
    fn rfc6455_4_2_2_refused_origin_gets_403() {
        let request = accepted(SAMPLE);
        assert_eq!(request.origin(), Some("http://example.com"));
        let response = request.reject(&HandshakeError::OriginRefused);
        assert!(response.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        assert!(response.ends_with(b"\r\n\r\norigin not allowed\n"));
        assert_eq!(accepted(&sample_with("Origin", &[])).origin(), None);
    }

    #[test]
    fn a_request_with_a_body_is_not_an_upgrade() {
        for lines in [
            &["Content-Length: 5"][..],
            &["Content-Length: 0", "Content-Length: 1"],
            &["Transfer-Encoding: chunked"],
        ] {
            let input = sample_with("Origin", lines);
            assert_eq!(refused(&input), HandshakeError::UnexpectedBody, "{input}");
        }
        let bad_length = sample_with("Origin", &["Content-Length: five"]);
        assert_eq!(refused(&bad_length), HandshakeError::Malformed);
        accepted(&sample_with("Origin", &["Content-Length: 00"]));
    }

    #[test]
    fn request_keeps_query_headers_protocols_and_extensions() {
        let input = sample_with(
            "Sec-WebSocket-Protocol",
            &[
                "Sec-WebSocket-Protocol: sockeye.v1 ,chat",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                "Sec-WebSocket-Protocol: superchat",
                "X-Token: abc",
            ],
        )
        .replacen("/chat", "/chat?room=1&user=2", 1);
        let request = accepted(&input);
        assert_eq!(request.path(), "/chat?room=1&user=2");
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["sockeye.v1", "chat", "superchat"]
        );
        assert_eq!(
            request.extensions(),
            [ExtensionOffer {
                name: "permessage-deflate".to_string(),
                params: alloc::vec![("client_max_window_bits".to_string(), None)],
            }]
        );
        assert_eq!(request.header("x-token"), Some(&b"abc"[..]));
        assert_eq!(request.header("X-Missing"), None);
        // No extension is ever selected.
        let head = drain(&mut request.accept(Instant::ZERO, Some("chat"), Config::default()));
        assert!(!head.windows(24).any(|w| w == b"Sec-WebSocket-Extensions"));
    }

    #[test]
    fn rfc6455_4_2_1_malformed_offers_are_refused() {
        let bad_protocol = sample_with("Sec-WebSocket-Protocol", &["Sec-WebSocket-Protocol: a b"]);
        assert_eq!(refused(&bad_protocol), HandshakeError::Malformed);
        let bad_extension = sample_with(
            "Sec-WebSocket-Protocol",
            &["Sec-WebSocket-Extensions: foo;"],
        );
        assert_eq!(refused(&bad_extension), HandshakeError::Malformed);
    }
}
