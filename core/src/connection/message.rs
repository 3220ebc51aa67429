//! Messages as the application sees them, and the reassembly of fragments.

use alloc::string::String;
use bytes::Bytes;

/// Whether a message is text or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

/// A whole WebSocket message.
///
/// A received `Text` message has been validated as UTF-8; [`Message::as_text`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message from a string (no copy for a `String` or `&'static str`).
    pub fn text(text: impl Into<String>) -> Self {
        Message::Text(Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::Text(b) | Message::Binary(b) => b,
        }
    }

    /// The payload, consuming the message.
    pub fn into_payload(self) -> Bytes {
        match self {
            Message::Text(b) | Message::Binary(b) => b,
        }
    }

    /// The text of a text message, or `None` for binary messages and for text messages
    /// built by hand with invalid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(b) => core::str::from_utf8(b).ok(),
            Message::Binary(_) => None,
        }
    }
}
