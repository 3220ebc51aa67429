//! A message framed once for many connections: the server's fan-out.
//!
//! A server's frames are not masked (RFC 6455 §5.1), so a message sent to every member of
//! a room is the same bytes on every socket. [`PreparedMessage`] holds those bytes, header
//! and payload in one buffer, and [`Connection::send_prepared`] queues a reference to them:
//! no frame header is written and no payload byte is copied per connection, and a runtime
//! writes the shared buffer straight from it.
//!
//! With permessage-deflate, a server connection that keeps no compression context
//! between messages compresses a message the same way as every other such connection
//! with the same level and window: [`Connection::prepare_compressed`] compresses it once
//! into the prepared message, and each of those connections then sends that compressed
//! frame as it is (RFC 7692 §7.2.1 output depends only on the message and the settings
//! when the context starts empty).
//!
//! [`Connection::prepare_compressed`]: super::Connection::prepare_compressed
//!
//! [`Connection::send_prepared`]: super::Connection::send_prepared

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(feature = "deflate")]
use super::deflate::ShareKey;
use super::message::{Message, MessageKind};
#[cfg(feature = "deflate")]
use super::RSV1;
use crate::frame::{FrameHeader, HeaderBuf, OpCode};

/// One whole message as a server frame (FIN, unmasked, uncompressed), built once and
/// shared by every connection it is sent to. Cloning it is cheap (a reference count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMessage {
    kind: MessageKind,
    /// Header and payload.
    frame: Bytes,
    /// Where the payload starts in `frame`.
    header_len: usize,
    /// The message compressed for connections with this key, framed (RSV1 set).
    #[cfg(feature = "deflate")]
    compressed: Option<(ShareKey, Bytes)>,
}

impl PreparedMessage {
    /// Frames `message` once.
    pub fn new(message: &Message) -> Self {
        let kind = message.kind();
        let payload = message.payload();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: match kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            },
            mask: None,
            payload_len: payload.len() as u64,
        };
        let head = HeaderBuf::new(&header);
        let mut frame = BytesMut::with_capacity(head.as_slice().len() + payload.len());
        frame.put_slice(head.as_slice());
        frame.put_slice(payload);
        PreparedMessage {
            kind,
            frame: frame.freeze(),
            header_len: head.as_slice().len(),
            #[cfg(feature = "deflate")]
            compressed: None,
        }
    }

    /// Whether it holds a compressed frame, made by
    /// [`Connection::prepare_compressed`](super::Connection::prepare_compressed).
    #[cfg(feature = "deflate")]
    pub fn is_compressed(&self) -> bool {
        self.compressed.is_some()
    }

    /// The compressed frame for connections with `key`, if it holds one.
    #[cfg(feature = "deflate")]
    pub(crate) fn compressed_frame(&self, key: ShareKey) -> Option<&Bytes> {
        match &self.compressed {
            Some((k, frame)) if *k == key => Some(frame),
            _ => None,
        }
    }

    /// Compresses the payload for connections with `key` and keeps the frame.
    #[cfg(feature = "deflate")]
    pub(crate) fn compress_for(&mut self, key: ShareKey) {
        let compressed = key.compress(&self.payload());
        let header = FrameHeader {
            fin: true,
            rsv: RSV1,
            opcode: match self.kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            },
            mask: None,
            payload_len: compressed.len() as u64,
        };
        let head = HeaderBuf::new(&header);
        let mut frame = BytesMut::with_capacity(head.as_slice().len() + compressed.len());
        frame.put_slice(head.as_slice());
        frame.put_slice(&compressed);
        self.compressed = Some((key, frame.freeze()));
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The message's payload (shares the frame's buffer).
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.header_len..)
    }

    /// The payload's length in bytes.
    pub fn payload_len(&self) -> usize {
        self.frame.len() - self.header_len
    }

    /// The whole frame, header and payload, as it goes on the wire from a server.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}
