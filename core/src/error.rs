//! Errors, split by who is at fault, each knowing what the peer should see.
//!
//! - [`ProtocolError`]: the peer broke RFC 6455 (close code 1002 or 1007).
//! - [`LimitError`]: the peer sent more than the configured limits allow (1009).
//! - [`ConnectionError`]: why a connection ended, wrapping the two above plus timeouts.
//! - [`SendError`]: the caller asked for something the connection cannot do now.
//! - [`HandshakeError`]: an HTTP upgrade that cannot proceed, with the status to answer.
//! - [`EnvelopeError`], [`SessionProtocolError`]: the peer broke `sockeye.v1` (1002/1007,
//!   session kept); [`SessionSendError`]: backpressure and caller mistakes on a session;
//!   [`StoreError`] (400/503) and [`AuthError`] (401) at the upgrade.

use core::fmt;

use crate::frame::CloseCode;

/// The peer violated RFC 6455.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 set while no extension was negotiated (§5.2).
    ReservedBits,
    /// An opcode reserved for future use (§5.2).
    ReservedOpcode(u8),
    /// A frame from the client was not masked (§5.1).
    UnmaskedClientFrame,
    /// A frame from the server was masked (§5.1).
    MaskedServerFrame,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    LengthTopBitSet,
    /// A payload length not encoded in the minimal number of bytes (§5.2).
    NonMinimalLength,
    /// A control frame with a payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// A control frame without the FIN bit (§5.5).
    FragmentedControlFrame,
    /// A continuation frame while no fragmented message was in progress (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message was still in progress (§5.4).
    ExpectedContinuation,
    /// A text message that is not valid UTF-8 (§8.1).
    InvalidUtf8,
    /// A close frame whose payload is a single byte (§5.5.1).
    InvalidClosePayload,
    /// A close code that must not appear on the wire (§7.4).
    InvalidCloseCode(u16),
    /// A close reason that is not valid UTF-8 (§5.5.1).
    InvalidCloseReason,
    /// RSV1 ("compressed") set on a control frame, which permessage-deflate never
    /// compresses (RFC 7692 §6.1).
    CompressedControlFrame,
    /// RSV1 ("compressed") set on a continuation frame: it belongs on the first frame of
    /// a message only (RFC 7692 §6.1).
    CompressedContinuation,
    /// A compressed message that does not inflate: invalid DEFLATE data, or a reference
    /// back past the negotiated window (RFC 7692 §6.2).
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code the peer should see (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::UnmaskedClientFrame => f.write_str("unmasked client frame"),
            ProtocolError::MaskedServerFrame => f.write_str("masked server frame"),
            ProtocolError::LengthTopBitSet => f.write_str("64-bit length with top bit set"),
            ProtocolError::NonMinimalLength => f.write_str("non-minimal payload length"),
            ProtocolError::ControlFrameTooLong => f.write_str("control frame over 125 bytes"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => f.write_str("unexpected continuation frame"),
            ProtocolError::ExpectedContinuation => f.write_str("expected a continuation frame"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid utf-8 in text message"),
            ProtocolError::InvalidClosePayload => f.write_str("one-byte close payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("invalid utf-8 in close reason"),
            ProtocolError::CompressedControlFrame => f.write_str("compressed control frame"),
            ProtocolError::CompressedContinuation => {
                f.write_str("compressed bit on a continuation frame")
            }
            ProtocolError::InvalidCompressedData => f.write_str("invalid compressed data"),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// The peer sent more than a configured limit allows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// A frame payload over [`Config::max_frame_bytes`](crate::Config::max_frame_bytes).
    FrameTooLarge {
        /// The announced payload length.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message over [`Config::max_message_bytes`](crate::Config::max_message_bytes).
    MessageTooLarge {
        /// The configured limit.
        max: usize,
    },
}

impl LimitError {
    /// The close code the peer should see: 1009, message too big.
    pub fn close_code(&self) -> CloseCode {
        CloseCode::MESSAGE_TOO_BIG
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes over the limit of {max}")
            }
            LimitError::MessageTooLarge { max } => {
                write!(f, "message over the limit of {max} bytes")
            }
        }
    }
}

impl core::error::Error for LimitError {}

/// Why a connection ended other than by a clean closing handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The peer exceeded a limit.
    Limit(LimitError),
    /// Nothing arrived from the peer within the keepalive timeout after a ping.
    KeepaliveTimeout,
    /// The peer did not complete the closing handshake within the close timeout.
    CloseTimeout,
    /// The transport ended before the closing handshake completed.
    UnexpectedEof,
    /// The peer read nothing of what we had to send for the write timeout (a runtime
    /// uses [`Config::pong_timeout`](crate::Config::pong_timeout)): it is treated as
    /// gone, as a peer that answers no ping is. Reported by runtimes, not by the core.
    WriteTimeout,
}

impl ConnectionError {
    /// The close code that describes this ending. 1006 (abnormal closure) is never sent
    /// on the wire; it only reports a connection that ended without a close frame.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ConnectionError::Protocol(e) => e.close_code(),
            ConnectionError::Limit(e) => e.close_code(),
            ConnectionError::KeepaliveTimeout => CloseCode::GOING_AWAY,
            ConnectionError::CloseTimeout
            | ConnectionError::UnexpectedEof
            | ConnectionError::WriteTimeout => CloseCode::ABNORMAL,
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Protocol(e) => write!(f, "protocol error: {e}"),
            ConnectionError::Limit(e) => write!(f, "limit exceeded: {e}"),
            ConnectionError::KeepaliveTimeout => f.write_str("peer stopped answering pings"),
            ConnectionError::CloseTimeout => f.write_str("closing handshake timed out"),
            ConnectionError::UnexpectedEof => {
                f.write_str("connection ended without a closing handshake")
            }
            ConnectionError::WriteTimeout => {
                f.write_str("peer read nothing we sent within the write timeout")
            }
        }
    }
}

