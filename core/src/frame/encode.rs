//! Frame encoding: a small header in a fixed array plus the payload, untouched.
//!
//! Server frames are never copied: the header goes in its own small chunk and the
//! payload `Bytes` is queued as it is. Client frames are masked, which needs a copy (and
//! masks while copying).

use bytes::{BufMut, BytesMut};

use super::header::{FrameHeader, MAX_HEADER_LEN};
use super::mask::put_masked;

/// An encoded frame header, on the stack.
#[derive(Clone, Copy, Debug)]
pub struct HeaderBuf {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBuf {
    /// Encodes `header` without allocating.
    pub fn new(header: &FrameHeader) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let mut cursor = &mut bytes[..];
        header.encode(&mut cursor);
        let remaining = cursor.len();
        HeaderBuf {
            bytes,
            len: (MAX_HEADER_LEN - remaining) as u8,
        }
    }

    /// The encoded header bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Appends a whole frame (header, then payload, masked if the header has a key) to `dst`.
///
/// `header.payload_len` is set from `payload`. Allocates only if `dst` must grow.
pub fn encode_frame(mut header: FrameHeader, payload: &[u8], dst: &mut BytesMut) {
    header.payload_len = payload.len() as u64;
    dst.reserve(header.encoded_len() + payload.len());
    header.encode(dst);
    match header.mask {
        Some(key) => put_masked(dst, payload, key, 0),
        None => dst.put_slice(payload),
    }
}

/// Appends one frame whose payload is `head` followed by `payload`, without joining them
/// first: a message built of a small header of its own and a body held elsewhere (a
/// `sockeye.v1` DATA envelope) is copied, and masked, once.
pub fn encode_frame_parts(
    mut header: FrameHeader,
    head: &[u8],
    payload: &[u8],
    dst: &mut BytesMut,
) {
    header.payload_len = (head.len() + payload.len()) as u64;
    dst.reserve(header.encoded_len() + head.len() + payload.len());
    header.encode(dst);
    match header.mask {
        Some(key) => {
            put_masked(dst, head, key, 0);
            put_masked(dst, payload, key, head.len());
        }
        None => {
            dst.put_slice(head);
            dst.put_slice(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::OpCode;
    use super::*;

    #[test]
    fn a_frame_in_parts_is_the_frame_of_the_joined_payload() {
        for mask in [None, Some([0x37, 0xfa, 0x21, 0x3d])] {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask,
                payload_len: 0,
            };
            let body: std::vec::Vec<u8> = (0..300u16).map(|i| i as u8).collect();
            for split in [0, 1, 3, 5, 64, 299, 300] {
                let (head, rest) = body.split_at(split);
                let (mut whole, mut parts) = (BytesMut::new(), BytesMut::new());
                encode_frame(header, &body, &mut whole);
                encode_frame_parts(header, head, rest, &mut parts);
                assert_eq!(parts, whole, "split at {split}, mask {mask:?}");
            }
        }
    }

    #[test]
    fn rfc6455_5_7_single_frame_unmasked_and_masked_hello() {
        let mut out = BytesMut::new();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Text,
            mask: None,
            payload_len: 0,
        };
        encode_frame(header, b"Hello", &mut out);
        assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        let mut out = BytesMut::new();
        let masked = FrameHeader {
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
            ..header
        };
        encode_frame(masked, b"Hello", &mut out);
        assert_eq!(
            &out[..],
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello() {
        let mut out = BytesMut::new();
        let first = FrameHeader {
            fin: false,
            rsv: 0,
            opcode: OpCode::Text,
            mask: None,
            payload_len: 0,
        };
        encode_frame(first, b"Hel", &mut out);
        let last = FrameHeader {
            fin: true,
            opcode: OpCode::Continuation,
            ..first
        };
        encode_frame(last, b"lo", &mut out);
        assert_eq!(
            &out[..],
            &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
        );
    }

    #[test]
    fn rfc6455_5_7_ping_header_buf() {
        let ping = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Ping,
            mask: None,
            payload_len: 5,
        };
        assert_eq!(HeaderBuf::new(&ping).as_slice(), &[0x89, 0x05]);
        let big = FrameHeader {
            payload_len: 65536,
            opcode: OpCode::Binary,
            ..ping
        };
        assert_eq!(
            HeaderBuf::new(&big).as_slice(),
            &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
