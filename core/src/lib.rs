//! # sockeye-core
//!
//! A **sans-IO** WebSocket core: pure state machines over byte buffers for the RFC 6455
//! opening handshake, framing, the connection (fragments, UTF-8, control frames, the
//! closing handshake), keepalive timing, and reliable sessions on top. It never touches a
//! socket, a clock, a thread or a random source; it is `no_std` + `alloc`.
//!
//! ## The sandwich
//!
//! ```text
//!   your network glue   reads bytes from a socket, writes bytes to it, keeps a timer
//!   ───────────────────
//!   sockeye-core        handle_bytes / handle_timeout / send   →   poll_transmit / poll_event / poll_timeout
//!   ───────────────────
//!   your application    reacts to events: messages, pings, close
//! ```
//!
//! The `sockeye-std` and `sockeye-smol` crates are such glue, ready-made. Use the core
//! directly when you own the event loop (mio, io_uring, a game loop, an embedded executor).
//!
//! ## The drive loop
//!
//! After **every** input (`handle_bytes`, `handle_eof`, `handle_timeout`, `send`, `ping`,
//! `close`), drain [`Connection::poll_event`] and [`Connection::poll_transmit`] until both
//! return `None`, then re-arm your timer from [`Connection::poll_timeout`]. Close the
//! transport when [`Connection::wants_disconnect`] is true and nothing is left to transmit.
//! Feeding bytes in any chunking, one at a time or all at once, gives the same events.
//! A runtime that writes from borrowed slices can drain the output with
//! [`Connection::transmit_chunk`] and [`Connection::advance_transmit`] instead, and send
//! small messages from a slice with [`Connection::send_slice`]: no `Bytes` change hands.
//!
//! Here a client and a server talk through two in-memory "sockets":
//!
//! ```
//! use sockeye_core::{CloseCode, Config, Connection, Event, Instant, Message, SeededEntropy};
//!
//! let now = Instant::ZERO;
//! // After the opening handshake (see `handshake`), each side holds a Connection.
//! let mut server = Connection::server(Config::default(), now);
//! // Clients mask their frames with keys from an entropy source you provide;
//! // `SeededEntropy` is for examples and tests only.
//! let mut client = Connection::client(Config::default(), now, SeededEntropy::new(7));
//!
//! // One turn of the loop: whatever one side transmits, the other receives.
//! fn pump(from: &mut Connection, to: &mut Connection, now: Instant) -> Vec<Event> {
//!     while let Some(chunk) = from.poll_transmit() {
//!         to.handle_bytes(now, &chunk); // a socket write + read, in real life
//!     }
//!     std::iter::from_fn(|| to.poll_event()).collect()
//! }
//!
//! client.send(now, Message::text("hello"))?;
//! let events = pump(&mut client, &mut server, now);
//! assert_eq!(events, [Event::Message(Message::text("hello"))]);
//!
//! // The server echoes, then closes; the client answers the close at once.
//! server.send(now, Message::text("hello yourself"))?;
//! server.close(now, CloseCode::NORMAL, "bye")?;
//! let events = pump(&mut server, &mut client, now);
//! assert_eq!(events[0], Event::Message(Message::text("hello yourself")));
//! assert!(matches!(&events[1], Event::Closed(c) if c.is_clean() && c.reason == "bye"));
//! let events = pump(&mut client, &mut server, now);
//! assert!(matches!(&events[0], Event::Closed(c) if c.is_clean()));
//! assert!(server.wants_disconnect()); // the server closes the TCP connection first
//! # Ok::<(), sockeye_core::SendError>(())
//! ```
//!
//! ## Reliable sessions
//!
//! Above the connection, [`session`] implements the `sockeye.v1` subprotocol
//! (`docs/PROTOCOL.md`): sequence numbers, delayed and piggybacked acks, retransmission,
//! a flow window, resume across reconnects and dead letters. A [`ClientSession`] and a
//! server's [`SessionStore`] of [`ServerSession`]s follow the same drive loop, with
//! envelopes (`poll_outgoing`) instead of bytes: each is one binary WebSocket message.
//! [`auth`] mints and verifies the signed user tokens checked at the handshake.
//!
//! ## The hub
//!
//! [`hub`] is the server's routing, sans-IO like the rest: connections and their users,
//! rooms and presence, pushes to a user, a room or everyone, and bounded offline
//! mailboxes. The runtime feeds it what happened and drains deliveries
//! ([`hub::Hub::poll_outbound`]) the same way.
//!
//! ## Compression (feature `deflate`, unstable)
//!
//! With the `deflate` feature the handshakes negotiate permessage-deflate (RFC 7692;
//! `handshake::DeflateConfig` is the policy: window bits, context takeover, level,
//! the size under which messages go uncompressed), and the [`Connection`] compresses
//! and inflates messages by the agreement, in pure Rust (miniz_oxide): RSV1 on the first
//! frame of a compressed message only, fragmented messages both ways, UTF-8 checked on
//! the inflated text, inflation in bounded steps that stops with 1009 as soon as
//! `max_message_bytes` is crossed. [`Compression::Never`] keeps a message holding a
//! secret uncompressed (CRIME/BREACH); `Connection::deflate_memory` reports what the
//! codec holds. Both runtimes and the server layer enable it through a `deflate` feature
//! of their own. Not done yet: a broadcast is compressed once per connection (no
//! encode-once for fan-out).
//!
//! ## Time
//!
//! The core has no `now()`. Every call that cares takes `now: `[`Instant`], a count of
//! nanoseconds from an origin you choose (a runtime captures one `std::time::Instant` at
//! start; a simulation starts at [`Instant::ZERO`]). If `now` goes backwards the core keeps
//! the latest value it saw. `poll_timeout` says when to call `handle_timeout`; calling it
//! early, late or twice is harmless.
//!
//! ## Randomness
//!
//! Masking keys (RFC 6455 §5.3) and the `Sec-WebSocket-Key` come from an [`Entropy`]
//! source handed in by the caller. Runtimes back it with the operating system.
//!
//! ## Errors and panics
//!
//! What the peer does wrong comes out as an [`Event::Closed`] carrying a
//! [`ConnectionError`], after the core has queued the close frame the peer should see
//! (1002 protocol error, 1007 invalid UTF-8, 1009 too big). `Result`s are for the caller:
//! [`SendError::Full`] is backpressure, [`SendError::Closed`] means the connection is
//! closing. No input from the network or the caller makes the core panic, and every
//! buffer is bounded by a limit in [`Config`].

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod auth;
pub mod config;
pub mod connection;
pub mod entropy;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod hub;
pub mod journal;
pub mod keepalive;
pub mod session;
pub mod time;

#[cfg(any(fuzzing, feature = "sim"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(any(test, fuzzing, feature = "sim"))]
#[doc(hidden)]
pub mod sim;

pub use config::{Config, SessionConfig};
pub use connection::{
    Close, Compression, Connection, Event, Message, MessageKind, PreparedMessage, State,
};
#[cfg(feature = "deflate")]
pub use connection::{DeflateMemory, COMPRESSOR_BYTES, INFLATER_STATE_BYTES};
pub use entropy::{Entropy, SeededEntropy};
pub use error::{
    AuthError, ConnectionError, EnvelopeError, HandshakeError, LimitError, ProtocolError,
    SendError, SessionProtocolError, SessionSendError, StoreError,
};
pub use frame::CloseCode;
pub use handshake::{
    accept_key, ClientHandshake, ClientRequest, ExtensionOffer, Request, Response, ServerHandshake,
};
pub use session::{
    ClientSession, DeadLetterReason, LostReason, Reconnect, ReconnectConfig, Seq, ServerSession,
    SessionEvent, SessionId, SessionStore,
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