impl core::error::Error for ConnectionError {}

impl From<ProtocolError> for ConnectionError {
    fn from(e: ProtocolError) -> Self {
        ConnectionError::Protocol(e)
    }
}

impl From<LimitError> for ConnectionError {
    fn from(e: LimitError) -> Self {
        ConnectionError::Limit(e)
    }
}

/// The caller asked a connection for something it cannot do now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The outgoing queue is over [`Config::max_send_queue_bytes`](crate::Config::max_send_queue_bytes):
    /// try again once queued bytes were written (with the core alone: after draining
    /// [`poll_transmit`](crate::Connection::poll_transmit); the runtimes write for you, and
    /// their `try_send` hands the message back instead).
    Full,
    /// The connection is closing or closed; nothing more can be sent.
    Closed,
    /// A control frame payload (ping, pong, close reason + 2) over 125 bytes.
    ControlPayloadTooLong,
    /// A close code that may not be sent (§7.4), such as 1005 or 1006.
    InvalidCloseCode(u16),
    /// A fragment sent out of order: a continuation with no message started, or a new
    /// message while a fragmented one is still open.
    FragmentOrder,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("send queue full"),
            SendError::Closed => f.write_str("connection closed"),
            SendError::ControlPayloadTooLong => f.write_str("control payload over 125 bytes"),
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            SendError::FragmentOrder => f.write_str("fragment out of order"),
        }
    }
}

impl core::error::Error for SendError {}

