//! The server's answer as the client checks it (RFC 6455 §4.1).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::head::{parse_error, trim, CompleteHead, Headers};
use crate::config::Config;
use crate::connection::Connection;
use crate::entropy::Entropy;
use crate::error::HandshakeError;
use crate::time::Instant;

/// What the client offered of permessage-deflate: its policy (a placeholder without the
/// `deflate` feature, when nothing is ever offered).
#[cfg(feature = "deflate")]
pub(super) type DeflateOffer = super::deflate::DeflateConfig;
#[cfg(not(feature = "deflate"))]
pub(super) type DeflateOffer = core::convert::Infallible;

/// Parses and checks a complete response head (RFC 6455 §4.1, "The client MUST
/// validate the server's response as follows").
pub(super) fn parse_response(
    complete: CompleteHead,
    max_headers: usize,
    accept: &str,
    protocols: &[String],
    deflate: Option<&DeflateOffer>,
) -> Result<Response, HandshakeError> {
    let mut header_array: Vec<httparse::Header<'_>> = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Response::new(&mut header_array);
    match parsed.parse(&complete.head).map_err(response_error)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HandshakeError::Malformed),
    }

    // §4.1 item 1: "If the status code received from the server is not 101, the
    // client handles the response per HTTP [RFC2616] procedures." We do not follow
    // redirects or authenticate: the caller sees the status.
    let status = parsed.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::UnexpectedStatus(status));
    }
    let headers = Headers::from_httparse(parsed.headers);

    // §4.1 item 2: "If the response lacks an |Upgrade| header field or the |Upgrade|
    // header field contains a value that is not an ASCII case-insensitive match for
    // the value "websocket", the client MUST _Fail the WebSocket Connection_."
    let upgrade = headers.get("Upgrade").map(trim).unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case(b"websocket") {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    // §4.1 item 3: "If the response lacks a |Connection| header field or the
    // |Connection| header field doesn't contain a token that is an ASCII
    // case-insensitive match for the value "Upgrade", the client MUST _Fail the
    // WebSocket Connection_."
    if !headers.has_token("Connection", "upgrade") {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    // §4.1 item 4: "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of
    // the concatenation of the |Sec-WebSocket-Key| (as a string, not base64-decoded)
    // with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" but ignoring any leading
    // and trailing whitespace, the client MUST _Fail the WebSocket Connection_."
    if headers.get("Sec-WebSocket-Accept").map(trim) != Some(accept.as_bytes()) {
        return Err(HandshakeError::InvalidAccept);
    }
    // §4.1 item 5: "If the response includes a |Sec-WebSocket-Extensions| header
    // field and this header field indicates the use of an extension that was not
    // present in the client's handshake [...] the client MUST _Fail the WebSocket
    // Connection_." We offer at most permessage-deflate (RFC 7692 §5.2, checked by
    // `check_response`), and nothing without the `deflate` feature.
    #[cfg(feature = "deflate")]
    let deflate = match deflate {
        Some(config) => {
            let mut answers = Vec::new();
            for value in headers.all("Sec-WebSocket-Extensions") {
                super::extensions::parse_extensions(value, &mut answers)
                    .map_err(|_| HandshakeError::UnexpectedExtension)?;
            }
            super::deflate::check_response(config, &answers)?
        }
        None => None,
    };
    #[cfg(feature = "deflate")]
    if deflate.is_none() && headers.list("Sec-WebSocket-Extensions").next().is_some() {
        return Err(HandshakeError::UnexpectedExtension);
    }
    #[cfg(not(feature = "deflate"))]
    if deflate.is_some() || headers.list("Sec-WebSocket-Extensions").next().is_some() {
        return Err(HandshakeError::UnexpectedExtension);
    }
    // §4.1 item 6: "If the response includes a |Sec-WebSocket-Protocol| header field
    // and this header field indicates the use of a subprotocol that was not present
    // in the client's handshake [...] the client MUST _Fail the WebSocket
    // Connection_." The server selects at most one (§4.2.2).
    let protocol = {
        let mut selected = headers.list("Sec-WebSocket-Protocol");
        match (selected.next(), selected.next()) {
            (None, _) => None,
            (Some(p), None) => match protocols.iter().find(|o| o.as_bytes() == p) {
                Some(offered) => Some(offered.clone()),
                None => return Err(HandshakeError::UnexpectedProtocol),
            },
            (Some(_), Some(_)) => return Err(HandshakeError::UnexpectedProtocol),
        }
    };

    Ok(Response {
        status,
        protocol,
        #[cfg(feature = "deflate")]
        deflate,
        #[cfg(feature = "deflate")]
        deflate_policy: None,
        headers,
        trailing: complete.trailing,
    })
}

/// Maps an httparse error on a response: a status line that is not HTTP/1.x is just not
/// an HTTP answer, hence `Malformed`.
pub(super) fn response_error(e: httparse::Error) -> HandshakeError {
    match parse_error(e) {
        HandshakeError::UnsupportedHttpVersion => HandshakeError::Malformed,
        other => other,
    }
}

/// The server's valid 101 answer, owning its data and the bytes that followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    status: u16,
    protocol: Option<String>,
    #[cfg(feature = "deflate")]
    deflate: Option<super::deflate::DeflateParams>,
    headers: Headers,
    /// Bytes that followed the head: the server's first frames.
    pub(super) trailing: Vec<u8>,
    /// The policy the client offered with, for the connection.
    #[cfg(feature = "deflate")]
    pub(super) deflate_policy: Option<super::deflate::DeflateConfig>,
}

