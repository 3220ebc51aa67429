//! # sockeye-smol
//!
//! An async runtime for [`sockeye_core`] on `async-io` (the reactor of `smol`): a
//! connection is an `Async<TcpStream>` (or any [`AsyncStream`]), the core's next deadline an `async_io::Timer`,
//! and every protocol decision (handshake answers, pongs, close echoes, keepalive,
//! limits) is the core's. The API has the shape of `sockeye-std`'s with `.await` added,
//! so an example ports line for line.
//!
//! ```
//! use sockeye_smol::{Client, CloseCode, Config, Message, Server};
//!
//! smol::block_on(async {
//!     let server = Server::bind("127.0.0.1:0", Config::default())?;
//!     let url = format!("ws://{}/echo", server.local_addr()?);
//!     // An echo server for one connection, as a task.
//!     let echo = smol::spawn(async move {
//!         let mut ws = server.accept().await?.upgrade().await?;
//!         while let Some(message) = ws.recv().await? {
//!             ws.send(message).await?;
//!         }
//!         Ok::<(), sockeye_smol::Error>(())
//!     });
//!     let mut ws = Client::connect(&url, Config::default()).await?;
//!     ws.send(Message::text("hello")).await?;
//!     assert_eq!(ws.recv().await?, Some(Message::text("hello")));
//!     ws.close(CloseCode::NORMAL, "done").await?;
//!     assert_eq!(ws.recv().await?, None);
//!     echo.await
//! })?;
//! # Ok::<(), sockeye_smol::Error>(())
//! ```
//!
//! ## How it runs
//!
//! Nothing runs in the background: a [`WebSocket`] makes progress inside its own async
//! methods, like the std runtime's does on its thread. `recv` races a read of the socket
//! against the core's next deadline, feeds what came (or the passed deadline) to the
//! core, writes whatever the core queued, and returns the next message. The futures are
//! `Send` and need only `async-io`'s reactor, so any executor runs them (`smol`,
//! `async-executor`, `futures::executor`, or `async_io::block_on`); the tests show a
//! single-threaded and a multi-threaded one.
//!
//! **Backpressure** is awaited, never an unbounded queue: [`WebSocket::send`] waits until
//! the bytes are written, and [`WebSocket::try_send`] hands the message back as
//! [`Error::Full`] when the queue holds `Config::max_send_queue_bytes` (so are
//! [`Sender::try_send`] and the reliable `try_send`s), so nothing needs cloning before a
//! send. [`WebSocket`]'s docs list what each method guarantees when its future is
//! dropped.
//!
//! ```
//! use sockeye_smol::{Client, Config, Error, Message, Server};
//!
//! smol::block_on(async {
//! #   let server = Server::bind("127.0.0.1:0", Config::default())?;
//! #   let url = format!("ws://{}/", server.local_addr()?);
//! #   smol::spawn(async move {
//! #       while let Ok(incoming) = server.accept().await {
//! #           smol::spawn(async move {
//! #               let Ok(mut ws) = incoming.upgrade().await else { return };
//! #               while let Ok(Some(m)) = ws.recv().await {
//! #                   if ws.send(m).await.is_err() { break; }
//! #               }
//! #           })
//! #           .detach();
//! #       }
//! #   })
//! #   .detach();
//!     let mut config = Config::default();
//!     config.max_send_queue_bytes = 1024;
//!     let mut ws = Client::connect(&url, config).await?;
//!     ws.try_send(Message::binary(vec![1; 1000]))?; // an empty queue takes any message
//!     let back = match ws.try_send(Message::binary(vec![2; 1000])) {
//!         Err(Error::Full(back)) => back, // the message itself, not a copy
//!         other => panic!("expected Full, got {other:?}"),
//!     };
//!     ws.ready().await?; // every queued byte written: room for any message
//!     ws.try_send(back)?;
//!     assert_eq!(ws.recv().await?, Some(Message::binary(vec![1; 1000])));
//!     assert_eq!(ws.recv().await?, Some(Message::binary(vec![2; 1000])));
//!     Ok::<(), sockeye_smol::Error>(())
//! })?;
//! # Ok::<(), sockeye_smol::Error>(())
//! ```
//!
//! ## Sending from other tasks and threads
//!
//! [`WebSocket::sender`] hands out a [`Sender`]: clone it into any task or thread, and
//! each [`Sender::send`] wakes the connection's own task in `recv` at once, which writes
//! the message. Its queue is bounded by `Config::max_send_queue_bytes`: `send` awaits
//! room, [`Sender::try_send`] hands the message back as [`Error::Full`]. Once the
//! connection is closing or over, every call fails with
//! [`SendError::Closed`]. `Ok` means accepted into the queue, not delivered (a plain
//! WebSocket confirms nothing; the reliable mode does); what was accepted but never left
//! before the connection ended comes back from [`Sender::take_unsent`].
//!
//! ```
//! use sockeye_smol::{Client, CloseCode, Config, Message, Server};
//!
//! smol::block_on(async {
//!     let server = Server::bind("127.0.0.1:0", Config::default())?;
//!     let url = format!("ws://{}/", server.local_addr()?);
//!     let echo = smol::spawn(async move {
//!         let mut ws = server.accept().await?.upgrade().await?;
//!         while let Some(message) = ws.recv().await? {
//!             ws.send(message).await?;
//!         }
//!         Ok::<(), sockeye_smol::Error>(())
//!     });
//!     let mut ws = Client::connect(&url, Config::default()).await?;
//!     let sender = ws.sender();
//!     // A thread (or another task) sends while this task awaits `recv`.
//!     let thread = std::thread::spawn(move || {
//!         smol::block_on(async {
//!             sender.send(Message::text("from a thread")).await?;
//!             sender.close(CloseCode::NORMAL, "done")
//!         })
//!     });
//!     assert_eq!(ws.recv().await?, Some(Message::text("from a thread")));
//!     assert_eq!(ws.recv().await?, None);
//!     thread.join().expect("the sending thread panicked")?;
//!     echo.await
//! })?;
//! # Ok::<(), sockeye_smol::Error>(())
//! ```
//!
//! ## Servers and errors
//!
//! [`Server::accept`] hands out each connection as an [`Incoming`] whose handshake runs
//! in the task that awaits it. [`Incoming::upgrade_with`] sees the request first and may
//! refuse it with any HTTP status, as a [`Refusal`]; [`Server::max_connections`] answers
//! 503 beyond its limit; every connection has a [`ConnectionId`] ([`Incoming::id`],
//! [`WebSocket::id`]); [`Server::shutdown_handle`] gives a [`ShutdownHandle`] whose
//! [`shutdown`](ShutdownHandle::shutdown) ends the accept loop (`accept` answers
//! [`Error::ShutDown`]), refuses new upgrades and closes open connections with 1001
//! (going away). Errors are `sockeye-std`'s one [`Error`], causes kept, with the
//! reliable API's under [`Error::Reliable`] ([`ReliableError`]) and URLs' as
//! [`UrlError`].
//!
//! ## Reliable messaging
//!
//! [`ReliableClient`] speaks `sockeye.v1` (`docs/PROTOCOL.md`): every message reaches the
//! server's application exactly once and in order across dropped connections, or comes
//! back as a [`SessionEvent::DeadLetter`]; it reconnects with backoff and jitter and
//! resumes its session by itself, against a `sockeye-std` `ReliableServer` or the
//! `sockeye` server. [`SessionRegistry`] is the server side: [`SessionRegistry::upgrade`]
//! attaches (or resumes) a session on each `sockeye.v1` connection, whose task awaits
//! [`ReliableConnection::run`], and the application takes every session's events from
//! [`SessionRegistry::next_event`] and sends with [`SessionRegistry::send`]. The protocol
//! is `sockeye_core::session`'s; these types only carry it.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use sockeye_smol::{Config, ReliableClient, ReliableOptions, Server, SessionConfig};
//! use sockeye_smol::{SessionEvent, SessionRegistry, Upgrade};
//!
//! smol::block_on(async {
//!     let server = Server::bind("127.0.0.1:0", Config::default())?;
//!     let url = format!("ws://{}/", server.local_addr()?);
//!     let registry = SessionRegistry::new(SessionConfig::default())?;
//!     let sessions = registry.clone();
//!     smol::spawn(async move {
//!         while let Ok(incoming) = server.accept().await {
//!             let registry = registry.clone();
//!             smol::spawn(async move {
//!                 if let Ok(Upgrade::Reliable(conn)) = registry.upgrade(incoming).await {
//!                     let _ = conn.run().await;
//!                 }
//!             })
//!             .detach();
//!         }
//!     })
//!     .detach();
//!     // The server's application: every message comes back, reliably.
//!     smol::spawn(async move {
//!         while let Some((id, event)) = sessions.next_event(None).await {
//!             if let SessionEvent::Delivered { payload, is_text, .. } = event {
//!                 let _ = sessions.send(id, payload, is_text);
//!             }
//!         }
//!     })
//!     .detach();
//!
//!     let mut client = ReliableClient::connect(&url, ReliableOptions::default()).await?;
//!     client.send(Bytes::from("exactly once"), true)?;
//!     let echo = loop {
//!         match client.next_event(Some(Duration::from_secs(10))).await? {
//!             Some(SessionEvent::Delivered { payload, .. }) => break payload,
//!             Some(_) => {} // Established, Acked, ...
//!             None => panic!("no echo within 10 s"),
//!         }
//!     };
//!     assert_eq!(echo, "exactly once");
//!     Ok::<(), sockeye_smol::Error>(())
//! })?;
//! # Ok::<(), sockeye_smol::Error>(())
//! ```
//!
//! ## Compression (feature `deflate`, unstable)
//!
//! As in `sockeye-std`: `ClientOptions::deflate` offers permessage-deflate (RFC 7692),
//! `Server::deflate` answers offers, each by a `DeflateConfig`;
//! `WebSocket::deflate_params` says what was agreed, [`WebSocket::send`] compresses by
//! the policy and [`WebSocket::send_with`] with [`Compression::Never`] sends a message
//! that holds a secret uncompressed.
//!
//! ## TLS (feature `tls`) and other streams
//!
//! A [`WebSocket`] runs over any [`AsyncStream`] (`AsyncRead + AsyncWrite + Unpin`): an
//! `Async<TcpStream>` (the default type parameter), an `Async<UnixStream>`, a
//! futures-rustls session, or a stream of your own; [`WebSocket::client`] and
//! [`WebSocket::server`] run the handshake over a stream you connected. Every write is
//! bounded by `Config::pong_timeout` on a timer, so timeouts hold for any stream.
//!
//! With the `tls` feature, `wss://` goes through rustls (ring) and `futures-rustls`, with
//! the configurations of `sockeye_std::tls`: `Client::connect_tls` verifies the server
//! against the platform's trust store or the roots in [`ClientOptions`]'s `tls`;
//! [`Client::open`] and [`ReliableClient`] pick TLS by the URL's scheme;
//! `Incoming::upgrade_tls` serves a certificate (its TLS handshake runs in the
//! connection's own task, bounded by `Config::handshake_timeout`).
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> sockeye_smol::Result<()> {
//! use sockeye_smol::{Client, ClientOptions, Config, Message, Server};
//!
//! smol::block_on(async {
//!     let tls = sockeye_std::tls::server_config_from_pem("fullchain.pem", "privkey.pem")?;
//!     let server = Server::bind("0.0.0.0:8443", Config::default())?;
//!     smol::spawn(async move {
//!         while let Ok(incoming) = server.accept().await {
//!             let tls = tls.clone();
//!             smol::spawn(async move {
//!                 let Ok(mut ws) = incoming.upgrade_tls(tls).await else { return };
//!                 while let Ok(Some(message)) = ws.recv().await {
//!                     if ws.send(message).await.is_err() { break; }
//!                 }
//!             })
//!             .detach();
//!         }
//!     })
//!     .detach();
//!
//!     // The platform's roots by default; `ClientOptions { tls: Some(&config), .. }`
//!     // for roots of your own (`sockeye_std::tls::client_config`).
//!     let options = ClientOptions::default();
//!     let mut ws = Client::connect_tls("wss://chat.example.com/", Config::default(), options)
//!         .await?;
//!     ws.send(Message::text("hello over TLS")).await?;
//!     Ok(())
//! })
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! Entropy comes from `/dev/urandom` ([`OsEntropy`](sockeye_std::OsEntropy)), so this
//! crate needs a Unix-like system.
//!
//! ## Logging
//!
//! Notable events go to the [`log`](https://docs.rs/log) facade, under targets that
//! start with `sockeye_smol`:
//!
//! | level | event |
//! |---|---|
//! | `warn` | a [`ReliableClient`] giving up reconnecting |
//! | `info` | each reconnect attempt a [`ReliableClient`] schedules, with its delay |
//! | `debug` | a refused handshake (the reason of the HTTP answer), a failed TLS handshake |
//!
//! Nothing is printed unless the application installs a logger (`env_logger`,
//! `simple_logger`, or a `tracing` subscriber with `tracing-log`); no line carries a
//! payload or a token. Each of these events also reaches the caller, as an [`Error`] or
//! a [`SessionEvent`].
//!
//! ## Examples
//!
//! ```text
//! cargo run --release -p sockeye-smol --example smol_echo_server -- 127.0.0.1:9001
//! cargo run -p sockeye-smol --example smol_echo_client -- ws://127.0.0.1:9001/ hello world
//! cargo run --release -p sockeye-smol --example smol_reliable_sink -- 127.0.0.1:9002
//! cargo run --release -p sockeye-smol --example smol_reliable_send -- ws://127.0.0.1:9002 10000
//! AUTOBAHN_URL=ws://127.0.0.1:9001 AUTOBAHN_AGENT=sockeye \
//!     cargo run --release -p sockeye-smol --example smol_autobahn_client
//! ```

#![warn(missing_docs)]

mod client;
mod connections;
mod handshake_io;
mod reliable_client;
mod reliable_server;
mod sender;
mod server;
mod shutdown;
mod stream;
mod websocket;

pub use client::Client;
pub use reliable_client::ReliableClient;
pub use reliable_server::{
    ReliableConnection, SessionRegistry, Upgrade, DEFAULT_MAX_PENDING_EVENTS,
};
pub use sender::Sender;
pub use server::{Incoming, Server};
pub use shutdown::ShutdownHandle;
pub use stream::{AsyncStream, MaybeTlsStream};
pub use websocket::WebSocket;

pub use sockeye_core as core;
pub use sockeye_core::handshake::Request;
#[cfg(feature = "deflate")]
pub use sockeye_core::handshake::{DeflateConfig, DeflateParams};
#[cfg(feature = "deflate")]
pub use sockeye_core::DeflateMemory;
pub use sockeye_core::{
    Close, CloseCode, Compression, Config, ConnectionError, DeadLetterReason, Event,
    HandshakeError, Instant, LostReason, Message, MessageKind, ReconnectConfig, SendError, Seq,
    SessionConfig, SessionEvent, SessionId, SessionSendError, State,
};
pub use sockeye_std::{
    ClientOptions, ConnectionId, Error, Recv, Refusal, ReliableError, ReliableOptions, Result,
    UrlError,
};
