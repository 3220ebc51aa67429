//! The `Sec-WebSocket-Accept` value: proof that the server read the client's key.

use alloc::string::String;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID that RFC 6455 §1.3 appends to the client's key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value answering the `Sec-WebSocket-Key` value `key`:
/// `base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`, 28 ASCII characters.
///
/// `key` is the header value as sent (the base64 text, not its decoded bytes), without
/// surrounding whitespace. The server sends this in its 101 response; the client computes
/// it from its own key and compares.
///
/// RFC 6455 §1.3: "the server would append the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/// [...] The server would then take the SHA-1 hash of this, [...] This value is then
/// base64-encoded".
///
/// Allocates the 28-byte string.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID);
    STANDARD.encode(sha1.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_1_3_sample_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_is_always_28_ascii_bytes() {
        for key in [&b""[..], b"x", &[0xff; 300]] {
            let accept = accept_key(key);
            assert_eq!(accept.len(), 28);
            assert!(accept.is_ascii());
        }
    }
}
