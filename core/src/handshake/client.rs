//! The client side of the opening handshake (RFC 6455 §4.1).

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::accept_key::accept_key;
use super::response::{parse_response, response_error, DeflateOffer, Response};
use super::timed_head::TimedHead;
use crate::config::Config;
use crate::entropy::Entropy;
use crate::error::HandshakeError;
use crate::time::Instant;

/// What a client asks for in its upgrade request.
///
/// Carriage returns, line feeds and NULs in any field are dropped, and spaces in `path`
/// are sent as `%20`, so no value can end a line or inject a header; header names keep
/// only token characters. Do not repeat the handshake's own headers (`Host`, `Upgrade`,
/// `Connection`, `Sec-WebSocket-*`, `Origin`) in `headers`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientRequest<'a> {
    /// The server's authority, sent as `Host` (`example.com` or `example.com:8080`).
    pub host: &'a str,
    /// The request target with any query string (`/chat?room=1`); empty means `/`.
    pub path: &'a str,
    /// Subprotocols to offer, most preferred first; none sends no
    /// `Sec-WebSocket-Protocol`.
    pub protocols: &'a [&'a str],
    /// The `Origin` to send, if any (browsers always send one).
    pub origin: Option<&'a str>,
    /// Extra header fields, such as an auth token, sent after the handshake's own.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The client side of the opening handshake: sends the upgrade request and checks the
/// server's answer.
///
/// Write what [`poll_transmit`](Self::poll_transmit) returns, then feed every read to
/// [`handle_bytes`](Self::handle_bytes) until it returns a [`Response`] or an error, and
/// re-arm a timer from [`poll_timeout`](Self::poll_timeout) after each call. On an error,
/// close the transport (RFC 6455 §4.1: the client "MUST _Fail the WebSocket Connection_").
#[derive(Debug)]
pub struct ClientHandshake {
    request: Option<Bytes>,
    head: TimedHead,
    max_headers: usize,
    /// The `Sec-WebSocket-Accept` the server must answer.
    accept: String,
    /// The subprotocols we offered.
    protocols: Vec<String>,
    /// The permessage-deflate policy offered, if any.
    deflate: Option<DeflateOffer>,
}