/// An HTTP upgrade that cannot proceed.
///
/// On the server side each variant knows the HTTP status to answer
/// ([`HandshakeError::status`]); the handshake renders the response. On the client side
/// the variants describe what was wrong with the server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head could not be parsed as HTTP/1.1 (400).
    Malformed,
    /// A request method other than GET (405).
    MethodNotAllowed,
    /// An HTTP version below 1.1 (400).
    UnsupportedHttpVersion,
    /// No `Host` header (400).
    MissingHost,
    /// No `Upgrade: websocket` or no `Connection: upgrade`: not a WebSocket request (426).
    NotWebSocketUpgrade,
    /// A missing or malformed `Sec-WebSocket-Key` (400).
    InvalidKey,
    /// A `Sec-WebSocket-Version` other than 13 (426 with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The head was larger than [`Config::max_handshake_bytes`](crate::Config::max_handshake_bytes) (431).
    HeadTooLarge,
    /// More header fields than [`Config::max_handshake_headers`](crate::Config::max_handshake_headers) (431).
    TooManyHeaders,
    /// The head did not arrive within [`Config::handshake_timeout`](crate::Config::handshake_timeout) (408).
    Timeout,
    /// The caller's origin policy refused the `Origin` (403).
    OriginRefused,
    /// Client side: the server answered with a status other than 101.
    UnexpectedStatus(u16),
    /// Client side: the server's `Sec-WebSocket-Accept` did not match our key.
    InvalidAccept,
    /// Client side: the server chose a subprotocol we did not offer.
    UnexpectedProtocol,
    /// Client side: the server selected an extension we did not offer.
    UnexpectedExtension,
    /// The transport ended before the handshake completed.
    UnexpectedEof,
    /// The upgrade request announced a body (`Content-Length` over 0 or
    /// `Transfer-Encoding`), which a WebSocket upgrade never has (400).
    UnexpectedBody,
}

impl HandshakeError {
    /// The HTTP status a server answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::NotWebSocketUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::Timeout => 408,
            HandshakeError::OriginRefused => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("malformed http head"),
            HandshakeError::MethodNotAllowed => f.write_str("websocket upgrade requires GET"),
            HandshakeError::UnsupportedHttpVersion => {
                f.write_str("websocket upgrade requires HTTP/1.1")
            }
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::NotWebSocketUpgrade => f.write_str(
                "not a websocket upgrade (Upgrade: websocket and Connection: Upgrade required)",
            ),
            HandshakeError::InvalidKey => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::UnsupportedVersion => {
                f.write_str("unsupported Sec-WebSocket-Version (13 required)")
            }
            HandshakeError::HeadTooLarge => f.write_str("handshake head too large"),
            HandshakeError::TooManyHeaders => f.write_str("too many header fields"),
            HandshakeError::Timeout => f.write_str("handshake took too long"),
            HandshakeError::OriginRefused => f.write_str("origin not allowed"),
            HandshakeError::UnexpectedStatus(s) => write!(f, "server answered {s}, not 101"),
            HandshakeError::InvalidAccept => f.write_str("Sec-WebSocket-Accept does not match"),
            HandshakeError::UnexpectedProtocol => {
                f.write_str("server chose a subprotocol that was not offered")
            }
            HandshakeError::UnexpectedExtension => {
                f.write_str("server chose an extension that was not offered")
            }
            HandshakeError::UnexpectedEof => f.write_str("connection ended during handshake"),
            HandshakeError::UnexpectedBody => f.write_str("websocket upgrade must not have a body"),
        }
    }
}

impl core::error::Error for HandshakeError {}

