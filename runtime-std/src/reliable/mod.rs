//! Reliable delivery (`sockeye.v1`) over real sockets: a [`ReliableClient`] that
//! reconnects and resumes by itself, and a server side ([`SessionRegistry`],
//! [`ReliableServer`]) that keeps sessions in memory across reconnects.
//!
//! The protocol (envelopes, acks, resends, resume, dead letters) is entirely
//! [`sockeye_core::session`]'s; these types carry its envelopes as binary WebSocket
//! messages and feed it the clock.

mod client;
mod error;
mod listener;
mod server;

pub use client::{ReliableClient, ReliableOptions};
pub use error::ReliableError;
pub use listener::ReliableServer;
pub(crate) use server::SessionKick;
pub use server::{ReliableConnection, SessionRegistry, Upgrade, DEFAULT_MAX_PENDING_EVENTS};