/// Appends `value` without CR, LF and NUL, so it cannot end the line.
fn push_field(out: &mut String, value: &str) {
    out.extend(value.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')));
}

impl ClientHandshake {
    /// Builds the upgrade request at `now`: `GET` `request.path` `HTTP/1.1` with `Host`,
    /// `Upgrade: websocket`, `Connection: Upgrade`, a fresh `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version: 13`, then `Origin`, `Sec-WebSocket-Protocol` and the extra
    /// headers when given. The server must answer within `config.handshake_timeout`, in
    /// at most `config.max_handshake_bytes` and `config.max_handshake_headers` fields.
    ///
    /// RFC 6455 §4.1: "The value of this header field MUST be a nonce consisting of a
    /// randomly selected 16-byte value that has been base64-encoded": the 16 bytes come
    /// from `entropy`, which must be unpredictable in production (§10.3).
    ///
    /// Allocates the request head.
    pub fn new(
        config: &Config,
        now: Instant,
        request: ClientRequest<'_>,
        entropy: &mut dyn Entropy,
    ) -> Self {
        let mut nonce = [0u8; 16];
        entropy.fill(&mut nonce);
        let key = STANDARD.encode(nonce);

        let mut head = String::with_capacity(256);
        head.push_str("GET ");
        if request.path.is_empty() {
            head.push('/');
        }
        for c in request.path.chars() {
            match c {
                ' ' => head.push_str("%20"),
                '\r' | '\n' | '\0' => {}
                c => head.push(c),
            }
        }
        // §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at
        // least 1.1." "The request MUST contain a |Host| header field".
        head.push_str(" HTTP/1.1\r\nHost: ");
        push_field(&mut head, request.host);
        // §4.1: "The request MUST contain an |Upgrade| header field whose value MUST
        // include the "websocket" keyword." "The request MUST contain a |Connection|
        // header field whose value MUST include the "Upgrade" token." "The request MUST
        // include a header field with the name |Sec-WebSocket-Version|. The value of this
        // header field MUST be 13."
        head.push_str("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        head.push_str(&key);
        head.push_str("\r\nSec-WebSocket-Version: 13\r\n");
        if let Some(origin) = request.origin {
            head.push_str("Origin: ");
            push_field(&mut head, origin);
            head.push_str("\r\n");
        }
        if !request.protocols.is_empty() {
            head.push_str("Sec-WebSocket-Protocol: ");
            for (i, protocol) in request.protocols.iter().enumerate() {
                if i > 0 {
                    head.push_str(", ");
                }
                push_field(&mut head, protocol);
            }
            head.push_str("\r\n");
        }
        for (name, value) in request.headers {
            head.extend(
                name.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c)),
            );
            head.push_str(": ");
            push_field(&mut head, value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");

        ClientHandshake {
            request: Some(Bytes::from(head)),
            head: TimedHead::new(config, now),
            max_headers: config.max_handshake_headers,
            accept: accept_key(key.as_bytes()),
            protocols: request
                .protocols
                .iter()
                .map(|p| {
                    p.chars()
                        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                        .collect()
                })
                .collect(),
            deflate: None,
        }
    }

    /// [`new`](Self::new), also offering permessage-deflate (RFC 7692) by the policy
    /// `deflate` ([`DeflateConfig::offer_value`](super::DeflateConfig::offer_value)); the
    /// [`Response`] then says what the server agreed to, and its connection uses it. A
    /// disabled policy offers nothing, as `new` does.
    #[cfg(feature = "deflate")]
    pub fn with_deflate(
        config: &Config,
        now: Instant,
        request: ClientRequest<'_>,
        entropy: &mut dyn Entropy,
        deflate: &super::DeflateConfig,
    ) -> Self {
        let mut handshake = ClientHandshake::new(config, now, request, entropy);
        if let Some(offer) = deflate.offer_value() {
            let head = handshake.request.take().unwrap_or_default();
            // Before the blank line that ends the head.
            let mut with = Vec::with_capacity(head.len() + offer.len() + 30);
            with.extend_from_slice(&head[..head.len().saturating_sub(2)]);
            with.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            with.extend_from_slice(offer.as_bytes());
            with.extend_from_slice(b"\r\n\r\n");
            handshake.request = Some(Bytes::from(with));
            handshake.deflate = Some(deflate.clone());
        }
        handshake
    }

    /// The request head to write to the transport: `Some` once, then `None`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.request.take()
    }

    /// Feeds bytes read from the server, in chunks of any size.
    ///
    /// - `Ok(None)`: the response head is not complete yet.
    /// - `Ok(Some(response))`: the server accepted; turn it into the connection with
    ///   [`Response::into_connection`], which also gets any bytes after the head.
    /// - `Err(e)`: the server refused ([`HandshakeError::UnexpectedStatus`]) or answered
    ///   wrongly ([`NotWebSocketUpgrade`](HandshakeError::NotWebSocketUpgrade),
    ///   [`InvalidAccept`](HandshakeError::InvalidAccept),
    ///   [`UnexpectedProtocol`](HandshakeError::UnexpectedProtocol),
    ///   [`UnexpectedExtension`](HandshakeError::UnexpectedExtension),
    ///   [`HeadTooLarge`](HandshakeError::HeadTooLarge),
    ///   [`TooManyHeaders`](HandshakeError::TooManyHeaders),
    ///   [`Malformed`](HandshakeError::Malformed)): close the transport. Later calls
    ///   answer the same error.
    ///
    /// After a response has been returned, calls here return `Ok(None)`: feed later bytes
    /// to the connection. Allocates at most `max_handshake_bytes` for the head.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Response>, HandshakeError> {
        let (max_headers, accept, protocols) = (self.max_headers, &self.accept, &self.protocols);
        let deflate = self.deflate.as_ref();
        self.head
            .handle_bytes(now, data, check_status_line, |head| {
                #[allow(unused_mut)]
                let mut response = parse_response(head, max_headers, accept, protocols, deflate)?;
                #[cfg(feature = "deflate")]
                {
                    response.deflate_policy = deflate.cloned();
                }
                Ok(response)
            })
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called: construction plus
    /// `config.handshake_timeout`, while the response is awaited; `None` afterwards.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.head.poll_timeout()
    }

    /// Tells the handshake that time has passed. Once the deadline has passed without a
    /// complete response, returns [`HandshakeError::Timeout`]: close the transport. An
    /// early or spurious call is a harmless no-op returning `Ok(())`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.head.handle_timeout(now)
    }

    /// The server ended its side of the stream at `now`. Before a complete response that
    /// is [`HandshakeError::UnexpectedEof`]: close the transport. After the response, a
    /// no-op (the connection handles the EOF from then on).
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.head.handle_eof(now)
    }

    /// Bytes of head buffered so far.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.head.buffered()
    }
}