impl Response {
    /// The status code: always 101 (Switching Protocols).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The subprotocol the server selected, one of those offered, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters the server agreed to, if it accepted the offer
    /// of [`ClientHandshake::with_deflate`](super::ClientHandshake::with_deflate).
    #[cfg(feature = "deflate")]
    pub fn deflate_params(&self) -> Option<&super::deflate::DeflateParams> {
        self.deflate.as_ref()
    }

    /// The value of the first header named `name` (ASCII case-insensitive), as sent.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The open client [`Connection`], drawing masking keys from `entropy`, with the
    /// bytes that followed the response head already fed: drain its events and
    /// transmits now. With the `deflate` feature the connection uses the negotiated
    /// permessage-deflate parameters, if any, with the policy that was offered.
    pub fn into_connection(
        self,
        now: Instant,
        config: Config,
        entropy: impl Entropy + Send + 'static,
    ) -> Connection {
        let mut connection = Connection::client(config, now, entropy);
        #[cfg(feature = "deflate")]
        if let Some((params, policy)) = self.deflate.zip(self.deflate_policy.as_ref()) {
            connection.set_deflate(Some(params), policy);
        }
        connection.handle_bytes(now, &self.trailing);
        connection
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connection::{Event, Message};
    use crate::entropy::SeededEntropy;
    use crate::handshake::ServerHandshake;
    use crate::handshake::{accept_key, ClientHandshake, ClientRequest};
    use alloc::format;
    use alloc::string::ToString;

    pub(crate) const REQUEST: ClientRequest<'static> = ClientRequest {
        host: "server.example.com",
        path: "/chat",
        protocols: &["chat", "superchat"],
        origin: Some("http://example.com"),
        headers: &[],
    };

    pub(crate) fn start(request: ClientRequest<'_>, config: &Config) -> (ClientHandshake, Vec<u8>) {
        let mut handshake =
            ClientHandshake::new(config, Instant::ZERO, request, &mut SeededEntropy::new(1));
        let head = handshake.poll_transmit().unwrap().to_vec();
        assert_eq!(handshake.poll_transmit(), None);
        (handshake, head)
    }

    /// The `Sec-WebSocket-Accept` a correct server answers to `request`.
    fn accept_for(request: &[u8]) -> String {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        parsed.parse(request).unwrap();
        let key = parsed
            .headers
            .iter()
            .find(|h| h.name == "Sec-WebSocket-Key")
            .unwrap();
        accept_key(key.value)
    }

