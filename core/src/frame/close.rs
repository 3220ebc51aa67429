//! Close frame payloads (RFC 6455 §5.5.1) and close codes (§7.4).

use bytes::BufMut;
use core::fmt;

use crate::error::ProtocolError;

/// A close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a close frame. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (such as non-UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// A close code from its numeric value (any value; see [`is_sendable`](Self::is_sendable)).
    pub const fn new(code: u16) -> Self {
        CloseCode(code)
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a close frame on the wire.
    ///
    /// §7.4.2: 0–999 are not used; 1000–2999 are reserved for the protocol and its
    /// registered extensions (1004, 1005, 1006 and 1015 must never be sent); 3000–4999 are
    /// for libraries, frameworks and applications.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// Decodes a close frame payload into its code and reason.
///
/// An empty payload gives `Ok(None)` (no status). §5.5.1: if there is a body, "the first
/// two bytes of the body MUST be a 2-byte unsigned integer" and the rest is a UTF-8 reason,
/// so a one-byte body, an unsendable code or a non-UTF-8 reason is a protocol error.
pub fn decode_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason =
                core::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Writes a close payload: the code in network order, then the reason.
///
/// The caller checks that `2 + reason.len()` fits a control frame (125 bytes).
pub fn encode_close_payload(code: CloseCode, reason: &str, dst: &mut impl BufMut) {
    dst.put_u16(code.0);
    dst.put_slice(reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn rfc6455_5_5_1_close_body_shapes() {
        assert_eq!(decode_close_payload(&[]), Ok(None));
        assert_eq!(
            decode_close_payload(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            decode_close_payload(&[0x03, 0xE8, b'o', b'k']),
            Ok(Some((CloseCode::NORMAL, "ok")))
        );
        assert_eq!(
            decode_close_payload(&[0x03, 0xE8, 0xFF]),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn rfc6455_7_4_codes_that_must_not_be_sent() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode::new(code).is_sendable(), "{code}");
            let bytes = code.to_be_bytes();
            assert_eq!(
                decode_close_payload(&bytes),
                Err(ProtocolError::InvalidCloseCode(code))
            );
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::new(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn encode_then_decode() {
        let mut out = Vec::new();
        encode_close_payload(CloseCode::GOING_AWAY, "bye", &mut out);
        assert_eq!(
            decode_close_payload(&out),
            Ok(Some((CloseCode::GOING_AWAY, "bye")))
        );
    }
}