/// A `sockeye.v1` envelope that cannot be decoded (`docs/PROTOCOL.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// An empty WebSocket message: no kind byte.
    Empty,
    /// A kind byte this version does not define.
    UnknownKind(u8),
    /// The envelope ends before its last field.
    Truncated,
    /// Bytes after the end of a fixed-size envelope.
    TrailingBytes,
    /// A varint longer than 10 bytes or above `u64::MAX`.
    VarintOverflow,
    /// A varint not in its shortest form.
    NonMinimalVarint,
    /// DATA flag bits this version reserves.
    ReservedFlags(u8),
    /// DATA with sequence number 0 (sequence numbers start at 1).
    ZeroSeq,
    /// A void DATA (a skipped sequence number) with a payload or the text flag.
    VoidWithPayload,
    /// A WELCOME status byte this version does not define.
    InvalidStatus(u8),
    /// An ERROR reason that is not UTF-8.
    InvalidReason,
    /// A `Sockeye-Resume` value that is not unpadded base64url.
    InvalidBase64,
    /// A `Sockeye-Resume` value that holds an envelope other than RESUME.
    UnexpectedKind,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Empty => f.write_str("empty envelope"),
            EnvelopeError::UnknownKind(k) => write!(f, "unknown envelope kind {k:#04x}"),
            EnvelopeError::Truncated => f.write_str("truncated envelope"),
            EnvelopeError::TrailingBytes => f.write_str("trailing bytes after envelope"),
            EnvelopeError::VarintOverflow => f.write_str("varint over 64 bits"),
            EnvelopeError::NonMinimalVarint => f.write_str("non-minimal varint"),
            EnvelopeError::ReservedFlags(b) => write!(f, "reserved data flags {b:#04x}"),
            EnvelopeError::ZeroSeq => f.write_str("data with sequence number 0"),
            EnvelopeError::VoidWithPayload => f.write_str("void data with a payload"),
            EnvelopeError::InvalidStatus(s) => write!(f, "unknown welcome status {s}"),
            EnvelopeError::InvalidReason => f.write_str("error reason is not utf-8"),
            EnvelopeError::InvalidBase64 => f.write_str("resume value is not base64url"),
            EnvelopeError::UnexpectedKind => f.write_str("resume value is not a resume envelope"),
        }
    }
}

impl core::error::Error for EnvelopeError {}

/// The peer broke the `sockeye.v1` session protocol. The session is kept: the side that
/// sees this sends an ERROR envelope, closes the WebSocket with [`close_code`](Self::close_code),
/// and the client reconnects and resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionProtocolError {
    /// An envelope that does not decode.
    Malformed(EnvelopeError),
    /// DATA whose sequence number skips one not yet delivered.
    SequenceGap {
        /// The sequence number expected next.
        expected: u64,
        /// The one that arrived.
        got: u64,
    },
    /// An ack for a sequence number we never sent.
    AckForUnsent {
        /// The acknowledged sequence number.
        ack: u64,
        /// The highest one we sent.
        highest_sent: u64,
    },
    /// An envelope that is not allowed here: DATA or ACK before the WELCOME, a WELCOME
    /// sent to the server or twice, a RESUME in-band, a text WebSocket message.
    UnexpectedEnvelope(u8),
    /// A WELCOME that resumes a session other than the one we asked for.
    SessionMismatch,
    /// DATA flagged as text whose payload is not UTF-8.
    InvalidText,
}

impl SessionProtocolError {
    /// The code carried by the ERROR envelope (`docs/PROTOCOL.md`, "Errors").
    pub fn wire_code(&self) -> u16 {
        match self {
            SessionProtocolError::Malformed(_) => 1,
            SessionProtocolError::SequenceGap { .. } => 2,
            SessionProtocolError::AckForUnsent { .. } => 3,
            SessionProtocolError::UnexpectedEnvelope(_) => 4,
            SessionProtocolError::SessionMismatch => 5,
            SessionProtocolError::InvalidText => 6,
        }
    }

    /// The WebSocket close code the peer should see after the ERROR envelope: 1007 for
    /// text that is not UTF-8, 1002 (protocol error) for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            SessionProtocolError::InvalidText => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for SessionProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionProtocolError::Malformed(e) => write!(f, "malformed envelope: {e}"),
            SessionProtocolError::SequenceGap { expected, got } => {
                write!(f, "sequence gap: expected {expected}, got {got}")
            }
            SessionProtocolError::AckForUnsent { ack, highest_sent } => {
                write!(
                    f,
                    "ack {ack} for a message never sent (highest {highest_sent})"
                )
            }
            SessionProtocolError::UnexpectedEnvelope(k) => {
                write!(f, "unexpected envelope kind {k:#04x}")
            }
            SessionProtocolError::SessionMismatch => f.write_str("welcome for another session"),
            SessionProtocolError::InvalidText => f.write_str("text data is not utf-8"),
        }
    }
}

