//! An envelope on its way out, kept in two parts so the application's message is not
//! copied into it: a small head (the envelope's own fields) and the payload `Bytes`.

use alloc::vec::Vec;
use bytes::{BufMut, Bytes};

use super::envelope::MAX_VARINT_LEN;

/// Room for the longest DATA head: kind, flags and two varints.
const HEAD_CAPACITY: usize = 2 + 2 * MAX_VARINT_LEN;

/// One envelope to send as one binary WebSocket message: [`head`](Self::head) followed by
/// [`payload`](Self::payload). Hand both to
/// [`Connection::send_parts`](crate::Connection::send_parts) to build the frame with a
/// single copy, or join them with [`into_bytes`](Self::into_bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    head: [u8; HEAD_CAPACITY],
    head_len: u8,
    payload: Bytes,
}

impl OutgoingEnvelope {
    /// An envelope that is already whole (WELCOME, ERROR).
    pub(super) fn whole(bytes: Bytes) -> Self {
        OutgoingEnvelope {
            head: [0; HEAD_CAPACITY],
            head_len: 0,
            payload: bytes,
        }
    }

    /// An envelope whose head `write` encodes (at most `HEAD_CAPACITY` bytes), followed
    /// by `payload`.
    pub(super) fn with_head(write: impl FnOnce(&mut &mut [u8]), payload: Bytes) -> Self {
        let mut head = [0u8; HEAD_CAPACITY];
        let mut cursor = &mut head[..];
        write(&mut cursor);
        let head_len = (HEAD_CAPACITY - cursor.remaining_mut()) as u8;
        OutgoingEnvelope {
            head,
            head_len,
            payload,
        }
    }

    /// The envelope's own bytes, in front of the payload.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    /// The rest of the envelope (the application's message, for DATA).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The whole envelope's length.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }

    /// Never true: every envelope has at least its kind byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The envelope as one buffer (copies the payload unless the head is empty).
    pub fn into_bytes(self) -> Bytes {
        if self.head_len == 0 {
            return self.payload;
        }
        let mut joined = Vec::with_capacity(self.len());
        joined.extend_from_slice(self.head());
        joined.extend_from_slice(&self.payload);
        Bytes::from(joined)
    }
}
