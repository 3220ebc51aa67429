//! # sockeye-std
//!
//! A blocking runtime for [`sockeye_core`]: each connection is driven on a plain thread
//! over a `std::net::TcpStream`. The runtime owns the socket, the clock and the entropy;
//! every protocol decision (handshake answers, pongs, close echoes, keepalive, limits) is
//! the core's.
//!
//! ```
//! use sockeye_std::{Client, CloseCode, Config, Message, Server};
//!
//! // A server that echoes every message, on a background thread.
//! let server = Server::bind("127.0.0.1:0", Config::default())?.spawn(|mut ws| {
//!     while let Ok(Some(message)) = ws.recv() {
//!         if ws.send(message).is_err() { break; }
//!     }
//! })?;
//!
//! // A client.
//! let url = format!("ws://{}/echo", server.local_addr());
//! let mut ws = Client::connect(&url, Config::default())?;
//! ws.send(Message::text("hello"))?;
//! assert_eq!(ws.recv()?, Some(Message::text("hello")));
//! ws.close(CloseCode::NORMAL, "done")?;
//! assert_eq!(ws.recv()?, None);
//! # Ok::<(), sockeye_std::Error>(())
//! ```
//!
//! ## How it runs
//!
//! A [`WebSocket`] does its work inside its own methods, on the calling thread: `recv`
//! waits (`poll(2)`, the socket is non-blocking) for bytes, the core's next deadline or
//! a [`Sender`]'s wake-up, feeds what arrived (or the passed deadline) to the core,
//! writes whatever the core queued as the socket takes it, and returns the next message.
//! A [`Server`] runs one thread per connection. A send blocks until the kernel has taken
//! the message, and fails with [`ConnectionError::WriteTimeout`] once the peer has read
//! nothing for `Config::pong_timeout`.
//!
//! ## Servers
//!
//! [`Server::serve`] and [`Server::spawn`] run a thread per connection, which performs
//! the handshake and calls the handler; [`Server::accept`] hands out each connection as
//! an [`Incoming`] whose [`upgrade`](Incoming::upgrade) runs the handshake on the thread
//! you choose, so a slow client never stalls the accept loop. The application decides
//! who gets in with [`Server::on_request`] (any HTTP status, as a [`Refusal`]),
//! [`Server::check_origin`] and [`Server::max_connections`] (503 beyond); every
//! connection has a [`ConnectionId`] ([`WebSocket::id`]); [`ServerHandle::shutdown`]
//! closes the open connections with 1001 (going away) and waits for them.
//!
//! ## Errors
//!
//! Every fallible call answers this crate's one [`Error`], its cause kept
//! ([`std::error::Error::source`]): the socket's ([`Error::Io`]), the handshake's, a
//! server's [`Refusal`], the connection's, a send's, a message handed back
//! ([`Error::Full`]), a [`UrlError`], or, for the reliable API only, a
//! [`ReliableError`] (backpressure, the session store, a reconnect that gave up, a
//! connect timeout with why the last attempt failed).
//!
//! ## Reading and writing from two threads
//!
//! [`WebSocket::sender`] gives a [`Sender`] (`Clone + Send + Sync`) that sends from any
//! thread while the owner blocks in [`recv`](WebSocket::recv): each send wakes the
//! owner's wait at once, no polling needed. Its queue is bounded by
//! `Config::max_send_queue_bytes`: [`Sender::try_send`] hands a message back as
//! [`Error::Full`], [`Sender::send`] waits for room. `Ok` means accepted into the
//! queue, not delivered (a plain WebSocket confirms nothing; the reliable mode does);
//! what was accepted but never left before the connection ended comes back from
//! [`Sender::take_unsent`]. The sans-IO core stays with the owner (see [`Sender`] for
//! the design).
//!
//! ```
//! use std::thread;
//! use sockeye_std::{Client, CloseCode, Config, Message, Server};
//!
//! # let server = Server::bind("127.0.0.1:0", Config::default())?.spawn(|mut ws| {
//! #     while let Ok(Some(message)) = ws.recv() {
//! #         if ws.send(message).is_err() { break; }
//! #     }
//! # })?;
//! # let url = format!("ws://{}/", server.local_addr());
//! let mut ws = Client::connect(&url, Config::default())?;
//! let sender = ws.sender()?;
//!
//! // The writer thread: sends, then closes; it never touches the socket itself.
//! let writer = thread::spawn(move || -> sockeye_std::Result<()> {
//!     for i in 0..3 {
//!         sender.send(Message::text(format!("tick {i}")))?;
//!     }
//!     sender.close(CloseCode::NORMAL, "done")
//! });
//!
//! // The reader: blocks in `recv` until the close completes.
//! let mut echoes = Vec::new();
//! while let Some(message) = ws.recv()? {
//!     echoes.push(message);
//! }
//! writer.join().unwrap()?;
//! assert_eq!(echoes.len(), 3);
//! # Ok::<(), sockeye_std::Error>(())
//! ```
//!
//! [`WebSocket::recv_timeout`] waits at most a given time and answers a [`Recv`]:
//! `Ready(message)`, `TimedOut` (still open) or `Closed` (over), never confusing the two.
//!
//! ## Reliable messaging
//!
//! [`ReliableClient`] and [`ReliableServer`] (or a [`SessionRegistry`] shared by your own
//! connection threads) speak the `sockeye.v1` subprotocol: every message reaches the
//! other application exactly once and in order across dropped connections, or comes back
//! as a [`SessionEvent::DeadLetter`]. The client reconnects by itself (backoff with
//! jitter, [`ReconnectConfig`]) and resumes its session; the server keeps sessions in
//! memory for `SessionConfig::session_expiry`. The protocol is `sockeye_core::session`'s;
//! these types only carry it. A [`ReliableServer`] has the [`Server`]'s say over who gets
//! in ([`ReliableServer::on_request`], [`ReliableServer::check_origin`],
//! [`ReliableServer::max_connections`]), a [`ConnectionId`] for every connection
//! ([`ReliableConnection::connection_id`]), and a [`ServerHandle::shutdown`] that closes
//! the open connections with 1001 while their sessions stay in the registry.
//!
//! ```
//! use std::{thread, time::Duration};
//! use bytes::Bytes;
//! use sockeye_std::{Config, ReliableClient, ReliableOptions, ReliableServer, SessionConfig, SessionEvent};
//!
//! let server = ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default())?;
//! let sessions = server.registry();
//! let handle = server.spawn()?;
//! // The server's application: every message comes back, reliably.
//! thread::spawn(move || {
//!     while let Some((id, event)) = sessions.next_event(None) {
//!         if let SessionEvent::Delivered { payload, is_text, .. } = event {
//!             let _ = sessions.send(id, payload, is_text);
//!         }
//!     }
//! });
//!
//! let url = format!("ws://{}/", handle.local_addr());
//! let mut client = ReliableClient::connect(&url, ReliableOptions::default())?;
//! client.send(Bytes::from("exactly once"), true)?;
//! let echo = loop {
//!     match client.next_event(Some(Duration::from_secs(10)))? {
//!         Some(SessionEvent::Delivered { payload, .. }) => break payload,
//!         Some(_) => {} // Established, Acked, ...
//!         None => panic!("no echo within 10 s"),
//!     }
//! };
//! assert_eq!(echo, "exactly once");
//! assert!(client.wait_acked(Some(Duration::from_secs(10)))?);
//! # Ok::<(), sockeye_std::Error>(())
//! ```
//!
//! ## Backpressure
//!
//! Every queue is bounded (`Config::max_send_queue_bytes`, the reliable window of
//! `SessionConfig`), and a full one hands the message back instead of consuming it:
//! [`Sender::try_send`], [`ReliableClient::try_send`] and [`SessionRegistry::try_send`]
//! answer [`Error::Full`]`(message)`, so nothing needs cloning before a send. The
//! blocking calls wait for room instead ([`WebSocket::send`], [`Sender::send`]).
//!
//! ```
//! use sockeye_std::{Client, Config, Error, Message, Server};
//!
//! # let server = Server::bind("127.0.0.1:0", Config::default())?.spawn(|mut ws| {
//! #     while let Ok(Some(message)) = ws.recv() {
//! #         if ws.send(message).is_err() { break; }
//! #     }
//! # })?;
//! # let url = format!("ws://{}/", server.local_addr());
//! let mut config = Config::default();
//! config.max_send_queue_bytes = 1024;
//! let mut ws = Client::connect(&url, config)?;
//! let sender = ws.sender()?;
//! sender.try_send(Message::binary(vec![1; 1000]))?; // an empty queue takes any message
//! let back = match sender.try_send(Message::binary(vec![2; 1000])) {
//!     Err(Error::Full(back)) => back, // the message itself, not a copy
//!     other => panic!("expected Full, got {other:?}"),
//! };
//! // The owner moves what is queued into the connection while it receives.
//! assert_eq!(ws.recv()?, Some(Message::binary(vec![1; 1000])));
//! sender.send(back)?; // there is room again
//! assert_eq!(ws.recv()?, Some(Message::binary(vec![2; 1000])));
//! # Ok::<(), sockeye_std::Error>(())
//! ```
//!
//! ## Compression (feature `deflate`, unstable)
//!
//! With the `deflate` feature a client offers permessage-deflate (RFC 7692) by
//! `ClientOptions::deflate` and a server answers offers by `Server::deflate`, each with
//! a `DeflateConfig` (window bits, context takeover both ways, level, the size under
//! which messages go uncompressed); `WebSocket::deflate_params` says what was agreed.
//! [`WebSocket::send`] then compresses by the policy, and
//! [`WebSocket::send_with`]`(message, `[`Compression::Never`]`)` sends a message that
//! holds a secret uncompressed. The negotiation and the codec are the core's.
//!
//! ## TLS (feature `tls`) and other streams
//!
//! A [`WebSocket`] runs over any [`Stream`]: a `TcpStream` (the default type parameter,
//! so `WebSocket` alone still means TCP), a `UnixStream`, a `TlsStream`, a
//! `Box<dyn Stream>`, or a stream of your own. [`WebSocket::client`] and
//! [`WebSocket::server`] run the handshake over a stream you already connected;
//! [`Server::upgrade`] does so with a server's policy. Timeouts hold for every stream,
//! because the driver waits on its file descriptor (see [`Stream`] for the contract a
//! buffering stream keeps).
//!
//! With the `tls` feature, rustls (ring provider, TLS 1.2 and 1.3) carries `wss://`:
//! `Client::connect_tls` verifies the server against the platform's trust store
//! (`tls::platform_client_config`, through `rustls-native-certs`: the system's CA
//! bundle, which follows the operator's updates and private CAs, rather than a list
//! compiled into the binary) or against your own roots ([`ClientOptions`]'s `tls`, built
//! with `tls::client_config`); [`Client::open`] and [`ReliableClient`] pick TLS by the
//! URL's scheme. A server takes a certificate and key as PEM files
//! (`tls::server_config_from_pem`) or any `Arc<rustls::ServerConfig>`, and
//! `Server::tls` runs each TLS handshake on its connection's thread. The TLS handshake
//! and the WebSocket handshake are each bounded by `Config::handshake_timeout`.
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> sockeye_std::Result<()> {
//! use sockeye_std::{tls, Client, ClientOptions, Config, Message, Server};
//! use sockeye_std::tls::rustls::{pki_types::{pem::PemObject, CertificateDer}, RootCertStore};
//!
//! // A wss:// echo server with a certificate and key from PEM files.
//! let server_tls = tls::server_config_from_pem("fullchain.pem", "privkey.pem")?;
//! let server = Server::bind("0.0.0.0:8443", Config::default())?
//!     .tls(server_tls)
//!     .spawn(|mut ws| {
//!         while let Ok(Some(message)) = ws.recv() {
//!             if ws.send(message).is_err() { break; }
//!         }
//!     })?;
//!
//! // A client trusting one CA of our own (`ClientOptions::default()` trusts the
//! // platform's roots).
//! let mut roots = RootCertStore::empty();
//! for cert in CertificateDer::pem_file_iter("ca.pem").unwrap() {
//!     roots.add(cert.unwrap()).unwrap();
//! }
//! let client_tls = tls::client_config(roots);
//! let options = ClientOptions { tls: Some(&client_tls), ..ClientOptions::default() };
//! let url = format!("wss://localhost:{}/", server.local_addr().port());
//! let mut ws = Client::connect_tls(&url, Config::default(), options)?;
//! ws.send(Message::text("hello over TLS"))?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! Entropy comes from `/dev/urandom`, so this crate needs a Unix-like system (see
//! [`OsEntropy`]).
//!
//! ## Logging
//!
//! Notable events go to the [`log`](https://docs.rs/log) facade, under targets that
//! start with `sockeye_std`:
//!
//! | level | event |
//! |---|---|
//! | `warn` | a failed `accept` in [`Server::serve`] or [`Server::spawn`] (retried), a connection thread that could not start |
//! | `warn` | a [`ReliableClient`] giving up reconnecting |
//! | `info` | each reconnect attempt a [`ReliableClient`] schedules, with its delay |
//! | `debug` | a refused handshake (the reason of the HTTP answer), a failed TLS handshake |
//!
//! Nothing is printed unless the application installs a logger (`env_logger`,
//! `simple_logger`, or a `tracing` subscriber with `tracing-log`); no line carries a
//! payload or a token. The accept loops of `serve` and `spawn` have no caller to return
//! their errors to, so the log is where those appear; everything else also reaches the
//! caller as an [`Error`] or a [`SessionEvent`].
//!
//! ## Examples
//!
//! ```text
//! cargo run --release -p sockeye-std --example echo_server -- 127.0.0.1:9001
//! cargo run -p sockeye-std --example echo_client -- ws://127.0.0.1:9001/ hello world
//! cargo run --release -p sockeye-std --example reliable_sink -- 127.0.0.1:9002
//! cargo run --release -p sockeye-std --example reliable_send -- ws://127.0.0.1:9002 10000
//! AUTOBAHN_URL=ws://127.0.0.1:9001 AUTOBAHN_AGENT=sockeye \
//!     cargo run --release -p sockeye-std --example autobahn_client
//! ```

#![warn(missing_docs)]

pub mod accept;
mod client;
mod connections;
mod entropy;
mod error;
mod incoming;
mod refusal;
mod reliable;
mod sender;
mod server;
mod server_handle;
mod stream;
mod time;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod url;
mod websocket;

pub use client::{Client, ClientOptions};
pub use connections::ConnectionId;
pub use entropy::OsEntropy;
pub use error::{Error, Result};
pub use incoming::Incoming;
pub use refusal::Refusal;
pub use reliable::{
    ReliableClient, ReliableConnection, ReliableError, ReliableOptions, ReliableServer,
    SessionRegistry, Upgrade, DEFAULT_MAX_PENDING_EVENTS,
};
pub use sender::Sender;
pub use server::Server;
pub use server_handle::ServerHandle;
pub use stream::{MaybeTlsStream, OverTcp, Stream};
pub use time::Clock;
#[cfg(feature = "tls")]
pub use tls::TlsStream;
pub use url::{UrlError, WsUrl};
pub use websocket::{Recv, WebSocket};

pub use sockeye_core::handshake::Request;
#[cfg(feature = "deflate")]
pub use sockeye_core::handshake::{DeflateConfig, DeflateParams};
#[cfg(feature = "deflate")]
pub use sockeye_core::DeflateMemory;
pub use sockeye_core::{
    Close, CloseCode, Compression, Config, ConnectionError, DeadLetterReason, Event,
    HandshakeError, Instant, LostReason, Message, MessageKind, ReconnectConfig, SendError, Seq,
    SessionConfig, SessionEvent, SessionId, SessionSendError, State, StoreError,
};

/// The README's example of driving the core by hand, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
