//! # sockeye-core
//!
//! A sans-IO WebSocket core. (Crate docs with the drive loop are written with the
//! connection; see `connection`.)

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod config;
pub mod connection;
pub mod entropy;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod keepalive;
pub mod time;

#[cfg(any(fuzzing, feature = "sim"))]
#[doc(hidden)]
pub mod fuzzing;

pub use config::Config;
pub use connection::{Close, Connection, Event, Message, MessageKind, State};
pub use entropy::{Entropy, SeededEntropy};
pub use error::{ConnectionError, HandshakeError, LimitError, ProtocolError, SendError};
pub use frame::CloseCode;
pub use handshake::{
    accept_key, ClientHandshake, ClientRequest, ExtensionOffer, Request, Response, ServerHandshake,
};
pub use time::Instant;

/// Which end of a WebSocket connection this is. Masking rules depend on it (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that sent the upgrade request; it masks every frame it sends.
    Client,
    /// The end that accepted the upgrade; it never masks.
    Server,
}