    /// A 101 answer to `request` with the header `name` replaced by `lines` (none
    /// removes it; a name not in the answer adds `lines`).
    pub(crate) fn answer_with(request: &[u8], name: &str, lines: &[&str]) -> String {
        let accept = format!("Sec-WebSocket-Accept: {}", accept_for(request));
        let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        let mut replaced = false;
        for line in ["Upgrade: websocket", "Connection: Upgrade", accept.as_str()] {
            if line
                .split(':')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                replaced = true;
                lines.iter().for_each(|l| out.push_str(&format!("{l}\r\n")));
            } else {
                out.push_str(&format!("{line}\r\n"));
            }
        }
        if !replaced {
            lines.iter().for_each(|l| out.push_str(&format!("{l}\r\n")));
        }
        out.push_str("\r\n");
        out
    }

    fn failed(name: &str, lines: &[&str]) -> HandshakeError {
        let (mut handshake, request) = start(REQUEST, &Config::default());
        let answer = answer_with(&request, name, lines);
        handshake
            .handle_bytes(Instant::ZERO, answer.as_bytes())
            .unwrap_err()
    }

    #[test]
    fn rfc6455_4_1_status_other_than_101_fails() {
        let (mut handshake, _) = start(REQUEST, &Config::default());
        let refusal = HandshakeError::OriginRefused.response();
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, &refusal),
            Err(HandshakeError::UnexpectedStatus(403))
        );
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, b"more"),
            Err(HandshakeError::UnexpectedStatus(403))
        );
        let (mut handshake, _) = start(REQUEST, &Config::default());
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(HandshakeError::UnexpectedStatus(200))
        );
    }

    #[test]
    fn rfc6455_4_1_upgrade_must_be_websocket() {
        for lines in [&[][..], &["Upgrade: h2c"], &["Upgrade: websocket, h2c"]] {
            assert_eq!(
                failed("Upgrade", lines),
                HandshakeError::NotWebSocketUpgrade
            );
        }
    }

    #[test]
    fn rfc6455_4_1_connection_must_include_upgrade() {
        for lines in [&[][..], &["Connection: close"]] {
            assert_eq!(
                failed("Connection", lines),
                HandshakeError::NotWebSocketUpgrade
            );
        }
    }

    #[test]
    fn rfc6455_4_1_accept_must_match_the_key() {
        let wrong = format!(
            "Sec-WebSocket-Accept: {}",
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ==")
        );
        for lines in [&[][..], &[wrong.as_str()], &["Sec-WebSocket-Accept: "]] {
            assert_eq!(
                failed("Sec-WebSocket-Accept", lines),
                HandshakeError::InvalidAccept
            );
        }
    }

    #[test]
    fn rfc6455_4_1_unrequested_extension_fails() {
        let lines = ["Sec-WebSocket-Extensions: permessage-deflate"];
        assert_eq!(
            failed("Sec-WebSocket-Extensions", &lines),
            HandshakeError::UnexpectedExtension
        );
    }

    #[test]
    fn rfc6455_4_1_unoffered_protocol_fails() {
        for lines in [
            &["Sec-WebSocket-Protocol: mqtt"][..],
            &["Sec-WebSocket-Protocol: CHAT"],
            &["Sec-WebSocket-Protocol: chat, superchat"],
            &[
                "Sec-WebSocket-Protocol: chat",
                "Sec-WebSocket-Protocol: chat",
            ],
        ] {
            assert_eq!(
                failed("Sec-WebSocket-Protocol", lines),
                HandshakeError::UnexpectedProtocol
            );
        }
        let (mut handshake, request) = start(
            ClientRequest {
                protocols: &[],
                ..REQUEST
            },
            &Config::default(),
        );
        let answer = answer_with(
            &request,
            "Sec-WebSocket-Protocol",
            &["Sec-WebSocket-Protocol: chat"],
        );
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, answer.as_bytes()),
            Err(HandshakeError::UnexpectedProtocol)
        );
    }

    #[test]
    fn rfc6455_4_2_2_subprotocol_negotiation() {
        let (mut client, request) = start(
            ClientRequest {
                protocols: &["sockeye.v1", "chat"],
                ..REQUEST
            },
            &Config::default(),
        );
        let mut server = ServerHandshake::new(&Config::default(), Instant::ZERO);
        let offer = server
            .handle_bytes(Instant::ZERO, &request)
            .unwrap()
            .unwrap();
        // The server prefers "chat" whatever the client's order.
        let pick = offer
            .protocols()
            .find(|p| *p == "chat")
            .map(ToString::to_string);
        let mut connection = offer.accept(Instant::ZERO, pick.as_deref(), Config::default());
        let answer = connection.poll_transmit().unwrap();
        let response = client
            .handle_bytes(Instant::ZERO, &answer)
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(
            response.header("sec-websocket-protocol"),
            Some(&b"chat"[..])
        );
        assert_eq!(client.poll_timeout(), None);
        assert_eq!(client.handle_bytes(Instant::ZERO, b"later"), Ok(None));
    }

    /// Moves everything `from` has to send into `to`.
    fn pump(from: &mut Connection, to: &mut Connection) {
        while let Some(chunk) = from.poll_transmit() {
            to.handle_bytes(Instant::ZERO, &chunk);
        }
    }

    #[test]
    fn client_server_round_trip() {
        let config = Config::default();
        let (mut client, request) = start(REQUEST, &config);
        let mut server = ServerHandshake::new(&config, Instant::ZERO);
        let offer = server
            .handle_bytes(Instant::ZERO, &request)
            .unwrap()
            .unwrap();
        let mut server_conn = offer.accept(Instant::ZERO, Some("superchat"), config.clone());
        // The server greets right away: its first frame travels in the same write as the
        // 101, so the client finds it after the response head.
        server_conn
            .send(Instant::ZERO, Message::text("welcome"))
            .unwrap();
        let mut wire = Vec::new();
        while let Some(chunk) = server_conn.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
        let response = client.handle_bytes(Instant::ZERO, &wire).unwrap().unwrap();
        assert_eq!(response.protocol(), Some("superchat"));
        let mut client_conn =
            response.into_connection(Instant::ZERO, config, SeededEntropy::new(2));
        assert_eq!(
            client_conn.poll_event(),
            Some(Event::Message(Message::text("welcome")))
        );

        client_conn
            .send(Instant::ZERO, Message::binary(&b"\x00\x01hi"[..]))
            .unwrap();
        pump(&mut client_conn, &mut server_conn);
        assert_eq!(
            server_conn.poll_event(),
            Some(Event::Message(Message::binary(&b"\x00\x01hi"[..])))
        );
        server_conn
            .send(Instant::ZERO, Message::text("back"))
            .unwrap();
        pump(&mut server_conn, &mut client_conn);
        assert_eq!(
            client_conn.poll_event(),
            Some(Event::Message(Message::text("back")))
        );
    }
}