/// Refuses a status line that can never start a valid response, as soon as it arrives.
fn check_status_line(line: &[u8]) -> Result<(), HandshakeError> {
    let mut no_headers = [httparse::EMPTY_HEADER; 0];
    httparse::Response::new(&mut no_headers)
        .parse(line)
        .map(|_| ())
        .map_err(response_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use crate::handshake::response::tests::{answer_with, start, REQUEST};
    use crate::handshake::ServerHandshake;
    use alloc::string::ToString;
    use core::time::Duration;
    use proptest::prelude::*;

    #[test]
    fn rfc6455_4_1_request_carries_every_required_field() {
        let request = ClientRequest {
            headers: &[("X-Token", "abc"), ("Bad\r\nName", "v\r\nInjected: 1")],
            path: "/chat room?x=1",
            ..REQUEST
        };
        let (_, head) = start(request, &Config::default());
        let text = core::str::from_utf8(&head).unwrap();
        assert!(text.starts_with("GET /chat%20room?x=1 HTTP/1.1\r\nHost: server.example.com\r\n"));
        assert!(text.ends_with("X-Token: abc\r\nBadName: vInjected: 1\r\n\r\n"));
        // Our own server accepts it and sees what we sent.
        let mut server = ServerHandshake::new(&Config::default(), Instant::ZERO);
        let seen = server.handle_bytes(Instant::ZERO, &head).unwrap().unwrap();
        assert_eq!(seen.path(), "/chat%20room?x=1");
        assert_eq!(seen.host(), "server.example.com");
        assert_eq!(seen.origin(), Some("http://example.com"));
        assert_eq!(seen.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        assert_eq!(seen.header("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(seen.header("connection"), Some(&b"Upgrade"[..]));
        assert_eq!(seen.header("sec-websocket-version"), Some(&b"13"[..]));
        // §4.1: the key is 16 random bytes, base64-encoded, from the caller's entropy.
        let key = seen.header("Sec-WebSocket-Key").unwrap();
        let mut expected = [0u8; 16];
        SeededEntropy::new(1).fill(&mut expected);
        assert_eq!(key, STANDARD.encode(expected).as_bytes());
    }

    #[test]
    fn rfc6455_4_1_minimal_request() {
        let request = ClientRequest {
            host: "h",
            ..ClientRequest::default()
        };
        let (_, head) = start(request, &Config::default());
        let text = core::str::from_utf8(&head).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"));
        assert!(!text.contains("Origin"));
        assert!(!text.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn response_limits_give_431_errors() {
        let config = Config {
            max_handshake_bytes: 100,
            ..Config::default()
        };
        let (mut handshake, request) = start(REQUEST, &config);
        let answer = answer_with(
            &request,
            "X-Pad",
            &["X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        );
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, answer.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        );
        assert!(handshake.buffered() == 0);
        let config = Config {
            max_handshake_headers: 2,
            ..Config::default()
        };
        let (mut handshake, request) = start(REQUEST, &config);
        let answer = answer_with(&request, "X-Pad", &[]);
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, answer.as_bytes()),
            Err(HandshakeError::TooManyHeaders)
        );
    }

    #[test]
    fn garbage_response_is_malformed() {
        let (mut handshake, _) = start(REQUEST, &Config::default());
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, b"SSH-2.0-OpenSSH_9.6\r\n"),
            Err(HandshakeError::Malformed)
        );
    }

    #[test]
    fn slow_response_times_out() {
        let config = Config {
            handshake_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let (mut handshake, _) = start(REQUEST, &config);
        assert_eq!(handshake.poll_timeout(), Some(Instant::from_millis(1000)));
        assert_eq!(handshake.handle_timeout(Instant::from_millis(999)), Ok(()));
        assert_eq!(
            handshake.handle_bytes(Instant::from_millis(999), b"HTTP/1.1 101"),
            Ok(None)
        );
        assert_eq!(
            handshake.handle_timeout(Instant::from_millis(1000)),
            Err(HandshakeError::Timeout)
        );
        assert_eq!(handshake.poll_timeout(), None);
    }

    /// Feeds `input` split at `cuts`; returns the result, the bytes fed after it, and the
    /// most bytes buffered.
    fn feed_chunked(
        handshake: &mut ClientHandshake,
        input: &[u8],
        cuts: &[usize],
    ) -> (Result<Option<Response>, HandshakeError>, usize) {
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.extend([0, input.len()]);
        bounds.sort_unstable();
        let mut max_buffered = 0;
        for pair in bounds.windows(2) {
            let result = handshake.handle_bytes(Instant::ZERO, &input[pair[0]..pair[1]]);
            max_buffered = max_buffered.max(handshake.buffered());
            if !matches!(result, Ok(None)) {
                let result = result.map(|r| {
                    r.map(|mut r| {
                        r.trailing.extend_from_slice(&input[pair[1]..]);
                        r
                    })
                });
                return (result, max_buffered);
            }
        }
        (Ok(None), max_buffered)
    }

    proptest! {
        #[test]
        fn chunking_never_matters(
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            variant in 0usize..4,
            bytewise in any::<bool>(),
        ) {
            let (mut whole, request) = start(REQUEST, &Config::default());
            let (mut chunked, _) = start(REQUEST, &Config::default());
            let answer = match variant {
                0 => answer_with(&request, "Sec-WebSocket-Protocol", &["Sec-WebSocket-Protocol: chat"]),
                1 => answer_with(&request, "Upgrade", &[]),
                2 => answer_with(&request, "X", &[]).replace("\r\n", "\n"),
                _ => "HTTP/1.1 404 Not Found\r\n\r\n".to_string(),
            };
            let mut input = answer.into_bytes();
            input.extend_from_slice(&tail);
            let cuts = if bytewise { (1..input.len()).collect() } else { cuts };
            let (expected, _) = feed_chunked(&mut whole, &input, &[]);
            let (got, _) = feed_chunked(&mut chunked, &input, &cuts);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overbuffer(
            input in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in 0usize..3,
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            max in 1usize..300,
        ) {
            let mut bytes = [&b""[..], b"HTTP/1.1 101 OK\r\n", b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"][prefix].to_vec();
            bytes.extend_from_slice(&input);
            let config = Config { max_handshake_bytes: max, max_handshake_headers: 4, ..Config::default() };
            let (mut whole, _) = start(REQUEST, &config);
            let (mut chunked, _) = start(REQUEST, &config);
            let (expected, _) = feed_chunked(&mut whole, &bytes, &[]);
            let (got, max_buffered) = feed_chunked(&mut chunked, &bytes, &cuts);
            prop_assert!(max_buffered <= max);
            prop_assert_eq!(got, expected);
        }
    }
}
