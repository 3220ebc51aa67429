//! Incremental UTF-8 validation that fails as soon as a text message cannot be valid.
//!
//! §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
//! stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." Validating as bytes arrive (not at the end of the message) lets a peer
//! learn of its error early and keeps us from buffering a message we will reject anyway.

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// Validates a text message fed in pieces split anywhere, even inside a code point.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Utf8Validator {
    /// The start of a code point cut by the end of the previous piece (at most 3 bytes).
    pending: [u8; 4],
    pending_len: usize,
}

/// The length of the sequence a valid lead byte starts.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Feeds the next piece of the message. Fails at the first byte after which no
    /// continuation could make the message valid.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]) - self.pending_len;
            let take = need.min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            match core::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match core::str::from_utf8(data) {
            Ok(_) => Ok(()),
            // `error_len() == None`: the tail is a valid but unfinished code point.
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: fails if it stopped inside a code point. Resets for the next one.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.pending_len > 0;
        *self = Utf8Validator::default();
        if unfinished {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// Feeds `bytes` one at a time; returns the index of the first byte rejected, or
    /// `bytes.len()` if the whole message finished valid.
    fn first_failure(bytes: &[u8], pieces: &[usize]) -> Option<usize> {
        let mut v = Utf8Validator::default();
        let mut pos = 0;
        let mut sizes = pieces.iter().cycle();
        while pos < bytes.len() {
            let n = (*sizes.next().unwrap()).clamp(1, bytes.len() - pos);
            if v.feed(&bytes[pos..pos + n]).is_err() {
                return Some(pos + n);
            }
            pos += n;
        }
        if v.finish().is_err() {
            return Some(bytes.len());
        }
        None
    }

    /// The shortest prefix that no continuation can make valid, or, for a message that is
    /// only unfinished, its whole length (it fails when it ends).
    fn first_impossible(bytes: &[u8]) -> Option<usize> {
        (1..=bytes.len())
            .find(
                |&n| matches!(core::str::from_utf8(&bytes[..n]), Err(e) if e.error_len().is_some()),
            )
            .or_else(|| core::str::from_utf8(bytes).is_err().then_some(bytes.len()))
    }

    #[test]
    fn autobahn_6_3_fails_fast_inside_a_message() {
        // "κόσμε" followed by an invalid 0xED 0xA0 0x80 (a UTF-16 surrogate).
        let mut msg = Vec::from("κόσμε".as_bytes());
        let bad_at = msg.len() + 2;
        msg.extend_from_slice(&[0xED, 0xA0, 0x80, b'e', b'd', b'i', b't', b'e', b'd']);
        assert_eq!(first_failure(&msg, &[1]), Some(bad_at));
    }

    #[test]
    fn code_point_split_across_pieces_is_fine() {
        let msg = "a€𝄞b".as_bytes();
        for n in 1..msg.len() {
            assert_eq!(first_failure(msg, &[n]), None, "pieces of {n}");
        }
    }

    #[test]
    fn message_ending_inside_a_code_point_fails_at_finish() {
        assert_eq!(first_failure(&[b'a', 0xE2, 0x82], &[1]), Some(3));
    }

    proptest! {
        #[test]
        fn agrees_with_from_utf8_and_fails_at_first_impossible_byte(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<String>().prop_map(|s| s.into_bytes()),
                (any::<String>(), any::<u8>(), any::<String>()).prop_map(|(a, b, c)| {
                    let mut v = a.into_bytes(); v.push(b); v.extend(c.into_bytes()); v
                }),
            ],
            pieces in proptest::collection::vec(1usize..8, 1..6),
        ) {
            prop_assert_eq!(core::str::from_utf8(&bytes).is_ok(), first_failure(&bytes, &pieces).is_none());
            // Byte-at-a-time feeding pinpoints the exact first impossible byte.
            prop_assert_eq!(first_failure(&bytes, &[1]), first_impossible(&bytes));
        }
    }
}
