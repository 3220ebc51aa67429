//! # sockeye-server
//!
//! The `sockeye` push/chat server as a **sans-IO layer**: every decision the server
//! makes, and none of its I/O. HTTP routing and answers (the push API, `/healthz`,
//! `/metrics`, the demo page, the JavaScript client at `/sockeye.js` and `/sockeye.d.ts`
//! with its 304s, and every refusal: 400/401/403/404/405/408/411/413/426/431/503), the
//! upgrade checks and the choice of mode (plain JSON, or `sockeye.v1` when
//! offered), plain-mode commands, the reliable mode's glue between each WebSocket and its
//! session, the hub, limits and the slow-consumer rule, keepalive, the graceful shutdown,
//! the metrics text, and durability. It owns no socket, thread, lock, clock, file or
//! random source: a runtime (`sockeye-std`, `sockeye-smol`) or the simulator drives it.
//!
//! **Why a crate of its own** rather than a module of `sockeye-core`: the core is
//! `no_std` for embedded users and knows nothing of JSON or of a push server's rules;
//! this layer speaks JSON (`serde_json`) and is what two runtimes share. Users of only
//! the WebSocket stack never build it.
//!
//! ## The drive contract
//!
//! The same shape as the core's, one level up:
//!
//! - inputs, each with the time: [`Server::handle_accept`] (a TCP connection; returns its
//!   id), [`Server::handle_bytes`], [`Server::handle_eof`], [`Server::handle_closed`],
//!   [`Server::handle_timeout`], [`Server::handle_committed`] (a journal commit finished),
//!   [`Server::handle_shutdown`], and with a cluster backend the six below;
//! - outputs: [`Server::poll_action`] until `None` after every input ([`Action`]: bytes
//!   wait for a connection, close one, append journal bytes, commit, publish, run a Redis
//!   command, subscribe, unsubscribe, log, stopped),
//!   [`Server::poll_transmit`] per connection when its socket can take bytes, and
//!   [`Server::poll_timeout`], the one next deadline.
//!
//! **Durability is an output.** With [`Config::journal`] the layer emits the journal's
//! bytes ([`Action::Append`]) and asks for a commit ([`Action::Commit`]); a push's 202,
//! a client command's ACK and every DATA envelope whose record is not yet durable wait
//! until the runtime answers [`Server::handle_committed`]. A failed commit is answered as
//! a failure (503, no ACK). Operations that arrive while a commit is in flight share the
//! next one (group commit). The ordering is the layer's, not a lock order's.
//!
//! **Many nodes are outputs too.** With [`Config::cluster`] (`--redis`) the layer says
//! what to publish and which channels it needs ([`Action::Publish`],
//! [`Action::Subscribe`], [`Action::Unsubscribe`], and [`Action::Command`] for the
//! mailboxes, connection counts and reliable sessions kept in Redis); the runtime carries the bytes to and from Redis and reports
//! [`Server::handle_published`] (how many subscribers got it), [`Server::handle_reply`],
//! [`Server::handle_subscribed`], [`Server::handle_remote`] (a message from another
//! node), [`Server::handle_cluster_up`] and [`Server::handle_cluster_down`]. The layer
//! decides who receives what, when a push's 202 may go, what presence to announce and
//! when a node is gone; the tests drive several layers over an in-memory broker. The
//! channels and rules are in the `cluster` module's docs (`server/src/cluster.rs`).
//!
//! **Reliable sessions in Redis** are a second part of the same group commit: with
//! [`Config::cluster`], each commit also writes the sessions' records to Redis in one
//! script ([`Action::Command`]), and its [`Server::handle_reply`] counts as that part's
//! outcome, so an ACK waits for Redis as it waits for `fsync`. A `RESUME` of a session
//! another node holds waits for Redis to hand it over (`server/src/cluster_sessions.rs`).
//!
//! ## By hand: one HTTP request and one WebSocket connection
//!
//! ```
//! use sockeye_server::{Action, Config, Server};
//! use sockeye_core::{Instant, SeededEntropy};
//!
//! let now = Instant::ZERO;
//! let mut server = Server::new(Config::default(), now, 1_700_000_000_000,
//!     Box::new(SeededEntropy::new(1)), None);
//!
//! // An HTTP request: the answer, then a close.
//! let http = server.handle_accept(now);
//! server.handle_bytes(now, http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
//! let mut answer = Vec::new();
//! while let Some(action) = server.poll_action() {
//!     match action {
//!         Action::Wake(conn) | Action::Close(conn) => {
//!             while let Some(chunk) = server.poll_transmit(conn) {
//!                 answer.extend_from_slice(&chunk); // a socket write, in real life
//!             }
//!         }
//!         _ => {}
//!     }
//! }
//! assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n") && answer.ends_with(b"ok\n"));
//! server.handle_closed(now, http); // the runtime closed the socket
//!
//! // A WebSocket upgrade in plain JSON mode: 101, then the welcome message.
//! let ws = server.handle_accept(now);
//! server.handle_bytes(now, ws, b"GET /ws?user=kim HTTP/1.1\r\nHost: x\r\n\
//!     Upgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
//! let mut bytes = Vec::new();
//! while let Some(action) = server.poll_action() {
//!     if let Action::Wake(conn) = action {
//!         while let Some(chunk) = server.poll_transmit(conn) {
//!             bytes.extend_from_slice(&chunk);
//!         }
//!     }
//! }
//! let text = String::from_utf8_lossy(&bytes);
//! assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(text.ends_with(r#"{"type":"welcome","user":"kim"}"#));
//! // Re-arm one timer for the whole server (keepalive, mailbox ages, sessions, ...).
//! assert!(server.poll_timeout().is_some());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod answer;
mod assets;
mod cluster;
mod cluster_confirm;
mod cluster_conns;
mod cluster_mail;
mod cluster_push;
mod cluster_sessions;
mod config;
mod conn;
mod deliver;
mod durable;
mod identity;
mod metrics;
mod plain;
mod push;
mod reliable;
mod server;
mod session_sink;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(all(test, feature = "deflate"))]
mod deflate_tests;