impl core::error::Error for SessionProtocolError {}

impl From<EnvelopeError> for SessionProtocolError {
    fn from(e: EnvelopeError) -> Self {
        SessionProtocolError::Malformed(e)
    }
}

/// The caller asked a session to send something it cannot take now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionSendError {
    /// The flow window (messages or bytes unacknowledged) is full: backpressure. Try
    /// again after an `Acked` or `DeadLetter` event.
    Full,
    /// The payload alone is larger than the window's byte limit and could never be sent.
    TooLarge {
        /// The window's byte limit.
        max: usize,
    },
    /// `is_text` was set but the payload is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for SessionSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionSendError::Full => f.write_str("send window full"),
            SessionSendError::TooLarge { max } => {
                write!(f, "message larger than the {max}-byte window")
            }
            SessionSendError::InvalidUtf8 => f.write_str("text payload is not utf-8"),
        }
    }
}

impl core::error::Error for SessionSendError {}

/// A server's session store cannot take a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The `Sockeye-Resume` value does not decode (HTTP 400).
    MalformedResume(EnvelopeError),
    /// The store holds `max_sessions` live sessions (HTTP 503).
    Full,
    /// The application could not make the new session durable (its journal commit
    /// failed), so it must not be named to the client (HTTP 503).
    NotDurable,
}

impl StoreError {
    /// The HTTP status to answer the upgrade request with.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::MalformedResume(_) => 400,
            StoreError::Full | StoreError::NotDurable => 503,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::MalformedResume(e) => write!(f, "malformed resume request: {e}"),
            StoreError::Full => f.write_str("too many sessions"),
            StoreError::NotDurable => f.write_str("the session could not be recorded durably"),
        }
    }
}

impl core::error::Error for StoreError {}

/// A user token at the handshake that does not let the user in. Every variant is
/// answered with HTTP 401.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in the request.
    Missing,
    /// The token is not `base64url(user) "." expiry "." base64url(mac)`, or too long.
    Malformed,
    /// The MAC does not match: not minted with our secret, or altered.
    Forged,
    /// The token's expiry has passed.
    Expired,
}

impl AuthError {
    /// The HTTP status to answer: always 401.
    pub fn status(&self) -> u16 {
        401
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("missing user token"),
            AuthError::Malformed => f.write_str("malformed user token"),
            AuthError::Forged => f.write_str("user token signature does not match"),
            AuthError::Expired => f.write_str("user token expired"),
        }
    }
}

impl core::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_bad_input_table() {
        assert_eq!(ProtocolError::ReservedBits.close_code().as_u16(), 1002);
        assert_eq!(ProtocolError::InvalidUtf8.close_code().as_u16(), 1007);
        assert_eq!(
            ProtocolError::InvalidCloseReason.close_code().as_u16(),
            1007
        );
        let limit = LimitError::MessageTooLarge { max: 1 };
        assert_eq!(ConnectionError::from(limit).close_code().as_u16(), 1009);
    }

    #[test]
    fn handshake_statuses_follow_the_bad_input_table() {
        assert_eq!(HandshakeError::MethodNotAllowed.status(), 405);
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        assert_eq!(HandshakeError::Timeout.status(), 408);
        assert_eq!(HandshakeError::OriginRefused.status(), 403);
        assert_eq!(HandshakeError::InvalidKey.status(), 400);
        assert_eq!(AuthError::Forged.status(), 401);
        assert_eq!(StoreError::Full.status(), 503);
    }

    #[test]
    fn session_violations_know_their_close_codes() {
        let gap = SessionProtocolError::SequenceGap {
            expected: 2,
            got: 4,
        };
        assert_eq!(gap.close_code().as_u16(), 1002);
        assert_eq!(gap.wire_code(), 2);
        assert_eq!(
            SessionProtocolError::InvalidText.close_code().as_u16(),
            1007
        );
    }
}
