//! The HTTP/1.1 Upgrade handshake of RFC 6455 §4, server and client.
//!
//! (Being written: see the handshake issue. The types below are the agreed surface.)

/// The server side of the opening handshake.
#[derive(Debug)]
pub struct ServerHandshake {}

/// The client side of the opening handshake.
#[derive(Debug)]
pub struct ClientHandshake {}