#[cfg(test)]
mod cluster_tests;

pub use cluster::ClusterConfig;
pub use cluster_mail::Reply;
pub use config::Config;
pub use server::Server;

pub use sockeye_core::hub::ConnId;

use bytes::Bytes;

/// What the runtime must do, from [`Server::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Bytes wait for this connection: take them with [`Server::poll_transmit`] as its
    /// socket can take them. Said once until `poll_transmit` answered `None`.
    Wake(ConnId),
    /// This connection is over: write what [`Server::poll_transmit`] still gives, then
    /// shut the socket down and call [`Server::handle_closed`].
    Close(ConnId),
    /// Append these bytes (encoded journal records) to the journal; not yet durable.
    Append(Bytes),
    /// Make everything appended durable as one batch (end it with a
    /// [`Record::Commit`](sockeye_core::journal::Record::Commit) marker, then `fsync`),
    /// then call [`Server::handle_committed`] with the outcome. At most one is
    /// outstanding. On failure keep the records appended: the layer asks again.
    Commit,
    /// Publish `payload` on the cluster backend's `channel` (Redis `PUBLISH`), in the
    /// order given, then call [`Server::handle_published`] with `id` and how many
    /// subscribers received it. Only with [`Config::cluster`].
    Publish {
        /// Names this publication in [`Server::handle_published`].
        id: u64,
        /// The full channel name, prefix included.
        channel: String,
        /// The bytes to publish.
        payload: Bytes,
    },
    /// Run this Redis command (its arguments, the name first) on the connection that
    /// publishes, in order with the publications, then call [`Server::handle_reply`]
    /// with `id` and the answer (a Redis error reply, a timeout or a dropped connection
    /// as `Err`). Only with [`Config::cluster`]: the mailboxes, connection counts and
    /// reliable sessions in Redis.
    Command {
        /// Names this command in [`Server::handle_reply`].
        id: u64,
        /// `RPUSH`, the key, the value, …
        args: Vec<Bytes>,
    },
    /// Subscribe to this channel (Redis `SUBSCRIBE`), report it done with
    /// [`Server::handle_subscribed`], and hand every message on it to
    /// [`Server::handle_remote`].
    Subscribe(String),
    /// Unsubscribe from this channel.
    Unsubscribe(String),
    /// A line for the log.
    Log(Level, String),
    /// A message the server gave up: nobody will receive it (mailbox full or too old, a
    /// reliable session that expired, a room message for a slow consumer). Nothing is
    /// lost silently: the runtime logs or counts it.
    DeadLetter(DeadLetter),
    /// A graceful shutdown is complete: every connection is gone and everything
    /// appended is committed.
    Stopped,
}

/// A message given up, as the user it was for would have received it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The user it was for.
    pub user: String,
    /// The JSON text they would have received (`{"type":"message",...}`).
    pub message: Bytes,
    /// Why it was given up.
    pub reason: String,
    /// A copy may have reached the user before it was given up (a reliable session that
    /// ended with it unacknowledged); `false`: it certainly did not.
    pub possibly_delivered: bool,
}

/// How much a log line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something is wrong and needs an operator.
    Error,
    /// Worth knowing: a refusal of the environment, a mode that is open.
    Warn,
    /// The server's life: start, stop, slow consumers.
    Info,
    /// Every connection and refusal.
    Debug,
}
